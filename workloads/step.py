"""The time of one training or inference step of a workload on a topology, and what it loses.

:func:`simulate_step` times every collective of the step (:mod:`workloads.comms`) with all the
groups that run it at once on the one fabric (:func:`collectives.concurrent.simulate_concurrent`:
every tensor-parallel group's allgather together, every expert-parallel group's all-to-all
together, ...), the compute of every layer from its FLOPs and bytes (:mod:`workloads.compute`),
and puts them together by the frameworks' usual overlap rules:

- inside a layer, tensor-parallel collectives and the expert-parallel dispatch and combine are on
  the critical path (Megatron-LM's defaults); the pipeline's sends and receives too (1F1B without
  overlapped communication);
- context parallelism's ring exchange overlaps the attention core (ring attention): what is left
  over is exposed (``overlap.cp``);
- ZeRO-3 / FSDP gathers a layer's parameters while the previous layer computes (prefetch): what
  exceeds a layer's compute is exposed (``overlap.fsdp``);
- the data-parallel gradient reduction (allreduce, or the distributed optimizer's reduce-scatter)
  runs in buckets during the backward pass of the last micro-batch; on stage ``s`` it can hide
  behind that backward pass and the ``s`` backward slots the earlier stages still run, and the rest
  is exposed (``overlap.dp``). A device reduces its dense gradients, then its experts', one after
  the other on one communication stream; each kind runs with all its groups of every stage at
  once. While the reduction runs it shares the fabric with that backward pass's collectives: those
  are timed again with the gradient reduction as background traffic (in time, until they end), and
  the difference is counted;
- the distributed optimizer's parameter allgather overlaps the next step's first forward pass
  (``overlap.param_gather``); the optimizer update itself is exposed (memory-bound);
- the pipeline: ``(micro_batches + pp - 1)`` slots of the slowest stage's forward + backward (with
  its exposed communication and the sends to the next stage), ``pp - 1`` of them the bubble.

All groups of a kind are taken to run their collective at the same time (the step is SPMD), also
across pipeline stages. The result gives the step time, the exposed communication per group kind
and collective, tokens per second, the achieved MFU (model FLOPs over the devices' peak), and the
exposed communication by the kind of link that bounds it (each collective's busiest link, by bytes
over capacity). :func:`compare` runs a workload over systems and device counts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from collectives.alltoallv import Counts
from collectives.concurrent import Call, simulate_concurrent
from collectives.study import Progress, format_table

from .comms import boundary_ops, layer_ops, routing, stage_params, step_ops
from .compute import chip, chip_for, embed_work, head_work, layer_work
from .workload import Workload, load_workload


@dataclass
class Phase:
    """One collective of the step run by all its groups at once."""

    op: object
    calls: int
    time_s: float
    alone_s: float
    algorithm: str
    link_kind: str | None
    utilisation: float
    bytes_by_kind: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)
    #: When its first group started and its last one ended (within its concurrent run).
    start_s: float = 0.0
    end_s: float = 0.0

    def as_dict(self) -> dict:
        o = self.op
        return {"group": o.group, "collective": o.collective, "where": o.where, "phase": o.phase, "per": o.per,
                "overlap": o.overlap, "stage": o.stage, "bytes": o.total_bytes(), "calls": self.calls,
                "time_s": self.time_s, "alone_s": self.alone_s,
                "slowdown": self.time_s / self.alone_s if self.alone_s > 0 else None, "algorithm": self.algorithm,
                "busiest_link_kind": self.link_kind, "busiest_link_utilisation": self.utilisation,
                "bytes_by_link_kind": self.bytes_by_kind, "notes": self.notes}


class _Phases:
    """Times the step's ops on one topology, each with all its groups at once (cached by signature)."""

    def __init__(self, w: Workload, topology, library, model, progress):
        self.w, self.topo, self.library, self.model, self.progress = w, topology, library, model, progress
        self.cache = {}
        lay = w._layout()
        self.ep_rank = lay.coord["ep"]
        self.stage = lay.coord["pp"]

    def calls(self, op) -> list:
        groups = self.w.groups(op.group)
        if op.stage is not None:
            groups = [g for g in groups if self.stage[g[0]] == op.stage]
        return [Call(op.collective, op.size_for(int(self.ep_rank[g[0]])), tuple(g), op.dtype, op.group,
                     algorithm=op.algorithm) for g in groups]

    def key(self, op):
        n = op.nbytes
        return (op.group, op.collective, n.fingerprint() if isinstance(n, Counts) else n, op.dtype, op.algorithm,
                op.stage)

    def time(self, op) -> Phase:
        k = self.key(op)
        hit = self.cache.get(k)
        if hit is None:
            calls = self.calls(op)
            r = simulate_concurrent(self.topo, calls, library=self.library, model=self.model, sync="step")
            hit = self.cache[k] = _phase(op, r, range(len(calls)))
            if self.progress is not None:
                self.progress.step(f"{op.group} {op.collective} {op.where}")
        return hit

    def together(self, ops) -> list:
        """The step's gradient reductions (or parameter gathers) of every stage, a :class:`Phase`
        per op. Each group kind (``dp``, ``edp``) runs with all its groups of every stage at once
        (aligned by step, ``sync="step"``); a device runs its own calls one after another, on one
        communication stream as frameworks do, so a stage's total is the sum over kinds (the
        ``start_s``/``end_s`` of the phases say so). Contention between kinds of different stages
        is not modelled."""
        out = {}
        clock = {}                       # stage -> when its next call may start
        for kind in dict.fromkeys(o.group for o in ops):
            mine = [o for o in ops if o.group == kind]
            calls, spans = [], []
            for op in mine:
                c = self.calls(op)
                spans.append(range(len(calls), len(calls) + len(c)))
                calls += c
            if not calls:
                continue
            r = simulate_concurrent(self.topo, calls, library=self.library, model=self.model, sync="step")
            if self.progress is not None:
                self.progress.step(f"{kind} {mine[0].where} ({len(calls)} calls)")
            for op, span in zip(mine, spans):
                p = _phase(op, r, span)
                at = clock.get(op.stage, 0.0)
                p.start_s, p.end_s = at, at + p.time_s
                clock[op.stage] = p.end_s
                out[id(op)] = p
        return [out[id(o)] for o in ops if id(o) in out]

    def under(self, op, background) -> float:
        """The slowest group's time of ``op`` while ``background`` ops' calls run too."""
        mine = self.calls(op)
        bg = [c for b in background for c in self.calls(b)]
        if not bg or not mine:
            return self.time(op).time_s
        r = simulate_concurrent(self.topo, mine + bg, library=self.library, model=self.model, sync="time",
                                stop_when=range(len(mine)), link_bytes=False)
        if self.progress is not None:
            self.progress.step(f"{op.group} {op.collective} under {background[0].where}")
        return max(c.time_s for c in r.calls[:len(mine)])


