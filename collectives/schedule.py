"""Schedules: what every algorithm produces, and the checker that proves one correct.

A schedule works on one buffer of ``length`` elements per device, cut into disjoint chunks
(``chunk_off``, ``chunk_len``). A chunk has one length everywhere; its offset is the same in every
device's buffer, unless the schedule has a ``placement`` (:class:`Placement`): then each device holds
only the chunks the placement gives it, at offsets of its own (uneven all-to-all, where device i's
block for j is where device i's counts put it). It is a sequence of phases; a phase is ``repeat``
steps that share the same sender/receiver pairs. In step ``k`` of a phase, transfer ``i`` takes
chunk ``src_chunk[i]`` of device ``src[i]`` and copies it into (or, with ``reduce``, reduces it
into) chunk ``dst_chunk[i]`` of device ``dst[i]``. Every transfer of a step reads the buffers as
they were when the step began; the checker makes sure no chunk is both read and written within a
step, so executors can apply a step in place. A transfer with ``src == dst`` is a local copy and
costs no network time.

Nothing here knows about numba, MPI or timing: executors and the network model read the same object.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

import numpy as np


@dataclass
class Step:
    src: np.ndarray
    dst: np.ndarray
    src_chunk: np.ndarray
    dst_chunk: np.ndarray
    reduce: bool


class Phase:
    """``repeat`` steps over fixed pairs ``src[i] -> dst[i]``; ``chunks(k)`` gives step k's chunk arrays.

    ``src`` may be a callable returning ``(src, dst)`` (``dst`` then None): the transfer arrays are
    built on first use, so that a schedule timed through ``pairs`` never materialises them.
    ``pairs``, optional: ``(src, dst, chunks per transfer)`` with one entry per group of the
    phase's transfers between one pair, what the time plane needs of a phase whose chunks are all
    of one length (the bytes between each pair) without a transfer per chunk.
    """

    __slots__ = ("name", "_src", "_dst", "_expand", "chunks", "reduce", "repeat", "pairs")

    def __init__(self, name, src, dst, chunks, reduce=False, repeat=1, pairs=None):
        self.name, self.chunks, self.reduce, self.repeat, self.pairs = name, chunks, reduce, repeat, pairs
        if callable(src):
            self._expand, self._src, self._dst = src, None, None
        else:
            self._expand = None
            self._src = np.asarray(src, dtype=np.int64)
            self._dst = np.asarray(dst, dtype=np.int64)

    def _materialise(self):
        src, dst = self._expand()
        self._src, self._dst = np.asarray(src, dtype=np.int64), np.asarray(dst, dtype=np.int64)

    @property
    def src(self) -> np.ndarray:
        if self._src is None:
            self._materialise()
        return self._src

    @property
    def dst(self) -> np.ndarray:
        if self._dst is None:
            self._materialise()
        return self._dst

    def pair_form(self):
        """``(src, dst, chunks per transfer)``: :attr:`pairs`, or one chunk per transfer."""
        if self.pairs is not None:
            return self.pairs
        return self.src, self.dst, None


class Placement:
    """Where chunks sit when their offsets differ by device (the interface; see ``Schedule.placement``).

    ``offsets(devices, chunks)``: element offset of chunk ``chunks[i]`` in the buffer of device
    ``devices[i]`` (arrays of equal length; only for chunks that device holds).
    ``chunks_of(device)``: the chunks that device holds; they are disjoint in its buffer (the checker
    proves it) and are the only ones a step may read or write there.
    """

    def offsets(self, devices: np.ndarray, chunks: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def chunks_of(self, device: int) -> np.ndarray:
        raise NotImplementedError


def fixed(src_chunk, dst_chunk=None):
    """A ``chunks`` callable for a one-step phase: always the same chunk arrays."""
    s = np.asarray(src_chunk, dtype=np.int64)
    d = s if dst_chunk is None else np.asarray(dst_chunk, dtype=np.int64)
    return lambda k: (s, d)


@dataclass
class Schedule:
    collective: str
    algorithm: str
    P: int
    count: int
    length: int
    chunk_off: np.ndarray
    chunk_len: np.ndarray
    phases: list[Phase] = field(default_factory=list)
    root: int = 0
    info: dict = field(default_factory=dict)
    #: Topology nodes that take part besides the devices (e.g. a switch that reduces in the network),
    #: addressed in transfers as P, P+1, ...; they start empty and own a buffer like a device.
    endpoints: list = field(default_factory=list)
    #: Per-device chunk offsets (a :class:`Placement`), or None: chunk c at ``chunk_off[c]`` on every
    #: device. With a placement, ``chunk_off`` is only informative (the offset on the chunk's first holder).
    placement: Placement | None = None

    def offsets(self, devices, chunks) -> np.ndarray:
        """Element offsets of ``chunks[i]`` in the buffer of ``devices[i]`` (what executors address)."""
        chunks = np.asarray(chunks, dtype=np.int64)
        if self.placement is None:
            return self.chunk_off[chunks]
        return np.asarray(self.placement.offsets(np.asarray(devices, dtype=np.int64), chunks), dtype=np.int64)

    @property
    def num_endpoints(self) -> int:
        """Devices plus extra endpoints: the rows of the executors' buffers."""
        return self.P + len(self.endpoints)

    @property
    def num_steps(self) -> int:
        return sum(p.repeat for p in self.phases)

    def steps(self) -> Iterator[Step]:
        for ph in self.phases:
            for k in range(ph.repeat):
                sc, dc = ph.chunks(k)
                yield Step(ph.src, ph.dst, sc, dc, ph.reduce)

    def timing(self, itemsize: int) -> Iterator[tuple[str, np.ndarray, np.ndarray, np.ndarray, bool, int]]:
        """``(phase name, src, dst, nbytes, reduce, repeat)`` for the network model.

        With equal chunks every step of a phase moves the same bytes over the same pairs, so the
        phase is yielded once with its repeat count; otherwise step by step.
        """
        equal = bool(np.all(self.chunk_len == self.chunk_len[0])) if len(self.chunk_len) else True
        chunk_bytes = None if equal else self.chunk_len.astype(np.float64) * itemsize
        for ph in self.phases:
            if equal:
                src, dst, units = ph.pair_form()
                one = float(self.chunk_len[0] * itemsize) if len(self.chunk_len) else 0.0
                nb = np.full(len(src), one) if units is None else units * one
                yield ph.name, src, dst, nb, ph.reduce, ph.repeat
            else:
                for k in range(ph.repeat):
                    sc, _ = ph.chunks(k)
                    yield ph.name, ph.src, ph.dst, chunk_bytes[sc], ph.reduce, 1


