"""``gdlab train``: train a linear, logistic or softmax regression by gradient descent."""

from __future__ import annotations

import math
import re
from typing import Any, Optional

import click
from rich.console import Console
from rich.table import Table

from gdlab.cli import UserError, app, check_json_path, emit_json, engine_options, finite, fmt, json_num, progress_bar

MODELS = ("linear", "logistic", "softmax")
LOSSES = ("mse", "rmse", "cross-entropy")
OPTIMIZERS = ("gd", "momentum", "nesterov", "adam", "natural", "natural-diag")
SCHEDULES = ("constant", "exponential", "step", "cosine", "warm-restarts")
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


class BatchSize(click.ParamType):
    """A mini-batch size in rows; 0 or ``full`` for batch gradient descent."""

    name = "ROWS|full"

    def convert(self, value: Any, param, ctx) -> int:
        if isinstance(value, int):
            text = str(value)
        else:
            text = str(value).strip()
        if text.lower() == "full":
            return 0
        if re.fullmatch(r"\d+", text) and int(text) <= 2**31 - 2:
            return int(text)
        self.fail(f"{value!r} is not a batch size: give a whole number of rows ≥ 1 for mini-batch SGD, or 0 or "
                  f"'full' for batch gradient descent.", param, ctx)


class ByteSize(click.ParamType):
    """Bytes, with an optional 1024-based unit: 512M, 2G, 1GiB, 300MB."""

    name = "BYTES"

    def convert(self, value: Any, param, ctx) -> int:
        found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmMgGtT]?)(?:i?[bB])?\s*", str(value))
        if found:
            size = int(float(found.group(1)) * _UNITS[found.group(2).lower()])
            if size >= 1 << 20:
                return size
        self.fail(f"{value!r} is not a memory size of at least 1M: give bytes with an optional unit, e.g. 512M or 2G.",
                  param, ctx)


def _with(options: list, f):
    for option in reversed(options):
        f = option(f)
    return f


def model_options(f):
    """What to train: --data, --target, --features, --model, --loss, --test-size, --standardize, --init,
    --seed, --l2, --C (shared by ``gdlab train`` and ``gdlab sweep train``)."""
    return _with([
        click.option("--data", required=True, metavar="NAME|PATH",
                     help="A bundled dataset (breast_cancer, diabetes, digits, iris, wine; no download) or a .csv / "
                     ".parquet file (then give --target)."),
        click.option("--target", default=None, metavar="COLUMN", help="The label column of a file."),
        click.option("--features", default=None, metavar="A,B,C",
                     help="Feature columns, comma-separated (default: every column but the target)."),
        click.option("--model", type=click.Choice(MODELS), required=True,
                     help="linear (numeric target), logistic (labels 0/1) or softmax (class labels)."),
        click.option("--loss", type=click.Choice(LOSSES), default=None,
                     help="linear: mse (mean squared error, default) or rmse (its square root); logistic and softmax: "
                     "cross-entropy (default)."),
        click.option("--test-size", type=click.FloatRange(0.0, 1.0, max_open=True), default=0.2, show_default=True,
                     help="Fraction of rows held out for testing, each row by a seeded hash of its number (0 trains "
                     "on all)."),
        click.option("--standardize/--no-standardize", default=True, show_default=True,
                     help="Scale features to mean 0 and population std 1 over the training rows (like "
                     "StandardScaler)."),
        click.option("--init", type=click.Choice(["zeros", "normal"]), default="zeros", show_default=True,
                     help="Initial weights: zeros, or N(0, 1/d) from --seed. The bias starts at the best constant "
                     "(the mean of y; the log-odds of the labels)."),
        click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=0, show_default=True,
                     help="Seeds the train/test split, --init normal and the shuffling."),
        click.option("--l2", type=float, default=None,
                     help="L2 penalty λ: the loss is mean(loss) + λ/2·||W||^2 (bias not penalised). λ = 1/(C·n) for "
                     "scikit-learn's C with n training rows. Default: C = 1 (scikit-learn's) for logistic and softmax, "
                     "0 for linear. --l2 0 turns the penalty off."),
        click.option("--C", "C", type=float, default=None,
                     help="The penalty as scikit-learn's C > 0 (λ = 1/(C·n)); larger C, weaker penalty. Give --C or "
                     "--l2."),
    ], f)


