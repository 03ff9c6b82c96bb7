"""``ccemu tune SYSTEM COLLECTIVE``: what a collective library's own tuner picks, size by size.

For every size of the sweep (``-b`` / ``-e`` / ``-f``, nccl-tests' sizes), the library model of
:mod:`collectives.libraries` (``--library``, default the system vendor's: nccl, rccl or hccl) prints
its cost table as ``NCCL_DEBUG_SUBSYS=TUNING`` does (every algorithm x protocol with its predicted
time, or why it is not eligible), its pick (algorithm, protocol, channels), and then the emulated time
of the pick: :func:`collectives.simulate` of the ccemu schedule that stands for it (HCCL's CCL-buffer
pieces are simulated one by one and added). ``--env KEY=VALUE`` passes overrides such as
``NCCL_ALGO=ring`` or ``HCCL_ALGO=level0:NA;level1:NHR``; ``-J FILE`` also writes every table as JSON.
Bad names, versions or overrides raise ``ValueError`` (one line, exit status 2).
"""

from __future__ import annotations

import json
from . import add_routing_argument

DEFAULT_MIN, DEFAULT_MAX, DEFAULT_FACTOR = "1K", "1G", 4.0


def register(subparsers):
    from collectives import registry
    from collectives.libraries import LIBRARIES

    p = subparsers.add_parser("tune", help="a library's own tuner choice per size, and its emulated time",
                              description="Print a collective library's cost table and pick per size "
                                          "(as NCCL_DEBUG_SUBSYS=TUNING), then the emulated time of the pick.")
    p.add_argument("system", metavar="SYSTEM", help="preset name or topology file")
    p.add_argument("collective", metavar="COLLECTIVE", help="one of " + ", ".join(registry.list_collectives()))
    p.add_argument("-b", "--minbytes", default=DEFAULT_MIN, help=f"smallest size (default {DEFAULT_MIN})")
    p.add_argument("-e", "--maxbytes", default=DEFAULT_MAX, help=f"largest size (default {DEFAULT_MAX})")
    p.add_argument("-f", "--stepfactor", type=float, default=DEFAULT_FACTOR,
                   help=f"multiplicative size factor (default {DEFAULT_FACTOR:g})")
    p.add_argument("--library", default=None,
                   help=f"one of {', '.join(LIBRARIES)} (default: the system vendor's library)")
    p.add_argument("--version", dest="lib_version", default=None,
                   help="library version (default the newest documented)")
    p.add_argument("--nodes", type=int, default=None, help="servers for a preset (default 1)")
    p.add_argument("--nic", default=None, metavar="KIND:GBPS[:PER_DEVICE]",
                   help="NICs of a multi-node preset instead of the vendor's: ib, roce, tcpx or efa, e.g. roce:200, "
                        "tcpx:200:0.5, efa:100:4")
    add_routing_argument(p)
    p.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                   help="library override, e.g. NCCL_ALGO=ring, NCCL_PROTO=^LL128, HCCL_BUFFSIZE=100 (repeatable)")
    p.add_argument("-J", "--json", default=None, metavar="FILE", help="also write the tables and picks as JSON")
    p.set_defaults(func=main)


def parse_env(items) -> dict:
    """``["KEY=VALUE", ...]`` as a dict (``ValueError`` for an item without ``=`` or a key given twice)."""
    env = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"--env {item!r}: expected KEY=VALUE, e.g. NCCL_ALGO=ring")
        if key in env:
            raise ValueError(f"--env {key} given twice")
        env[key] = value
    return env


def main(args) -> int:
    from collectives import registry, simulate
    from collectives.libraries import library, native_library
    from collectives.study import parse_size, size_sweep
    from topologies import load_topology

    registry.collective(args.collective)
    if args.nodes is not None and args.nodes < 1:
        raise ValueError(f"--nodes {args.nodes}: expected an integer >= 1")
    sizes = size_sweep(parse_size(args.minbytes), parse_size(args.maxbytes), factor=args.stepfactor,
                       names=(f"-b {args.minbytes}", f"-e {args.maxbytes}", f"-f {args.stepfactor:g}", "-i"))
    env = parse_env(args.env)
    topo = load_topology(args.system, nodes=args.nodes, nic=args.nic, routing=args.routing)
    lib = library(args.library or native_library(topo))
    # Validate version and env once, before any output.
    first = lib.choose(args.collective, sizes[0], topo, version=args.lib_version, env=env)
    version = first.version
    from collectives.libraries import system
    si = system(topo)
    print(f"# ccemu tune: {lib.name} {version} on {topo.name} (device {si.model}; {si.P} ranks, {si.nodes} "
          f"server{'s' if si.nodes > 1 else ''} of {si.ppn}), {args.collective}")
    print(f"# env: {', '.join(f'{k}={v}' for k, v in env.items()) or 'none'}")
    results = []
    cache: dict = {}

    def emulate(choice, n):
        key = (choice.ccemu_algorithm, tuple(sorted(choice.ccemu_params.items())), choice.ccemu_protocol, n)
        if key not in cache:
            r = simulate(args.collective, n, topo, algorithm=choice.ccemu_algorithm, protocol=choice.ccemu_protocol,
                         **choice.ccemu_params)
            cache[key] = r
        return cache[key]

    for n in sizes:
        c = first if n == sizes[0] else lib.choose(args.collective, n, topo, version=args.lib_version, env=env)
        runs = c.pieces or [n]
        sims = [emulate(c, piece) for piece in runs]
        emulated_us = sum(r.time_s for r in sims) * 1e6
        print(f"#\n# size {n} B")
        if c.candidates:
            print(f"#   {'algorithm':<14s} {'protocol':<8s} {'channels':>8s} {'predicted_us':>13s}  note")
            for cand in c.candidates:
                pred = "-" if cand.predicted_us is None else f"{cand.predicted_us:.2f}"
                ch = "-" if cand.channels is None else str(cand.channels)
                print(f"#   {cand.algorithm:<14s} {cand.protocol:<8s} {ch:>8s} {pred:>13s}  {cand.reason}")
        pred = "none (no model of its own)" if c.predicted_us is None else f"{c.predicted_us:.2f} us"
        extra = ""
        if c.levels:
            extra += "; " + ", ".join(f"{k} {v}" for k, v in c.levels.items())
        if c.executor:
            extra += f"; executor {c.executor}"
        chan = "" if c.channels is None else f", channels {c.channels}"
        print(f"#   pick: {c.algorithm}/{c.protocol}{chan}{extra}: predicted {pred}")
        for note in c.notes:
            print(f"#     {note}")
        ran = sims[0]
        params = ", ".join(f"{k}={v}" for k, v in ran.params.items())
        pieces = f" ({len(runs)} runs)" if len(runs) > 1 else ""
        print(f"#   ccemu: {ran.algorithm}({params}) {ran.protocol}{pieces}: emulated {emulated_us:.2f} us"
              f"  [{c.ccemu_note}]")
        results.append({"size": n, "choice": c.as_dict(), "emulated_us": emulated_us,
                        "ccemu_ran": {"algorithm": ran.algorithm, "params": ran.params, "protocol": ran.protocol,
                                      "selection": ran.selection}})
    if args.json:
        from .errors import write_atomic
        doc = {"system": topo.name, "device_model": si.model, "ranks": si.P, "servers": si.nodes,
               "library": lib.name, "version": version, "collective": args.collective, "env": env,
               "results": results}
        write_atomic(args.json, json.dumps(doc, indent=2, default=str) + "\n")
    return 0
