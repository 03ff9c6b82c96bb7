"""Huawei Ascend systems: Atlas 800 (910), Atlas 800T A2 (910B), Atlas 800T A3 (910C) and CloudMatrix 384.

Ascend servers have host paths: every NPU has a PCIe link to a Kunpeng CPU and the CPUs are linked to
each other, so two NPUs without an HCCS link (the two meshes of the 910 server, or a 910B pair whose
HCCS link failed, see :func:`topologies.whatif.fail_link`) still reach each other through the host.
The host path is staged through host memory (the CPUs carry ``host_mem_GBps``, see
:mod:`topologies.network`): PCIe down into the sending NPU's CPU memory, a copy in host memory (across
the socket link when the NPUs sit on different CPUs), PCIe up, one after another, each with its own
message cost. NPUs never relay traffic (``forward=False``).
"""

from __future__ import annotations

import itertools

from ..graph import add_link
from ._common import (PCIE_GEN4_X16_GBps, PCIE_GEN5_X16_GBps, PCIE_LAT_US, ScaleOut, add_device, build_system,
                      check_choice, register)

# Estimate (docs/hardware.md#estimates): no source gives an HCCS latency; use NCCL's NVLink per-hop LL
# figure (0.6 us, docs/hardware.md#nccl-model) for one direct hop.
HCCS_LAT_US = 0.6
# Estimate (docs/hardware.md#estimates): CPU-to-CPU links of the Kunpeng hosts are not in the sources;
# 30 GB/s per direction, the rate of one 240 Gb/s HCCS port (docs/hardware.md#huawei-ascend-910: 3 HCCS
# ports of 240 Gb/s per chip), since Kunpeng sockets are joined by the same kind of coherent port. Kind
# "socket", with the model parameters of SOCKET_MODEL below.
SOCKET_GBps = 30.0
# Estimate (docs/hardware.md#estimates): the "socket" kind has no entry in topologies/model.py's
# LINK_DEFAULTS, so it starts from "generic" (all costs 0) and takes these two: pcie's efficiency (0.8)
# and a Simple message cost of 1 us (pcie's is 17.6); its LL128/LL message costs and call costs stay 0.
# A host path (NPU -> pcie -> CPU -> socket -> CPU -> pcie -> NPU) always crosses pcie links too, and a
# transfer pays the largest message cost on its path, so such a path pays pcie's costs.
SOCKET_MODEL = {"socket": {"efficiency": 0.8, "msg_us": 1.0}}
# docs/hardware.md#host-memory: Kunpeng 920 has 8 DDR4-3200 channels [R] = 8 x 3.2 GT/s x 8 B = 204.8 GB/s
# of memory per CPU [E]; the host path's copy stage runs on it (topologies/model.py's host_memory kind gives
# the share a copy reaches, an estimate).
KUNPENG_MEM_GBps = 204.8


