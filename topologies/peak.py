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
separately by :func:`scaleout_bw_GBps`.

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


def peak_bw_GBps(topo) -> float:
    """Per-device injection bandwidth (GB/s, per direction): the least over devices (module docstring).

    >>> from topologies import two_level
    >>> peak_bw_GBps(two_level(2, 4, intra_bw_GBps=150.0, fabric="switch"))
    150.0
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
    if not any(rates):      # NICs without a fabric behind them (one server, or NICs not on a device)
        return None
    return float(min(rates))