def optimizer_options(f):
    """How to train: --optimizer, --lr, --momentum, --damping, --solver and the schedule's options."""
    return _with([
        click.option("--optimizer", type=click.Choice(OPTIMIZERS), default="gd", show_default=True,
                     help="gd, momentum (heavy ball), nesterov, adam, natural (Fisher scoring: the model's exact "
                     "Fisher, Newton's method for logistic/softmax) or natural-diag (the Fisher's diagonal only)."),
        click.option("--lr", type=float, default=None,
                     help="Step size per update. Default: 0.1 (gd, momentum, nesterov, natural-diag), 0.01 (adam), "
                     "1.0 (natural: a full Fisher-scoring step)."),
        click.option("--momentum", type=float, default=None,
                     help="Momentum in [0, 1] for momentum/nesterov (default 0.9) or natural (default 0)."),
        click.option("--damping", type=float, default=None,
                     help="natural, natural-diag: added to the Fisher's diagonal (default 0). Mini-batch natural "
                     "gradient needs it, e.g. 0.1."),
        click.option("--solver", type=click.Choice(["auto", "cholesky", "cg"]), default="auto", show_default=True,
                     help="natural: cholesky forms the Fisher and solves it; cg uses conjugate gradient with "
                     "Fisher-vector products. auto: cholesky for full batches of at most 2,048 weights, cg otherwise."),
        click.option("--schedule", type=click.Choice(SCHEDULES), default="constant", show_default=True,
                     help="Learning-rate schedule over steps: exponential = annealing; warm-restarts = SGDR."),
        click.option("--decay", type=float, default=None,
                     help="exponential/step: factor per decay period, in (0, 1] (default 0.99)."),
        click.option("--decay-steps", type=click.IntRange(1, 2**31 - 2), default=None,
                     help="exponential: steps per factor (1); step: steps between drops (100); cosine: length "
                     "(default: the whole run)."),
        click.option("--alpha", type=float, default=0.0, show_default=True,
                     help="cosine/warm-restarts: the final lr as a fraction of --lr."),
        click.option("--period", type=click.IntRange(1, 2**31 - 2), default=None,
                     help="warm-restarts: length of the first cycle in steps (100)."),
        click.option("--period-mult", type=float, default=1.0, show_default=True,
                     help="warm-restarts: each cycle is this many times longer than the last (>= 1)."),
    ], f)


def length_options(f):
    """When to stop: --epochs, --max-steps, --tol, --patience, --grad-tol."""
    return _with([
        click.option("--epochs", type=click.IntRange(1, 2**31 - 2), default=None,
                     help="Passes over the training rows. Mini-batch default 20; full batch: an epoch is one step, and "
                     "--epochs caps the steps."),
        click.option("--max-steps", type=click.IntRange(0, 2**31 - 2), default=None,
                     help="Cap on updates. Default: 10,000 for full batch, none for mini-batches (--epochs decides)."),
        click.option("--tol", type=float, default=1e-15, show_default=True,
                     help="Converged when the loss moved by at most tol*max(1, |loss|) over the last --patience steps "
                     "(full batch) or epochs (mini-batch, on the full-data loss); 0 turns it off."),
        click.option("--patience", type=click.IntRange(1, 100_000), default=10, show_default=True,
                     help="The window of steps (full batch) or epochs (mini-batch) that --tol looks at."),
        click.option("--grad-tol", type=float, default=1e-10, show_default=True,
                     help="Converged when the full-data gradient norm <= this (checked per step in full batch, per "
                     "epoch with mini-batches); 0 turns it off."),
    ], f)


