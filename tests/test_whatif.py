"""What-if edits: copies, never mutations; failed links and nodes; jitter; bad names."""

import copy

import numpy as np
import pytest

import collectives
from topologies import full_mesh, paths, preset, ring, route_pairs
from topologies.model import resolve
from topologies.peak import own_peak_bw_GBps
from topologies.whatif import fail_link, fail_node, lost_direct_paths, scale_links, set_jitter, set_nodes


def snapshot(topo):
    g = topo.graph
    return (copy.deepcopy(dict(g.nodes(data=True))), copy.deepcopy({(u, v): d for u, v, d in g.edges(data=True)}),
            copy.deepcopy(g.graph))


@pytest.fixture(scope="module")
def a2():
    return preset("atlas800t-a2")


@pytest.fixture(scope="module")
def h100():
    return preset("dgx-h100")


def test_edits_never_mutate_the_input(a2, h100):
    before_a2, before_h = snapshot(a2), snapshot(h100)
    scale_links(a2, factor_bw=0.5, kind="hccs")
    scale_links(a2, factor_lat=3.0, links=[(0, 1)])
    fail_link(a2, 0, 1)
    fail_node(h100, "n0.nvs2")
    set_jitter(a2, "hccs", bw_sigma=0.1)
    assert snapshot(a2) == before_a2 and snapshot(h100) == before_h


def test_scale_links_by_kind(a2):
    t = scale_links(a2, factor_bw=0.5, factor_lat=2.0, kind="hccs")
    g = t.graph
    assert {d["bw_GBps"] for _, _, d in g.edges(data=True) if d["link"] == "hccs"} == {14.0}
    assert {d["lat_us"] for _, _, d in g.edges(data=True) if d["link"] == "hccs"} == {1.2}
    assert {d["bw_GBps"] for _, _, d in g.edges(data=True) if d["link"] == "pcie"} == {32.0}
    assert own_peak_bw_GBps(t) == 98.0 and t.peak_bw_GBps() == 196.0   # bus efficiency against the original
    assert "scale_links(kind=hccs)" in g.graph["whatifs"][-1]


def test_scale_links_by_pairs_of_indices_or_node_ids(a2):
    t = scale_links(a2, factor_bw=0.25, links=[(0, 1), ("n0.npu2", "n0.cpu1")])
    g = t.graph
    assert g["n0.npu0"]["n0.npu1"]["bw_GBps"] == g["n0.npu1"]["n0.npu0"]["bw_GBps"] == 7.0
    assert g["n0.cpu1"]["n0.npu2"]["bw_GBps"] == 8.0
    assert g["n0.npu0"]["n0.npu2"]["bw_GBps"] == 28.0
    single = scale_links(a2, factor_bw=2.0, links=(3, 4))            # one pair needs no list
    assert single.graph["n0.npu3"]["n0.npu4"]["bw_GBps"] == 56.0


@pytest.mark.parametrize("kwargs,match", [
    ({"factor_bw": 0}, "factor_bw=0"), ({"factor_bw": float("inf")}, "factor_bw"), ({"factor_lat": -1}, "factor_lat"),
    ({"kind": "nvlink"}, "no 'nvlink' links"), ({"links": [(0, "n0.nvs9")]}, "no node 'n0.nvs9'"),
    ({"links": [(0, 9)]}, "device index 9 out of range"), ({"links": [("n0.cpu0", "n0.npu7")]}, "no link between"),
    ({"links": [(0, 1)], "kind": "pcie"}, "no link .* matches"), ({"links": [(0, 1, 2)]}, "expected a pair"),
])
def test_scale_links_bad_input(a2, kwargs, match):
    with pytest.raises(ValueError, match=match):
        scale_links(a2, **kwargs)


