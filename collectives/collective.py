"""The shared harness of the collectives: what each collective module fills in.

Every collective runs on one work buffer per device (``buffer_length`` elements). ``load`` puts
the user's input into it, the algorithm's schedule transforms it, ``extract`` takes the result out.
The checker's view of the same buffers comes from ``initial_content`` / ``final_content``.
"""

from __future__ import annotations

import numpy as np

from .ops import OPS



class Collective:
    name: str = ""
    reduces: bool = False  # whether ``op`` matters
    rooted: bool = False   # whether ``root`` matters
    #: Whether nccl-tests' size S is P per-device blocks (allgather: each device's input;
    #: reduce_scatter: its output; alltoall: what it sends each peer), so that at the same
    #: per-device size S grows with P. Otherwise every device holds all S bytes.
    per_device_blocks: bool = False
    #: nccl-tests' binary for this collective (shown in the benchmark's header and JSON).
    perf_name: str = ""
    #: Parameters that belong to the call, not to an algorithm (alltoallv: ``counts``): every
    #: algorithm of the collective declares them, so they reach its builder on every path (``run``,
    #: the MPI executor, ``simulate``, ``best``); :func:`collectives.reference` takes them too.
    call_params: tuple = ()
    #: The collective whose tuning a library applies to this one (alltoallv: alltoall), or "".
    tuned_as: str = ""
    #: Whether nccl-tests counts the wrong elements of an in-place call (alltoall and sendrecv set
    #: ``args->reportErrors = in_place ? 0 : 1``: their in-place ``#wrong`` is ``N/A``).
    checks_in_place: bool = True
    #: Whether nccl-tests' rows name the ``-o`` op (and ``-o all`` repeats the sweep per op) though
    #: nothing is reduced (sendrecv passes its ops to ``TimeTest``); otherwise ``redop`` is ``none``.
    op_column: bool = False

    def nbytes_for_size(self, size: int, P: int, per_device: bool) -> int:
        """nccl-tests' S of a call of ``size`` bytes: ``size`` itself, or per device when ``per_device``."""
        return size * P if (per_device and self.per_device_blocks) else size

    # -- sizes ----------------------------------------------------------------------------------
    def busbw_factor(self, P: int) -> float:
        raise NotImplementedError

    def algbw_factor(self, P: int) -> float:
        """nccl-tests' algbw over ``S / time`` (its ``GetBw``'s ``baseBw``): 1, except for hypercube,
        whose algbw counts the ``(P-1)/P`` of S a rank receives. :func:`collectives.simulate`'s
        ``algbw_GBps`` is always ``S / time``; ``ccemu bench`` prints this factor times it."""
        return 1.0

    def supports(self, P: int) -> bool:
        """Whether the collective is defined on ``P`` devices (hypercube: powers of two only)."""
        return True

    def check_devices(self, P: int) -> int:
        """``P`` if :meth:`supports` it; a one-line ``ValueError`` saying why not otherwise."""
        return P

    def buffer_length(self, P: int, count: int) -> int:
        raise NotImplementedError

    def input_shape(self, P: int, count: int) -> tuple[int, int]:
        raise NotImplementedError

    def count_from_shape(self, shape: tuple[int, int], P: int) -> int:
        """The count a (P, x) input stands for; ``ValueError`` if x does not fit the collective."""
        return int(shape[1])

    def nbytes(self, P: int, count: int, itemsize: int) -> int:
        """nccl-tests' size ``S`` for this count (the size column and the algbw numerator)."""
        raise NotImplementedError

    def count_for_nbytes(self, nbytes: int, P: int, itemsize: int) -> int:
        """Inverse of :meth:`nbytes`, rounding down to whole elements per device as nccl-tests does."""
        raise NotImplementedError

    # -- the call's own parameters (alltoallv's counts) ----------------------------------------------
    def check_call_params(self, params: dict, P: int) -> dict:
        """``params`` with the call parameters checked and in canonical form for ``P`` devices
        (``ValueError``/``TypeError`` naming a bad value); the others untouched."""
        return params

    def resolve_call(self, shape: tuple[int, int], P: int, params: dict) -> tuple[int, dict]:
        """``(count, params)`` of a data-plane call on a (P, x) input: :meth:`count_from_shape`, and
        the call parameters checked against the input."""
        return self.count_from_shape(shape, P), self.check_call_params(params, P)

    def sized_call(self, size, P: int, itemsize: int, params: dict) -> tuple[object, dict]:
        """``(nbytes, params)`` of a timed call of ``size`` (what :func:`collectives.simulate` takes
        as its size: nccl-tests' S in bytes, or for alltoallv also a counts matrix)."""
        return size, self.check_call_params(params, P)

    def tuned_nbytes(self, nbytes: int, P: int) -> int:
        """The size a library's tuner sees for :attr:`tuned_as` (default: the same)."""
        return nbytes

    # -- data -----------------------------------------------------------------------------------
    def load_for(self, schedule, data: np.ndarray, first: int = 0) -> np.ndarray:
        """:meth:`load` for the call ``schedule`` was built for (alltoallv reads its counts there)."""
        return self.load(data, schedule.P, schedule.count, schedule.root, first)

    def extract_for(self, schedule, buf: np.ndarray, first: int = 0):
        """:meth:`extract` for the call ``schedule`` was built for."""
        return self.extract(buf, schedule.P, schedule.count, schedule.root, first)

    def load(self, data: np.ndarray, P: int, count: int, root: int, first: int = 0) -> np.ndarray:
        """Work buffers (k, buffer_length) holding ``data``, the inputs of devices ``first`` ..
        ``first + k - 1`` (all P devices in one process; a rank's block under MPI). A copy: the
        input is never touched. Each device's row depends on its own input only."""
        buf = np.zeros((data.shape[0], self.buffer_length(P, count)), dtype=data.dtype)
        buf[:, : data.shape[1]] = data
        return buf

    def extract(self, buf: np.ndarray, P: int, count: int, root: int, first: int = 0):
        """The result rows of devices ``first`` .. ``first + k - 1`` from their work buffers ``buf``
        (for a root-only result, the root's row, or None if the root is not among them)."""
        return buf

    def reference(self, data: np.ndarray, op: str, root: int, reducer=None) -> np.ndarray:
        """The numpy result for input ``data`` of shape ``input_shape``; reductions over devices go
        through ``reducer(data, op)`` (default :func:`np_reduce`)."""
        raise NotImplementedError

    # -- checker view ---------------------------------------------------------------------------
    def initial_content(self, s) -> list[dict]:
        raise NotImplementedError

    def final_content(self, s) -> list[dict]:
        raise NotImplementedError