def check_options(*, lr, momentum, damping, decay, alpha, period_mult, l2, C, tol, grad_tol, schedule, period,
                  features) -> Optional[list[str]]:
    """Refuse bad values of the shared options before any work; returns the feature names (or None)."""
    for name, value in (("--lr", lr), ("--momentum", momentum), ("--damping", damping), ("--decay", decay),
                        ("--alpha", alpha), ("--period-mult", period_mult), ("--l2", l2), ("--C", C), ("--tol", tol),
                        ("--grad-tol", grad_tol)):
        finite(name, value)
    if l2 is not None and C is not None:
        raise UserError("give the penalty as --l2 or as --C, not both (λ = 1/(C·n)).")
    if C is not None and C <= 0:
        raise UserError(f"--C must be positive (scikit-learn's inverse penalty; 1 is its default; for no penalty use "
                        f"--l2 0), got {C}.")
    if l2 is not None and l2 < 0:
        raise UserError(f"--l2 must be >= 0 (0 is no penalty), got {l2}.")
    if schedule not in ("exponential", "step") and decay is not None:
        raise UserError(f"--decay applies to the exponential and step schedules, not {schedule!r}.")
    if schedule != "warm-restarts" and (period is not None or period_mult != 1.0):
        raise UserError(f"--period and --period-mult apply to --schedule warm-restarts, not {schedule!r}.")
    feature_list = None if features is None else [f.strip() for f in features.split(",")]
    if feature_list is not None and any(not f for f in feature_list):
        raise UserError(f"--features {features!r} has an empty name; list column names separated by commas.")
    return feature_list


@app.command("train", no_args_is_help=True)
@model_options
@optimizer_options
@length_options
@click.option("--batch-size", type=BatchSize(), default="full", show_default=True,
              help="Rows per step: 0 or 'full' = batch gradient descent on all training rows; N = mini-batch SGD "
              "with N rows per step, reshuffled every epoch (the last partial batch is dropped).")
@click.option("--stream/--no-stream", default=None,
              help="Stream a file in record batches (never loaded whole) or load it. Default: stream it when its "
              "numeric columns take more than a quarter of --memory-limit as float64.")
@click.option("--memory-limit", type=ByteSize(), default="1G", show_default=True,
              help="Memory the data may take (1024-based units: 512M, 2G); sizes the streaming buffers.")
@click.option("--shuffle-buffer", type=click.IntRange(1, 2**31 - 2), default=None,
              help="Rows in the streaming shuffle buffer (default: a quarter of --memory-limit).")
@click.option("--spill/--no-spill", default=None,
              help="When streaming, keep the rows the first pass decodes in a temporary file beside the data "
              "(float64, deleted at the end), so that later passes need not decode the file again. Default: "
              "spill when that disk has room for twice the rows.")
@click.option("--json", "json_out", default=None, metavar="PATH|-",
              help="Write the result and its trace as JSON to PATH, or to stdout with '-' (stdout then holds the "
              "JSON alone).")
@click.option("--plot", "plot_path", default=None, metavar="PATH",
              help="Draw train and test loss per epoch with the mini-batch loss of every step behind them (and the "
              "learning rate when a schedule varies it) to PATH: .png, .svg or .pdf.")
@click.option("--animate", "animate_path", default=None, metavar="PATH.gif",
              help="Write the same picture growing step by step as a GIF (pillow; no ffmpeg needed).")
@click.option("--plot-size", default="1200x800", show_default=True, metavar="WxH",
              help="Size of --plot and --animate in pixels.")
@click.option("--save-weights", default=None, metavar="PATH",
              help="Write the trained weights, bias, feature names, classes and standardisation to PATH as JSON.")