def _phase(op, r, span) -> Phase:
    calls = [r.calls[i] for i in span]
    busiest = _busiest(r, span)
    kinds = {}
    for i in span:
        ids, b = r.call_links[i]
        if len(ids):
            names = np.array(r.link_kinds, dtype=object)[r._edge_kind[ids]]
            for k in set(names):
                kinds[k] = kinds.get(k, 0.0) + float(b[names == k].sum())
    notes = sorted({n for c in calls for n in c.notes})
    return Phase(op, len(calls), max(c.time_s for c in calls), max(c.alone_s for c in calls),
                 calls[0].algorithm, busiest[0], busiest[1], kinds, notes, min(c.start_s for c in calls),
                 max(c.end_s for c in calls))


def _busiest(r, span):
    arr = np.zeros(len(r.edges))
    for i in span:
        ids, b = r.call_links[i]
        np.add.at(arr, ids, b)
    if not arr.any():
        return None, 0.0
    calls = [r.calls[i] for i in span]
    t = max(c.end_s for c in calls) - min(c.start_s for c in calls)
    with np.errstate(divide="ignore", invalid="ignore"):
        load = np.where(r.capacity_Bps > 0, arr / r.capacity_Bps, 0.0)
    e = int(np.argmax(load))
    return r.link_kinds[r._edge_kind[e]], float(load[e] / t) if t > 0 else math.nan


