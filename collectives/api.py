"""Public API: run a collective on real data (:func:`run`), or time it on a topology (:func:`simulate`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import dtypes, kernels, registry
from .collective import np_reduce
from .ops import check_op, check_pair, kernel_op
from .registry import build_schedule
from .executors import local
from .schedule import Schedule


def run(collective: str, data, algorithm: str = "ring", op: str = "sum", root: int = 0, dtype=None,
        **params) -> np.ndarray:
    """Run ``collective`` on real data with all devices in this process and return the result.

    Parameters
    ----------
    collective : str
        A registered collective: ``allreduce``, ``allgather``, ``reduce_scatter``, ``alltoall``,
        ``alltoallv``, ``broadcast``, ``reduce``, ``gather``, ``scatter``, ``sendrecv``, ``hypercube``
        (``collectives.list_collectives()``).
    data : numpy.ndarray, shape (P, x)
        Row d is device d's input: allreduce, broadcast, reduce, sendrecv (P, n); allgather, gather,
        hypercube (P, m); reduce_scatter, alltoall and scatter (P, P*m; scatter reads the root's row
        only); alltoallv (P, L), row i its blocks for devices
        0..P-1 packed, ``L >= max_i sum_j counts[i][j]`` (:mod:`collectives.alltoallv`). It is
        never modified. Any byte order: non-native data (e.g. ``x.astype(">f4")``) is converted to
        native order (a copy) first.
    algorithm : str
        A name from ``collectives.list_algorithms(collective)``.
    op : str
        ``sum``, ``prod``, ``min``, ``max``, ``avg``, ``mulsum`` (nccl-tests': each device's input
        times 1 on even devices, 2 on odd ones, then summed), or MPI's ``land``, ``lor``, ``lxor``,
        ``band``, ``bor``, ``bxor``, ``maxloc``, ``minloc``; ``ValueError`` for an op the dtype does
        not take (:func:`collectives.ops.check_pair`). Ignored by data-movement collectives.
    root : int
        Root device of broadcast, reduce, gather and scatter: an integer ``0 <= root < P``
        (``TypeError`` for anything else, including ``bool``; ``ValueError`` out of range), checked
        for every collective.
    dtype : str, optional
        For the dtypes numpy has none of: ``"bfloat16"`` for a uint16 array of bfloat16 bit patterns,
        ``"float8_e4m3"``/``"float8_e5m2"`` (nccl-tests' ``f8e4m3``/``f8e5m2``) for a uint8 array of
        fp8 bit patterns (or pass ml_dtypes' ``float8_e4m3fn``/``float8_e5m2`` arrays as they are).
        Otherwise ``data.dtype`` decides (:data:`collectives.dtypes.TABLE`: integers, floats, bool,
        complex, and MPI's pair types as the structured dtypes mpi4py's ``dtlib`` gives them).
    **params
        The algorithm's parameters, and the call's own (alltoallv: ``counts``, a P x P matrix of
        element counts, ``counts[i][j]`` from device i to j; without it every row is cut evenly).

    Returns
    -------
    numpy.ndarray
        allreduce, broadcast (P, n); allgather, hypercube (P, P*m); reduce_scatter, scatter (P, m);
        alltoall (P, P*m); alltoallv (P, max_j R_j), row j the blocks from devices 0..P-1 packed,
        zeros after its ``R_j = sum_i counts[i][j]``; reduce (n,) and gather (P*m,), the root's
        result; sendrecv (P, n), row d device d-1's input. hypercube takes a power-of-two P only
        (``ValueError`` otherwise). In native byte order, of
        ``data``'s dtype. Equal bit for bit to ``reference(collective, data, op, root)`` (signed
        zeros and NaN payloads included; the rules are in :mod:`collectives.kernels`), and the same
        bits on every device.

    Examples
    --------
    >>> import numpy as np
    >>> data = np.arange(6, dtype=np.float32).reshape(3, 2)
    >>> run("allreduce", data, algorithm="ring")
    array([[6., 9.],
           [6., 9.],
           [6., 9.]], dtype=float32)
    >>> run("allgather", data, algorithm="direct")[0]
    array([0., 1., 2., 3., 4., 5.], dtype=float32)
    >>> run("alltoallv", np.arange(6, dtype=np.int32).reshape(2, 3), "pairwise", counts=[[1, 2], [3, 0]])
    array([[0, 3, 4, 5],
           [1, 2, 0, 0]], dtype=int32)
    """
    job = prepare(collective, data, algorithm, op, root, dtype, **params)
    buf = job.inputs  # prepare() already copied the input into work buffers: run on them
    job.execute(buf)
    return job.result(buf)


@dataclass
class Prepared:
    """A collective ready to execute: its schedule and the work buffers loaded with the input
    (one row per device, then one per extra endpoint). ``run`` is ``execute`` on a copy of
    ``inputs`` followed by ``result``; benchmarks reuse one of these across iterations."""

    spec: object
    schedule: Schedule
    inputs: np.ndarray
    op: str
    op_code: int
    fmt: int
    dtype: np.dtype

    def execute(self, buf: np.ndarray) -> None:
        """Run the schedule on work buffers ``buf`` (a copy of ``inputs``) in place."""
        local.execute(self.schedule, buf, self.op_code, self.fmt)

    def result(self, buf: np.ndarray) -> np.ndarray:
        s = self.schedule
        out = self.spec.extract_for(s, buf[:s.P])
        if self.spec.reduces and self.op == "avg":
            kernels.finish_avg(out, s.P, self.fmt)
        return out.view(self.dtype) if out.dtype != self.dtype else out


def prepare(collective: str, data, algorithm: str = "ring", op: str = "sum", root: int = 0, dtype=None,
            comm=None, **params):
    """Check the arguments, build the schedule and load the work buffers (see :func:`run`).

    With ``comm`` (an mpi4py communicator), ``data`` is this rank's block of device rows and the
    job runs across the ranks (:func:`collectives.executors.mpi.prepare`).
    """
    if comm is not None:
        from .executors import mpi
        return mpi.prepare(collective, data, comm, algorithm, op, root, dtype, **params)
    spec = registry.collective(collective)
    registry.builder(collective, algorithm)
    check_op(op)
    data, name = check_data(data, dtype)
    if spec.reduces:
        check_pair(name, op)
    P = data.shape[0]
    root = registry.check_root(root, P)
    count, params = spec.resolve_call(data.shape, P, params)
    schedule = build_schedule(collective, algorithm, P, count, root, **params)
    buf = load_inputs(spec, schedule, data, name, op)
    if schedule.endpoints:  # rows for switches that take part (in-network reduction)
        buf = np.concatenate([buf, np.zeros((len(schedule.endpoints), buf.shape[1]), buf.dtype)])
    opc = kernel_op(op) if spec.reduces else kernels.SUM
    return Prepared(spec, schedule, buf, op, opc, dtypes.kernel_format(name), data.dtype)


def load_inputs(spec, schedule, data, name, op, first: int = 0) -> np.ndarray:
    """The work buffers of devices ``first .. first + k - 1`` holding ``data`` (their k input rows) in
    kernel storage; for ``mulsum`` each row first times its device's scalar
    (:func:`collectives.kernels.premultiply`), as NCCL premultiplies each input."""
    rows = as_storage(data, name)
    if spec.reduces and op == "mulsum":
        rows = kernels.premultiply(rows, dtypes.kernel_format(name), first)
    return spec.load_for(schedule, rows, first)


def reference(collective: str, data, op: str = "sum", root: int = 0, dtype=None, **call) -> np.ndarray:
    """The numpy result of ``collective`` on ``data`` (what :func:`run` must return, bit for bit).

    Reductions combine the devices in order from device 0 with the kernels' rules
    (:func:`collectives.collective.np_reduce`, and :func:`np_combine` for what it does not cover);
    float16, bfloat16 and the fp8 formats are widened to float32 and rounded back after every step, as
    the kernels do; ``mulsum`` sums the inputs premultiplied by their device's scalar. Arguments are
    checked as :func:`run` does. ``call``: the collective's call parameters (alltoallv: ``counts``).
    """
    spec = registry.collective(collective)
    check_op(op)
    data, name = check_data(data, dtype)
    if spec.reduces:
        check_pair(name, op)
    root = registry.check_root(root, data.shape[0])
    unknown = sorted(set(call) - set(spec.call_params))
    if unknown:
        takes = f"takes {', '.join(spec.call_params)}" if spec.call_params else "takes no call parameters"
        raise TypeError(f"reference() got {unknown[0]!r}; {collective} {takes}")
    spec.resolve_call(data.shape, data.shape[0], call)
    call = {k: v for k, v in call.items() if v is not None}
    if not spec.reduces:
        return spec.reference(data, op, root, **call)
    fmt = dtypes.kernel_format(name)
    # Pairs reduce field by field on the caller's structured dtype, the rest on the kernels' storage.
    values = data if dtypes.kind(name) == "pair" else as_storage(data, name)
    if op == "mulsum":
        values, op = kernels.premultiply(values, fmt), "sum"
    out = spec.reference(values, op, root, reducer=lambda d, o: np_combine(d, o, fmt), **call)
    return out.view(data.dtype) if out.dtype != data.dtype else out


def np_combine(data: np.ndarray, op: str, fmt: int = dtypes.NATIVE) -> np.ndarray:
    """numpy reference of a reduction over the rows of ``data`` (kernel storage of format ``fmt``, or a
    pair type's structured array), combined in order from row 0 with the kernels' rules.

    :func:`collectives.collective.np_reduce` for sum, prod, min, max and avg of integers and floats;
    the logical and bitwise ops, complex sums and products, and maxloc/minloc here (a single row comes
    back as it is, as from the kernels, which combine nothing).

    >>> np_combine(np.array([[2, 0, 3], [5, 0, 0]], np.int16), "lor").tolist()
    [1, 0, 1]
    >>> np_combine(np.array([[1 + 2j], [3 - 1j]], np.complex64), "prod").tolist()
    [(5+5j)]
    """
    data = np.asarray(data)
    if data.dtype.names:
        return _fold(data, lambda a, b: _np_loc(a, b, op))
    if op in LOGICAL_OR_BITWISE:
        return _fold(data, lambda a, b: LOGICAL_OR_BITWISE[op](a, b).astype(a.dtype))
    if data.dtype.kind == "c":
        return _fold(data, lambda a, b: _np_complex(a, b, op))
    widen, narrow = kernels.WIDEN_NARROW.get(fmt, (None, None))
    return np_reduce(data, op, widen=widen, narrow=narrow)


LOGICAL_OR_BITWISE = {
    "land": lambda a, b: (a != 0) & (b != 0), "lor": lambda a, b: (a != 0) | (b != 0),
    "lxor": lambda a, b: (a != 0) != (b != 0),
    "band": np.bitwise_and, "bor": np.bitwise_or, "bxor": np.bitwise_xor,
}


def _fold(data, combine):
    acc = np.ascontiguousarray(data[0]).copy()
    for row in data[1:]:
        acc = combine(acc, np.ascontiguousarray(row))
    return acc


def _pairwise(a, b, op):
    """``a op b`` element-wise with the kernels' float rules (np_reduce of the two rows)."""
    return np_reduce(np.stack([a, b]), op)


def _np_complex(a, b, op):
    ar, ai, br, bi = a.real, a.imag, b.real, b.imag
    if op == "sum":
        re, im = _pairwise(ar, br, "sum"), _pairwise(ai, bi, "sum")
    else:  # prod, as the kernels write it so that it commutes bit for bit
        with np.errstate(invalid="ignore"):
            re = _pairwise(ar, br, "prod") - _pairwise(ai, bi, "prod")
        im = _pairwise(_pairwise(ar, bi, "prod"), _pairwise(ai, br, "prod"), "sum")
    out = np.empty_like(a)
    out.real, out.imag = re, im
    return out


def _bits(v):
    return np.ascontiguousarray(v).view(f"u{v.dtype.itemsize}") if v.dtype.kind == "f" else v


def _np_loc(a, b, op):
    """maxloc/minloc of two structured (value, index) rows; a new row, padding zero."""
    value, index = a.dtype.names
    va, ia, vb, ib = a[value], a[index], b[value], b[index]
    with np.errstate(invalid="ignore"):
        v = _pairwise(va, vb, "max" if op == "maxloc" else "min")
        tie = (va == vb) | (_bits(va) == _bits(vb))
    out = np.zeros(a.shape, a.dtype)
    out[value] = v
    out[index] = np.where(tie, np.minimum(ia, ib), np.where(_bits(v) == _bits(va), ia, ib))
    return out


def check_data(data, dtype):
    """``(data, dtype name)`` for a (devices, elements) input array; ``TypeError``/``ValueError`` otherwise.

    ``data`` comes back in native byte order: a non-native array (``">f4"`` on a little-endian
    machine) is converted to a new array; the caller's is never modified. A ``dtype`` numpy lacks
    (bfloat16, the fp8 formats) names what ``data``'s storage bit patterns (uint16, uint8) hold;
    otherwise ``data.dtype`` decides.

    >>> check_data(np.arange(2, dtype=">i4").reshape(1, 2), None)
    (array([[0, 1]], dtype=int32), 'int32')
    """
    if not isinstance(data, np.ndarray):
        raise TypeError(f"data must be a numpy.ndarray of shape (devices, elements), got {type(data).__name__}")
    if data.ndim != 2 or data.shape[0] < 1:
        raise ValueError(f"data has shape {data.shape}; expected (devices, elements) with at least one device")
    if not data.dtype.isnative:  # the kernels and as_storage's views read native order: convert (a copy)
        data = data.astype(data.dtype.newbyteorder("="))
    if dtype is not None and dtypes.bits_only(dtype):  # a type numpy lacks, held as its storage bits
        name, held = dtypes.canonical(dtype), dtypes.storage(dtype)
        if data.dtype != held and _name_of(data.dtype) != name:
            raise TypeError(f"{name} data must be held as {held} bit patterns, got {data.dtype}")
        return data, name
    name = dtypes.canonical(data.dtype)
    return data, name


def _name_of(dt) -> str | None:
    try:
        return dtypes.canonical(dt)
    except ValueError:
        return None


def as_storage(data, name):
    """``data`` viewed as the kernels' storage type of dtype ``name`` (16-bit floats as uint16, fp8 and
    bool as uint8, pair types as one uint64 or complex128 word)."""
    st = dtypes.storage(name)
    return data.view(st) if data.dtype != st else data


from .timing import SimResult, peak_bw_GBps, simulate  # noqa: E402  (the time plane, re-exported)

__all__ = ["run", "prepare", "Prepared", "reference", "np_combine", "check_data", "as_storage", "load_inputs",
           "build_schedule", "simulate", "SimResult", "peak_bw_GBps"]
