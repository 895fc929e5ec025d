r"""Several optimizers on one problem: the ``--compare`` option's specs and runs.

A spec names an optimizer of :mod:`gdlab.optim` and its settings::

    gd:lr=0.1
    momentum:lr=0.1,momentum=0.9
    nesterov:lr=0.05,momentum=0.9,schedule=exponential,decay=0.99
    gd:lr=0.3,schedule=warm-restarts,period=50,period_mult=2
    natural:lr=0.5                       (fits only: a landscape has no Fisher information)
    natural:lr=1,trust_region=0.01

Keys: ``lr``, ``momentum``, ``damping``, ``trust_region``, ``schedule`` (a name of
:mod:`gdlab.schedules`) and the schedule's options ``decay``, ``decay_steps``, ``alpha``,
``period``, ``period_mult`` (``-`` may stand for ``_``). A setting a spec leaves out comes from the
command's own options (``--lr``, ``--momentum``, ...). Each run is an ordinary single run
(:func:`gdlab.landscapes.minimize`, :func:`gdlab.fit`), so a compared run is the same run as
the one its settings would give alone.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple, Sequence

__all__ = ["OptimizerSpec", "parse_optimizer_spec", "build_optimizer", "compare_landscape", "compare_fit"]

FLOAT_KEYS = ("lr", "momentum", "damping", "trust_region", "decay", "alpha", "period_mult")
INT_KEYS = ("decay_steps", "period")
KEYS = FLOAT_KEYS + INT_KEYS + ("schedule",)
_HELP = 'write it as NAME:key=value,... e.g. "momentum:lr=0.1,momentum=0.9"'


class OptimizerSpec(NamedTuple):
    """A parsed ``--compare`` spec: the text, the optimizer's name and the settings it gives."""

    text: str
    name: str
    settings: dict


def parse_optimizer_spec(text: str) -> OptimizerSpec:
    """Parse ``"NAME:key=value,..."`` (or a bare ``NAME``).

    Args:
      text: the ``--compare`` argument: an optimizer of :data:`gdlab.optim.OPTIMIZERS` and its
        settings (``lr``, ``momentum``, ``damping``, ``trust_region``, ``schedule`` and its options).

    Returns:
      An :class:`OptimizerSpec`; a bad spec is a ValueError naming the problem.

    Example:
      >>> parse_optimizer_spec("momentum:lr=0.1,momentum=0.9")
      OptimizerSpec(text='momentum:lr=0.1,momentum=0.9', name='momentum', settings={'lr': 0.1, 'momentum': 0.9})
    """
    from gdlab import optim, schedules

    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"--compare needs an optimizer spec; {_HELP}.")
    name, _, rest = text.strip().partition(":")
    name = name.strip()
    if name not in optim.OPTIMIZERS:
        raise ValueError(f"--compare {text!r}: unknown optimizer {name!r}; use one of {', '.join(optim.OPTIMIZERS)}.")
    settings: dict[str, Any] = {}
    for item in filter(None, (p.strip() for p in rest.split(","))) if rest.strip() else ():
        key, eq, value = item.partition("=")
        key, value = key.strip().replace("-", "_"), value.strip()
        if not eq or not key or not value:
            raise ValueError(f"--compare {text!r}: {item!r} is not key=value; {_HELP}.")
        if key not in KEYS:
            raise ValueError(f"--compare {text!r}: unknown setting {key!r}; the settings are {', '.join(KEYS)}.")
        if key in settings:
            raise ValueError(f"--compare {text!r}: {key} is given twice.")
        if key == "schedule":
            if value not in schedules.SCHEDULES:
                raise ValueError(f"--compare {text!r}: schedule must be one of {', '.join(schedules.SCHEDULES)}, "
                                 f"got {value!r}.")
            settings[key] = value
            continue
        try:
            number = float(value)
        except ValueError:
            raise ValueError(f"--compare {text!r}: {key}={value!r} is not a number.") from None
        if not math.isfinite(number):
            raise ValueError(f"--compare {text!r}: {key} must be a finite number, got {value}.")
        if key in INT_KEYS:
            if not number.is_integer() or number < 1:
                raise ValueError(f"--compare {text!r}: {key} must be a whole number of steps ≥ 1, got {value}.")
            number = int(number)
        settings[key] = number
    return OptimizerSpec(text.strip(), name, settings)


