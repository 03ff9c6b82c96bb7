"""ECMP routing: each flow hashed onto one equal-cost path (topologies.routing), against closed forms and
the adaptive split."""

import networkx as nx
import numpy as np
import pytest

from collectives import simulate
from topologies import Topology, add_link, preset, route_pairs
from topologies.network import StepSolver, StepTimer
from topologies.whatif import set_routing

BW = 25.0  # GB/s on every link


def leaf_spine(leaves=2, spines=2, per_leaf=2, link="roce"):
    """``leaves`` switches of ``per_leaf`` devices each, every leaf joined to every spine."""
    g = nx.DiGraph()
    for s in range(spines):
        g.add_node(f"spine{s}", kind="switch")
    d = 0
    for lf in range(leaves):
        g.add_node(f"leaf{lf}", kind="switch")
        for s in range(spines):
            add_link(g, f"leaf{lf}", f"spine{s}", bw_GBps=BW, lat_us=0.0, link=link)
        for _ in range(per_leaf):
            g.add_node(f"d{d}", kind="device", index=d)
            add_link(g, f"d{d}", f"leaf{lf}", bw_GBps=BW, lat_us=0.0, link=link)
            d += 1
    return Topology(g, name=f"leafspine{leaves}x{spines}")


def step_time(topo, src, dst, nbytes):
    timer = StepTimer(StepSolver(topo, model={"roce": {"efficiency": 1.0, "msg_us": 0.0}}))
    return timer.time(np.array(src), np.array(dst), np.full(len(src), float(nbytes)))[0]


def spine_of(topo, src, dst):
    routes = route_pairs(topo, np.array(src), np.array(dst))    # on the unmerged arrays: every spine
    a = topo.arrays
    out = []
    for k in range(len(src)):
        nodes = {a.nodes[a.edge_dst[e]] for e in routes.edge[routes.ptr[k]:routes.ptr[k + 1]]}
        out.append(sorted(n for n in nodes if str(n).startswith("spine")))
    return out


def test_roce_defaults_to_ecmp_and_ib_to_adaptive():
    assert leaf_spine().routing_text() == "ecmp on roce (seed 0)"
    assert leaf_spine(link="ib").routing_text() == "adaptive"
    assert preset("hgx-h20", nodes=2).routing_text() == "adaptive"
    assert preset("atlas800t-a2", nodes=2).routing_text() == "ecmp on roce (seed 0), adaptive elsewhere"


def test_two_flows_hashed_onto_one_uplink_take_twice_as_long():
    nbytes = 1e9
    one = nbytes / (BW * 1e9)
    collided, apart = [], []
    for seed in range(16):
        t = set_routing(leaf_spine(), "ecmp", seed=seed)
        spines = spine_of(t, [0, 1], [2, 3])
        assert all(len(s) == 1 for s in spines)          # one path per flow
        time_s = step_time(t, [0, 1], [2, 3], nbytes)
        if spines[0] == spines[1]:
            collided.append(seed)
            assert time_s == pytest.approx(2 * one, rel=1e-12)
        else:
            apart.append(seed)
            assert time_s == pytest.approx(one, rel=1e-12)
    assert collided and apart                            # the seed decides which flows collide
    again = set_routing(leaf_spine(), "ecmp", seed=collided[0])
    assert spine_of(again, [0, 1], [2, 3]) == spine_of(set_routing(leaf_spine(), "ecmp", seed=collided[0]),
                                                       [0, 1], [2, 3])
    # Adaptive splits each flow over both spines: never a collision.
    adaptive = set_routing(leaf_spine(), "adaptive")
    assert spine_of(adaptive, [0, 1], [2, 3]) == [["spine0", "spine1"]] * 2
    assert step_time(adaptive, [0, 1], [2, 3], nbytes) == pytest.approx(one, rel=1e-12)


def test_each_flow_of_a_pair_hashes_on_its_own():
    """Several flows between one pair (one per channel, each its own connection) may take different paths."""
    t = set_routing(leaf_spine(spines=8), "ecmp", seed=1)
    spines = spine_of(t, [0] * 8, [2] * 8)
    assert len({tuple(s) for s in spines}) > 1


def test_ecmp_spines_are_not_merged_as_twins():
    t = leaf_spine(leaves=4, spines=4)
    assert getattr(set_routing(t, "adaptive").arrays.routing, "merged", 0) == 3
    assert getattr(t.arrays.routing, "merged", 0) == 0


def test_collisions_slow_an_all_to_all_and_the_result_says_which_routing_ran():
    t = preset("atlas800t-a2", nodes=4)
    ecmp = simulate("alltoall", 1 << 26, t, algorithm="pairwise")
    adaptive = simulate("alltoall", 1 << 26, set_routing(t, "adaptive"), algorithm="pairwise")
    assert ecmp.routing == "ecmp on roce (seed 0), adaptive elsewhere" and adaptive.routing == "adaptive"
    assert ecmp.time_s > 1.2 * adaptive.time_s
    # A flow set with no path choice (inside a server) is the same under either routing.
    one = preset("atlas800t-a2")
    assert simulate("allreduce", 1 << 24, one).time_s == simulate("allreduce", 1 << 24, set_routing(one, "ecmp")).time_s


def test_bad_routing_arguments():
    t = leaf_spine()
    with pytest.raises(ValueError, match="routing 'spray'; expected one of adaptive, ecmp"):
        set_routing(t, "spray")
    with pytest.raises(ValueError, match="routing seed -1"):
        set_routing(t, "ecmp", seed=-1)
    with pytest.raises(TypeError, match="routing must be"):
        set_routing(t, 3)


def test_walking_routes_forwards_gives_the_backward_sweeps_routes(monkeypatch):
    """With the distance rows cached, hashed routes are walked forwards from the source; without them,
    backwards from the target: the same edges and shares either way."""
    from topologies import routing
    t = preset("atlas800t-a2", nodes=4, nic="roce:200:1:2")
    P = t.num_devices
    src = np.repeat(np.arange(P), 3)
    dst = (src + np.tile([1, 9, 17], P)) % P

    def routes(topo):
        r = route_pairs(topo, src, dst, topo.arrays.routing)
        return [sorted(zip(r.edge[r.ptr[k]:r.ptr[k + 1]].tolist(), np.round(r.frac[r.ptr[k]:r.ptr[k + 1]], 12)))
                for k in range(len(src))]

    forward = routes(set_routing(t, "ecmp", seed=4))
    monkeypatch.setattr(routing, "ROW_BUDGET_BYTES", 0)
    backward = routes(set_routing(t, "ecmp", seed=4))
    assert forward == backward
    assert any(len(r) > 2 for r in forward)     # the NVLink-free mesh side splits nothing, the NIC fabric hashes