def split(length: int, parts: int, offset: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Cut ``length`` elements into ``parts`` contiguous chunks whose sizes differ by at most one.

    >>> off, ln = split(10, 4)
    >>> off.tolist(), ln.tolist()
    ([0, 3, 6, 8], [3, 3, 2, 2])
    """
    base, extra = divmod(int(length), int(parts))
    ln = np.full(parts, base, dtype=np.int64)
    ln[:extra] += 1
    off = offset + np.concatenate(([0], np.cumsum(ln)[:-1])).astype(np.int64)
    return off, ln


# -- checker ------------------------------------------------------------------------------------

class ScheduleError(AssertionError):
    """A schedule that does not compute its collective (raised by :func:`check`)."""


def check(schedule: Schedule, spec) -> None:
    """Follow chunk ownership symbolically through every step and prove the result right.

    A chunk's content is ``(origin, contributors)``: which piece of input data it holds and the set
    of devices whose values were reduced into it (a bitmask). Copies move content; reductions
    require the same origin and disjoint contributors (nothing counted twice). At the end every
    chunk the collective defines must hold exactly what ``spec.final_content`` says.
    """
    P, nch = schedule.P, len(schedule.chunk_len)
    held = _check_chunks(schedule)  # with a placement: per device, the set of chunks it holds
    state = spec.initial_content(schedule)  # list (per device) of dict chunk -> (origin, mask)
    state += [{} for _ in schedule.endpoints]
    ne = schedule.num_endpoints
    if held is not None:
        for d, content in enumerate(state):
            _check_held(held, d, [c for c in content if schedule.chunk_len[c] > 0], "starts with data in")
    for si, step in enumerate(schedule.steps()):
        src, dst, sc, dc = step.src, step.dst, step.src_chunk, step.dst_chunk
        if not (len(src) == len(dst) == len(sc) == len(dc)):
            raise ScheduleError(f"step {si}: src/dst/chunk arrays differ in length")
        for arr, what, hi in ((src, "device", ne), (dst, "device", ne), (sc, "chunk", nch), (dc, "chunk", nch)):
            if len(arr) and (arr.min() < 0 or arr.max() >= hi):
                raise ScheduleError(f"step {si}: {what} index out of range 0..{hi - 1}")
        reads = set(zip(src.tolist(), sc.tolist()))
        writes = {}
        for s, d, a, b in zip(src.tolist(), dst.tolist(), sc.tolist(), dc.tolist()):
            if schedule.chunk_len[a] != schedule.chunk_len[b]:
                raise ScheduleError(f"step {si}: chunk {a} -> {b} lengths differ")
            if schedule.chunk_len[a] == 0:
                continue  # empty chunks carry nothing (count < P)
            if held is not None:
                _check_held(held, s, [a], f"step {si}: reads")
                _check_held(held, d, [b], f"step {si}: writes")
            if (d, b) in reads:
                raise ScheduleError(f"step {si}: device {d} chunk {b} is read and written in the same step")
            content = state[s].get(a)
            if content is None:
                raise ScheduleError(f"step {si}: device {s} sends chunk {a}, which holds no data yet")
            writes.setdefault((d, b), []).append(content)
        for (d, b), contents in writes.items():
            if not step.reduce:
                if len(contents) > 1:
                    raise ScheduleError(f"step {si}: device {d} chunk {b} is written by {len(contents)} copies")
                state[d][b] = contents[0]
                continue
            origin, mask = state[d].get(b, (None, 0))
            if origin is None:
                raise ScheduleError(f"step {si}: device {d} reduces into chunk {b}, which holds no data")
            for o, m in contents:
                if o != origin:
                    raise ScheduleError(f"step {si}: device {d} chunk {b} reduces data of origin {o} into {origin}")
                if m & mask:
                    raise ScheduleError(f"step {si}: device {d} chunk {b} counts device(s) "
                                        f"{_devices(m & mask)} twice")
                mask |= m
            state[d][b] = (origin, mask)
    expected = spec.final_content(schedule)
    for d in range(P):
        for c, want in expected[d].items():
            if schedule.chunk_len[c] == 0:
                continue
            got = state[d].get(c)
            if got != want:
                raise ScheduleError(f"{schedule.collective}/{schedule.algorithm} P={P}: device {d} chunk {c} ends "
                                    f"with {_show(got)}, expected {_show(want)}")


def _check_chunks(s: Schedule):
    """Chunks inside the buffer and disjoint (on each device, with a placement); returns the chunks
    each device holds (a list of sets) with a placement, else None."""
    if s.placement is None:
        _check_disjoint(s.chunk_off, s.chunk_len, s.length, "")
        return None
    if len(s.chunk_off) != len(s.chunk_len):
        raise ScheduleError("chunk table out of the buffer")
    held = []
    for d in range(s.num_endpoints):
        chunks = np.asarray(s.placement.chunks_of(d), dtype=np.int64)
        if len(chunks) and (chunks.min() < 0 or chunks.max() >= len(s.chunk_len)):
            raise ScheduleError(f"device {d}: placement names a chunk out of range 0..{len(s.chunk_len) - 1}")
        full = chunks[s.chunk_len[chunks] > 0]  # an empty chunk holds nothing, wherever it is
        _check_disjoint(s.offsets(np.full(len(full), d), full), s.chunk_len[full], s.length, f"device {d}: ")
        held.append(set(chunks.tolist()))
    return held


def _check_disjoint(off, ln, length, where):
    if len(off) != len(ln) or (len(ln) and (ln.min() < 0 or off.min() < 0 or (off + ln).max() > length)):
        raise ScheduleError(f"{where}chunk table out of the buffer")
    order = np.argsort(off, kind="stable")
    ends = (off + ln)[order]
    if len(order) > 1 and np.any(off[order][1:] < ends[:-1]):
        raise ScheduleError(f"{where}chunks overlap")


def _check_held(held, device, chunks, what):
    for c in chunks:
        if c not in held[device]:
            raise ScheduleError(f"{what} chunk {c} on device {device}, which the placement does not give it")


def _devices(mask: int) -> list[int]:
    return [i for i in range(mask.bit_length()) if mask >> i & 1]


def _show(content):
    if content is None:
        return "nothing"
    return f"origin {content[0]} from devices {_devices(content[1])}"
