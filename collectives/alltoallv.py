"""alltoallv: uneven all-to-all (MPI_Alltoallv; the dispatch and combine of a mixture-of-experts layer).

The call's size is a P x P matrix of element counts: ``counts[i][j]`` elements go from device ``i`` to
device ``j`` (integers >= 0, zeros allowed; the diagonal is a local copy). :class:`Counts` holds one;
:mod:`collectives.moe` makes DeepSeek-V3-like routings.

Data layout (MPI_Alltoallv's, with packed displacements):

- input (P, L): row ``i`` is device ``i``'s send buffer, its blocks for devices 0, 1, ..., P-1 one
  after the other: block ``j`` starts at ``sdispls[i][j] = counts[i][0] + ... + counts[i][j-1]``.
  Device ``i`` sends ``S_i = sum_j counts[i][j]`` elements; ``L`` must be at least ``max_i S_i``, and
  the columns of row ``i`` from ``S_i`` on are not sent.
- output (P, max_j R_j): row ``j`` holds the blocks received from devices 0, 1, ..., P-1 one after the
  other: block ``i`` starts at ``rdispls[i][j] = counts[0][j] + ... + counts[i-1][j]``; device ``j``
  receives ``R_j = sum_i counts[i][j]`` elements, and its row is zero after them.
- without counts, a (P, L) input is an all-to-all of every row cut as evenly as possible
  (:func:`even_counts`): ``counts[i][j] = L // P``, one more for ``j < L % P`` (alltoall's result when
  ``L`` is a multiple of P).

The call's ``count`` is the total number of elements sent (the sum of the counts, diagonal included);
a count without a matrix stands for ``even_counts(P, count)`` (every device ``count / P``, as evenly
as whole elements allow).

Sizes (the benchmark's columns), as nccl-tests puts a collective's busbw factor beside it:

- ``S = count x itemsize``: the bytes all devices send together (``simulate``'s ``result.nbytes``);
- ``algbw = S / time``;
- ``busbw = algbw x (P-1) / P^2``: alltoall's factor ``(P-1)/P`` applied to the mean bytes per device
  ``S / P``, so that uniform counts give alltoall's busbw (alltoall's S is one device's bytes).

A device's work buffer holds its send blocks at ``sdispls[d]`` in ``[0, Smax)`` (``Smax = max S_i``)
and its receive blocks at ``Smax + rdispls[.][d]``: the chunk of pair (i, j) sits at one offset on
device ``i`` and another on device ``j``, which the schedule's :class:`PairPlacement` records.

Algorithms: ``direct`` (every pair at once) and ``pairwise`` (P-1 shifted exchanges), in
:mod:`collectives.algorithms.direct`. Timing cost: a pairwise step has P flows, cheap at any P (383
steps on 384 devices: about 2 s); direct's one step has P(P-1) flows of different sizes, which the
network model's event loop finishes one at a time (about 1.7 s at 64 devices, a minute at 128).
"""

from __future__ import annotations

import hashlib
import numbers

import numpy as np

from .collective import Collective
from .registry import register_collective
from .schedule import Placement, Schedule


