"""``ccemu regress run`` and ``ccemu regress compare``: the performance regression suite (:mod:`bench.regress`).

``ccemu regress run --cases bench/cases/default.json -o results.json`` runs the declared cases
(emulated metrics) and measures this host (host metrics; ``--emulated-only`` skips them).
``ccemu regress compare BASE NEW`` prints what changed and exits 1 when an emulated metric drifted
beyond ``--rtol`` or a host ratio regressed beyond the noise threshold; 0 otherwise; 2 on bad input.

Regenerate the committed baseline on purpose (after a deliberate model or algorithm change)::

    ccemu regress run --cases bench/cases/default.json --emulated-only -o bench/baselines/default.json
"""

from __future__ import annotations

import json

from . import regress
from .errors import check_float, check_int, check_output_paths, write_atomic
from .scaling_cmd import model_arg


def register(subparsers):
    p = subparsers.add_parser("regress", help="performance regression suite: run declared cases, compare results",
                              description="Run declared cases and record emulated and host metrics, or compare two "
                                          "results files.")
    sub = p.add_subparsers(dest="regress_command", metavar="ACTION", parser_class=type(p))
    sub.required = True
    r = sub.add_parser("run", help="run the cases of a case file and record their metrics")
    r.add_argument("--cases", required=True, metavar="FILE", help="case file (JSON; YAML with PyYAML installed)")
    r.add_argument("-o", "--output", default=None, metavar="FILE", help="write the results (JSON) to FILE")
    r.add_argument("--emulated-only", action="store_true", help="skip the host metrics (deterministic results)")
    r.add_argument("--model", default=None,
                   help="network-model overrides for every case, as JSON, e.g. '{\"nvlink\": {\"efficiency\": 0.779}}'")
    r.add_argument("--host-mib", type=float, default=None,
                   help="reduce-into array size in MiB (default: the case file's, else "
                        f"{regress.HOST_DEFAULTS['reduce_mib']})")
    r.add_argument("--repeat", type=int, default=None,
                   help=f"host repetitions (default: the case file's, else {regress.HOST_DEFAULTS['repeat']})")
    r.add_argument("--progress", action="store_true", help="progress bar on stderr even when it is not a terminal")
    r.set_defaults(func=run_handler)
    c = sub.add_parser("compare", help="compare two results files; exit 1 on a regression")
    c.add_argument("base", metavar="BASE", help="results file of the reference run")
    c.add_argument("new", metavar="NEW", help="results file of the run to check")
    c.add_argument("--rtol", type=float, default=regress.DEFAULT_RTOL,
                   help=f"relative tolerance of emulated metrics (default {regress.DEFAULT_RTOL:g})")
    c.add_argument("--emulated-only", action="store_true", help="compare the emulated metrics only")
    c.set_defaults(func=compare_handler)


def run_handler(args) -> int:
    from collectives.study import Progress

    check_output_paths(("-o", args.output))
    if args.host_mib is not None:
        most = regress.max_host_mib()
        check_float("--host-mib", args.host_mib, 0, most, "MiB; at most a sixteenth of this machine's memory",
                    open_low=True)
    if args.repeat is not None:
        check_int("--repeat", args.repeat, 3, regress.MAX_HOST_REPEAT, "host repetitions")
    doc = regress.read_case_file(args.cases)
    cases = regress.expand_cases(doc, where=f"case file {args.cases!r}")
    model = model_arg(args.model)
    host_cfg = None if args.emulated_only else regress.host_config(doc, reduce_mib=args.host_mib, repeat=args.repeat)
    progress = Progress(len(cases), enabled=True if args.progress else None)
    results = regress.run(cases, host_cfg, model=model, cases_file=args.cases, progress=progress)
    if args.output:
        write_atomic(args.output, json.dumps(results, indent=1) + "\n")
    print(summary(results))
    return 0


def summary(results: dict) -> str:
    """A few lines on a results document: case counts and the host figures."""
    em = results["emulated"]
    unavailable = sum(1 for r in em.values() if "unavailable" in r)
    lines = [f"{len(em)} emulated cases, {len(em) - unavailable} ran, {unavailable} unavailable on their topology"]
    h = results.get("host")
    if h:
        cfg = h["config"]
        lines.append(f"host: reduce-into {h['reduce_into_GBps']['median']:.1f} GB/s beside np.add "
                     f"{h['np_add_GBps']['median']:.1f} GB/s on {cfg['reduce_mib']:g} MiB float32: ratio "
                     f"{h['reduce_into_ratio']['median']:.3f} (spread {h['reduce_into_ratio']['spread']:.1%})")
        lines.append(f"host: local {cfg['allreduce_algorithm']} allreduce P={cfg['allreduce_devices']} x "
                     f"{cfg['allreduce_kib']:g} KiB {h['allreduce_wall_s']['median'] * 1e3:.2f} ms beside "
                     f"np.add.reduce {h['allreduce_np_ref_s']['median'] * 1e3:.3f} ms: ratio "
                     f"{h['allreduce_ratio']['median']:.3f} (spread {h['allreduce_ratio']['spread']:.1%})")
    return "\n".join(lines)


def compare_handler(args) -> int:
    check_float("--rtol", args.rtol, 0, 1, "relative tolerance")
    base = regress.load_results(args.base)
    new = regress.load_results(args.new)
    report = regress.compare(base, new, rtol=args.rtol, emulated_only=args.emulated_only)
    print(report.text())
    return 0 if report.ok else 1
