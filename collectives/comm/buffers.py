"""mpi4py's buffer specifications as flat numpy views, and the MPI datatype and op tables.

Everything here is local to a rank (no communication). A specification ccemu cannot take (a derived
datatype, a non-contiguous or non-native-order buffer, a datatype or op outside
:data:`collectives.dtypes.TABLE` / :data:`collectives.ops.MPI_OPS`) parses to ``None``, and the
call is delegated to the wrapped communicator; a count or displacement that is wrong whatever the
datatype raises ``ValueError``/``TypeError`` naming it.

The datatype and op mappings are table-driven: an MPI datatype's ccemu name comes from
:data:`collectives.dtypes.MPI_NAMES` (by ``MPI.<NAME>``) or else from its numpy dtype
(``mpi4py.util.dtlib``) through :func:`collectives.dtypes.canonical`; an op's from
:data:`collectives.ops.MPI_OPS`; whether the pair is valid from :func:`collectives.ops.check_pair`.
So whatever those tables hold is emulated, and nothing else.
"""

from __future__ import annotations

import numpy as np

from .. import dtypes, ops
from ..executors import mpi as _executor

MPI = _executor.MPI

# -- the tables ----------------------------------------------------------------------------------

#: Every ccemu dtype name, in table order: a name's index is its code in the ranks' headers.
DTYPE_NAMES: tuple = tuple(getattr(dtypes, "TABLE", dtypes.DTYPES))
DTYPE_CODES = {name: i for i, name in enumerate(DTYPE_NAMES)}


def _numpy_names() -> dict:
    """numpy dtype of a caller's array -> ccemu name (float16 included, bfloat16/fp8 have none)."""
    by_numpy = getattr(dtypes, "BY_NUMPY", None)
    if by_numpy is not None:
        return dict(by_numpy)
    out = {np.dtype(np.float16): "float16"}
    for name, (st, fmt) in dtypes.DTYPES.items():
        if fmt == dtypes.NATIVE:
            out[np.dtype(st)] = name
    return out


_BY_NUMPY = _numpy_names()
#: MPI op handle -> ccemu op name, for the ops the kernels take.
_OPS_BY_HANDLE = {getattr(MPI, attr).handle: name
                  for attr, name in getattr(ops, "MPI_OPS", {"SUM": "sum", "PROD": "prod", "MIN": "min",
                                                               "MAX": "max"}).items()
                  if hasattr(MPI, attr) and name in ops.OP_CODES}
OP_NAMES: tuple = tuple(ops.OP_CODES)
OP_CODES = {name: i for i, name in enumerate(OP_NAMES)}
_DATATYPES: dict = {}   # datatype handle -> (ccemu name or None, numpy dtype or None)
_VALID: dict = {}       # (op, dtype) -> bool
_MPI_NAMES = getattr(dtypes, "MPI_NAMES", {})


def numpy_name(dt: np.dtype) -> str | None:
    """The ccemu name of a caller's numpy dtype, or ``None``."""
    name = _BY_NUMPY.get(dt)
    if name is None and dt.names:  # a structured dtype: a pair type by layout, whatever its field names
        try:
            name = dtypes.canonical(dt)
        except ValueError:
            return None
        _BY_NUMPY[dt] = name
    return name


def datatype(dt) -> tuple:
    """``(ccemu name, numpy dtype)`` of an MPI datatype (or a typecode string); ``(None, None)`` for one
    ccemu has no dtype for, ``(None, numpy dtype)`` for one it can size but not reduce."""
    if isinstance(dt, str):
        try:
            dt = MPI.Datatype.fromcode(dt)
        except (KeyError, ValueError):
            return None, None
    try:
        handle = dt.handle
    except AttributeError:
        return None, None
    hit = _DATATYPES.get(handle)
    if hit is None:
        hit = _DATATYPES[handle] = _lookup_datatype(dt)
    return hit


