"""Presets of real systems: device counts, peaks, structure, multi-node wrapper, bad options."""

import math

import numpy as np
import pytest

import collectives
from topologies import load_topology, preset, presets, route_pairs
from topologies.io import save_json
from topologies.peak import scaleout_bw_GBps

# (preset, options) -> (devices, per-device peak GB/s); peaks from hardware.md line rates.
EXPECTED = {
    ("dgx-a100", ()): (8, 300.0),             # 12 x 25
    ("hgx-a800", ()): (8, 200.0),             # 8 x 25
    ("dgx-h100", ()): (8, 450.0),             # 18 x 25
    ("dgx-h100", (("nvswitch", "plane"),)): (8, 450.0),
    ("hgx-h200", ()): (8, 450.0),
    ("hgx-h800", ()): (8, 200.0),
    ("hgx-h20", ()): (8, 450.0),
    ("hgx-b200", ()): (8, 900.0),             # 18 x 50
    ("gb200-nvl72", ()): (72, 900.0),
    ("mi300x-8", ()): (8, 448.0),             # 7 x 64
    ("mi308x-8", ()): (8, 448.0),
    ("mi250x-8", ()): (8, 150.0),             # package cut: (2 x 100 + 2 x 50) / 2
    ("atlas800-9000", ()): (8, 90.0),         # 3 x 30
    ("atlas800t-a2", ()): (8, 196.0),         # 7 x 28
    ("atlas800t-a3", ()): (8, 392.0),
    ("atlas800t-a3", (("devices", "die"),)): (16, 196.0),
    ("cloudmatrix384", ()): (384, 392.0),
    ("cloudmatrix384", (("devices", "die"),)): (768, 196.0),
    ("mlu370-x8", ()): (8, 100.0),
    ("mccx-d800", ()): (8, 120.0),
    ("br100-8", ()): (8, 7 * 2300.0 / 16),
}

REQUIRED = {"dgx-a100", "hgx-a800", "dgx-h100", "hgx-h800", "hgx-h20", "hgx-b200", "gb200-nvl72", "mi300x-8",
            "mi308x-8", "mi250x-8", "atlas800-9000", "atlas800t-a2", "atlas800t-a3", "cloudmatrix384",
            "mlu370-x8", "mccx-d800", "br100-8"}


def _nodes_of(topo, kind):
    return [n for n, d in topo.graph.nodes(data=True) if d["kind"] == kind]


def test_registry_lists_every_required_preset_sorted():
    names = presets()
    assert names == sorted(names)
    assert REQUIRED <= set(names)
    assert {name for name, _ in EXPECTED} == set(names)


@pytest.mark.parametrize("name,options", sorted(EXPECTED), ids=lambda x: x if isinstance(x, str) else "")
def test_preset_builds_with_expected_devices_and_peak(name, options):
    topo = preset(name, **dict(options))
    devices, peak = EXPECTED[(name, options)]
    assert topo.num_devices == devices
    assert math.isclose(topo.peak_bw_GBps(), peak, rel_tol=1e-9)
    assert [topo.graph.nodes[n]["index"] for n in topo.devices] == list(range(devices))
    meta = topo.graph.graph
    assert meta["description"] and meta["sources"] and meta["preset"] == name
    assert any("hardware.md" in s for s in meta["sources"])
    # One server: no scale-out NICs or fabric.
    assert not _nodes_of(topo, "nic") and scaleout_bw_GBps(topo) is None


def test_nvswitch_chips_and_lanes():
    h100 = preset("dgx-h100")
    switches = sorted(_nodes_of(h100, "switch"))
    assert len(switches) == 4 and all(h100.graph.nodes[s]["reduce"] for s in switches)
    lanes = [h100.graph["n0.gpu0"][s]["lanes"] for s in switches]
    assert lanes == [5, 5, 4, 4]
    assert h100.graph["n0.gpu0"]["n0.nvs0"]["bw_GBps"] == 125.0
    a100 = preset("dgx-a100")
    sw = _nodes_of(a100, "switch")
    assert len(sw) == 6 and not any(a100.graph.nodes[s]["reduce"] for s in sw)
    assert {a100.graph["n0.gpu3"][s]["lanes"] for s in sw} == {2}
    assert len(_nodes_of(preset("dgx-h100", nvswitch="plane"), "switch")) == 18
    assert len(_nodes_of(preset("gb200-nvl72"), "switch")) == 18
    assert preset("hgx-h20").graph.nodes["n0.gpu0"]["mem_bw_GBps"] == 4000.0


def test_mesh_presets_are_direct():
    mi = preset("mi300x-8")
    assert not _nodes_of(mi, "switch") and mi.graph["n0.gpu0"]["n0.gpu7"]["bw_GBps"] == 64.0
    a2 = preset("atlas800t-a2")
    g = a2.graph
    assert all(g.has_edge(a, b) and g[a][b]["link"] == "hccs" and g[a][b]["bw_GBps"] == 28.0
               for a in a2.devices for b in a2.devices if a != b)
    # Every NPU has a host path (PCIe to a CPU).
    assert all(any(g.nodes[v]["kind"] == "cpu" and g[n][v]["link"] == "pcie" for v in g.successors(n))
               for n in a2.devices)
    old = preset("atlas800-9000")
    assert old.graph.has_edge("n0.npu0", "n0.npu3") and not old.graph.has_edge("n0.npu0", "n0.npu4")
    mi250 = preset("mi250x-8")
    assert mi250.graph["n0.gcd0"]["n0.gcd1"]["bw_GBps"] == 200.0 and not mi250.graph.has_edge("n0.gcd0", "n0.gcd2")


