"""Chrome / Perfetto traces of an emulated call: where the time goes, per device and per link.

:func:`trace` times a call as :func:`collectives.simulate` does (the same pick, parameters, protocol
and network model) and lays its steps out on one time line:

- process ``devices``, one thread per device: each transfer the device sends, from the step's start
  to the end of its data plus its latency (``args``: destination, bytes); transfers between one
  pair in one step travel as one message, as the network model times them;
- process ``links``, one thread per link (``u -> v``) that carries data: per step, the time the
  link is busy with that step's bytes at its data rate (``args``: bytes, link kind), so a link's
  events add up to its bytes over its capacity in the result;
- the call itself (``call``, on thread ``call``), from 0 to the emulated time, its fixed launch cost
  first.

Steps start when the previous step ends (the network model's step barrier). Times are in
microseconds, as the Chrome trace format counts them (``ph: "X"`` complete events with ``ts`` and
``dur``, ``ph: "M"`` metadata naming processes and threads). Open the file in https://ui.perfetto.dev
or ``chrome://tracing``.

>>> events = trace("allreduce", 1 << 20, "hgx-h20")["traceEvents"]
>>> sorted({e["ph"] for e in events}), events[-1]["name"]
(['M', 'X'], 'call')
"""

from __future__ import annotations

import json
import math

import numpy as np

from . import dtypes, registry, timing

#: Events a trace may hold before :func:`trace` refuses (a larger one will not open in a browser).
MAX_EVENTS = 2_000_000

DEVICES_PID, LINKS_PID, CALL_PID = 0, 1, 2


def trace(collective: str, nbytes: int, topology, algorithm: str = "auto", dtype="float32", op: str = "sum",
          root: int = 0, library: str | None = None, max_events: int = MAX_EVENTS, **params) -> dict:
    """The Chrome trace (a JSON-ready dict) of one emulated call; arguments as :func:`collectives.simulate`.

    ``otherData`` holds the call's figures (time, algorithm, parameters, protocol, routing). Raises
    ``ValueError`` when the trace would hold more than ``max_events`` events.
    """
    topo = timing._as_topology(topology)
    result = timing.simulate(collective, nbytes, topo, algorithm=algorithm, dtype=dtype, op=op, root=root,
                             library=library, **params)
    spec = registry.collective(collective)
    itemsize = dtypes.itemsize(dtype)
    choice = result.library_choice
    model = timing.library_model(choice.library, topo, None) if choice is not None else None
    pieces = (choice.pieces if choice is not None and choice.pieces else None) or [nbytes]
    out = _Events(topo, max_events)
    t = 0.0
    for piece in pieces:
        piece = int(piece) - int(piece) % itemsize
        count = spec.count_for_nbytes(piece, topo.num_devices, itemsize)
        schedule = registry.build_schedule(collective, result.algorithm, topo.num_devices, count, root,
                                           topology=topo, **result.params)
        t = _lay_out(out, schedule, spec, topo, model, result.protocol, itemsize, t)
    out.complete(CALL_PID, 0, "call", 0.0, t,
                 {"collective": collective, "algorithm": result.algorithm, "bytes": int(result.nbytes)})
    return {"traceEvents": out.metadata() + out.events, "displayTimeUnit": "ns",
            "otherData": {"collective": collective, "topology": topo.name, "time_us": result.time_s * 1e6,
                          "algorithm": result.algorithm, "params": result.params, "protocol": result.protocol,
                          "routing": result.routing, "nbytes": int(result.nbytes)}}


def write_trace(path, collective: str, nbytes: int, topology, **kwargs) -> dict:
    """:func:`trace` written to ``path`` as JSON (whole or not at all); returns the trace."""
    from topologies.io import write_text_atomic

    doc = trace(collective, nbytes, topology, **kwargs)
    write_text_atomic(path, json.dumps(doc, separators=(",", ":")) + "\n")
    return doc


def _lay_out(out, schedule, spec, topo, model, protocol, itemsize, t0) -> float:
    """Append the events of one schedule run from ``t0`` (seconds); returns its end."""
    timer = timing._timer(topo, model, protocol, not schedule.endpoints)
    node_of = timing._endpoint_nodes(topo, schedule)
    reduce_Bps = timing._reduce_rates(topo)
    if schedule.endpoints:
        reduce_Bps = np.concatenate([reduce_Bps, [topo.graph.nodes[n].get("reduce_bw_GBps", math.inf) * 1e9
                                                  for n in schedule.endpoints]])
    arrays = timer.solver.arrays
    capacity = timer.capacity_Bps
    t = t0 + timer.link.call_s
    out.complete(CALL_PID, 0, "launch", t0, timer.link.call_s, {})
    step = 0
    for phase, src, dst, nb, reduce, repeat in schedule.timing(itemsize):
        t_red = timing._reduce_time(dst, nb, reduce_Bps) if (reduce and spec.reduces) else 0.0
        t_net, detail = timer.time(node_of[src], node_of[dst], nb)
        t_step = max(t_net, t_red)
        per_link = None
        if detail is not None:
            routing_bytes = np.zeros(len(arrays.edge_kind))
            routing_bytes[detail.edge_ids] = detail.edge_bytes
            per_link = timing.expand_edge_bytes(routing_bytes, arrays)
        for k in range(repeat):
            name = f"{phase} step {step + k}"
            if detail is not None:
                for i in range(len(detail.nbytes)):
                    out.complete(DEVICES_PID, int(detail.src[i]), name, t, detail.data_s[i] + detail.lat_s[i],
                                 {"to": int(detail.dst[i]), "bytes": float(detail.nbytes[i])})
                for e in np.flatnonzero(per_link):
                    out.complete(LINKS_PID, int(e), name, t, per_link[e] / capacity[e],
                                 {"bytes": float(per_link[e]), "link": topo.graph.edges[topo.arrays.edges[e]]["link"]})
            if t_red > 0:
                out.complete(CALL_PID, 1, name + " reduce", t, t_red, {})
            t += t_step
        step += repeat
    return t


class _Events:
    """The event list and the names of the threads it used."""

    def __init__(self, topo, max_events):
        self.topo, self.max_events = topo, max_events
        self.events = []
        self.threads = {}

    def complete(self, pid, tid, name, start_s, dur_s, args):
        if len(self.events) >= self.max_events:
            raise ValueError(f"the trace would hold more than max_events={self.max_events} events; expected a "
                             "smaller system, fewer steps (a larger size runs the same steps), or a larger limit")
        self.threads[(pid, tid)] = None
        self.events.append({"ph": "X", "pid": pid, "tid": tid, "name": name, "ts": start_s * 1e6,
                            "dur": dur_s * 1e6, "args": args})

    def metadata(self):
        a = self.topo.arrays
        meta = [{"ph": "M", "pid": pid, "tid": 0, "name": "process_name", "args": {"name": label}}
                for pid, label in ((DEVICES_PID, "devices"), (LINKS_PID, "links"), (CALL_PID, "call"))]
        for pid, tid in sorted(self.threads):
            if pid == DEVICES_PID:
                label = f"device {tid}" if tid < self.topo.num_devices else str(a.nodes[tid])
            elif pid == LINKS_PID:
                u, v = a.edges[tid]
                label = f"{u} -> {v}"
            else:
                label = ("call", "reduce")[tid]
            meta.append({"ph": "M", "pid": pid, "tid": tid, "name": "thread_name", "args": {"name": label}})
        return meta
