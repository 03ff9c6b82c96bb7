"""MSCCL XML algorithm files as ccemu schedules.

An MSCCL algorithm file (what msccl-tools writes with its classic XML exporter, and what the
MSCCL executors in NCCL and RCCL load) describes, per GPU, thread blocks (``<tb>``) that each talk
to at most one send peer and one receive peer over one channel, and run a list of steps in order.
:func:`load_msccl` reads and validates one; :meth:`MscclAlgorithm.schedule` maps it onto ccemu's
schedule model; :func:`register_msccl` registers it as an allreduce algorithm, so that
``collectives.simulate`` / ``collectives.run`` take it by name.

Format (facts from RCCL's ``src/misc/msccl/msccl_parser.cc``, its interpreter kernel
``msccl_kernel_impl.h`` and msccl-tools' ``msccl/language/ir.py``):

- ``<algo nchunksperloop ngpus nchannels proto coll inplace name>``: the buffers are cut into
  ``nchunksperloop`` chunks of ``count / nchunksperloop`` elements; ``srcoff``/``dstoff`` index
  chunks and ``cnt`` is the number of consecutive chunks a step moves. ``inplace="1"``: input
  ``i`` and output ``o`` are the same memory. ``s`` is a per-GPU scratch buffer (``s_chunks``).
- ``<gpu id i_chunks o_chunks s_chunks>``, ``<tb id send recv chan>``: ``send``/``recv`` are the
  thread block's peers (-1: none); a send on GPU ``a`` to ``b`` on channel ``c`` is received by
  the thread block of ``b`` with ``recv=a`` on channel ``c``, in order (k-th send, k-th receive).
- ``<step s type srcbuf srcoff dstbuf dstoff cnt depid deps hasdep>``, ``s`` = 0, 1, ... in thread
  block order, which is execution order. Types: ``s`` send ``src``; ``r`` receive into ``dst``;
  ``rcs`` receive into ``dst`` and send it on; ``rrc`` receive, reduce with ``src``, write ``dst``;
  ``rrs`` receive, reduce with ``src``, send the result on (written nowhere locally); ``rrcs``
  receive, reduce with ``src``, write ``dst`` and send it on; ``cpy`` local ``dst = src``;
  ``re`` local ``dst = dst op src``; ``nop`` nothing (carries a dependency). ``depid``/``deps``:
  the step first waits for step ``deps`` of thread block ``depid`` on the same GPU (-1: none),
  which must have ``hasdep="1"`` (it raises the flag waited on).

Mapping onto ccemu (allreduce only so far):

- ccemu's allreduce buffer is one array of ``count`` elements per device holding the input and then
  the result, cut into ``nchunksperloop`` chunks (:func:`~collectives.schedule.split`). MSCCL's ``i``
  and ``o`` both map onto it (chunk ``k`` of either is chunk ``k``); for ``inplace="0"`` files that
  is an aliasing, which the checker then proves harmless (or the file is refused). A local ``cpy``
  of a chunk onto itself (``i[k] -> o[k]``) is dropped. Scratch (``s``) has no room in that buffer:
  files whose steps use it are refused.
- Each matched send/receive is a transfer of ``cnt`` chunks: a copy for ``r``/``rcs``, a reduction
  into the receiver's chunk for ``rrc``/``rrcs``/``rrs``. ccemu reduces *into* a chunk, so ``rrc``
  and ``rrcs`` need ``src`` and ``dst`` to be the same chunk, and ``rrs`` is modelled as leaving
  its result in its ``src`` chunk (the chunk the forwarded send then reads). ``cpy``/``re`` are
  local transfers (``src == dst`` device: no network time).
- Order: a **step-barrier approximation** of MSCCL's dependency-driven execution. A step starts
  after the previous step of its thread block and its ``depid``/``deps`` step have finished; a
  transfer goes in the earliest ccemu step after the sender has the data (a plain send once it
  starts, a forwarding step once its own receive landed) and the receiver's step has started.
  Sends are buffered as in NCCL (a send finishes when it starts; a tb does not wait for the
  receiver), which is what lets every GPU of a ring send first and receive second. ccemu's time
  plane times schedules step by step, each step lasting as long as its slowest transfer, whereas
  MSCCL runs each thread block as soon as its own dependencies allow, and pipelines each chunk in
  slices (its loop over ``count / nchunksperloop`` in protocol-sized pieces), which is not modelled.
  A ccemu step holding both copies and reductions is split into two (copies first).
- ``proto`` is recorded in ``schedule.info``; the time plane still picks its regime itself.
  Channels and thread blocks are not separate resources in ccemu: transfers between the same two
  devices in one step share the route the network model gives them.

Refused, with a one-line ``ValueError`` naming the file, the element and the attribute: files
over 64 MiB, DTD / ENTITY (or any ``<!...>`` other than comments) and non-UTF-8 files, malformed
XML, missing or non-integer attributes, unknown step types or buffers, offsets out of range,
thread block ids with gaps or duplicates, bad peers or channels, sends and receives that do not
pair up (count or ``cnt``), dependencies on missing steps, on steps without ``hasdep="1"``, or in a
cycle, collectives other than allreduce, scratch use, the new-format ``<op>`` elements, and files
the step model cannot represent (a buffered send whose chunk is overwritten before the receiver
takes it, a chunk read and written or written twice by copies in one step) or whose schedule does
not compute the allreduce (:func:`collectives.schedule.check`).

>>> from pathlib import Path
>>> import collectives
>>> alg = load_msccl(Path(collectives.__file__).parents[1] / "tests" / "data" / "msccl" / "ring.xml")
>>> alg.coll, alg.ngpus, alg.nchunksperloop, alg.num_levels
('allreduce', 4, 4, 6)
>>> s = alg.schedule(4, 1000)
>>> s.num_steps, s.chunk_len.tolist()
(6, [250, 250, 250, 250])
"""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import registry
from ..registry import AlgorithmUnavailable, resolve_params
from ..schedule import Phase, Schedule, ScheduleError, check, fixed, split

