"""Collectives: specs, schedules, Numba kernels, executors and the public API.

>>> import numpy as np, collectives
>>> collectives.run("allreduce", np.ones((3, 4), np.float32))[0].tolist()
[3.0, 3.0, 3.0, 3.0]
"""

from .api import SimResult, build_schedule, reference, run, simulate
from .registry import COLLECTIVES, list_algorithms
from .schedule import Schedule, ScheduleError, check

__all__ = ["run", "simulate", "reference", "build_schedule", "list_algorithms", "check", "Schedule",
           "ScheduleError", "SimResult", "COLLECTIVES"]
