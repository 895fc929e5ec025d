"""``gdlab fit``: fit a Gaussian q to a target p by gradient descent on KL divergence."""

from __future__ import annotations

from typing import Optional

import click
from rich.console import Console
from rich.table import Table

from gdlab.cli import UserError, app, check_json_path, emit_json, finite, fmt, json_num, progress_bar
from gdlab.cli import fit_extras


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
@click.option("--optimizer", type=click.Choice(["gd", "momentum", "nesterov", "adam", "natural"]), default="gd",
              show_default=True, help="Plain gradient descent, heavy-ball momentum, Nesterov, Adam, or natural "
              "gradient (the step preconditioned by q's Fisher information).")
@click.option("--lr", type=float, default=None,
              help="Step size (learning rate); default 0.1, and 1 for natural (a full natural step). Negative "
              "values run gradient ascent (try -0.02: the run runs away).")
@click.option("--momentum", type=float, default=None,
              help="Momentum in [0, 1] for momentum/nesterov (default 0.9; 0 keeps none, 0.99 keeps more); "
              "natural: [0, 1), default 0.")
@click.option("--damping", type=float, default=None,
              help="natural: lambda >= 0 added to the Fisher's diagonal, (F + lambda I)^-1 grad (default 0).")
@click.option("--trust-region", type=float, default=None, metavar="EPS",
              help="natural: move q by KL(q_old||q_new) = EPS per step (e.g. 0.01), capped at the --lr step; "
              "the per-step KL is in the JSON trace as step_kl.")
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
@fit_extras.options
def fit_command(target: str, init: Optional[str], family: str, divergence: str, param: Optional[str],
                optimizer: str, lr: Optional[float], momentum: Optional[float], damping: Optional[float],
                trust_region: Optional[float], schedule: str, decay: Optional[float],
                decay_steps: Optional[int], alpha: float, period: Optional[int], period_mult: float,
                max_steps: int, tol: float, patience: int, grad_tol: float, seed: int, samples: int,
                json_out: Optional[str], plot_path: Optional[str] = None, animate_path: Optional[str] = None,
                plot_size: str = "1200x800", compare: tuple = (), extra_specs: tuple = ()) -> None:
    """Fit a Gaussian q to a target p by gradient descent on KL divergence, in either direction.

    \b
    Examples:
      gdlab fit --target "N(2, 1)" --init "N(0, 5)" --divergence forward --optimizer gd --lr 0.1
      gdlab fit --target "0.5*N(-2, 0.25) + 0.5*N(2, 0.25)" --init "N(0.5, 5)" \\
                --divergence reverse --optimizer momentum --lr 0.05 --momentum 0.9 --json -
    """
    from gdlab import optim, schedules
    from gdlab.fitting import fit
    from gdlab.specs import parse_distribution

    target_spec = parse_distribution(target, what="--target")
    init_spec = None if init is None else parse_distribution(init, what="--init")
    check_json_path(json_out)
    extras = fit_extras.prepare(target_spec, plot_path, animate_path, plot_size, compare, extra_specs)

    if lr is None:
        lr = 1.0 if optimizer == "natural" else 0.1
    _check_natural_options(optimizer, damping, trust_region)
    for name, value in (("--lr", lr), ("--momentum", momentum), ("--damping", damping),
                        ("--trust-region", trust_region), ("--decay", decay), ("--alpha", alpha),
                        ("--period-mult", period_mult), ("--tol", tol), ("--grad-tol", grad_tol)):
        finite(name, value)
    rate = schedules.make_schedule(schedule, lr, decay=decay, decay_steps=decay_steps, alpha=alpha, period=period,
                                   period_mult=period_mult, horizon=max_steps)
    if schedule not in ("exponential", "step") and decay is not None:
        raise UserError(f"--decay applies to the exponential and step schedules, not {schedule!r}.")
    if schedule != "warm-restarts" and (period is not None or period_mult != 1.0):
        raise UserError(f"--period and --period-mult apply to --schedule warm-restarts, not {schedule!r}.")
    opt = optim.by_name(optimizer, rate, momentum, damping=damping, trust_region=trust_region)
    if extras.specs:
        fit_extras.run_compare(extras, target_spec, init_spec, divergence,
                               dict(lr=lr, momentum=momentum, damping=damping, trust_region=trust_region,
                                    schedule=schedule, decay=decay, decay_steps=decay_steps, alpha=alpha,
                                    period=period, period_mult=period_mult),
                               dict(family=family, param=param, max_steps=max_steps, tol=tol, patience=patience,
                                    grad_tol=grad_tol, samples=samples, seed=seed), json_out)
        return

    err = Console(stderr=True)
    progress = progress_bar(err, quiet=json_out == "-")
    with progress:
        task = progress.add_task("fitting", total=max_steps)
        result = fit(target_spec, init_spec, divergence, opt, family=family, param=param, max_steps=max_steps, tol=tol,
                     patience=patience, grad_tol=grad_tol, samples=samples, seed=seed,
                     callback=lambda rows: progress.update(task, completed=int(rows["step"][-1]) if len(rows["step"]) else 0))

    fit_extras.draw_single(extras, target_spec, result, optimizer, lr, momentum, schedule)
    emit_json(_fit_json(result, lr, optimizer, schedule, damping, trust_region), json_out)
    if json_out == "-":
        err.print(result.message, highlight=False)
    else:
        _print_fit(Console(), result)


