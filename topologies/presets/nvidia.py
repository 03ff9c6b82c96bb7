"""NVIDIA HGX/DGX servers and the GB200 NVL72 rack.

Each NVSwitch chip is its own switch node, and every GPU has ``lanes`` NVLinks to each chip as in
docs/hardware.md#nvidia-nvlink (H100: 18 links split 5/5/4/4 over 4 chips; A100: 12 links,
2 to each of 6 chips). An edge GPU -> switch carries ``lanes x per-link rate`` per direction.

Note on routing: :mod:`topologies.routing` splits a pair's traffic over its equal-hop paths in
proportion to link bandwidth (weighted ECMP), so on the uneven 5/5/4/4 split a GPU sends 5/18, 5/18,
4/18 and 4/18 of its traffic through the four chips and reaches the full 18 x 25 = 450 GB/s line rate.
The H100-family presets also take ``nvswitch="plane"``: one switch node per NVLink *plane* (18 planes,
one link from every GPU to each). With weighted ECMP this changes neither routing nor, in effect,
timing: the capacities and hop latencies of the routes are the same, and simulated times match ``"chip"`` (the
only difference is that NVLS / ``in_network`` cuts its shards over 18 switches instead of 4, and the
rounding to whole elements moves its times by at most about 2 parts in 100,000). It changes the graph
only: 18 switch nodes instead of 4, so a what-if that removes a switch node takes out one plane (one
link per GPU) rather than one chip (4 or 5). The peak (:func:`topologies.peak.peak_bw_GBps`) is 450
either way.
"""

from __future__ import annotations

from ._common import (PCIE_GEN4_X16_GBps, PCIE_GEN5_X16_GBps, ScaleOut, add_device, build_system, check_choice,
                      link_devices_to_switches, register)
from ..model import switch_reduce_GBps

# docs/hardware.md#nccl-model: NCCL's NVLink ring LL latency is 0.6 us per GPU-to-GPU hop; a hop through an
# NVSwitch crosses two links (GPU->switch->GPU), so each link carries half of it.
NVLINK_LAT_US = 0.3
# docs/hardware.md#nvidia-nvlink (table): A100 300 GB/s uni over 12 links, H100 450 GB/s uni over 18 links
# (NVLink3 and NVLink4 are both 25 GB/s uni per link); B200 1.8 TB/s bidir = 900 uni over 18 (50 GB/s).
NVLINK3_GBps = 25.0
NVLINK4_GBps = 25.0
NVLINK5_GBps = 50.0
# docs/hardware.md#networks: InfiniBand NDR 400 Gb/s = 50 GB/s uni; HDR 200 Gb/s = 25 GB/s line rate.
NDR_GBps = 50.0
HDR_GBps = 25.0

_SOURCES_NVLINK = ["docs/hardware.md#nvidia-nvlink: NVLink table",
                   "docs/hardware.md#nccl-model: NCCL per-hop latencies",
                   "docs/hardware.md#networks: InfiniBand NDR/HDR"]


def _hgx(preset_name, *, gpus, lanes_per_switch, link_GBps, reduce, mem_bw_GBps, nic_GBps, pcie_GBps,
         nodes, fabric, oversubscription, leaf_ports, description, sources, nic=None):
    """``gpus`` GPUs on ``len(lanes_per_switch)`` NVSwitch chips, repeated over ``nodes`` servers."""

    def build_node(g, s, first):
        switches = [f"n{s}.nvs{k}" for k in range(len(lanes_per_switch))]
        # ``reduce``: False, or the switch generation whose chips reduce in the network (NVLS).
        attrs = ({"reduce": True, "switch_generation": reduce, "reduce_bw_GBps": switch_reduce_GBps(reduce)}
                 if reduce else {"reduce": False})
        for sw in switches:
            g.add_node(sw, kind="switch", node=s, **attrs)
        devs = [add_device(g, f"n{s}.gpu{j}", first + j, server=s, mem_bw_GBps=mem_bw_GBps) for j in range(gpus)]
        link_devices_to_switches(g, devs, switches, lanes_per_switch, link_GBps=link_GBps, lat_us=NVLINK_LAT_US,
                                 link="nvlink")
        return devs

    return build_system(preset_name, nodes, build_node, ScaleOut(nic_GBps, "ib", pcie_GBps), fabric=fabric,
                        oversubscription=oversubscription, leaf_ports=leaf_ports, nic=nic, description=description,
                        sources=_SOURCES_NVLINK + list(sources))