def _lookup_datatype(dt) -> tuple:
    np_dtype = _executor.numpy_dtype(dt)  # predefined types only
    if np_dtype is None:
        return None, None
    name = None
    for attr, candidate in _MPI_NAMES.items():
        if getattr(MPI, attr, None) == dt and candidate in DTYPE_CODES:
            name = candidate
            break
    if name is None:
        try:
            name = dtypes.canonical(np_dtype)
        except ValueError:
            name = None
    if name is not None and dtypes.itemsize(name) != np_dtype.itemsize:
        name = None  # a platform whose C type differs in size from ccemu's (never on LP64)
    return name, np_dtype


def op_name(op) -> str | None:
    """The ccemu name of a predefined MPI op the kernels take, else ``None`` (a user op, ``REPLACE``)."""
    try:
        return _OPS_BY_HANDLE.get(op.handle)
    except AttributeError:
        return None


def valid(op: str | None, dtype: str) -> bool:
    """Whether ``op`` reduces ``dtype`` (:func:`collectives.ops.check_pair`, cached)."""
    if op is None:
        return False
    key = (op, dtype)
    hit = _VALID.get(key)
    if hit is None:
        check = getattr(ops, "check_pair", None)
        try:
            if check is not None:
                check(dtype, op)
            hit = True
        except ValueError:
            hit = False
        _VALID[key] = hit
    return hit


def storage(dtype: str) -> np.dtype:
    return dtypes.storage(dtype)


def kernel_op(op: str) -> int:
    fn = getattr(ops, "kernel_op", None)
    return fn(op) if fn is not None else ops.OP_CODES[op]


# -- plain buffers ---------------------------------------------------------------------------------

def in_place(sendbuf) -> bool:
    return sendbuf is None or sendbuf is MPI.IN_PLACE


class Message:
    """A parsed buffer specification: a flat view over the entries the call uses.

    ``array`` is 1-D with ``count * max(blocks, 1)`` entries of the datatype's numpy dtype; ``count``
    the entries per block (per process for the block collectives); ``dtype`` the ccemu name."""

    __slots__ = ("array", "count", "dtype")

    def __init__(self, array, count, dtype):
        self.array, self.count, self.dtype = array, count, dtype