@dataclass
class StepResult:
    """A step's figures (seconds unless named otherwise); see :func:`simulate_step`."""

    workload: str
    system: str
    devices: int
    mode: str
    chip: str
    parallel: dict
    step_s: float
    tokens_per_step: int
    breakdown: dict
    by_link_kind: dict
    phases: list
    stages: list
    model_flops: float
    peak_flops: float
    memory_GB: float
    hbm_GB: float
    notes: list = field(default_factory=list)
    #: The step if communication took no time (the slowest stage's compute in every pipeline slot,
    #: and the optimizer): what the interconnect costs is ``step_s - comm_free_s``.
    comm_free_s: float = math.nan

    @property
    def tokens_per_s(self) -> float:
        return self.tokens_per_step / self.step_s if self.step_s > 0 else math.nan

    @property
    def tokens_per_s_per_device(self) -> float:
        return self.tokens_per_s / self.devices

    @property
    def mfu(self) -> float:
        """Model FLOPs per step over the devices' dense 16-bit peak for the step's time."""
        return self.model_flops / (self.devices * self.peak_flops * self.step_s) if self.step_s > 0 else math.nan

    @property
    def interconnect_share(self) -> float:
        """The share of the step that free communication would save."""
        return 1.0 - self.comm_free_s / self.step_s if self.step_s > 0 else math.nan

    @property
    def exposed_comm_s(self) -> float:
        return sum(v for k, v in self.breakdown.items() if k not in ("compute", "bubble", "optimizer"))

    def as_dict(self) -> dict:
        return {"schema": "ccemu-workload-step", "version": 1, "workload": self.workload, "system": self.system,
                "devices": self.devices, "mode": self.mode, "chip": self.chip, "parallel": self.parallel,
                "step_s": self.step_s, "tokens_per_step": self.tokens_per_step, "tokens_per_s": self.tokens_per_s,
                "tokens_per_s_per_device": self.tokens_per_s_per_device, "mfu": self.mfu,
                "exposed_comm_s": self.exposed_comm_s, "comm_free_step_s": self.comm_free_s,
                "interconnect_share": self.interconnect_share, "breakdown_s": dict(self.breakdown),
                "exposed_comm_by_link_kind_s": dict(self.by_link_kind), "stages": self.stages,
                "memory_GB_per_device": self.memory_GB, "hbm_GB": self.hbm_GB,
                "phases": [p.as_dict() for p in self.phases], "notes": list(self.notes)}

    def table(self, markdown: bool = False) -> str:
        p = self.parallel
        header = [f"ccemu workload {self.workload} ({self.mode}) on {self.system}: {self.devices} devices of "
                  f"{self.chip}; tp {p['tp']} pp {p['pp']} dp {p['dp']} ep {p['ep']} cp {p['cp']} zero {p['zero']}, "
                  f"{p['micro_batches']} micro-batches",
                  f"step {self.step_s * 1e3:.3f} ms, {self.tokens_per_s:,.0f} tokens/s "
                  f"({self.tokens_per_s_per_device:,.1f} per device), MFU {self.mfu:.3f}, "
                  f"exposed communication {self.exposed_comm_s / self.step_s:.1%} of the step; with free communication "
                  f"the step would take {self.comm_free_s * 1e3:.3f} ms (the interconnect costs "
                  f"{self.interconnect_share:.1%} of it)"]
        header += self.notes
        rows = [[k, f"{v * 1e3:.3f}", f"{v / self.step_s:.1%}"] for k, v in self.breakdown.items()]
        rows.append(["step", f"{self.step_s * 1e3:.3f}", "100.0%"])
        out = format_table(["part", "ms", "share"], rows, header, markdown)
        slowed = sorted((p for p in self.phases if p.alone_s > 0 and p.time_s > 1.01 * p.alone_s),
                        key=lambda p: -p.time_s / p.alone_s)[:6]
        if slowed:
            rows = [[f"{p.op.kind} {p.op.where} {p.op.phase}"
                     + (f" stage {p.op.stage}" if p.op.stage is not None else ""),
                     str(p.calls), f"{p.time_s * 1e6:.1f}", f"{p.alone_s * 1e6:.1f}", f"{p.time_s / p.alone_s:.2f}",
                     f"{p.link_kind} {p.utilisation:.0%}" if p.link_kind else "-"] for p in slowed]
            out += "\n\n" + format_table(["groups that slow each other (phase)", "groups", "together us", "alone us",
                                          "slowdown", "busiest link, use"], rows, (), markdown)
        if self.by_link_kind:
            total = sum(self.by_link_kind.values())
            kinds = [[k, f"{v * 1e3:.3f}", f"{v / total:.1%}" if total else "n/a"]
                     for k, v in sorted(self.by_link_kind.items(), key=lambda kv: -kv[1])]
            out += "\n\n" + format_table(["link kind (bounds the exposed comm)", "ms", "share"], kinds, (), markdown)
        return out


