"""Recorded communication of a real job, read from its traces and replayed on any topology.

Three formats are read, one rank's file or several (the same collective seen by each member is
one call):

- NCCL's ``NCCL_DEBUG=INFO`` log (:func:`read_nccl_log`). Collective lines, as NCCL prints them::

      host:pid:tid [dev] NCCL INFO AllReduce: opCount 1a sendbuff 0x... recvbuff 0x... count 237184
      datatype 7 op 0 root 0 comm 0x7f0c741162f0 [nranks=2] stream 0x...

  (``AllReduce``, ``AllGather``, ``ReduceScatter``, ``Broadcast``, ``Reduce``, ``AllToAll``,
  ``Send``, ``Recv``; ``count`` is per rank: AllGather's send count, ReduceScatter's receive
  count; ``datatype`` and ``op`` are ``ncclDataType_t`` / ``ncclRedOp_t`` codes; a Send's
  ``root`` is its peer), and the communicators' ``comm 0x... rank R nranks N ... commId 0x... -
  Init COMPLETE`` lines, which say which process is which rank of which communicator; a process's
  rank in its largest communicator is its global rank (its device). The Send lines of one
  communicator under one ``opCount`` (an ``ncclGroupStart``/``End`` of sends) are one call: an
  ``alltoallv`` of their counts, or a point-to-point send when there is one.
- PyTorch profiler (Kineto) JSON (:func:`read_kineto`): the ``record_param_comms`` events (and
  the NCCL kernels carrying the same arguments, whose durations are the recorded GPU times) with
  ``Collective name``, ``In msg nelems``, ``Out msg nelems``, ``dtype``, ``Group size``,
  ``Process Group Name``, ``Process Group Ranks`` (or ``Global rank start``/``stride``), ``In split
  size``/``Out split size`` (all_to_allv, rows of dim 0), ``Seq``, ``Rank``.
- Chakra execution traces as ``chakra_jsonizer`` writes them (:func:`read_chakra`): concatenated
  JSON objects, the global metadata then the nodes; ``COMM_COLL_NODE`` nodes with attributes
  ``comm_type`` (ALL_REDUCE 0, REDUCE 1, ALL_GATHER 2, BROADCAST 5, ALL_TO_ALL 6,
  REDUCE_SCATTER 7), ``comm_size`` (bytes, taken as nccl-tests' S), ``pg_name``, and
  ``COMM_SEND_NODE`` with ``comm_src``/``comm_dst``; a node's ranks come from a ``groups`` mapping
  (pg_name to global ranks; the trace does not carry them) or are the whole job's.

:func:`replay` gives each call the time :func:`collectives.simulate` gives that collective, size
and group on a topology (:func:`topologies.whatif.select_devices` of the group's devices), and
totals per rank as a rank runs them, one after another. :func:`write_nccl_log` writes calls (a
workload's, :func:`workload_calls`) as an NCCL-INFO-style log that :func:`read_nccl_log` reads back.

>>> init = "h:{0}:1 [{0}] NCCL INFO comm 0x{0} rank {0} nranks 2 cudaDev {0} busId 1000 commId 0xab - Init COMPLETE"
>>> line = ("h:{0}:1 [{0}] NCCL INFO AllReduce: opCount 0 sendbuff 0x9 recvbuff 0x9 count 1024 datatype 7 op 0 "
...         "root 0 comm 0x{0} [nranks=2] stream 0x5")
>>> t = read_nccl_log(chr(10).join([init.format(0), init.format(1), line.format(0), line.format(1)]))
>>> [(c.collective, c.nbytes, c.group, c.dtype) for c in t.calls]
[('allreduce', 4096, (0, 1), 'float32')]
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field

import numpy as np

from collectives import dtypes
from collectives.alltoallv import Counts

FORMATS = ("nccl", "kineto", "chakra")

#: ncclDataType_t codes (nccl.h); the FP8 ones (10, 11) where ccemu's dtypes have them.
NCCL_DTYPES = {0: "int8", 1: "uint8", 2: "int32", 3: "uint32", 4: "int64", 5: "uint64", 6: "float16", 7: "float32",
               8: "float64", 9: "bfloat16"}
for _code, _name in ((10, "float8_e4m3"), (11, "float8_e5m2")):
    if _name in dtypes.DTYPES:
        NCCL_DTYPES[_code] = _name
NCCL_DTYPE_CODES = {v: k for k, v in NCCL_DTYPES.items()}
#: ncclRedOp_t codes.
NCCL_OPS = {0: "sum", 1: "prod", 2: "max", 3: "min", 4: "avg"}
NCCL_OP_CODES = {v: k for k, v in NCCL_OPS.items()}
NCCL_COLLECTIVES = {"AllReduce": "allreduce", "AllGather": "allgather", "ReduceScatter": "reduce_scatter",
                    "Broadcast": "broadcast", "Reduce": "reduce", "AllToAll": "alltoall"}
NCCL_NAMES = {v: k for k, v in NCCL_COLLECTIVES.items()}
#: c10::ScalarType names that record_param_comms writes.
TORCH_DTYPES = {"Float": "float32", "BFloat16": "bfloat16", "Half": "float16", "Double": "float64", "Int": "int32",
                "Long": "int64", "Byte": "uint8", "Char": "int8", "Bool": "uint8"}
for _torch, _name in (("Float8_e4m3fn", "float8_e4m3"), ("Float8_e5m2", "float8_e5m2")):
    if _name in dtypes.DTYPES:
        TORCH_DTYPES[_torch] = _name
#: Chakra's CollectiveCommType.
CHAKRA_COLLECTIVES = {0: "allreduce", 1: "reduce", 2: "allgather", 5: "broadcast", 6: "alltoall", 7: "reduce_scatter"}
CHAKRA_CODES = {v: k for k, v in CHAKRA_COLLECTIVES.items()}


@dataclass
class TraceCall:
    """One collective call of a trace, in ccemu's terms.

    ``collective`` is a ccemu collective or ``"p2p"`` (a send; timed as an ``alltoallv`` of one
    pair); ``nbytes`` nccl-tests' S, or the :class:`~collectives.alltoallv.Counts` of an
    ``alltoallv`` (and of a ``p2p``: ``[[0, count], [0, 0]]`` over ``(sender, receiver)``);
    ``group`` the global ranks in the communicator's order; ``recorded_s`` the duration the trace
    gives, if any.
    """

    collective: str
    nbytes: object
    group: tuple
    dtype: str
    count: int = 0
    op: str = "sum"
    root: int = 0
    comm: str = ""
    seq: int = 0
    recorded_s: float | None = None
    where: str = ""

    def simulate_args(self) -> tuple:
        """``(collective, nbytes or counts)`` for :func:`collectives.simulate` on the group."""
        if self.collective == "p2p":
            return "alltoallv", self.nbytes
        return self.collective, self.nbytes

    @property
    def total_bytes(self) -> int:
        if isinstance(self.nbytes, Counts):
            return self.nbytes.total * dtypes.itemsize(self.dtype)
        return int(self.nbytes)

    def as_dict(self) -> dict:
        nb = self.nbytes.tolist() if isinstance(self.nbytes, Counts) else self.nbytes
        return {"collective": self.collective, "nbytes": nb, "group": list(self.group), "dtype": self.dtype,
                "count": self.count, "op": self.op, "root": self.root, "comm": self.comm, "seq": self.seq,
                "recorded_s": self.recorded_s, "where": self.where}


@dataclass
class Trace:
    """Calls of a job in the order first seen, and what the reader assumed (``notes``)."""

    format: str
    calls: list
    world: int
    notes: list = field(default_factory=list)


# -- NCCL INFO logs ----------------------------------------------------------------------------------

_PREFIX = r"(?P<host>[^\s:]+):(?P<pid>\d+):(?P<tid>\d+)\s+\[(?P<dev>\d+)\]\s+NCCL INFO\s+"
_INIT = re.compile(_PREFIX + r"(?:ncclCommInitRank\w*\s+)?comm (?P<comm>\S+) rank (?P<rank>\d+) nranks "
                   r"(?P<nranks>\d+)\b.*?(?:commId (?P<commid>0x[0-9a-fA-F]+))?\s*- Init COMPLETE")
_COLL = re.compile(_PREFIX + r"(?P<coll>AllReduce|AllGather|ReduceScatter|Broadcast|Reduce|AllToAll|Send|Recv): "
                   r"opCount (?P<opcount>[0-9a-fA-F]+) sendbuff \S+ recvbuff \S+ count (?P<count>\d+) datatype "
                   r"(?P<dt>\d+) op (?P<op>\d+) root (?P<root>\d+) comm (?P<comm>\S+) \[nranks=(?P<nranks>\d+)\]")


def _lines(source):
    if isinstance(source, (list, tuple)):
        out = []
        for s in source:
            out += _lines(s)
        return out
    text = os.fspath(source) if not isinstance(source, str) else source
    if "\n" not in text and os.path.exists(text):
        try:
            with open(text, encoding="utf-8", errors="replace") as fh:
                return [(text, i + 1, ln) for i, ln in enumerate(fh.read().splitlines())]
        except OSError as exc:
            raise ValueError(f"trace file {text}: cannot be read ({exc.strerror})") from None
    if "\n" not in text and not text.lstrip().startswith("{") and ("NCCL INFO" not in text):
        raise ValueError(f"trace {text!r}: no such file")
    return [("<text>", i + 1, ln) for i, ln in enumerate(text.splitlines())]


def read_nccl_log(source) -> Trace:
    """The calls of an NCCL ``NCCL_DEBUG=INFO`` log (a path, a list of paths, or the text itself);
    see the module docstring."""
    lines = _lines(source)
    comms = {}          # (host, pid, comm pointer) -> (commId, rank, nranks)
    members = {}        # commId -> {rank: process}
    biggest = {}        # process -> (nranks, rank)
    entries = []
    notes = []
    for where, no, line in lines:
        m = _INIT.search(line)
        if m:
            proc = (m["host"], m["pid"])
            rank, n = int(m["rank"]), int(m["nranks"])
            cid = m["commid"] or f"ptr:{m['host']}:{m['pid']}:{m['comm']}"
            comms[(proc, m["comm"])] = (cid, rank, n)
            members.setdefault(cid, {})[rank] = proc
            if n > biggest.get(proc, (0, 0))[0]:
                biggest[proc] = (n, rank)
            continue
        m = _COLL.search(line)
        if m:
            entries.append((where, no, m))
    if not entries:
        where = lines[0][0] if lines else "the input"
        raise ValueError(f"no NCCL collective lines ('NCCL INFO AllReduce: opCount ...') in {where}")
    world = max((n for n, _ in biggest.values()), default=0)

    def global_rank(proc):
        return biggest[proc][1] if proc in biggest else None

    def group_of(proc, ptr, nranks, where, no):
        info = comms.get((proc, ptr))
        if info is None:
            text = (f"communicator {ptr} of {proc[0]}:{proc[1]} has no 'Init COMPLETE' line: taken as ranks "
                    f"0..{nranks - 1}")
            if text not in notes:
                notes.append(text)
            return f"ptr:{proc}:{ptr}", tuple(range(nranks)), None
        cid, rank, n = info
        procs = members[cid]
        if len(procs) < n:
            ranks = [global_rank(p) for p in procs.values()]
            text = (f"communicator {cid}: {len(procs)} of its {n} ranks logged their Init line: its other ranks "
                    f"taken as the devices that follow")
            if text not in notes:
                notes.append(text)
            known = {r: global_rank(p) for r, p in procs.items()}
            base = min(g - r for r, g in known.items() if g is not None) if known else 0
            return cid, tuple(known.get(r, base + r) for r in range(n)), rank
        return cid, tuple(global_rank(procs[r]) for r in range(n)), rank

    calls = {}
    p2p = {}
    for where, no, m in entries:
        proc = (m["host"], m["pid"])
        nranks = int(m["nranks"])
        code = int(m["dt"])
        if code not in NCCL_DTYPES:
            raise ValueError(f"{where}:{no}: datatype {code} is not one ccemu models; expected one of "
                             f"{', '.join(f'{k} ({v})' for k, v in NCCL_DTYPES.items())}")
        dt = NCCL_DTYPES[code]
        size = dtypes.itemsize(dt)
        cid, group, rank = group_of(proc, m["comm"], nranks, where, no)
        seq = int(m["opcount"], 16)
        count = int(m["count"])
        kind = m["coll"]
        if kind in ("Send", "Recv"):
            peer = int(m["root"])
            if rank is None:
                continue
            src, dst = (rank, peer) if kind == "Send" else (peer, rank)
            key = (cid, seq)
            entry = p2p.setdefault(key, {"group": group, "dtype": dt, "sends": {}, "where": f"{where}:{no}"})
            have = entry["sends"].get((src, dst))
            if have is None or kind == "Send":
                entry["sends"][(src, dst)] = count
            continue
        coll = NCCL_COLLECTIVES[kind]
        key = (cid, seq, coll)
        if key in calls:
            continue
        S = count * size * (nranks if coll in ("allgather", "reduce_scatter", "alltoall") else 1)
        calls[key] = TraceCall(coll, S, group, dt, count, NCCL_OPS.get(int(m["op"]), "sum"), int(m["root"]), cid,
                               seq, None, f"{where}:{no}")
    out = list(calls.values())
    for (cid, seq), e in p2p.items():
        sends = {k: v for k, v in e["sends"].items() if v > 0}
        if not sends:
            continue
        if len(sends) == 1:
            (src, dst), c = next(iter(sends.items()))
            out.append(TraceCall("p2p", Counts([[0, c], [0, 0]]), (e["group"][src], e["group"][dst]), e["dtype"], c,
                                 comm=cid, seq=seq, where=e["where"]))
        else:
            n = len(e["group"])
            mat = np.zeros((n, n), np.int64)
            for (s, d), c in sends.items():
                mat[s, d] += c
            out.append(TraceCall("alltoallv", Counts(mat), e["group"], e["dtype"], int(mat.sum()), comm=cid, seq=seq,
                                 where=e["where"]))
    out.sort(key=lambda c: (_order(c.where)))
    return Trace("nccl", out, world or (max(max(c.group) for c in out) + 1), notes)


def _order(where):
    path, _, no = where.rpartition(":")
    return (path, int(no) if no.isdigit() else 0)


def _comm_id(group) -> str:
    h = hashlib.blake2b(repr(tuple(group)).encode(), digest_size=8).hexdigest()
    return "0x" + h


def write_nccl_log(calls, path=None, per_host: int = 8) -> str:
    """``calls`` (:class:`TraceCall`) as an NCCL-INFO-style log: an ``Init COMPLETE`` line per rank
    and communicator (a world communicator first, so that a reader finds every process's global
    rank), then each call's line on every member (its Send and Recv lines for ``alltoallv`` and
    ``p2p``), ``opCount`` counting per communicator. Returns the text; writes it to ``path`` too."""
    calls = list(calls)
    if not calls:
        raise ValueError("no calls to write")
    world = max(max(c.group) for c in calls) + 1
    groups = [tuple(range(world))]
    for c in calls:
        if tuple(c.group) not in groups:
            groups.append(tuple(c.group))

    def proc(r):
        return f"node{r // per_host}:{10000 + r}:{20000 + r} [{r % per_host}]"

    lines = []
    ptr = {}
    for gi, g in enumerate(groups):
        cid = _comm_id(g)
        for rank, r in enumerate(g):
            p = f"0x{0x550000000000 + r * 0x1000000 + gi:x}"
            ptr[(g, r)] = p
            lines.append(f"{proc(r)} NCCL INFO comm {p} rank {rank} nranks {len(g)} cudaDev {r % per_host} "
                         f"nvmlDev {r % per_host} busId {(r % per_host + 1) * 0x1000:x} commId {cid} - Init COMPLETE")
    opcount = {}
    for c in calls:
        g = tuple(c.group)
        n = len(g)
        seq = opcount.get(g, 0)
        opcount[g] = seq + 1
        code = NCCL_DTYPE_CODES.get(dtypes.canonical(c.dtype))
        if code is None:
            raise ValueError(f"dtype {c.dtype!r} has no NCCL code")
        size = dtypes.itemsize(c.dtype)
        if c.collective in ("alltoallv", "p2p"):
            mat = (c.nbytes if isinstance(c.nbytes, Counts) else Counts(c.nbytes)).matrix
            for s in range(n):
                for d in range(n):
                    if mat[s, d]:      # a rank's block for itself too, as torch's NCCL all_to_all sends it
                        lines.append(_coll_line(proc(g[s]), "Send", seq, int(mat[s, d]), code, 0, d, ptr[(g, g[s])], n))
                        lines.append(_coll_line(proc(g[d]), "Recv", seq, int(mat[s, d]), code, 0, s, ptr[(g, g[d])], n))
            continue
        if c.collective not in NCCL_NAMES:
            raise ValueError(f"collective {c.collective!r} has no NCCL log line; expected one of "
                             f"{', '.join(NCCL_NAMES)}, alltoallv or p2p")
        per = n if c.collective in ("allgather", "reduce_scatter", "alltoall") else 1
        count = int(c.nbytes) // (size * per)
        for r in g:
            lines.append(_coll_line(proc(r), NCCL_NAMES[c.collective], seq, count, code,
                                    NCCL_OP_CODES.get(c.op, 0), c.root, ptr[(g, r)], n))
    text = "\n".join(lines) + "\n"
    if path is not None:
        from topologies.io import write_text_atomic
        write_text_atomic(os.fspath(path), text)
    return text


def _coll_line(proc, name, seq, count, code, op, root, ptr, n):
    send, recv = ("0x7f0000000000", "(nil)") if name == "Send" else (("(nil)", "0x7f0000100000") if name == "Recv"
                                                                      else ("0x7f0000000000", "0x7f0000100000"))
    return (f"{proc} NCCL INFO {name}: opCount {seq:x} sendbuff {send} recvbuff {recv} count {count} datatype {code} "
            f"op {op} root {root} comm {ptr} [nranks={n}] stream 0x5500000000")


# -- PyTorch profiler (Kineto) -------------------------------------------------------------------------

_ALLREDUCE = ("allreduce", "allreduce_coalesced", "all_reduce")
_ALLGATHER = ("allgather", "_allgather_base", "all_gather", "all_gather_into_tensor", "allgather_into_tensor_coalesced",
              "allgather_coalesced")
_REDUCE_SCATTER = ("reduce_scatter", "_reduce_scatter_base", "reduce_scatter_tensor", "reduce_scatter_tensor_coalesced")
_ALLTOALL = ("all_to_all", "all_to_allv", "alltoall", "alltoall_base")
_SKIPPED = ("barrier", "wait", "init", "gather", "scatter")


def _load_json(path):
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as exc:
        raise ValueError(f"trace file {path}: cannot be read ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise ValueError(f"trace file {path}: not a text file") from None
    return text


def _ranks(text):
    if isinstance(text, list):
        return [int(x) for x in text]
    s = str(text).strip()
    if "..." in s:
        return None
    try:
        v = json.loads(s)
    except json.JSONDecodeError:
        return None
    return [int(x) for x in v] if isinstance(v, list) else None


def _splits(value):
    if value is None:
        return []
    if isinstance(value, list):
        return [int(x) for x in value]
    try:
        v = json.loads(str(value))
    except json.JSONDecodeError:
        return []
    return [int(x) for x in v] if isinstance(v, list) else []


def read_kineto(paths) -> Trace:
    """The collectives of PyTorch profiler traces (one JSON file per rank; a path or a list of them)."""
    paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    if not paths:
        raise ValueError("no Kineto trace files given")
    calls = {}
    order = []
    notes = []
    world = 0
    rows = {}      # all_to_allv: key -> {rank: row}
    for path in paths:
        text = _load_json(path)
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"trace file {path}: not valid JSON ({exc})") from None
        events = doc.get("traceEvents") if isinstance(doc, dict) else doc
        if not isinstance(events, list):
            raise ValueError(f"trace file {path}: no traceEvents list; expected a PyTorch profiler (Kineto) trace")
        info = doc.get("distributedInfo", {}) if isinstance(doc, dict) else {}
        world = max(world, int(info.get("world_size", 0) or 0))
        comm = [e for e in events if isinstance(e, dict) and isinstance(e.get("args"), dict)
                and "Collective name" in e["args"]]
        cpu = [e for e in comm if e.get("name") == "record_param_comms"]
        gpu = [e for e in comm if e.get("cat") in ("kernel", "gpu_op") and e.get("name") != "record_param_comms"]
        chosen = gpu if gpu and len(gpu) >= len(cpu) else cpu
        if not chosen:
            raise ValueError(f"trace file {path}: no record_param_comms events with 'Collective name'; expected a "
                             f"PyTorch profiler trace of a distributed job")
        seen = {}
        for e in chosen:
            a = e["args"]
            name = str(a["Collective name"])
            if name in _SKIPPED or name.startswith("barrier"):
                continue
            pg = str(a.get("Process Group Name", ""))
            n = seen.get(pg, 0)
            seen[pg] = n + 1
            seq = int(a["Seq"]) if "Seq" in a and str(a["Seq"]).lstrip("-").isdigit() else n
            rank = int(a.get("Rank", info.get("rank", 0)) or 0)
            key = (pg, seq, name)
            dur = float(e["dur"]) * 1e-6 if isinstance(e.get("dur"), (int, float)) else None
            if key in calls:
                c = calls[key]
                if dur is not None:
                    c.recorded_s = max(c.recorded_s or 0.0, dur)
            else:
                c = _kineto_call(a, name, pg, seq, dur, f"{path}:{e.get('ts', '')}")
                if c is None:
                    text_ = f"collective {name!r} is not modelled: left out"
                    if text_ not in notes:
                        notes.append(text_)
                    continue
                calls[key] = c
                order.append(key)
            if calls[key].collective == "alltoallv":
                rows.setdefault(key, {})[calls[key].group.index(rank) if rank in calls[key].group else 0] = \
                    _a2a_row(a, len(calls[key].group))
    out = []
    for key in order:
        c = calls[key]
        if c.collective == "alltoallv":
            known = rows.get(key, {})
            n = len(c.group)
            if len(known) < n:
                row = next(iter(known.values()))
                text_ = ("all_to_allv: the ranks without a trace file are taken to send what a traced rank sends "
                         "(its split sizes, rotated to their own position)")
                if text_ not in notes:
                    notes.append(text_)
                base = next(iter(known))
                for r in range(n):
                    if r not in known:
                        known[r] = np.roll(row, r - base)
            c.nbytes = Counts(np.vstack([known[r] for r in range(n)]))
        out.append(c)
    return Trace("kineto", out, world or max(max(c.group) for c in out) + 1 if out else 0, notes)


def _a2a_row(a, n):
    split = _splits(a.get("In split size"))
    nel = int(a.get("In msg nelems", 0))
    if not split:
        row = np.full(n, nel // n, np.int64)
        row[: nel % n] += 1
        return row
    per_row = nel // max(1, sum(split))
    return np.array([s * per_row for s in split], np.int64)


def _kineto_call(a, name, pg, seq, dur, where):
    dt_name = str(a.get("dtype", "Float"))
    if dt_name not in TORCH_DTYPES:
        raise ValueError(f"{where}: dtype {dt_name!r} is not one ccemu models; expected one of "
                         f"{', '.join(TORCH_DTYPES)}")
    dt = TORCH_DTYPES[dt_name]
    size = dtypes.itemsize(dt)
    n_in, n_out = int(a.get("In msg nelems", 0)), int(a.get("Out msg nelems", 0))
    gsize = int(a.get("Group size", 0) or 0)
    ranks = _ranks(a.get("Process Group Ranks", ""))
    if ranks is None and "Global rank start" in a and gsize:
        start, stride = int(a["Global rank start"]), int(a.get("Global rank stride", 1) or 1)
        ranks = [start + i * stride for i in range(gsize)]
    if name in ("send", "recv"):
        me = int(a.get("Rank", 0))
        if name == "send":
            peer = int(a.get("Dst Rank", -1))
            if peer < 0:
                raise ValueError(f"{where}: a send without 'Dst Rank'; expected it in the event's args")
            src, dst = me, peer
        else:
            peer = int(a.get("Src Rank", -1))
            if peer < 0:
                raise ValueError(f"{where}: a recv without 'Src Rank'; expected it in the event's args")
            src, dst = peer, me
        g = ranks or []
        gs, gd = (g[src], g[dst]) if g and max(src, dst) < len(g) else (src, dst)
        return TraceCall("p2p", Counts([[0, n_in], [0, 0]]), (gs, gd), dt, n_in, comm=pg, seq=seq, recorded_s=dur,
                         where=where)
    if ranks is None:
        raise ValueError(f"{where}: process group {pg!r} lists no ranks ('Process Group Ranks' missing or "
                         f"truncated, no 'Global rank start'); expected the group's global ranks")
    if gsize and len(ranks) != gsize:
        raise ValueError(f"{where}: process group {pg!r} lists {len(ranks)} ranks but 'Group size' is {gsize}")
    if name in _ALLREDUCE:
        return TraceCall("allreduce", n_in * size, tuple(ranks), dt, n_in, comm=pg, seq=seq, recorded_s=dur,
                         where=where)
    if name in _ALLGATHER:
        return TraceCall("allgather", max(n_out, n_in * len(ranks)) * size, tuple(ranks), dt, n_in, comm=pg, seq=seq,
                         recorded_s=dur, where=where)
    if name in _REDUCE_SCATTER:
        return TraceCall("reduce_scatter", max(n_in, n_out * len(ranks)) * size, tuple(ranks), dt, n_out, comm=pg,
                         seq=seq, recorded_s=dur, where=where)
    if name in _ALLTOALL:
        if _splits(a.get("In split size")) or name == "all_to_allv":
            return TraceCall("alltoallv", None, tuple(ranks), dt, n_in, comm=pg, seq=seq, recorded_s=dur, where=where)
        return TraceCall("alltoall", n_in * size, tuple(ranks), dt, n_in, comm=pg, seq=seq, recorded_s=dur, where=where)
    if name == "broadcast":
        return TraceCall("broadcast", n_in * size, tuple(ranks), dt, n_in, comm=pg, seq=seq, recorded_s=dur,
                         where=where)
    if name == "reduce":
        return TraceCall("reduce", n_in * size, tuple(ranks), dt, n_in, comm=pg, seq=seq, recorded_s=dur, where=where)
    return None


# -- Chakra execution traces ---------------------------------------------------------------------------

def _json_objects(text, path):
    dec = json.JSONDecoder()
    i, n, out = 0, len(text), []
    while True:
        while i < n and text[i].isspace():
            i += 1
        if i >= n:
            return out
        try:
            obj, i = dec.raw_decode(text, i)
        except json.JSONDecodeError as exc:
            raise ValueError(f"trace file {path}: not a sequence of JSON objects ({exc})") from None
        out.append(obj)


def _attrs(node) -> dict:
    out = {}
    for a in node.get("attr", node.get("attrs", [])) or []:
        if not isinstance(a, dict) or "name" not in a:
            continue
        val = None
        for k, v in a.items():
            if k in ("name", "doc_string", "docString"):
                continue
            val = v
        if isinstance(val, str) and re.fullmatch(r"-?\d+", val):
            val = int(val)
        out[a["name"]] = val
    return out


def read_chakra(paths, groups: dict | None = None, world_size: int | None = None) -> Trace:
    """The collectives of Chakra execution traces in JSON (one file per rank, as ``chakra_jsonizer``
    writes them, or a JSON list of nodes / ``{"nodes": [...]}``). ``groups`` maps a node's
    ``pg_name`` to the global ranks of its group; nodes without one span the whole job
    (``world_size`` ranks, or the metadata's ``world_size``/``npus`` attribute)."""
    paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    if not paths:
        raise ValueError("no Chakra trace files given")
    groups = {str(k): tuple(int(x) for x in v) for k, v in (groups or {}).items()}
    calls, order, notes = {}, [], []
    world = world_size
    for path in paths:
        objs = _json_objects(_load_json(path), path)
        if len(objs) == 1 and isinstance(objs[0], list):
            objs = objs[0]
        elif len(objs) == 1 and isinstance(objs[0], dict) and isinstance(objs[0].get("nodes"), list):
            objs = objs[0]["nodes"]
        nodes = []
        for o in objs:
            if not isinstance(o, dict):
                continue
            if "type" in o or "id" in o:
                nodes.append(o)
            else:
                meta = _attrs(o)
                for k in ("world_size", "npus", "num_ranks"):
                    if world is None and isinstance(meta.get(k), int):
                        world = meta[k]
        seen = {}
        found = False
        for nd in nodes:
            t = nd.get("type")
            t = {7: "COMM_COLL_NODE", 5: "COMM_SEND_NODE", 6: "COMM_RECV_NODE"}.get(t, t)
            if t not in ("COMM_COLL_NODE", "COMM_SEND_NODE"):
                continue
            found = True
            a = _attrs(nd)
            where = f"{path}:node {nd.get('id')}"
            size = a.get("comm_size")
            if not isinstance(size, int) or size < 0:
                raise ValueError(f"{where}: no comm_size (bytes); expected an int64 attribute comm_size")
            pg = str(a.get("pg_name", ""))
            n = seen.get((t, pg), 0)
            seen[(t, pg)] = n + 1
            dur = nd.get("durationMicros", nd.get("duration_micros"))
            dur = float(dur) * 1e-6 if dur not in (None, "") else None
            key = (t, pg, n)
            if key in calls:
                if dur is not None:
                    calls[key].recorded_s = max(calls[key].recorded_s or 0.0, dur)
                continue
            if t == "COMM_SEND_NODE":
                src, dst = a.get("comm_src"), a.get("comm_dst")
                if not isinstance(src, int) or not isinstance(dst, int):
                    raise ValueError(f"{where}: a send node needs int attributes comm_src and comm_dst")
                calls[key] = TraceCall("p2p", Counts([[0, size], [0, 0]]), (src, dst), "uint8", size, comm=pg, seq=n,
                                       recorded_s=dur, where=where)
                order.append(key)
                continue
            ctype = a.get("comm_type")
            if ctype not in CHAKRA_COLLECTIVES:
                text_ = f"comm_type {ctype!r} is not modelled (expected one of {sorted(CHAKRA_COLLECTIVES)}): left out"
                if text_ not in notes:
                    notes.append(text_)
                continue
            if pg in groups:
                ranks = groups[pg]
            elif world:
                ranks = tuple(range(world))
                text_ = f"pg_name {pg!r} has no group given: taken as all {world} ranks"
                if text_ not in notes:
                    notes.append(text_)
            else:
                raise ValueError(f"{where}: pg_name {pg!r} has no group (give groups={{pg_name: ranks}}, or "
                                 f"world_size); expected the ranks of every process group")
            calls[key] = TraceCall(CHAKRA_COLLECTIVES[ctype], size, ranks, "uint8", size, comm=pg, seq=n,
                                   recorded_s=dur, where=where)
            order.append(key)
        if not found:
            raise ValueError(f"trace file {path}: no COMM_COLL_NODE or COMM_SEND_NODE nodes; expected a Chakra "
                             f"execution trace in JSON")
    out = [calls[k] for k in order]
    notes.append("Chakra comm_size taken as nccl-tests' size S (the collective's buffer), in bytes (no dtype)")
    return Trace("chakra", out, world or max(max(c.group) for c in out) + 1, notes)


def load_trace(paths, format: str | None = None, groups=None, world_size=None) -> Trace:
    """A trace in any of the formats; ``format`` None guesses it from the first file."""
    plist = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    if not plist:
        raise ValueError("no trace files given")
    if format is None:
        first = os.fspath(plist[0])
        if not os.path.exists(first):
            raise ValueError(f"trace file {first}: no such file")
        head = _load_json(first)[:4096]
        if "NCCL INFO" in head:
            format = "nccl"
        elif "traceEvents" in head or "record_param_comms" in head:
            format = "kineto"
        elif "COMM_COLL_NODE" in head or "comm_type" in head or "COMM_SEND_NODE" in head:
            format = "chakra"
        else:
            raise ValueError(f"trace file {first}: not an NCCL INFO log, a PyTorch profiler trace or a Chakra "
                             f"execution trace; expected one of them (or give format)")
    if format not in FORMATS:
        raise ValueError(f"trace format {format!r}; expected one of {', '.join(FORMATS)}")
    if format == "nccl":
        return read_nccl_log(plist)
    if format == "kineto":
        return read_kineto(plist)
    return read_chakra(plist, groups, world_size)


# -- a workload's calls, and the replay --------------------------------------------------------------

def workload_calls(workload, topology=None, micro_batches: int | None = 1, layers: str = "one") -> list:
    """The calls of one step of a workload as a trace would record them (every group's call; a
    workload op of several groups gives one call per group): ``layers="one"`` one layer of each
    kind, ``"all"`` every layer; ``micro_batches`` (None: the workload's)."""
    from .comms import boundary_ops, layer_ops, routing, step_ops
    from .workload import load_workload

    w = load_workload(workload)
    if w.parallel.dp is None:
        if topology is None:
            raise ValueError("a workload without dp needs the topology (or a device count) to place it on")
        n = topology if isinstance(topology, int) else topology.num_devices
        w = w.resolved(n)
    if layers not in ("one", "all"):
        raise ValueError(f"layers={layers!r}; expected 'one' or 'all'")
    counts, pairs = routing(w)
    lay = w._layout()
    mb = w.parallel.micro_batches if micro_batches is None else micro_batches
    out = []

    def emit(op, n=1):
        groups = w.groups(op.group)
        if op.stage is not None:
            groups = [g for g in groups if lay.coord["pp"][g[0]] == op.stage]
        for _ in range(n):
            for g in groups:
                coll = "p2p" if op.group == "pp" else op.collective
                out.append(TraceCall(coll, op.size_for(int(lay.coord["ep"][g[0]])), tuple(g), op.dtype,
                                     where=f"{op.group}.{op.where}.{op.phase}"))

    kinds = w.model.layer_counts()
    for _ in range(mb):
        for kind, n in kinds.items():
            if not n:
                continue
            reps = 1 if layers == "one" else n
            for op in layer_ops(w, kind, counts, pairs):
                emit(op, reps)
        for op in boundary_ops(w):
            emit(op)
    for op in step_ops(w):
        emit(op)
    return out


@dataclass
class ReplayCall:
    call: TraceCall
    time_s: float
    algorithm: str
    notes: list = field(default_factory=list)

    def as_dict(self) -> dict:
        return {**self.call.as_dict(), "time_s": self.time_s, "algorithm": self.algorithm, "notes": self.notes}


@dataclass
class Replay:
    """Per call the emulated time; per rank the sum of its calls (one after another)."""

    trace: Trace
    topology: str
    calls: list

    def per_rank(self, recorded: bool = False) -> dict:
        out = {}
        for rc in self.calls:
            t = rc.call.recorded_s if recorded else rc.time_s
            if t is None:
                continue
            for r in rc.call.group:
                out[r] = out.get(r, 0.0) + t
        return out

    @property
    def comm_s(self) -> float:
        """The busiest rank's emulated communication time."""
        return max(self.per_rank().values(), default=0.0)

    @property
    def recorded_s(self) -> float | None:
        r = self.per_rank(recorded=True)
        return max(r.values()) if r else None

    def by_collective(self) -> dict:
        out = {}
        for rc in self.calls:
            e = out.setdefault(rc.call.collective, {"calls": 0, "bytes": 0, "time_s": 0.0, "recorded_s": 0.0})
            e["calls"] += 1
            e["bytes"] += rc.call.total_bytes
            e["time_s"] += rc.time_s
            if rc.call.recorded_s is not None:
                e["recorded_s"] += rc.call.recorded_s
        return out

    def as_dict(self) -> dict:
        return {"schema": "ccemu-replay", "version": 1, "format": self.trace.format, "topology": self.topology,
                "world": self.trace.world, "calls": [rc.as_dict() for rc in self.calls], "comm_s": self.comm_s,
                "recorded_s": self.recorded_s, "by_collective": self.by_collective(), "notes": self.trace.notes}

    def table(self, markdown: bool = False, calls: int = 0) -> str:
        from collectives.study import format_table

        rec = self.recorded_s
        head = [f"ccemu replay of a {self.trace.format} trace ({len(self.calls)} calls, {self.trace.world} ranks) on "
                f"{self.topology}: the busiest rank communicates {self.comm_s * 1e3:.3f} ms (calls one after another)"
                + (f"; the trace records {rec * 1e3:.3f} ms" if rec else ""), *self.trace.notes]
        rows = []
        for k, e in self.by_collective().items():
            rows.append([k, str(e["calls"]), str(e["bytes"]), f"{e['time_s'] * 1e3:.3f}",
                         f"{e['recorded_s'] * 1e3:.3f}" if e["recorded_s"] else "-"])
        out = format_table(["collective", "calls", "bytes", "emulated ms (sum)", "recorded ms (sum)"], rows, head,
                           markdown)
        if calls:
            body = [[str(i), rc.call.collective, str(rc.call.total_bytes), str(len(rc.call.group)), rc.algorithm,
                     f"{rc.time_s * 1e6:.2f}",
                     f"{rc.call.recorded_s * 1e6:.2f}" if rc.call.recorded_s is not None else "-"]
                    for i, rc in enumerate(self.calls[:calls])]
            out += "\n\n" + format_table(["#", "collective", "bytes", "ranks", "algorithm", "emulated us",
                                          "recorded us"], body, (), markdown)
        return out


def replay(trace, topology, library: str | None = None, share_equivalent: bool = False, progress=None) -> Replay:
    """Each call of ``trace`` timed alone on its group of ``topology``: exactly
    ``simulate(collective, nbytes, select_devices(topology, group), dtype=...)`` (``share_equivalent``:
    groups of the same shape share one time, :func:`collectives.concurrent.group_key`, much faster
    on big traces; exact on fabrics without ECMP hashing)."""
    from collectives import simulate
    from collectives.concurrent import group_key
    from collectives.registry import AlgorithmUnavailable
    from collectives.timing import _as_topology
    from topologies.whatif import select_devices

    topology = _as_topology(topology)
    if not isinstance(trace, Trace):
        trace = load_trace(trace)
    need = max((max(c.group) for c in trace.calls), default=-1) + 1
    if need > topology.num_devices:
        raise ValueError(f"the trace has rank {need - 1} but {topology.name!r} has {topology.num_devices} devices; "
                         f"expected a system of at least {need} devices (more --nodes)")
    subs, cache, out = {}, {}, []
    for c in trace.calls:
        coll, nb = c.simulate_args()
        gkey = group_key(topology, c.group) if share_equivalent else tuple(c.group)
        size_key = nb.fingerprint() if isinstance(nb, Counts) else nb
        key = (coll, size_key, c.dtype, c.op, c.root, gkey)
        hit = cache.get(key)
        if hit is None:
            sub = subs.get(gkey)
            if sub is None:
                sub = subs[gkey] = select_devices(topology, c.group) if len(c.group) > 1 else None
            notes = []
            if sub is None:
                hit = (0.0, "local", notes)
            else:
                try:
                    r = simulate(coll, nb, sub, dtype=c.dtype, op=c.op, root=c.root, library=library)
                except AlgorithmUnavailable as exc:
                    r = simulate(coll, nb, sub, dtype=c.dtype, op=c.op, root=c.root, library="ideal")
                    notes.append(f"the library's pick cannot run on this group "
                                 f"({str(exc).replace(f'topology {sub.name!r}', 'the group')}); ideal stands in")
                hit = (r.time_s, r.algorithm, notes)
            cache[key] = hit
        if progress is not None:
            progress.step(coll)
        out.append(ReplayCall(c, hit[0], hit[1], list(hit[2])))
    return Replay(trace, topology.name, out)

