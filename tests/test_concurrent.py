"""Concurrent collectives of several groups on one fabric (collectives.concurrent)."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest

from collectives import simulate
from collectives.concurrent import Call, group_key, simulate_concurrent
from collectives.moe import topk_counts
from topologies import Topology, preset, switch
from topologies.builders import add_devices, add_link
from topologies.whatif import select_devices


def _dumbbell(bw_bottleneck=10.0):
    """Devices 0, 1 on switch A, 2, 3 on switch B, A-B one link of ``bw_bottleneck`` GB/s; no latency
    and the generic link kind (no message or call costs)."""
    g = nx.DiGraph(name="dumbbell")
    d = add_devices(g, 4)
    for s in ("swA", "swB"):
        g.add_node(s, kind="switch")
    for i in (0, 1):
        add_link(g, d[i], "swA", bw_GBps=100.0, lat_us=0.0)
    for i in (2, 3):
        add_link(g, d[i], "swB", bw_GBps=100.0, lat_us=0.0)
    add_link(g, "swA", "swB", bw_GBps=bw_bottleneck, lat_us=0.0)
    return Topology(g)


@pytest.fixture(scope="module")
def h20x2():
    return preset("hgx-h20", nodes=2)


# -- acceptance: disjoint groups on a non-blocking fabric, and a shared bottleneck ---------------------

@pytest.mark.parametrize("algorithm", ["ring", "direct", "auto"])
def test_disjoint_groups_on_a_non_blocking_fabric_take_the_time_of_one(algorithm):
    t = switch(4, bw_GBps=10.0, lat_us=0.0)
    one = simulate_concurrent(t, [("allreduce", 8_000_000, [0, 1])], algorithm=algorithm).calls[0].time_s
    two = simulate_concurrent(t, [("allreduce", 8_000_000, [0, 1]), ("allreduce", 8_000_000, [2, 3])],
                              algorithm=algorithm)
    assert [c.time_s for c in two.calls] == [one, one]
    assert two.time_s == one


@pytest.mark.parametrize("algorithm", ["ring", "direct", "auto"])
@pytest.mark.parametrize("sync", ["time", "step"])
def test_groups_sharing_a_bottleneck_link_take_twice_as_long(algorithm, sync):
    t = _dumbbell()
    one = simulate_concurrent(t, [("allreduce", 8_000_000, [0, 2])], algorithm=algorithm).calls[0]
    # Alone: every byte crosses the 10 GB/s link A-B: 2 x 4 MB each way = 0.8 ms.
    assert one.time_s == pytest.approx(8e-4, rel=1e-12)
    two = simulate_concurrent(t, [("allreduce", 8_000_000, [0, 2]), ("allreduce", 8_000_000, [1, 3])],
                              algorithm=algorithm, sync=sync)
    for c in two.calls:
        assert c.time_s == pytest.approx(2 * one.time_s, rel=1e-12)
        assert c.slowdown == pytest.approx(2.0, rel=1e-12)
    # Inside each side nothing is shared: pairs (0, 1) and (2, 3) on the same fabric take the time of one.
    apart = simulate_concurrent(t, [("allreduce", 8_000_000, [0, 1]), ("allreduce", 8_000_000, [2, 3])],
                                algorithm=algorithm, sync=sync)
    assert [c.slowdown for c in apart.calls] == [1.0, 1.0]


def test_tensor_parallel_groups_of_two_servers_run_as_if_alone(h20x2):
    # NVLS (in-network reduction) on each server's own switches: nothing shared.
    calls = [("allreduce", 64 << 20, list(range(8))), ("allreduce", 64 << 20, list(range(8, 16)))]
    r = simulate_concurrent(h20x2, calls, dtype="bfloat16")
    alone = simulate("allreduce", 64 << 20, select_devices(h20x2, list(range(8))), dtype="bfloat16")
    assert r.calls[0].algorithm == alone.algorithm == "in_network"
    assert [c.time_s for c in r.calls] == pytest.approx([alone.time_s] * 2, rel=1e-12)


# -- a call alone is simulate() on its group's sub-system --------------------------------------------

@pytest.mark.parametrize("collective, nbytes, group", [
    ("allreduce", 64 << 20, list(range(8))),           # NVLS: switches as endpoints
    ("allreduce", 1 << 20, list(range(8))),            # LL protocol
    ("allreduce", 64 << 20, list(range(16))),          # hierarchical across servers
    ("reduce_scatter", 64 << 20, list(range(16))),
    ("allgather", 16 << 20, [1, 9]),                   # one device per server
    ("alltoallv", "counts", list(range(0, 16, 2))),    # uneven all-to-all
])
def test_one_call_alone_is_simulate_on_its_sub_system(h20x2, collective, nbytes, group):
    if nbytes == "counts":
        nbytes = topk_counts(len(group), 256, 7168, seed=0)
    r = simulate_concurrent(h20x2, [(collective, nbytes, group)], dtype="bfloat16")
    want = simulate(collective, nbytes, select_devices(h20x2, group), dtype="bfloat16")
    c = r.calls[0]
    assert c.time_s == pytest.approx(want.time_s, rel=1e-9)
    assert c.alone_s == want.time_s and c.algorithm == want.algorithm and c.protocol == want.protocol


def test_hccl_pieces_and_library_rate_match_simulate():
    t = preset("atlas800t-a2", nodes=2)
    for nbytes, group in ((256 << 20, list(range(16))), (64 << 20, list(range(8)))):
        r = simulate_concurrent(t, [("allreduce", nbytes, group)], dtype="bfloat16")
        want = simulate("allreduce", nbytes, select_devices(t, group), dtype="bfloat16")
        assert r.calls[0].library == "hccl"
        assert r.calls[0].time_s == pytest.approx(want.time_s, rel=1e-9)


# -- reports: bytes per link by group, contention --------------------------------------------------------

def test_link_bytes_by_group_and_contention():
    t = _dumbbell()
    r = simulate_concurrent(t, [Call("allreduce", 8_000_000, (0, 2), label="a", algorithm="ring"),
                                Call("allreduce", 8_000_000, (1, 3), label="b", algorithm="ring")])
    per = r.link_bytes_by()
    assert set(per) == {"a", "b"}
    assert np.allclose(per["a"] + per["b"], r.link_bytes)
    ab = r.edges.index(("swA", "swB"))
    # A ring allreduce of 2 devices sends half the buffer each way in each of its 2 steps: 8 MB over A->B.
    assert per["a"][ab] == pytest.approx(8e6) and per["b"][ab] == pytest.approx(8e6)
    shared = r.contention()
    assert {tuple(s["edge"]) for s in shared} == {("swA", "swB"), ("swB", "swA")}
    assert shared[0]["bytes"] == {"a": pytest.approx(8e6), "b": pytest.approx(8e6)}
    assert shared[0]["utilisation"] == pytest.approx(1.0)
    assert r.busiest_link()[0] in (("swA", "swB"), ("swB", "swA"))
    assert "slowdown" in r.table() and r.as_dict()["calls"][0]["label"] == "a"


def test_start_times_and_dependencies():
    t = _dumbbell()
    one = simulate_concurrent(t, [("allreduce", 8_000_000, [0, 2])], algorithm="ring").calls[0].time_s
    # The second call waits for the first: no overlap, each takes its time alone.
    r = simulate_concurrent(t, [("allreduce", 8_000_000, [0, 2]), ("allreduce", 8_000_000, [1, 3], [0])],
                            algorithm="ring")
    a, b = r.calls
    assert b.start_s == a.end_s and a.time_s == pytest.approx(one) and b.time_s == pytest.approx(one)
    # Started half-way through the first one's run, the second shares the link for part of it.
    r = simulate_concurrent(t, [("allreduce", 8_000_000, [0, 2]), ("allreduce", 8_000_000, [1, 3], one / 2)],
                            algorithm="ring")
    a, b = r.calls
    assert b.start_s == pytest.approx(one / 2)
    assert one < a.time_s < 2 * one and one < b.time_s <= 2 * one


def test_stop_when_times_a_phase_under_background_traffic():
    t = _dumbbell()
    r = simulate_concurrent(t, [("allreduce", 8_000_000, [0, 2]), ("allreduce", 80_000_000, [1, 3])],
                            algorithm="ring", stop_when=[0])
    assert r.calls[0].time_s == pytest.approx(1.6e-3)        # shared the bottleneck all the way
    assert np.isnan(r.calls[1].end_s)


def test_group_key_shares_equivalent_groups_only():
    t = preset("hgx-h20", nodes=4)
    assert group_key(t, range(8)) == group_key(t, range(8, 16))
    assert group_key(t, [0, 8, 16]) == group_key(t, [3, 11, 19])
    assert group_key(t, [0, 1]) != group_key(t, [0, 2])
    assert group_key(switch(4), [0, 1]) != group_key(switch(4), [2, 3])   # no servers: no sharing


@pytest.mark.parametrize("calls, match", [
    ([("allreduce", 1024, [0, 0])], "distinct device indices"),
    ([("allreduce", 1024, [0, 9])], "distinct device indices"),
    ([("allreduce", 1024, [0, 1], [1]), ("allreduce", 1024, [2, 3], [0])], "dependency cycle"),
    ([("allreduce", 1024, [0, 1], [5])], "dependency 5"),
    ([("nosuch", 1024, [0, 1])], "nosuch"),
    ([("allreduce", 1024, [0, 1], -1.0)], "start_s"),
    ([("allreduce", 1024)], "expected a Call"),
])
def test_bad_calls_raise_one_line(calls, match):
    with pytest.raises((ValueError, TypeError), match=match):
        simulate_concurrent(switch(4), calls)


def test_step_alignment_needs_common_start():
    with pytest.raises(ValueError, match="sync='step'"):
        simulate_concurrent(switch(4), [("allreduce", 1024, [0, 1]), ("allreduce", 1024, [2, 3], [0])], sync="step")
    with pytest.raises(ValueError, match="sync="):
        simulate_concurrent(switch(4), [("allreduce", 1024, [0, 1])], sync="lockstep")
