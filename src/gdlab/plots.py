r"""Pictures of runs: matplotlib figures (PNG, SVG, PDF) and GIF animations (pillow, no ffmpeg).

Every function takes plain data (NumPy arrays, traces, results) and returns a
``matplotlib.figure.Figure`` built without pyplot (so no global backend state changes and no
window opens), sized in pixels: ``size=(width, height)`` at ``dpi`` 100. Save with
:func:`save_figure`; animations are written by :func:`animate_landscape` and :func:`animate_fit`.

=========================  ====================================================================
figure                     panels
=========================  ====================================================================
:func:`landscape_figure`   the curve (1-D) or contours (2-D) with each run's path, start and end,
                           the recorded minima (★ global, ▼ local); f(θ_t) − f* against steps
                           (log axis); the learning rate against steps when it varies
:func:`fit_figure`         p and q's densities at the start, chosen steps and the end; KL(p‖q)
                           and KL(q‖p) against steps (log axes); the path of (m, log v) over the
                           contours of the minimised KL; the learning rate when it varies
:func:`train_figure`       train (and test) loss per epoch over the mini-batch losses; the
                           learning rate when it varies (:func:`train_result_figure` and
                           :func:`animate_train` draw a :func:`gdlab.train` result)
:func:`sweep_heatmap`      steps to converge over two grid axes; max_steps and diverged cells
                           marked apart
=========================  ====================================================================

Readable by default: labelled axes with units, a legend, a title that says what ran.
"""

from __future__ import annotations

import math
import os
from typing import Any, Callable, NamedTuple, Sequence

import numpy as np

__all__ = ["Path", "FitRun", "landscape_figure", "fit_figure", "train_figure", "train_result_figure", "animate_train",
           "train_title", "sweep_heatmap", "save_figure",
           "animate_landscape", "animate_fit", "check_figure_path", "path_from_trace", "fit_run", "DEFAULT_SIZE"]

DEFAULT_SIZE = (1200, 800)
DPI = 100
FIGURE_SUFFIXES = (".png", ".svg", ".pdf")
MAX_PATHS_IN_LEGEND = 8
COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2")


class Path(NamedTuple):
    """One run on a landscape, as plain arrays: steps (T,), points (T, d), f (T,), lr (T,) or None."""

    label: str
    step: np.ndarray
    points: np.ndarray
    f: np.ndarray
    lr: np.ndarray | None = None


class FitRun(NamedTuple):
    """One fit, as plain arrays per step: the moments of q, both KLs, the learning rate."""

    label: str
    step: np.ndarray
    mean: np.ndarray
    var: np.ndarray
    kl_forward: np.ndarray
    kl_reverse: np.ndarray
    lr: np.ndarray | None = None


def path_from_trace(label: str, trace: Any) -> Path:
    """A :class:`Path` from an engine trace (``step``, ``params``, ``loss``, ``lr``).

    Args:
      label: the run's name in legends.
      trace: a trace (:class:`gdlab.engine.Trace`), e.g. ``gdlab.minimize(...).trace``.

    Returns:
      A :class:`Path` of NumPy arrays.

    Example:
      >>> from gdlab import minimize, optim
      >>> p = path_from_trace("gd", minimize("bowl", 1.0, optim.gd(0.25), max_steps=3, tol=0).trace)
      >>> p.points[:, 0].tolist(), p.f.tolist()
      ([1.0, 0.5, 0.25, 0.125], [1.0, 0.25, 0.0625, 0.015625])
    """
    return Path(label, np.asarray(trace.step), np.atleast_2d(np.asarray(trace.params, dtype=float)).reshape(len(trace), -1),
                np.asarray(trace.loss, dtype=float), np.asarray(trace.lr, dtype=float))


def fit_run(label: str, result: Any) -> FitRun:
    """A :class:`FitRun` from a 1-D :class:`gdlab.fitting.FitResult`.

    Args:
      label: the run's name in legends.
      result: a 1-D fit.

    Returns:
      A :class:`FitRun` of NumPy arrays (NaN for a KL direction the trace lacks).

    Example:
      >>> from gdlab import fit, optim
      >>> run = fit_run("gd", fit("N(2, 1)", "N(0, 5)", "forward", optim.gd(0.5), max_steps=2, tol=0))
      >>> [round(float(m), 12) for m in run.mean], float(run.var[0])   # m ← m + lr (2 − m)/v, v stays 5 at first
      ([0.0, 0.2, 0.38], 5.0)
    """
    tr = result.trace
    nan = np.full(len(tr), np.nan)
    return FitRun(label, np.asarray(tr.step), np.asarray(tr.mean, dtype=float).reshape(len(tr), -1)[:, 0],
                  np.asarray(tr.var, dtype=float).reshape(len(tr), -1)[:, 0],
                  np.asarray(tr.kl_forward, dtype=float) if "kl_forward" in tr else nan,
                  np.asarray(tr.kl_reverse, dtype=float) if "kl_reverse" in tr else nan,
                  np.asarray(tr.lr, dtype=float))


# ------------------------------------------------------------------------------ plumbing

def _figure(size: tuple[int, int]):
    from matplotlib.figure import Figure

    width, height = _check_size(size)
    return Figure(figsize=(width / DPI, height / DPI), dpi=DPI, layout="constrained")


def _check_size(size: tuple[int, int]) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in size)
    except (TypeError, ValueError):
        raise ValueError(f"a picture size is (width, height) in pixels, got {size!r}.") from None
    if not (100 <= width <= 10_000 and 100 <= height <= 10_000):
        raise ValueError(f"a picture size must be 100 to 10000 pixels each way, got {width}x{height}.")
    return width, height


def parse_size(text: str) -> tuple[int, int]:
    """``"1200x800"`` → (1200, 800), checked.

    Args:
      text: ``WIDTHxHEIGHT`` in pixels, each 100 to 10,000.

    Returns:
      (width, height).

    Example:
      >>> parse_size("640x480")
      (640, 480)
    """
    parts = (text or "").lower().split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise ValueError(f"a picture size is WIDTHxHEIGHT in pixels, e.g. 1200x800, got {text!r}.")
    return _check_size((int(parts[0]), int(parts[1])))


def check_figure_path(path: str, what: str = "--plot", suffixes: Sequence[str] = FIGURE_SUFFIXES) -> str:
    """Refuse, before any work, a picture path with an unknown suffix or an unwritable folder.

    Args:
      path: the file to write.
      what: the option's name for the message.
      suffixes: the allowed suffixes.

    Returns:
      The suffix, lower case.

    Example:
      >>> check_figure_path("fit.PNG")
      '.png'
      >>> check_figure_path("fit.jpg")
      Traceback (most recent call last):
      ...
      ValueError: --plot 'fit.jpg': the file name must end in .png, .svg, .pdf.
    """
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in suffixes:
        raise ValueError(f"{what} {path!r}: the file name must end in {', '.join(suffixes)}.")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder) or not os.access(folder, os.W_OK):
        raise ValueError(f"cannot write {what} {path!r}: its folder does not exist or is not writable.")
    return suffix