def simulate_step(workload, topology, library: str | None = None, model: dict | None = None,
                  progress: Progress | None = None) -> StepResult:
    """Time one step of ``workload`` on ``topology`` (all its devices); see the module docstring.

    Parameters
    ----------
    workload : Workload, str or dict
        A workload, a workload file, a built-in name or a mapping (:func:`workloads.load_workload`).
    topology : topologies.Topology or str
        The system; the workload's ``dp`` is the rest of its devices.
    library, model
        As in :func:`collectives.simulate`: whose pick ``auto`` runs, network-model overrides.
    progress : collectives.study.Progress, optional
        Stepped once per timed phase.

    Examples
    --------
    >>> r = simulate_step("tiny-dense", "hgx-h20")
    >>> r.devices, r.parallel["dp"], sorted(k for k in r.breakdown if " " in k)
    (8, 2, ['dp allgather', 'dp reduce_scatter', 'pp p2p', 'tp allgather', 'tp reduce_scatter'])
    >>> abs(sum(r.breakdown.values()) - r.step_s) < 1e-12
    True
    """
    from collectives.timing import _as_topology

    topology = _as_topology(topology)
    w = load_workload(workload).resolved(topology.num_devices)
    m, par, cm = w.model, w.parallel, w.compute
    c = chip(cm.chip) if cm.chip else chip_for(topology)
    phases = _Phases(w, topology, library, model, progress)
    counts, pairs = routing(w)
    pairs_max = float(pairs.max()) if len(pairs) else 0.0
    train = w.mode == "train"
    used = []

    def exposed_of(ops, compute_core, compute_layer):
        """``({kind: exposed seconds}, {kind: {link kind: seconds}})`` of one pass's ops (a phase's
        seconds go to the kind of its busiest link)."""
        out, link = {}, {}
        core = [phases.time(o) for o in ops if o.overlap == "core"]
        pre = [phases.time(o) for o in ops if o.overlap == "prefetch"]
        for o in ops:
            if o.overlap == "exposed":
                p = phases.time(o)
                used.append(p)
                out[o.kind] = out.get(o.kind, 0.0) + p.time_s
                link.setdefault(o.kind, {}).setdefault(p.link_kind, 0.0)
                link[o.kind][p.link_kind] += p.time_s
        for group, hidden, rule in ((core, compute_core, "cp"), (pre, compute_layer, "fsdp")):
            if not group:
                continue
            used.extend(group)
            total = sum(p.time_s for p in group)
            left = max(0.0, total - hidden) if w.overlaps(rule) else total
            for p in group:
                share = left * (p.time_s / total if total > 0 else 0.0)
                out[p.op.kind] = out.get(p.op.kind, 0.0) + share
                link.setdefault(p.op.kind, {}).setdefault(p.link_kind, 0.0)
                link[p.op.kind][p.link_kind] += share
        return out, link

    # -- one layer of each kind: compute and exposed communication, per micro-batch ------------------
    per_layer = {}
    for kind in ("dense", "moe"):
        if not m.layer_counts()[kind]:
            continue
        work = layer_work(m, par, kind, w.mode, pairs_max if kind == "moe" else 0.0)
        core_f, rest_f = work.time(cm, c)
        ops = layer_ops(w, kind, counts, pairs)
        fwd, fwd_link = exposed_of([o for o in ops if o.phase == "fwd"], core_f, core_f + rest_f)
        entry = {"compute_f": core_f + rest_f, "core_f": core_f, "exposed_f": fwd, "link_f": fwd_link,
                 "flops_f": work.total_flops, "ops": ops}
        if train:
            bwd, bwd_link = exposed_of([o for o in ops if o.phase == "bwd"], 2 * core_f, 2 * (core_f + rest_f))
            entry.update(compute_b=2 * (core_f + rest_f), exposed_b=bwd, link_b=bwd_link)
        per_layer[kind] = entry
    head_f = cm.time(head_work(m, par, w.mode).flops, head_work(m, par, w.mode).nbytes, c)
    embed_f = cm.time(0.0, embed_work(m, par, w.mode).nbytes, c)

    # -- the pipeline --------------------------------------------------------------------------------
    b_ops = boundary_ops(w)
    p2p = {o.phase: phases.time(o) for o in b_ops}
    used.extend(p2p.values())
    stages = []
    for s in range(par.pp):
        n = m.layer_counts(w.stage_layers(s))
        st = {"stage": s, "layers": len(w.stage_layers(s)), "dense_layers": n["dense"], "moe_layers": n["moe"],
              "compute_f": 0.0, "compute_b": 0.0, "exposed_f": {}, "exposed_b": {}, "link": {}}
        for kind, cnt in n.items():
            if not cnt:
                continue
            e = per_layer[kind]
            st["compute_f"] += cnt * e["compute_f"]
            _add(st["exposed_f"], e["exposed_f"], cnt)
            _add_link(st["link"], e["link_f"], cnt)
            if train:
                st["compute_b"] += cnt * e["compute_b"]
                _add(st["exposed_b"], e["exposed_b"], cnt)
                _add_link(st["link"], e["link_b"], cnt)
        extra = (embed_f if s == 0 else 0.0) + (head_f if s == par.pp - 1 else 0.0)
        st["compute_f"] += extra
        if train:
            st["compute_b"] += 2 * extra
        for ph, p in p2p.items():
            _add(st["exposed_f" if ph == "fwd" else "exposed_b"], {p.op.kind: p.time_s}, 1)
            _add_link(st["link"], {p.op.kind: {p.link_kind: p.time_s}}, 1)
        st["forward_s"] = st["compute_f"] + sum(st["exposed_f"].values())
        st["backward_s"] = st["compute_b"] + sum(st["exposed_b"].values())
        st["compute"] = st["compute_f"] + st["compute_b"]
        st["slot_s"] = st["forward_s"] + st["backward_s"]
        st["exposed"] = {}
        _add(st["exposed"], st["exposed_f"], 1)
        _add(st["exposed"], st["exposed_b"], 1)
        stages.append(st)
    mb = par.micro_batches
    b = max(range(par.pp), key=lambda s: stages[s]["slot_s"])
    slot = stages[b]["slot_s"]
    breakdown = {"compute": mb * stages[b]["compute"]}
    link_time = {}
    for k, v in stages[b]["exposed"].items():
        breakdown[k] = mb * v
    for k, per in stages[b]["link"].items():
        for lk, v in per.items():
            link_time[lk] = link_time.get(lk, 0.0) + mb * v
    breakdown["bubble"] = (par.pp - 1) * slot
    step = (mb + par.pp - 1) * slot
    notes = []

    # -- the step's data-parallel collectives and the optimizer ---------------------------------------
    if train:
        sops = step_ops(w)
        grads = [o for o in sops if o.where == "grads"]
        params = [o for o in sops if o.where == "params"]
        for group_ops, rule in ((grads, "dp"), (params, "param_gather")):
            if not group_ops:
                continue
            res = phases.together(group_ops)
            used.extend(res)
            for p in res:
                breakdown.setdefault(p.op.kind, 0.0)
            worst, worst_kind, worst_link = 0.0, None, {}
            for s in range(par.pp):
                mine = [p for p in res if p.op.stage == s]
                if not mine:
                    continue
                t = max(p.end_s for p in mine) - min(p.start_s for p in mine)   # one stream: one after another
                if rule == "dp":
                    # Behind the last micro-batch's backward pass on stage s, and the backward
                    # passes of that micro-batch that stages s-1 .. 0 still run after it (1F1B).
                    window = stages[s]["backward_s"] + s * stages[b]["backward_s"]
                else:
                    window = stages[s]["forward_s"]
                left = max(0.0, t - window) if w.overlaps(rule) else t
                if left > worst:
                    top = max(mine, key=lambda p: p.time_s)
                    worst, worst_kind, worst_link = left, top.op.kind, {top.link_kind: left}
            if worst > 0:
                breakdown[worst_kind] = breakdown.get(worst_kind, 0.0) + worst
                for lk, v in worst_link.items():
                    link_time[lk] = link_time.get(lk, 0.0) + v
                step += worst
            if rule == "dp" and w.overlaps("dp"):
                # The reduction shares the fabric with the last backward pass's collectives.
                extra, extra_kind = _contention(w, phases, per_layer, stages[b], [o for o in grads if o.stage == b])
                for k, v in extra.items():
                    breakdown[k] = breakdown.get(k, 0.0) + v
                    step += v
                    for lk, t in extra_kind.get(k, {}).items():
                        link_time[lk] = link_time.get(lk, 0.0) + t
        opt = 0.0
        for s in range(par.pp):
            p = stage_params(w, s)
            n = p["dense"] / par.tp + p["experts"] / (par.ep * par.tp)
            if par.zero >= 1:
                n = p["dense"] / par.tp / w.group_size("dp") + p["experts"] / (par.ep * par.tp) / w.group_size("edp")
            opt = max(opt, n * cm.optimizer_bytes_per_param / (c.hbm_GBps * 1e9 * cm.mem_efficiency))
        breakdown["optimizer"] = opt
        step += opt
    comm_free = (mb + par.pp - 1) * max(st["compute"] for st in stages) + breakdown.get("optimizer", 0.0)

    # -- totals --------------------------------------------------------------------------------------
    seq = 1 if w.mode == "decode" else m.seq_len
    tok = mb * m.micro_batch * seq * par.dp
    keys = m.seq_len if w.mode == "decode" else m.seq_len / 2
    per_token = 2 * m.active_params_per_token() + m.layers * keys * m.heads * 2 * (m.qk_dim + m.v_dim)
    model_flops = tok * per_token * (3 if train else 1)
    mem = _memory_GB(w)
    if mem > c.hbm_GB:
        notes.append(f"note: weights, gradients and optimizer state need about {mem:.0f} GB per device, more than "
                     f"the {c.hbm_GB:.0f} GB of HBM (activations not counted): the layout would not fit")
    for p in used:
        for n in p.notes:
            text = f"note: {p.op.group} {p.op.collective}: {n}"
            if text not in notes:
                notes.append(text)
    ordered = {"compute": breakdown.pop("compute")}
    for k in sorted(k for k in breakdown if k not in ("bubble", "optimizer")):
        ordered[k] = breakdown[k]
    for k in ("bubble", "optimizer"):
        if k in breakdown:
            ordered[k] = breakdown[k]
    for st in stages:
        for k in ("link", "exposed_f", "exposed_b"):
            st.pop(k, None)
    uniq = {}
    for p in used:
        uniq[id(p)] = p
    return StepResult(w.name, topology.name, topology.num_devices, w.mode, c.key, {**par.as_dict(), "sp": par.sp},
                      step, tok, ordered, {k: v for k, v in link_time.items() if k is not None and v > 0},
                      list(uniq.values()), stages, model_flops, c.bf16_tflops * 1e12, mem, c.hbm_GB, notes, comm_free)


