"""``gdlab landscape``: gradient descent on a 1-D or 2-D function, single runs, multistart, comparisons."""

from __future__ import annotations

from typing import Optional

import click
from rich.console import Console
from rich.table import Table

from gdlab.cli import UserError, app, check_json_path, emit_json, finite, fmt, json_num, progress_bar

SCHEDULE_CHOICES = ["constant", "exponential", "step", "cosine", "warm-restarts"]
MAX_DRAWN_RUNS = 512        # multistart runs whose traces a picture (or the JSON) keeps


def schedule_options(f):
    """The learning-rate options shared with ``gdlab fit`` (same names, same meaning)."""
    options = [
        click.option("--lr", type=float, default=None, help="Step size (learning rate); negative runs gradient ascent."),
        click.option("--momentum", type=float, default=None,
                     help="Momentum in [0, 1] for momentum/nesterov (default 0.9; 0 keeps none, 0.99 keeps more)."),
        click.option("--schedule", type=click.Choice(SCHEDULE_CHOICES), default="constant", show_default=True,
                     help="Learning-rate schedule: exponential = annealing; warm-restarts = SGDR."),
        click.option("--decay", type=float, default=None, help="exponential/step: factor per decay period, in (0, 1] (0.99)."),
        click.option("--decay-steps", type=click.IntRange(1, 2**31 - 2), default=None,
                     help="exponential: steps per factor (1); step: steps between drops (100); cosine: length (max-steps)."),
        click.option("--alpha", type=float, default=0.0, show_default=True,
                     help="cosine/warm-restarts: the final lr as a fraction of --lr."),
        click.option("--period", type=click.IntRange(1, 2**31 - 2), default=None,
                     help="warm-restarts: length of the first cycle in steps (100)."),
        click.option("--period-mult", type=float, default=1.0, show_default=True,
                     help="warm-restarts: each cycle is this many times longer than the last (>= 1)."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def stop_options(f):
    options = [
        click.option("--max-steps", type=click.IntRange(0, 2**31 - 2), default=10_000, show_default=True,
                     help="Stop after this many updates."),
        click.option("--tol", type=float, default=1e-15, show_default=True,
                     help="Converged when the loss moved by at most tol*max(1, |loss|) over the last --patience "
                          "steps; 0 turns it off."),
        click.option("--patience", type=click.IntRange(1, 100_000), default=20, show_default=True,
                     help="The window of steps that --tol looks at."),
        click.option("--grad-tol", type=float, default=0.0, show_default=True,
                     help="Converged when the gradient norm <= this; 0 turns it off."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def check_numbers(**values) -> None:
    for name, value in values.items():
        finite("--" + name.replace("_", "-"), value)


def make_rate(schedule: str, lr: float, decay, decay_steps, alpha, period, period_mult, max_steps: int):
    """The learning rate or schedule from the options, refusing options the schedule does not use."""
    from gdlab import schedules

    if schedule not in ("exponential", "step") and decay is not None:
        raise UserError(f"--decay applies to the exponential and step schedules, not {schedule!r}.")
    if schedule != "warm-restarts" and (period is not None or period_mult != 1.0):
        raise UserError(f"--period and --period-mult apply to --schedule warm-restarts, not {schedule!r}.")
    if schedule not in ("exponential", "step", "cosine") and decay_steps is not None:
        raise UserError(f"--decay-steps applies to the exponential, step and cosine schedules, not {schedule!r}.")
    return schedules.make_schedule(schedule, lr, decay=decay, decay_steps=decay_steps, alpha=alpha, period=period,
                                   period_mult=period_mult, horizon=max_steps)


def parse_point(text: Optional[str], what: str) -> Optional[list[float]]:
    """``"1.5"`` or ``"-1, 2"`` → a list of floats (None stays None)."""
    import math

    if text is None:
        return None
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise UserError(f"{what} {text!r} is not a point: give numbers separated by commas, e.g. 1.5 or -1,2.") from None
    if not all(math.isfinite(v) for v in values):
        raise UserError(f"{what} must be finite numbers, got {text!r}.")
    return values


def parse_box(text: Optional[str], dim: int):
    """``"lo,hi"`` (every axis) or ``"xlo,xhi,ylo,yhi"`` → ((lo, hi), ...)."""
    values = parse_point(text, "--box")
    if values is None:
        return None
    if len(values) == 2:
        values = values * dim
    if len(values) != 2 * dim:
        raise UserError(f"--box takes lo,hi (every axis) or {'xlo,xhi,ylo,yhi' if dim == 2 else 'lo,hi'}; "
                        f"got {len(values)} numbers for a {dim}-D landscape.")
    return tuple((values[2 * i], values[2 * i + 1]) for i in range(dim))


def compare_specs(compare: tuple[str, ...], extra: tuple[str, ...]) -> list:
    """The ``--compare`` specs: the option's values and the words that follow it."""
    from gdlab.comparison import parse_optimizer_spec

    if extra and not compare:
        raise UserError(f"unexpected argument {extra[0]!r}; optimizer specs follow --compare, e.g. "
                        f"--compare \"gd:lr=0.1\" \"momentum:lr=0.1,momentum=0.9\".")
    return [parse_optimizer_spec(text) for text in (*compare, *extra)]


def picture_options(f):
    options = [
        click.option("--plot", "plot_path", default=None, metavar="PATH",
                     help="Draw the run(s) to PATH (.png, .svg or .pdf)."),
        click.option("--animate", "animate_path", default=None, metavar="PATH.gif",
                     help="Write an animation of the run(s) as a GIF (pillow; no ffmpeg needed)."),
        click.option("--plot-size", default="1200x800", show_default=True, metavar="WxH",
                     help="Size of --plot in pixels (--animate uses 3/4 of it)."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def check_picture_paths(plot_path, animate_path, plot_size):
    from gdlab import plots

    size = plots.parse_size(plot_size)
    if plot_path is not None:
        plots.check_figure_path(plot_path)
    if animate_path is not None:
        plots.check_figure_path(animate_path, "--animate", (".gif",))
    return size


@app.command("landscape", no_args_is_help=True)
@click.option("--function", "function", required=True,
              help="A named landscape (double-well, bowl, himmelblau, rosenbrock, rastrigin, ackley, beale, "
                   "six-hump-camel) or an expression in x (1-D) or x and y (2-D), e.g. \"x**4 - 3*x**2 + x\".")
@click.option("--init", default=None, metavar="X[,Y]", help="Start point (default: the named landscape's start).")
@click.option("--optimizer", type=click.Choice(["gd", "momentum", "nesterov", "adam", "natural"]), default="gd",
              show_default=True, help="Plain gradient descent, heavy-ball momentum, Nesterov or Adam "
                                      "(natural needs a distribution, so it is refused here).")
@schedule_options
@stop_options
@click.option("--multistart", type=click.IntRange(1, 1_000_000), default=None, metavar="N",
              help="Run from N random starts in the box at once (vmap) and keep the best.")
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=0, show_default=True,
              help="Seed of the --multistart starts.")
@click.option("--box", default=None, metavar="LO,HI[,LO,HI]",
              help="Where --multistart draws starts and pictures look: lo,hi for every axis or xlo,xhi,ylo,yhi "
                   "(default: the landscape's box, [-5, 5] per axis for expressions).")
@click.option("--found-tol", type=float, default=1e-6, show_default=True,
              help="A run found a recorded minimum when it ends within this distance of it.")
@click.option("--exact", is_flag=True, default=False,
              help="--multistart: run the starts one after another inside the compiled program, bit for bit the "
                   "single runs (slower than the default vmap, which agrees to rounding).")
@click.option("--compare", multiple=True, metavar="SPEC",
              help="Run several optimizers from --init and draw them together: --compare \"gd:lr=0.1\" "
                   "\"momentum:lr=0.1,momentum=0.9\" (keys lr, momentum, schedule, decay, decay_steps, alpha, "
                   "period, period_mult).")
@click.argument("extra_specs", nargs=-1, metavar="")
@picture_options
@click.option("--json", "json_out", default=None, metavar="PATH|-",
              help="Write the result (best point, runs, minima, trace) as JSON to PATH, or to stdout with '-'.")
def landscape_command(function: str, init: Optional[str], optimizer: str, lr: Optional[float],
                      momentum: Optional[float], schedule: str, decay: Optional[float], decay_steps: Optional[int],
                      alpha: float, period: Optional[int], period_mult: float, max_steps: int, tol: float,
                      patience: int, grad_tol: float, multistart: Optional[int], seed: int, box: Optional[str],
                      found_tol: float, exact: bool, compare: tuple[str, ...], extra_specs: tuple[str, ...],
                      plot_path: Optional[str], animate_path: Optional[str], plot_size: str,
                      json_out: Optional[str]) -> None:
    """Minimise a 1-D or 2-D function by gradient descent: local and global minima, warm restarts, multistart.

    \b
    Examples:
      gdlab landscape --function double-well --init 1.5 --optimizer gd --lr 0.01     # stays in the local minimum
      gdlab landscape --function double-well --init 1.5 --optimizer gd --lr 0.1 \\
                      --schedule warm-restarts --period 50 --period-mult 2           # escapes to the global one
      gdlab landscape --function himmelblau --multistart 64 --seed 0 --plot runs.png
      gdlab landscape --function "x**4 - 3*x**2 + x" --init 2 --optimizer momentum --lr 0.01 --momentum 0.9
      gdlab landscape --function rosenbrock --compare "gd:lr=0.001" "momentum:lr=0.001,momentum=0.9"
    """
    from gdlab import optim
    from gdlab.landscapes import get_landscape
    from gdlab.sweep import _NO_FISHER

    lr = 0.01 if lr is None else lr
    check_numbers(lr=lr, momentum=momentum, decay=decay, alpha=alpha, period_mult=period_mult, tol=tol,
                  grad_tol=grad_tol, found_tol=found_tol)
    if found_tol <= 0:
        raise UserError(f"--found-tol must be a positive distance, got {found_tol}.")
    specs = compare_specs(compare, extra_specs)
    if optimizer == "natural" and not specs:
        raise UserError(_NO_FISHER)
    landscape = get_landscape(function)
    landscape = get_landscape(landscape, parse_box(box, landscape.dim)) if box is not None else landscape
    start = parse_point(init, "--init")
    if start is not None and len(start) != landscape.dim:
        raise UserError(f"--init has {len(start)} coordinate{'s' if len(start) != 1 else ''} but the landscape is "
                        f"{landscape.dim}-D; give {landscape.dim}, e.g. --init {'1.5' if landscape.dim == 1 else '1,2'}.")
    if start is None and landscape.start is None and multistart is None:
        raise UserError(f"the expression has no default start; give --init "
                        f"{'X' if landscape.dim == 1 else 'X,Y'} or --multistart N.")
    if specs and multistart is not None:
        raise UserError("--compare runs each optimizer once from --init; drop --multistart (or --compare).")
    if exact and multistart is None:
        raise UserError("--exact applies to --multistart.")
    size = check_picture_paths(plot_path, animate_path, plot_size)
    check_json_path(json_out)
    rate = make_rate(schedule, lr, decay, decay_steps, alpha, period, period_mult, max_steps)
    stop = dict(max_steps=max_steps, tol=tol, patience=patience, grad_tol=grad_tol)
    err = Console(stderr=True)
    quiet = json_out == "-"

    if specs:
        from gdlab.comparison import compare_landscape, label

        defaults = dict(lr=lr, momentum=momentum, schedule=schedule, decay=decay, decay_steps=decay_steps,
                        alpha=alpha, period=period, period_mult=period_mult)
        runs = compare_landscape(landscape, start, specs, defaults, **stop)
        labels = [label(spec, defaults) for spec, _ in runs]
        payload = _compare_payload(landscape, runs, labels)
        title = f"{len(runs)} optimizers on {landscape.name} from {_point(runs[0][1].trace.params[0])}"
        _draw(landscape, [(lab, r.trace) for lab, (_, r) in zip(labels, runs)], None, title, plot_path,
              animate_path, size)
        emit_json(payload, json_out)
        if not quiet:
            _print_compare(Console(), landscape, runs, labels)
        return

    opt = optim.by_name(optimizer, rate, momentum)
    described = _describe(optimizer, lr, momentum, schedule)
    if multistart is not None:
        from gdlab.landscapes import multistart as run_multistart

        drawing = plot_path is not None or animate_path is not None
        if drawing and multistart > MAX_DRAWN_RUNS:
            raise UserError(f"--plot and --animate draw at most {MAX_DRAWN_RUNS} runs; give --multistart "
                            f"{MAX_DRAWN_RUNS} or fewer, or drop the picture.")
        progress = progress_bar(err, quiet=quiet)
        with progress:
            task = progress.add_task("runs stopped", total=multistart)
            res = run_multistart(landscape, multistart, opt, seed=seed, **stop, found_tol=found_tol,
                                 keep_traces=drawing or (json_out is not None and multistart <= MAX_DRAWN_RUNS),
                                 vectorize=not exact, callback=lambda done, n: progress.update(task, completed=done))
        payload = _multistart_payload(landscape, res, described, seed)
        if res.traces is not None:
            payload["trace"] = _trace_json(res.traces[res.best])
        elif json_out is not None:
            # too many runs to keep every trace: the best run's trace from running it alone
            from gdlab.landscapes import minimize

            payload["trace"] = _trace_json(minimize(landscape, res.starts[res.best], opt, **stop).trace)
        if drawing:
            paths = [(f"best run (#{res.best})" if i == res.best else f"run {i}", t) for i, t in enumerate(res.traces)]
            title = (f"{described} from {multistart} random starts on {landscape.name}: best f = {res.f[res.best]:.3g}"
                     + (f", {res.global_minima_found} of {len(landscape.global_minima)} global minima found"
                        if res.global_minima_found is not None else ""))
            _draw(landscape, paths, res.best, title, plot_path, animate_path, size)
        emit_json(payload, json_out)
        if not quiet:
            _print_multistart(Console(), landscape, res, described)
        return

    from gdlab.landscapes import minimize

    res = minimize(landscape, start, opt, **stop)
    payload = {
        "function": landscape.name, "dim": landscape.dim, "x": json_num(res.x), "f": json_num(res.f),
        "stop_reason": res.stop_reason, "steps": res.steps,
        "steps_to_converge": res.steps if res.stop_reason == "converged" else None,
        "runs": [{"x": json_num(res.x), "f": json_num(res.f), "stop_reason": res.stop_reason, "steps": res.steps,
                  "start": json_num(res.trace.params[0])}],
        **_minima_json(landscape, [res.x], found_tol),
        "optimizer": optimizer, "lr": lr, "momentum": momentum, "schedule": schedule, "elapsed": res.elapsed,
        "trace": _trace_json(res.trace),
    }
    title = (f"{described} on {landscape.name} from {_point(res.trace.params[0])}: {res.stop_reason} after "
             f"{res.steps} steps at {_point(res.x)}, f = {res.f:.6g}")
    _draw(landscape, [(described, res.trace)], None, title, plot_path, animate_path, size)
    emit_json(payload, json_out)
    if quiet:
        err.print(f"{res.stop_reason} after {res.steps} steps, f = {fmt(res.f)}", highlight=False)
    else:
        _print_single(Console(), landscape, res, described, payload)


# ------------------------------------------------------------------------------ helpers

def _describe(optimizer: str, lr: float, momentum, schedule: str) -> str:
    text = f"{optimizer}, lr {lr:g}"
    if optimizer in ("momentum", "nesterov"):
        text += f", momentum {0.9 if momentum is None else momentum:g}"
    if schedule != "constant":
        text += f", {schedule}"
    return text


def _point(x) -> str:
    """A point for titles and messages: (1.5) → "1.5", (−1.5, 2) → "(-1.5, 2)"."""
    import numpy as np

    values = [f"{v:.6g}" for v in np.atleast_1d(np.asarray(x, dtype=float))]
    return values[0] if len(values) == 1 else "(" + ", ".join(values) + ")"


def _trace_json(trace) -> dict:
    return {"step": [int(s) for s in trace.step], "f": json_num(trace.loss), "lr": json_num(trace.lr),
            "x": json_num(trace.params), "grad_norm": json_num(trace.grad_norm)}


def _minima_json(landscape, ends, found_tol: float) -> dict:
    from gdlab.landscapes import minima_found

    reached = found = None
    if landscape.global_minima:
        reached, found = minima_found(ends, landscape.global_minima, found_tol)
    return {"global_minima": [list(m.x) for m in landscape.global_minima],
            "global_minimum_value": min((m.f for m in landscape.global_minima), default=None),
            "local_minima": [list(m.x) for m in landscape.local_minima],
            "global_minima_found": found, "reached_global": reached}


def _multistart_payload(landscape, res, described: str, seed: int) -> dict:
    best = res.best
    return {
        "function": landscape.name, "dim": landscape.dim, "x": json_num(res.x[best]), "f": json_num(res.f[best]),
        "stop_reason": res.stop_reason[best], "steps": int(res.steps[best]),
        "runs": [{"x": json_num(res.x[i]), "f": json_num(res.f[i]), "stop_reason": res.stop_reason[i],
                  "steps": int(res.steps[i]), "start": json_num(res.starts[i])} for i in range(len(res.f))],
        "best_run": best, "multistart": len(res.f), "seed": seed, "box": [list(b) for b in landscape.box],
        "global_minima": [list(m.x) for m in landscape.global_minima],
        "global_minimum_value": min((m.f for m in landscape.global_minima), default=None),
        "local_minima": [list(m.x) for m in landscape.local_minima],
        "global_minima_found": res.global_minima_found, "reached_global": res.reached_global,
        "optimizer": described, "elapsed": res.elapsed,
    }


def _compare_payload(landscape, runs, labels) -> dict:
    import numpy as np

    fs = np.array([r.f if np.isfinite(r.f) else np.inf for _, r in runs])
    best = int(np.argmin(fs))
    b = runs[best][1]
    return {
        "function": landscape.name, "dim": landscape.dim, "x": json_num(b.x), "f": json_num(b.f),
        "stop_reason": b.stop_reason, "steps": b.steps, "best_run": best,
        "runs": [{"spec": spec.text, "label": lab, "x": json_num(r.x), "f": json_num(r.f),
                  "stop_reason": r.stop_reason, "steps": r.steps,
                  "steps_to_converge": r.steps if r.stop_reason == "converged" else None,
                  "trace": _trace_json(r.trace)} for lab, (spec, r) in zip(labels, runs)],
        **_minima_json(landscape, [r.x for _, r in runs], 1e-6),
        "trace": _trace_json(b.trace),
    }


def _draw(landscape, traces, best, title, plot_path, animate_path, size) -> None:
    if plot_path is None and animate_path is None:
        return
    from gdlab import plots

    paths = [plots.path_from_trace(lab, tr) for lab, tr in traces]
    if plot_path is not None:
        plots.save_figure(plots.landscape_figure(landscape, paths, best=best, title=title, size=size), plot_path)
    if animate_path is not None:
        plots.animate_landscape(landscape, paths, animate_path, title=title,
                                size=(max(100, size[0] * 3 // 4), max(100, size[1] * 3 // 4)))


def _where(landscape, x) -> str:
    import numpy as np

    for kind, minima in (("global minimum", landscape.global_minima), ("local minimum", landscape.local_minima)):
        for m in minima:
            if np.all(np.isfinite(x)) and np.linalg.norm(np.asarray(x) - np.asarray(m.x)) <= 1e-6:
                return f"the {kind} at {_point(m.x)}"
    return ""


def _print_single(console: Console, landscape, res, described: str, payload: dict) -> None:
    table = Table(title=f"landscape: {landscape.name}", show_header=True, header_style="bold")
    table.add_column("quantity")
    table.add_column("value", overflow="fold")
    table.add_row("optimizer", described)
    table.add_row("start", fmt(res.trace.params[0]))
    table.add_row("end x", fmt(res.x))
    table.add_row("f(x)", fmt(res.f))
    if payload["global_minimum_value"] is not None:
        table.add_row("global minimum f*", fmt(payload["global_minimum_value"]))
    table.add_row("steps", str(res.steps))
    table.add_row("stop reason", res.stop_reason)
    table.add_row("time", f"{res.elapsed:.2f} s")
    console.print(table)
    where = _where(landscape, res.x)
    console.print(f"{res.stop_reason} after {res.steps} steps" + (f", at {where}." if where else "."), highlight=False)


def _print_multistart(console: Console, landscape, res, described: str) -> None:
    import numpy as np

    n = len(res.f)
    table = Table(title=f"landscape: {landscape.name}, {n} random starts", show_header=True, header_style="bold")
    table.add_column("quantity")
    table.add_column("value", overflow="fold")
    table.add_row("optimizer", described)
    table.add_row("best run", f"#{res.best} from {fmt(res.starts[res.best])}")
    table.add_row("best x", fmt(res.x[res.best]))
    table.add_row("best f", fmt(res.f[res.best]))
    for reason in ("converged", "max_steps", "diverged"):
        table.add_row(reason, str(int(np.sum(np.asarray(res.stop_reason) == reason))))
    if res.global_minima_found is not None:
        table.add_row("reached a global minimum", f"{res.reached_global} of {n} runs")
        table.add_row("global minima found", f"{res.global_minima_found} of {len(landscape.global_minima)}")
    table.add_row("time", f"{res.elapsed:.2f} s (one compiled program)")
    console.print(table)


def _print_compare(console: Console, landscape, runs, labels) -> None:
    table = Table(title=f"landscape: {landscape.name}, {len(runs)} optimizers", show_header=True, header_style="bold")
    for column in ("optimizer", "steps to converge", "final f", "end x", "stop reason"):
        table.add_column(column, overflow="fold")
    for lab, (_, r) in zip(labels, runs):
        table.add_row(lab, str(r.steps) if r.stop_reason == "converged" else "—", fmt(r.f), fmt(r.x), r.stop_reason)
    console.print(table)