def test_failed_hccs_link_routes_through_the_host(a2):
    t = fail_link(a2, 0, 1)
    assert not t.graph.has_edge("n0.npu0", "n0.npu1") and not t.graph.has_edge("n0.npu1", "n0.npu0")
    assert lost_direct_paths(a2, t) == [(0, 1)]
    assert paths(t, 0, 1) == [["n0.npu0", "n0.cpu0", "n0.npu1"]]
    assert route_pairs(t, np.array([0]), np.array([1])).hops[0] == 2
    note = t.graph.graph["whatifs"][-1]
    assert "lost their direct link: (0, 1)" in note and "n0.cpu0" in note
    assert own_peak_bw_GBps(t) == 168.0                  # 6 HCCS links left on NPU0 and NPU1
    assert t.peak_bw_GBps() == 196.0                      # ... but its bus efficiency is against the A2's
    # Pairs across CPUs route through two CPUs.
    t2 = fail_link(a2, "n0.npu0", "n0.npu7")
    assert paths(t2, 0, 7)[0][1:-1] == ["n0.cpu0", "n0.cpu3"]
    # The time plane sends the 0 -> 1 ring traffic over the host links.
    r = collectives.simulate("allreduce", 2**20, t, algorithm="ring")
    used = r.link_utilisation()
    assert used.get(("n0.npu0", "n0.cpu0"), 0) > 0 and used.get(("n0.cpu0", "n0.npu1"), 0) > 0


def test_failed_hccs_link_multi_node_still_uses_the_host():
    t = fail_link(preset("atlas800t-a2", nodes=2), 8, 9)
    assert paths(t, 8, 9) == [["n1.npu0", "n1.cpu0", "n1.npu1"]]


def test_fail_link_without_a_detour_names_the_pairs():
    with pytest.raises(ValueError, match=r"cuts off device pairs \(0, 1\)"):
        fail_link(preset("mi300x-8"), 0, 1)
    with pytest.raises(ValueError, match=r"cuts off device pairs \(0, 2\)"):
        fail_link(full_mesh(4), 2, 0)


def test_fail_link_missing(a2, h100):
    with pytest.raises(ValueError, match="no link between 'n0.gpu0' and 'n0.gpu1'"):
        fail_link(h100, 0, 1)
    with pytest.raises(ValueError, match="no node 'npu0'"):
        fail_link(a2, "npu0", 1)
    with pytest.raises(ValueError, match="out of range"):
        fail_link(a2, 0, 8)


def test_fail_switch_and_nic(h100):
    t = fail_node(h100, "n0.nvs0")
    assert "n0.nvs0" not in t.graph and own_peak_bw_GBps(t) == 325.0 and t.peak_bw_GBps() == 450.0
    last = fail_node(fail_node(t, "n0.nvs1"), "n0.nvs2")
    with pytest.raises(ValueError, match=r"failing switch n0.nvs3 .* cuts off device pairs \(0, 1\), \(0, 2\)"):
        fail_node(last, "n0.nvs3")
    # A NIC is the only way off its server for its NPU (NPUs do not relay).
    with pytest.raises(ValueError, match=r"\(0, 8\)"):
        fail_node(preset("atlas800t-a2", nodes=2), "n0.nic0")
    # A spine of a fat tree has redundancy.
    ft = preset("atlas800t-a2", nodes=4, fabric="fat-tree", leaf_ports=4)
    assert fail_node(ft, "fab.spine0").num_devices == 32


def test_fail_node_bad_input(h100):
    with pytest.raises(ValueError, match="no node 'n0.nvs9'"):
        fail_node(h100, "n0.nvs9")
    with pytest.raises(ValueError, match="devices cannot be failed"):
        fail_node(h100, 3)
    with pytest.raises(ValueError, match="is a device"):
        fail_node(h100, "n0.gpu3")


