"""Build gdlab's documentation site: the guides (run, with their figures), the API reference, docs/.

    make docs                                   (build at full size, then serve on 127.0.0.1:8001)
    .venv/bin/python scripts/build_docs.py [--quick] [--work DIR] [--site DIR] [--serve ADDR]

Nothing it makes is committed. It copies docs/ into a staging folder (``--work``, default
build/docs-src), then

1. runs every guide in ``examples/`` (as a script, ``--out DIR [--quick]``, all of them at once)
   and writes its figures into ``guides/figures/NAME/``; a guide that fails (its ``assert``s check
   its numbers) fails the build;
2. renders each guide into ``guides/NAME.md``: the module docstring, then for each ``# %% Title``
   cell its prose (the comment lines that open the cell), its code and the figures it saves (the
   ``"*.png"`` names in its code), and at the end what the script printed;
3. writes one API page per gdlab module (``::: gdlab.MODULE`` for mkdocstrings) and a page of the
   top-level names;
4. copies MathJax from the django-static-mathjax wheel, so the formulas render with no network;
5. writes the full mkdocs configuration (mkdocs.yml plus the navigation) and runs
   ``mkdocs build --strict``: a broken reference, a page missing from the navigation or a
   docstring griffe cannot read fails the build.
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]

# The guides in the order of the source texts (shared/seeds/000, 001, 002).
GUIDES = ("kl_gradient_descent", "supervised_gradient_descent", "natural_gradient")

_CELL = re.compile(r"^[ \t]*# %%[ \t]*(?P<title>.*)$")
_FIGURE = re.compile(r"""["']([\w.-]+\.png)["']""")


class BuildError(Exception):
    """A reason the site cannot be built, in one sentence."""


def run_examples(names: list[str], out_dirs: list[Path], quick: bool) -> list[str]:
    """Run guides as scripts (``python examples/NAME.py --out DIR [--quick]``), all at once, and return
    what each printed. Each is its own process: on several cores they overlap (most of their time
    is JAX compiling), and none sees another's JAX settings. A guide that fails fails the build."""
    start = time.perf_counter()
    procs = []
    for name, out_dir in zip(names, out_dirs):
        out_dir.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, str(ROOT / "examples" / f"{name}.py"), "--out", str(out_dir)]
        procs.append(subprocess.Popen(command + (["--quick"] if quick else []), cwd=ROOT,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    printed = []
    for name, proc in zip(names, procs):
        out, err = proc.communicate()
        if proc.returncode != 0:
            raise BuildError(f"examples/{name}.py failed (exit {proc.returncode}):\n{err[-4000:]}")
        printed.append(out)
    print(f"  ran {', '.join(names)} in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    return printed


def run_example(name: str, out_dir: Path, quick: bool) -> str:
    """Run one guide into ``out_dir`` and return what it printed."""
    return run_examples([name], [out_dir], quick)[0]


def split_cells(source: str) -> tuple[str, list[tuple[str, str, str]]]:
    """(module docstring, [(title, prose, code)]) of a guide written as ``# %%`` cells.

    The code before the first cell (the imports) is a cell titled "Setup". A cell's prose is the
    run of ``#`` comment lines right after its ``# %%`` line; the rest is its code, dedented.
    """
    tree = compile(source, "<guide>", "exec", flags=0x400, dont_inherit=True)  # ast.PyCF_ONLY_AST
    first = tree.body[0]
    if not (hasattr(first, "value") and isinstance(getattr(first.value, "value", None), str)):
        raise BuildError("a guide must open with a module docstring (its title and introduction).")
    docstring = first.value.value
    lines = source.splitlines()[first.end_lineno:]
    cells: list[tuple[str, list[str]]] = [("Setup", [])]
    for line in lines:
        match = _CELL.match(line)
        if match:
            cells.append((match.group("title").strip(), []))
        else:
            cells[-1][1].append(line)
    out = []
    for title, body in cells:
        text = textwrap.dedent("\n".join(body)).strip("\n").splitlines()
        prose = []
        while text and text[0].lstrip().startswith("#"):
            prose.append(text.pop(0).lstrip()[1:].removeprefix(" "))
        code = "\n".join(text).strip("\n")
        if code or prose:
            out.append((title, "\n".join(prose).strip(), code))
    return docstring, out


def render_guide(name: str, printed: str, figures: Path, quick: bool) -> str:
    """The Markdown page of one guide; every figure it shows must exist in ``figures``."""
    source = (ROOT / "examples" / f"{name}.py").read_text()
    docstring, cells = split_cells(source)
    title, _, intro = docstring.strip().partition("\n")
    size = "the quick (small) size, `--quick`" if quick else "full size"
    parts = [f"# {title.strip()}", textwrap.dedent(intro).strip(),
             f"This page is `examples/{name}.py`, run at {size} when the site was built: every number "
             f"and figure below comes from that run, and the script's `assert`s check them against "
             f"theory. Run it yourself with `python examples/{name}.py --out figures` "
             f"(`--quick` for a few seconds' version)."]
    shown = set()
    for cell_title, prose, code in cells:
        parts.append(f"## {cell_title}")
        if prose:
            parts.append(prose)
        if code:
            parts.append(f"```python\n{code}\n```")
        for png in dict.fromkeys(_FIGURE.findall(code)):
            if not (figures / png).is_file():
                raise BuildError(f"examples/{name}.py shows {png} but did not write it into {figures}.")
            shown.add(png)
            parts.append(f"![{png}](figures/{name}/{png})")
    unshown = sorted(p.name for p in figures.glob("*.png") if p.name not in shown)
    if unshown:
        raise BuildError(f"examples/{name}.py wrote {', '.join(unshown)}, which no cell of it names; "
                         f"name each figure in the cell that draws it.")
    parts += ["## What the script printed", f"```text\n{printed.rstrip()}\n```"]
    return "\n\n".join(parts) + "\n"


def api_modules() -> list[str]:
    """gdlab's modules with a page: every ``gdlab.MODULE`` and every module a top-level name lives in."""
    import gdlab

    modules = [f"gdlab.{m}" for m in gdlab._SUBMODULES]
    for module, _ in gdlab._ATTRIBUTES.values():
        if module not in modules:
            modules.append(module)
    return modules


def render_api(api_dir: Path) -> list[dict]:
    """Write the API pages and return their navigation entries."""
    import gdlab

    api_dir.mkdir(parents=True, exist_ok=True)
    rows = "\n".join(f"| [`gdlab.{name}`][{module}.{attr}] | `{module}` |"
                     for name, (module, attr) in sorted(gdlab._ATTRIBUTES.items()))
    (api_dir / "index.md").write_text(
        "# API reference\n\n"
        "Generated from the docstrings. `import gdlab` gives the names below directly (they load on "
        "first use) and every module as `gdlab.MODULE`. Formulas are typeset with MathJax, served "
        "with the site.\n\n"
        "| name | defined in |\n|---|---|\n" + rows + "\n")
    nav = [{"Top-level names": "api/index.md"}]
    for module in api_modules():
        short = module.removeprefix("gdlab.")
        (api_dir / f"{short}.md").write_text(f"# `{module}`\n\n::: {module}\n    options:\n"
                                             f"      show_root_heading: false\n")
        nav.append({short: f"api/{short}.md"})
    return nav


def copy_mathjax(assets: Path) -> None:
    """MathJax's single-file TeX-to-SVG build, from the installed django-static-mathjax wheel."""
    spec = importlib.util.find_spec("mathjax")
    if spec is None or not spec.submodule_search_locations:
        raise BuildError("MathJax is not installed; install the dev extra: pip install -e '.[dev]'.")
    source = Path(list(spec.submodule_search_locations)[0]) / "static" / "mathjax" / "es5" / "tex-svg-full.js"
    (assets / "mathjax").mkdir(parents=True, exist_ok=True)
    shutil.copy(source, assets / "mathjax" / source.name)


def write_config(work: Path, site: Path, guides_nav: list[dict], api_nav: list[dict]) -> Path:
    """mkdocs.yml with the staging folder, the site folder and the navigation filled in."""
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    config["docs_dir"] = str(work / "docs")
    config["site_dir"] = str(site)
    python = config["plugins"][2]["mkdocstrings"]["handlers"]["python"]
    python["paths"] = [str(ROOT / "src")]
    python["options"]["extensions"] = [str(ROOT / e) for e in python["options"]["extensions"]]
    config["nav"] = [{"Home": "index.md"}, {"Guides": guides_nav}, {"API reference": api_nav},
                     {"Benchmarks": "benchmarks.md"}]
    path = work / "mkdocs.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
    return path


def stage(work: Path, site: Path, quick: bool) -> Path:
    """Everything mkdocs needs, in ``work``; returns the configuration's path."""
    unknown = sorted(p.stem for p in (ROOT / "examples").glob("*.py") if p.stem not in GUIDES)
    if unknown:
        raise BuildError(f"examples/{unknown[0]}.py is not in scripts/build_docs.py's GUIDES; add it there "
                         f"so the site shows it.")
    docs = work / "docs"
    if docs.exists():
        shutil.rmtree(docs)
    shutil.copytree(ROOT / "docs", docs)
    guides_nav = []
    figure_dirs = [docs / "guides" / "figures" / name for name in GUIDES]
    for name, figures, printed in zip(GUIDES, figure_dirs, run_examples(list(GUIDES), figure_dirs, quick)):
        page = render_guide(name, printed, figures, quick)
        (docs / "guides" / f"{name}.md").write_text(page)
        guides_nav.append({page.splitlines()[0].removeprefix("# "): f"guides/{name}.md"})
    api_nav = render_api(docs / "api")
    copy_mathjax(docs / "assets")
    from pygments.formatters import HtmlFormatter

    (docs / "assets" / "pygments.css").write_text(HtmlFormatter().get_style_defs(".highlight"))
    return write_config(work, site, guides_nav, api_nav)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="run the guides at their small sizes (seconds)")
    parser.add_argument("--work", type=Path, default=ROOT / "build" / "docs-src", help="the staging folder")
    parser.add_argument("--site", type=Path, default=ROOT / "build" / "site", help="where the site is written")
    parser.add_argument("--serve", metavar="ADDR", help="after the build, serve the site on ADDR (127.0.0.1:8001)")
    args = parser.parse_args(argv)
    try:
        config = stage(args.work.resolve(), args.site.resolve(), args.quick)
    except BuildError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    mkdocs = [sys.executable, "-m", "mkdocs"]
    rc = subprocess.run([*mkdocs, "build", "--strict", "--clean", "-f", str(config)]).returncode
    if rc != 0 or not args.serve:
        return rc
    return subprocess.run([*mkdocs, "serve", "--strict", "-f", str(config), "-a", args.serve]).returncode


if __name__ == "__main__":
    sys.exit(main())
