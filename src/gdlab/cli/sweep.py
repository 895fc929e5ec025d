"""``gdlab sweep fit|train|landscape``: a grid of hyperparameters run as one compiled, vmap-ed program."""

from __future__ import annotations

from typing import Optional

import click
from rich.console import Console
from rich.table import Table

from gdlab.cli import UserError, app, check_json_path, emit_json, engine_options, fmt, progress_bar
from gdlab.cli.landscape import check_numbers, parse_point, schedule_options, stop_options
from gdlab.cli.train import check_options, length_options, model_options, optimizer_options

GRID_HELP = ("A hyperparameter axis: name=a:b:n (n values from a to b), name=a:b:n:log (log-spaced) or "
             "name=v1,v2,... Repeat for more axes. Names: lr, momentum (momentum/nesterov), damping (natural; "
             "sweep train: natural, natural-diag), the schedule's options (decay, decay_steps, alpha, period, "
             "period_mult), and the start: init_mean, init_var (sweep fit, 1-D) or x0, y0 (sweep landscape).")


@app.group("sweep", no_args_is_help=True)
def sweep_group() -> None:
    """Run a grid of hyperparameters as one compiled program (vmap over the cells).

    Every cell is the run `gdlab fit`, `gdlab train` (full batch) or `gdlab landscape` would make
    with that cell's settings;
    the learning rate, momentum, schedule options and start are values in the compiled program,
    not constants, so the whole grid compiles once.
    """


def sweep_outputs(f):
    options = [
        click.option("--grid", "grid", multiple=True, required=True, metavar="NAME=SPEC", help=GRID_HELP),
        click.option("--out", "out_path", default=None, metavar="PATH",
                     help="Write one row per cell to PATH: .csv, .parquet or .json (by the suffix)."),
        click.option("--heatmap", "heatmap_path", default=None, metavar="PATH",
                     help="Draw steps to converge over two grid axes to PATH (.png, .svg, .pdf); cells that "
                          "diverged or hit max-steps are marked apart."),
        click.option("--heatmap-axes", default=None, metavar="X,Y",
                     help="The two grid axes of --heatmap (default: the first two with more than one value)."),
        click.option("--plot-size", default="1200x800", show_default=True, metavar="WxH",
                     help="Size of --heatmap in pixels."),
        click.option("--reach", type=float, default=None, metavar="LOSS",
                     help="Also report, per cell, the first step at which the loss is <= LOSS (steps_to_reach)."),
        click.option("--exact", is_flag=True, default=False,
                     help="Run the cells one after another inside the compiled program: bit for bit the single "
                          "runs (vmap, the default, agrees to rounding; which is faster depends on the objective)."),
        click.option("--json", "json_out", default=None, metavar="PATH|-",
                     help="Write the whole table and the settings as JSON to PATH, or to stdout with '-'."),
    ]
    for option in reversed(options):
        f = option(f)
    return engine_options(f)


def _caller(kind: str, engine: str, scheduler: Optional[str], workers: Optional[int], args: tuple, kwargs: dict):
    """``(call(callback), what the progress bar counts)``: the sweep here, as one compiled program
    (progress in cells), or on a Dask cluster in blocks (progress in blocks)."""
    if engine == "local":
        from gdlab import sweep

        run = getattr(sweep, f"sweep_{kind}")
        return (lambda callback: run(*args, **kwargs, callback=callback)), "cells stopped"
    from gdlab.distributed import distributed_sweep

    return (lambda callback: distributed_sweep(kind, *args, scheduler=scheduler, workers=workers, callback=callback,
                                               **kwargs)), "blocks done"


def _prepare_outputs(out_path, heatmap_path, heatmap_axes, plot_size, json_out, grid_axes):
    """Check every output before any work: paths, the picture's size and the heatmap's axes."""
    from gdlab import plots
    from gdlab.sweep import check_table_path

    if out_path is not None:
        check_table_path(out_path)
    size = plots.parse_size(plot_size)
    if heatmap_path is not None:
        plots.check_figure_path(heatmap_path, "--heatmap")
    axes = None
    if heatmap_axes is not None:
        axes = [a.strip() for a in heatmap_axes.split(",")]
        if len(axes) != 2 or not all(axes):
            raise UserError(f"--heatmap-axes takes two grid axes as X,Y, got {heatmap_axes!r}.")
        if heatmap_path is None:
            raise UserError("--heatmap-axes applies to --heatmap; give --heatmap PATH too.")
        names = [a.name for a in grid_axes]
        for name in axes:
            if name not in names:
                raise UserError(f"--heatmap-axes {name!r} is not a --grid axis; the axes are {', '.join(names)}.")
    if heatmap_path is not None:
        varying = [a.name for a in grid_axes if len(a.values) > 1]
        if len(varying) > 2:
            raise UserError(f"--heatmap draws two axes but the grid varies {len(varying)} ({', '.join(varying)}); "
                            f"give the others one value each, or drop --heatmap.")
    check_json_path(json_out)
    return size, axes