def test_cloudmatrix_structure():
    cm = preset("cloudmatrix384")
    switches = _nodes_of(cm, "switch")
    assert len([s for s in switches if ".l2." in s]) == 112 and len(switches) == 336 + 112
    g = cm.graph
    assert sum(d["bw_GBps"] for _, _, d in g.out_edges("s0.n0.npu0", data=True)) == 392.0
    # L1 chip: 16 die links down (as 8 NPU edges of 2 lanes), 16 links up (non-blocking in ports), the up
    # links at the measured node-to-node rate's share (150 of the 170 GB/s inside a node).
    down = sum(g["s0.n0.npu0"]["s0.n0.ub0"]["bw_GBps"] for _ in range(8))
    ups = [d["bw_GBps"] for _, v, d in g.out_edges("s0.n0.ub0", data=True) if ".l2." in v]
    assert down == 448.0 and len(ups) == 16 and math.isclose(sum(ups), 448.0 * 150 / 170)
    die = preset("cloudmatrix384", devices="die")
    assert die.graph["s0.n3.npu2.die0"]["s0.n3.npu2.die1"]["lat_us"] == 0.2
    assert die.device_node(767) == "s0.n47.npu7.die1"


@pytest.mark.parametrize("name,per_node,nic_GBps,nic_kind",
                         [("dgx-h100", 8, 50.0, "ib"), ("dgx-a100", 8, 25.0, "ib"), ("atlas800t-a2", 8, 25.0, "roce"),
                          ("mi300x-8", 8, 50.0, "ib"), ("mi250x-8", 8, 25.0, "roce"),
                          ("atlas800t-a3", 8, 50.0, "roce")])
def test_nodes_multiply_devices_and_add_a_fabric(name, per_node, nic_GBps, nic_kind):
    one = preset(name)
    topo = preset(name, nodes=3)
    assert topo.num_devices == 3 * per_node and topo.name == f"{name}-x3"
    nics = _nodes_of(topo, "nic")
    assert len(nics) == topo.num_devices
    assert nic_kind in topo.link_kinds and "pcie" in topo.link_kinds
    # Indices dense, server by server; every device has its own NIC over PCIe.
    for i, dev in enumerate(topo.devices):
        assert topo.graph.nodes[dev]["node"] == i // per_node
        assert topo.graph[dev][f"n{i // per_node}.nic{i % per_node}"]["link"] == "pcie"
    assert topo.peak_bw_GBps() == one.peak_bw_GBps()
    assert scaleout_bw_GBps(topo) == nic_GBps
    # Devices of different servers are routable (first and last device).
    routes = route_pairs(topo, np.array([0]), np.array([topo.num_devices - 1]))
    assert routes.hops[0] >= 4


def test_fabric_choice_and_oversubscription():
    rail = preset("atlas800t-a2", nodes=4, fabric="rail", leaf_ports=4)
    tree = preset("atlas800t-a2", nodes=4, fabric="fat-tree", leaf_ports=4)
    over = preset("atlas800t-a2", nodes=4, fabric="fat-tree", leaf_ports=4, oversubscription=2)
    spines = [len([s for s in _nodes_of(t, "switch") if "spine" in s]) for t in (rail, tree, over)]
    assert spines == [4, 4, 2]
    # Rail: NIC j of every server on leaf j.
    leaf_of = {n: next(v for v in rail.graph.successors(n) if "leaf" in v) for n in _nodes_of(rail, "nic")}
    assert leaf_of["n0.nic3"] == leaf_of["n3.nic3"] != leaf_of["n0.nic2"]
    assert tree.graph.graph["fabric"] == "fat-tree"


def test_cloudmatrix_supernodes_use_rail_rdma_only():
    with pytest.raises(ValueError, match="rail"):
        preset("cloudmatrix384", nodes=2, fabric="fat-tree")


def test_simulate_uses_the_preset_peak():
    r = collectives.simulate("allreduce", 2**20, preset("dgx-h100"), algorithm="ring")
    assert r.peak_GBps == 450.0 and 0 < r.bus_efficiency < 1


@pytest.mark.parametrize("options,match", [
    ({"nodes": 0}, "nodes=0"), ({"nodes": -2}, "nodes=-2"), ({"nodes": 1.5}, "nodes=1.5"),
    ({"nodes": True}, "nodes=True"),
    ({"fabric": "torus"}, "fabric="), ({"oversubscription": 0.5}, "oversubscription"),
    ({"leaf_ports": 1}, "leaf_ports"), ({"colour": "red"}, "no option 'colour'"),
])
def test_bad_options_raise_one_clear_error(options, match):
    with pytest.raises(ValueError, match=match):
        preset("atlas800t-a2", **options)


def test_bad_choice_options():
    with pytest.raises(ValueError, match="devices='chip'"):
        preset("cloudmatrix384", devices="chip")
    with pytest.raises(ValueError, match="nvswitch"):
        preset("dgx-h100", nvswitch="one")


def test_unknown_preset_lists_the_valid_names():
    with pytest.raises(ValueError, match="unknown preset 'dgx-h1000'") as err:
        preset("dgx-h1000")
    assert all(name in str(err.value) for name in presets())


def test_load_topology_names_and_files(tmp_path):
    assert load_topology("atlas800t-a2", nodes=2).num_devices == 16
    path = tmp_path / "a2.json"
    save_json(preset("atlas800t-a2"), path)
    assert load_topology(str(path)).num_devices == 8
    with pytest.raises(ValueError, match="applies to presets and NCCL XML files"):
        load_topology(str(path), nodes=2)
    with pytest.raises(ValueError, match="valid presets: .*dgx-h100"):
        load_topology("no-such-system")
    other = tmp_path / "a2.txt"
    other.write_text("x")
    with pytest.raises(ValueError, match="unknown extension"):
        load_topology(str(other))
