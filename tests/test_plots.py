"""Tests for gdlab.plots: every picture is made at a small size and read back with PIL.

Each test checks that the file is a valid, non-blank image of exactly the pixel size asked for,
and that the figure carries what it claims (labelled axes, a title, the runs' data).
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from gdlab import fit, landscapes, optim, plots, schedules
from gdlab.sweep import sweep_landscape

SMALL = (360, 260)
MEDIUM = (480, 360)
MIXTURE = "0.5*N(-2, 0.25) + 0.5*N(2, 0.25)"


def assert_image(path, size, fmt="PNG", frames=1):
    """A valid, non-blank image of exactly ``size``; a GIF with 2 to ``frames`` frames (pillow
    merges identical consecutive frames, e.g. once a run has stopped)."""
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        assert im.format == fmt and im.size == size
        assert (2 if frames > 1 else 1) <= getattr(im, "n_frames", 1) <= frames
        low, high = im.convert("L").getextrema()
        assert low < high, "the image is blank"


def labelled(fig):
    assert fig._suptitle is not None and fig._suptitle.get_text()
    for ax in fig.axes:
        if ax.get_label() == "<colorbar>":
            continue
        assert ax.get_xlabel() or ax.get_ylabel(), ax


@pytest.fixture(scope="module")
def double_well_runs():
    small = landscapes.minimize("double-well", 1.5, optim.gd(0.01))
    restarts = landscapes.minimize("double-well", 1.5, optim.gd(
        schedules.make_schedule("warm-restarts", 0.1, period=50, period_mult=2)))
    return [plots.path_from_trace("gd, lr 0.01", small.trace), plots.path_from_trace("warm restarts", restarts.trace)]


@pytest.fixture(scope="module")
def one_fit():
    return fit(MIXTURE, "N(0.5, 5)", "reverse", optim.momentum(0.05, 0.9), max_steps=300)


def test_landscape_1d_with_a_schedule(tmp_path, double_well_runs):
    fig = plots.landscape_figure(landscapes.get_landscape("double-well"), double_well_runs, size=SMALL)
    labelled(fig)
    main = fig.axes[0]
    np.testing.assert_array_equal(main.lines[1].get_xdata(), double_well_runs[0].points[:, 0])
    assert "learning rate η_t" in [ax.get_ylabel() for ax in fig.axes]          # the schedule's panel
    assert {"gd, lr 0.01", "warm restarts", "global minimum", "local minimum"} <= {
        t.get_text() for t in main.get_legend().get_texts()}
    plots.save_figure(fig, str(tmp_path / "dw.png"))
    assert_image(tmp_path / "dw.png", SMALL)


def test_landscape_2d_multistart(tmp_path):
    res = landscapes.multistart("himmelblau", 12, optim.gd(0.01), seed=0, keep_traces=True, max_steps=400)
    paths = [plots.path_from_trace(f"run {i}", t) for i, t in enumerate(res.traces)]
    fig = plots.landscape_figure(landscapes.get_landscape("himmelblau"), paths, best=res.best, size=SMALL,
                                 resolution=40, title="gd from 12 starts")
    legend = {t.get_text() for t in fig.axes[0].get_legend().get_texts()}
    assert f"run {res.best}" in legend and "the other 11 runs" in legend
    assert fig._suptitle.get_text() == "gd from 12 starts"
    plots.save_figure(fig, str(tmp_path / "h.svg"))
    assert (tmp_path / "h.svg").read_text().lstrip().startswith("<?xml")
    plots.save_figure(fig, str(tmp_path / "h.png"))
    assert_image(tmp_path / "h.png", SMALL)


def test_landscape_of_an_expression_without_recorded_minima(tmp_path):
    res = landscapes.minimize("x**2 + 3*y**2 + x*y", (1.0, 1.0), optim.gd(0.05))
    fig = plots.landscape_figure(landscapes.get_landscape("x**2 + 3*y**2 + x*y"),
                                 [plots.path_from_trace("gd", res.trace)], size=SMALL, resolution=30)
    assert "f(θ_t)" in [ax.get_ylabel() for ax in fig.axes]
    plots.save_figure(fig, str(tmp_path / "e.png"))
    assert_image(tmp_path / "e.png", SMALL)


def test_fit_figure_one_run(tmp_path, one_fit):
    fig = plots.fit_figure(MIXTURE, [plots.fit_run("momentum", one_fit)], "reverse", size=MEDIUM, resolution=25)
    labelled(fig)
    titles = [ax.get_title() for ax in fig.axes]
    assert "both KL directions along the run" in titles
    kl_ax = fig.axes[[ax.get_title() for ax in fig.axes].index("both KL directions along the run")]
    assert kl_ax.get_xscale() == "log" and kl_ax.get_yscale() == "log"
    assert any(ax.get_xlabel() == "mean m" and ax.get_ylabel() == "log variance  log v" for ax in fig.axes)
    densities = fig.axes[0]
    assert sum("q at" in t.get_text() for t in densities.get_legend().get_texts()) >= 3    # start, steps, end
    plots.save_figure(fig, str(tmp_path / "fit.png"))
    assert_image(tmp_path / "fit.png", MEDIUM)


def test_fit_figure_compares_runs_and_draws_the_schedule(tmp_path, one_fit):
    other = fit(MIXTURE, "N(0.5, 5)", "reverse", optim.gd(schedules.make_schedule("exponential", 0.3, decay=0.99)),
                max_steps=300)
    fig = plots.fit_figure(MIXTURE, [plots.fit_run("momentum", one_fit), plots.fit_run("gd, annealed", other)],
                           "reverse", size=MEDIUM, resolution=20)
    assert "learning rate η_t" in [ax.get_ylabel() for ax in fig.axes]
    plots.save_figure(fig, str(tmp_path / "cmp.png"))
    assert_image(tmp_path / "cmp.png", MEDIUM)
    with pytest.raises(ValueError, match="1-D"):
        plots.fit_figure("N([0, 0], [1, 1])", [plots.fit_run("x", one_fit)], "forward")


def test_train_figure_from_plain_arrays(tmp_path):
    steps = np.arange(200)
    rng = np.random.default_rng(0)
    batch = 1 / (1 + 0.05 * steps) + 0.05 * rng.random(200)
    epochs = np.arange(1, 11)
    fig = plots.train_figure(steps, batch, epochs, 1 / (1 + epochs), test_loss=1.2 / (1 + epochs),
                             lr=0.1 * 0.99 ** steps, loss_name="cross-entropy", size=SMALL)
    labelled(fig)
    texts = {t.get_text() for t in fig.axes[0].get_legend().get_texts()}
    assert {"mini-batch cross-entropy (each step)", "test cross-entropy (per epoch)"} <= texts
    assert fig.axes[-1].get_xlabel().startswith("epoch") and len(fig.axes) == 2
    plots.save_figure(fig, str(tmp_path / "train.png"))
    assert_image(tmp_path / "train.png", SMALL)
    with pytest.raises(ValueError, match="same lengths"):
        plots.train_figure(steps, batch[:-1], epochs, epochs)


@pytest.fixture(scope="module")
def mini_batch_run():
    from gdlab import train

    return train("breast_cancer", "logistic", optimizer=optim.momentum(0.1, 0.9), batch_size=64, epochs=4)


def test_train_result_figure_draws_the_runs_curves(tmp_path, mini_batch_run):
    res = mini_batch_run
    fig = plots.train_result_figure(res, size=SMALL)
    labelled(fig)
    ax = fig.axes[0]
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert set(lines) == {"mini-batch cross-entropy (each step)", "train cross-entropy (full data, per epoch)",
                          "test cross-entropy (per epoch)"}
    per_epoch = res.n_train // 64                      # steps per epoch: the x of step t is t / per_epoch
    x, y = lines["mini-batch cross-entropy (each step)"].get_data()
    np.testing.assert_array_equal(np.asarray(x), res.trace.step / per_epoch)
    x, y = lines["train cross-entropy (full data, per epoch)"].get_data()
    np.testing.assert_array_equal(np.asarray(x), np.arange(5.0))       # θ₀ and the ends of 4 epochs
    np.testing.assert_array_equal(np.asarray(y), res.trace.epoch_loss)
    assert float(np.asarray(y)[-1]) == res.loss
    title = fig._suptitle.get_text()
    assert "logistic regression" in title and "mini-batches of 64" in title and res.stop_reason in title
    plots.save_figure(fig, str(tmp_path / "train.svg"))
    assert (tmp_path / "train.svg").read_text().lstrip().startswith("<?xml")
    plots.save_figure(fig, str(tmp_path / "train.png"))
    assert_image(tmp_path / "train.png", SMALL)


def test_full_batch_train_figure_has_no_mini_batch_line_and_shows_a_schedule(tmp_path):
    from gdlab import train

    res = train("iris", "softmax", optimizer=lambda n: optim.gd(schedules.make_schedule("cosine", 1.0, horizon=n)),
                max_steps=60, test_size=0.0)
    fig = plots.train_result_figure(res, size=MEDIUM)
    labelled(fig)
    assert len(fig.axes) == 2 and fig.axes[1].get_ylabel() == "learning rate"
    assert [line.get_label() for line in fig.axes[0].get_lines()] == ["train cross-entropy (full data, per epoch)"]
    assert "every step uses all training rows" in fig.axes[-1].get_xlabel()
    lr = np.asarray(fig.axes[1].get_lines()[0].get_data()[1])
    np.testing.assert_allclose(lr, 0.5 * (1 + np.cos(np.pi * np.arange(len(lr)) / 60)), rtol=1e-12)   # cosine to 0
    plots.save_figure(fig, str(tmp_path / "full.png"))
    assert_image(tmp_path / "full.png", MEDIUM)


def test_train_animation_is_a_gif_of_the_asked_size(tmp_path, mini_batch_run):
    n = plots.animate_train(mini_batch_run, str(tmp_path / "t.gif"), size=MEDIUM, frames=12)
    assert 2 <= n <= 12
    assert_image(tmp_path / "t.gif", MEDIUM, "GIF", frames=n)
    with pytest.raises(ValueError, match=".gif"):
        plots.animate_train(mini_batch_run, str(tmp_path / "t.png"))


def test_sweep_heatmap_marks_max_steps_and_diverged_cells(tmp_path):
    res = sweep_landscape("bowl", 2.0, "momentum", ["lr=0.001:1.5:6:log", "momentum=0,0.9"], max_steps=200)
    counts = res.counts()
    assert counts["diverged"] > 0 and counts["max_steps"] > 0 and counts["converged"] > 0
    fig = plots.sweep_heatmap(res, size=MEDIUM)
    labelled(fig)
    ax = fig.axes[0]
    assert ax.get_xlabel() == "lr (log-spaced)" and ax.get_ylabel() == "momentum"
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert f"diverged ({counts['diverged']})" in legend and f"converged ({counts['converged']})" in legend
    assert sum(1 for line in ax.lines if line.get_marker() == "x") == counts["diverged"]
    plots.save_figure(fig, str(tmp_path / "heat.png"))
    assert_image(tmp_path / "heat.png", MEDIUM)
    three = sweep_landscape("bowl", 2.0, "momentum", ["lr=0.1,0.2", "momentum=0,0.5", "x0=1,2"], max_steps=50)
    with pytest.raises(ValueError, match="give the others one value"):
        plots.sweep_heatmap(three)


def test_animations_are_gifs_of_the_asked_size(tmp_path, double_well_runs, one_fit):
    n = plots.animate_landscape(landscapes.get_landscape("double-well"), double_well_runs, str(tmp_path / "a.gif"),
                                size=(300, 200), frames=8)
    assert_image(tmp_path / "a.gif", (300, 200), "GIF", frames=n)
    assert n > 1
    m = plots.animate_fit(MIXTURE, plots.fit_run("momentum", one_fit), "reverse", str(tmp_path / "f.gif"),
                          size=(320, 160), frames=6, resolution=15)
    assert_image(tmp_path / "f.gif", (320, 160), "GIF", frames=m)


@pytest.mark.parametrize("call, mention", [
    (lambda p: plots.check_figure_path(str(p / "x.jpg")), "must end in"),
    (lambda p: plots.check_figure_path(str(p / "missing" / "x.png")), "folder does not exist"),
    (lambda p: plots.check_figure_path(str(p / "x.png"), "--animate", (".gif",)), ".gif"),
    (lambda p: plots.parse_size("12x"), "WIDTHxHEIGHT"),
    (lambda p: plots.parse_size("50x50"), "100 to 10000"),
])
def test_bad_picture_requests_are_refused(tmp_path, call, mention):
    with pytest.raises(ValueError, match=mention):
        call(tmp_path)


# ------------------------------------------------------------------------------ gdlab fit --plot / --animate / --compare

def test_fit_command_draws_and_animates(tmp_path):
    from test_cli import invoke, strict_loads

    png, gif = tmp_path / "fit.png", tmp_path / "fit.gif"
    rc, out, err = invoke("fit", "--target", MIXTURE, "--init", "N(0.5, 5)", "--divergence", "reverse",
                          "--optimizer", "momentum", "--lr", "0.05", "--momentum", "0.9", "--max-steps", "200",
                          "--plot", str(png), "--animate", str(gif), "--plot-size", "640x480", "--json", "-")
    assert rc == 0, err
    assert strict_loads(out)["steps"] <= 200
    assert_image(png, (640, 480))
    assert_image(gif, (640, 240), "GIF", frames=60)


def test_fit_command_compares_optimizers_in_one_table_and_figure(tmp_path):
    from test_cli import invoke, strict_loads

    png = tmp_path / "cmp.png"
    common = ("--target", MIXTURE, "--init", "N(0.5, 5)", "--divergence", "reverse", "--max-steps", "300")
    rc, out, err = invoke("fit", *common, "--compare", "gd:lr=0.1", "momentum:lr=0.1,momentum=0.9",
                          "natural:lr=0.5", "--plot", str(png), "--plot-size", "640x480", "--json", "-")
    assert rc == 0, err
    d = strict_loads(out)
    assert [r["spec"] for r in d["runs"]] == ["gd:lr=0.1", "momentum:lr=0.1,momentum=0.9", "natural:lr=0.5"]
    for run, single in zip(d["runs"], (("--optimizer", "gd", "--lr", "0.1"),
                                       ("--optimizer", "momentum", "--lr", "0.1", "--momentum", "0.9"),
                                       ("--optimizer", "natural", "--lr", "0.5"))):
        rc, out, err = invoke("fit", *common, *single, "--json", "-")
        one = strict_loads(out)
        assert (run["stop_reason"], run["steps"], run["loss"]) == (one["stop_reason"], one["steps"], one["loss"])
        assert run["steps_to_converge"] == (one["steps"] if one["stop_reason"] == "converged" else None)
    assert_image(png, (640, 480))
    rc, out, _ = invoke("fit", *common, "--compare", "gd:lr=0.1", "momentum:lr=0.1,momentum=0.9")
    assert rc == 0 and "steps to" in out and "stop reason" in out


@pytest.mark.parametrize("extra, mention", [
    (["--target", "N([0,0], [1,1])", "--plot", "{tmp}/p.png"], "1-D"),
    (["--target", "N(2, 1)", "--animate", "{tmp}/p.png"], ".gif"),
    (["--target", "N(2, 1)", "--plot", "{tmp}/no/p.png"], "folder"),
    (["--target", "N(2, 1)", "--compare", "sgdx"], "sgdx"),
    (["--target", "N(2, 1)", "--compare", "gd:lr=1,lr=2"], "twice"),
    (["--target", "N(2, 1)", "gd:lr=1"], "--compare"),
])
def test_fit_command_refuses_bad_pictures_and_specs(tmp_path, extra, mention):
    from test_cli import assert_one_line_error, invoke

    line = assert_one_line_error(*invoke("fit", *[e.replace("{tmp}", str(tmp_path)) for e in extra]))
    assert mention in line, line
