"""``ccemu workload`` (a training or inference step of a model on a system) and ``ccemu replay``
(recorded communication of a real job, timed on any system).

``ccemu workload FILE --system SYSTEM [--nodes N]`` prints where one step's time goes (compute,
exposed communication per group kind and collective, pipeline bubble, optimizer), tokens/s, the
achieved MFU and the exposed communication by the kind of link that bounds it; ``-J FILE`` writes
the JSON, ``--plot FILE.png`` a stacked bar. ``ccemu workload FILE --compare hgx-h20,hgx-h800
--devices 64,256,1024`` runs the step on every system at every device count: one table, one
figure. FILE is a workload file (JSON or YAML) or a built-in workload (``llama3-70b``,
``deepseek-v3``, ``gpt3-175b``, ``tiny-dense``, ``tiny-moe``); ``--set tp=8 --set model.seq_len=8192``
changes it. ``--nccl-log FILE`` writes the step's communication (one layer of each kind, one
micro-batch) as an NCCL-INFO-style log, which ``ccemu replay`` reads.

``ccemu replay TRACE... --system SYSTEM [--nodes N]`` reads NCCL ``NCCL_DEBUG=INFO`` logs, PyTorch
profiler (Kineto) traces or Chakra execution traces in JSON (:mod:`workloads.trace`) and gives each
call its emulated time on the system, with the busiest rank's total.

Every output path is checked before any work and all are written together or not at all. A
progress bar goes to stderr when it is a terminal, or with ``--progress``.
"""

from __future__ import annotations

import io
import json

from .errors import MAX_DEVICES, UsageError, check_int, check_output_paths, write_all_atomic

PNG_DPI = 110


def register(subparsers):
    p = subparsers.add_parser("workload", help="a training or inference step of a model on a system: time, "
                                               "exposed communication, tokens/s",
                              description="Emulate one step of a workload (a model, its parallelism and placement) "
                                          "on a system, or compare systems and device counts.")
    p.add_argument("file", metavar="FILE", help="a workload file (JSON or YAML) or a built-in workload name")
    p.add_argument("--system", default=None, help="the system: a preset (hgx-h20, hgx-h800, atlas800t-a2, "
                                                  "cloudmatrix384, ...)")
    p.add_argument("--nodes", type=int, default=None, help="servers of the system (supernodes for cloudmatrix384)")
    p.add_argument("--devices", default=None, help="device count(s): with --system the first N devices of the "
                                                   "fewest servers that hold them; with --compare a list, e.g. "
                                                   "64,256,1024")
    p.add_argument("--compare", default=None, metavar="SYSTEMS",
                   help="comma-separated systems to compare, e.g. hgx-h20,hgx-h800,atlas800t-a2,cloudmatrix384")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="change the workload: tp=8, pp=16, ep=64, zero=3, micro_batches=32, model.seq_len=8192, "
                        "compute.mfu=0.35, mode=decode, routing.skew=1.0, overlap.dp=false, "
                        "placement.order=tp,cp,ep,dp,pp (repeatable)")
    p.add_argument("--library", default=None, help="the collective library whose picks run (nccl, rccl, hccl, "
                                                   "ideal; default: the system vendor's)")
    p.add_argument("-J", "--json", default=None, metavar="FILE", help="also write the result as JSON to FILE")
    p.add_argument("--plot", default=None, metavar="FILE.png", help="also draw the stacked-bar figure to FILE.png")
    p.add_argument("--nccl-log", default=None, metavar="FILE",
                   help="also write the step's communication (one layer of each kind, one micro-batch) as an "
                        "NCCL-INFO-style log")
    p.add_argument("--phases", action="store_true", help="also print every timed collective phase")
    p.add_argument("--markdown", action="store_true", help="print markdown tables")
    p.add_argument("--progress", action="store_true", help="progress bar on stderr even when it is not a terminal")
    p.set_defaults(func=workload_handler)

    r = subparsers.add_parser("replay", help="recorded communication (NCCL INFO log, PyTorch profiler trace, "
                                             "Chakra trace) timed on a system",
                              description="Read a job's recorded collectives and give each its emulated time on "
                                          "a system.")
    r.add_argument("traces", nargs="+", metavar="TRACE", help="trace files (one per rank, or one log of all ranks)")
    r.add_argument("--system", required=True, help="the system: a preset")
    r.add_argument("--nodes", type=int, default=None, help="servers of the system")
    r.add_argument("--format", default=None, choices=("nccl", "kineto", "chakra"),
                   help="the trace format (default: found from the first file)")
    r.add_argument("--groups", default=None, metavar="FILE",
                   help="Chakra: a JSON object mapping each pg_name to its global ranks")
    r.add_argument("--world-size", type=int, default=None, help="Chakra: ranks of the job (groups without an entry "
                                                                "in --groups span them all)")
    r.add_argument("--library", default=None, help="the collective library whose picks run")
    r.add_argument("--fast", action="store_true", help="groups of the same shape share one time (exact where the "
                                                       "fabric does not hash flows, ECMP)")
    r.add_argument("--calls", type=int, default=20, help="calls listed one by one (default 20; 0: none)")
    r.add_argument("-J", "--json", default=None, metavar="FILE", help="also write every call as JSON to FILE")
    r.add_argument("--markdown", action="store_true", help="print markdown tables")
    r.add_argument("--progress", action="store_true", help="progress bar on stderr even when it is not a terminal")
    r.set_defaults(func=replay_handler)


