"""Generic topology builders: ring, full mesh, one switch, torus, and two-level clusters.

Every builder takes the link's bandwidth (``bw_GBps``, per direction) and latency (``lat_us``) by
keyword and returns a validated :class:`~topologies.graph.Topology`.
"""

from __future__ import annotations

import itertools
import math

import networkx as nx

from .graph import Topology, add_link


def _check_count(name, value, minimum=1):
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name}={value!r}; expected an integer >= {minimum}")


def add_devices(g, count, *, prefix="dev", first_index=0, **attrs):
    """Add ``count`` device nodes named ``f"{prefix}{i}"``; returns their node ids."""
    nodes = []
    for i in range(count):
        node = f"{prefix}{i}"
        g.add_node(node, kind="device", index=first_index + i, name=node, **attrs)
        nodes.append(node)
    return nodes


def ring(n, *, bw_GBps=25.0, lat_us=1.0, link="generic", mem_bw_GBps=None):
    """``n`` devices, each linked to the next; devices relay traffic (as on a torus).

    >>> t = ring(5)
    >>> t.num_devices, t.graph.number_of_edges()
    (5, 10)
    """
    _check_count("n", n)
    g = nx.DiGraph(name=f"ring{n}")
    devs = add_devices(g, n, forward=True, **_mem(mem_bw_GBps))
    if n == 2:
        add_link(g, devs[0], devs[1], bw_GBps=bw_GBps, lat_us=lat_us, link=link)
    elif n > 2:
        for i in range(n):
            add_link(g, devs[i], devs[(i + 1) % n], bw_GBps=bw_GBps, lat_us=lat_us, link=link)
    return Topology(g)


def full_mesh(n, *, bw_GBps=25.0, lat_us=1.0, link="generic", lanes=1, mem_bw_GBps=None, forward=False):
    """``n`` devices with a direct link between every pair and no switch (Ascend 910B HCCS, MI300X xGMI).

    >>> t = full_mesh(8, bw_GBps=28.0)
    >>> t.injection_bw_GBps(0)
    196.0
    """
    _check_count("n", n)
    g = nx.DiGraph(name=f"mesh{n}")
    devs = add_devices(g, n, forward=forward, **_mem(mem_bw_GBps))
    for a, b in itertools.combinations(devs, 2):
        add_link(g, a, b, bw_GBps=bw_GBps, lat_us=lat_us, link=link, lanes=lanes)
    return Topology(g)


def switch(n, *, bw_GBps=25.0, lat_us=1.0, link="generic", lanes=1, reduce=False, mem_bw_GBps=None):
    """``n`` devices on one non-blocking switch; ``lat_us`` is per hop (device to switch).

    ``reduce=True`` makes the switch reduce in the network (NVLS / SHARP).

    >>> t = switch(4, bw_GBps=450.0)
    >>> t.injection_bw_GBps(3)
    450.0
    """
    _check_count("n", n)
    g = nx.DiGraph(name=f"switch{n}")
    devs = add_devices(g, n, **_mem(mem_bw_GBps))
    g.add_node("sw0", kind="switch", reduce=bool(reduce))
    for d in devs:
        add_link(g, d, "sw0", bw_GBps=bw_GBps, lat_us=lat_us, link=link, lanes=lanes)
    return Topology(g)


def torus(dims, *, bw_GBps=25.0, lat_us=1.0, link="generic", mem_bw_GBps=None):
    """A torus of shape ``dims`` (e.g. ``(4, 4)``); devices relay traffic, wrap-around in every dimension.

    >>> torus((2, 3)).num_devices
    6
    """
    dims = tuple(dims)
    if not dims:
        raise ValueError("dims=(); expected at least one dimension")
    for d in dims:
        _check_count("torus dimension", d)
    g = nx.DiGraph(name="torus" + "x".join(map(str, dims)))
    coords = list(itertools.product(*[range(d) for d in dims]))
    node = {c: f"dev{i}" for i, c in enumerate(coords)}
    for i, c in enumerate(coords):
        g.add_node(node[c], kind="device", index=i, forward=True, coord=str(c), name=node[c], **_mem(mem_bw_GBps))
    for c in coords:
        for axis, size in enumerate(dims):
            if size == 1:
                continue
            nb = list(c)
            nb[axis] = (c[axis] + 1) % size
            nb = tuple(nb)
            if not g.has_edge(node[c], node[nb]):
                add_link(g, node[c], node[nb], bw_GBps=bw_GBps, lat_us=lat_us, link=link)
    return Topology(g)


