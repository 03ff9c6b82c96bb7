"""Reduction ops: the one table of names, kernel codes and which dtypes each op takes.

``avg`` reduces as a sum and is divided by the device count once at the end. ``mulsum`` is nccl-tests'
``-o mulsum`` (NCCL's ``ncclRedOpCreatePreMulSum``): each device's input is multiplied by its own
scalar before a sum, with nccl-tests' scalar (``ncclVerifiablePremulScalar``): 1 on even devices, 2
on odd ones (:func:`premul_scalar`). The MPI ops: ``land``, ``lor``, ``lxor`` (0 or 1 in the input's
type, as C's ``&&``, ``||`` and ``!=`` of truth values), ``band``, ``bor``, ``bxor``, and
``maxloc``/``minloc`` on MPI's pair types (the value's max or min; of equal values the smaller index,
as MPI-3.1 section 5.9.4 defines). Nothing here imports numba: the schedules, specs and checker read
this table without loading the kernels.

Which dtypes each op takes (:data:`VALID`, by the dtype's kind, :func:`collectives.dtypes.kind`),
following MPI-3.1 section 5.9.2 and, for NCCL's own ops and types, NCCL:

=================  ====================================================================
op                 dtypes
=================  ====================================================================
sum, prod          integers, floating point (with float16, bfloat16, fp8), complex
min, max           integers, floating point (not complex, not bool)
avg, mulsum        integers, floating point (NCCL's ops; NCCL has no complex or bool)
land, lor, lxor    integers, bool (MPI's "C integer, Logical")
band, bor, bxor    integers (MPI's "C integer, Byte": uint8 is MPI_BYTE's)
maxloc, minloc     the pair types only (float_int, double_int, long_int, 2int, short_int)
=================  ====================================================================

>>> OPS
('sum', 'prod', 'min', 'max', 'avg')
>>> check_op("max"), check_pair("bool", "lor"), check_pair(np.dtype("int8"), "bxor")
('max', ('bool', 'lor'), ('int8', 'bxor'))
>>> check_pair("bool", "sum")
Traceback (most recent call last):
...
ValueError: unsupported dtype bool for op 'sum'; sum takes int, float and complex dtypes; bool takes land, lor, lxor
"""

from __future__ import annotations

import numpy as np  # noqa: F401  (the doctests name numpy dtypes)

from . import dtypes

#: The arithmetic ops every integer and floating-point dtype takes (what the older op sweeps cover).
OPS = ("sum", "prod", "min", "max", "avg")
#: MPI's logical, bitwise and location ops.
LOGICAL_OPS = ("land", "lor", "lxor")
BITWISE_OPS = ("band", "bor", "bxor")
LOC_OPS = ("maxloc", "minloc")
#: Every op.
ALL_OPS = OPS + ("mulsum",) + LOGICAL_OPS + BITWISE_OPS + LOC_OPS
OP_CODES = {name: i for i, name in enumerate(ALL_OPS)}
SUM, PROD, MIN, MAX, AVG, MULSUM, LAND, LOR, LXOR, BAND, BOR, BXOR, MAXLOC, MINLOC = range(len(ALL_OPS))

#: op -> the dtype kinds it takes (see the module docstring).
VALID = {
    "sum": ("int", "float", "complex"), "prod": ("int", "float", "complex"),
    "min": ("int", "float"), "max": ("int", "float"),
    "avg": ("int", "float"), "mulsum": ("int", "float"),
    **{op: ("int", "bool") for op in LOGICAL_OPS},
    **{op: ("int",) for op in BITWISE_OPS},
    **{op: ("pair",) for op in LOC_OPS},
}
#: mpi4py's predefined op attribute (``MPI.<NAME>``) -> op name.
MPI_OPS = {"SUM": "sum", "PROD": "prod", "MIN": "min", "MAX": "max", "LAND": "land", "LOR": "lor",
           "LXOR": "lxor", "BAND": "band", "BOR": "bor", "BXOR": "bxor", "MAXLOC": "maxloc", "MINLOC": "minloc"}


def check_op(op) -> str:
    """``op`` if it names an op; ``ValueError`` listing the valid ones otherwise."""
    if not isinstance(op, str) or op not in OP_CODES:
        raise ValueError(f"unknown op {op!r}; expected one of {', '.join(ALL_OPS)}")
    return op


def ops_for(dtype) -> tuple[str, ...]:
    """The ops ``dtype`` takes, in table order.

    >>> ops_for("complex64"), ops_for("float_int")
    (('sum', 'prod'), ('maxloc', 'minloc'))
    """
    kind = dtypes.kind(dtype)
    return tuple(op for op in ALL_OPS if kind in VALID[op])


def check_pair(dtype, op) -> tuple[str, str]:
    """``(dtype name, op)`` if ``op`` reduces ``dtype``; ``ValueError`` naming both and what is valid."""
    name, op = dtypes.canonical(dtype), check_op(op)
    kind = dtypes.kind(name)
    if kind not in VALID[op]:
        takes = VALID[op]
        what = " and ".join([", ".join(takes[:-1]), takes[-1]] if len(takes) > 1 else takes)
        raise ValueError(f"unsupported dtype {name} for op {op!r}; {op} takes {what} dtypes; "
                         f"{name} takes {', '.join(ops_for(name))}")
    return name, op


def premul_scalar(device: int) -> int:
    """``mulsum``'s scalar of ``device``: nccl-tests' ``ncclVerifiablePremulScalar`` (1 on even ranks, 2 on odd)."""
    return 1 if device % 2 == 0 else 2


def kernel_op(op: str) -> int:
    """The code the kernels combine ``op`` with: ``avg`` and ``mulsum`` reduce as sums."""
    return SUM if op in ("avg", "mulsum") else OP_CODES[op]

