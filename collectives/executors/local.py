"""The local executor: all P devices in one process, their buffers one (P, L) array."""

from __future__ import annotations

import numpy as np

from .. import kernels
from ..schedule import Schedule


def step_arrays(schedule: Schedule, step):
    """A step as flat transfer arrays grouped by destination (what :func:`kernels.apply_step` takes)."""
    ln = schedule.chunk_len[step.src_chunk]
    keep = ln > 0
    src, dst = step.src[keep], step.dst[keep]
    soff = schedule.offsets(src, step.src_chunk[keep])
    doff = schedule.offsets(dst, step.dst_chunk[keep])
    ln = ln[keep]
    order = np.argsort(dst, kind="stable")
    dst = dst[order]
    bounds = np.flatnonzero(np.diff(dst)) + 1
    group_ptr = np.concatenate(([0], bounds, [len(dst)])).astype(np.int64)
    return src[order], dst, soff[order], doff[order], ln[order], group_ptr


def execute(schedule: Schedule, buf: np.ndarray, op: int, fmt: int) -> None:
    """Apply every step of ``schedule`` to the work buffers ``buf`` (P x length) in place."""
    for step in schedule.steps():
        src, dst, soff, doff, ln, group_ptr = step_arrays(schedule, step)
        if len(src):
            kernels.apply_step(buf, src, dst, soff, doff, ln, group_ptr, step.reduce, op, fmt)