def _run(call, out_path, heatmap_path, axes, size, json_out, what="cells stopped"):
    """Run the sweep with a progress bar, then write the table, the heatmap and the summary."""
    from gdlab import plots
    from gdlab.sweep import write_table

    err = Console(stderr=True)
    progress = progress_bar(err, quiet=json_out == "-")
    with progress:
        task = progress.add_task(what, total=None)
        result = call(lambda done, n: progress.update(task, completed=done, total=n))
    if out_path is not None:
        write_table(result, out_path)
    if heatmap_path is not None:
        x_axis, y_axis = axes if axes else (None, None)
        plots.save_figure(plots.sweep_heatmap(result, x_axis, y_axis, size=size), heatmap_path)
    if json_out is not None:
        emit_json({"kind": result.kind, "axes": {a.name: list(a.values) for a in result.axes},
                   "settings": result.settings, "elapsed": result.elapsed, "counts": result.counts(),
                   "cells": result.rows()}, json_out)
    if json_out == "-":
        counts = result.counts()
        err.print(f"{len(result)} cells: {counts['converged']} converged, {counts['max_steps']} max_steps, "
                  f"{counts['diverged']} diverged in {result.elapsed:.2f} s", highlight=False)
    else:
        _print_summary(Console(), result, out_path, heatmap_path)


def _cell_settings(result, row: dict) -> str:
    return ", ".join(f"{a.name}={row[a.name]:g}" for a in result.axes)


def _print_summary(console: Console, result, out_path, heatmap_path) -> None:
    import math

    rows = result.rows()
    loss = result.loss_name()
    how = "one compiled program"
    if result.settings.get("engine") == "dask":
        how = f"{result.settings['blocks']} blocks on {result.settings['workers']} Dask workers"
    table = Table(title=f"sweep {result.kind}: {len(rows)} cells, {how}", show_header=True, header_style="bold")
    table.add_column("quantity")
    table.add_column("value", overflow="fold")
    table.add_row("grid", " × ".join(f"{a.name} ({len(a.values)}{', log' if a.log else ''})" for a in result.axes))
    for reason, count in result.counts().items():
        table.add_row(reason, str(count))
    converged = [r for r in rows if r["steps_to_converge"] is not None]
    if converged:
        fastest = min(converged, key=lambda r: r["steps_to_converge"])
        table.add_row("fastest to converge", f"{fastest['steps_to_converge']} steps at {_cell_settings(result, fastest)}")
    finite = [r for r in rows if r[loss] is not None and math.isfinite(r[loss])]
    if finite:
        best = min(finite, key=lambda r: r[loss])
        table.add_row(f"lowest final {loss}", f"{fmt(best[loss])} at {_cell_settings(result, best)}")
    if "at_global_minimum" in result.columns:
        table.add_row("ended at a global minimum", f"{sum(result.columns['at_global_minimum'])} of {len(rows)} cells")
    table.add_row("time", f"{result.elapsed:.2f} s for all cells")
    if out_path is not None:
        table.add_row("table", out_path)
    if heatmap_path is not None:
        table.add_row("heatmap", heatmap_path)
    console.print(table)


@sweep_group.command("fit", no_args_is_help=True)
@click.option("--target", required=True, help='Target p, e.g. "0.5*N(-2, 0.25) + 0.5*N(2, 0.25)". N(mean, VARIANCE).')
@click.option("--init", default=None, help="Starting q, one Gaussian (default: N(0, 5) in 1-D, N(0, I) in d-D).")
@click.option("--family", type=click.Choice(["gaussian", "diag-gaussian"]), default="gaussian", show_default=True,
              help="q's family: full covariance or diagonal.")
@click.option("--divergence", type=click.Choice(["forward", "reverse"]), default="forward", show_default=True,
              help="forward = KL(p||q) (mass-covering); reverse = KL(q||p) (mode-seeking).")
@click.option("--param", default=None, help="Parameterization of a 1-D q (mean_var, mean_std, mean_logstd, "
                                            "mean_precision, natural, expectation).")
