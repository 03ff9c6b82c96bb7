"""Reduction ops: the one table of names and kernel codes.

``avg`` reduces as a sum and is divided by the device count once at the end, as NCCL's
``ncclAvg`` does. Nothing here imports numba: the schedules, specs and checker read this table
without loading the kernels.

>>> OPS
('sum', 'prod', 'min', 'max', 'avg')
>>> check_op("max")
'max'
"""

from __future__ import annotations

OPS = ("sum", "prod", "min", "max", "avg")
OP_CODES = {name: i for i, name in enumerate(OPS)}
SUM, PROD, MIN, MAX, AVG = range(5)


def check_op(op) -> str:
    """``op`` if it names an op; ``ValueError`` listing the valid ones otherwise."""
    if not isinstance(op, str) or op not in OP_CODES:
        raise ValueError(f"unknown op {op!r}; expected one of {', '.join(OPS)}")
    return op
