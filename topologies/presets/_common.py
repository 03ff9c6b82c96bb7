"""Shared machinery of the presets: the registry, option checks, and the multi-node wrapper.

A vendor module describes *one server* (or one scale-up domain) as a function that adds the devices
and intra-node links of server ``s`` to a graph; :func:`build_system` repeats it ``nodes`` times, gives
every device a NIC reached over PCIe and joins the NICs by a scale-out fabric
(:func:`topologies.builders.add_fabric`). Device indices stay dense, server by server.
"""

from __future__ import annotations

import math
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
    """The NIC of every device and how it reaches the device (one NIC per device)."""

    nic_bw_GBps: float          # NIC line rate, per direction
    nic_link: str               # link kind of the fabric ("ib", "roce")
    attach_bw_GBps: float       # device-to-NIC PCIe link, per direction
    nic_lat_us: float = NIC_HOP_LAT_US
    attach_lat_us: float = PCIE_LAT_US


def build_system(preset_name: str, nodes: int, build_node: Callable[[nx.DiGraph, int, int], list],
                 scaleout: ScaleOut, *, fabric: str = "rail", oversubscription: float = 1.0,
                 leaf_ports: int = 32, description: str = "", sources=(), model: dict | None = None,
                 prefix: Callable[[int], str] = lambda s: f"n{s}.", variant: str = "") -> Topology:
    """Repeat one server ``nodes`` times and join the servers by a NIC fabric.

    Parameters
    ----------
    build_node : callable
        ``build_node(g, s, first_index)`` adds server ``s`` (devices with indices from
        ``first_index``, its switches, CPUs and intra-node links) and returns its device node ids in
        local-rank order.
    scaleout : ScaleOut
        The per-device NIC. With ``nodes == 1`` no NIC and no fabric is built.
    fabric, oversubscription, leaf_ports
        Passed to :func:`topologies.builders.add_fabric`; ``"rail"`` puts the NICs of local rank ``j``
        of every server on leaf ``j``.
    variant : str
        Appended to the topology's name (``"die"`` -> ``cloudmatrix384-die``); ``graph["preset"]``
        stays the registry name.
    """
    check_nodes(nodes)
    check_scaleout(fabric, oversubscription, leaf_ports)
    name = preset_name + (f"-{variant}" if variant else "") + (f"-x{nodes}" if nodes > 1 else "")
    g = nx.DiGraph(name=name)
    nics = []
    first = 0
    for s in range(nodes):
        devs = build_node(g, s, first)
        first += len(devs)
        if nodes == 1:
            continue
        for j, dev in enumerate(devs):
            nic = f"{prefix(s)}nic{j}"
            g.add_node(nic, kind="nic", node=s)
            add_link(g, dev, nic, bw_GBps=scaleout.attach_bw_GBps, lat_us=scaleout.attach_lat_us, link="pcie")
            nics.append((s, j, nic))
    if nodes > 1:
        add_fabric(g, nics, fabric=fabric, bw_GBps=scaleout.nic_bw_GBps, lat_us=scaleout.nic_lat_us,
                   link=scaleout.nic_link, leaf_ports=leaf_ports, oversubscription=float(oversubscription))
    g.graph.update(preset=preset_name, nodes=nodes, description=description, sources=list(sources))
    if nodes > 1:
        g.graph["fabric"] = fabric
    if model:
        g.graph["model"] = {k: dict(v) for k, v in model.items()}
    return Topology(g, name=name)


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
