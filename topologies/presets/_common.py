"""Shared machinery of the presets: the registry, option checks, and the multi-node wrapper.

A vendor module describes *one server* (or one scale-up domain) as a function that adds the devices
and intra-node links of server ``s`` to a graph; :func:`build_system` repeats it ``nodes`` times, gives
every device a NIC reached over PCIe and joins the NICs by a scale-out fabric
(:func:`topologies.builders.add_fabric`). Device indices stay dense, server by server.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Callable

import networkx as nx

from ..builders import add_fabric
from ..graph import Topology, add_link

FABRICS = ("rail", "fat-tree", "switch")

# PCIe line rates, GB/s per direction for x16 (docs/hardware.md#pcie: NCCL models Gen4 x16 at 24 and
# Gen5 x16 at 48 GB/s *effective*; the line rate is 16 resp. 32 GT/s x 16 lanes / 8 bits = 32 resp.
# 64 GB/s [E], and topologies/model.py applies the efficiency on top).
PCIE_GEN4_X16_GBps = 32.0
PCIE_GEN5_X16_GBps = 64.0
# Estimate (docs/hardware.md#estimates): one PCIe hop (root port or switch) costs a few hundred ns; no
# source gives a figure.
PCIE_LAT_US = 0.5
# Estimate (docs/hardware.md#estimates): per-hop latency of a scale-out link (cable plus one switch
# traversal). docs/hardware.md#networks gives only the end-to-end RDMA write latency (about
# 2.5 us); the model's per-message cost of the ib and roce kinds (topologies/model.py) is NCCL's network
# per-hop figure instead (14 / 4.0 / 2.7 us for Simple / LL128 / LL).
NIC_HOP_LAT_US = 0.5

# Size limits of a built system, checked after the first server is built and before the others are
# (:func:`check_size`): a typo such as ``nodes=1000000000`` must fail at once, not fill the memory.
MAX_DEVICES = 1_048_576
# Peak bytes per graph element (node or directed edge) of a built preset, measured with tracemalloc
# on preset("dgx-h100", nodes=2048): 41,504 nodes + 229,376 edges, 225 MB peak, 832 B each (the
# atlas800t-a2 and cloudmatrix384 builds measure 800 and 768); rounded up.
BYTES_PER_ELEMENT = 1024


@dataclass(frozen=True)
class PresetInfo:
    """A registered preset: its builder and a one-line description."""

    name: str
    build: Callable[..., Topology]
    description: str
    vendor: str


REGISTRY: dict[str, PresetInfo] = {}


def register(name: str, description: str, vendor: str):
    """Decorator adding a preset builder to :data:`REGISTRY` under ``name``."""
    def deco(fn):
        if name in REGISTRY:
            raise RuntimeError(f"preset {name!r} registered twice")
        REGISTRY[name] = PresetInfo(name, fn, description, vendor)
        return fn
    return deco


# -- option checks -----------------------------------------------------------------------------------

def check_nodes(nodes) -> int:
    """``nodes`` must be an integer >= 1.

    >>> check_nodes(2)
    2
    >>> check_nodes(0)
    Traceback (most recent call last):
    ...
    ValueError: nodes=0; expected an integer >= 1 (servers in the system)
    """
    if isinstance(nodes, bool) or not isinstance(nodes, int) or nodes < 1:
        raise ValueError(f"nodes={nodes!r}; expected an integer >= 1 (servers in the system)")
    return nodes


def check_scaleout(fabric, oversubscription, leaf_ports):
    if fabric not in FABRICS:
        raise ValueError(f"fabric={fabric!r}; expected one of {', '.join(FABRICS)}")
    if (isinstance(oversubscription, bool) or not isinstance(oversubscription, (int, float))
            or not math.isfinite(oversubscription) or oversubscription < 1):
        raise ValueError(f"oversubscription={oversubscription!r}; expected a number >= 1 "
                         "(leaf downlinks per uplink)")
    if isinstance(leaf_ports, bool) or not isinstance(leaf_ports, int) or leaf_ports < 2:
        raise ValueError(f"leaf_ports={leaf_ports!r}; expected an integer >= 2")


def check_choice(name, value, choices):
    if value not in choices:
        raise ValueError(f"{name}={value!r}; expected one of {', '.join(map(repr, choices))}")
    return value


# -- building --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ScaleOut:
    """The NICs of every device and how they reach the device.

    ``per_device`` NICs of ``nic_bw_GBps`` each: an integer ``k >= 1`` gives every device ``k`` NICs of
    its own (each with its own attach link and fabric port, so one can fail and the others carry the
    traffic); a fraction ``1/m`` (``0.5``, ``0.25``) is one NIC shared by ``m`` devices, modelled as each
    device owning ``1/m`` of it: its share when all of them send, as every device does in a collective
    (an idle neighbour's share is not lent; a shared NIC node would give the devices a path to each
    other through it, which no library takes). ``planes`` splits every NIC into that many ports of
    ``nic_bw_GBps / planes`` each, one on each of as many independent fabrics (a multi-plane
    fabric: each plane its own leaves and spines; a flow takes one plane or is split over them as the
    NIC kind's routing says, :mod:`topologies.routing`). See :func:`parse_nic`.
    """

    nic_bw_GBps: float          # one NIC's line rate, per direction
    nic_link: str               # link kind of the fabric (topologies.model.NIC_KINDS)
    attach_bw_GBps: float       # device-to-NIC PCIe link, per direction
    nic_lat_us: float = NIC_HOP_LAT_US
    attach_lat_us: float = PCIE_LAT_US
    per_device: float = 1.0
    planes: int = 1

    @property
    def nics_per_device(self) -> int:
        """NIC nodes built per device (1 for a shared NIC)."""
        return int(round(self.per_device)) if self.per_device >= 1 else 1

    @property
    def port_GBps(self) -> float:
        """Line rate of one device's NIC node towards the fabric (its share of a shared NIC)."""
        return self.nic_bw_GBps * min(self.per_device, 1.0)

    @property
    def device_GBps(self) -> float:
        """A device's scale-out line rate: all its NICs, or its share of a shared one."""
        return self.nic_bw_GBps * self.per_device

    def describe(self) -> dict:
        """The NIC as ``ccemu topo show`` lists it (``graph["nic"]`` of a built preset)."""
        out = {"kind": self.nic_link, "Gbps": round(self.nic_bw_GBps * 8, 6), "per_device": self.per_device,
               "GBps_per_device": self.device_GBps, "attach_GBps": self.attach_bw_GBps}
        if self.planes > 1:
            out["planes"] = self.planes
        return out


_NIC_FORM = ("KIND:GBPS[:PER_DEVICE[:PLANES]] with KIND one of {kinds}, e.g. 'roce:200', 'tcpx:200:0.5', "
             "'efa:100:4' or 'roce:400:1:2' (or a dict {{'kind': ..., 'Gbps': ..., 'per_device': ..., 'planes': ...}}); "
             "PER_DEVICE is NICs per device, an integer >= 1 or a fraction 1/m for one NIC shared by m devices; "
             "PLANES the independent fabric planes each NIC's ports are spread over, an integer >= 1")
MAX_NICS_PER_DEVICE = 64
MAX_PLANES = 16
MAX_NIC_Gbps = 100_000.0


def parse_nic(nic, default: ScaleOut) -> ScaleOut:
    """``default`` with the NIC ``nic`` names: ``None`` (the preset's own), ``"KIND:GBPS[:PER_DEVICE[:PLANES]]"``
    or ``{"kind", "Gbps", "per_device", "planes"}`` (keys left out keep the preset's). The attach link
    and the hop latency stay the preset's.

    >>> d = ScaleOut(50.0, "ib", 64.0)
    >>> parse_nic("roce:200", d).nic_bw_GBps, parse_nic("tcpx:200:0.5", d).device_GBps
    (25.0, 12.5)
    >>> parse_nic({"kind": "efa", "Gbps": 100, "per_device": 4}, d).nics_per_device
    4
    >>> parse_nic("roce:400:1:2", d).planes
    2
    >>> parse_nic("roce200", d)
    Traceback (most recent call last):
    ...
    ValueError: nic='roce200': expected KIND:GBPS[:PER_DEVICE[:PLANES]] with KIND one of ib, roce, tcpx, efa, ...
    """
    from ..model import NIC_KINDS

    if nic is None:
        return default
    form = _NIC_FORM.format(kinds=", ".join(NIC_KINDS))
    if isinstance(nic, str):
        parts = nic.strip().split(":")
        if len(parts) not in (2, 3, 4):
            raise ValueError(f"nic={nic!r}: expected {form}")
        fields = dict(zip(("kind", "Gbps", "per_device", "planes"), parts))
        for key in ("Gbps", "per_device", "planes"):
            if key in fields:
                try:
                    fields[key] = float(fields[key])
                except ValueError:
                    raise ValueError(f"nic={nic!r}: {key} {fields[key]!r} is not a number; expected {form}") from None
    elif isinstance(nic, dict):
        unknown = sorted(set(nic) - {"kind", "Gbps", "per_device", "planes"})
        if unknown:
            raise ValueError(f"nic={nic!r}: unknown key {unknown[0]!r}; expected {form}")
        fields = dict(nic)
    else:
        raise ValueError(f"nic={nic!r}: expected {form}")
    kind = fields.get("kind", default.nic_link)
    if kind not in NIC_KINDS:
        raise ValueError(f"nic={nic!r}: unknown NIC kind {kind!r}; expected {form}")
    gbps = fields.get("Gbps", default.nic_bw_GBps * 8)
    if (isinstance(gbps, bool) or not isinstance(gbps, (int, float)) or not math.isfinite(gbps)
            or not 0 < gbps <= MAX_NIC_Gbps):
        raise ValueError(f"nic={nic!r}: Gbps={gbps!r}; expected a line rate in Gb/s, 0 < Gbps <= {MAX_NIC_Gbps:g}")
    per = fields.get("per_device", default.per_device)
    if isinstance(per, bool) or not isinstance(per, (int, float)) or not math.isfinite(per) or per <= 0:
        raise ValueError(f"nic={nic!r}: per_device={per!r}; expected {form}")
    whole = per >= 1 and abs(per - round(per)) < 1e-9 and round(per) <= MAX_NICS_PER_DEVICE
    shared = per < 1 and abs(1 / per - round(1 / per)) < 1e-6
    if not (whole or shared):
        raise ValueError(f"nic={nic!r}: per_device={per!r}; expected an integer 1..{MAX_NICS_PER_DEVICE} or a "
                         f"fraction 1/m (0.5, 0.25, ...)")
    per = float(round(per)) if whole else 1.0 / round(1 / per)
    planes = fields.get("planes", default.planes)
    if (isinstance(planes, bool) or not isinstance(planes, (int, float)) or planes != int(planes)
            or not 1 <= planes <= MAX_PLANES):
        raise ValueError(f"nic={nic!r}: planes={planes!r}; expected an integer 1..{MAX_PLANES}")
    return ScaleOut(float(gbps) / 8.0, kind, default.attach_bw_GBps, default.nic_lat_us, default.attach_lat_us, per,
                    int(planes))


def build_system(preset_name: str, nodes: int, build_node: Callable[[nx.DiGraph, int, int], list],
                 scaleout: ScaleOut, *, fabric: str = "rail", oversubscription: float = 1.0,
                 leaf_ports: int = 32, description: str = "", sources=(), model: dict | None = None,
                 prefix: Callable[[int], str] = lambda s: f"n{s}.", variant: str = "", nic=None) -> Topology:
    """Repeat one server ``nodes`` times and join the servers by a NIC fabric.

    Parameters
    ----------
    build_node : callable
        ``build_node(g, s, first_index)`` adds server ``s`` (devices with indices from
        ``first_index``, its switches, CPUs and intra-node links) and returns its device node ids in
        local-rank order.
    scaleout : ScaleOut
        The per-device NIC (the preset's default). With ``nodes == 1`` no NIC and no fabric is built.
    nic : str or dict, optional
        The NIC instead of the preset's, as :func:`parse_nic` reads it (``"roce:200"``,
        ``{"kind": "ib", "Gbps": 400, "per_device": 1}``); recorded in ``graph["nic"]``.
    fabric, oversubscription, leaf_ports
        Passed to :func:`topologies.builders.add_fabric`; ``"rail"`` puts the NICs of local rank ``j``
        of every server on leaf ``j``.
    variant : str
        Appended to the topology's name (``"die"`` -> ``cloudmatrix384-die``); ``graph["preset"]``
        stays the registry name.
    """
    check_nodes(nodes)
    check_scaleout(fabric, oversubscription, leaf_ports)
    scaleout = parse_nic(nic, scaleout)
    k = scaleout.nics_per_device
    base = preset_name + (f"-{variant}" if variant else "")
    name = base + (f"-x{nodes}" if nodes > 1 else "")
    g = nx.DiGraph(name=name)
    nics = []
    first = 0
    for s in range(nodes):
        devs = build_node(g, s, first)
        if s == 0:  # one server built: refuse a system too large before building the others
            check_size(base, nodes, len(devs), g.number_of_nodes(), g.number_of_edges(), fabric=fabric,
                       oversubscription=oversubscription, leaf_ports=leaf_ports, nics_per_device=k * scaleout.planes)
        first += len(devs)
        if nodes == 1:
            continue
        for j, dev in enumerate(devs):
            for i in range(k):  # NIC i of local rank j is on rail j * k + i
                nic_node = f"{prefix(s)}nic{j}" if k == 1 else f"{prefix(s)}nic{j}.{i}"
                g.add_node(nic_node, kind="nic", node=s)
                add_link(g, dev, nic_node, bw_GBps=scaleout.attach_bw_GBps, lat_us=scaleout.attach_lat_us,
                         link="pcie")
                nics.append((s, j * k + i, nic_node))
    if nodes > 1:
        for plane in range(scaleout.planes):   # independent fabrics, each with its share of every NIC
            add_fabric(g, nics, fabric=fabric, bw_GBps=scaleout.port_GBps / scaleout.planes,
                       lat_us=scaleout.nic_lat_us, link=scaleout.nic_link, leaf_ports=leaf_ports,
                       oversubscription=float(oversubscription),
                       prefix="fab" if scaleout.planes == 1 else f"fab.plane{plane}")
    if nic is not None:
        description += (f"; NIC set to {scaleout.nic_link} {scaleout.nic_bw_GBps * 8:g} Gb/s "
                        f"x{scaleout.per_device:g} per device")
        if scaleout.planes > 1:
            description += f" over {scaleout.planes} planes"
    g.graph.update(preset=preset_name, nodes=nodes, description=description, sources=list(sources),
                   nic=scaleout.describe())
    if nodes > 1:
        g.graph["fabric"] = fabric
    if model:
        g.graph["model"] = {k: dict(v) for k, v in model.items()}
    return Topology(g, name=name)


def estimate_elements(nodes, devices_per_node, nodes_per_server, edges_per_server, *, fabric="rail",
                      oversubscription=1.0, leaf_ports=32, nics_per_device=1) -> int:
    """Graph nodes plus directed edges of a system of ``nodes`` servers, as :func:`build_system` and
    :func:`topologies.builders.add_fabric` build it, from the counts of one server.

    >>> estimate_elements(2, 8, 12, 96)  # 2 x 108; 16 NICs + 32 edges; 8 leaves + 32; 32 spines + 512
    848
    """
    total = nodes * (nodes_per_server + edges_per_server)
    if nodes == 1:
        return total
    devices_per_node = devices_per_node * nics_per_device     # one rail per NIC of a server
    nics = nodes * devices_per_node
    total += nics + 2 * nics                              # the NICs and their PCIe links
    if fabric == "switch":
        return total + 1 + 2 * nics
    if fabric == "rail":
        leaves = devices_per_node * -(-nodes // leaf_ports)
    else:
        leaves = -(-nics // leaf_ports)
    total += leaves + 2 * nics                            # leaves and NIC uplinks
    if leaves > 1:
        spines = max(1, int(round(leaf_ports / oversubscription)))
        total += spines + 2 * spines * leaves
    return total


def physical_memory_bytes() -> int | None:
    """This machine's memory, or ``None`` where ``os.sysconf`` cannot tell."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def check_size(name, nodes, devices_per_node, nodes_per_server, edges_per_server, **fabric) -> None:
    """Refuse a system of more than :data:`MAX_DEVICES` devices, or one whose graph would need more
    memory than this machine has (:data:`BYTES_PER_ELEMENT` per node and edge).

    >>> check_size("x", 1_000_000_000, 8, 12, 96)
    Traceback (most recent call last):
    ...
    ValueError: nodes=1000000000: x would have 8000000000 devices; expected at most 1048576 devices in all
    """
    devices = nodes * devices_per_node
    if devices > MAX_DEVICES:
        raise ValueError(f"nodes={nodes}: {name} would have {devices} devices; expected at most {MAX_DEVICES} "
                         "devices in all")
    memory = physical_memory_bytes()
    if memory is None:
        return
    need = estimate_elements(nodes, devices_per_node, nodes_per_server, edges_per_server, **fabric) * BYTES_PER_ELEMENT
    if need > memory:
        given = ", ".join(f"{k}={v!r}" for k, v in {"nodes": nodes, **fabric}.items())
        raise ValueError(f"{given}: {name} would need about {need / 2**30:.1f} GiB to build, more than the "
                         f"{memory / 2**30:.1f} GiB of memory this machine has; expected a smaller system")


def add_device(g, node, index, *, server, mem_bw_GBps=None, **attrs):
    """Add one device node (never forwarding: collectives libraries do not relay through a device)."""
    extra = {} if mem_bw_GBps is None else {"mem_bw_GBps": float(mem_bw_GBps)}
    g.add_node(node, kind="device", index=index, name=node, node=server, forward=False, **extra, **attrs)
    return node


def link_devices_to_switches(g, devs, switches, lanes_per_switch, *, link_GBps, lat_us, link):
    """Link every device to every switch chip with ``lanes_per_switch[k]`` links of ``link_GBps`` each."""
    for dev in devs:
        for sw, lanes in zip(switches, lanes_per_switch):
            if lanes:
                add_link(g, dev, sw, bw_GBps=lanes * link_GBps, lat_us=lat_us, link=link, lanes=lanes)