def count_phases(w) -> int:
    """How many concurrent runs :func:`simulate_step` makes for a resolved workload (a progress bar's total)."""
    counts, pairs = routing(w)
    keys = set()
    bwd = set()
    for kind in ("dense", "moe"):
        if w.model.layer_counts()[kind]:
            for o in layer_ops(w, kind, counts, pairs):
                k = (o.group, o.collective, o.nbytes.fingerprint() if isinstance(o.nbytes, Counts) else o.nbytes,
                     o.dtype, o.algorithm)
                keys.add(k)
                if o.phase == "bwd" and o.overlap == "exposed":
                    bwd.add(k)
    keys.update((o.group, o.collective, o.nbytes.fingerprint(), o.dtype, o.algorithm) for o in boundary_ops(w))
    sops = step_ops(w)
    n = len(keys) + sum(1 for where in ("grads", "params") if any(o.where == where for o in sops))
    return n + (len(bwd) if any(o.where == "grads" for o in sops) and w.overlaps("dp") else 0)


def _add(acc, d, n):
    for k, v in d.items():
        acc[k] = acc.get(k, 0.0) + n * v


def _add_link(acc, d, n):
    for k, per in d.items():
        tgt = acc.setdefault(k, {})
        for lk, v in per.items():
            tgt[lk] = tgt.get(lk, 0.0) + n * v