@engine_options
def train_command(data: str, target: Optional[str], features: Optional[str], model: str, loss: Optional[str],
                  optimizer: str, lr: Optional[float], momentum: Optional[float], damping: Optional[float],
                  solver: str, schedule: str, decay: Optional[float], decay_steps: Optional[int], alpha: float,
                  period: Optional[int], period_mult: float, batch_size: int, epochs: Optional[int],
                  max_steps: Optional[int], test_size: float, standardize: bool, init: str, seed: int,
                  l2: Optional[float], C: Optional[float], tol: float, patience: int, grad_tol: float,
                  stream: Optional[bool], memory_limit: int, shuffle_buffer: Optional[int], spill: Optional[bool],
                  json_out: Optional[str],
                  plot_path: Optional[str], animate_path: Optional[str], plot_size: str,
                  save_weights: Optional[str], engine: str, scheduler: Optional[str], workers: Optional[int]) -> None:
    """Train a linear, logistic or softmax regression by gradient descent: batch or mini-batch.

    The loss is the mean per-row loss plus an L2 penalty on the weights, λ/2·||W||^2 (--l2 λ,
    or --C with λ = 1/(C·n)). With --batch-size full every step uses all training rows;
    with --batch-size N each step uses N rows and an epoch is one pass. Files larger than
    --memory-limit/4 are streamed in record batches through a shuffle buffer.

    \b
    Examples:
      gdlab train --data breast_cancer --model logistic --optimizer natural
      gdlab train --data breast_cancer --model logistic --optimizer momentum --lr 0.1 --momentum 0.9 \\
                  --batch-size 32 --epochs 20
      gdlab train --data diabetes --model linear --optimizer gd --lr 0.1 --test-size 0
      gdlab train --data digits --model softmax --optimizer adam --lr 0.01 --batch-size 64 --json -
      gdlab train --data big.parquet --target label --model logistic --batch-size 1024 --epochs 3
      gdlab train --data breast_cancer --model logistic --optimizer momentum --batch-size 32 --epochs 10 \\
                  --plot train.png --animate train.gif
      gdlab train --data 'parts/*.parquet' --target label --model logistic --optimizer natural \\
                  --engine dask --workers 2
    """
    from gdlab.buffers import share_malloc_arenas

    share_malloc_arenas()     # first, before JAX and Arrow start threads: it lowers a streamed run's peak memory
    from gdlab import schedules, training  # here, not at the top: `gdlab --help` must not load JAX
    from gdlab.distributed import check_engine

    check_engine(engine, scheduler, workers)
    if engine == "dask":
        _check_dask_training(batch_size, stream, shuffle_buffer, spill)

    feature_list = check_options(lr=lr, momentum=momentum, damping=damping, decay=decay, alpha=alpha,
                                 period_mult=period_mult, l2=l2, C=C, tol=tol, grad_tol=grad_tol,
                                 schedule=schedule, period=period, features=features)
    for path, option in ((json_out, "--json"), (save_weights, "--save-weights")):
        if option == "--save-weights" and path == "-":
            raise UserError("--save-weights needs a file path; '-' is for --json.")
        try:
            check_json_path(path)
        except UserError as exc:
            raise UserError(str(exc).replace("--json", option)) from None
    size = _check_pictures(plot_path, animate_path, plot_size)
    rate0 = training.DEFAULT_LR[optimizer] if lr is None else lr
    # the schedule is checked now; a cosine without --decay-steps spans the run, known once the data are read
    schedules.make_schedule(schedule, rate0, decay=decay, decay_steps=decay_steps, alpha=alpha, period=period,
                            period_mult=period_mult)
    training.make_optimizer(optimizer, rate0, momentum, damping=damping, solver=solver)

    def build(total_steps: int):
        rate = schedules.make_schedule(schedule, rate0, decay=decay, decay_steps=decay_steps, alpha=alpha,
                                       period=period, period_mult=period_mult, horizon=max(total_steps, 1))
        return training.make_optimizer(optimizer, rate, momentum, damping=damping, solver=solver)

    err = Console(stderr=True)
    progress = progress_bar(err, quiet=json_out == "-")
    with progress:
        task = progress.add_task("training", total=None)

        def show(info: dict) -> None:
            progress.update(task, total=info["total_steps"], completed=info["step"],
                            description=f"epoch {int(info['epoch'])}" if batch_size else "training")

        shared = dict(target=target, features=feature_list, epochs=epochs, max_steps=max_steps, test_size=test_size,
                      standardize=standardize, init=init, seed=seed, l2=l2, C=C, solver=solver, tol=tol,
                      patience=patience, grad_tol=grad_tol, callback=show)
        if engine == "dask":
            from gdlab.distributed import train_dask

            result = train_dask(data, model, loss, build, scheduler=scheduler, workers=workers, **shared)
        else:
            result = training.train(data, model, loss, build, batch_size=batch_size, stream=stream,
                                    memory_limit=memory_limit, shuffle_buffer=shuffle_buffer, spill=spill, **shared)
    settings = {"optimizer": optimizer, "lr": rate0, "schedule": schedule, "momentum": momentum, "damping": damping}
    emit_json(train_json(result, settings), json_out)
    if save_weights is not None:
        emit_json(weights_json(result), save_weights)
    _draw(result, settings, plot_path, animate_path, size)
    if json_out == "-":
        err.print(result.message, highlight=False, soft_wrap=True)
    else:
        print_table(Console(), result, settings)


