"""gdlab: gradient descent in parameter space and in distribution space.

    >>> import gdlab
    >>> res = gdlab.fit(target="N(2, 1)", init="N(0, 5)", divergence="forward",
    ...                 optimizer=gdlab.optim.gd(lr=0.5))
    >>> res.stop_reason, round(res.q.mean, 6), round(res.q.var, 6)
    ('converged', 2.0, 1.0)

``N(m, v)`` is a normal with mean m and **variance** v. Heavy modules (JAX) load on first use,
so ``import gdlab`` and ``gdlab --help`` are quick.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_ATTRIBUTES = {
    "fit": ("gdlab.fitting", "fit"),
    "FitResult": ("gdlab.fitting", "FitResult"),
    "Gaussian": ("gdlab.fitting", "Gaussian"),
    "run": ("gdlab.engine", "run"),
    "Objective": ("gdlab.engine", "Objective"),
    "StopCriteria": ("gdlab.stopping", "StopCriteria"),
    "parse_distribution": ("gdlab.specs", "parse_distribution"),
    "SpecError": ("gdlab.specs", "SpecError"),
    "kl_forward": ("gdlab.divergences", "kl_forward"),
    "kl_reverse": ("gdlab.divergences", "kl_reverse"),
    "make_family": ("gdlab.families", "make_family"),
    "make_schedule": ("gdlab.schedules", "make_schedule"),
    "fisher_information": ("gdlab.fisher", "fisher_information"),
    "compare_params": ("gdlab.invariance", "compare_params"),
    "minimize": ("gdlab.landscapes", "minimize"),
    "multistart": ("gdlab.landscapes", "multistart"),
    "sweep_fit": ("gdlab.sweep", "sweep_fit"),
    "sweep_landscape": ("gdlab.sweep", "sweep_landscape"),
    "train": ("gdlab.training", "train"),
    "TrainResult": ("gdlab.training", "TrainResult"),
}
_SUBMODULES = ("optim", "schedules", "stopping", "engine", "families", "targets", "divergences", "specs",
               "fisher", "invariance", "landscapes", "expressions", "sweep", "plots", "comparison",
               "models", "data", "spill", "training", "distributed")

__all__ = sorted(set(_ATTRIBUTES) | set(_SUBMODULES))


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"gdlab.{name}")
    if name in _ATTRIBUTES:
        module, attr = _ATTRIBUTES[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'gdlab' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