class Counts:
    """An immutable P x P matrix of element counts: ``counts[i][j]`` elements go from device i to j.

    Built from anything numpy reads as a square integer matrix (a list of lists, an array); a bad one
    raises ``TypeError`` (not integers) or ``ValueError`` (shape, a negative count) naming the value.
    Equal matrices compare and hash equal, so a ``Counts`` is a plain parameter value (schedule caches,
    ``best``'s candidates); :meth:`fingerprint` is the same in every process.

    >>> c = Counts([[0, 2], [3, 1]])
    >>> c.P, c.total, c.send.tolist(), c.recv.tolist()
    (2, 6, [2, 4], [3, 3])
    >>> Counts([[1, -2], [0, 0]])
    Traceback (most recent call last):
    ...
    ValueError: counts[0][1] = -2; counts must be >= 0
    """

    __slots__ = ("matrix",)

    def __init__(self, matrix, P: int | None = None, name: str = "counts"):
        object.__setattr__(self, "matrix", _as_matrix(matrix, P, name))

    def __setattr__(self, key, value):
        raise AttributeError("Counts is immutable")

    @classmethod
    def of(cls, value, P: int | None = None, name: str = "counts") -> "Counts":
        """``value`` as a :class:`Counts` for ``P`` devices (``value`` itself if it is one)."""
        if isinstance(value, Counts):
            if P is not None and value.P != P:
                raise ValueError(f"{name} is a {value.P} x {value.P} matrix; expected ({P}, {P}) for P={P} devices")
            return value
        return cls(value, P, name)

    @property
    def P(self) -> int:
        return self.matrix.shape[0]

    @property
    def total(self) -> int:
        """Elements sent by all devices together (the call's count)."""
        return int(self.matrix.sum())

    @property
    def send(self) -> np.ndarray:
        """Elements each device sends (row sums)."""
        return self.matrix.sum(axis=1)

    @property
    def recv(self) -> np.ndarray:
        """Elements each device receives (column sums)."""
        return self.matrix.sum(axis=0)

    @property
    def sdispls(self) -> np.ndarray:
        """``sdispls[i][j]``: where device i's block for j starts in its send buffer (packed)."""
        return np.cumsum(self.matrix, axis=1) - self.matrix

    @property
    def rdispls(self) -> np.ndarray:
        """``rdispls[i][j]``: where the block from i starts in device j's receive buffer (packed)."""
        return np.cumsum(self.matrix, axis=0) - self.matrix

    def kron(self, k: int) -> "Counts":
        """Each device split into ``k`` (devices ``i*k .. i*k+k-1``), each of whose pairs with device
        j's ``k`` carries ``counts[i][j]``: what a rank standing for ``k`` devices sends."""
        return Counts(np.kron(self.matrix, np.ones((k, k), np.int64)))

    def tolist(self) -> list:
        return self.matrix.tolist()

    def fingerprint(self) -> int:
        """A 62-bit digest of the matrix, the same in every process (ranks compare it)."""
        h = hashlib.blake2b(np.int64(self.P).tobytes() + self.matrix.tobytes(), digest_size=8)
        return int.from_bytes(h.digest(), "little") >> 2

    def __array__(self, dtype=None, copy=None):
        return self.matrix.astype(dtype) if dtype is not None else self.matrix.copy()

    def __eq__(self, other):
        if not isinstance(other, Counts):
            return NotImplemented
        return self.matrix.shape == other.matrix.shape and bool(np.array_equal(self.matrix, other.matrix))

    def __hash__(self):
        return self.fingerprint()

    def __repr__(self):
        s = self.send
        zeros = int(np.count_nonzero(self.matrix == 0))
        return (f"Counts(P={self.P}, total={self.total}, per device {int(s.min())}..{int(s.max())}"
                + (f", {zeros} zero pairs" if zeros else "") + ")")


def _as_matrix(value, P, name) -> np.ndarray:
    if value is None or isinstance(value, (str, bytes, numbers.Number)):
        raise TypeError(f"{name} must be a P x P matrix of integers, got {type(value).__name__}")
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError):
        raise TypeError(f"{name} must be a P x P matrix of integers, got a ragged {type(value).__name__}") from None
    if arr.dtype == object:  # Python ints too large for int64, or mixed objects
        bad = next((v for v in arr.ravel() if isinstance(v, bool) or not isinstance(v, numbers.Integral)), None)
        if bad is not None:
            raise TypeError(f"{name} must hold integers, got {bad!r}")
        try:
            arr = arr.astype(np.int64)
        except OverflowError:
            raise ValueError(f"{name} holds a count above {np.iinfo(np.int64).max}") from None
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{name} must hold integers, got {arr.dtype}")
    want = f"({P}, {P}) for P={P} devices" if P is not None else "a square (P, P) matrix"
    if arr.ndim != 2 or arr.shape[0] != arr.shape[1] or (P is not None and arr.shape[0] != P):
        raise ValueError(f"{name} has shape {arr.shape}; expected {want}")
    if arr.shape[0] < 1:
        raise ValueError(f"{name} has shape {arr.shape}; expected at least one device")
    if arr.dtype.kind == "u" and arr.size and arr.max() > np.iinfo(np.int64).max:
        raise ValueError(f"{name} holds a count above {np.iinfo(np.int64).max}")
    arr = arr.astype(np.int64)  # a copy: the caller's array may change later
    if arr.size and arr.min() < 0:
        i, j = (int(x) for x in np.argwhere(arr < 0)[0])
        raise ValueError(f"{name}[{i}][{j}] = {arr[i, j]}; counts must be >= 0")
    arr.flags.writeable = False
    return arr


