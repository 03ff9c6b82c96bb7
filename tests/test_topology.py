"""Topology validation, builders and routing."""

import networkx as nx
import numpy as np
import pytest

from topologies import Topology, add_link, full_mesh, paths, ring, route_pairs, switch, torus, two_level


def test_builders():
    assert ring(6).num_devices == 6 and ring(1).num_devices == 1
    assert full_mesh(8, bw_GBps=28.0).injection_bw_GBps(3) == 196.0
    assert switch(5).graph.number_of_nodes() == 6
    assert torus((3, 4)).num_devices == 12
    t = two_level(3, 4, fabric="fat-tree", leaf_ports=4)
    assert t.num_devices == 12 and {"ib", "pcie", "nvlink"} <= set(t.link_kinds)
    assert two_level(4, 2, fabric="rail", leaf_ports=2).num_devices == 8


def test_equal_cost_paths_listed_and_split():
    t = two_level(2, 2, fabric="fat-tree", leaf_ports=2)  # two leaves, two spines
    ps = paths(t, 0, 3)
    assert len(ps) == 2 and all(len(p) == 7 for p in ps)
    r = route_pairs(t, np.array([0]), np.array([3]))
    spine_edges = [f for e, f in zip(r.edge, r.frac) if "spine" in str(t.arrays.edges[e])]
    assert sorted(spine_edges) == [0.5] * 4
    # Every hop of the route carries the whole flow in total.
    assert np.isclose(r.frac.sum(), 6.0) and r.hops[0] == 6


def test_devices_do_not_forward_unless_allowed():
    t = full_mesh(3)
    assert paths(t, 0, 2) == [["dev0", "dev2"]]
    assert paths(ring(4), 0, 2) in ([["dev0", "dev1", "dev2"], ["dev0", "dev3", "dev2"]],)


def _graph():
    g = nx.DiGraph()
    g.add_node("a", kind="device", index=0)
    g.add_node("b", kind="device", index=1)
    add_link(g, "a", "b", bw_GBps=1.0)
    return g


@pytest.mark.parametrize("edit,match", [
    (lambda g: g.nodes["b"].update(index=0), "duplicate device index 0"),
    (lambda g: g.nodes["b"].update(index=2), "missing index 1"),
    (lambda g: g.nodes["b"].update(index=None), "has index None"),
    (lambda g: g.nodes["b"].update(kind="gpu"), "kind 'gpu'"),
    (lambda g: g.edges["a", "b"].update(bw_GBps=0.0), "bw_GBps=0.0"),
    (lambda g: g.edges["a", "b"].update(bw_GBps=float("inf")), "bw_GBps=inf"),
    (lambda g: g.edges["a", "b"].update(bw_GBps=float("nan")), "bw_GBps=nan"),
    (lambda g: g.edges["a", "b"].update(lat_us=-1.0), "lat_us=-1.0"),
    (lambda g: g.remove_edge("b", "a"), "no reverse edge"),
    (lambda g: g.add_node("c", kind="device", index=2), "devices 0 and 2 cannot reach each other"),
    (lambda g: g.remove_nodes_from(["a", "b"]), "no device nodes"),
])
def test_validation_names_the_offender(edit, match):
    g = _graph()
    edit(g)
    with pytest.raises(ValueError, match=match):
        Topology(g)


def test_builder_arguments_checked():
    for call, match in [(lambda: ring(0), "n=0"), (lambda: two_level(0, 8), "nodes=0"),
                        (lambda: two_level(2, 2, fabric="mesh"), "fabric='mesh'"),
                        (lambda: torus(()), "dims"), (lambda: Topology("x"), "DiGraph")]:
        with pytest.raises((ValueError, TypeError), match=match):
            call()


def test_topology_keeps_its_own_copy():
    g = _graph()
    t = Topology(g)
    g.edges["a", "b"]["bw_GBps"] = 99.0
    assert t.graph.edges["a", "b"]["bw_GBps"] == 1.0