def build_optimizer(spec: OptimizerSpec, defaults: dict, horizon: int):
    """The optax transform a spec names; settings it omits come from ``defaults`` (the command's options).

    Args:
      spec: a parsed spec.
      defaults: the command's settings (``lr``, ``momentum``, ... or None where not given).
      horizon: the run's length in steps (the default decay length of a cosine schedule).

    Returns:
      The optax transform (:func:`gdlab.optim.by_name`).

    Example:
      >>> opt = build_optimizer(parse_optimizer_spec("gd:lr=0.5"), {"lr": 0.1}, 100)
      >>> float(opt.init(__import__("jax").numpy.zeros(1)).hyperparams["learning_rate"])
      0.5
    """
    from gdlab import optim, schedules

    # the command's defaults apply where this optimizer takes them; the spec's own settings always do
    takes = {"momentum": spec.name in ("momentum", "nesterov"), "damping": spec.name == "natural",
             "trust_region": spec.name == "natural"}
    s = {k: v for k, v in defaults.items() if v is not None and takes.get(k, True)}
    s.update(spec.settings)
    schedule = s.get("schedule", "constant")
    options = {k: s[k] for k in ("decay", "decay_steps", "period", "period_mult", "alpha") if k in s}
    if schedule == "constant" and options and any(k in spec.settings for k in options):
        raise ValueError(f"--compare {spec.text!r}: {', '.join(k for k in options if k in spec.settings)} needs a "
                         f"schedule=... that uses it.")
    if schedule != "constant":
        allowed = {"exponential": ("decay", "decay_steps"), "step": ("decay", "decay_steps"),
                   "cosine": ("decay_steps", "alpha"), "warm-restarts": ("period", "period_mult", "alpha")}[schedule]
        options = {k: v for k, v in options.items() if k in allowed}
    else:
        options = {}
    try:
        rate = schedules.make_schedule(schedule, float(s.get("lr", 1.0 if spec.name == "natural" else 0.1)),
                                       horizon=horizon, **options)
        return optim.by_name(spec.name, rate, s.get("momentum"), damping=s.get("damping"),
                             trust_region=s.get("trust_region"))
    except ValueError as exc:
        raise ValueError(f"--compare {spec.text!r}: {exc}") from None


def label(spec: OptimizerSpec, defaults: dict) -> str:
    """A short legend label: the spec with the command's defaults it used.

    Args:
      spec: a parsed spec.
      defaults: the command's settings.

    Returns:
      The label.

    Example:
      >>> label(parse_optimizer_spec("momentum:momentum=0.9"), {"lr": 0.01})
      'momentum lr 0.01, momentum 0.9'
    """
    shown = dict(spec.settings)
    if "lr" not in shown and defaults.get("lr") is not None:
        shown = {"lr": defaults["lr"], **shown}
    return spec.name + (" " + ", ".join(f"{k} {v:g}" if isinstance(v, (int, float)) else f"{k} {v}"
                                         for k, v in shown.items()) if shown else "")


def compare_landscape(function: Any, init: Any, specs: Sequence[OptimizerSpec], defaults: dict, *,
                      max_steps: int = 10_000, tol: float = 1e-15, patience: int = 20, grad_tol: float = 0.0):
    """Run each spec's optimizer on the landscape from ``init``: a list of (spec, MinimizeResult).

    Args:
      function, init: as :func:`gdlab.landscapes.minimize`.
      specs: the parsed specs.
      defaults: the command's settings, for what a spec omits.
      max_steps, tol, patience, grad_tol: the stopping rules, the same for every run.

    Returns:
      [(spec, :class:`gdlab.landscapes.MinimizeResult`), ...] in the order of ``specs``.

    Example:
      >>> runs = compare_landscape("double-well", 1.5, [parse_optimizer_spec("gd:lr=0.01"),
      ...                          parse_optimizer_spec("momentum:lr=0.01,momentum=0.9")], {}, max_steps=3000)
      >>> [round(float(res.x[0]), 6) for _, res in runs]      # momentum rolls over the barrier
      [1.2, -1.5]
    """
    from gdlab.landscapes import minimize
    from gdlab.sweep import _NO_FISHER

    for spec in specs:
        if spec.name == "natural":
            raise ValueError(f"--compare {spec.text!r}: {_NO_FISHER}")
    optimizers = [build_optimizer(spec, defaults, max_steps) for spec in specs]
    return [(spec, minimize(function, init, opt, max_steps=max_steps, tol=tol, patience=patience, grad_tol=grad_tol))
            for spec, opt in zip(specs, optimizers)]


def compare_fit(target: Any, init: Any, divergence: str, specs: Sequence[OptimizerSpec], defaults: dict,
                **fit_options):
    """Fit q to p once per spec: a list of (spec, FitResult).

    Args:
      target, init, divergence: as :func:`gdlab.fit`.
      specs: the parsed specs.
      defaults: the command's settings, for what a spec omits.
      fit_options: the other keywords of :func:`gdlab.fit`, the same for every run.

    Returns:
      [(spec, :class:`gdlab.fitting.FitResult`), ...] in the order of ``specs``.

    Example:
      >>> runs = compare_fit("N(2, 1)", "N(0, 5)", "forward", [parse_optimizer_spec("gd:lr=0.5"),
      ...                    parse_optimizer_spec("natural")], {})
      >>> [(res.stop_reason, round(res.q.mean, 6), round(res.q.var, 6)) for _, res in runs]
      [('converged', 2.0, 1.0), ('converged', 2.0, 1.0)]
    """
    from gdlab.fitting import fit

    max_steps = fit_options.get("max_steps", 10_000)
    optimizers = [build_optimizer(spec, defaults, max_steps) for spec in specs]
    return [(spec, fit(target, init, divergence, opt, **fit_options)) for spec, opt in zip(specs, optimizers)]