def save_figure(fig, path: str) -> None:
    """Write ``fig`` at its own pixel size (no tight cropping, so the size is what was asked).

    Args:
      fig: a matplotlib Figure (any of this module's).
      path: a ``.png``, ``.svg`` or ``.pdf`` path in a writable folder.

    Returns:
      None; the file is written.

    Example:
      >>> import os, tempfile
      >>> from PIL import Image
      >>> fig = param_comparison_figure.__globals__["_figure"]((300, 200))
      >>> with tempfile.TemporaryDirectory() as tmp:
      ...     save_figure(fig, os.path.join(tmp, "f.png"))
      ...     Image.open(os.path.join(tmp, "f.png")).size
      (300, 200)
    """
    check_figure_path(path, "the picture")
    try:
        fig.savefig(path, dpi=fig.dpi)
    except OSError as exc:
        raise ValueError(f"cannot write {path!r}: {exc.strerror}.") from None


def _varies(lr: np.ndarray | None) -> bool:
    if lr is None:
        return False
    finite = np.asarray(lr, dtype=float)
    finite = finite[np.isfinite(finite)]
    return finite.size > 1 and float(np.ptp(finite)) > 1e-12 * max(1.0, float(np.max(np.abs(finite))))


def _fmt(x: float) -> str:
    return "nan" if not np.isfinite(x) else f"{x:.4g}"


def _save_gif(fig, draw: Callable[[int], Any], frames: int, path: str, fps: int) -> None:
    """Write the animation ``draw(0) … draw(frames - 1)`` of ``fig`` as a GIF (pillow; no ffmpeg)."""
    from matplotlib.animation import FuncAnimation, PillowWriter

    anim = FuncAnimation(fig, draw, frames=frames, blit=False)
    try:
        anim.save(path, writer=PillowWriter(fps=fps), dpi=DPI)
    except OSError as exc:
        raise ValueError(f"cannot write --animate {path!r}: {exc.strerror}.") from None


