"""``gdlab compare-params``: the same optimizer from the same q in every parameterization."""

from __future__ import annotations

from typing import Optional

import click
from rich.console import Console
from rich.table import Table

from gdlab.cli import UserError, app, check_json_path, emit_json, finite, json_num

ALL_PARAMS = "mean_var,mean_std,mean_logstd,mean_precision,natural,expectation"


@app.command("compare-params", no_args_is_help=True)
@click.option("--target", required=True, help='1-D target p, e.g. "N(3, 0.5)" or "0.5*N(-2, 0.25) + 0.5*N(2, 0.25)". '
              "N(mean, VARIANCE).")
@click.option("--init", default="N(0, 5)", show_default=True, help="The starting q, the same in every parameterization.")
@click.option("--divergence", type=click.Choice(["forward", "reverse"]), default="forward", show_default=True,
              help="forward = KL(p||q); reverse = KL(q||p).")
@click.option("--optimizer", type=click.Choice(["gd", "momentum", "nesterov", "adam", "natural"]), default="natural",
              show_default=True, help="The optimizer whose invariance is measured.")
@click.option("--versus", type=click.Choice(["gd", "momentum", "nesterov", "adam", "natural", "none"]), default="gd",
              show_default=True, help="A second optimizer run the same way, side by side ('none' for one column).")
@click.option("--lr", type=float, default=0.05, show_default=True, help="The step size of every run.")
@click.option("--steps", type=click.IntRange(1, 1_000_000), default=200, show_default=True,
              help="Updates per run (no early stop).")
@click.option("--params", default=ALL_PARAMS, show_default=True,
              help="Comma-separated parameterizations of the 1-D Gaussian to compare (two or more).")
@click.option("--momentum", type=float, default=None, help="Momentum for momentum/nesterov/natural runs.")
@click.option("--damping", type=float, default=None, help="Damping of the natural gradient's Fisher (default 0).")
@click.option("--json", "json_out", default=None, metavar="PATH|-",
              help="Write the comparison as JSON to PATH, or to stdout with '-'.")
@click.option("--plot", "plot_path", default=None, metavar="PATH",
              help="Draw the KL between parameterizations per step and the paths of q (PNG, SVG or PDF).")
@click.option("--plot-size", default="1200x600", show_default=True, help="The picture's size in pixels, WIDTHxHEIGHT.")
def compare_params_command(target: str, init: str, divergence: str, optimizer: str, versus: str, lr: float,
                           steps: int, params: str, momentum: Optional[float], damping: Optional[float],
                           json_out: Optional[str], plot_path: Optional[str], plot_size: str) -> None:
    """Run one optimizer from the same q in every parameterization; report how far apart the q's get.

    For each pair of parameterizations: the largest KL between the two runs' q's at the same
    step (the larger of the two directions), over all steps. Natural-gradient paths coincide to
    first order in --lr (the natural gradient is a property of the distributions, not of the
    coordinates); plain-gradient paths do not.

    \b
    Example:
      gdlab compare-params --target "N(3, 0.5)" --init "N(0, 5)" --optimizer natural --lr 0.05 --steps 200
      gdlab compare-params --target "N(3, 0.5)" --lr 0.01 --params mean_var,mean_logstd,mean_precision --plot inv.png
    """
    from gdlab.invariance import compare_params
    from gdlab.specs import parse_distribution

    check_json_path(json_out)
    size = None
    if plot_path is not None:
        from gdlab import plots

        plots.check_figure_path(plot_path)
        size = plots.parse_size(plot_size)
    for name, value in (("--lr", lr), ("--momentum", momentum), ("--damping", damping)):
        finite(name, value)
    names = tuple(p.strip() for p in params.split(",") if p.strip())
    optimizers = (optimizer,) if versus in ("none", optimizer) else (optimizer, versus)
    target_spec = parse_distribution(target, what="--target")
    init_spec = parse_distribution(init, what="--init")
    if target_spec.dim != 1 or init_spec.dim != 1:
        raise UserError("compare-params compares the parameterizations of a 1-D Gaussian; give a 1-D --target and --init.")
    if damping is not None and not damping >= 0:
        raise UserError(f"--damping must be a number >= 0, got {damping}.")
    result = compare_params(target_spec, init_spec, divergence, optimizers, lr=lr, steps=steps, params=names,
                            momentum=momentum, damping=damping)
    if plot_path is not None:
        plots.save_figure(plots.param_comparison_figure(result, size=size), plot_path)
    emit_json(_payload(result, divergence), json_out)
    if json_out != "-":
        _print(Console(), result)


def _ending(run) -> str:
    return run.stop_reason if run.stop_reason != "diverged" else f"diverged at step {run.steps}"


def _payload(result, divergence: str) -> dict:
    pairs = []
    for a, b in ((g.params) for g in result.gaps if g.optimizer == result.optimizers[0]):
        row = {"params": [a, b], "max_kl": {}, "steps_compared": {}}
        for g in result.gaps:
            if g.params == (a, b):
                row["max_kl"][g.optimizer] = json_num(g.max_kl)
                row["steps_compared"][g.optimizer] = g.steps_compared
        pairs.append(row)
    runs = [{"optimizer": name, "param": param, "stop_reason": run.stop_reason, "steps": run.steps,
             "q": {"mean": json_num(run.q.mean), "var": json_num(run.q.var)}, "loss": json_num(run.loss)}
            for (name, param), run in result.runs.items()]
    return {"optimizers": list(result.optimizers), "params": list(result.params), "lr": result.lr,
            "steps": result.steps, "divergence": divergence, "pairs": pairs,
            "max_kl": {name: json_num(result.max_gap(name)) for name in result.optimizers}, "runs": runs}


def _print(console: Console, result) -> None:
    table = Table(title=f"largest KL between the q's of two parameterizations at the same step "
                        f"(lr {result.lr:g}, {result.steps} steps)", header_style="bold")
    table.add_column("parameterizations")
    for name in result.optimizers:
        table.add_column(f"max KL, {name}", justify="right")
    by_pair: dict = {}
    for g in result.gaps:
        by_pair.setdefault(g.params, {})[g.optimizer] = g
    for (a, b), row in by_pair.items():
        cells = []
        for name in result.optimizers:
            g = row[name]
            text = f"{g.max_kl:.3g}"
            if g.steps_compared < result.steps + 1:
                gone = [p for p in (a, b) if result.runs[(name, p)].stop_reason == "diverged"]
                text += f" (steps 0-{g.steps_compared - 1}; {' and '.join(gone)} diverged)"
            cells.append(text)
        table.add_row(f"{a} vs {b}", *cells)
    console.print(table)
    runs = Table(title="where each run ended", header_style="bold")
    for col in ("optimizer", "parameterization", "mean", "variance", "stop reason"):
        runs.add_column(col)
    for (name, param), run in result.runs.items():
        runs.add_row(name, param, f"{run.q.mean:.8g}", f"{run.q.var:.8g}", _ending(run))
    console.print(runs)
    for name in result.optimizers:
        console.print(f"{name}: the paths stay within KL {result.max_gap(name):.3g} of each other.", highlight=False)
