"""What ``gdlab fit`` gains for pictures and comparisons: ``--plot``, ``--animate``, ``--compare``.

The fit command only adds :func:`options` to its decorators and calls :func:`prepare` (checks,
before any work), :func:`run_compare` (when ``--compare`` is given) and :func:`draw`.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

import click
from rich.console import Console
from rich.table import Table

from gdlab.cli import UserError, emit_json, fmt, json_num


class Extras(NamedTuple):
    plot_path: Optional[str]
    animate_path: Optional[str]
    size: tuple[int, int]
    specs: list


def options(f):
    """``--plot``, ``--animate``, ``--plot-size`` and ``--compare SPEC...`` for ``gdlab fit``."""
    opts = [
        click.option("--plot", "plot_path", default=None, metavar="PATH",
                     help="Draw the fit (1-D): p and q at the start, chosen steps and the end; both KLs against "
                          "steps; the path over the KL contours in (mean, log variance). .png, .svg or .pdf."),
        click.option("--animate", "animate_path", default=None, metavar="PATH.gif",
                     help="Write an animation of the fit (1-D) as a GIF (pillow; no ffmpeg needed)."),
        click.option("--plot-size", default="1200x800", show_default=True, metavar="WxH",
                     help="Size of --plot in pixels (--animate: the same width, half the height)."),
        click.option("--compare", multiple=True, metavar="SPEC",
                     help="Fit once per optimizer and draw them together: --compare \"gd:lr=0.1\" "
                          "\"momentum:lr=0.1,momentum=0.9\" \"natural:lr=0.5\" (keys lr, momentum, damping, "
                          "trust_region, schedule, decay, decay_steps, alpha, period, period_mult)."),
        click.argument("extra_specs", nargs=-1, metavar=""),
    ]
    for option in reversed(opts):
        f = option(f)
    return f


def prepare(target_spec, plot_path, animate_path, plot_size, compare, extra_specs) -> Extras:
    """Check the pictures' paths and size and parse the specs, before any work."""
    from gdlab import plots
    from gdlab.cli.landscape import compare_specs

    size = plots.parse_size(plot_size)
    if plot_path is not None:
        plots.check_figure_path(plot_path)
    if animate_path is not None:
        plots.check_figure_path(animate_path, "--animate", (".gif",))
    if (plot_path or animate_path) and target_spec.dim != 1:
        raise UserError(f"--plot and --animate draw 1-D fits (densities and the (mean, log variance) plane); this "
                        f"target is {target_spec.dim}-D.")
    return Extras(plot_path, animate_path, size, compare_specs(compare, extra_specs))


def _label(optimizer: str, lr: float, momentum, schedule: str) -> str:
    text = f"{optimizer}, lr {lr:g}"
    if optimizer in ("momentum", "nesterov"):
        text += f", momentum {0.9 if momentum is None else momentum:g}"
    return text + (f", {schedule}" if schedule != "constant" else "")


def draw(extras: Extras, target_spec, runs: list, divergence: str, title: Optional[str] = None) -> None:
    """Write ``--plot`` and ``--animate`` for (label, FitResult) pairs."""
    if extras.plot_path is None and extras.animate_path is None:
        return
    from gdlab import plots

    fit_runs = [plots.fit_run(label, result) for label, result in runs]
    if extras.plot_path is not None:
        plots.save_figure(plots.fit_figure(target_spec, fit_runs, divergence, title=title, size=extras.size),
                          extras.plot_path)
    if extras.animate_path is not None:
        plots.animate_fit(target_spec, fit_runs[0], divergence, extras.animate_path, title=title,
                          size=(extras.size[0], max(100, extras.size[1] // 2)))


def draw_single(extras: Extras, target_spec, result, optimizer: str, lr: float, momentum, schedule: str) -> None:
    """The pictures of one fit, titled with what ran and how it ended."""
    label = _label(optimizer, lr, momentum, schedule)
    direction = "KL(p‖q)" if result.divergence == "forward" else "KL(q‖p)"
    title = (f"{label}: minimise {direction} to p = {target_spec.text}; {result.stop_reason} after {result.steps} "
             f"steps at N({result.q.mean:.4g}, {result.q.var:.4g})") if target_spec.dim == 1 else None
    draw(extras, target_spec, [(label, result)], result.divergence, title)


def run_compare(extras: Extras, target_spec, init_spec, divergence: str, defaults: dict, fit_options: dict,
                json_out: Optional[str]) -> None:
    """Fit once per ``--compare`` spec; one table, one figure, and the JSON with every run."""
    from gdlab.comparison import compare_fit, label

    runs = compare_fit(target_spec, init_spec, divergence, extras.specs, defaults, **fit_options)
    labels = [label(spec, defaults) for spec, _ in runs]
    direction = "KL(p‖q)" if divergence == "forward" else "KL(q‖p)"
    draw(extras, target_spec, list(zip(labels, (r for _, r in runs))), divergence,
         f"{len(runs)} optimizers minimise {direction} to p = {target_spec.text}")
    best = min(range(len(runs)), key=lambda i: runs[i][1].loss if runs[i][1].loss == runs[i][1].loss else float("inf"))
    emit_json(_compare_json(runs, labels, best, divergence), json_out)
    if json_out == "-":
        return
    table = Table(title=f"fit: {len(runs)} optimizers minimise {direction}", show_header=True, header_style="bold")
    for column in ("optimizer", "steps to converge", "final loss", "q", "stop reason"):
        table.add_column(column, overflow="fold")
    for lab, (_, r) in zip(labels, runs):
        q = f"N({fmt(r.q.mean)}, {fmt(r.q.var)})" if target_spec.dim == 1 else fmt(r.q.mean)
        table.add_row(lab, str(r.steps) if r.stop_reason == "converged" else "—", fmt(r.loss), q, r.stop_reason)
    Console().print(table)


def _compare_json(runs, labels, best: int, divergence: str) -> dict[str, Any]:
    def one(spec, lab, r):
        return {"spec": spec.text, "label": lab, "stop_reason": r.stop_reason, "steps": r.steps,
                "steps_to_converge": r.steps if r.stop_reason == "converged" else None, "loss": json_num(r.loss),
                "kl_forward": json_num(r.kl_forward), "kl_reverse": json_num(r.kl_reverse),
                "q": {"mean": json_num(r.q.mean), "var": json_num(r.q.var)},
                "trace": {"step": [int(s) for s in r.trace.step], "loss": json_num(r.trace.loss),
                          "lr": json_num(r.trace.lr)}}

    rows = [one(spec, lab, r) for lab, (spec, r) in zip(labels, runs)]
    b = rows[best]
    return {"divergence": divergence, "best_run": best, "stop_reason": b["stop_reason"], "steps": b["steps"],
            "loss": b["loss"], "q": b["q"], "runs": rows}
