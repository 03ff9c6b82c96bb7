"""Other accelerators with fewer public numbers: Cambricon MLU370-X8, Moore Threads MCCX D800, Biren BR100.

docs/hardware.md#other-accelerators gives one aggregate link figure per card; how the links are wired
is not public. Every preset here is an 8-device full mesh that spreads the card's aggregate over its 7
peers (an estimate), with model parameters of its own (``_LINK_MODEL``, an estimate: no measurements
published; they are not topologies/model.py's NVLink parameters, see below).
"""

from __future__ import annotations

import itertools

from ..graph import add_link
from ._common import PCIE_GEN4_X16_GBps, PCIE_GEN5_X16_GBps, ScaleOut, add_device, build_system, register

# Estimate (docs/hardware.md#estimates): no latency data; NCCL's NVLink per-hop LL figure
# (docs/hardware.md#nccl-model).
LINK_LAT_US = 0.6
# Estimate (docs/hardware.md#estimates; no measurements published): efficiency 0.82 and a Simple message
# cost of 1 us. These are not topologies/model.py's fitted nvlink parameters (efficiency 0.7937, Simple
# message 17.6 us): the mlulink / mtlink / blink kinds have no LINK_DEFAULTS entry, so they start from
# "generic" and their LL128/LL message costs and call costs stay 0 (with nodes > 1 the pcie and roce
# kinds of the scale-out bring their own, NVLink-derived call costs).
_LINK_MODEL = {"efficiency": 0.82, "msg_us": 1.0}


def _mesh8(preset_name, *, per_card_uni_GBps, link, mem_bw_GBps, nic_GBps, pcie_GBps, description, sources,
           nodes, fabric, oversubscription, leaf_ports, nic=None):
    per_link = per_card_uni_GBps / 7.0

    def build_node(g, s, first):
        devs = [add_device(g, f"n{s}.dev{j}", first + j, server=s, mem_bw_GBps=mem_bw_GBps) for j in range(8)]
        for a, b in itertools.combinations(devs, 2):
            add_link(g, a, b, bw_GBps=per_link, lat_us=LINK_LAT_US, link=link)
        return devs

    return build_system(preset_name, nodes, build_node, ScaleOut(nic_GBps, "roce", pcie_GBps), fabric=fabric,
                        oversubscription=oversubscription, leaf_ports=leaf_ports, nic=nic, description=description,
                        sources=["docs/hardware.md#other-accelerators: link figures per card"] + list(sources),
                        model={link: _LINK_MODEL})


@register("mlu370-x8", "Cambricon MLU370-X8 x8 (estimate): MLU-Link 100 GB/s uni per card, as a full mesh", "others")
def mlu370_x8(nodes=1, fabric="rail", oversubscription=1.0, leaf_ports=32, nic=None):
    """8 Cambricon MLU370-X8 cards.

    >>> round(mlu370_x8().peak_bw_GBps(), 6)
    100.0
    """
    return _mesh8("mlu370-x8",
                  per_card_uni_GBps=100.0,     # docs/hardware.md#other-accelerators: MLU-Link 200 GB/s bidir per card
                  link="mlulink",
                  mem_bw_GBps=614.4,           # estimate (docs/hardware.md#estimates): MLU370-X8 LPDDR5 data sheet
                  nic_GBps=25.0,               # estimate: one 200 GbE RoCE NIC per card
                  pcie_GBps=PCIE_GEN4_X16_GBps,
                  description="8x MLU370-X8 (estimate: full mesh of MLU-Link, 200 GB/s bidir per card)",
                  sources=["estimate: wiring as full mesh, HBM/LPDDR bandwidth, 200G NIC"],
                  nodes=nodes, fabric=fabric, oversubscription=oversubscription, leaf_ports=leaf_ports, nic=nic)


@register("mccx-d800", "Moore Threads MCCX D800 (estimate): 8 MTT S4000, MTLink 240 GB/s per card, as a full mesh",
          "others")
def mccx_d800(nodes=1, fabric="rail", oversubscription=1.0, leaf_ports=32, nic=None):
    """MCCX D800 server, 8 MTT S4000.

    >>> round(mccx_d800().peak_bw_GBps(), 6)
    120.0
    """
    return _mesh8("mccx-d800",
                  # docs/hardware.md#other-accelerators: MTLink 240 GB/s per S4000 (direction not stated;
                  # taken as bidir -> 120 uni, estimate)
                  per_card_uni_GBps=120.0,
                  link="mtlink",
                  mem_bw_GBps=768.0,           # estimate (docs/hardware.md#estimates): S4000 GDDR6 data sheet
                  nic_GBps=25.0,               # estimate: one 200 GbE RoCE NIC per card
                  pcie_GBps=PCIE_GEN5_X16_GBps,
                  description="8x MTT S4000 (estimate: full mesh of MTLink, 240 GB/s bidir per card)",
                  sources=["estimate: MTLink 240 GB/s read as bidir; wiring as full mesh; memory; NIC"],
                  nodes=nodes, fabric=fabric, oversubscription=oversubscription, leaf_ports=leaf_ports, nic=nic)


@register("br100-8", "Biren BR100 x8 (estimate): 8 BLink ports, 2.3 TB/s total per chip, 8 chips directly connected",
          "others")
def br100_8(nodes=1, fabric="rail", oversubscription=1.0, leaf_ports=32, nic=None):
    """8 Biren BR100 in a direct full mesh.

    docs/hardware.md#other-accelerators: 8 BLink ports, 2.3 TB/s total, up to 8 chips directly connected.
    Estimate (docs/hardware.md#estimates): the total is bidir over 8 ports (143.75 GB/s uni per port); 7
    ports go to the 7 peers, the eighth is unused here.

    >>> round(br100_8().peak_bw_GBps(), 2)
    1006.25
    """
    port_uni_GBps = 2300.0 / 2 / 8
    return _mesh8("br100-8",
                  per_card_uni_GBps=7 * port_uni_GBps,
                  link="blink",
                  mem_bw_GBps=1640.0,          # estimate (docs/hardware.md#estimates): BR100 HBM2e data sheet
                  nic_GBps=25.0,               # estimate: one 200 GbE RoCE NIC per chip
                  pcie_GBps=PCIE_GEN5_X16_GBps,
                  description="8x BR100 (estimate: full mesh of BLink, 7 of 8 ports at 143.75 GB/s uni)",
                  sources=["estimate: 2.3 TB/s read as bidir over 8 ports; memory; NIC"],
                  nodes=nodes, fabric=fabric, oversubscription=oversubscription, leaf_ports=leaf_ports, nic=nic)
