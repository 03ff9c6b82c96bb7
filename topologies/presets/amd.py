"""AMD Instinct platforms: MI300X / MI308X (xGMI full mesh) and MI250X (partial mesh of 8 GCDs)."""

from __future__ import annotations

import itertools

from ..graph import add_link
from ._common import PCIE_GEN4_X16_GBps, PCIE_GEN5_X16_GBps, ScaleOut, add_device, build_system, register

# docs/hardware.md#mi300x: 64 GB/s uni rated per xGMI link (about 48 usable; topologies/model.py's xgmi
# efficiency 0.75 gives the usable figure).
XGMI_MI300_GBps = 64.0
# Estimate (docs/hardware.md#estimates): no source gives an xGMI latency; use NCCL's NVLink per-hop LL
# figure (0.6 us, docs/hardware.md#nccl-model) for one direct GPU-to-GPU hop.
XGMI_LAT_US = 0.6
# Estimate (docs/hardware.md#estimates): no source gives a NIC for AMD platforms; one 400G NIC per GPU as
# on HGX H100, modelled with the measured IB NDR figures (docs/hardware.md#networks).
NIC_400G_GBps = 50.0


def _mi300_mesh(preset_name, *, mem_bw_GBps, description, sources, nodes, fabric, oversubscription, leaf_ports,
                nic=None):
    def build_node(g, s, first):
        devs = [add_device(g, f"n{s}.gpu{j}", first + j, server=s, mem_bw_GBps=mem_bw_GBps) for j in range(8)]
        # docs/hardware.md#mi300x: full mesh, 7 xGMI links per GPU, one to each peer, no switch.
        for a, b in itertools.combinations(devs, 2):
            add_link(g, a, b, bw_GBps=XGMI_MI300_GBps, lat_us=XGMI_LAT_US, link="xgmi")
        return devs

    return build_system(preset_name, nodes, build_node,
                        # docs/hardware.md#mi300x: PCIe Gen5 x16 to the host
                        ScaleOut(NIC_400G_GBps, "ib", PCIE_GEN5_X16_GBps),
                        fabric=fabric, oversubscription=oversubscription, leaf_ports=leaf_ports, nic=nic,
                        description=description,
                        sources=["docs/hardware.md#mi300x: MI300X 8-GPU platform"] + list(sources))


@register("mi300x-8", "MI300X 8-GPU: full xGMI mesh, 7 links x 64 GB/s uni per GPU, no switch", "amd")
def mi300x_8(nodes=1, fabric="rail", oversubscription=1.0, leaf_ports=32, nic=None):
    """AMD Instinct MI300X platform (OAM, 8 GPUs).

    >>> mi300x_8().peak_bw_GBps()
    448.0
    """
    return _mi300_mesh("mi300x-8",
                       mem_bw_GBps=5300.0,        # docs/hardware.md#mi300x: HBM3 192 GB, 5.3 TB/s
                       description="8x MI300X; xGMI full mesh; 400G NIC per GPU (estimate)",
                       sources=["estimate: 400G NIC per GPU, xGMI hop latency"],
                       nodes=nodes, fabric=fabric, oversubscription=oversubscription, leaf_ports=leaf_ports, nic=nic)


@register("mi308x-8", "MI308X 8-GPU: assumed the MI300X xGMI mesh (no public link spec)", "amd")
def mi308x_8(nodes=1, fabric="rail", oversubscription=1.0, leaf_ports=32, nic=None):
    """AMD Instinct MI308X platform.

    Assumption (docs/hardware.md#mi308x): no public link spec; a 16-GPU allreduce measured consistent with
    an uncut mesh, so the MI300X mesh is used unchanged.
    """
    return _mi300_mesh("mi308x-8",
                       mem_bw_GBps=5300.0,        # estimate: 192 GB HBM as MI300X, bandwidth assumed the same
                       description="8x MI308X; assumed MI300X xGMI full mesh; 400G NIC per GPU (estimate)",
                       sources=["docs/hardware.md#mi308x: MI308X (modelled as the MI300X mesh)",
                                "assumption: link rates and HBM bandwidth as MI300X"],
                       nodes=nodes, fabric=fabric, oversubscription=oversubscription, leaf_ports=leaf_ports, nic=nic)


# docs/hardware.md#mi250x: 2 GCDs per package joined by 4 links (200 GB/s uni), 1-2 links of 50 GB/s uni
# between packages. Which GCDs the inter-package links join is not in the sources; estimate
# (docs/hardware.md#estimates): each GCD has one dual (100 GB/s) link around a ring of packages and one
# single (50 GB/s) link across it, so every GCD uses 4 + 2 + 1 = 7 xGMI links.
_MI250X_LINKS = ([((2 * p, 2 * p + 1), 4) for p in range(4)]                  # in-package quad links
                 + [((1, 2), 2), ((3, 4), 2), ((5, 6), 2), ((7, 0), 2)]        # dual links, package ring
                 + [((0, 4), 1), ((1, 5), 1), ((2, 6), 1), ((3, 7), 1)])       # single links, across
XGMI_MI250_LINK_GBps = 50.0   # docs/hardware.md#mi250x: 200 GB/s uni over 4 links; 50 GB/s uni per link


@register("mi250x-8", "MI250X 4 packages = 8 GCDs: quad links in a package, 1-2 links of 50 GB/s between "
          "(partial mesh)", "amd")
def mi250x_8(nodes=1, fabric="rail", oversubscription=1.0, leaf_ports=32, nic=None):
    """AMD Instinct MI250X node (4 OAM packages, 8 GCDs seen as 8 GPUs).

    GCDs relay traffic (``forward=True``) because Infinity Fabric routes between GCDs that share no
    link; the peak is bounded by the cut around each package (:mod:`topologies.peak`).

    >>> t = mi250x_8()
    >>> t.num_devices, t.injection_bw_GBps(0), t.peak_bw_GBps()
    (8, 350.0, 150.0)
    """
    def build_node(g, s, first):
        devs = []
        for j in range(8):
            devs.append(add_device(g, f"n{s}.gcd{j}", first + j, server=s,
                                   mem_bw_GBps=1600.0,     # estimate: ROCm mi250.md, 1.6 TB/s HBM2e per GCD
                                   package=f"n{s}.pkg{j // 2}"))
            g.nodes[devs[-1]]["forward"] = True
        for (a, b), lanes in _MI250X_LINKS:
            add_link(g, devs[a], devs[b], bw_GBps=lanes * XGMI_MI250_LINK_GBps, lat_us=XGMI_LAT_US, link="xgmi",
                     lanes=lanes)
        return devs

    return build_system("mi250x-8", nodes, build_node,
                        # estimate: one 200G NIC per GCD (Slingshot-class Ethernet), PCIe Gen4 host link
                        ScaleOut(25.0, "roce", PCIE_GEN4_X16_GBps), fabric=fabric,
                        oversubscription=oversubscription, leaf_ports=leaf_ports, nic=nic,
                        description="4x MI250X = 8 GCDs; non-uniform xGMI partial mesh; 200G NIC per GCD (estimate)",
                        sources=["docs/hardware.md#mi250x: MI250X",
                                 "estimate: which GCD pairs get dual/single links; NIC; HBM from ROCm mi250.md"])
