"""The ``gdlab`` command line: ``gdlab fit`` (more commands arrive with their issues).

JAX is imported inside the commands, not at the top, so ``gdlab --help`` answers at once.
Every bad input ends in one sentence on stderr and exit code 2; a run that completes exits 0
whatever its stop reason (``converged``, ``max_steps`` or ``diverged``).
"""

from __future__ import annotations

import json
import math
import sys
from typing import Any, Optional

import click
from rich.console import Console
from rich.table import Table

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


@app.command("fit", no_args_is_help=True)
@click.option("--target", required=True, help='Target p, e.g. "N(2, 1)", "0.5*N(-2, 0.25) + 0.5*N(2, 0.25)" or '
              '"N([1,2], [[2,0.5],[0.5,1]])". N(mean, VARIANCE).')
@click.option("--init", default=None, help="Starting q, one Gaussian of the target's dimension. "
              "Default: N(0, 5) in 1-D (the source text's start), N(0, I) in d-D.")
@click.option("--family", type=click.Choice(["gaussian", "diag-gaussian"]), default="gaussian", show_default=True,
              help="q's family: full covariance or diagonal.")
@click.option("--divergence", type=click.Choice(["forward", "reverse"]), default="forward", show_default=True,
              help="forward = KL(p||q) (mass-covering); reverse = KL(q||p) (mode-seeking).")
@click.option("--param", default=None, help="Parameterization of a 1-D q: mean_var (default), mean_std, "
              "mean_logstd, mean_precision, natural, expectation. d-D: cholesky (gaussian) or mean_logstd (diag-gaussian).")
@click.option("--optimizer", type=click.Choice(["gd", "momentum", "nesterov", "adam"]), default="gd",
              show_default=True, help="Plain gradient descent, heavy-ball momentum, Nesterov or Adam.")
@click.option("--lr", type=float, default=0.1, show_default=True,
              help="Step size (learning rate). Negative values run gradient ascent (try -0.02: the run runs away).")
@click.option("--momentum", type=float, default=None,
              help="Momentum in [0, 1] for momentum/nesterov (default 0.9; 0 keeps none, 0.99 keeps more).")
@click.option("--schedule", type=click.Choice(["constant", "exponential", "step", "cosine", "warm-restarts"]),
              default="constant", show_default=True,
              help="Learning-rate schedule: exponential = annealing; warm-restarts = SGDR.")
@click.option("--decay", type=float, default=None, help="exponential/step: factor per decay period, in (0, 1] (0.99).")
@click.option("--decay-steps", type=click.IntRange(1, 2**31 - 2), default=None,
              help="exponential: steps per factor (1); step: steps between drops (100); cosine: length (max-steps).")
@click.option("--alpha", type=float, default=0.0, show_default=True,
              help="cosine/warm-restarts: the final lr as a fraction of --lr.")
@click.option("--period", type=click.IntRange(1, 2**31 - 2), default=None, help="warm-restarts: length of the first cycle in steps (100).")
@click.option("--period-mult", type=float, default=1.0, show_default=True,
              help="warm-restarts: each cycle is this many times longer than the last (>= 1).")
@click.option("--max-steps", type=click.IntRange(0, 2**31 - 2), default=10_000, show_default=True, help="Stop after this many updates.")
@click.option("--tol", type=float, default=1e-15, show_default=True,
              help="Converged when the loss moved by at most tol*max(1, |loss|) over the last --patience "
              "steps; 0 turns it off (run exactly --max-steps unless diverged).")
@click.option("--patience", type=click.IntRange(1, 100_000), default=20, show_default=True, help="The window of steps that --tol looks at.")
@click.option("--grad-tol", type=float, default=0.0, show_default=True,
              help="Converged when the gradient norm <= this; 0 turns it off.")
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=0, show_default=True,
              help="Seed of the Monte Carlo draws (mixtures in 3 or more dimensions).")
@click.option("--samples", type=click.IntRange(2, 10_000_000), default=4096, show_default=True,
              help="Monte Carlo draws for mixtures in 3 or more dimensions.")
@click.option("--json", "json_out", default=None, metavar="PATH|-",
              help="Write the result and its trace as JSON to PATH, or to stdout with '-' (stdout then holds "
              "the JSON alone).")
