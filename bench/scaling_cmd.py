"""``ccemu scaling`` (the scaling-loss study) and ``ccemu compare`` (the seed systems side by side).

``ccemu scaling allreduce --topology atlas800t-a2,hgx-h20 --devices 2,4,8`` prints one row per
system, device count and size: time, algbw, busbw, peak, bus efficiency, busbw ratio and scaling
loss against the smallest device count, and the algorithm used; ``-J FILE`` writes the rows as JSON
and ``--plot FILE.png`` draws busbw against size and bus efficiency against device count. Sizes are
nccl-tests' total size S, as in ``ccemu bench``; ``--per-device`` takes them per device (see
:mod:`collectives.study` for the convention). Both commands are thin faces of
:mod:`collectives.study`.

``ccemu compare`` runs allreduce, allgather and alltoall on hgx-h20, hgx-h800, dgx-h100, mi308x-8,
atlas800t-a2 and cloudmatrix384 (``--nodes 1,4`` adds the multi-node forms) over 1M..1G, nccl-tests
sizes, and prints one table (``--markdown`` for a markdown one) and draws one figure.

Every output path is checked before the sweep starts; after it, the figure is drawn and every output
rendered before any is written, and all are written through temporary files renamed together, so a
failed run leaves none (not the JSON without the figure). A progress bar goes to stderr when it is a
terminal, or with ``--progress``.
"""

from __future__ import annotations

import io
import json
import math

from collectives import registry
from collectives import study as scaling
from collectives.study import parse_size

from .errors import (MAX_DEVICES, MAX_ITERS, MAX_LIST, MAX_SEED, MAX_SIZES, UsageError, check_int,
                     check_output_paths, write_all_atomic)
from .nccl_tests import sizes_from

# As bench.plots.save renders a figure.
PNG_DPI = 110


def register(subparsers):
    p = subparsers.add_parser("scaling", help="scaling-loss study: busbw and bus efficiency as devices are added",
                              description="Emulate a collective on one or more systems over device counts and "
                                          "message sizes; report scaling loss against the smallest device count.")
    names = registry.list_collectives()
    p.add_argument("collective", choices=names, metavar="COLLECTIVE", help="one of " + ", ".join(names))
    p.add_argument("--topology", default="atlas800t-a2",
                   help="comma-separated presets or topology files (default atlas800t-a2)")
    p.add_argument("--devices", default=None, help="device counts, e.g. 2,4,8: the first k devices of each system")
    p.add_argument("--nodes", default=None, help="server counts of multi-node presets, e.g. 1,2,4,8,48")
    p.add_argument("--nic", default=None, metavar="KIND:GBPS[:PER_DEVICE]",
                   help="NICs of the multi-node forms instead of each vendor's: ib, roce, tcpx or efa, e.g. roce:200, "
                        "tcpx:200:0.5, efa:100:4")
    _common(p, minbytes="1K", maxbytes="1G")
    p.set_defaults(func=scaling_handler)

    c = subparsers.add_parser("compare", help="the seed systems side by side: allreduce, allgather, alltoall",
                              description="Emulate collectives on several systems over a size sweep; one table, "
                                          "one figure.")
    c.add_argument("--systems", default=",".join(scaling.SEED_SYSTEMS),
                   help="comma-separated presets or topology files (default: " + ",".join(scaling.SEED_SYSTEMS) + ")")
    c.add_argument("--collectives", default=",".join(scaling.SEED_COLLECTIVES),
                   help="comma-separated collectives (default " + ",".join(scaling.SEED_COLLECTIVES) + ")")
    c.add_argument("--nodes", default=None, help="server counts, e.g. 1,4 for the one-server and 4-server forms")
    c.add_argument("--nic", default=None, metavar="KIND:GBPS[:PER_DEVICE]",
                   help="NICs of the multi-node forms instead of each vendor's: ib, roce, tcpx or efa, e.g. roce:200, "
                        "tcpx:200:0.5, efa:100:4")
    c.add_argument("--max-devices", type=int, default=scaling.MAX_DEVICES,
                   help=f"leave out system forms with more devices (default {scaling.MAX_DEVICES}; 0: no limit)")
    _common(c, minbytes="1M", maxbytes="1G")
    c.set_defaults(func=compare_handler)


def _common(p, minbytes, maxbytes):
    p.add_argument("-b", "--minbytes", default=minbytes, help=f"smallest size (default {minbytes})")
    p.add_argument("-e", "--maxbytes", default=maxbytes, help=f"largest size (default {maxbytes})")
    p.add_argument("-f", "--stepfactor", type=float, default=4.0, help="multiplicative size factor (default 4)")
    p.add_argument("--sizes", default=None, help="explicit comma-separated sizes, e.g. 1M,64M,1G (overrides -b/-e/-f)")
    p.add_argument("--per-device", action="store_true",
                   help="sizes are per-device messages (nbytes = P x size for allgather, reduce_scatter, alltoall); "
                        "default: nccl-tests' total size S, as ccemu bench")
    p.add_argument("--algo", default="auto", help="algorithm name, auto (default: the library's choice) or best")
    p.add_argument("--model", default=None,
                   help="network-model overrides as JSON, e.g. '{\"nvlink\": {\"efficiency\": 0.75}}'")
    p.add_argument("-J", "--json", default=None, metavar="FILE", help="also write the rows as JSON to FILE")
    p.add_argument("--plot", default=None, metavar="FILE.png", help="also draw the figure to FILE.png")
    p.add_argument("--markdown", action="store_true", help="print a markdown table")
    p.add_argument("--progress", action="store_true", help="progress bar on stderr even when it is not a terminal")
    p.add_argument("--jitter", default=None, metavar="PROFILE",
                   help="instability profile (stable, noisy, lossy): each point is the median of --iters seeded calls")
    p.add_argument("--seed", type=int, default=0, help="seed of the instability profile (default 0)")
    p.add_argument("--iters", type=int, default=20, help="seeded calls per point with --jitter (default 20)")