# -- arguments -----------------------------------------------------------------------------------------

def _counts(text, flag) -> list[int]:
    items = [t.strip() for t in str(text).split(",")]
    if not items or any(not t.isdigit() or not 1 <= int(t) <= MAX_DEVICES for t in items):
        raise UsageError(f"{flag} {text!r}: expected comma-separated whole numbers from 1 to {MAX_DEVICES}")
    out = [int(t) for t in items]
    if len(set(out)) != len(out):
        raise UsageError(f"{flag} {text!r}: a count is repeated")
    return sorted(out)


def overrides(items) -> dict:
    """``--set KEY=VALUE`` items as a mapping with typed values (numbers, true/false, lists)."""
    from workloads.workload import _scalar

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key or not value:
            raise UsageError(f"--set {item!r}: expected KEY=VALUE, e.g. tp=8 or model.seq_len=8192")
        if key.endswith("order"):
            out[key] = [v.strip() for v in value.strip("[]").split(",")]
        else:
            out[key] = _scalar(value, 0, "--set")
    return out


def _workload(args):
    from workloads import load_workload

    w = load_workload(args.file)
    if args.set:
        w = w.with_overrides(overrides(args.set))
    return w


def _check_plot(path):
    if path is not None and not path.lower().endswith(".png"):
        raise UsageError(f"--plot {path!r}: expected a .png file name")


def _progress(args, total):
    from collectives.study import Progress
    return Progress(total, enabled=True if args.progress else None)


# -- handlers -----------------------------------------------------------------------------------------