def two_level(nodes, per_node, *, intra="switch", intra_bw_GBps=150.0, intra_lat_us=0.5, intra_link="nvlink",
              intra_reduce=False, nic_bw_GBps=50.0, nic_lat_us=1.0, nic_link="ib", pcie_bw_GBps=64.0,
              pcie_lat_us=0.5, fabric="fat-tree", leaf_ports=32, oversubscription=1.0, mem_bw_GBps=None,
              name=None):
    """``nodes`` servers of ``per_node`` devices; inside a server a switch or full mesh, between servers NICs.

    Every device has its own NIC (``nic_bw_GBps``), reached over a PCIe link (``pcie_bw_GBps``).
    ``fabric`` joins the NICs:

    - ``"switch"``: one non-blocking switch;
    - ``"fat-tree"``: leaf switches with ``leaf_ports`` NIC ports each and spine switches above them;
      each leaf has ``leaf_ports / oversubscription`` uplinks of ``nic_bw_GBps``, one to each spine;
    - ``"rail"``: rail-optimised: the NICs of local rank ``j`` of every server share leaf ``j``
      (split in blocks of ``leaf_ports``), leaves joined through spines as in the fat tree.

    >>> t = two_level(2, 4, fabric="switch")
    >>> t.num_devices, sorted(t.link_kinds)
    (8, ['ib', 'nvlink', 'pcie'])
    """
    _check_count("nodes", nodes)
    _check_count("per_node", per_node)
    _check_count("leaf_ports", leaf_ports, 2)
    if intra not in ("switch", "mesh"):
        raise ValueError(f"intra={intra!r}; expected 'switch' or 'mesh'")
    if fabric not in ("switch", "fat-tree", "rail"):
        raise ValueError(f"fabric={fabric!r}; expected 'switch', 'fat-tree' or 'rail'")
    if not (isinstance(oversubscription, (int, float)) and math.isfinite(oversubscription) and oversubscription >= 1):
        raise ValueError(f"oversubscription={oversubscription!r}; expected a number >= 1")
    g = nx.DiGraph(name=name or f"{nodes}x{per_node}-{intra}-{fabric}")
    nics = []
    for s in range(nodes):
        devs = add_devices(g, per_node, prefix=f"n{s}.dev", first_index=s * per_node, node=s, **_mem(mem_bw_GBps))
        add_intra(g, devs, intra=intra, bw_GBps=intra_bw_GBps, lat_us=intra_lat_us, link=intra_link,
                  reduce=intra_reduce, switch_name=f"n{s}.sw")
        for j, d in enumerate(devs):
            nic = f"n{s}.nic{j}"
            g.add_node(nic, kind="nic", node=s)
            add_link(g, d, nic, bw_GBps=pcie_bw_GBps, lat_us=pcie_lat_us, link="pcie")
            nics.append((s, j, nic))
    if nodes > 1:
        add_fabric(g, nics, fabric=fabric, bw_GBps=nic_bw_GBps, lat_us=nic_lat_us, link=nic_link,
                   leaf_ports=leaf_ports, oversubscription=oversubscription)
    return Topology(g)


def add_intra(g, devs, *, intra, bw_GBps, lat_us, link, reduce=False, switch_name="sw", lanes=1):
    """Join ``devs`` by one switch (``intra="switch"``) or a full mesh (``"mesh"``)."""
    if intra == "switch":
        g.add_node(switch_name, kind="switch", reduce=bool(reduce))
        for d in devs:
            add_link(g, d, switch_name, bw_GBps=bw_GBps, lat_us=lat_us, link=link, lanes=lanes)
    else:
        for a, b in itertools.combinations(devs, 2):
            add_link(g, a, b, bw_GBps=bw_GBps, lat_us=lat_us, link=link, lanes=lanes)


def add_fabric(g, nics, *, fabric, bw_GBps, lat_us, link, leaf_ports=32, oversubscription=1.0, prefix="fab"):
    """Join NICs ``[(server, local_rank, node_id), ...]`` by a scale-out fabric (see :func:`two_level`)."""
    if fabric == "switch":
        g.add_node(f"{prefix}.sw", kind="switch")
        for _, _, nic in nics:
            add_link(g, nic, f"{prefix}.sw", bw_GBps=bw_GBps, lat_us=lat_us, link=link)
        return
    if fabric == "rail":
        groups = {}
        for s, j, nic in nics:
            groups.setdefault(j, []).append(nic)
        blocks = [grp[i:i + leaf_ports] for _, grp in sorted(groups.items()) for i in range(0, len(grp), leaf_ports)]
    else:
        ordered = [nic for _, _, nic in nics]
        blocks = [ordered[i:i + leaf_ports] for i in range(0, len(ordered), leaf_ports)]
    leaves = []
    for li, block in enumerate(blocks):
        leaf = f"{prefix}.leaf{li}"
        g.add_node(leaf, kind="switch")
        leaves.append(leaf)
        for nic in block:
            add_link(g, nic, leaf, bw_GBps=bw_GBps, lat_us=lat_us, link=link)
    if len(leaves) == 1:
        return
    spines = max(1, int(round(leaf_ports / oversubscription)))
    for k in range(spines):
        sp = f"{prefix}.spine{k}"
        g.add_node(sp, kind="switch")
        for leaf in leaves:
            add_link(g, leaf, sp, bw_GBps=bw_GBps, lat_us=lat_us, link=link)


def _mem(mem_bw_GBps):
    return {} if mem_bw_GBps is None else {"mem_bw_GBps": float(mem_bw_GBps)}