def _check_natural_options(optimizer: str, damping: Optional[float], trust_region: Optional[float]) -> None:
    if optimizer != "natural":
        for flag, value in (("--damping", damping), ("--trust-region", trust_region)):
            if value is not None:
                raise UserError(f"{flag} applies to --optimizer natural, not {optimizer!r}; use --optimizer natural "
                                f"or drop {flag}.")
    if damping is not None and not damping >= 0:
        raise UserError(f"--damping must be a number >= 0 (0 for none, 1e-6 for a nearly singular Fisher), got {damping}.")
    if trust_region is not None and not trust_region > 0:
        raise UserError(f"--trust-region must be a positive KL per step, e.g. 0.01, got {trust_region}.")


def _fit_json(result, lr: float, optimizer: str, schedule: str, damping: Optional[float] = None,
              trust_region: Optional[float] = None) -> dict:
    tr = result.trace
    trace = {name: json_num(getattr(tr, name)) for name in ("loss", "mean", "var", "lr", "grad_norm")}
    trace["step"] = [int(s) for s in tr.step]
    for name in ("kl_forward", "kl_reverse", "step_kl"):
        if name in tr:
            trace[name] = json_num(getattr(tr, name))
    trace["params"] = json_num(tr.params)
    return {
        "stop_reason": result.stop_reason,
        "steps": result.steps,
        "loss": json_num(result.loss),
        "kl_forward": json_num(result.kl_forward),
        "kl_reverse": json_num(result.kl_reverse),
        "q": {"mean": json_num(result.q.mean), "var": json_num(result.q.var)},
        "message": result.message,
        "divergence": result.divergence,
        "family": result.family.name,
        "param": result.family.param,
        "params": json_num(result.params),
        "optimizer": optimizer,
        "lr": lr,
        "schedule": schedule,
        "damping": damping,
        "trust_region": trust_region,
        "elapsed": result.elapsed,
        "trace": trace,
    }


def _print_fit(console: Console, result) -> None:
    table = Table(title=f"fit: minimise {'KL(p||q)' if result.divergence == 'forward' else 'KL(q||p)'}",
                  show_header=True, header_style="bold")
    table.add_column("quantity")
    table.add_column("value", overflow="fold")
    one_d = result.family.dim == 1
    table.add_row("mean", fmt(result.q.mean))
    table.add_row("variance" if one_d else "covariance", fmt(result.q.var))
    table.add_row("KL(p||q)  forward", fmt(result.kl_forward))
    table.add_row("KL(q||p)  reverse", fmt(result.kl_reverse))
    table.add_row("steps", str(result.steps))
    table.add_row("stop reason", result.stop_reason)
    table.add_row("parameterization", f"{result.family.name} / {result.family.param}")
    table.add_row("time", f"{result.elapsed:.2f} s")
    console.print(table)
    console.print(result.message, highlight=False)
