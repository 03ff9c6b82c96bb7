"""Data types the collectives accept: numpy names, nccl-tests and MPI names, and how the kernels store them.

One table, :data:`TABLE`, holds every dtype: its storage dtype (what the work buffers, the kernels
and the MPI executor's messages hold), its kernel format, its kind (which ops it takes, see
:func:`collectives.ops.check_pair`), the numpy dtype a caller's array has (``None`` where numpy has
none and the data comes as bit patterns) and nccl-tests' ``-d`` name (``None`` where nccl-tests has
none). The views below are derived from it.

- bfloat16 is held as uint16 bits, float16 too (the kernels do the arithmetic in float32); the fp8
  formats ``float8_e4m3`` / ``float8_e5m2`` (OCP FP8 E4M3 and E5M2, NCCL's ``ncclFloat8e4m3`` /
  ``ncclFloat8e5m2``) as uint8 bits; ``bool`` (MPI's ``C_BOOL``) as uint8 0/1.
- MPI's pair types for MAXLOC/MINLOC are numpy structured dtypes with C alignment, as
  ``mpi4py.util.dtlib.to_numpy_dtype(MPI.FLOAT_INT)`` and the others return them: value then int32
  index. The kernels hold an 8-byte pair as one uint64 word and a 16-byte pair as one complex128
  word (bits only, never complex arithmetic), so that the executors move whole elements unchanged.
  ``long_double_int`` is not supported: numba has no 80-bit long double and its 32-byte element
  has no storage word the executors could move as one element.

>>> canonical("float"), canonical(np.dtype("int32")), canonical("bf16"), canonical("f8e4m3")
('float32', 'int32', 'bfloat16', 'float8_e4m3')
>>> canonical(np.dtype([("f0", "<f4"), ("f1", "<i4")], align=True))
'float_int'
>>> storage("double_int"), itemsize("short_int"), kind("bool")
(dtype('complex128'), 8, 'bool')
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Kernel formats: plain numeric (also bool and complex), 16-bit floats as uint16 bits, fp8 as uint8
# bits, and the pair types (value, int32 index) as one storage word each.
NATIVE, HALF, BF16, E4M3, E5M2 = 0, 1, 2, 3, 4
PAIR_FLOAT_INT, PAIR_2INT, PAIR_SHORT_INT, PAIR_DOUBLE_INT, PAIR_LONG_INT = 5, 6, 7, 8, 9

#: Kinds, for the table of valid (dtype, op) pairs in :mod:`collectives.ops`.
KINDS = ("int", "float", "complex", "bool", "pair")


def _pair(value: str) -> np.dtype:
    """MPI's (value, int) struct as mpi4py's dtlib gives it: fields f0, f1, C alignment."""
    return np.dtype([("f0", value), ("f1", "<i4")], align=True)


@dataclass(frozen=True)
class Dtype:
    """One row of :data:`TABLE`."""

    storage: np.dtype        # the kernels' and executors' element
    fmt: int                 # kernel format
    kind: str                # one of KINDS
    numpy: np.dtype | None   # the caller's array dtype; None: data comes as storage bit patterns
    nccl: str | None = None  # nccl-tests' -d name, None if nccl-tests has none

    @property
    def itemsize(self) -> int:
        return self.storage.itemsize


def _row(storage, fmt, kind, numpy=None, nccl=None) -> Dtype:
    return Dtype(np.dtype(storage), fmt, kind, None if numpy is None else np.dtype(numpy), nccl)


#: Every dtype, in nccl-tests' ``-d all`` order first, then MPI's own.
TABLE = {
    "int8": _row(np.int8, NATIVE, "int", np.int8, "int8"),
    "uint8": _row(np.uint8, NATIVE, "int", np.uint8, "uint8"),
    "int32": _row(np.int32, NATIVE, "int", np.int32, "int32"),
    "uint32": _row(np.uint32, NATIVE, "int", np.uint32, "uint32"),
    "int64": _row(np.int64, NATIVE, "int", np.int64, "int64"),
    "uint64": _row(np.uint64, NATIVE, "int", np.uint64, "uint64"),
    "float16": _row(np.uint16, HALF, "float", np.float16, "half"),
    "float32": _row(np.float32, NATIVE, "float", np.float32, "float"),
    "float64": _row(np.float64, NATIVE, "float", np.float64, "double"),
    "bfloat16": _row(np.uint16, BF16, "float", None, "bfloat16"),
    "float8_e4m3": _row(np.uint8, E4M3, "float", None, "f8e4m3"),
    "float8_e5m2": _row(np.uint8, E5M2, "float", None, "f8e5m2"),
    "int16": _row(np.int16, NATIVE, "int", np.int16),
    "uint16": _row(np.uint16, NATIVE, "int", np.uint16),
    "bool": _row(np.uint8, NATIVE, "bool", np.bool_),
    "complex64": _row(np.complex64, NATIVE, "complex", np.complex64),
    "complex128": _row(np.complex128, NATIVE, "complex", np.complex128),
    "float_int": _row(np.uint64, PAIR_FLOAT_INT, "pair", _pair("<f4")),
    "double_int": _row(np.complex128, PAIR_DOUBLE_INT, "pair", _pair("<f8")),
    "long_int": _row(np.complex128, PAIR_LONG_INT, "pair", _pair("<i8")),
    "2int": _row(np.uint64, PAIR_2INT, "pair", _pair("<i4")),
    "short_int": _row(np.uint64, PAIR_SHORT_INT, "pair", _pair("<i2")),
}

#: Every dtype name -> (storage dtype, kernel format).
ALL_DTYPES = {name: (row.storage.type, row.fmt) for name, row in TABLE.items()}
#: The ten dtypes of NCCL before fp8 (what the op sweeps of the older suites cover), same form.
DTYPES = {name: ALL_DTYPES[name] for name in ("int8", "uint8", "int32", "uint32", "int64", "uint64", "float16",
                                              "bfloat16", "float32", "float64")}
#: nccl-tests' and other spellings (-d half|float|double|f8e4m3|...; ml_dtypes' float8_e4m3fn).
ALIASES = {"half": "float16", "float": "float32", "double": "float64", "bf16": "bfloat16",
           "f8e4m3": "float8_e4m3", "f8e5m2": "float8_e5m2", "float8_e4m3fn": "float8_e4m3",
           "c_bool": "bool", "twoint": "2int"}
#: Canonical name -> nccl-tests' -d name, where they differ.
NCCL_NAMES = {name: row.nccl for name, row in TABLE.items() if row.nccl and row.nccl != name}
#: numpy dtype of a caller's array -> canonical name (the structured ones as mpi4py's dtlib makes them).
BY_NUMPY = {row.numpy: name for name, row in TABLE.items() if row.numpy is not None}
#: mpi4py's predefined datatype attribute (``MPI.<NAME>``) -> canonical name, for the MPI types whose
#: numpy dtype alone would not say it (the pair types, C_BOOL) and the fixed-width spellings.
MPI_NAMES = {"FLOAT_INT": "float_int", "DOUBLE_INT": "double_int", "LONG_INT": "long_int", "TWOINT": "2int",
             "SHORT_INT": "short_int", "C_BOOL": "bool", "CXX_BOOL": "bool", "C_FLOAT_COMPLEX": "complex64",
             "C_DOUBLE_COMPLEX": "complex128", "C_COMPLEX": "complex64", "INT16_T": "int16", "SHORT": "int16",
             "UINT16_T": "uint16", "UNSIGNED_SHORT": "uint16", "INT8_T": "int8", "SIGNED_CHAR": "int8",
             "UINT8_T": "uint8", "UNSIGNED_CHAR": "uint8", "BYTE": "uint8", "INT32_T": "int32", "INT": "int32",
             "UINT32_T": "uint32", "UNSIGNED": "uint32", "INT64_T": "int64", "LONG": "int64",
             "LONG_LONG": "int64", "UINT64_T": "uint64", "UNSIGNED_LONG": "uint64",
             "UNSIGNED_LONG_LONG": "uint64", "FLOAT": "float32", "DOUBLE": "float64"}


def nccl_names() -> list[str]:
    """Every dtype nccl-tests knows, under the name its ``-d`` gives it, in table order.

    >>> nccl_names()[-3:]
    ['bfloat16', 'f8e4m3', 'f8e5m2']
    """
    return [row.nccl for row in TABLE.values() if row.nccl]


def _expected() -> str:
    return f"expected one of {', '.join(TABLE)} (or {', '.join(ALIASES)}, or their numpy dtypes)"


def _structured_name(dt: np.dtype) -> str | None:
    """The pair type whose layout (field types and offsets, item size) ``dt`` has, whatever its field names."""
    layout = [(dt.fields[f][0].newbyteorder("="), dt.fields[f][1]) for f in dt.names]
    for name, row in TABLE.items():
        want = row.numpy
        if row.kind == "pair" and want.itemsize == dt.itemsize and len(layout) == len(want.names) and \
                layout == [(want.fields[f][0].newbyteorder("="), want.fields[f][1]) for f in want.names]:
            return name
    return None


def canonical(dtype) -> str:
    """The canonical name of ``dtype`` (a name, an alias, or a numpy dtype, structured ones included).

    ``ValueError`` naming the dtype and the valid ones otherwise; ml_dtypes' ``float8_e4m3`` (the
    IEEE-like variant with infinities, not NCCL's) is refused by name:

    >>> canonical("float16"), canonical(np.float16), canonical(bool), canonical("2int")
    ('float16', 'float16', 'bool', '2int')
    """
    if isinstance(dtype, str):
        name = ALIASES.get(dtype.lower(), dtype)
        if name in TABLE:
            return name
        raise ValueError(f"unsupported dtype {dtype!r}; {_expected()}")
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise ValueError(f"unsupported dtype {dtype!r}; {_expected()}") from None
    if dt.names:
        name = _structured_name(dt)
        if name is None:
            raise ValueError(f"unsupported dtype {dt!r}: a structured dtype must have the layout of an MPI pair "
                             f"type (value, int32 index, C alignment): "
                             f"{', '.join(n for n, r in TABLE.items() if r.kind == 'pair')}")
        return name
    if dt.name == "float8_e4m3":
        raise ValueError("unsupported dtype float8_e4m3 (ml_dtypes' IEEE-like E4M3, with infinities); "
                         "NCCL's and ccemu's float8_e4m3 is OCP E4M3 (ml_dtypes.float8_e4m3fn)")
    name = BY_NUMPY.get(dt.newbyteorder("="), ALIASES.get(dt.name, dt.name))
    if name not in TABLE:
        raise ValueError(f"unsupported dtype {dtype!r}; {_expected()}")
    return name


def bits_only(dtype) -> bool:
    """Whether numpy has no dtype of its own for ``dtype`` (bfloat16, the fp8 formats): callers hold its
    data as storage bit patterns and name it with ``dtype=``.

    >>> bits_only("bfloat16"), bits_only("f8e5m2"), bits_only("float16")
    (True, True, False)
    """
    return TABLE[canonical(dtype)].numpy is None


def storage(dtype) -> np.dtype:
    return TABLE[canonical(dtype)].storage


def kernel_format(dtype) -> int:
    return TABLE[canonical(dtype)].fmt


def kind(dtype) -> str:
    """``int``, ``float``, ``complex``, ``bool`` or ``pair``: what decides the ops ``dtype`` takes."""
    return TABLE[canonical(dtype)].kind


def itemsize(dtype) -> int:
    return storage(dtype).itemsize