def _frame_indices(n: int, frames: int) -> np.ndarray:
    """Up to ``frames`` trace rows, dense early (where runs move fast), then even; always first and last."""
    if n <= frames:
        return np.arange(n)
    early = np.geomspace(1, n, frames // 2) - 1
    even = np.linspace(0, n - 1, frames - frames // 2)
    return np.unique(np.concatenate([[0, n - 1], np.round(early), np.round(even)]).astype(int))


# ------------------------------------------------------------------------------ landscapes

def _landscape_grid(landscape, paths: Sequence[Path], resolution: int):
    """The box, widened to hold every finite path point, and f on a grid over it."""
    import jax
    import jax.numpy as jnp

    box = np.asarray(landscape.box, dtype=float)
    pts = np.concatenate([p.points for p in paths]) if paths else np.empty((0, landscape.dim))
    pts = pts[np.all(np.isfinite(pts), axis=1)]
    if len(pts):
        lo, hi = np.minimum(box[:, 0], pts.min(0)), np.maximum(box[:, 1], pts.max(0))
        pad = 0.05 * (hi - lo)
        box = np.stack([lo - pad * (lo < box[:, 0]), hi + pad * (hi > box[:, 1])], axis=1)
    fn = jax.jit(jax.vmap(landscape.fn))
    with jax.enable_x64(True):
        if landscape.dim == 1:
            xs = np.linspace(box[0, 0], box[0, 1], resolution * 4)
            return box, (xs,), np.asarray(fn(jnp.asarray(xs[:, None])))
        xs = np.linspace(box[0, 0], box[0, 1], resolution)
        ys = np.linspace(box[1, 0], box[1, 1], resolution)
        gx, gy = np.meshgrid(xs, ys)
        f = np.asarray(fn(jnp.asarray(np.stack([gx.ravel(), gy.ravel()], axis=1)))).reshape(gx.shape)
        return box, (gx, gy), f


def _log_contours(fig, ax, x, y, values, label: str | None, lines: bool = True):
    """Filled contours of log10(values − min + a little): even levels in log, plain colorbar ticks."""
    finite = values[np.isfinite(values)]
    if not finite.size:
        return None
    low, span = float(finite.min()), float(finite.max() - finite.min())
    logged = np.log10(values - low + 1e-4 * (span + 1e-12))
    levels = np.linspace(np.nanmin(logged), np.nanmax(logged), 30)
    filled = ax.contourf(x, y, logged, levels=levels, cmap="viridis", alpha=0.9)
    if lines:
        ax.contour(x, y, logged, levels=levels[::3], colors="white", linewidths=0.4, alpha=0.6)
    if label is not None:
        bar = fig.colorbar(filled, ax=ax, pad=0.01, shrink=0.9)
        bar.set_label(label)
    return filled


def _curve_limits(ax, values: np.ndarray, paths: Sequence[Path], landscape) -> None:
    """y-limits of a 1-D landscape: all of the runs and minima, not the far walls of the box."""
    finite = values[np.isfinite(values)]
    if not finite.size:
        return
    seen = [float(np.percentile(finite, 60))] + [m.f for m in (*landscape.global_minima, *landscape.local_minima)]
    for p in paths:
        ok = np.isfinite(p.f)
        if ok.any():
            seen.append(float(np.max(p.f[ok])))
    lo, hi = float(finite.min()), max(seen)
    pad = 0.08 * (hi - lo + 1e-12)
    ax.set_ylim(lo - pad, hi + pad)


def _mark_minima(ax, landscape, dim: int) -> None:
    for kind, minima, marker, color, size in (("global minimum", landscape.global_minima, "*", "gold", 260),
                                              ("local minimum", landscape.local_minima, "v", "white", 110)):
        for i, m in enumerate(minima):
            xy = (m.x[0], m.f) if dim == 1 else m.x
            ax.scatter(*xy, marker=marker, s=size, c=color, edgecolors="black", linewidths=1.0, zorder=6,
                       label=kind if i == 0 else None)


def _path_style(i: int, n: int, best: int | None):
    many = n > MAX_PATHS_IN_LEGEND
    if many and i != best:
        return dict(color="0.35", lw=0.7, alpha=0.55, label=None)
    return dict(color=COLORS[i % len(COLORS)] if not many else COLORS[1], lw=1.8, alpha=0.95, label=None)


def landscape_figure(landscape, paths: Sequence[Path], *, best: int | None = None, title: str | None = None,
                     size: tuple[int, int] = DEFAULT_SIZE, resolution: int = 160):
    """The landscape with the runs on it.

    Args:
      landscape: a :class:`gdlab.landscapes.Landscape`.
      paths: the runs (:class:`Path`, e.g. :func:`path_from_trace` of a result's trace).
      best: the index of the run to highlight (multistart); with more than 8 runs the others
        are drawn thin and grey under one legend entry.
      title: the figure's title (default: the landscape and the runs' labels).
      size: (width, height) in pixels.
      resolution: grid points per axis for the contours.

    Returns:
      A matplotlib Figure: left the curve (1-D) or filled contours (2-D) with paths (○ start,
      ● end), ★ global and ▼ local minima; right f(θ_t) − f* against steps on log axes, and the
      learning rate against steps when any run's rate varies.

    Example:
      >>> from gdlab import landscapes, optim
      >>> res = landscapes.minimize("double-well", 1.5, optim.gd(0.01))
      >>> fig = landscape_figure(landscapes.get_landscape("double-well"),
      ...                        [path_from_trace("gd, lr 0.01", res.trace)], size=(400, 300))
      >>> len(fig.axes) >= 2
      True
    """
    from matplotlib.lines import Line2D

    fig = _figure(size)
    fig.get_layout_engine().set(wspace=0.06)
    with_lr = any(_varies(p.lr) for p in paths)
    grid = fig.add_gridspec(2, 2, width_ratios=(1.45, 1.0))
    main = fig.add_subplot(grid[:, 0])
    loss_ax = fig.add_subplot(grid[0, 1] if with_lr else grid[:, 1])
    box, coords, values = _landscape_grid(landscape, paths, resolution)
    f_star = min((m.f for m in landscape.global_minima), default=None)
    n = len(paths)

    if landscape.dim == 1:
        main.plot(coords[0], values, color="black", lw=1.6, label="f(x)", zorder=2)
        main.set_xlabel("x")
        main.set_ylabel("f(x)")
        main.set_xlim(box[0])
        _curve_limits(main, values, paths, landscape)
    else:
        _log_contours(fig, main, *coords, values, "log₁₀(f − min f)  (contours)")
        main.set_xlabel("x")
        main.set_ylabel("y")
        main.set_xlim(box[0])
        main.set_ylim(box[1])
    for i, p in enumerate(paths):
        style = _path_style(i, n, best)
        ok = np.all(np.isfinite(p.points), axis=1)
        pts, fs = p.points[ok], p.f[ok]
        if not len(pts):
            continue
        xy = (pts[:, 0], fs) if landscape.dim == 1 else (pts[:, 0], pts[:, 1])
        main.plot(*xy, "-", marker="." if len(pts) < 80 else None, ms=4, zorder=4, color=style["color"],
                  lw=style["lw"], alpha=style["alpha"])
        main.scatter(xy[0][0], xy[1][0], s=45, facecolors="white", edgecolors=style["color"], zorder=5, lw=1.5)
        main.scatter(xy[0][-1], xy[1][-1], s=45, c=style["color"], edgecolors="black", zorder=5, lw=0.8)
        gap = fs - f_star if f_star is not None else fs
        positive = gap > 0
        if f_star is not None and np.any(positive):
            loss_ax.plot(p.step[ok][positive], gap[positive], color=style["color"], lw=style["lw"], alpha=style["alpha"])
        elif f_star is None:
            loss_ax.plot(p.step[ok], fs, color=style["color"], lw=style["lw"], alpha=style["alpha"])
    _mark_minima(main, landscape, landscape.dim)

    handles = []
    many = n > MAX_PATHS_IN_LEGEND
    for i, p in enumerate(paths):
        if many and i != best:
            continue
        handles.append(Line2D([], [], color=_path_style(i, n, best)["color"], lw=1.8, label=p.label))
    if many:
        handles.append(Line2D([], [], color="0.35", lw=0.7, label=f"the other {n - (best is not None)} runs"))
    handles.append(Line2D([], [], ls="", marker="o", mfc="white", mec="black", label="start"))
    handles.append(Line2D([], [], ls="", marker="o", mfc="black", mec="black", label="end"))
    minima_handles, _ = main.get_legend_handles_labels()
    main.legend(handles=handles + [h for h in minima_handles if h.get_label() != "f(x)"], loc="best", fontsize=8,
                framealpha=0.85)
    main.set_title(f"{landscape.name}" if landscape.name == landscape.formula else
                   f"{landscape.name}:  {landscape.formula}", fontsize=10)

    loss_ax.set_xlabel("step")
    if f_star is not None:
        loss_ax.set_yscale("log")
        loss_ax.set_ylabel("f(θ_t) − f*  (f* = global minimum)")
    else:
        loss_ax.set_ylabel("f(θ_t)")
    if paths and max(len(p.step) for p in paths) > 30:
        loss_ax.set_xscale("symlog", linthresh=10)
    loss_ax.set_xlim(left=0)
    loss_ax.grid(True, which="major", alpha=0.3)
    loss_ax.set_title("distance to the global minimum's value" if f_star is not None else "value along the run",
                      fontsize=10)
    if with_lr:
        lr_ax = fig.add_subplot(grid[1, 1], sharex=loss_ax)
        _lr_panel(lr_ax, [(p.step, p.lr, _path_style(i, n, best)) for i, p in enumerate(paths)])
    fig.suptitle(title or _default_title(landscape, paths), fontsize=12, wrap=True)
    return fig


def _lr_panel(ax, series) -> None:
    for step, lr, style in series:
        if lr is not None:
            ax.plot(step, lr, color=style["color"], lw=min(style["lw"], 1.4), alpha=style["alpha"])
    ax.set_xlabel("step")
    ax.set_ylabel("learning rate η_t")
    ax.set_title("learning-rate schedule", fontsize=10)
    ax.grid(True, alpha=0.3)


def _default_title(landscape, paths: Sequence[Path]) -> str:
    if len(paths) == 1:
        p = paths[0]
        return f"{p.label} on {landscape.name}: {len(p.step) - 1} steps, f = {_fmt(p.f[-1])}"
    return f"{len(paths)} runs on {landscape.name}"


def animate_landscape(landscape, paths: Sequence[Path], path: str, *, title: str | None = None,
                      size: tuple[int, int] = (900, 600), frames: int = 60, fps: int = 12,
                      resolution: int = 120) -> int:
    """A GIF of the runs moving over the landscape (pillow writer). Returns the number of frames.

    Frames are spread over the run, denser at the start where steps are large.

    Args:
      landscape, paths, title, size, resolution: as :func:`landscape_figure`.
      path: the ``.gif`` to write.
      frames, fps: frames in the GIF (at most) and frames per second.

    Returns:
      The number of frames written.

    Example:
      >>> import os, tempfile
      >>> from gdlab import landscapes, optim
      >>> run = landscapes.minimize("bowl", 1.0, optim.gd(0.1), max_steps=20)
      >>> with tempfile.TemporaryDirectory() as tmp:
      ...     n = animate_landscape(landscapes.get_landscape("bowl"), [path_from_trace("gd", run.trace)],
      ...                           os.path.join(tmp, "a.gif"), frames=5, size=(200, 150), resolution=20)
      >>> 1 <= n <= 5
      True
    """
    check_figure_path(path, "--animate", (".gif",))
    fig = _figure(size)
    ax = fig.add_subplot()
    box, coords, values = _landscape_grid(landscape, paths, resolution)
    if landscape.dim == 1:
        ax.plot(coords[0], values, color="black", lw=1.5)
        ax.set_xlabel("x")
        ax.set_ylabel("f(x)")
        ax.set_xlim(box[0])
        _curve_limits(ax, values, paths, landscape)
    else:
        _log_contours(fig, ax, *coords, values, "log₁₀(f − min f)", lines=False)
        ax.set_xlabel("x")
        ax.set_ylabel("y")
        ax.set_xlim(box[0])
        ax.set_ylim(box[1])
    _mark_minima(ax, landscape, landscape.dim)
    n = len(paths)
    lines, dots = [], []
    for i, p in enumerate(paths):
        style = _path_style(i, n, None)
        (line,) = ax.plot([], [], "-", color=style["color"], lw=style["lw"], alpha=style["alpha"],
                          label=p.label if n <= MAX_PATHS_IN_LEGEND else None)
        (dot,) = ax.plot([], [], "o", color=style["color"], mec="black", ms=6)
        lines.append(line)
        dots.append(dot)
    if n <= MAX_PATHS_IN_LEGEND:
        ax.legend(loc="best", fontsize=8)
    longest = max(len(p.step) for p in paths)
    index = _frame_indices(longest, frames)
    caption = ax.set_title("", fontsize=10)
    fig.suptitle(title or _default_title(landscape, paths), fontsize=11, wrap=True)

    def draw(k):
        t = index[k]
        for p, line, dot in zip(paths, lines, dots):
            j = min(t, len(p.step) - 1)
            pts = p.points[: j + 1]
            xy = (pts[:, 0], p.f[: j + 1]) if landscape.dim == 1 else (pts[:, 0], pts[:, 1])
            line.set_data(*xy)
            dot.set_data([xy[0][-1]], [xy[1][-1]])
        caption.set_text(f"step {int(paths[0].step[min(t, len(paths[0].step) - 1)])}")
        return [*lines, *dots, caption]

    _save_gif(fig, draw, len(index), path, fps)
    return len(index)


# ------------------------------------------------------------------------------ fits

def _mixture_pdf(spec, x: np.ndarray) -> np.ndarray:
    w, m, v = np.asarray(spec.weights), np.asarray(spec.means)[:, 0], np.asarray(spec.covs)[:, 0, 0]
    return np.sum(w[:, None] * np.exp(-0.5 * (x[None] - m[:, None]) ** 2 / v[:, None])
                  / np.sqrt(2 * np.pi * v[:, None]), axis=0)


def _normal_pdf(x: np.ndarray, mean: float, var: float) -> np.ndarray:
    if not (np.isfinite(mean) and np.isfinite(var) and var > 0):
        return np.full_like(x, np.nan)
    return np.exp(-0.5 * (x - mean) ** 2 / var) / math.sqrt(2 * math.pi * var)


def kl_field(target, divergence: str, means: np.ndarray, log_vars: np.ndarray) -> np.ndarray:
    """The KL being minimised at q = N(m, e^s) on a grid of means × log variances (1-D targets).

    Computed by :func:`gdlab.fitting.kl_objective` itself (mean/variance parameterization), so
    the contours are the fit's own objective.

    Args:
      target: p, a 1-D spec.
      divergence: ``forward`` or ``reverse``.
      means: the grid's means, shape (M,).
      log_vars: the grid's log variances, shape (S,).

    Returns:
      The KL, shape (S, M).

    Example:
      >>> field = kl_field("N(0, 1)", "forward", np.array([0.0, 1.0]), np.array([0.0]))
      >>> [round(float(v), 12) for v in field[0]]            # KL(N(0,1)‖N(m,1)) = m²/2
      [0.0, 0.5]
    """
    import jax
    import jax.numpy as jnp

    from gdlab.families import make_family
    from gdlab.fitting import kl_objective

    with jax.enable_x64(True):
        fam = make_family("gaussian", 1, "mean_var")
        obj = kl_objective(target, fam, divergence)
        gm, gs = np.meshgrid(means, log_vars)
        theta = jnp.asarray(np.stack([gm.ravel(), np.exp(gs.ravel())], axis=1))
        values = jax.jit(jax.vmap(lambda th: obj.loss(th, obj.data)))(theta)
        return np.asarray(values).reshape(gm.shape)


def _kl_plane(spec, runs: Sequence[FitRun], resolution: int) -> tuple[np.ndarray, np.ndarray]:
    """Means and log variances that hold every run's path, p's moments and p's components (the
    modes reverse KL can settle on)."""
    ms = [float(spec.mean()[0]), *np.asarray(spec.means)[:, 0]]
    ss = [math.log(float(spec.cov()[0, 0])), *np.log(np.asarray(spec.covs)[:, 0, 0])]
    for r in runs:
        ok = np.isfinite(r.mean) & np.isfinite(r.var) & (r.var > 0)
        ms += list(r.mean[ok])
        ss += list(np.log(r.var[ok]))
    m_lo, m_hi, s_lo, s_hi = min(ms), max(ms), min(ss), max(ss)
    m_pad, s_pad = 0.15 * (m_hi - m_lo) + 0.5, 0.15 * (s_hi - s_lo) + 0.5
    return (np.linspace(m_lo - m_pad, m_hi + m_pad, resolution), np.linspace(s_lo - s_pad, s_hi + s_pad, resolution))


def _snapshot_rows(n: int, snapshots: Sequence[int] | None, step: np.ndarray) -> list[int]:
    if snapshots is None:
        chosen = {0, n - 1}
        for frac in (0.01, 0.05, 0.2):
            chosen.add(int(round(frac * (n - 1))))
        rows = sorted(chosen)
    else:
        rows = sorted({int(np.searchsorted(step, s)) for s in snapshots if 0 <= s <= step[-1]} | {0, n - 1})
    return [r for r in rows if 0 <= r < n]


def fit_figure(target, runs: Sequence[FitRun], divergence: str, *, snapshots: Sequence[int] | None = None,
               title: str | None = None, size: tuple[int, int] = DEFAULT_SIZE, resolution: int = 90):
    r"""The fit of q to p: densities, KL against steps, and the path over the KL landscape.

    Args:
      target: p, a 1-D :class:`gdlab.specs.MixtureSpec` (or its text).
      runs: one fit or several (:class:`FitRun`, e.g. :func:`fit_run` of a FitResult).
      divergence: the KL being minimised (``forward`` = KL(p‖q), ``reverse`` = KL(q‖p)).
      snapshots: steps at which to draw q (default: start, 1 %, 5 %, 20 % of the run, end).
      title, size, resolution: as :func:`landscape_figure`.

    Returns:
      A matplotlib Figure: p with q at the chosen steps (one run) or at the start and the end of
      each run (several); KL(p‖q) and KL(q‖p) against steps on log axes; the path of
      (m, log v) over the contours of the minimised KL; the learning rate when it varies.

    Example:
      >>> from gdlab import fit, optim
      >>> res = fit("N(2, 1)", "N(0, 5)", "forward", optim.gd(0.5), max_steps=40)
      >>> fig = fit_figure("N(2, 1)", [fit_run("gd", res)], "forward", size=(500, 400), resolution=20)
      >>> len(fig.axes) >= 3
      True
    """
    from gdlab.specs import parse_distribution

    spec = parse_distribution(target, what="target") if isinstance(target, str) else target
    if spec.dim != 1:
        raise ValueError("fit pictures draw 1-D fits (densities and the (mean, log variance) plane); this target "
                         f"is {spec.dim}-D.")
    fig = _figure(size)
    with_lr = any(_varies(r.lr) for r in runs)
    grid = fig.add_gridspec(2, 2)
    dens_ax, kl_ax, path_ax = fig.add_subplot(grid[0, 0]), fig.add_subplot(grid[0, 1]), fig.add_subplot(grid[1, 0])
    last_ax = fig.add_subplot(grid[1, 1])

    # densities
    p_mean, p_var = float(spec.mean()[0]), float(spec.cov()[0, 0])
    finite_m = np.concatenate([r.mean[np.isfinite(r.mean)] for r in runs] + [[p_mean]])
    finite_v = np.concatenate([r.var[np.isfinite(r.var) & (r.var > 0)] for r in runs] + [[p_var]])
    finite_v = finite_v[finite_v < 1e6 * p_var]           # a run that blew up must not flatten the picture
    spread = math.sqrt(float(np.max(finite_v)))
    x = np.linspace(min(finite_m.min(), p_mean) - 3.5 * spread, max(finite_m.max(), p_mean) + 3.5 * spread, 600)
    dens_ax.fill_between(x, _mixture_pdf(spec, x), color="0.75", label=f"p = {spec.text}", zorder=1)
    if len(runs) == 1:
        r = runs[0]
        rows = _snapshot_rows(len(r.step), snapshots, r.step)
        shades = np.linspace(0.25, 1.0, len(rows))
        for k, row in enumerate(rows):
            kind = "start" if row == 0 else "end" if row == len(r.step) - 1 else f"step {int(r.step[row])}"
            dens_ax.plot(x, _normal_pdf(x, r.mean[row], r.var[row]), color=COLORS[0], alpha=float(shades[k]),
                         lw=2.2 if row == len(r.step) - 1 else 1.3, ls="--" if row == 0 else "-",
                         label=f"q at {kind}: N({_fmt(r.mean[row])}, {_fmt(r.var[row])})")
    else:
        for i, r in enumerate(runs):
            if i == 0:
                dens_ax.plot(x, _normal_pdf(x, r.mean[0], r.var[0]), color="black", ls="--", lw=1.2,
                             label=f"q at start: N({_fmt(r.mean[0])}, {_fmt(r.var[0])})")
            dens_ax.plot(x, _normal_pdf(x, r.mean[-1], r.var[-1]), color=COLORS[i % len(COLORS)], lw=1.8,
                         label=f"{r.label}: N({_fmt(r.mean[-1])}, {_fmt(r.var[-1])})")
    dens_ax.set_xlabel("x")
    dens_ax.set_ylabel("density")
    dens_ax.set_title("p (shaded) and q", fontsize=10)
    dens_ax.legend(fontsize=7, loc="upper right")

    # KL against steps
    for i, r in enumerate(runs):
        color = COLORS[i % len(COLORS)]
        prefix = "" if len(runs) == 1 else f"{r.label}: "
        for series, name, ls in ((r.kl_forward, "KL(p‖q) forward", "-"), (r.kl_reverse, "KL(q‖p) reverse", "--")):
            ok = np.isfinite(series) & (series > 0)
            if np.any(ok):
                kl_ax.plot(r.step[ok] + 1, series[ok], ls=ls, color=color if len(runs) > 1 else
                           (COLORS[0] if name.endswith("forward") else COLORS[1]), lw=1.6,
                           label=prefix + name + (" (minimised)" if name.endswith(divergence) else ""))
    kl_ax.set_xscale("log")
    kl_ax.set_yscale("log")
    kl_ax.set_xlabel("step + 1 (log scale)")
    kl_ax.set_ylabel("KL (nats, log scale)")
    kl_ax.set_title("both KL directions along the run", fontsize=10)
    kl_ax.grid(True, which="major", alpha=0.3)
    kl_ax.legend(fontsize=7, loc="best")

    # the path over the KL landscape in (mean, log variance)
    means, log_vars = _kl_plane(spec, runs, resolution)
    field = kl_field(spec, divergence, means, log_vars)
    _log_contours(fig, path_ax, means, log_vars, field,
                  "log₁₀ " + ("KL(p‖q)" if divergence == "forward" else "KL(q‖p)") + "  (contours)")
    for i, r in enumerate(runs):
        ok = np.isfinite(r.mean) & np.isfinite(r.var) & (r.var > 0)
        color = COLORS[i % len(COLORS)] if len(runs) > 1 else COLORS[1]
        path_ax.plot(r.mean[ok], np.log(r.var[ok]), "-", color=color, lw=1.8, marker="." if ok.sum() < 80 else None,
                     label=r.label)
        if np.any(ok):
            path_ax.scatter(r.mean[ok][0], np.log(r.var[ok][0]), s=45, facecolors="white", edgecolors=color, zorder=5)
            path_ax.scatter(r.mean[ok][-1], np.log(r.var[ok][-1]), s=45, c=color, edgecolors="black", zorder=5)
    if divergence == "forward":
        path_ax.scatter(p_mean, math.log(p_var), marker="*", s=240, c="gold", edgecolors="black", zorder=6,
                        label="minimum: the moment match")
    path_ax.set_xlim(means[0], means[-1])
    path_ax.set_ylim(log_vars[0], log_vars[-1])
    path_ax.set_xlabel("mean m")
    path_ax.set_ylabel("log variance  log v")
    path_ax.set_title("the path of q over the KL landscape (○ start, ● end)", fontsize=10)
    path_ax.legend(fontsize=7, loc="best")

    if with_lr:
        _lr_panel(last_ax, [(r.step, r.lr, dict(color=COLORS[i % len(COLORS)], lw=1.6, alpha=1.0))
                            for i, r in enumerate(runs)])
    else:
        for i, r in enumerate(runs):
            last_ax.plot(r.step, r.var, color=COLORS[i % len(COLORS)], lw=1.6, label=f"{r.label}: variance")
            last_ax.plot(r.step, r.mean, color=COLORS[i % len(COLORS)], lw=1.2, ls="--", label=f"{r.label}: mean")
        last_ax.axhline(p_var, color="0.5", lw=0.8, ls=":")
        last_ax.axhline(p_mean, color="0.5", lw=0.8, ls=":")
        last_ax.set_xlabel("step")
        last_ax.set_ylabel("mean, variance of q")
        last_ax.set_title("q's moments (dotted: p's)", fontsize=10)
        last_ax.legend(fontsize=7, loc="best")
        last_ax.grid(True, alpha=0.3)
    direction = "KL(p‖q) forward" if divergence == "forward" else "KL(q‖p) reverse"
    if title is None:
        r = runs[0]
        title = (f"fit q to p = {spec.text} by minimising {direction}: " +
                 (f"{r.label}, {len(r.step) - 1} steps" if len(runs) == 1 else f"{len(runs)} optimizers"))
    fig.suptitle(title, fontsize=12, wrap=True)
    return fig


def animate_fit(target, run: FitRun, divergence: str, path: str, *, title: str | None = None,
                size: tuple[int, int] = (1000, 450), frames: int = 60, fps: int = 12, resolution: int = 70) -> int:
    """A GIF of a fit: q moving towards p (left) and the point (m, log v) moving over the KL contours (right).

    Args:
      target: p, a 1-D spec.
      run: the fit (:func:`fit_run`).
      divergence: the minimised direction (its contours are drawn).
      path: the ``.gif`` to write.
      title, size, resolution: as :func:`fit_figure`.
      frames, fps: frames in the GIF (at most) and frames per second.

    Returns:
      The number of frames written.

    Example:
      >>> import os, tempfile
      >>> from gdlab import fit, optim
      >>> res = fit("N(2, 1)", "N(0, 5)", "forward", optim.gd(0.5), max_steps=20)
      >>> with tempfile.TemporaryDirectory() as tmp:
      ...     n = animate_fit("N(2, 1)", fit_run("gd", res), "forward", os.path.join(tmp, "f.gif"), frames=4,
      ...                     size=(300, 150), resolution=10)
      >>> 1 <= n <= 4
      True
    """
    from gdlab.specs import parse_distribution

    check_figure_path(path, "--animate", (".gif",))
    spec = parse_distribution(target, what="target") if isinstance(target, str) else target
    if spec.dim != 1:
        raise ValueError(f"fit animations draw 1-D fits; this target is {spec.dim}-D.")
    fig = _figure(size)
    dens_ax, path_ax = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    ok = np.isfinite(run.mean) & np.isfinite(run.var) & (run.var > 0)
    p_mean, p_var = float(spec.mean()[0]), float(spec.cov()[0, 0])
    spread = math.sqrt(max(float(np.max(run.var[ok])) if ok.any() else p_var, p_var))
    lo = min(float(np.min(run.mean[ok])) if ok.any() else p_mean, p_mean) - 3.5 * spread
    hi = max(float(np.max(run.mean[ok])) if ok.any() else p_mean, p_mean) + 3.5 * spread
    x = np.linspace(lo, hi, 500)
    p_pdf = _mixture_pdf(spec, x)
    dens_ax.fill_between(x, p_pdf, color="0.75", label="p")
    (q_line,) = dens_ax.plot([], [], color=COLORS[0], lw=2, label="q_t")
    peak = max(float(np.max(p_pdf)), float(np.nanmax([_normal_pdf(np.array([m]), m, v)[0]
                                                       for m, v in zip(run.mean[ok], run.var[ok])] or [0])))
    dens_ax.set_ylim(0, 1.1 * peak)
    dens_ax.set_xlim(lo, hi)
    dens_ax.set_xlabel("x")
    dens_ax.set_ylabel("density")
    dens_ax.legend(fontsize=8, loc="upper right")
    means, log_vars = _kl_plane(spec, [run], resolution)
    _log_contours(fig, path_ax, means, log_vars, kl_field(spec, divergence, means, log_vars), None, lines=False)
    (trail,) = path_ax.plot([], [], "-", color=COLORS[1], lw=1.8)
    (dot,) = path_ax.plot([], [], "o", color=COLORS[1], mec="black", ms=7)
    path_ax.set_xlabel("mean m")
    path_ax.set_ylabel("log variance  log v")
    caption = path_ax.set_title("", fontsize=10)
    fig.suptitle(title or f"{run.label}: minimising {'KL(p‖q)' if divergence == 'forward' else 'KL(q‖p)'}",
                 fontsize=11)
    index = _frame_indices(len(run.step), frames)
    kl = run.kl_forward if divergence == "forward" else run.kl_reverse

    def draw(k):
        t = index[k]
        q_line.set_data(x, _normal_pdf(x, run.mean[t], run.var[t]))
        seen = ok[: t + 1]
        trail.set_data(run.mean[: t + 1][seen], np.log(run.var[: t + 1][seen]))
        if ok[t]:
            dot.set_data([run.mean[t]], [math.log(run.var[t])])
        caption.set_text(f"step {int(run.step[t])}: KL = {_fmt(kl[t])}")
        return q_line, trail, dot, caption

    _save_gif(fig, draw, len(index), path, fps)
    return len(index)


# ------------------------------------------------------------------------------ training

def train_figure(step: Sequence[float], loss: Sequence[float], epoch: Sequence[float], epoch_loss: Sequence[float], *,
                 test_loss: Sequence[float] | None = None, steps_per_epoch: float | None = None,
                 lr: Sequence[float] | None = None, loss_name: str = "loss", mini_batches: bool = True,
                 title: str | None = None, size: tuple[int, int] = DEFAULT_SIZE):
    """Training curves: the loss per epoch (train, and test if given) over the mini-batch losses.

    Args:
      step, loss: the mini-batch loss at every step (the engine trace's ``step`` and ``loss``).
      epoch, epoch_loss: the full training loss after each epoch (epoch numbers 1, 2, ...).
      test_loss: the test loss after each epoch, or None.
      steps_per_epoch: to place steps on the epoch axis (default: len(step) / len(epoch)).
      lr: the learning rate at every step; a panel is added when it varies.
      loss_name: the loss's name for the axis label (e.g. "cross-entropy", "MSE").
      mini_batches: draw the per-step losses (False in batch mode, where a step is an epoch and
        the step losses are the epoch losses).
      title, size: as :func:`landscape_figure`.

    Returns:
      A matplotlib Figure: the losses against epochs (log axis) and, below, the learning rate when
      it varies.

    Example:
      >>> import numpy as np
      >>> s = np.arange(100); fig = train_figure(s, 1 / (1 + s) + 0.05 * np.random.default_rng(0).random(100),
      ...                                          np.arange(1, 11), 1 / (1 + 10 * np.arange(1, 11)), size=(400, 300))
      >>> len(fig.axes)
      1
    """
    step, loss = np.asarray(step, dtype=float), np.asarray(loss, dtype=float)
    epoch, epoch_loss = np.asarray(epoch, dtype=float), np.asarray(epoch_loss, dtype=float)
    if step.shape != loss.shape or epoch.shape != epoch_loss.shape:
        raise ValueError("step and loss, and epoch and epoch_loss, must have the same lengths.")
    if test_loss is not None and np.asarray(test_loss).shape != epoch.shape:
        raise ValueError("test_loss needs one value per epoch.")
    fig = _figure(size)
    with_lr = lr is not None and _varies(np.asarray(lr, dtype=float))
    axes = fig.subplots(2, 1, sharex=True, height_ratios=(3, 1)) if with_lr else [fig.add_subplot()]
    ax = axes[0]
    per_epoch = steps_per_epoch or (len(step) / max(len(epoch), 1))
    x_steps = step / per_epoch
    if mini_batches:
        ax.plot(x_steps, loss, color="0.6", lw=0.6, alpha=0.7, label=f"mini-batch {loss_name} (each step)")
    marks = len(epoch) <= 100                      # markers on a few epochs; a plain line on thousands
    ax.plot(epoch, epoch_loss, "-o" if marks else "-", color=COLORS[0], lw=2, ms=4,
            label=f"train {loss_name} (full data, per epoch)")
    if test_loss is not None:
        ax.plot(epoch, np.asarray(test_loss, dtype=float), "-s" if marks else "--", color=COLORS[1], lw=2, ms=4,
                label=f"test {loss_name} (per epoch)")
    values = np.concatenate([loss if mini_batches else [], epoch_loss,
                             np.asarray(test_loss if test_loss is not None else [], dtype=float)])
    if np.all(values[np.isfinite(values)] > 0):
        ax.set_yscale("log")
    ax.set_ylabel(loss_name + (" (log scale)" if ax.get_yscale() == "log" else ""))
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    if with_lr:
        axes[1].plot(x_steps, np.asarray(lr, dtype=float), color=COLORS[2], lw=1.4)
        axes[1].set_ylabel("learning rate")
        axes[1].grid(True, alpha=0.3)
    axes[-1].set_xlabel("epoch (one pass over the training rows)" if mini_batches else
                        "epoch (= step: every step uses all training rows)")
    fig.suptitle(title or f"training: {loss_name} per epoch over {len(epoch)} epochs", fontsize=12, wrap=True)
    return fig


_LOSS_NAMES = {"mse": "MSE", "rmse": "RMSE", "cross-entropy": "cross-entropy"}


def _train_curves(result) -> dict:
    """The arguments of :func:`train_figure` from a :class:`gdlab.training.TrainResult`."""
    tr = result.trace
    mini = result.batch_size > 0
    test = np.asarray(tr.epoch_test_loss, dtype=float)
    return dict(step=tr.step, loss=tr.loss, epoch=tr.epoch, epoch_loss=tr.epoch_loss,
                test_loss=test if result.n_test and np.isfinite(test).any() else None,
                steps_per_epoch=(result.n_train // result.batch_size) if mini else 1.0, lr=tr.lr,
                loss_name=_LOSS_NAMES.get(result.model.loss, result.model.loss), mini_batches=mini)


def train_title(result, what: str | None = None) -> str:
    """A title that says what ran and how it ended: ``what`` (e.g. the optimizer), the model, the
    batches, the stop reason and the final losses.

    Args:
      result: a :class:`gdlab.training.TrainResult`.
      what: a prefix, e.g. the optimizer's name.

    Returns:
      The title.

    Example:
      >>> import gdlab
      >>> res = gdlab.train("iris", "softmax", max_steps=5, tol=0, grad_tol=0, test_size=0)
      >>> train_title(res, "gd")          # doctest: +ELLIPSIS
      'gd: softmax regression (cross-entropy, λ = 0.00667), full batch: max_steps after 5 steps (5 epochs); train loss ...'
    """
    kind = {"linear": "linear", "logistic": "logistic", "softmax": "softmax"}[result.model.kind]
    batch = "full batch" if result.batch_size == 0 else f"mini-batches of {result.batch_size}"
    penalty = f", λ = {result.l2:.3g}" if result.l2 else ""
    test = f", test {_fmt(result.test_loss)}" if result.n_test else ""
    head = f"{what}: " if what else ""
    return (f"{head}{kind} regression ({result.model.loss}{penalty}), {batch}: {result.stop_reason} after "
            f"{result.steps:,} steps ({result.epochs:,} epochs); train loss {_fmt(result.loss)}{test}")


def train_result_figure(result, *, title: str | None = None, size: tuple[int, int] = DEFAULT_SIZE):
    """:func:`train_figure` of a :func:`gdlab.train` result: train (and test) loss per epoch, the
    mini-batch loss of every step behind them (mini-batch runs), the learning rate when it varies.

    Args:
      result: a :class:`gdlab.training.TrainResult`.
      title: the figure's title (default :func:`train_title`).
      size: (width, height) in pixels.

    Returns:
      A matplotlib Figure.

    Example:
      >>> import gdlab
      >>> res = gdlab.train("iris", "softmax", batch_size=16, epochs=3)
      >>> [ax.get_xlabel() for ax in train_result_figure(res, size=(400, 300)).axes]
      ['epoch (one pass over the training rows)']
    """
    return train_figure(**_train_curves(result), title=title or train_title(result), size=size)


def animate_train(result, path: str, *, title: str | None = None, size: tuple[int, int] = (900, 600),
                  frames: int = 60, fps: int = 12) -> int:
    """A GIF of :func:`train_result_figure` growing: every curve drawn up to the frame's step
    (axes fixed to the whole run). Returns the number of frames.

    Args:
      result: a :class:`gdlab.training.TrainResult`.
      path: the ``.gif`` to write.
      title, size: as :func:`train_result_figure`.
      frames, fps: frames in the GIF (at most) and frames per second.

    Returns:
      The number of frames written.

    Example:
      >>> import os, tempfile, gdlab
      >>> res = gdlab.train("iris", "softmax", batch_size=16, epochs=2)
      >>> with tempfile.TemporaryDirectory() as tmp:
      ...     n = animate_train(res, os.path.join(tmp, "t.gif"), frames=3, size=(300, 200))
      >>> 1 <= n <= 3
      True
    """
    check_figure_path(path, "--animate", (".gif",))
    curves = _train_curves(result)
    fig = train_figure(**curves, title=title or train_title(result), size=size)
    lines = [(line, *(np.asarray(v, dtype=float) for v in line.get_data()))
             for ax in fig.axes for line in ax.get_lines()]
    step = np.asarray(curves["step"], dtype=float)
    index = _frame_indices(len(step), frames)
    caption = fig.axes[0].set_title("", fontsize=10)

    def draw(k):
        t = index[k]
        upto = step[t] / curves["steps_per_epoch"]
        for line, x, y in lines:
            keep = x <= upto + 1e-12
            line.set_data(x[keep], y[keep])
        caption.set_text(f"epoch {upto:.3g} (step {int(step[t]):,})")
        return [line for line, _, _ in lines] + [caption]

    _save_gif(fig, draw, len(index), path, fps)
    return len(index)


# ------------------------------------------------------------------------------ sweeps

def sweep_heatmap(result, x_axis: str | None = None, y_axis: str | None = None, *, title: str | None = None,
                  size: tuple[int, int] = DEFAULT_SIZE):
    """Steps to converge over two axes of a sweep; cells that hit max_steps or diverged marked apart.

    Args:
      result: a :class:`gdlab.sweep.SweepResult`.
      x_axis, y_axis: the two grid axes to draw (default: the first two with more than one
        value; a grid with one such axis draws one row). Any other axis must have one value.
      title, size: as :func:`landscape_figure`.

    Returns:
      A matplotlib Figure: colour = steps to converge (log scale), grey hatched = stopped at
      max_steps, red with × = diverged.

    Example:
      >>> from gdlab.sweep import sweep_landscape
      >>> res = sweep_landscape("bowl", 2.0, "momentum", ["lr=0.01,0.1,1.5", "momentum=0,0.5"], max_steps=300)
      >>> fig = sweep_heatmap(res, size=(400, 300))
      >>> fig.axes[0].get_xlabel()
      'lr'
    """
    from matplotlib.colors import LogNorm
    from matplotlib.patches import Patch

    axes = {a.name: a for a in result.axes}
    varying = [a.name for a in result.axes if len(a.values) > 1]
    x_axis = x_axis or (varying[0] if varying else result.axes[0].name)
    if y_axis is None:
        rest = [n for n in varying if n != x_axis]
        y_axis = rest[0] if rest else None
    for name in (x_axis, y_axis):
        if name is not None and name not in axes:
            raise ValueError(f"the sweep has no axis {name!r}; its axes are {', '.join(axes)}.")
    others = [n for n in varying if n not in (x_axis, y_axis)]
    if others:
        raise ValueError(f"a heatmap draws two axes but the grid varies {len(varying)} ({', '.join(varying)}); "
                         f"give the others one value each.")
    xa = axes[x_axis]
    ya = axes[y_axis] if y_axis else None
    xs = np.asarray(xa.values, dtype=float)
    ys = np.asarray(ya.values, dtype=float) if ya else np.array([0.0])
    steps = np.full((len(ys), len(xs)), np.nan)
    reason = np.full((len(ys), len(xs)), "", dtype=object)
    col = result.columns
    for k in range(len(result)):
        i = int(np.argmin(np.abs(xs - col[x_axis][k])))
        j = int(np.argmin(np.abs(ys - col[y_axis][k]))) if ya else 0
        reason[j, i] = col["stop_reason"][k]
        if col["steps_to_converge"][k] is not None:
            steps[j, i] = max(col["steps_to_converge"][k], 1)
    fig = _figure(size)
    ax = fig.add_subplot()
    # every cell the same size: column i, row j (the tick labels carry the values, log-spaced or not)
    xe, ye = np.arange(len(xs) + 1) - 0.5, np.arange(len(ys) + 1) - 0.5
    finite = steps[np.isfinite(steps)]
    norm = LogNorm(vmin=max(1.0, finite.min()), vmax=max(finite.max(), finite.min() + 1)) if finite.size else None
    mesh = ax.pcolormesh(xe, ye, np.ma.masked_invalid(steps), cmap="viridis", norm=norm, shading="flat")
    bar = fig.colorbar(mesh, ax=ax, pad=0.01)
    bar.set_label("steps to converge (log scale)")
    for j in range(len(ys)):
        for i in range(len(xs)):
            if reason[j, i] == "max_steps":
                ax.fill_between([xe[i], xe[i + 1]], ye[j], ye[j + 1], facecolor="0.82", edgecolor="0.55",
                                hatch="///", lw=0.0)
            elif reason[j, i] == "diverged":
                ax.fill_between([xe[i], xe[i + 1]], ye[j], ye[j + 1], facecolor="#f4a6a6", edgecolor="none")
                ax.plot(i, j, marker="x", color="#b00000", ms=max(3.0, min(9.0, 300 / max(len(xs), len(ys)))), mew=1.5)
    ax.set_xlim(xe[0], xe[-1])
    ax.set_ylim(ye[0], ye[-1])
    for axis, values, setter, labeller in (
            (xa, xs, ax.set_xticks, ax.set_xticklabels),
            (ya, ys, ax.set_yticks, ax.set_yticklabels)):
        if axis is None:
            ax.set_yticks([])
            continue
        ticks = np.unique(np.round(np.linspace(0, len(values) - 1, min(len(values), 9))).astype(int))
        setter(ticks)
        labeller([f"{values[t]:.3g}" for t in ticks])
    ax.set_xlabel(f"{x_axis}" + (" (log-spaced)" if xa.log else ""))
    if ya:
        ax.set_ylabel(f"{y_axis}" + (" (log-spaced)" if ya.log else ""))
    counts = result.counts()
    fig.legend(handles=[Patch(facecolor="0.82", edgecolor="0.55", hatch="///",
                             label=f"max_steps: did not converge ({counts['max_steps']})"),
                       Patch(facecolor="#f4a6a6", edgecolor="#b00000", label=f"diverged ({counts['diverged']})"),
                       Patch(facecolor=mesh.cmap(0.6), label=f"converged ({counts['converged']})")],
              fontsize=8, loc="outside lower center", ncols=3, frameon=False)
    s = result.settings
    if result.kind == "train":
        what = f"{s.get('model')} regression on {s.get('data')}"
    else:
        what = s.get("function") or f"fit {s.get('target')} ({s.get('divergence')} KL)"
    fig.suptitle(title or f"sweep of {s.get('optimizer')} on {what}: {len(result)} runs, "
                 f"max_steps {s.get('max_steps')}, tol {s.get('tol')}", fontsize=11)
    return fig


def param_comparison_figure(result, *, title: str | None = None, size: tuple[int, int] = (1200, 600)):
    """The invariance picture of :func:`gdlab.invariance.compare_params`.

    Left: for every pair of parameterizations, the symmetric KL between their q's at each step
    (log axis), solid for the first optimizer (natural gradient by default), dashed for the
    second. Right: each run's path in (mean, log variance), one colour per parameterization.

    Args:
      result: a :class:`gdlab.invariance.ParamComparison`.
      title: the figure's title (default: what was compared).
      size: (width, height) in pixels.

    Returns:
      A matplotlib Figure.

    Example:
      >>> from gdlab.invariance import compare_params
      >>> res = compare_params("N(3, 0.5)", "N(0, 5)", lr=0.05, steps=20, params=("mean_var", "mean_precision"))
      >>> fig = param_comparison_figure(res, size=(600, 300))
      >>> [round(v) for v in fig.get_size_inches() * fig.dpi]
      [600, 300]
    """
    fig = _figure(size)
    gaps, paths = fig.subplots(1, 2)
    styles = ("-", "--", ":", "-.")
    colours = {p: f"C{i}" for i, p in enumerate(result.params)}
    pairs = list(dict.fromkeys((a, b) for _, a, b in result.gap_curves))
    pair_colour = {pair: f"C{i % 10}" for i, pair in enumerate(pairs)}
    for k, name in enumerate(result.optimizers):
        for (opt, a, b), curve in result.gap_curves.items():
            if opt != name:
                continue
            steps = np.arange(len(curve))
            shown = np.where(curve > 0, curve, np.nan)  # step 0 (the same q) has no place on a log axis
            gaps.plot(steps, shown, styles[k % len(styles)], color=pair_colour[(a, b)], lw=1.2,
                      label=f"{name}: {a} vs {b}")
        for param in result.params:
            run = result.runs[(name, param)]
            with np.errstate(invalid="ignore", divide="ignore"):
                log_var = np.log(np.where(run.trace.var > 0, run.trace.var, np.nan))
            paths.plot(run.trace.mean, log_var, styles[k % len(styles)], color=colours[param], lw=1.2,
                       label=f"{name}, {param}")
    gaps.set_yscale("log")
    gaps.set_xlabel("step")
    gaps.set_ylabel("max(KL(q_a||q_b), KL(q_b||q_a))  [nats]")
    gaps.set_title("how far apart the parameterizations' q's are")
    gaps.legend(fontsize="x-small", ncol=2)
    paths.set_xlabel("mean")
    paths.set_ylabel("log variance")
    paths.set_title("paths of q")
    paths.legend(fontsize="x-small", ncol=2)
    fig.suptitle(title or f"{' vs '.join(result.optimizers)} in {len(result.params)} parameterizations, "
                 f"lr {result.lr:g}, {result.steps} steps")
    return fig
