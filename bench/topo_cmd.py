"""``ccemu topo``: list the presets, show one topology (preset or file) in a readable summary.

``ccemu topo list`` prints one row per preset: name, devices, link kinds, per-device peak (GB/s, one
direction) and a description. ``ccemu topo show NAME [--nodes N] [--nic KIND:GBPS] [-o KEY=VALUE ...]``
prints the devices, switches, NICs and CPUs, the links per kind with their per-direction bandwidth
and latency, the per-device peak and scale-out bandwidth, the NIC of a preset, whether a switch
reduces in the network, and the sources the numbers come from. Bad names or options raise
``ValueError`` (one line, exit status 2).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from . import add_routing_argument


def register(subparsers):
    p = subparsers.add_parser("topo", help="list the preset topologies or show one",
                              description="List the preset systems, or summarise one preset or topology file.")
    sub = p.add_subparsers(dest="topo_command", metavar="ACTION", parser_class=type(p))
    sub.required = True
    pl = sub.add_parser("list", help="one line per preset: devices, link kinds, peak, description")
    pl.set_defaults(func=list_handler)
    ps = sub.add_parser("show", help="summary of one preset or topology file (.json, .graphml, NCCL .xml)")
    ps.add_argument("topology", help="preset name (see 'ccemu topo list') or topology file")
    ps.add_argument("--nodes", type=int, default=None, help="servers of a preset or an NCCL topology XML file "
                                                            "(default 1)")
    ps.add_argument("--gpu", default=None, metavar="MODEL",
                    help="GPU model completing the GPUs of an NCCL topology hint file (dgx-a100, h100, mi300x, ...)")
    ps.add_argument("--nic", default=None, metavar="KIND:GBPS[:PER_DEVICE]",
                    help="NICs of a multi-node preset instead of the vendor's: ib, roce, tcpx or efa, e.g. roce:200, "
                         "tcpx:200:0.5 (one NIC per 2 devices), efa:100:4")
    add_routing_argument(ps)
    ps.add_argument("-o", "--option", action="append", default=[], metavar="KEY=VALUE",
                    help="preset option, e.g. -o devices=die or -o fabric=fat-tree (repeatable)")
    ps.set_defaults(func=show_handler)


# -- list ----------------------------------------------------------------------------------------------

def list_handler(args) -> int:
    from topologies.presets import preset, preset_info, presets

    rows = []
    for name in presets():
        topo = preset(name)
        rows.append([name, str(topo.num_devices), ",".join(topo.link_kinds), f"{topo.peak_bw_GBps():.1f}",
                     preset_info(name).description])
    print(_table(["name", "devices", "link kinds", "peak GB/s", "description"], rows))
    return 0


# -- show ----------------------------------------------------------------------------------------------

def show_handler(args) -> int:
    import warnings

    from topologies.nccl_xml import TopologyNote
    from topologies.presets import REGISTRY, load_topology, preset

    options = dict(_parse_option(o) for o in args.option)
    if options:
        if args.topology not in REGISTRY:
            raise ValueError(f"-o options apply to presets only; {args.topology!r} is not a preset")
        if args.nodes is not None:
            options["nodes"] = args.nodes
        if args.nic is not None:
            options["nic"] = args.nic
        if args.gpu is not None:
            raise ValueError(f"--gpu applies to NCCL topology XML files; {args.topology!r} is a preset")
        topo = preset(args.topology, **options)
    else:
        with warnings.catch_warnings():      # the summary lists the import's notes itself
            warnings.simplefilter("ignore", TopologyNote)
            topo = load_topology(args.topology, nodes=args.nodes, gpu=args.gpu, nic=args.nic, routing=args.routing)
    print(summary(topo))
    return 0


def summary(topo) -> str:
    """A readable multi-line summary of ``topo`` (what ``ccemu topo show`` prints)."""
    from topologies.peak import scaleout_bw_GBps

    g = topo.graph
    kinds = Counter(d["kind"] for _, d in g.nodes(data=True))
    meta = g.graph
    lines = [f"{topo.name}"]
    if meta.get("description"):
        lines.append(f"  {meta['description']}")
    mem = sorted({d.get("mem_bw_GBps") for n, d in g.nodes(data=True) if d["kind"] == "device"} - {None})
    mem_text = f"  (memory {'/'.join(f'{m:g}' for m in mem)} GB/s)" if mem else ""
    forward = sum(1 for n in topo.devices if g.nodes[n].get("forward"))
    fwd_text = f"; {forward} relay traffic (forward=True)" if forward else ""
    lines.append(f"  devices    {topo.num_devices}{mem_text}{fwd_text}")
    reducing = sum(1 for _, d in g.nodes(data=True) if d["kind"] == "switch" and d.get("reduce"))
    lines.append(f"  switches   {kinds.get('switch', 0)}")
    lines.append(f"  NICs       {kinds.get('nic', 0)}")
    lines.append(f"  CPUs       {kinds.get('cpu', 0)}")
    lines.append(f"  in-network reduction: {'yes, on ' + str(reducing) + ' switches' if reducing else 'no'}")
    lines.append("  links (bandwidth per direction, line rate; latency per hop):")
    lines.extend("    " + row for row in _table(["kind", "links", "lanes", "GB/s each", "lat_us"],
                                                 _link_rows(g)).splitlines())
    lines.append(f"  peak per device       {topo.peak_bw_GBps():.1f} GB/s{_peak_basis(topo)}")
    scale = scaleout_bw_GBps(topo)
    lines.append(f"  scale-out per device  {'-' if scale is None else f'{scale:.1f} GB/s'}")
    if meta.get("nic"):
        lines.append(f"  NIC per device        {nic_text(meta['nic'], built=kinds.get('nic', 0) > 0)}")
    if meta.get("fabric"):
        lines.append(f"  scale-out fabric      {meta['fabric']}")
    lines.append(f"  routing               {topo.routing_text()}")
    if meta.get("model"):
        lines.append(f"  model overrides       {meta['model']}")
    for note in meta.get("whatifs", []):
        lines.append(f"  what-if: {note}")
    for note in meta.get("import_notes", []):
        lines.append(f"  note: {note}")
    sources = meta.get("sources") or []
    if sources:
        # The presets cite sections of docs/hardware.md, which ships with the repository, not the package.
        cites_doc = any("hardware.md" in str(s) for s in sources)
        lines.append("  sources (docs/hardware.md in the ccemu repository):" if cites_doc else "  sources:")
        lines.extend(f"    {s}" for s in sources)
    return "\n".join(lines)


def nic_text(nic: dict, built: bool = True) -> str:
    """A preset's NIC (``graph["nic"]``) in one line, e.g. ``roce 200 Gb/s x1 = 25.0 GB/s (PCIe attach 32 GB/s)``."""
    per = nic["per_device"]
    share = f" (one NIC per {round(1 / per)} devices)" if per < 1 else ""
    planes = f" over {nic['planes']} planes" if nic.get("planes", 1) > 1 else ""
    text = (f"{nic['kind']} {nic['Gbps']:g} Gb/s x{per:g}{share}{planes} = {nic['GBps_per_device']:.1f} GB/s "
            f"(PCIe attach {nic['attach_GBps']:g} GB/s)")
    return text if built else text + "; built with --nodes N > 1"