#: Largest file :func:`load_msccl` reads.
MAX_FILE_BYTES = 64 << 20

STEP_TYPES = ("s", "r", "rcs", "rrs", "rrc", "rrcs", "re", "cpy", "nop")
_SENDS = {"s", "rcs", "rrs", "rrcs"}
_RECVS = {"r", "rcs", "rrs", "rrc", "rrcs"}
_REDUCING = {"rrs", "rrc", "rrcs"}
#: Which of (src, dst) each type reads from its attributes.
_USES = {"s": (True, False), "r": (False, True), "rcs": (False, True), "rrs": (True, False),
         "rrc": (True, True), "rrcs": (True, True), "cpy": (True, True), "re": (True, True),
         "nop": (False, False)}
PROTOCOLS = ("Simple", "LL", "LL128")
_COLLS = ("allreduce", "allgather", "reducescatter", "reduce_scatter", "alltoall", "broadcast", "reduce",
          "send", "recv", "gather", "scatter", "alltoallv")
_INT = re.compile(r"[+-]?\d+")


@dataclass(frozen=True)
class MscclStep:
    """One ``<step>`` of a thread block, attributes as in the file."""

    gpu: int
    tb: int
    s: int
    type: str
    srcbuf: str
    srcoff: int
    dstbuf: str
    dstoff: int
    cnt: int
    depid: int
    deps: int
    hasdep: int

    def where(self) -> str:
        return f"<gpu id={self.gpu}> <tb id={self.tb}> <step s={self.s}>"


@dataclass(frozen=True)
class Transfer:
    """One ccemu transfer of one chunk, placed in ccemu step ``level`` (1-based)."""

    level: int
    src: int
    dst: int
    src_chunk: int
    dst_chunk: int
    reduce: bool