def _add_host(g, s, devs, cpus):
    """``cpus`` CPUs in a full mesh of socket links, the NPUs spread evenly over them by PCIe.

    Estimate (docs/hardware.md#estimates): Atlas 800 servers carry 4 Kunpeng 920 CPUs; 2 NPUs per CPU.
    The host path's real rate (DMA through the root complex, possibly bouncing through host memory) is
    not published; the link is PCIe Gen4 x16 (32 GB/s line rate) and may be optimistic.
    """
    nodes = [f"n{s}.cpu{c}" for c in range(cpus)]
    for c in nodes:
        g.add_node(c, kind="cpu", node=s, host_mem_GBps=KUNPENG_MEM_GBps)
    for a, b in itertools.combinations(nodes, 2):
        add_link(g, a, b, bw_GBps=SOCKET_GBps, lat_us=PCIE_LAT_US, link="socket")
    per_cpu = len(devs) // cpus
    for j, dev in enumerate(devs):
        add_link(g, dev, nodes[j // per_cpu], bw_GBps=PCIE_GEN4_X16_GBps, lat_us=PCIE_LAT_US, link="pcie")


@register("atlas800-9000", "Atlas 800 (9000), Ascend 910: two 4-NPU HCCS meshes (3 x 30 GB/s), joined only via "
          "the host", "huawei")
def atlas800_9000(nodes=1, fabric="rail", oversubscription=1.0, leaf_ports=32, nic=None):
    """Atlas 800 training server model 9000, 8 Ascend 910 (2019).

    >>> t = atlas800_9000()
    >>> t.peak_bw_GBps(), t.graph.has_edge("n0.npu0", "n0.npu4")
    (90.0, False)
    """
    # docs/hardware.md#huawei-ascend-910: 3 HCCS ports of 240 Gb/s per chip = 30 GB/s each (taken per
    # direction).
    hccs_GBps = 30.0

    def build_node(g, s, first):
        devs = [add_device(g, f"n{s}.npu{j}", first + j, server=s,
                           mem_bw_GBps=1200.0)     # estimate (docs/hardware.md#estimates): 910 HBM2 data sheet
                for j in range(8)]
        # docs/hardware.md#huawei-ascend-910: two 4-NPU HCCS full meshes, NPU0-3 and NPU4-7.
        for group in (devs[:4], devs[4:]):
            for a, b in itertools.combinations(group, 2):
                add_link(g, a, b, bw_GBps=hccs_GBps, lat_us=HCCS_LAT_US, link="hccs")
        _add_host(g, s, devs, cpus=4)
        return devs

    return build_system("atlas800-9000", nodes, build_node,
                        # estimate (docs/hardware.md#estimates): the 910 integrates 100 GbE RoCE, one port per NPU
                        # (12.5 GB/s)
                        ScaleOut(12.5, "roce", PCIE_GEN4_X16_GBps), fabric=fabric,
                        oversubscription=oversubscription, leaf_ports=leaf_ports, nic=nic, model=SOCKET_MODEL,
                        description="8x Ascend 910; two 4-NPU HCCS meshes joined through the host (PCIe to CPUs)",
                        sources=["docs/hardware.md#huawei-ascend-910: Ascend 910 (2019) server",
                                 "estimate: host CPUs and PCIe, 100G RoCE per NPU, HBM bandwidth"])


@register("atlas800t-a2", "Atlas 800T A2, Ascend 910B: 8-NPU HCCS full mesh, 7 x 28 GB/s; 200G RoCE per NPU; "
          "host PCIe paths", "huawei")
def atlas800t_a2(nodes=1, fabric="rail", oversubscription=1.0, leaf_ports=32, nic=None):
    """Atlas 800T A2 training server, 8 Ascend 910B.

    >>> t = atlas800t_a2()
    >>> t.num_devices, t.peak_bw_GBps()
    (8, 196.0)
    """
    hccs_GBps = 28.0   # docs/hardware.md#huawei-ascend-910b: about 56 GB/s bidir = 28 GB/s uni per link [R]

    def build_node(g, s, first):
        devs = [add_device(g, f"n{s}.npu{j}", first + j, server=s,
                           # docs/hardware.md#huawei-ascend-910c: 3.2 TB/s per package of two 910B-class dies
                           # -> 1.6 TB/s [E]
                           mem_bw_GBps=1600.0)
                for j in range(8)]
        # docs/hardware.md#huawei-ascend-910b: one HCCS full mesh, 7 links per NPU, no switch.
        for a, b in itertools.combinations(devs, 2):
            add_link(g, a, b, bw_GBps=hccs_GBps, lat_us=HCCS_LAT_US, link="hccs")
        _add_host(g, s, devs, cpus=4)
        return devs

    return build_system("atlas800t-a2", nodes, build_node,
                        # docs/hardware.md#huawei-ascend-910b: one 200 GbE RoCE NIC per NPU = 25 GB/s
                        # (22.5 measured). The port is on the NPU package; its attach link is modelled as PCIe
                        # Gen4 (estimate, docs/hardware.md#estimates).
                        ScaleOut(25.0, "roce", PCIE_GEN4_X16_GBps), fabric=fabric,
                        oversubscription=oversubscription, leaf_ports=leaf_ports, nic=nic, model=SOCKET_MODEL,
                        description="8x Ascend 910B; HCCS full mesh; 200G RoCE per NPU; NPU-CPU PCIe host paths",
                        sources=["docs/hardware.md#huawei-ascend-910b: Ascend 910B (Atlas 800T A2)",
                                 "estimate: host CPUs and PCIe rates, HBM bandwidth from the 910C figure"])


# -- 910C: Atlas 800T A3 and CloudMatrix 384 ---------------------------------------------------------

# docs/hardware.md#cloudmatrix-384: 196 GB/s uni UB per die over 7 UB links -> 28 GB/s per link [E];
# 392 GB/s per NPU (2 dies).
UB_LINK_GBps = 28.0
# The three UB tiers, each at the bandwidth docs/hardware.md#cloudmatrix-384 measures for it per die pair
# (uni): die to die in one NPU 210, NPUs of one node 170, NPUs of different nodes 150 GB/s [M]. The tier
# inside a node is the die's 7 UB links of 28 GB/s (196 line rate [S], 170 measured); the other two tiers'
# line rates are that line rate scaled by their measured rate over 170 [E], so that every tier delivers its
# measurement at one UB efficiency (whatever topologies/model.py's ub efficiency is), with no constant of
# their own:
# - die to die: 196 x 210 / 170 = 242.1 GB/s (docs/hardware.md#huawei-ascend-910c reports 540 GB/s [R],
#   which as 270 uni would not match the 210 measured);
# - L1 to L2: each L1-L2 link 28 x 150 / 170 = 24.7 GB/s, so a die's 7 planes carry 172.9 of its 196 GB/s
#   off the board. (The paper calls the Clos non-blocking by its port counts, one L2 uplink per L1 downlink;
#   the measured rate across nodes is lower, and the link rate carries the difference.)
DIE_TO_DIE_GBps = 7 * UB_LINK_GBps * 210.0 / 170.0
UB_L2_LINK_GBps = UB_LINK_GBps * 150.0 / 170.0
# docs/hardware.md#cloudmatrix-384, measured UB latencies: die to die 0.2 us; NPUs of one node 0.7 us
# (NPU -> L1 -> NPU, two links: 0.35 each); between nodes 2.1 us (four links: 2 x 0.35 + 2 x L1-L2, so
# 0.7 each).
D2D_LAT_US = 0.2
UB_L1_LAT_US = 0.35
UB_L2_LAT_US = 0.7
L1_PER_BOARD = 7          # docs/hardware.md#cloudmatrix-384: 7 L1 UB switch chips on each node board
L2_PLANES, L2_PER_PLANE = 7, 16   # docs/hardware.md#cloudmatrix-384: 7 L2 sub-planes of 16 chips, 48 ports
BOARDS_PER_SUPERNODE = 48         # docs/hardware.md#cloudmatrix-384: 48 nodes of 8 NPUs
# docs/hardware.md#huawei-ascend-910c: 3.2 TB/s HBM per 910C package, 1.6 per die [E].
MEM_NPU_GBps, MEM_DIE_GBps = 3200.0, 1600.0
# docs/hardware.md#cloudmatrix-384: RDMA plane of 400 Gb/s per NPU (200 per die).
RDMA_NPU_GBps, RDMA_DIE_GBps = 50.0, 25.0
# Estimate (docs/hardware.md#estimates): the RDMA port sits on the 910C package; its attach link is given
# a PCIe Gen5 x16 rate so it does not cap the 400G NIC (no source gives a figure for it).
RDMA_ATTACH_GBps = PCIE_GEN5_X16_GBps
DEVICE_CHOICES = ("npu", "die")


def _ub_board(g, prefix, server, first, devices):
    """One 910C node board: 8 NPUs (or 16 dies) on 7 L1 UB switch chips; returns (devices, L1 chips).

    Every die has one UB link to each L1 chip (7 links x 28 GB/s = 196 GB/s); with ``devices="npu"``
    the two dies' links to a chip become one edge of 2 lanes.
    """
    l1 = [f"{prefix}ub{k}" for k in range(L1_PER_BOARD)]
    for sw in l1:
        g.add_node(sw, kind="switch", reduce=False, node=server)
    devs = []
    for j in range(8):
        if devices == "npu":
            dev = add_device(g, f"{prefix}npu{j}", first + len(devs), server=server, mem_bw_GBps=MEM_NPU_GBps)
            devs.append(dev)
            for sw in l1:
                add_link(g, dev, sw, bw_GBps=2 * UB_LINK_GBps, lat_us=UB_L1_LAT_US, link="ub", lanes=2)
            continue
        pair = []
        for d in range(2):
            dev = add_device(g, f"{prefix}npu{j}.die{d}", first + len(devs), server=server,
                             mem_bw_GBps=MEM_DIE_GBps, package=f"{prefix}npu{j}")
            devs.append(dev)
            pair.append(dev)
            for sw in l1:
                add_link(g, dev, sw, bw_GBps=UB_LINK_GBps, lat_us=UB_L1_LAT_US, link="ub")
        # The on-package die link, given UB's model parameters (242.1 x the ub efficiency: 210 GB/s measured).
        add_link(g, pair[0], pair[1], bw_GBps=DIE_TO_DIE_GBps, lat_us=D2D_LAT_US, link="ub")
    return devs, l1


@register("atlas800t-a3", "Atlas 800T A3 node, Ascend 910C: 8 NPUs (16 dies) on 7 L1 UB switch chips, 392 GB/s "
          "uni per NPU", "huawei")
def atlas800t_a3(nodes=1, devices="npu", fabric="rail", oversubscription=1.0, leaf_ports=32, nic=None):
    """One 910C node: ``devices="npu"`` (8 devices) or ``"die"`` (16 devices, each die its own rank).

    Assumption: docs/hardware.md describes the 910C node board only as part of CloudMatrix 384; the
    standalone A3 server is modelled as one such board (7 L1 UB chips). Servers are joined by the RDMA
    plane (400 Gb/s per NPU, 200 per die).

    >>> atlas800t_a3().peak_bw_GBps(), atlas800t_a3(devices="die").peak_bw_GBps()
    (392.0, 196.0)
    """
    check_choice("devices", devices, DEVICE_CHOICES)

    def build_node(g, s, first):
        return _ub_board(g, f"n{s}.", s, first, devices)[0]

    rdma = RDMA_NPU_GBps if devices == "npu" else RDMA_DIE_GBps
    return build_system("atlas800t-a3", nodes, build_node, ScaleOut(rdma, "roce", RDMA_ATTACH_GBps), fabric=fabric,
                        variant="" if devices == "npu" else "die",
                        oversubscription=oversubscription, leaf_ports=leaf_ports, nic=nic,
                        description=f"8x Ascend 910C ({devices} devices); 7 L1 UB switch chips; RDMA per {devices}",
                        sources=["docs/hardware.md#huawei-ascend-910c: Ascend 910C",
                                 "docs/hardware.md#cloudmatrix-384: UB, RDMA plane",
                                 "assumption: the A3 server board equals a CloudMatrix node board"])


@register("cloudmatrix384", "CloudMatrix 384: 48 nodes x 8 Ascend 910C on a 2-tier UB Clos (7 L1/node, "
          "7 planes x 16 L2)", "huawei")
def cloudmatrix384(nodes=1, devices="npu", fabric="rail", oversubscription=1.0, leaf_ports=32, nic=None):
    """CloudMatrix 384 supernode; ``nodes`` counts supernodes, joined by the RDMA plane.

    ``devices="npu"``: 384 devices of 392 GB/s UB each; ``"die"``: 768 devices of 196 GB/s.
    The L1 chip ``k`` of every board connects to the 16 L2 chips of plane ``k`` with one UB link each
    (16 ports up for its 16 die links down: non-blocking in ports, as docs/hardware.md#cloudmatrix-384
    says), each at 24.7 GB/s, the measured node-to-node rate's share (module constants): the tiers
    deliver 210 / 170 / 150 GB/s per die pair (die to die, inside a node, across nodes) at a UB
    efficiency of 0.85, with latencies 0.2 / 0.7 / 2.1 us.

    Inside a supernode all traffic stays on UB; the RDMA plane is only built between supernodes and
    only rail-optimised (local rank ``j`` of every supernode on rail ``j``), so an RDMA path is always
    longer than the UB path inside a supernode.

    >>> t = cloudmatrix384()
    >>> t.num_devices, t.peak_bw_GBps()
    (384, 392.0)
    """
    check_choice("devices", devices, DEVICE_CHOICES)
    if fabric != "rail":
        raise ValueError(f"fabric={fabric!r}; cloudmatrix384 joins supernodes only by a rail-optimised RDMA "
                         "plane (fabric='rail'), so that traffic inside a supernode stays on UB")

    def build_node(g, s, first):
        devs = []
        l2 = [[f"s{s}.l2.p{k}.{m}" for m in range(L2_PER_PLANE)] for k in range(L2_PLANES)]
        for plane in l2:
            for sw in plane:
                g.add_node(sw, kind="switch", reduce=False, supernode=s)
        for b in range(BOARDS_PER_SUPERNODE):
            board_devs, l1 = _ub_board(g, f"s{s}.n{b}.", s * BOARDS_PER_SUPERNODE + b, first + len(devs), devices)
            for dev in board_devs:
                g.nodes[dev]["supernode"] = s
            devs.extend(board_devs)
            for k, sw in enumerate(l1):
                for top in l2[k]:
                    add_link(g, sw, top, bw_GBps=UB_L2_LINK_GBps, lat_us=UB_L2_LAT_US, link="ub")
        return devs

    rdma = RDMA_NPU_GBps if devices == "npu" else RDMA_DIE_GBps
    return build_system("cloudmatrix384", nodes, build_node, ScaleOut(rdma, "roce", RDMA_ATTACH_GBps), fabric=fabric,
                        variant="" if devices == "npu" else "die",
                        oversubscription=oversubscription, leaf_ports=leaf_ports, nic=nic, prefix=lambda s: f"s{s}.",
                        description=(f"384x Ascend 910C ({devices} devices) in 48 nodes; UB Clos 336 L1 + 112 L2 "
                                     "chips; RDMA plane between supernodes"),
                        sources=["docs/hardware.md#cloudmatrix-384: CloudMatrix 384 (arXiv 2506.12708)",
                                 "docs/hardware.md#cloudmatrix-384: measured UB tiers, 210 / 170 / 150 GB/s and "
                                 "0.2 / 0.7 / 2.1 us per die pair (StrataCL, second-hand)",
                                 "estimate: per-link UB rate 28 GB/s = 196 / 7; die-to-die and L1-L2 rates scaled "
                                 "by their tier's measured rate over 170"])