def np_reduce(data: np.ndarray, op: str, axis=0, widen=None, narrow=None) -> np.ndarray:
    """numpy reference of a reduction over ``axis``, bit for bit what the kernels compute.

    The rows are combined in order, starting from the first as the kernels start from a device's
    own buffer (``acc = row 0; acc = acc op row 1; ...``), element-wise and vectorised, with the
    kernels' IEEE rules (:mod:`collectives.kernels`): ``-0.0`` wins ``min``, ``+0.0`` wins ``max``,
    a NaN wins over a number keeping its payload, and of two NaNs every op keeps the one whose bit
    pattern (as an unsigned integer) is smaller. So a sum of ``-0.0`` is ``-0.0`` (``np.add.reduce``
    starts from ``+0.0``). Integers wrap as the type does; ``avg`` is the sum divided by the number
    of rows, integers truncating toward zero (without overflow, also for a sum at the minimum).

    ``widen``/``narrow``: ``data`` holds 16-bit float bit patterns; each combine is done on
    ``widen(bits)`` (float32) and rounded back with ``narrow``, as the kernels do.

    >>> np_reduce(np.full((3, 1), -0.0, np.float32), "sum")
    array([-0.], dtype=float32)
    >>> np_reduce(np.array([[-100], [-28]], np.int8), "avg")
    array([-64], dtype=int8)
    """
    fns = {"sum": np.add, "avg": np.add, "prod": np.multiply, "min": np.minimum, "max": np.maximum}
    if op not in fns:
        raise ValueError(f"unknown op {op!r}; expected one of {', '.join(OPS)}")
    data = np.moveaxis(np.asarray(data), axis, 0)
    n = data.shape[0]
    fn = fns[op]

    def combine(a, b):
        if a.dtype.kind != "f":  # integers: the plain op, wrapping in the type
            return fn(a, b)
        u = np.dtype(f"u{a.dtype.itemsize}")
        ua, ub = a.view(u), b.view(u)
        an, bn = np.isnan(a), np.isnan(b)
        if op in ("min", "max"):
            better = (b < a) if op == "min" else (b > a)
            tie = (a == b) & ((ub > ua) if op == "min" else (ub < ua))  # +-0: min the sign bit, max not
            return np.where(better | tie | (bn & (~an | (ub < ua))), b, a)
        r = fn(a, b)
        both = an & bn
        if both.any():  # two NaNs: the smaller pattern, quieted as the hardware quiets an operand
            c = np.where(ub < ua, b, a)[both]
            r[both] = fn(c, c)
        return r

    with np.errstate(invalid="ignore", over="ignore"):
        acc = np.ascontiguousarray(data[0]).copy()
        for row in data[1:]:
            row = np.ascontiguousarray(row)
            if widen is None:
                acc = combine(acc, row)
            else:
                acc = narrow(combine(widen(acc), widen(row)))
        if op != "avg":
            return acc
        if widen is not None:
            return narrow(widen(acc) / np.float32(n))
        if acc.dtype.kind == "f":
            return acc / acc.dtype.type(n)
        if acc.dtype.itemsize <= 4:  # exact in int64
            t = acc.astype(np.int64)
            return (np.sign(t) * (np.abs(t) // n)).astype(acc.dtype)
        nn = acc.dtype.type(n)
        q = acc // nn
        if acc.dtype.kind == "i":  # floor to truncation: one step toward zero for a negative remainder
            q += ((acc < 0) & (acc % nn != 0)).astype(acc.dtype)
        return q


def full_mask(P: int) -> int:
    return (1 << P) - 1


def slot_of(schedule, slot_len: int) -> np.ndarray:
    """Which slot of ``slot_len`` elements each chunk lies in (chunks never straddle slots)."""
    if slot_len == 0:
        return np.zeros(len(schedule.chunk_off), np.int64)
    return schedule.chunk_off // slot_len