def _peak_basis(topo) -> str:
    from topologies.peak import own_peak_bw_GBps, reference_peak

    ref = reference_peak(topo)
    if ref is None:
        return ""
    return f" (of {ref['system']} before its what-ifs; this system's own: {own_peak_bw_GBps(topo):.1f} GB/s)"


def _link_rows(g):
    """Per link kind: undirected links, lanes, bandwidths and latencies (ranges when they vary)."""
    by_kind = defaultdict(list)
    for u, v, d in g.edges(data=True):
        if str(u) < str(v) or not g.has_edge(v, u):
            by_kind[d["link"]].append(d)
    rows = []
    for kind in sorted(by_kind):
        ds = by_kind[kind]
        rows.append([kind, str(len(ds)), _span(d["lanes"] for d in ds), _span(d["bw_GBps"] for d in ds),
                     _span(d["lat_us"] for d in ds)])
    return rows


def _span(values) -> str:
    vals = sorted(set(values))
    if len(vals) <= 3:
        return "/".join(f"{v:g}" for v in vals)
    return f"{vals[0]:g}-{vals[-1]:g}"


def _parse_option(text):
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ValueError(f"-o {text!r}; expected KEY=VALUE, e.g. -o devices=die")
    for convert in (int, float):
        try:
            return key, convert(value)
        except ValueError:
            pass
    return key, value


def _table(headers, rows) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows)]
    out = ["  ".join(str(h).ljust(w) for h, w in zip(headers, widths)).rstrip()]
    out += ["  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    return "\n".join(out)