@dataclass
class MscclAlgorithm:
    """A loaded MSCCL algorithm: its header, its steps and the ccemu transfers they map onto."""

    path: str
    name: str
    coll: str
    proto: str
    inplace: bool
    ngpus: int
    nchunksperloop: int
    nchannels: int
    steps: list = field(repr=False)
    transfers: list = field(repr=False)

    @property
    def num_levels(self) -> int:
        """ccemu steps of the step-barrier order (before splitting mixed copy/reduce steps)."""
        return max((t.level for t in self.transfers), default=0)

    def schedule(self, P: int, count: int, algorithm: str | None = None) -> Schedule:
        """The ccemu allreduce schedule of this file for ``count`` elements on ``P == ngpus`` devices.

        ``AlgorithmUnavailable`` for another ``P``; ``ValueError`` when ``count`` does not split
        into chunks the file's transfers can move (a chunk copied onto a chunk of another length).
        """
        name = algorithm or f"msccl:{Path(self.path).stem}"
        if isinstance(P, bool) or not isinstance(P, (int, np.integer)) or P != self.ngpus:
            raise AlgorithmUnavailable(f"{name} is an MSCCL algorithm for {self.ngpus} GPUs "
                                       f"({self.path}); it cannot run on P={P!r}")
        if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 0:
            raise ValueError(f"count={count!r}; expected an integer >= 0")
        off, ln = split(int(count), self.nchunksperloop)
        for t in self.transfers:
            if ln[t.src_chunk] != ln[t.dst_chunk]:
                raise ValueError(f"{self.path}: count={count} is not a multiple of nchunksperloop="
                                 f"{self.nchunksperloop}, and a transfer moves chunk {t.src_chunk} into chunk "
                                 f"{t.dst_chunk} of another length")
        groups: dict = {}
        for t in self.transfers:
            groups.setdefault((t.level, t.reduce), []).append(t)
        phases = []
        for level, reduce in sorted(groups):
            ts = groups[(level, reduce)]
            a = np.array([(t.src, t.dst, t.src_chunk, t.dst_chunk) for t in ts], dtype=np.int64)
            a = a[np.lexsort((a[:, 3], a[:, 2], a[:, 1], a[:, 0]))]
            split_level = (level, not reduce) in groups
            label = f"msccl-step{level}" + (("-reduce" if reduce else "-copy") if split_level else "")
            phases.append(Phase(label, a[:, 0], a[:, 1], fixed(a[:, 2], a[:, 3]), reduce=reduce))
        return Schedule("allreduce", name, int(P), int(count), int(count), off, ln, phases, 0,
                        info={"msccl_file": self.path, "msccl_name": self.name, "proto": self.proto,
                              "nchannels": self.nchannels})


def load_msccl(path) -> MscclAlgorithm:
    """Read, validate and map the MSCCL XML algorithm file ``path`` (see the module docstring)."""
    return _Reader(str(path)).read()


def register_msccl(path, name: str | None = None) -> str:
    """Register the allreduce of MSCCL file ``path`` as ``name`` (default ``msccl:<file stem>``).

    The algorithm builds for the file's ``ngpus`` only (``AlgorithmUnavailable`` otherwise) and
    takes no parameters. Returns the name; ``collectives.registry.unregister("allreduce", name)``
    removes it. Registering a name twice raises ``RuntimeError`` (as for any algorithm).
    """
    alg = load_msccl(path)
    name = name or f"msccl:{Path(str(path)).stem}"

    def build(spec, P, count, root=0, topology=None, **params):
        resolve_params(spec.name, name, params)  # no parameters: reject unknown ones
        return alg.schedule(P, count, algorithm=name)

    build.__doc__ = f"MSCCL allreduce from {alg.path} ({alg.ngpus} GPUs)."
    registry.algorithm(alg.coll, name)(build)
    return name


# -- reading ---------------------------------------------------------------------------------------

