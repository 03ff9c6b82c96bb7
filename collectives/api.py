"""Public API: run a collective on real data (:func:`run`), or time it on a topology (:func:`simulate`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import dtypes, kernels, registry
from .collective import np_reduce
from .ops import check_op
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
        ``alltoallv``, ``broadcast``, ``reduce`` (``collectives.list_collectives()``).
    data : numpy.ndarray, shape (P, x)
        Row d is device d's input: allreduce, broadcast, reduce (P, n); allgather (P, m);
        reduce_scatter and alltoall (P, P*m); alltoallv (P, L), row i its blocks for devices
        0..P-1 packed, ``L >= max_i sum_j counts[i][j]`` (:mod:`collectives.alltoallv`). It is
        never modified. Any byte order: non-native data (e.g. ``x.astype(">f4")``) is converted to
        native order (a copy) first.
    algorithm : str
        A name from ``collectives.list_algorithms(collective)``.
    op : str
        ``sum``, ``prod``, ``min``, ``max`` or ``avg`` (ignored by data-movement collectives).
    root : int
        Root device of broadcast and reduce: an integer ``0 <= root < P`` (``TypeError`` for
        anything else, including ``bool``; ``ValueError`` out of range), checked for every collective.
    dtype : str, optional
        ``"bfloat16"`` to treat a uint16 array as bfloat16 bit patterns; otherwise ``data.dtype``.
    **params
        The algorithm's parameters, and the call's own (alltoallv: ``counts``, a P x P matrix of
        element counts, ``counts[i][j]`` from device i to j; without it every row is cut evenly).

    Returns
    -------
    numpy.ndarray
        allreduce, broadcast (P, n); allgather (P, P*m); reduce_scatter (P, m); alltoall (P, P*m);
        alltoallv (P, max_j R_j), row j the blocks from devices 0..P-1 packed, zeros after its
        ``R_j = sum_i counts[i][j]``; reduce (n,), the root's result. In native byte order, of
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
    P = data.shape[0]
    root = registry.check_root(root, P)
    count, params = spec.resolve_call(data.shape, P, params)
    schedule = build_schedule(collective, algorithm, P, count, root, **params)
    buf = spec.load_for(schedule, as_storage(data, name))
    if schedule.endpoints:  # rows for switches that take part (in-network reduction)
        buf = np.concatenate([buf, np.zeros((len(schedule.endpoints), buf.shape[1]), buf.dtype)])
    opc = kernels.OP_CODES[op] if spec.reduces else kernels.SUM
    return Prepared(spec, schedule, buf, op, opc, dtypes.kernel_format(name), data.dtype)


def reference(collective: str, data, op: str = "sum", root: int = 0, dtype=None, **call) -> np.ndarray:
    """The numpy result of ``collective`` on ``data`` (what :func:`run` must return, bit for bit).

    Reductions combine the devices in order from device 0 with the kernels' rules
    (:func:`collectives.collective.np_reduce`); float16 and bfloat16 are widened to float32 and
    rounded back after every step, as the kernels do. Arguments are checked as :func:`run` does.
    ``call``: the collective's call parameters (alltoallv: ``counts``).
    """
    spec = registry.collective(collective)
    check_op(op)
    data, name = check_data(data, dtype)
    root = registry.check_root(root, data.shape[0])
    unknown = sorted(set(call) - set(spec.call_params))
    if unknown:
        takes = f"takes {', '.join(spec.call_params)}" if spec.call_params else "takes no call parameters"
        raise TypeError(f"reference() got {unknown[0]!r}; {collective} {takes}")
    spec.resolve_call(data.shape, data.shape[0], call)
    call = {k: v for k, v in call.items() if v is not None}
    if name in ("float16", "bfloat16") and spec.reduces:
        wide, narrow = ((kernels._half_widen, kernels._half_bits) if name == "float16"
                        else (kernels._bf16_widen, kernels._bf16_bits))
        bits = as_storage(data, name)
        out = spec.reference(bits, op, root, reducer=lambda d, o: np_reduce(d, o, widen=wide, narrow=narrow), **call)
        return out.view(data.dtype)
    return spec.reference(data, op, root, **call)


def check_data(data, dtype):
    """``(data, dtype name)`` for a (devices, elements) input array; ``TypeError``/``ValueError`` otherwise.

    ``data`` comes back in native byte order: a non-native array (``">f4"`` on a little-endian
    machine) is converted to a new array; the caller's is never modified.

    >>> check_data(np.arange(2, dtype=">i4").reshape(1, 2), None)
    (array([[0, 1]], dtype=int32), 'int32')
    """
    if not isinstance(data, np.ndarray):
        raise TypeError(f"data must be a numpy.ndarray of shape (devices, elements), got {type(data).__name__}")
    if data.ndim != 2 or data.shape[0] < 1:
        raise ValueError(f"data has shape {data.shape}; expected (devices, elements) with at least one device")
    if not data.dtype.isnative:  # the kernels and as_storage's views read native order: convert (a copy)
        data = data.astype(data.dtype.newbyteorder("="))
    if dtype is not None and dtypes.canonical(dtype) == "bfloat16":
        if data.dtype != np.uint16:
            raise TypeError(f"bfloat16 data must be held as uint16 bit patterns, got {data.dtype}")
        return data, "bfloat16"
    name = dtypes.canonical(data.dtype)
    return data, name


def as_storage(data, name):
    """``data`` viewed as the kernels' storage type of dtype ``name`` (16-bit floats as uint16)."""
    st = dtypes.storage(name)
    return data.view(st) if data.dtype != st else data


from .timing import SimResult, peak_bw_GBps, simulate  # noqa: E402  (the time plane, re-exported)

__all__ = ["run", "prepare", "Prepared", "reference", "check_data", "as_storage", "build_schedule", "simulate",
           "SimResult", "peak_bw_GBps"]
