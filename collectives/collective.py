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

    def nbytes_for_size(self, size: int, P: int, per_device: bool) -> int:
        """nccl-tests' S of a call of ``size`` bytes: ``size`` itself, or per device when ``per_device``."""
        return size * P if (per_device and self.per_device_blocks) else size

    # -- sizes ----------------------------------------------------------------------------------
    def busbw_factor(self, P: int) -> float:
        raise NotImplementedError

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

    # -- data -----------------------------------------------------------------------------------
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


def np_reduce(data: np.ndarray, op: str, axis=0) -> np.ndarray:
    """numpy reference of a reduction over ``axis`` (``avg`` truncates integers toward zero)."""
    if op == "sum":
        return np.add.reduce(data, axis=axis, dtype=data.dtype)
    if op == "prod":
        return np.multiply.reduce(data, axis=axis, dtype=data.dtype)
    if op == "min":
        return np.minimum.reduce(data, axis=axis)
    if op == "max":
        return np.maximum.reduce(data, axis=axis)
    if op == "avg":
        total = np.add.reduce(data, axis=axis, dtype=data.dtype)
        n = data.shape[axis]
        if total.dtype.kind in "iu":
            return (np.sign(total) * (np.abs(total) // n)).astype(total.dtype)
        return (total / n).astype(total.dtype)
    raise ValueError(f"unknown op {op!r}; expected one of {', '.join(OPS)}")


def full_mask(P: int) -> int:
    return (1 << P) - 1


def slot_of(schedule, slot_len: int) -> np.ndarray:
    """Which slot of ``slot_len`` elements each chunk lies in (chunks never straddle slots)."""
    if slot_len == 0:
        return np.zeros(len(schedule.chunk_off), np.int64)
    return schedule.chunk_off // slot_len