@click.option("--optimizer", type=click.Choice(["gd", "momentum", "nesterov", "adam", "natural"]), default="gd",
              show_default=True, help="The optimizer of every cell.")
@schedule_options
@click.option("--damping", type=float, default=None, help="natural: damping added to the Fisher's diagonal.")
@click.option("--trust-region", type=float, default=None, help="natural: the KL each step may move q by.")
@stop_options
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=0, show_default=True,
              help="Seed of the Monte Carlo draws (mixtures in 3 or more dimensions).")
@click.option("--samples", type=click.IntRange(2, 10_000_000), default=4096, show_default=True,
              help="Monte Carlo draws for mixtures in 3 or more dimensions.")
@sweep_outputs
def sweep_fit_command(target: str, init: Optional[str], family: str, divergence: str, param: Optional[str],
                      optimizer: str, lr: Optional[float], momentum: Optional[float], schedule: str,
                      decay: Optional[float], decay_steps: Optional[int], alpha: float, period: Optional[int],
                      period_mult: float, damping: Optional[float], trust_region: Optional[float], max_steps: int,
                      tol: float, patience: int, grad_tol: float, seed: int, samples: int, grid: tuple[str, ...],
                      out_path: Optional[str], heatmap_path: Optional[str], heatmap_axes: Optional[str],
                      plot_size: str, reach: Optional[float], exact: bool, json_out: Optional[str], engine: str,
                      scheduler: Optional[str], workers: Optional[int]) -> None:
    """Fit q to p for every cell of a hyperparameter grid, all cells in one compiled program.

    \b
    Example:
      gdlab sweep fit --target "0.5*N(-2,0.25)+0.5*N(2,0.25)" --init "N(0.5,5)" --divergence reverse \\
            --optimizer momentum --grid lr=0.001:1:40:log --grid momentum=0,0.5,0.9,0.99 \\
            --max-steps 2000 --out sweep.csv --heatmap sweep.png
      gdlab sweep fit --target "N(2,1)" --grid lr=1e-4:1:200:log --grid momentum=0:0.99:50 --optimizer momentum \\
            --engine dask --workers 2
    """
    from gdlab.distributed import check_engine
    from gdlab.specs import parse_distribution
    from gdlab.sweep import parse_grid

    check_engine(engine, scheduler, workers)

    if lr is None:
        lr = 1.0 if optimizer == "natural" else 0.1       # as gdlab fit
    check_numbers(lr=lr, momentum=momentum, decay=decay, alpha=alpha, period_mult=period_mult, tol=tol,
                  grad_tol=grad_tol, damping=damping, trust_region=trust_region, reach=reach)
    target_spec = parse_distribution(target, what="--target")
    init_spec = None if init is None else parse_distribution(init, what="--init")
    axes = [parse_grid(g) for g in grid]
    size, hm_axes = _prepare_outputs(out_path, heatmap_path, heatmap_axes, plot_size, json_out, axes)

    call, what = _caller("fit", engine, scheduler, workers, (target_spec, init_spec, divergence, optimizer, axes),
                         dict(lr=lr, momentum=momentum, damping=damping, trust_region=trust_region, schedule=schedule,
                              decay=decay, decay_steps=decay_steps, alpha=alpha, period=period,
                              period_mult=period_mult, family=family, param=param, max_steps=max_steps, tol=tol,
                              patience=patience, grad_tol=grad_tol, samples=samples, seed=seed, reach=reach,
                              vectorize=not exact))
    _run(call, out_path, heatmap_path, hm_axes, size, json_out, what)


@sweep_group.command("landscape", no_args_is_help=True)
@click.option("--function", "function", required=True,
              help="A named landscape (double-well, himmelblau, ...) or an expression in x (and y).")
@click.option("--init", default=None, metavar="X[,Y]", help="Start point (default: the named landscape's start).")
@click.option("--optimizer", type=click.Choice(["gd", "momentum", "nesterov", "adam", "natural"]), default="gd",
              show_default=True, help="The optimizer of every cell (natural is refused: a landscape has no Fisher).")