def workload_handler(args) -> int:
    from workloads import step

    _check_plot(args.plot)
    check_output_paths(("-J", args.json), ("--plot", args.plot), ("--nccl-log", args.nccl_log))
    if (args.system is None) == (args.compare is None):
        raise UsageError("give --system SYSTEM (one step) or --compare SYSTEMS --devices N,M,... (a comparison)")
    w = _workload(args)
    if args.compare is not None:
        if args.nodes is not None:
            raise UsageError("--nodes applies to --system; with --compare give --devices")
        if args.devices is None:
            raise UsageError("--compare needs --devices, e.g. --devices 64,256,1024")
        if args.nccl_log:
            raise UsageError("--nccl-log applies to --system (one step)")
        systems = [s.strip() for s in args.compare.split(",") if s.strip()]
        if not systems:
            raise UsageError(f"--compare {args.compare!r}: expected comma-separated systems")
        devices = _counts(args.devices, "--devices")
        from topologies.presets import load_topology
        for s in systems:
            load_topology(s)         # an unknown system fails before any work
        comp = step.compare(w, systems, devices, library=args.library,
                            progress_enabled=True if args.progress else None)
        _write(args, comp.table(args.markdown), comp.as_dict(),
               (lambda: _plots().plot_compare(comp)) if args.plot else None, None)
        return 0
    if args.nodes is not None:
        check_int("--nodes", args.nodes, 1, MAX_DEVICES, "servers")
    devices = None
    if args.devices is not None:
        d = _counts(args.devices, "--devices")
        if len(d) != 1:
            raise UsageError("--devices with --system takes one count (use --compare for several)")
        devices = d[0]
        if args.nodes is not None:
            raise UsageError("give --nodes or --devices with --system, not both")
    topo = step.system_topology(args.system, devices=devices, nodes=args.nodes)
    w.resolved(topo.num_devices)     # the layout fits before any timing
    bar = _progress(args, step.count_phases(w.resolved(topo.num_devices)))
    res = step.simulate_step(w, topo, library=args.library, progress=bar)
    while bar.done < bar.total:     # runs the estimate counted but the step did not need
        bar.step("done")
    text = res.table(args.markdown)
    if args.phases:
        from collectives.study import format_table
        rows = [[p.op.group, p.op.kind.split()[1], p.op.where, p.op.phase,
                 "-" if p.op.stage is None else str(p.op.stage),
                 str(p.op.total_bytes()), str(p.calls), p.algorithm, f"{p.time_s * 1e6:.2f}", f"{p.alone_s * 1e6:.2f}",
                 f"{p.time_s / p.alone_s:.3f}" if p.alone_s > 0 else "n/a", str(p.link_kind)] for p in res.phases]
        text += "\n\n" + format_table(["group", "collective", "where", "phase", "stage", "bytes/group", "groups",
                                       "algorithm", "together us", "alone us", "slowdown", "busiest link"], rows,
                                      ["every timed phase: all its groups at once (together) and the slowest group "
                                       "alone on its sub-system"], args.markdown)
    log = None
    if args.nccl_log:
        from workloads.trace import workload_calls, write_nccl_log
        log = write_nccl_log(workload_calls(w, topo))
    _write(args, text, res.as_dict(), (lambda: _plots().plot_step(res)) if args.plot else None, log)
    return 0


def replay_handler(args) -> int:
    from topologies.presets import load_topology
    from workloads import trace

    check_output_paths(("-J", args.json))
    check_int("--calls", args.calls, 0, 1_000_000, "calls listed")
    if args.nodes is not None:
        check_int("--nodes", args.nodes, 1, MAX_DEVICES, "servers")
    groups = None
    if args.groups:
        try:
            with open(args.groups, encoding="utf-8") as fh:
                groups = json.load(fh)
        except OSError as exc:
            raise UsageError(f"--groups {args.groups}: cannot be read ({exc.strerror})") from None
        except json.JSONDecodeError as exc:
            raise UsageError(f"--groups {args.groups}: not valid JSON ({exc})") from None
        if not isinstance(groups, dict):
            raise UsageError(f"--groups {args.groups}: expected a JSON object mapping pg_name to a list of ranks")
    if args.world_size is not None:
        check_int("--world-size", args.world_size, 1, MAX_DEVICES, "ranks")
    t = trace.load_trace(args.traces, args.format, groups=groups, world_size=args.world_size)
    topo = load_topology(args.system, nodes=args.nodes)
    r = trace.replay(t, topo, library=args.library, share_equivalent=args.fast,
                     progress=_progress(args, len(t.calls)))
    _write(args, r.table(args.markdown, calls=args.calls), r.as_dict(), None, None)
    return 0


def _plots():
    from workloads import plot
    return plot


def _write(args, table, doc, make_figure, log):
    outputs = []
    if args.json:
        outputs.append((args.json, json.dumps(_clean(doc), indent=1, default=_jsonable) + "\n"))
    if make_figure:
        png = io.BytesIO()
        make_figure().savefig(png, format="png", dpi=PNG_DPI)
        outputs.append((args.plot, png.getvalue()))
    if log is not None:
        outputs.append((args.nccl_log, log))
    write_all_atomic(outputs)
    print(table)


def _clean(v):
    """NaN and infinities are not JSON: null."""
    import math
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    return v


def _jsonable(v):
    import math

    import numpy as np
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating,)):
        f = float(v)
        return f if math.isfinite(f) else None
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, tuple):
        return list(v)
    return str(v)
