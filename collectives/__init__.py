"""Collectives: specs, schedules, Numba kernels, executors and the public API.

The names below load on first use, so that ``import collectives.schedule`` (or the registry, or
an algorithm module) loads neither numba nor the network model.

>>> import numpy as np, collectives
>>> collectives.run("allreduce", np.ones((3, 4), np.float32))[0].tolist()
[3.0, 3.0, 3.0, 3.0]
"""

import importlib

__version__ = "0.2.0"

# public name -> module that defines it
_EXPORTS = {
    "run": "api", "reference": "api", "prepare": "api", "build_schedule": "registry",
    "simulate": "api", "SimResult": "timing",
    "list_algorithms": "registry", "list_collectives": "registry", "COLLECTIVES": "registry",
    "AlgorithmUnavailable": "registry",
    "check": "schedule", "Schedule": "schedule", "ScheduleError": "schedule",
}

__all__ = list(_EXPORTS)


def __getattr__(name):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'collectives' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
