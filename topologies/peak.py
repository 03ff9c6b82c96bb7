"""Peak per-device bandwidth of a topology, the denominator of bus efficiency.

:func:`peak_bw_GBps` is the least, over devices, of the line rate a device can inject into the
collective fabric (GB/s, one direction):

1. the device's *scale-up* links: links to other devices or switches that are not PCIe (NVLink,
   xGMI, HCCS, UB, ...). PCIe links to a NIC or a CPU are the scale-out and host paths, not counted;
2. a device with no scale-up link counts its PCIe links to switches, devices and CPUs (a PCIe-only
   server where PCIe *is* the fabric);
3. a device with neither counts its NICs (one device per node): each NIC at the lower of its PCIe
   attach rate and its own uplinks;

bounded by the cut around a *package*: devices sharing a ``package`` attribute (the two dies of an
Ascend 910C, the two GCDs of an MI250X) count the scale-up links leaving the package, shared
equally among them, when that is lower. The scale-out bandwidth of multi-node systems is reported
separately by :func:`scaleout_bw_GBps`. A system degraded by a what-if keeps the peak of the system
it came from (:func:`reference_peak`), so its bus efficiency is against what it had.

>>> from topologies import switch
>>> peak_bw_GBps(switch(4, bw_GBps=100.0))
100.0
"""

from __future__ import annotations

HOST_KINDS = ("nic", "cpu")


def _scaleup_edges(g, node):
    """Out-edges of ``node`` counted as its injection into the collective fabric (see module doc)."""
    out = list(g.out_edges(node, data=True))
    tier1 = [(v, d) for _, v, d in out if d["link"] != "pcie" and g.nodes[v]["kind"] not in HOST_KINDS]
    if tier1:
        return tier1
    return [(v, d) for _, v, d in out if g.nodes[v]["kind"] != "nic"]


def _nic_bw_GBps(g, dev) -> float:
    """Line rate of ``dev``'s NICs towards the fabric: per NIC the lower of attach and uplink rates."""
    total = 0.0
    for _, nic, d in g.out_edges(dev, data=True):
        if g.nodes[nic]["kind"] != "nic":
            continue
        up = sum(e["bw_GBps"] for _, v, e in g.out_edges(nic, data=True) if g.nodes[v]["kind"] != "device")
        total += min(d["bw_GBps"], up) if up > 0 else 0.0
    return total


def device_injection_GBps(topo) -> list[float]:
    """Per device (by index), the injection bandwidth of rules 1-3 of the module docstring."""
    g = topo.graph
    rates = []
    for dev in topo.devices:
        edges = _scaleup_edges(g, dev)
        rates.append(float(sum(d["bw_GBps"] for _, d in edges)) if edges else _nic_bw_GBps(g, dev))
    return rates


def package_bound_GBps(topo) -> dict:
    """Per package (``package`` attribute shared by several devices): scale-up bandwidth leaving it, per device."""
    g = topo.graph
    members = {}
    for dev in topo.devices:
        pkg = g.nodes[dev].get("package")
        if pkg is not None:
            members.setdefault(pkg, []).append(dev)
    bounds = {}
    for pkg, devs in members.items():
        if len(devs) < 2:
            continue
        inside = set(devs)
        out = sum(d["bw_GBps"] for dev in devs for v, d in _scaleup_edges(g, dev) if v not in inside)
        bounds[pkg] = out / len(devs)
    return bounds


def reference_peak(topo) -> dict | None:
    """``{"GBps", "system"}``: the peak of the system a what-if started from, which a degraded copy
    (:func:`topologies.whatif.fail_link`, ``fail_node``, ``scale_links``) keeps as its peak so that its bus
    efficiency is measured against what the system had; None for a system as built."""
    ref = topo.graph.graph.get("reference_peak")
    return dict(ref) if ref else None


def peak_bw_GBps(topo) -> float:
    """Per-device injection bandwidth (GB/s, per direction): the least over devices (module docstring).

    After a what-if that degrades the system (a failed link or node, scaled links) it is the original
    system's peak (:func:`reference_peak`), so a bus efficiency shows what the failure costs; the
    degraded system's own figure is :func:`own_peak_bw_GBps`.

    >>> from topologies import two_level
    >>> peak_bw_GBps(two_level(2, 4, intra_bw_GBps=150.0, fabric="switch"))
    150.0
    """
    ref = reference_peak(topo)
    if ref is not None:
        return float(ref["GBps"])
    return own_peak_bw_GBps(topo)


def own_peak_bw_GBps(topo) -> float:
    """The peak of ``topo``'s own links (module docstring), ignoring a what-if's :func:`reference_peak`.

    >>> from topologies import preset
    >>> from topologies.whatif import fail_node
    >>> t = fail_node(preset("dgx-h100"), "n0.nvs0")
    >>> peak_bw_GBps(t), own_peak_bw_GBps(t)
    (450.0, 325.0)
    """
    peak = min(device_injection_GBps(topo))
    bounds = package_bound_GBps(topo)
    if bounds:
        peak = min(peak, min(bounds.values()))
    return float(peak)


def scaleout_bw_GBps(topo) -> float | None:
    """Per-device NIC bandwidth (GB/s, per direction), the least over devices.

    ``None`` when no device has a NIC of its own with a fabric behind it (single server, or an
    imported NCCL dump whose NICs hang off PCIe switches).

    >>> from topologies import two_level, ring
    >>> scaleout_bw_GBps(two_level(2, 4, nic_bw_GBps=50.0, fabric="switch")), scaleout_bw_GBps(ring(4))
    (50.0, None)
    """
    g = topo.graph
    if not any(d["kind"] == "nic" for _, d in g.nodes(data=True)):
        return None
    rates = [_nic_bw_GBps(g, dev) for dev in topo.devices]
    if any(rates):
        return float(min(rates))
    return _shared_nic_bw_GBps(g, topo.devices)


def _shared_nic_bw_GBps(g, devices) -> float | None:
    """NICs that hang off PCIe switches or CPUs (an imported NCCL topology repeated over servers): per
    server, the NICs' line rate towards the fabric shared by its devices; the least over servers.
    ``None`` when no NIC has a fabric behind it (one server)."""
    per_server: dict = {}
    for n, d in g.nodes(data=True):
        if d["kind"] != "nic":
            continue
        up = sum(e["bw_GBps"] for _, v, e in g.out_edges(n, data=True) if g.nodes[v]["kind"] == "switch"
                 and e["link"] != "pcie")
        if up > 0:
            attach = max((e["bw_GBps"] for _, v, e in g.out_edges(n, data=True) if e["link"] == "pcie"), default=up)
            per_server[d.get("node", 0)] = per_server.get(d.get("node", 0), 0.0) + min(up, attach)
    if not per_server:
        return None
    count: dict = {}
    for dev in devices:
        count[g.nodes[dev].get("node", 0)] = count.get(g.nodes[dev].get("node", 0), 0) + 1
    return float(min(per_server.get(s, 0.0) / k for s, k in count.items()))
