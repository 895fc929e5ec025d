"""The documentation: the guides run, the site builds strictly and offline, the API is documented.

One strict build of the site at the guides' quick size (``scripts/build_docs.py --quick``) serves
every test that reads the site: it runs each guide in ``examples/`` (whose ``assert``s check the
numbers they print), renders the pages, and fails on a broken reference, a page left out of the
navigation or a docstring griffe cannot read.
"""

from __future__ import annotations

import importlib
import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest

import gdlab

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import build_docs  # noqa: E402
import griffe_rest  # noqa: E402


@pytest.fixture(scope="module")
def site(session_root, once) -> Path:
    # built once per session, even when pytest-xdist hands this module's tests to two workers
    work = session_root / "docs"

    def build() -> None:
        work.mkdir(exist_ok=True)
        proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "build_docs.py"), "--quick", "--work", str(work),
                               "--site", str(work / "site")], capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-8000:]
        assert "WARNING" not in proc.stderr, proc.stderr[-8000:]

    once("docs-site", build)
    return work / "site"


def public_objects(module_name: str) -> list[tuple[str, object]]:
    """The functions (decorated ones included) and classes a module defines under names without a
    leading underscore."""
    module = importlib.import_module(module_name)
    return [(name, obj) for name, obj in vars(module).items()
            if not name.startswith("_") and (inspect.isfunction(inspect.unwrap(obj)) or inspect.isclass(obj))
            and getattr(obj, "__module__", None) == module_name]


# --- the guides -------------------------------------------------------------------------------

@pytest.mark.parametrize("name", build_docs.GUIDES)
def test_each_guide_ran_and_shows_its_figures(site, name):
    page = (site / "guides" / f"{name}.html").read_text()
    figures = sorted((site / "guides" / "figures" / name).glob("*.png"))
    assert len(figures) >= 3
    for png in figures:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f'src="figures/{name}/{png.name}"' in page
    assert "What the script printed" in page
    assert page.count('class="language-python') + page.count("highlight") >= 5


def test_every_example_is_a_guide():
    assert sorted(p.stem for p in (ROOT / "examples").glob("*.py")) == sorted(build_docs.GUIDES)


def test_a_guide_splits_into_prose_code_and_figures(tmp_path):
    source = ('"""Title\n\nIntro."""\n\nimport os\n\n\ndef main(out):\n    # %% First\n    # Why this runs.\n'
              '    x = 1\n    save(out, "a.png")\n')
    docstring, cells = build_docs.split_cells(source)
    assert docstring == "Title\n\nIntro."
    assert cells == [("Setup", "", "import os\n\n\ndef main(out):"),
                     ("First", "Why this runs.", 'x = 1\nsave(out, "a.png")')]


def test_a_figure_named_but_not_made_fails_the_build(tmp_path, monkeypatch):
    monkeypatch.setattr(build_docs, "ROOT", tmp_path)
    (tmp_path / "examples").mkdir()
    (tmp_path / "examples" / "g.py").write_text('"""T\n\nI."""\n# %% A\nsave("missing.png")\n')
    with pytest.raises(build_docs.BuildError, match="missing.png"):
        build_docs.render_guide("g", "", tmp_path, quick=True)


def test_a_figure_made_but_not_named_fails_the_build(tmp_path, monkeypatch):
    monkeypatch.setattr(build_docs, "ROOT", tmp_path)
    (tmp_path / "examples").mkdir()
    (tmp_path / "examples" / "g.py").write_text('"""T\n\nI."""\n# %% A\nx = 1\n')
    (tmp_path / "stray.png").write_bytes(b"")
    with pytest.raises(build_docs.BuildError, match="stray.png"):
        build_docs.render_guide("g", "", tmp_path, quick=True)


# --- the API reference ------------------------------------------------------------------------

def test_every_module_has_an_api_page_naming_its_public_api(site):
    for module in build_docs.api_modules():
        page = (site / "api" / f"{module.removeprefix('gdlab.')}.html").read_text()
        missing = [name for name, _ in public_objects(module) if f'id="{module}.{name}"' not in page]
        assert not missing, f"{module}: {missing}"


def test_the_top_level_names_link_to_their_definitions(site):
    page = (site / "api" / "index.html").read_text()
    for name, (module, attr) in gdlab._ATTRIBUTES.items():
        short = module.removeprefix("gdlab.")
        assert re.search(rf'href="{short}\.html#{re.escape(module)}\.{attr}"[^>]*>\s*<code>gdlab\.{name}</code>', page), name


def test_formulas_in_docstrings_reach_mathjax(site):
    page = (site / "api" / "optim.html").read_text()
    momentum = page[page.index('id="gdlab.optim.momentum"'):page.index('id="gdlab.optim.nesterov"')]
    # the docstring's `.. math::` block, as arithmatex's display math for MathJax
    assert re.search(r'<div class="arithmatex">\\\[\s*v_\{t\+1\} = \\beta v_t', momentum)
    assert ".. math::" not in page and ":func:" not in page


def test_the_site_loads_nothing_from_the_network(site):
    for page in site.rglob("*.html"):
        for tag in re.findall(r"<(?:script|link|img)\b[^>]*>", page.read_text()):
            assert not re.search(r"""(?:src|href)=["']?(?:https?:)?//""", tag), (page.name, tag)
    assert (site / "assets" / "mathjax" / "tex-svg-full.js").stat().st_size > 1_000_000


# --- docstrings -------------------------------------------------------------------------------

def top_level_functions() -> list[tuple[str, object]]:
    return [(f"gdlab.{name}", getattr(gdlab, name)) for name in gdlab._ATTRIBUTES
            if inspect.isfunction(inspect.unwrap(getattr(gdlab, name)))]


def test_public_functions_state_their_arguments_and_give_an_example():
    # every function of every module with an API page, and the top-level names
    functions = top_level_functions()
    for module in build_docs.api_modules():
        functions += [(f"{module}.{name}", obj) for name, obj in public_objects(module)
                      if inspect.isfunction(inspect.unwrap(obj))]
    problems = []
    for qualname, fn in functions:
        doc = inspect.getdoc(fn) or ""
        if not doc:
            problems.append(f"{qualname}: no docstring")
            continue
        if ">>>" not in doc:
            problems.append(f"{qualname}: no example")
        if [p for p in inspect.signature(fn).parameters] and "Args:" not in doc:
            problems.append(f"{qualname}: no Args section")
        if "Returns:" not in doc:
            problems.append(f"{qualname}: no Returns section")
    assert not problems, "\n".join(problems)


def test_rest_in_docstrings_becomes_markdown():
    text = ("Update.\n\n.. math::\n\n   a = b\n   + c\n\nSee :class:`~gdlab.fitting.FitResult`.\n\n"
            "Example:\n  >>> 1\n  1")
    assert griffe_rest.markdown_docstring(text) == (
        "Update.\n\n$$\na = b\n+ c\n$$\n\nSee `gdlab.fitting.FitResult`.\n\nExamples:\n  >>> 1\n  1")