def _contention(w, phases, per_layer, stage, grads):
    """Extra exposed seconds of the last micro-batch's backward collectives on the slowest stage
    while its gradient reduction runs in the background: ``({kind: s}, {kind: {link kind: s}})``."""
    if not grads:
        return {}, {}
    extra, link = {}, {}
    for kind, cnt in (("dense", stage["dense_layers"]), ("moe", stage["moe_layers"])):
        if not cnt or kind not in per_layer:
            continue
        seen = {}
        for o in per_layer[kind]["ops"]:
            if o.phase != "bwd" or o.overlap != "exposed":
                continue
            k = phases.key(o)
            if k not in seen:
                seen[k] = max(0.0, phases.under(o, grads) - phases.time(o).time_s)
            d = seen[k] * cnt
            if d > 0:
                extra[o.kind] = extra.get(o.kind, 0.0) + d
                lk = phases.time(o).link_kind
                link.setdefault(o.kind, {})[lk] = link.get(o.kind, {}).get(lk, 0.0) + d
    return extra, link


def _memory_GB(w) -> float:
    """Weights, gradients and optimizer state per device on the largest stage (activations not
    counted): 16-bit weights, gradients in their dtype, 12 bytes of FP32 optimizer state per
    parameter, each sharded as ZeRO shards it."""
    from collectives import dtypes

    par = w.parallel
    e, g = w.model.dtype_bytes, dtypes.itemsize(w.grad_dtype)
    worst = 0.0
    for s in range(par.pp):
        p = stage_params(w, s)
        dense, experts = p["dense"] / par.tp, p["experts"] / (par.ep * par.tp)
        dp, edp = w.group_size("dp"), w.group_size("edp")
        n = dense + experts
        shard = dense / dp + experts / edp
        weights = (shard if par.zero == 3 else n) * e
        if w.mode != "train":
            worst = max(worst, weights)
            continue
        grads = (shard if par.zero >= 2 else n) * g
        opt = (shard if par.zero >= 1 else n) * 12
        worst = max(worst, weights + grads + opt)
    return worst / 1e9