def _check_dask_training(batch_size: int, stream: Optional[bool], shuffle_buffer: Optional[int],
                         spill: Optional[bool] = None) -> None:
    """Refuse the mini-batch and streaming options with --engine dask, which trains on full batches."""
    if batch_size:
        raise UserError(f"--engine dask trains on full batches (each step sums over every partition on the workers); "
                        f"drop --batch-size {batch_size}, or train mini-batches with --engine local.")
    if stream is not None or shuffle_buffer is not None or spill is not None:
        option = ("--shuffle-buffer" if shuffle_buffer is not None else
                  ("--stream" if stream else "--no-stream") if stream is not None else
                  ("--spill" if spill else "--no-spill"))
        raise UserError(f"{option} is for --engine local; with --engine dask the partitions stay on the workers, "
                        f"so drop {option}.")


def _check_pictures(plot_path: Optional[str], animate_path: Optional[str], plot_size: str) -> tuple[int, int]:
    """Refuse, before any work, a picture path or size that cannot be written."""
    from gdlab import plots

    size = plots.parse_size(plot_size)
    if plot_path is not None:
        plots.check_figure_path(plot_path)
    if animate_path is not None:
        plots.check_figure_path(animate_path, "--animate", (".gif",))
    return size


def _draw(result, settings: dict, plot_path: Optional[str], animate_path: Optional[str], size) -> None:
    """--plot and --animate, titled with the optimizer, the model and how the run ended."""
    if plot_path is None and animate_path is None:
        return
    from gdlab import plots

    what = f"{settings['optimizer']}, lr {settings['lr']:g}"
    if settings["optimizer"] in ("momentum", "nesterov"):
        what += f", momentum {0.9 if settings['momentum'] is None else settings['momentum']:g}"
    if settings["schedule"] != "constant":
        what += f", {settings['schedule']}"
    title = plots.train_title(result, what)
    if plot_path is not None:
        plots.save_figure(plots.train_result_figure(result, title=title, size=size), plot_path)
    if animate_path is not None:
        plots.animate_train(result, animate_path, title=title, size=size)


def _penalty_text(result) -> str:
    if result.l2 == 0:
        return "none (λ = 0)"
    return f"λ = {result.l2:.6g} (C = {1.0 / (result.l2 * result.n_train):.6g})"


