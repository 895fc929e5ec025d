"""The ``gdlab`` command line. One module per command (``gdlab.cli.fit``, ...), all on one
click group, ``app``; this module holds what they share: the exit-2 error handling, JSON output,
progress bars.

JAX is imported inside the commands, not at the top, so ``gdlab --help`` answers at once.
Every bad input ends in one sentence on stderr and exit code 2; a run that completes exits 0
whatever its stop reason (``converged``, ``max_steps`` or ``diverged``).
"""

from __future__ import annotations

import json
import math
import os
import sys
from typing import Any

import click
from rich.console import Console

USAGE_ERROR = 2


class UserError(Exception):
    """Bad input detected by gdlab itself: one sentence, exit code 2."""


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="gdlab", prog_name="gdlab")
def app() -> None:
    """gdlab: gradient descent in parameter space and in distribution space.

    Fit distributions by gradient descent on KL divergence and see how step size, momentum,
    schedules and parameterizations behave. N(m, v) means mean m and VARIANCE v.
    """


def finite(name: str, value: float | None) -> None:
    """Refuse NaN and ±inf for the option ``name`` (None means not given)."""
    if value is not None and not math.isfinite(value):
        raise UserError(f"{name} must be a finite number, got {value}.")


def check_json_path(json_out: str | None) -> None:
    """Fail before any work if ``--json PATH`` cannot be written (``-`` is stdout)."""
    import os

    if json_out not in (None, "-") and not os.access(os.path.dirname(os.path.abspath(json_out)), os.W_OK):
        raise UserError(f"cannot write --json {json_out!r}: its folder does not exist or is not writable; "
                        f"give a writable path or '-'.")


def emit_json(payload: dict, json_out: str | None) -> None:
    """Write ``payload`` to ``--json PATH``, or to stdout (alone) for ``-``; nothing for None."""
    if json_out == "-":
        sys.stdout.write(json.dumps(payload) + "\n")
    elif json_out is not None:
        try:
            with open(json_out, "w") as fh:
                json.dump(payload, fh)
        except OSError as exc:
            raise UserError(f"cannot write --json {json_out!r}: {exc.strerror}; give a writable path or '-'.") from None


def progress_bar(console: Console, quiet: bool = False):
    """A rich progress bar on ``console``, shown only on a terminal and not with ``--json -``."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console, transient=True, disable=quiet or not console.is_terminal)


def engine_options(f):
    """--engine, --scheduler, --workers: where the work runs (``gdlab sweep ...`` and ``gdlab train``)."""
    options = [
        click.option("--engine", type=click.Choice(["local", "dask"]), default="local", show_default=True,
                     help="local: this process. dask: a Dask cluster (the dask extra: pip install 'gdlab[dask]'), the "
                          "one at --scheduler or a local one of --workers processes."),
        click.option("--scheduler", default=None, metavar="ADDRESS",
                     help="--engine dask: a running Dask scheduler, e.g. tcp://host:8786."),
        click.option("--workers", type=int, default=None, metavar="N",
                     help="--engine dask: start a local cluster of N worker processes on 127.0.0.1 (default: one per "
                          "CPU core)."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def json_num(x: Any) -> Any:
    """JSON-safe numbers: NaN and ±inf become null; arrays become nested lists."""
    import numpy as np

    arr = np.asarray(x, dtype=float)
    if arr.ndim == 0:
        v = float(arr)
        return v if math.isfinite(v) else None
    return [json_num(a) for a in arr]


def fmt(x: Any) -> str:
    """A number or array for a table cell."""
    import numpy as np

    arr = np.asarray(x, dtype=float)
    if arr.ndim == 0:
        return f"{float(arr):.10g}"
    return np.array2string(arr, precision=8, separator=", ", suppress_small=False)


COMPILATION_CACHE_ENV = "GDLAB_COMPILATION_CACHE"


def use_compilation_cache(environ: dict = os.environ) -> str | None:
    """Point JAX's persistent compilation cache at gdlab's cache folder, for this process.

    A command's first run compiles its programs (about a second for ``gdlab fit``); later runs
    with the same shapes and settings load them from disk. The folder is
    ``$GDLAB_COMPILATION_CACHE``, else ``$XDG_CACHE_HOME/gdlab/jax`` (``~/.cache/gdlab/jax``);
    ``GDLAB_COMPILATION_CACHE=off`` turns it off, and a folder that cannot be written is skipped
    (the run is only slower). A cache the user set up for JAX
    (``JAX_COMPILATION_CACHE_DIR``) is left alone, and so is a process that imported JAX
    already (a library user's own settings). Returns the folder used, or None.

    Example:
      >>> env = {"GDLAB_COMPILATION_CACHE": "off"}
      >>> use_compilation_cache(env) is None
      True
    """
    folder = environ.get(COMPILATION_CACHE_ENV)
    if (folder or "").strip().lower() in ("off", "0", "no", "false") or "JAX_COMPILATION_CACHE_DIR" in environ \
            or (environ is os.environ and "jax" in sys.modules):
        return None
    if not folder:
        base = environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        folder = os.path.join(base, "gdlab", "jax")
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError:
        return None                 # a cache is a speed-up: a folder we cannot make is no error
    if not os.access(folder, os.W_OK):
        return None
    environ["JAX_COMPILATION_CACHE_DIR"] = folder
    # JAX caches only programs that took a second to compile by default; gdlab's take less,
    # and together they are most of a command's start-up
    environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    return folder


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``gdlab`` script: runs the app, turns every bad input into exit code 2."""
    from gdlab.specs import SpecError

    use_compilation_cache()
    args = sys.argv[1:] if argv is None else argv
    err = Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)
    try:
        app.main(args=args, prog_name="gdlab", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.exceptions.NoArgsIsHelpError as exc:  # `gdlab` or `gdlab fit` alone: show the help
        click.echo(exc.ctx.get_help() if exc.ctx is not None else "")
        return 0
    except click.exceptions.Abort:
        err.print("gdlab: aborted.")
        return 130
    except click.ClickException as exc:  # bad option, missing value, unknown choice
        # one line: click lists the choices of a missing option one per line
        err.print(f"gdlab: error: {' '.join(exc.format_message().split())}", markup=False)
        return USAGE_ERROR
    except (UserError, SpecError, ValueError) as exc:
        err.print(f"gdlab: error: {exc}", markup=False)
        return USAGE_ERROR
    return 0


from gdlab.cli import fit as _fit  # noqa: E402,F401  (each import registers its command on `app`)
from gdlab.cli import train as _train  # noqa: E402,F401
from gdlab.cli import fisher as _fisher  # noqa: E402,F401
from gdlab.cli import compare as _compare  # noqa: E402,F401
from gdlab.cli import landscape as _landscape  # noqa: E402,F401
from gdlab.cli import sweep as _sweep  # noqa: E402,F401
from gdlab.cli import explore as _explore  # noqa: E402,F401

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
