"""The README's examples run as printed."""

import json
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
GDLAB = Path(sys.executable).parent / "gdlab"


def code_blocks(language: str) -> list[str]:
    """The fenced blocks whose info string is ``language`` ("" for plain fences), fence by fence."""
    blocks, current, info = [], None, None
    for line in README.read_text().splitlines():
        if line.startswith("```"):
            if current is None:
                current, info = [], line[3:].strip()
            else:
                if info == language:
                    blocks.append("\n".join(current) + "\n")
                current = None
        elif current is not None:
            current.append(line)
    return blocks


def readme_commands() -> list[str]:
    commands = []
    for block in code_blocks(""):
        text = block.replace("\\\n", " ")
        commands += [line.strip() for line in text.splitlines() if line.strip().startswith("gdlab ")]
    return commands


def test_readme_shows_the_two_commands_first():
    text = README.read_text()
    assert "make explore" in text and "make test" in text
    assert text.index("make explore") < text.index("gdlab fit --")


@pytest.mark.skipif(not GDLAB.exists(), reason="the gdlab console script is installed by `make test`")
@pytest.mark.parametrize("command", readme_commands())
def test_readme_cli_example_runs(command):
    proc = subprocess.run([str(GDLAB), *shlex.split(command)[1:]], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stdout.strip()
    if command.startswith("gdlab fit") and "--json -" in command:
        payload = json.loads(proc.stdout)
        assert payload["stop_reason"] == "converged"
        # the point described in the README: the broad minimum between the modes
        assert abs(payload["q"]["mean"]) < 1e-6 and abs(payload["q"]["var"] - 3.01) < 0.01
    elif command.startswith("gdlab fit"):
        assert "converged" in proc.stdout


def test_readme_has_cli_examples():
    assert len(readme_commands()) >= 2


def test_readme_python_example_runs():
    (block,) = code_blocks("python")
    namespace: dict = {}
    exec(compile(block, str(README), "exec"), namespace)
    res = namespace["res"]
    assert res.stop_reason == "converged"
    assert np.isfinite(res.loss) and len(res.trace.loss) == res.steps + 1