def message(spec, blocks: int, writable: bool = False) -> Message | None:
    """Parse an mpi4py buffer specification as mpi4py does; ``None`` if the executor cannot take it.

    ``blocks`` is the number of per-process blocks the buffer holds (the communicator size for the
    block collectives, 0 for a plain buffer); an explicit count is per block, as in MPI.
    """
    if type(spec) is np.ndarray:  # the common case, without the general parser's checks
        flags = spec.flags
        if flags.c_contiguous and (flags.writeable or not writable):
            name = _BY_NUMPY.get(spec.dtype)
            if name is not None:
                flat = spec.reshape(-1)
                per = blocks or 1
                if flat.size % per == 0:
                    return Message(flat, flat.size // per, name)
                return None
    parsed = parse_spec(spec, (list, tuple))
    if parsed is None:
        return None
    buf, count, displ, dt = parsed
    displ = 0 if displ is None else displ
    typed = typed_flat(buf, dt, writable)
    if typed is None:
        return None
    flat, name = typed
    per_call = max(blocks, 1)
    if not isinstance(displ, (int, np.integer)) or (count is not None and not isinstance(count, (int, np.integer))):
        return None
    available = flat.size - int(displ)
    if count is None:
        if available < 0 or available % per_call:
            return None
        count = available // per_call
    count = int(count)
    if count < 0 or displ < 0 or count * per_call > available:
        return None
    return Message(flat[displ:displ + count * per_call], count, name)


def size_hint(spec, blocks: int) -> tuple[int, int]:
    """``(count, dtype code + 1)`` of a specification ccemu cannot take, when its datatype is one
    ccemu knows (so that a delegated call can still be timed); ``(0, 0)`` otherwise."""
    parsed = parse_spec(spec, (list, tuple))
    if parsed is None:
        return 0, 0
    buf, count, _, dt = parsed
    name = None
    if dt is not None:
        name = datatype(dt)[0]
    else:
        try:
            arr = buf if isinstance(buf, np.ndarray) else np.asarray(memoryview(buf))
            name = numpy_name(arr.dtype.newbyteorder("="))
            if count is None:
                count = arr.size // max(blocks, 1)
        except (TypeError, ValueError):
            return 0, 0
    if name is None or not isinstance(count, (int, np.integer)) or count < 0:
        return 0, 0
    return int(count), DTYPE_CODES[name] + 1


def parse_spec(spec, pairs):
    """``(buf, count, displ, datatype)`` of an mpi4py buffer specification, as mpi4py reads it:
    ``buf``, ``[buf, type]``, ``[buf, count]``, ``[buf, (count, displ)]``, ``[buf, count, type]``,
    ``[buf, (count, displ), type]``, ``[buf, count, displ, type]``; ``pairs`` are the types a
    ``(count, displ)`` pair may have. ``None`` for a form mpi4py does not have."""
    buf, count, displ, dt = spec, None, None, None
    if isinstance(spec, (list, tuple)):
        if len(spec) == 2:
            buf, second = spec
            if isinstance(second, (MPI.Datatype, str)):
                dt = second
            elif isinstance(second, pairs):
                if len(second) != 2:
                    return None
                count, displ = second
            else:
                count = second
        elif len(spec) == 3:
            buf, count, dt = spec
            if isinstance(count, pairs):
                if len(count) != 2:
                    return None
                count, displ = count
        elif len(spec) == 4:
            buf, count, displ, dt = spec
        else:
            return None
    return buf, count, displ, dt


def typed_flat(buf, dt, writable):
    """``(flat array, ccemu name)`` of a buffer viewed as datatype ``dt`` (or its own dtype), or
    ``None`` if the executor cannot take it."""
    flat = flat_view(buf, writable)
    if flat is None:
        return None
    if dt is not None:
        name, np_dtype = datatype(dt)
        if name is None or flat.nbytes % np_dtype.itemsize:
            return None
        if flat.dtype != np_dtype:
            flat = flat.view(np.uint8).view(np_dtype)
        return flat, name
    name = numpy_name(flat.dtype)
    return (flat, name) if name is not None else None


def flat_view(buf, writable: bool) -> np.ndarray | None:
    """A 1-D view of a contiguous buffer in memory order, or ``None``."""
    try:
        arr = buf if isinstance(buf, np.ndarray) else np.asarray(memoryview(buf))
    except (TypeError, ValueError):
        return None
    if not (arr.flags.c_contiguous or arr.flags.f_contiguous) or (writable and not arr.flags.writeable):
        return None
    if arr.dtype.byteorder not in "=|":  # non-native byte order: leave it to mpi4py
        return None
    return arr.ravel(order="K")  # a view: the array is contiguous in C or Fortran order


# -- vector buffers -----------------------------------------------------------------------------------

class VMessage:
    """A parsed vector buffer specification: the whole buffer flat, and per rank a block's count and
    displacement in it (in entries of the datatype)."""

    __slots__ = ("array", "counts", "displs", "dtype")

    def __init__(self, array, counts, displs, dtype):
        self.array, self.counts, self.displs, self.dtype = array, counts, displs, dtype


def vmessage(spec, blocks: int, what: str, call: str, writable: bool = False) -> VMessage | None:
    """Parse an mpi4py vector buffer specification as mpi4py does (``message_vector``): a buffer (its
    entries cut evenly over the blocks), ``[buf, counts]``, ``[buf, type]``, ``[buf, (counts, displs)]``,
    ``[buf, counts, type]``, ``[buf, (counts, displs), type]``, ``[buf, counts, displs, type]``; an
    integer count is every block's, an integer displacement a stride, none packs the blocks.
    ``None`` if the executor cannot take the buffer; ``ValueError``/``TypeError`` for a bad count or
    displacement (``what`` is ``"send"`` or ``"recv"``, ``call`` the MPI call, for the message)."""
    parsed = parse_spec(spec, tuple)
    if parsed is None:
        return None
    buf, counts, displs, dt = parsed
    typed = typed_flat(buf, dt, writable)
    if typed is None:
        return None
    flat, name = typed
    n = flat.size
    if counts is None:
        counts = np.full(blocks, n // blocks, np.int64) + (np.arange(blocks) < n % blocks)
    else:
        counts = vector(call, f"{what}counts", counts, blocks)
    if displs is None:
        displs = np.cumsum(counts) - counts
    elif isinstance(displs, (int, np.integer)) and not isinstance(displs, bool):
        displs = int(displs) * np.arange(blocks, dtype=np.int64)
    else:
        displs = vector(call, f"{what[0]}displs", displs, blocks)
    check_blocks(call, what, counts, displs, n)
    return VMessage(flat, counts, displs, name)


def check_blocks(call, what, counts, displs, n, unit="entries") -> None:
    for j in np.flatnonzero((displs + counts > n) & (counts > 0)).tolist()[:1]:
        raise ValueError(f"{call}: {what} block {j} (displacement {int(displs[j])}, count {int(counts[j])}) "
                         f"ends past the buffer's {n} {unit}")


def vector(call: str, name: str, value, blocks: int) -> np.ndarray:
    """Per-rank counts or displacements: an integer for every block, or ``blocks`` integers >= 0."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        value = [value] * blocks
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError):
        arr = np.asarray([None])
    if arr.dtype == object or arr.dtype.kind not in "iu" or arr.ndim != 1:
        raise TypeError(f"{call}: {name}={value!r}; expected integers, one per rank")
    if arr.size != blocks:
        raise ValueError(f"{call}: {name} has {arr.size} entries; expected {blocks} (one per rank)")
    if arr.size and arr.min() < 0:
        j = int(np.argmin(arr))
        raise ValueError(f"{call}: {name}[{j}] = {int(arr[j])}; expected >= 0")
    return arr.astype(np.int64)


class WMessage:
    """A parsed ``Alltoallw`` specification in bytes: the buffer as uint8, per rank a block's byte
    count and byte displacement."""

    __slots__ = ("array", "counts", "displs")

    def __init__(self, array, counts, displs):
        self.array, self.counts, self.displs = array, counts, displs


def wmessage(spec, blocks: int, what: str, writable: bool = False) -> WMessage | None:
    """Parse ``[buf, (counts, displs), types]`` / ``(buf, counts, displs, types)`` (displacements in
    bytes, as MPI's): ``None`` unless every type is predefined (its elements contiguous, ``count x
    extent`` bytes)."""
    if not isinstance(spec, (list, tuple)):
        return None
    if len(spec) == 3 and isinstance(spec[1], (list, tuple)) and len(spec[1]) == 2:
        buf, (counts, displs), types = spec
    elif len(spec) == 4:
        buf, counts, displs, types = spec
    else:
        return None
    if isinstance(types, MPI.Datatype):
        types = [types] * blocks
    try:
        sizes = []
        for t in types:
            if _executor.numpy_dtype(t) is None:
                return None
            lb, extent = t.Get_extent()
            if lb:
                return None
            sizes.append(extent)  # a pair type's element with its padding: the padding bytes move too
    except (TypeError, AttributeError):
        return None
    if len(sizes) != blocks:
        raise ValueError(f"Alltoallw: {what}types has {len(sizes)} entries; expected {blocks} (one per rank)")
    flat = flat_view(buf, writable)
    if flat is None:
        return None
    flat = flat.view(np.uint8)
    counts = vector("Alltoallw", f"{what}counts", counts, blocks) * np.asarray(sizes, np.int64)
    displs = vector("Alltoallw", f"{what[0]}displs", displs, blocks)
    check_blocks("Alltoallw", what, counts, displs, flat.size, "bytes")
    return WMessage(flat, counts, displs)


def compatible(send: Message | None, recv: Message | None) -> bool:
    return send is not None and recv is not None and send.dtype == recv.dtype and send.count == recv.count