class _Reader:
    def __init__(self, path: str):
        self.path = path

    def fail(self, where: str, what: str):
        raise ValueError(f"{self.path}: {where}: {what}")

    def attr(self, elem, where, name, choices=None) -> str:
        v = elem.get(name)
        if v is None:
            self.fail(where, f"missing attribute {name!r}")
        if choices is not None and v not in choices:
            self.fail(where, f"attribute {name}={v!r} is not supported; expected one of {', '.join(choices)}")
        return v

    def int_attr(self, elem, where, name, lo=None, hi=None) -> int:
        v = self.attr(elem, where, name)
        if not _INT.fullmatch(v.strip()):
            self.fail(where, f"attribute {name}={v!r} is not an integer")
        n = int(v)
        if (lo is not None and n < lo) or (hi is not None and n > hi):
            rng = f"{lo}..{hi}" if hi is not None else f">= {lo}"
            self.fail(where, f"attribute {name}={n} is out of range ({rng})")
        return n

    def children(self, elem, where, tag):
        out = []
        for ch in elem:
            if not isinstance(ch.tag, str):
                continue  # comments / processing instructions
            if ch.tag != tag:
                hint = ("; new-format <op> elements are not supported (export the classic format with <step>)"
                        if ch.tag == "op" else "")
                self.fail(where, f"unexpected element <{ch.tag}> (expected <{tag}>){hint}")
            out.append(ch)
        return out

    def parse(self):
        try:
            size = os.stat(self.path).st_size
        except OSError as exc:
            raise ValueError(f"{self.path}: cannot read: {exc.strerror}") from None
        if size > MAX_FILE_BYTES:
            self.fail("file", f"{size} bytes, over the {MAX_FILE_BYTES >> 20} MiB limit")
        with open(self.path, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
        if len(data) > MAX_FILE_BYTES:
            self.fail("file", f"over the {MAX_FILE_BYTES >> 20} MiB limit")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            self.fail("file", f"not UTF-8 (byte {exc.start})")
        m = re.search(r"<!(?!--)", text)
        if m:
            line = text.count("\n", 0, m.start()) + 1
            self.fail(f"line {line}", "DTD / ENTITY declarations (<!...>) are refused")
        decl = re.match(r"\s*<\?xml[^>]*encoding\s*=\s*[\"']([^\"']+)", text)
        if decl and decl.group(1).lower().replace("_", "-") not in ("utf-8", "utf8", "us-ascii", "ascii"):
            self.fail("<?xml?>", f"attribute encoding={decl.group(1)!r} is not supported; expected UTF-8")
        try:
            root = ET.fromstring(data)
        except ET.ParseError as exc:
            self.fail("file", f"not well-formed XML ({exc})")
        if root.tag != "algo":
            self.fail(f"<{root.tag}>", "the root element must be <algo>")
        return root

    def read(self) -> MscclAlgorithm:
        root = self.parse()
        w = "<algo>"
        name = self.attr(root, w, "name")
        ngpus = self.int_attr(root, w, "ngpus", 1, 1 << 16)
        ncpl = self.int_attr(root, w, "nchunksperloop", 1, 1 << 20)
        nchannels = self.int_attr(root, w, "nchannels", 1, 1 << 10)
        proto = self.attr(root, w, "proto", PROTOCOLS)
        coll = self.attr(root, w, "coll", _COLLS)
        if coll != "allreduce":
            self.fail(w, f"attribute coll={coll!r} is not supported yet (only allreduce maps onto ccemu's buffers)")
        inplace = self.int_attr(root, w, "inplace", 0, 1)

        gpus = self.children(root, w, "gpu")
        seen: dict = {}
        steps: list[MscclStep] = []
        tbs: dict = {}           # (gpu, tb) -> (send, recv, chan, [step index in `steps`])
        for gi, g in enumerate(gpus):
            gw = f"<gpu #{gi}>" if g.get("id") is None else f"<gpu id={g.get('id')}>"
            gid = self.int_attr(g, gw, "id", 0, ngpus - 1)
            if gid in seen:
                self.fail(gw, f"attribute id={gid} repeats an earlier <gpu>")
            seen[gid] = g
            ichunks = self.int_attr(g, gw, "i_chunks", 0, ncpl)
            ochunks = self.int_attr(g, gw, "o_chunks", 0, ncpl)
            self.int_attr(g, gw, "s_chunks", 0)
            nchunks = {"i": ichunks, "o": ochunks}
            tb_ids = set()
            send_chans, recv_chans = {}, {}
            for ti, tb in enumerate(self.children(g, gw, "tb")):
                tw = f"{gw} " + (f"<tb #{ti}>" if tb.get("id") is None else f"<tb id={tb.get('id')}>")
                tid = self.int_attr(tb, tw, "id", 0, 1 << 16)
                if tid in tb_ids:
                    self.fail(tw, f"attribute id={tid} repeats an earlier <tb> of this gpu")
                tb_ids.add(tid)
                send = self.int_attr(tb, tw, "send", -1, ngpus - 1)
                recv = self.int_attr(tb, tw, "recv", -1, ngpus - 1)
                chan = self.int_attr(tb, tw, "chan", 0, nchannels - 1)
                for attr, peer, used in (("send", send, send_chans), ("recv", recv, recv_chans)):
                    if peer == gid:
                        self.fail(tw, f"attribute {attr}={peer} is the gpu itself")
                    if peer >= 0:
                        if (peer, chan) in used:
                            self.fail(tw, f"attribute {attr}={peer}: <tb id={used[(peer, chan)]}> already "
                                          f"{attr}s with gpu {peer} on channel {chan}")
                        used[(peer, chan)] = tid
                idx = []
                for si, st in enumerate(self.children(tb, tw, "step")):
                    sw = f"{tw} " + (f"<step #{si}>" if st.get("s") is None else f"<step s={st.get('s')}>")
                    s = self.int_attr(st, sw, "s", 0)
                    if s != si:
                        self.fail(sw, f"attribute s={s} out of order; expected s={si} (steps count 0, 1, ...)")
                    kind = self.attr(st, sw, "type", STEP_TYPES)
                    srcbuf = self.attr(st, sw, "srcbuf", ("i", "o", "s"))
                    dstbuf = self.attr(st, sw, "dstbuf", ("i", "o", "s"))
                    srcoff = self.int_attr(st, sw, "srcoff", -1)
                    dstoff = self.int_attr(st, sw, "dstoff", -1)
                    cnt = self.int_attr(st, sw, "cnt", 0 if kind == "nop" else 1)
                    depid = self.int_attr(st, sw, "depid", -1)
                    deps = self.int_attr(st, sw, "deps", -1)
                    hasdep = self.int_attr(st, sw, "hasdep", 0, 1)
                    use_src, use_dst = _USES[kind]
                    for used_, attr, buf, off in ((use_src, "src", srcbuf, srcoff), (use_dst, "dst", dstbuf, dstoff)):
                        if not used_:
                            continue
                        if buf == "s":
                            self.fail(sw, f"attribute {attr}buf='s': the scratch buffer is not supported "
                                          f"(ccemu's allreduce buffer has no room for it)")
                        if off < 0 or off + cnt > nchunks[buf]:
                            self.fail(sw, f"attribute {attr}off={off} with cnt={cnt} is outside buffer "
                                          f"{buf!r} ({nchunks[buf]} chunks)")
                    if kind in _SENDS and send < 0:
                        self.fail(sw, f"attribute type={kind!r} sends, but its <tb> has send=-1")
                    if kind in _RECVS and recv < 0:
                        self.fail(sw, f"attribute type={kind!r} receives, but its <tb> has recv=-1")
                    idx.append(len(steps))
                    steps.append(MscclStep(gid, tid, s, kind, srcbuf, srcoff, dstbuf, dstoff, cnt, depid, deps,
                                           hasdep))
                tbs[(gid, tid)] = (send, recv, chan, idx)
            missing = sorted(set(range(len(tb_ids))) - tb_ids)
            if missing:
                self.fail(gw, f"<tb id={missing[0]}> is missing (thread block ids must be 0..{len(tb_ids) - 1})")
        if len(seen) != ngpus:
            gone = min(set(range(ngpus)) - set(seen))
            self.fail(w, f"attribute ngpus={ngpus} but <gpu id={gone}> is missing")
        transfers = _Planner(self, steps, tbs).plan()
        alg = MscclAlgorithm(self.path, name, coll, proto, bool(inplace), ngpus, ncpl, nchannels, steps, transfers)
        try:
            check(alg.schedule(ngpus, ncpl), registry.collective(coll))
        except ScheduleError as exc:
            self.fail("<algo>", f"does not compute {coll} under ccemu's step model: {exc}")
        return alg


class _Planner:
    """Pairs sends with receives, orders the steps (step-barrier levels) and emits ccemu transfers."""

    def __init__(self, reader: _Reader, steps, tbs):
        self.r, self.steps, self.tbs = reader, steps, tbs

    def fail(self, step: MscclStep, what: str):
        self.r.fail(step.where(), what)

    def plan(self) -> list[Transfer]:
        steps, tbs = self.steps, self.tbs
        n = len(steps)
        preds = [[] for _ in range(n)]     # steps that must finish before step i starts
        sender = [-1] * n                  # for a receiving step: the index of its matched sending step
        depended = set()
        for (gid, tid), (_, _, _, idx) in tbs.items():
            for k, i in enumerate(idx):
                st = steps[i]
                if k:
                    preds[i].append(idx[k - 1])
                if st.depid >= 0:
                    other = tbs.get((gid, st.depid))
                    if other is None:
                        self.fail(st, f"attribute depid={st.depid}: gpu {gid} has no such <tb>")
                    if not 0 <= st.deps < len(other[3]):
                        self.fail(st, f"attribute deps={st.deps}: <tb id={st.depid}> has no such step")
                    j = other[3][st.deps]
                    preds[i].append(j)
                    depended.add((j, i))
        for j, i in depended:
            if not steps[j].hasdep:
                self.fail(steps[j], f"attribute hasdep=0, but {steps[i].where()} depends on it "
                                    f"(MSCCL would wait forever)")
        # k-th send on (a -> b, chan) pairs with the k-th receive of b's tb with recv=a on chan.
        sends, recvs = {}, {}
        for (gid, tid), (send, recv, chan, idx) in sorted(tbs.items()):
            for i in idx:
                if steps[i].type in _SENDS:
                    sends.setdefault((gid, send, chan), []).append(i)
                if steps[i].type in _RECVS:
                    recvs.setdefault((recv, gid, chan), []).append(i)
        for key in sorted(set(sends) | set(recvs)):
            a, b, c = key
            ss, rr = sends.get(key, []), recvs.get(key, [])
            if len(ss) != len(rr):
                first = steps[(ss or rr)[0]]
                self.fail(first, f"attribute type={first.type!r}: gpu {a} sends {len(ss)} time(s) to gpu {b} on "
                                 f"channel {c}, but gpu {b} receives {len(rr)} time(s) from gpu {a} there")
            for si, ri in zip(ss, rr):
                if steps[si].cnt != steps[ri].cnt:
                    self.fail(steps[ri], f"attribute cnt={steps[ri].cnt} differs from cnt={steps[si].cnt} of the "
                                         f"matching send {steps[si].where()}")
                sender[ri] = si
                preds[ri].append(si)
        order = _topological(preds)
        if len(order) < n:
            stuck = min(set(range(n)) - set(order))
            self.fail(steps[stuck], "attribute depid/deps or a send/receive pairing closes a dependency cycle "
                                    "(the algorithm would deadlock)")
        ready = [0] * n
        finish = [0] * n
        level_of = [0] * n
        for i in order:
            st = steps[i]
            ready[i] = max((finish[p] for p in preds[i] if p != sender[i]), default=0)
            if st.type in _RECVS:
                s = sender[i]
                have = ready[s] if steps[s].type == "s" else finish[s]
                finish[i] = level_of[i] = max(have, ready[i]) + 1
            elif st.type in ("cpy", "re"):
                finish[i] = level_of[i] = ready[i] + 1
            else:  # s (buffered: done once started), nop
                finish[i] = ready[i]
        out = []
        data_ready = {}   # transfer index -> level after which its source chunk must hold the data
        for i in range(n):
            st = steps[i]
            if st.type in _RECVS:
                s = sender[i]
                src_chunk = _send_chunk(steps[s])
                dst_chunk = self._recv_chunk(st)
                have = ready[s] if steps[s].type == "s" else finish[s]
                for k in range(st.cnt):
                    data_ready[len(out)] = have
                    out.append(Transfer(level_of[i], steps[s].gpu, st.gpu, src_chunk + k, dst_chunk + k,
                                        st.type in _REDUCING))
            elif st.type == "cpy":
                if st.srcoff != st.dstoff:   # i[k] -> o[k] is the same ccemu chunk: nothing to do
                    out += [Transfer(level_of[i], st.gpu, st.gpu, st.srcoff + k, st.dstoff + k, False)
                            for k in range(st.cnt)]
            elif st.type == "re":
                if st.srcoff == st.dstoff:
                    self.fail(st, f"attribute srcoff={st.srcoff}: re reduces chunk {st.srcoff} into itself once "
                                  f"i and o are ccemu's one buffer")
                out += [Transfer(level_of[i], st.gpu, st.gpu, st.srcoff + k, st.dstoff + k, True)
                        for k in range(st.cnt)]
        self._check_hazards(out, data_ready)
        return sorted(out, key=lambda t: (t.level, t.src, t.dst, t.src_chunk))

    def _recv_chunk(self, st: MscclStep) -> int:
        if st.type in ("rrc", "rrcs"):
            if st.srcoff != st.dstoff:
                self.fail(st, f"attribute dstoff={st.dstoff} differs from srcoff={st.srcoff}: ccemu reduces into "
                              f"the chunk it reduces with")
            return st.dstoff
        if st.type == "rrs":
            return st.srcoff
        return st.dstoff

    def _check_hazards(self, transfers, data_ready):
        writes: dict = {}
        for t in transfers:
            writes.setdefault((t.dst, t.dst_chunk), []).append(t.level)
        for i, t in enumerate(transfers):
            have = data_ready.get(i)
            if have is None:
                continue
            late = [w for w in writes.get((t.src, t.src_chunk), []) if have < w < t.level]
            if late:
                self.r.fail(f"<gpu id={t.src}>", f"a buffered send of chunk {t.src_chunk} to gpu {t.dst} is taken in "
                                                 f"step {t.level}, after the chunk is overwritten in step {late[0]}: the "
                                                 f"step-barrier model cannot represent it")
        by_level: dict = {}
        for t in transfers:
            by_level.setdefault(t.level, []).append(t)
        for level, ts in sorted(by_level.items()):
            reads = {(t.src, t.src_chunk) for t in ts}
            kinds: dict = {}
            for t in ts:
                key = (t.dst, t.dst_chunk)
                if key in reads:
                    self.r.fail(f"<gpu id={t.dst}>", f"chunk {t.dst_chunk} is read and written in the same ccemu "
                                                     f"step {level}")
                kinds.setdefault(key, []).append(t.reduce)
            for (d, c), red in kinds.items():
                if len(red) > 1 and not all(red):
                    self.r.fail(f"<gpu id={d}>", f"chunk {c} is written by {len(red)} transfers in ccemu step {level}, "
                                                 f"not all reductions (a race)")


def _send_chunk(st: MscclStep) -> int:
    """The ccemu chunk a sending step's data is read from (see the module docstring for rrs)."""
    if st.type in ("s", "rrs"):
        return st.srcoff
    return st.dstoff   # rcs, rrcs: what was just received (and reduced) into dst


def _topological(preds) -> list[int]:
    n = len(preds)
    succ = [[] for _ in range(n)]
    indeg = [0] * n
    for i, ps in enumerate(preds):
        for p in ps:
            succ[p].append(i)
            indeg[i] += 1
    queue = [i for i in range(n) if indeg[i] == 0]
    order = []
    while queue:
        i = queue.pop()
        order.append(i)
        for j in succ[i]:
            indeg[j] -= 1
            if indeg[j] == 0:
                queue.append(j)
    return order