def test_set_jitter_stores_parameters(a2):
    t = set_jitter(a2, "hccs", bw_sigma=0.05, stall_prob=1e-3, stall_s=0.5)
    assert t.model["hccs"]["jitter"] == {"bw_sigma": 0.05, "stall_prob": 1e-3, "stall_s": 0.5}
    assert "hccs" not in a2.model
    params = resolve(t.model)
    assert params["hccs"]["jitter"]["bw_sigma"] == 0.05 and params["hccs"]["efficiency"] == 0.8
    again = set_jitter(t, "hccs", bw_sigma=0.2)
    assert again.model["hccs"]["jitter"] == {"bw_sigma": 0.2} and t.model["hccs"]["jitter"]["bw_sigma"] == 0.05
    # Existing overrides of the kind survive.
    socket = set_jitter(a2, "socket", bw_sigma=0.1).model["socket"]
    assert socket["efficiency"] == 0.8 and socket["jitter"] == {"bw_sigma": 0.1}
    assert a2.model["socket"]["efficiency"] == 0.8 and "jitter" not in a2.model["socket"]


@pytest.mark.parametrize("kind,params,match", [
    ("ib", {"bw_sigma": 0.1}, "no 'ib' links"), ("hccs", {}, "at least one"),
    ("hccs", {"bw_sigma": -1}, "bw_sigma=-1"), ("hccs", {"bw_sigma": float("nan")}, "bw_sigma=nan"),
    ("hccs", {"bw_sigma": [1]}, "bw_sigma="), ("hccs", {"sigma": 0.1}, "unknown link jitter parameter 'sigma'"),
    ("hccs", {"stall_prob": 2.0}, "probability"),
])
def test_set_jitter_bad_input(a2, kind, params, match):
    with pytest.raises(ValueError, match=match):
        set_jitter(a2, kind, **params)


def test_set_nodes_rebuilds_from_the_preset():
    from topologies.presets.huawei import atlas800t_a2
    assert set_nodes("atlas800t-a2", 2).num_devices == 16
    assert set_nodes(atlas800t_a2, 3).num_devices == 24
    assert set_nodes("cloudmatrix384", 1, devices="die").num_devices == 768
    with pytest.raises(ValueError, match="nodes=0"):
        set_nodes("atlas800t-a2", 0)


def test_lost_direct_paths_and_names():
    r = ring(4)
    t = scale_links(r, factor_bw=2.0, name="ring4-fast")
    assert t.name == "ring4-fast" and lost_direct_paths(r, t) == []
    assert lost_direct_paths(r, fail_link(r, 1, 2)) == [(1, 2)]
    with pytest.raises(ValueError, match="same devices"):
        lost_direct_paths(r, ring(5))


def test_select_devices_renumbers_and_times_the_group_on_its_own_links():
    from collectives import simulate
    from topologies.whatif import select_devices, take_devices
    t = preset("hgx-h20", nodes=2)
    tp = select_devices(t, [8, 9, 10, 11])           # four GPUs of the second server
    assert [tp.graph.nodes[n]["index"] for n in tp.devices] == [0, 1, 2, 3]
    assert tp.devices == [t.devices[i] for i in (8, 9, 10, 11)]
    same = take_devices(t, 4)                        # the same shape in the first server
    assert simulate("allreduce", 1 << 24, tp).time_s == pytest.approx(simulate("allreduce", 1 << 24, same).time_s)
    dp = select_devices(t, [11, 3])                  # order given is the order kept
    assert dp.devices == [t.devices[11], t.devices[3]]
    assert simulate("allreduce", 1 << 24, dp).time_s > 2 * simulate("allreduce", 1 << 24, tp).time_s
    assert select_devices(t, range(16)) is t
    for bad in ([], [0, 16], [1, 1], [0.5], "01"):
        with pytest.raises(ValueError, match="expected distinct device indices in 0..15"):
            select_devices(t, bad)


def test_select_devices_keeps_lost_links_between_kept_devices():
    from topologies.whatif import lost_links, select_devices
    t = fail_link(preset("atlas800t-a2"), 1, 5, on_lost="ring")
    assert lost_links(select_devices(t, [5, 0, 1])) == {(0, 2): "ring"}
    assert lost_links(select_devices(t, [0, 1, 2])) == {}