@register("dgx-a100", "DGX A100: 8 A100 SXM4, 12 NVLink3 each, 2 to each of 6 NVSwitch gen2 (300 GB/s uni)",
          "nvidia")
def dgx_a100(nodes=1, fabric="rail", oversubscription=1.0, leaf_ports=32, nic=None):
    """DGX/HGX A100 8-GPU.

    >>> dgx_a100().peak_bw_GBps()
    300.0
    """
    return _hgx("dgx-a100", gpus=8,
                # docs/hardware.md#nvidia-nvlink: A100 SXM4, 6 NVSwitch gen2, 2 links per switch
                lanes_per_switch=[2] * 6,
                link_GBps=NVLINK3_GBps,
                reduce=False,                     # docs/hardware.md#nvidia-nvlink: reduction needs NVSwitch gen3
                mem_bw_GBps=2039.0,               # estimate (docs/hardware.md#estimates): A100 80 GB data sheet
                # docs/hardware.md#networks: HDR 200 Gb/s; one per GPU assumed (DGX A100 layout)
                nic_GBps=HDR_GBps,
                pcie_GBps=PCIE_GEN4_X16_GBps,     # A100 is PCIe Gen4 (see _common)
                nodes=nodes, fabric=fabric, oversubscription=oversubscription, leaf_ports=leaf_ports, nic=nic,
                description="8x A100 SXM4; 6 NVSwitch gen2; 200G HDR NIC per GPU",
                sources=["estimate: HBM 2039 GB/s from the A100 80 GB data sheet"])


@register("hgx-a800", "HGX A800: 8 A800 SXM, 8 NVLink3 each (200 GB/s uni), NVSwitch gen2", "nvidia")
def hgx_a800(nodes=1, fabric="rail", oversubscription=1.0, leaf_ports=32, nic=None):
    """HGX A800 8-GPU (export-limited A100: 8 of 12 NVLinks).

    >>> hgx_a800().peak_bw_GBps()
    200.0
    """
    return _hgx("hgx-a800", gpus=8,
                # docs/hardware.md#nvidia-nvlink: A800 SXM 8 links, fabric "as A100". Which switch chips keep
                # links is not public; assumption: 2 links on each of 4 chips (any split shared by all GPUs gives
                # the same 200 GB/s: weighted ECMP spreads a GPU's traffic over its chips in proportion to its
                # links).
                lanes_per_switch=[2] * 4,
                # docs/hardware.md#nvidia-nvlink: 400 GB/s bidir over 8 links = 25 GB/s uni each
                link_GBps=NVLINK3_GBps,
                reduce=False,                     # NVSwitch gen2: no in-switch reduction
                mem_bw_GBps=2039.0,               # estimate (docs/hardware.md#estimates): as A100 80 GB
                nic_GBps=HDR_GBps,                # estimate (docs/hardware.md#estimates): as DGX A100, 200G HDR
                pcie_GBps=PCIE_GEN4_X16_GBps,
                nodes=nodes, fabric=fabric, oversubscription=oversubscription, leaf_ports=leaf_ports, nic=nic,
                description="8x A800 SXM; 8 NVLink3 per GPU on NVSwitch gen2; 200G HDR NIC per GPU",
                sources=["assumption: A800 links as 2 per chip on 4 of the 6 NVSwitch chips",
                         "estimate: HBM and NIC as DGX A100"])


NVSWITCH_CHOICES = ("chip", "plane")