@schedule_options
@stop_options
@sweep_outputs
def sweep_landscape_command(function: str, init: Optional[str], optimizer: str, lr: Optional[float],
                            momentum: Optional[float], schedule: str, decay: Optional[float],
                            decay_steps: Optional[int], alpha: float, period: Optional[int], period_mult: float,
                            max_steps: int, tol: float, patience: int, grad_tol: float, grid: tuple[str, ...],
                            out_path: Optional[str], heatmap_path: Optional[str], heatmap_axes: Optional[str],
                            plot_size: str, reach: Optional[float], exact: bool, json_out: Optional[str], engine: str,
                            scheduler: Optional[str], workers: Optional[int]) -> None:
    """Minimise a landscape for every cell of a hyperparameter grid, all cells in one compiled program.

    \b
    Example:
      gdlab sweep landscape --function double-well --init 1.5 --optimizer momentum \\
            --grid lr=0.001:0.3:20:log --grid momentum=0,0.5,0.9 --max-steps 2000 --heatmap dw.png
    """
    from gdlab.distributed import check_engine
    from gdlab.sweep import parse_grid

    check_engine(engine, scheduler, workers)
    lr = 0.01 if lr is None else lr
    check_numbers(lr=lr, momentum=momentum, decay=decay, alpha=alpha, period_mult=period_mult, tol=tol,
                  grad_tol=grad_tol, reach=reach)
    start = parse_point(init, "--init")
    axes = [parse_grid(g) for g in grid]
    size, hm_axes = _prepare_outputs(out_path, heatmap_path, heatmap_axes, plot_size, json_out, axes)

    call, what = _caller("landscape", engine, scheduler, workers, (function, start, optimizer, axes),
                         dict(lr=lr, momentum=momentum, schedule=schedule, decay=decay, decay_steps=decay_steps,
                              alpha=alpha, period=period, period_mult=period_mult, max_steps=max_steps, tol=tol,
                              patience=patience, grad_tol=grad_tol, reach=reach, vectorize=not exact))
    _run(call, out_path, heatmap_path, hm_axes, size, json_out, what)


@sweep_group.command("train", no_args_is_help=True)
@model_options
@optimizer_options
@length_options
@sweep_outputs
def sweep_train_command(data: str, target: Optional[str], features: Optional[str], model: str, loss: Optional[str],
                        test_size: float, standardize: bool, init: str, seed: int, l2: Optional[float],
                        C: Optional[float], optimizer: str, lr: Optional[float], momentum: Optional[float],
                        damping: Optional[float], solver: str, schedule: str, decay: Optional[float],
                        decay_steps: Optional[int], alpha: float, period: Optional[int], period_mult: float,
                        epochs: Optional[int], max_steps: Optional[int], tol: float, patience: int, grad_tol: float,
                        grid: tuple[str, ...], out_path: Optional[str], heatmap_path: Optional[str],
                        heatmap_axes: Optional[str], plot_size: str, reach: Optional[float], exact: bool,
                        json_out: Optional[str], engine: str, scheduler: Optional[str],
                        workers: Optional[int]) -> None:
    """Train a model by batch gradient descent for every cell of a hyperparameter grid, in one compiled program.

    The data, model, penalty and stopping options are those of `gdlab train` (full batch: every
    step uses all training rows), the same for every cell; each cell is the `gdlab train` run
    with that cell's settings (final loss, steps, stop reason).

    \b
    Example:
      gdlab sweep train --data breast_cancer --model logistic --optimizer momentum \\
            --grid lr=0.01:3:12:log --grid momentum=0,0.5,0.9 --max-steps 2000 --out sweep.csv --heatmap sweep.png
    """
    from gdlab.distributed import check_engine
    from gdlab.sweep import parse_grid

    check_engine(engine, scheduler, workers)
    feature_list = check_options(lr=lr, momentum=momentum, damping=damping, decay=decay, alpha=alpha,
                                 period_mult=period_mult, l2=l2, C=C, tol=tol, grad_tol=grad_tol, schedule=schedule,
                                 period=period, features=features)
    check_numbers(reach=reach)
    axes = [parse_grid(g) for g in grid]
    size, hm_axes = _prepare_outputs(out_path, heatmap_path, heatmap_axes, plot_size, json_out, axes)

    call, what = _caller("train", engine, scheduler, workers, (data, model, optimizer, axes),
                         dict(loss=loss, target=target, features=feature_list, lr=lr, momentum=momentum,
                              damping=damping, solver=solver, schedule=schedule, decay=decay, decay_steps=decay_steps,
                              alpha=alpha, period=period, period_mult=period_mult, epochs=epochs,
                              max_steps=max_steps, test_size=test_size, standardize=standardize, init=init, seed=seed,
                              l2=l2, C=C, tol=tol, patience=patience, grad_tol=grad_tol, reach=reach,
                              vectorize=not exact))
    _run(call, out_path, heatmap_path, hm_axes, size, json_out, what)