def weights_json(result) -> dict:
    """What --save-weights writes: enough to predict with the model elsewhere."""
    return {"model": result.model.kind, "loss": result.model.loss, "features": list(result.features),
            "target": result.target, "classes": None if result.classes is None else list(result.classes),
            "weights": json_num(result.weights), "bias": json_num(result.bias),
            "standardize": {"mean": json_num(result.mean), "scale": json_num(result.scale)},
            "l2": result.l2, "note": "predict with z = ((x - mean) / scale) @ weights + bias; "
                                     "logistic: P(y=1) = sigmoid(z); softmax: class = argmax z"}


def train_json(result, settings: dict) -> dict:
    """The --json payload: the result, the settings and the trace (NaN and inf become null)."""
    tr = result.trace
    trace = {name: json_num(getattr(tr, name)) for name in tr.columns
             if name not in ("params", "step", "epoch_step")}
    trace["step"] = [int(s) for s in tr.step]
    trace["epoch_step"] = [int(s) for s in tr.epoch_step]
    return {
        "stop_reason": result.stop_reason,
        "steps": result.steps,
        "epochs": result.epochs,
        "loss": json_num(result.loss),
        "test_loss": json_num(result.test_loss),
        "metrics": {k: json_num(v) for k, v in result.metrics.items()},
        "message": result.message,
        "separable": bool(result.separable),
        "weights": json_num(result.weights),
        "bias": json_num(result.bias),
        "features": list(result.features),
        "target": result.target,
        "classes": None if result.classes is None else [c if isinstance(c, str) else json_num(c)
                                                          for c in result.classes],
        "model": result.model.kind,
        "loss_function": result.model.loss,
        "l2": result.l2,
        "batch_size": result.batch_size,
        "n_train": result.n_train,
        "n_test": result.n_test,
        **settings,
        "elapsed": result.elapsed,
        "trace": trace,
    }


def _cell(x: Any, missing: str = "n/a") -> str:
    v = float(x)
    return fmt(v) if math.isfinite(v) else missing


def print_table(console: Console, result, settings: dict) -> None:
    """The final table: data, model, optimizer, train/test loss and metric, steps, epochs, stop reason."""
    kind = result.model.kind
    title = {"linear": "linear regression", "logistic": "logistic regression", "softmax": "softmax regression"}[kind]
    table = Table(title=f"train: {title}, {result.model.loss}", show_header=True, header_style="bold")
    table.add_column("quantity")
    table.add_column("value", overflow="fold")
    table.add_row("data", f"{result.n_train:,} training rows, {result.n_test:,} test rows, "
                          f"{len(result.features)} features")
    table.add_row("penalty", _penalty_text(result))
    batch = "full batch" if result.batch_size == 0 else f"mini-batches of {result.batch_size}"
    table.add_row("optimizer", f"{settings['optimizer']}, lr {settings['lr']:g}, {settings['schedule']}, {batch}")
    no_test = "n/a (no test rows)" if result.n_test == 0 else "n/a"
    diverged = "n/a (diverged)"
    table.add_row("train loss", _cell(result.loss, diverged))
    table.add_row("test loss", _cell(result.test_loss, no_test if result.n_test == 0 else diverged))
    metric = "rmse" if kind == "linear" else "accuracy"
    label = "RMSE" if kind == "linear" else "accuracy"
    table.add_row(f"train {label}", _cell(result.metrics[metric], diverged))
    table.add_row(f"test {label}", _cell(result.metrics["test_" + metric], no_test if result.n_test == 0 else diverged))
    table.add_row("gradient norm", _cell(result.metrics["grad_norm"], diverged))
    table.add_row("steps", f"{result.steps:,}")
    table.add_row("epochs", f"{result.epochs:,}")
    table.add_row("stop reason", result.stop_reason)
    table.add_row("time", f"{result.elapsed:.2f} s")
    console.print(table)
    console.print(result.message, highlight=False, soft_wrap=True)