def _hopper(preset_name, *, lanes, mem_bw_GBps, description, sources, nodes, fabric, oversubscription,
            leaf_ports, nvswitch="chip", nic=None):
    check_choice("nvswitch", nvswitch, NVSWITCH_CHOICES)
    if nvswitch == "plane":
        # One switch node per NVLink plane: same line rate, and with weighted ECMP the same routes and times
        # as one node per chip (module doc).
        lanes = [1] * sum(lanes)
        description += " (one switch node per NVLink plane)"
    return _hgx(preset_name, gpus=8, lanes_per_switch=lanes, link_GBps=NVLINK4_GBps,
                reduce="nvswitch3",               # docs/hardware.md#nvidia-nvlink: NVSwitch gen3 reduces (NVLS)
                mem_bw_GBps=mem_bw_GBps,
                nic_GBps=NDR_GBps,                # docs/hardware.md#networks: one 400G NIC per GPU (HGX H100)
                pcie_GBps=PCIE_GEN5_X16_GBps,     # Hopper is PCIe Gen5
                nodes=nodes, fabric=fabric, oversubscription=oversubscription, leaf_ports=leaf_ports, nic=nic,
                description=description, sources=sources)


# docs/hardware.md#nvidia-nvlink: H100 18 links per GPU split 5/5/4/4 over 4 NVSwitch gen3 (the topology dumps
# in NVIDIA/nccl-tests issue #256).
_H100_LANES = [5, 5, 4, 4]


@register("dgx-h100", "DGX H100: 8 H100 SXM, 18 NVLink4 split 5/5/4/4 over 4 NVSwitch gen3 (450 GB/s uni), NVLS",
          "nvidia")
def dgx_h100(nodes=1, fabric="rail", oversubscription=1.0, leaf_ports=32, nic=None, nvswitch="chip"):
    """DGX/HGX H100 8-GPU.

    >>> dgx_h100().peak_bw_GBps()
    450.0
    """
    return _hopper("dgx-h100", lanes=_H100_LANES,
                   mem_bw_GBps=3350.0,            # estimate (docs/hardware.md#estimates): H100 SXM data-sheet HBM3
                   description="8x H100 SXM; 4 NVSwitch gen3 with NVLS; 400G NDR NIC per GPU",
                   sources=["estimate: HBM 3350 GB/s from the H100 SXM data sheet"],
                   nodes=nodes, fabric=fabric, oversubscription=oversubscription, leaf_ports=leaf_ports, nic=nic,
                   nvswitch=nvswitch)


@register("hgx-h200", "HGX H200: as H100 (18 NVLink4, 5/5/4/4 over 4 NVSwitch gen3), NVLS", "nvidia")
def hgx_h200(nodes=1, fabric="rail", oversubscription=1.0, leaf_ports=32, nic=None, nvswitch="chip"):
    """HGX H200 8-GPU: H100's NVLink fabric, more and faster HBM."""
    return _hopper("hgx-h200", lanes=_H100_LANES,   # docs/hardware.md#nvidia-nvlink: H100 / H200 SXM row
                   mem_bw_GBps=4800.0,            # estimate (docs/hardware.md#estimates): H200 data-sheet HBM3e
                   description="8x H200 SXM; 4 NVSwitch gen3 with NVLS; 400G NDR NIC per GPU",
                   sources=["estimate: HBM 4800 GB/s from the H200 data sheet"],
                   nodes=nodes, fabric=fabric, oversubscription=oversubscription, leaf_ports=leaf_ports, nic=nic,
                   nvswitch=nvswitch)


@register("hgx-h800", "HGX H800: 8 H800 SXM, 8 NVLink4 each (200 GB/s uni), NVSwitch gen3, NVLS", "nvidia")
def hgx_h800(nodes=1, fabric="rail", oversubscription=1.0, leaf_ports=32, nic=None):
    """HGX H800 8-GPU (export-limited H100: 8 NVLinks).

    >>> hgx_h800().peak_bw_GBps()
    200.0
    """
    return _hopper("hgx-h800",
                   # docs/hardware.md#nvidia-nvlink: H800 SXM 8 links, fabric "as H100"; split assumed 2 per chip.
                   lanes=[2, 2, 2, 2],
                   mem_bw_GBps=3350.0,            # estimate (docs/hardware.md#estimates): as H100 SXM
                   description="8x H800 SXM; 8 NVLink4 per GPU on 4 NVSwitch gen3 with NVLS; 400G NIC per GPU",
                   sources=["assumption: H800 links 2 per NVSwitch chip", "estimate: HBM and NIC as H100"],
                   nodes=nodes, fabric=fabric, oversubscription=oversubscription, leaf_ports=leaf_ports, nic=nic)