# -- argument parsing ----------------------------------------------------------------------------------

def size_list(args) -> list[int]:
    """Sizes from ``--sizes`` or from ``-b``/``-e``/``-f``, stepped as ``ccemu bench`` steps them."""
    if args.sizes:
        items = _split(args.sizes, "--sizes", MAX_SIZES)
        sizes = [parse_size(s) for s in items]
    else:
        sizes = sizes_from(args)
    bad = [s for s in sizes if s < 4 or s % 4]
    if bad:
        raise UsageError(f"size {bad[0]} is not a whole number of float32 elements (4 bytes each)")
    return sorted(set(sizes))


def count_list(text, flag, most=MAX_DEVICES) -> list[int] | None:
    """Whole numbers from 1 to ``most`` (default: the most devices a system may have)."""
    if text is None:
        return None
    out = []
    for item in _split(text, flag):
        if not item.isdigit() or not 1 <= int(item) <= most:
            raise UsageError(f"{flag} {text!r}: {item!r} is not a whole number from 1 to {most}")
        out.append(int(item))
    return out


def _split(text, flag, most=MAX_LIST) -> list[str]:
    items = [t.strip() for t in str(text).split(",")]
    if not items or any(not t for t in items):
        raise UsageError(f"{flag} {text!r}: expected a comma-separated list without empty items")
    if len(items) > most:
        raise UsageError(f"{flag}: {len(items)} items; expected at most {most}")
    return items


def model_arg(text):
    """The ``--model`` JSON overrides, checked (shared by the scaling and regress commands)."""
    if text is None:
        return None
    try:
        model = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"--model is not valid JSON: {exc}") from None
    if not isinstance(model, dict):
        raise UsageError("--model must be a JSON object, e.g. '{\"nvlink\": {\"efficiency\": 0.75}}'")
    from topologies.model import resolve
    resolve(None, model)  # checks names and values before any work
    return model


def _check_args(args):
    """Before any work: the output paths, and the numeric arguments whether or not --jitter is given."""
    if args.plot is not None and not args.plot.lower().endswith(".png"):
        raise UsageError(f"--plot {args.plot!r}: expected a .png file name")
    check_output_paths(("-J", args.json), ("--plot", args.plot))
    check_int("--seed", args.seed, 0, MAX_SEED, "seed of the instability profile")
    check_int("--iters", args.iters, 1, MAX_ITERS, "seeded calls per point")


# -- handlers -------------------------------------------------------------------------------------------

def scaling_handler(args) -> int:
    _check_args(args)
    devices = count_list(args.devices, "--devices")
    nodes = count_list(args.nodes, "--nodes")
    if devices and nodes and len(nodes) > 1:
        raise UsageError("give --devices (first k devices of a system) or several --nodes (servers), not both")
    specs = _split(args.topology, "--topology")
    sizes = size_list(args)
    total = 0
    systems = []
    for spec in specs:
        vs = scaling.variants(spec, devices, nodes, nic=args.nic)
        systems.extend(vs)
        total += len(vs) * len(sizes)
    progress = scaling.Progress(total, enabled=True if args.progress else None)
    study = scaling.sweep(args.collective, systems, sizes, algorithm=args.algo,
                          per_device=args.per_device, model=model_arg(args.model), progress=progress,
                          **_jitter(args))
    _write_outputs(args, study.table(args.markdown), study.as_dict(),
                   (lambda: _plots().plot_scaling(study)) if args.plot else None)
    return 0


def compare_handler(args) -> int:
    _check_args(args)
    if args.jitter is not None:  # collectives.study.compare has no instability: it would be ignored
        raise UsageError(f"--jitter {args.jitter}: ccemu compare runs without instability; "
                         "expected no --jitter (ccemu scaling takes it)")
    systems = _split(args.systems, "--systems")
    collectives = _split(args.collectives, "--collectives")
    check_int("--max-devices", args.max_devices, 0, MAX_DEVICES, "0: no limit")
    comp = scaling.compare(systems, collectives, size_list(args), nodes=count_list(args.nodes, "--nodes"),
                           algorithm=args.algo, per_device=args.per_device,
                           max_devices=args.max_devices or None, model=model_arg(args.model),
                           progress_enabled=True if args.progress else None, nic=args.nic)
    _write_outputs(args, comp.table(args.markdown), comp.as_dict(),
                   (lambda: _plots().plot_compare(comp.studies)) if args.plot else None)
    return 0


def _jitter(args) -> dict:
    if args.jitter is None:
        return {}
    from topologies.instability import profile
    profile(args.jitter)
    return {"jitter": args.jitter, "seed": args.seed, "iters": args.iters}


def _plots():
    from . import plots
    return plots


def _write_outputs(args, table, doc, make_figure):
    """Render every output (the JSON text, the figure's PNG bytes) before writing any, then write them
    all or none (:func:`~bench.errors.write_all_atomic`): a failure leaves no JSON without its figure."""
    outputs = []
    if args.json:
        outputs.append((args.json, json.dumps(doc, indent=1) + "\n"))
    if make_figure:
        png = io.BytesIO()
        make_figure().savefig(png, format="png", dpi=PNG_DPI)
        outputs.append((args.plot, png.getvalue()))
    write_all_atomic(outputs)
    print(table)