def fit_command(target: str, init: Optional[str], family: str, divergence: str, param: Optional[str],
                optimizer: str, lr: float, momentum: Optional[float], schedule: str, decay: Optional[float],
                decay_steps: Optional[int], alpha: float, period: Optional[int], period_mult: float,
                max_steps: int, tol: float, patience: int, grad_tol: float, seed: int, samples: int,
                json_out: Optional[str]) -> None:
    """Fit a Gaussian q to a target p by gradient descent on KL divergence, in either direction.

    \b
    Examples:
      gdlab fit --target "N(2, 1)" --init "N(0, 5)" --divergence forward --optimizer gd --lr 0.1
      gdlab fit --target "0.5*N(-2, 0.25) + 0.5*N(2, 0.25)" --init "N(0.5, 5)" \\
                --divergence reverse --optimizer momentum --lr 0.05 --momentum 0.9 --json -
    """
    import os

    from gdlab import optim, schedules
    from gdlab.fitting import fit
    from gdlab.specs import parse_distribution

    target_spec = parse_distribution(target, what="--target")
    init_spec = None if init is None else parse_distribution(init, what="--init")
    if json_out not in (None, "-") and not os.access(os.path.dirname(os.path.abspath(json_out)), os.W_OK):
        raise UserError(f"cannot write --json {json_out!r}: its folder does not exist or is not writable; "
                        f"give a writable path or '-'.")

    _finite("--lr", lr)
    for name, value in (("--momentum", momentum), ("--decay", decay), ("--alpha", alpha),
                        ("--period-mult", period_mult), ("--tol", tol), ("--grad-tol", grad_tol)):
        if value is not None:
            _finite(name, value)
    rate = schedules.make_schedule(schedule, lr, decay=decay, decay_steps=decay_steps, alpha=alpha, period=period,
                                   period_mult=period_mult, horizon=max_steps)
    if schedule not in ("exponential", "step") and decay is not None:
        raise UserError(f"--decay applies to the exponential and step schedules, not {schedule!r}.")
    if schedule != "warm-restarts" and (period is not None or period_mult != 1.0):
        raise UserError(f"--period and --period-mult apply to --schedule warm-restarts, not {schedule!r}.")
    opt = optim.by_name(optimizer, rate, momentum)

    err = Console(stderr=True)
    progress = _progress(err, max_steps, quiet=json_out == "-")
    with progress:
        task = progress.add_task("fitting", total=max_steps)
        result = fit(target_spec, init_spec, divergence, opt, family=family, param=param, max_steps=max_steps, tol=tol,
                     patience=patience, grad_tol=grad_tol, samples=samples, seed=seed,
                     callback=lambda rows: progress.update(task, completed=int(rows["step"][-1]) if len(rows["step"]) else 0))

    payload = _fit_json(result, lr, optimizer, schedule)
    if json_out == "-":
        sys.stdout.write(json.dumps(payload) + "\n")
        err.print(result.message, highlight=False)
        return
    if json_out is not None:
        try:
            with open(json_out, "w") as fh:
                json.dump(payload, fh)
        except OSError as exc:
            raise UserError(f"cannot write --json {json_out!r}: {exc.strerror}; give a writable path or '-'.") from None
    _print_fit(Console(), result)


def _finite(name: str, value: float) -> None:
    if not math.isfinite(value):
        raise UserError(f"{name} must be a finite number, got {value}.")


def _progress(console: Console, total: int, quiet: bool):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console, transient=True, disable=quiet or not console.is_terminal)


def _num(x: Any) -> Any:
    """JSON-safe numbers: NaN and ±inf become null; arrays become nested lists."""
    import numpy as np

    arr = np.asarray(x, dtype=float)
    if arr.ndim == 0:
        v = float(arr)
        return v if math.isfinite(v) else None
    return [_num(a) for a in arr]


def _fit_json(result, lr: float, optimizer: str, schedule: str) -> dict:
    tr = result.trace
    trace = {name: _num(getattr(tr, name)) for name in ("loss", "mean", "var", "lr", "grad_norm")}
    trace["step"] = [int(s) for s in tr.step]
    for name in ("kl_forward", "kl_reverse"):
        if name in tr:
            trace[name] = _num(getattr(tr, name))
    trace["params"] = _num(tr.params)
    return {
        "stop_reason": result.stop_reason,
        "steps": result.steps,
        "loss": _num(result.loss),
        "kl_forward": _num(result.kl_forward),
        "kl_reverse": _num(result.kl_reverse),
        "q": {"mean": _num(result.q.mean), "var": _num(result.q.var)},
        "message": result.message,
        "divergence": result.divergence,
        "family": result.family.name,
        "param": result.family.param,
        "params": _num(result.params),
        "optimizer": optimizer,
        "lr": lr,
        "schedule": schedule,
        "elapsed": result.elapsed,
        "trace": trace,
    }


def _fmt(x: Any) -> str:
    import numpy as np

    arr = np.asarray(x, dtype=float)
    if arr.ndim == 0:
        return f"{float(arr):.10g}"
    return np.array2string(arr, precision=8, separator=", ", suppress_small=False)


def _print_fit(console: Console, result) -> None:
    table = Table(title=f"fit: minimise {'KL(p||q)' if result.divergence == 'forward' else 'KL(q||p)'}",
                  show_header=True, header_style="bold")
    table.add_column("quantity")
    table.add_column("value", overflow="fold")
    one_d = result.family.dim == 1
    table.add_row("mean", _fmt(result.q.mean))
    table.add_row("variance" if one_d else "covariance", _fmt(result.q.var))
    table.add_row("KL(p||q)  forward", _fmt(result.kl_forward))
    table.add_row("KL(q||p)  reverse", _fmt(result.kl_reverse))
    table.add_row("steps", str(result.steps))
    table.add_row("stop reason", result.stop_reason)
    table.add_row("parameterization", f"{result.family.name} / {result.family.param}")
    table.add_row("time", f"{result.elapsed:.2f} s")
    console.print(table)
    console.print(result.message, highlight=False)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``gdlab`` script: runs the app, turns every bad input into exit code 2."""
    from gdlab.specs import SpecError

    args = sys.argv[1:] if argv is None else argv
    err = Console(stderr=True, highlight=False, soft_wrap=True)
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
        err.print(f"gdlab: error: {exc.format_message()}", markup=False)
        return USAGE_ERROR
    except (UserError, SpecError, ValueError) as exc:
        err.print(f"gdlab: error: {exc}", markup=False)
        return USAGE_ERROR
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