def even_counts(P: int, total: int) -> Counts:
    """``total`` elements cut as evenly as whole elements allow: device i sends ``total // P`` (one
    more for ``i < total % P``), each cut the same way over the P destinations.

    >>> even_counts(3, 10).tolist()
    [[2, 1, 1], [1, 1, 1], [1, 1, 1]]
    """
    rows = np.full(P, total // P, np.int64) + (np.arange(P) < total % P)
    r = np.arange(P)
    return Counts(rows[:, None] // P + (r[None, :] < (rows % P)[:, None]))


class PairPlacement(Placement):
    """Chunk ``i * P + j`` is device i's block for j: at ``sdispls[i][j]`` in device i's buffer and,
    for ``i != j``, at ``Smax + rdispls[i][j]`` in device j's. Chunk ``P * P + i`` is device i's
    block to itself once copied to its receive area (``Smax + rdispls[i][i]``)."""

    def __init__(self, counts: Counts):
        self.P = counts.P
        self.base = int(counts.send.max())
        self.sd = counts.sdispls
        self.rd = self.base + counts.rdispls

    def offsets(self, devices, chunks):
        P = self.P
        pair = chunks < P * P
        i, j = np.divmod(np.where(pair, chunks, 0), P)
        own = np.where(pair, 0, chunks - P * P)
        return np.where(pair, np.where(i == devices, self.sd[i, j], self.rd[i, j]), self.rd[own, own])

    def chunks_of(self, device):
        P, d = self.P, int(device)
        k = np.arange(P, dtype=np.int64)
        return np.concatenate([d * P + k, (k * P + d)[k != d], [P * P + d]])


class AllToAllV(Collective):
    name = "alltoallv"
    perf_name = "alltoallv_perf"
    per_device_blocks = True
    call_params = ("counts",)
    tuned_as = "alltoall"

    # -- sizes ----------------------------------------------------------------------------------
    def busbw_factor(self, P):
        return (P - 1) / P ** 2

    def buffer_length(self, P, count):
        c = even_counts(P, count)
        return int(c.send.max() + c.recv.max())

    def input_shape(self, P, count):
        return (P, -(-count // P))

    def count_from_shape(self, shape, P):
        return P * int(shape[1])

    def nbytes(self, P, count, itemsize):
        return count * itemsize

    def count_for_nbytes(self, nbytes, P, itemsize):
        return nbytes // itemsize

    def tuned_nbytes(self, nbytes, P):
        return nbytes // max(P, 1)  # the mean bytes per device: alltoall's S

    # -- the counts -----------------------------------------------------------------------------
    def check_call_params(self, params, P):
        if params.get("counts") is None:
            return params
        return {**params, "counts": Counts.of(params["counts"], P)}

    def resolve_call(self, shape, P, params):
        params = self.check_call_params(params, P)
        counts = params.get("counts")
        if counts is None:
            return self.count_from_shape(shape, P), params
        need = counts.send
        if int(shape[1]) < int(need.max()):
            i = int(np.argmax(need))
            raise ValueError(f"alltoallv input has {shape[1]} elements per device; counts has device {i} send "
                             f"{int(need[i])} (the sum of row {i}), so the input needs at least that many")
        return counts.total, params

    def sized_call(self, size, P, itemsize, params):
        params = self.check_call_params(params, P)
        given = params.get("counts")
        if isinstance(size, (numbers.Integral, np.integer)) and not isinstance(size, bool):
            if given is not None and int(size) != given.total * itemsize:
                raise ValueError(f"nbytes={size} but counts sum to {given.total} elements "
                                 f"({given.total * itemsize} bytes); give the counts alone")
            return size, params
        if given is not None:
            raise ValueError("the counts are given twice (as the size and as counts=); give them once")
        counts = Counts.of(size, P)
        return counts.total * itemsize, {**params, "counts": counts}

    def counts_for(self, P: int, count: int, counts=None) -> Counts:
        """The call's :class:`Counts`: ``counts`` (summing to ``count``), or ``even_counts(P, count)``."""
        if counts is None:
            return even_counts(P, count)
        counts = Counts.of(counts, P)
        if counts.total != count:
            raise ValueError(f"counts sum to {counts.total} elements; the call's count is {count}")
        return counts

    def schedule(self, algorithm: str, counts: Counts, phases, root=0) -> Schedule:
        """A schedule over the chunks of :class:`PairPlacement` for ``counts``."""
        m, P = counts.matrix, counts.P
        placement = PairPlacement(counts)
        diag = np.arange(P)
        ln = np.concatenate([m.ravel(), m[diag, diag]]).astype(np.int64)
        off = np.concatenate([placement.sd.ravel(), placement.rd[diag, diag]]).astype(np.int64)
        length = int(placement.base + counts.recv.max())
        return Schedule(self.name, algorithm, P, counts.total, length, off, ln, phases, root,
                        info={"counts": counts}, placement=placement)

    # -- data -----------------------------------------------------------------------------------
    def load(self, data, P, count, root, first=0, counts=None):
        counts = even_counts(P, count) if counts is None else counts
        base = int(counts.send.max())
        buf = np.zeros((data.shape[0], base + int(counts.recv.max())), dtype=data.dtype)
        buf[:, :base] = data[:, :base]
        return buf

    def extract(self, buf, P, count, root, first=0, counts=None):
        counts = even_counts(P, count) if counts is None else counts
        base = int(counts.send.max())
        return buf[:, base:base + int(counts.recv.max())].copy()

    def load_for(self, schedule, data, first=0):
        return self.load(data, schedule.P, schedule.count, schedule.root, first, schedule.info["counts"])

    def extract_for(self, schedule, buf, first=0):
        return self.extract(buf, schedule.P, schedule.count, schedule.root, first, schedule.info["counts"])

    def reference(self, data, op, root, reducer=None, counts=None):
        P = data.shape[0]
        if counts is None:
            counts = even_counts(P, self.count_from_shape(data.shape, P))
        else:
            counts = self.resolve_call(data.shape, P, {"counts": counts})[1]["counts"]
        m = counts.matrix.ravel()
        out = np.zeros((P, int(counts.recv.max())), dtype=data.dtype)
        i, j = np.divmod(np.arange(P * P), P)
        src = _runs(i * data.shape[1] + counts.sdispls.ravel(), m)
        dst = _runs(j * out.shape[1] + counts.rdispls.ravel(), m)
        out.reshape(-1)[dst] = np.ascontiguousarray(data).reshape(-1)[src]
        return out

    # -- checker view ---------------------------------------------------------------------------
    # Origin of pair (i, j)'s block: its chunk id i * P + j; device i alone contributes to it.
    def initial_content(self, s):
        m, P = s.info["counts"].matrix, s.P
        return [{i * P + j: (i * P + j, 1 << i) for j in range(P) if m[i, j]} for i in range(P)]

    def final_content(self, s):
        m, P = s.info["counts"].matrix, s.P
        return [{(i * P + j if i != j else P * P + j): (i * P + j, 1 << i) for i in range(P) if m[i, j]}
                for j in range(P)]


def _runs(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The indices ``starts[k] .. starts[k] + lengths[k] - 1`` of every run, concatenated."""
    lengths = np.asarray(lengths, np.int64)
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, np.int64)
    before = np.cumsum(lengths) - lengths
    return np.repeat(np.asarray(starts, np.int64) - before, lengths) + np.arange(total, dtype=np.int64)


register_collective(AllToAllV())
