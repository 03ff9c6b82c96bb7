"""Data types the collectives accept: numpy names, nccl-tests names, and how the kernels store them."""

from __future__ import annotations

import numpy as np

# Element formats of the kernels: plain numeric, or 16-bit floats held as uint16 bit patterns.
NATIVE, HALF, BF16 = 0, 1, 2

# name -> (storage dtype, kernel format). bfloat16 has no numpy dtype: it is held as uint16 bits.
DTYPES = {
    "int8": (np.int8, NATIVE), "uint8": (np.uint8, NATIVE),
    "int32": (np.int32, NATIVE), "uint32": (np.uint32, NATIVE),
    "int64": (np.int64, NATIVE), "uint64": (np.uint64, NATIVE),
    "float16": (np.uint16, HALF), "bfloat16": (np.uint16, BF16),
    "float32": (np.float32, NATIVE), "float64": (np.float64, NATIVE),
}
# nccl-tests spellings (-d half|float|double|...).
ALIASES = {"half": "float16", "float": "float32", "double": "float64", "bf16": "bfloat16"}
NCCL_NAMES = {"float16": "half", "float32": "float", "float64": "double"}


def nccl_names() -> list[str]:
    """Every dtype under the name nccl-tests' ``-d`` gives it, in table order."""
    return [NCCL_NAMES.get(n, n) for n in DTYPES]


def canonical(dtype) -> str:
    """The canonical name of ``dtype`` (a name, an alias, or a numpy dtype).

    >>> canonical("float"), canonical(np.dtype("int32")), canonical("bf16")
    ('float32', 'int32', 'bfloat16')
    """
    if isinstance(dtype, str):
        name = ALIASES.get(dtype, dtype)
    else:
        try:
            name = np.dtype(dtype).name
        except TypeError:
            name = repr(dtype)
    if name not in DTYPES:
        raise ValueError(f"unsupported dtype {dtype!r}; expected one of {', '.join(DTYPES)} "
                         f"(or {', '.join(ALIASES)})")
    return name


def storage(dtype) -> np.dtype:
    return np.dtype(DTYPES[canonical(dtype)][0])


def kernel_format(dtype) -> int:
    return DTYPES[canonical(dtype)][1]


def itemsize(dtype) -> int:
    return storage(dtype).itemsize