@register("hgx-h20", "HGX H20: 8 H20, 18 NVLink4 (450 GB/s uni) over 4 NVSwitch gen3, NVLS, 4.0 TB/s HBM3",
          "nvidia")
def hgx_h20(nodes=1, fabric="rail", oversubscription=1.0, leaf_ports=32, nic=None, nvswitch="chip"):
    """HGX H20 8-GPU: H100's NVLink fabric, far less compute.

    >>> hgx_h20().peak_bw_GBps()
    450.0
    """
    return _hopper("hgx-h20", lanes=_H100_LANES,    # docs/hardware.md#nvidia-nvlink: H20 18 links, "as H100"
                   mem_bw_GBps=4000.0,            # docs/hardware.md#nvidia-nvlink: H20 96 GB HBM3 4.0 TB/s
                   description="8x H20; 4 NVSwitch gen3 with NVLS; 400G NDR NIC per GPU",
                   sources=["estimate: NIC as HGX H100"],
                   nodes=nodes, fabric=fabric, oversubscription=oversubscription, leaf_ports=leaf_ports, nic=nic,
                   nvswitch=nvswitch)


@register("hgx-b200", "HGX B200: 8 B200, 18 NVLink5 (900 GB/s uni) over 2 NVLink Switch gen4 chips, NVLS",
          "nvidia")
def hgx_b200(nodes=1, fabric="rail", oversubscription=1.0, leaf_ports=32, nic=None):
    """HGX B200 8-GPU.

    >>> hgx_b200().peak_bw_GBps()
    900.0
    """
    return _hgx("hgx-b200", gpus=8,
                # Estimate (docs/hardware.md#estimates): docs/hardware.md#nvidia-nvlink gives 18 links per GPU and
                # 72 GPUs x 18 links on 18 chips for NVL72, i.e. 72 ports per chip [E]; 8 GPUs x 18 links =
                # 144 ports = 2 chips, 9 links to each.
                lanes_per_switch=[9, 9],
                link_GBps=NVLINK5_GBps,
                reduce="nvswitch4",               # NVLink Switch gen4 keeps in-switch reduction (NVLS)
                mem_bw_GBps=8000.0,               # estimate (docs/hardware.md#estimates): B200 data-sheet HBM3e
                nic_GBps=NDR_GBps,                # estimate: one 400G NIC per GPU as on HGX H100
                pcie_GBps=PCIE_GEN5_X16_GBps,     # estimate: Gen5 host link
                nodes=nodes, fabric=fabric, oversubscription=oversubscription, leaf_ports=leaf_ports, nic=nic,
                description="8x B200; 2 NVLink Switch gen4 chips with NVLS; 400G NIC per GPU",
                sources=["estimate: 2 switch chips (port arithmetic), HBM 8000 GB/s, NIC 400G"])


@register("gb200-nvl72", "GB200 NVL72: 72 B200 in one NVLink5 domain, 18 switch chips, 1 link from each GPU to each",
          "nvidia")
def gb200_nvl72(nodes=1, fabric="rail", oversubscription=1.0, leaf_ports=32, nic=None):
    """GB200 NVL72 rack; ``nodes`` counts racks.

    >>> t = gb200_nvl72()
    >>> t.num_devices, t.peak_bw_GBps()
    (72, 900.0)
    """
    return _hgx("gb200-nvl72", gpus=72,
                lanes_per_switch=[1] * 18,        # docs/hardware.md#nvidia-nvlink: GB200 NVL72, 18 switch chips
                link_GBps=NVLINK5_GBps,           # docs/hardware.md#nvidia-nvlink: 1.8 TB/s bidir over 18 links
                reduce="nvswitch4",
                mem_bw_GBps=8000.0,               # estimate (docs/hardware.md#estimates): B200-class HBM3e
                nic_GBps=NDR_GBps,                # estimate: one 400G NIC per GPU
                pcie_GBps=PCIE_GEN5_X16_GBps,     # estimate
                nodes=nodes, fabric=fabric, oversubscription=oversubscription, leaf_ports=leaf_ports, nic=nic,
                description="72x B200 (Grace-Blackwell) in one NVLink domain of 18 switch chips; 400G NIC per GPU",
                sources=["estimate: HBM 8000 GB/s, NIC 400G per GPU"])