# -- over systems and device counts -------------------------------------------------------------------

def system_topology(system: str, devices: int | None = None, nodes: int | None = None):
    """The topology of ``system`` (a preset) with ``nodes`` servers, or the fewest servers that hold
    ``devices`` devices (the first ``devices`` of them when that is not a whole number of servers)."""
    from topologies.presets import load_topology
    from topologies.whatif import take_devices

    if devices is None:
        return load_topology(system, nodes=nodes)
    one = load_topology(system)
    per = one.num_devices
    n = max(1, -(-devices // per))
    t = one if n == 1 else load_topology(system, nodes=n)
    return t if t.num_devices == devices else take_devices(t, devices)


@dataclass
class Comparison:
    """Step results of one workload over systems and device counts."""

    workload: str
    results: list
    notes: list = field(default_factory=list)

    def rows(self) -> list:
        base = {}
        for r in self.results:
            k = r["system"]
            if k not in base or r["devices"] < base[k]["devices"]:
                base[k] = r
        out = []
        for r in self.results:
            b = base[r["system"]]
            eff = r["result"].tokens_per_s_per_device / b["result"].tokens_per_s_per_device
            out.append({**r, "scaling_efficiency": eff})
        return out

    def as_dict(self) -> dict:
        return {"schema": "ccemu-workload-compare", "version": 1, "workload": self.workload, "notes": self.notes,
                "rows": [{"system": r["system"], "devices": r["devices"], "topology": r["result"].system,
                          "scaling_efficiency": r["scaling_efficiency"], **r["result"].as_dict()} for r in self.rows()]}

    def table(self, markdown: bool = False) -> str:
        rows = self.rows()
        kinds = []
        for r in rows:
            for k in r["result"].breakdown:
                if k not in kinds and k not in ("compute", "bubble", "optimizer"):
                    kinds.append(k)
        body = []
        for r in rows:
            s = r["result"]
            top = sorted(((v, k) for k, v in s.breakdown.items() if k in kinds), reverse=True)[:2]
            links = sorted(s.by_link_kind.items(), key=lambda kv: -kv[1])
            tot = sum(s.by_link_kind.values())
            body.append([r["system"], str(r["devices"]), f"{s.step_s * 1e3:.1f}", f"{s.comm_free_s * 1e3:.1f}",
                         f"{s.interconnect_share:.1%}", f"{s.tokens_per_s:,.0f}",
                         f"{s.tokens_per_s_per_device:,.1f}", f"{r['scaling_efficiency']:.3f}", f"{s.mfu:.3f}",
                         f"{s.breakdown['compute'] / s.step_s:.1%}", f"{s.exposed_comm_s / s.step_s:.1%}",
                         f"{s.breakdown.get('bubble', 0.0) / s.step_s:.1%}",
                         ", ".join(f"{k} {v / s.step_s:.0%}" for v, k in top) or "-",
                         ", ".join(f"{k} {v / tot:.0%}" for k, v in links[:2]) if tot else "-"])
        cols = ["system", "devices", "step ms", "free-comm ms", "interconnect", "tokens/s", "tokens/s/dev",
                "scaling eff", "MFU", "compute",
                "exposed comm", "bubble", "top exposed comm", "comm by link kind"]
        head = [f"ccemu workload {self.workload}: step time per system and device count (emulated); free-comm = the "
                f"step if communication took no time, interconnect = the share of the step that would save; scaling "
                f"eff = tokens/s per device over that at the fewest devices of the same system", *self.notes]
        return format_table(cols, body, head, markdown)


def compare(workload, systems, devices, library: str | None = None, model: dict | None = None,
            progress_enabled: bool | None = False) -> Comparison:
    """:func:`simulate_step` for every system (preset name) at every device count."""
    w = load_workload(workload)
    for d in devices:
        w.parallel.resolve(w.model, d, w.mode)   # every device count fits before any work
    total = len(systems) * len(devices)
    bar = Progress(total, enabled=progress_enabled)
    out = []
    for sys_name in systems:
        for d in devices:
            topo = system_topology(sys_name, d)
            r = simulate_step(w, topo, library=library, model=model)
            out.append({"system": sys_name, "devices": d, "result": r})
            bar.step(f"{sys_name} {d}")
    notes = []
    big = [f"{r['system']} x{r['devices']} ({r['result'].memory_GB:.0f} of {r['result'].hbm_GB:.0f} GB)" for r in out
           if r["result"].memory_GB > r["result"].hbm_GB]
    if big:
        notes.append("weights, gradients and optimizer state (activations not counted) exceed the HBM at: "
                     + ", ".join(big) + "; those layouts would not fit")
    for r in out:
        for n in r["result"].notes:
            if not n.startswith("note: weights") and n not in notes:
                notes.append(n)
    return Comparison(w.name, out, notes)

