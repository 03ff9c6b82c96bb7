"""The network model: closed forms, max-min contention, limits, determinism, bad input."""

import math

import networkx as nx
import numpy as np
import pytest

from topologies.whatif import set_model

import collectives
from topologies import Topology, add_link, full_mesh, ring, switch, two_level
from topologies.network import simulate_transfers

REL = 1e-9


def close(a, b, rel=REL):
    return math.isclose(a, b, rel_tol=rel, abs_tol=0.0)


def chain(caps_GBps, lat_us=0.0):
    """Devices d0 - d1 - ... in a line; middle devices relay."""
    g = nx.DiGraph()
    n = len(caps_GBps) + 1
    for i in range(n):
        g.add_node(f"d{i}", kind="device", index=i, forward=0 < i < n - 1)
    for i, c in enumerate(caps_GBps):
        add_link(g, f"d{i}", f"d{i + 1}", bw_GBps=c, lat_us=lat_us)
    return Topology(g, name="chain")


# -- closed forms on uniform, contention-free topologies (generic links: efficiency 1, no message cost) --

@pytest.mark.parametrize("P", [2, 3, 5, 8])
def test_ring_allreduce_closed_form(P):
    # T = 2(P-1) (alpha + n / (P B)), alpha = one hop's latency, n divisible by P.
    alpha, B, n = 2e-6, 25e9, 4 * P * 1024 * 1024
    r = collectives.simulate("allreduce", n, ring(P, bw_GBps=B / 1e9, lat_us=alpha * 1e6), algorithm="ring",
                             channels=1)
    assert close(r.time_s, 2 * (P - 1) * (alpha + n / (P * B)))


@pytest.mark.parametrize("P", [2, 3, 7, 8])
def test_direct_allgather_on_full_mesh_closed_form(P):
    # T = alpha + (n/P) / B: every device sends its n/P block over P-1 separate links at once.
    alpha, B = 1.5e-6, 28e9
    n = P * 4 * 250_000
    r = collectives.simulate("allgather", n, full_mesh(P, bw_GBps=28.0, lat_us=1.5), algorithm="direct")
    assert close(r.time_s, alpha + (n / P) / B)


@pytest.mark.parametrize("P", [2, 4, 5])
def test_pairwise_alltoall_through_switch_closed_form(P):
    # T = (P-1) (alpha + (n/P) / B), alpha = 2 hops (device -> switch -> device), n = bytes sent per device.
    hop, B = 0.7e-6, 50e9
    n = P * 4 * 100_000
    r = collectives.simulate("alltoall", n, switch(P, bw_GBps=50.0, lat_us=0.7), algorithm="pairwise")
    assert close(r.time_s, (P - 1) * (2 * hop + (n / P) / B))


# -- contention -------------------------------------------------------------------------------------

def test_two_flows_on_one_link_get_half_each():
    r = simulate_transfers(ring(2, bw_GBps=10.0, lat_us=0.0), [0, 0], [1, 1], [1e9, 1e9])
    assert close(r.end_s[0], 0.2) and close(r.end_s[1], 0.2)
    one = simulate_transfers(ring(2, bw_GBps=10.0, lat_us=0.0), [0], [1], [1e9])
    assert close(one.time_s, 0.1)


def test_textbook_max_min_three_flows_two_links():
    # L1 (d0->d1) 1 GB/s, L2 (d1->d2) 2 GB/s. A: d0->d2 over L1 and L2, B: d0->d1, C: d1->d2.
    # Progressive filling: L1 saturates first at 0.5 for A and B; C takes the rest of L2, 1.5.
    # 1 GB each: C ends at 1/1.5 s; A and B stay capped by L1 at 0.5 and end at 2 s.
    t = chain([1.0, 2.0])
    r = simulate_transfers(t, [0, 0, 1], [2, 1, 2], [1e9, 1e9, 1e9])
    assert close(r.end_s[2], 1 / 1.5)
    assert close(r.end_s[0], 2.0) and close(r.end_s[1], 2.0)


def test_rates_recomputed_when_a_flow_ends():
    # 0.5 GB and 1.5 GB share a 1 GB/s link: the first ends at 1 s, the second then runs alone: 2 s.
    r = simulate_transfers(ring(2, bw_GBps=1.0, lat_us=0.0), [0, 0], [1, 1], [0.5e9, 1.5e9])
    assert close(r.end_s[0], 1.0) and close(r.end_s[1], 2.0)


def test_dependencies_and_latency():
    r = simulate_transfers(ring(2, bw_GBps=1.0, lat_us=5.0), [0, 1], [1, 0], [1e9, 1e9], deps=[[], [0]])
    assert close(r.start_s[1], 1.0 + 5e-6) and close(r.end_s[1], 2.0 + 10e-6)


def test_alltoall_across_two_nodes_is_bounded_by_the_nics():
    # 2 nodes x 4 devices, fast intra-node switch (200 GB/s), 10 GB/s NICs. In a direct all-to-all
    # every device sends 4 blocks of m bytes to the other node through its own NIC: 4 m / 10 GB/s.
    t = two_level(2, 4, intra_bw_GBps=200.0, intra_lat_us=0.0, intra_link="generic", nic_bw_GBps=10.0,
                  nic_lat_us=0.0, nic_link="generic", pcie_bw_GBps=1000.0, pcie_lat_us=0.0, fabric="switch")
    m = 1_000_000
    r = collectives.simulate("alltoall", 8 * m, t, algorithm="direct", model={"pcie": {"msg_us": 0.0, "call_us": 0.0}})
    assert close(r.time_s, 4 * m / 10e9, rel=1e-6)
    fast = two_level(2, 4, intra_bw_GBps=200.0, intra_lat_us=0.0, intra_link="generic", nic_bw_GBps=100.0,
                     nic_lat_us=0.0, nic_link="generic", pcie_bw_GBps=1000.0, pcie_lat_us=0.0, fabric="switch")
    assert collectives.simulate("alltoall", 8 * m, fast, algorithm="direct",
                                model={"pcie": {"msg_us": 0.0, "call_us": 0.0}}).time_s < r.time_s / 5


def test_ring_over_a_shared_link_is_slowed():
    # Devices 0, 2 on switch A and 1, 3 on switch B, one 10 GB/s link between the switches.
    # The ring 0->1->2->3->0 crosses it twice in each direction: each crossing gets 5 GB/s.
    g = nx.DiGraph()
    for i in range(4):
        g.add_node(f"d{i}", kind="device", index=i)
    g.add_node("A", kind="switch")
    g.add_node("B", kind="switch")
    for i in range(4):
        add_link(g, f"d{i}", "A" if i % 2 == 0 else "B", bw_GBps=100.0, lat_us=0.0)
    add_link(g, "A", "B", bw_GBps=10.0, lat_us=0.0)
    n = 4 * 1_000_000
    r = collectives.simulate("allreduce", n, Topology(g), algorithm="ring", channels=1)
    assert close(r.time_s, 6 * (n / 4) / 5e9)


# -- large messages reach the links' usable bandwidth ----------------------------------------------

@pytest.mark.parametrize("topo,alg,coll,bw", [
    (ring(8, bw_GBps=50.0, link="nvlink"), "ring", "allreduce", 50.0),
    (full_mesh(8, bw_GBps=28.0, link="hccs"), "direct", "allgather", 28.0 * 7),
    (switch(8, bw_GBps=450.0, link="nvlink"), "ring", "allreduce", 450.0),
])
def test_busbw_tends_to_link_bandwidth_times_efficiency(topo, alg, coll, bw):
    from topologies.model import LINK_DEFAULTS

    eff = LINK_DEFAULTS[topo.link_kinds[0]]["efficiency"]
    r = collectives.simulate(coll, 8 * 2**30, topo, algorithm=alg, protocol="simple",
                             **({"channels": 1} if alg == "ring" else {}))
    assert 0.99 * bw * eff <= r.busbw_GBps <= bw * eff * (1 + 1e-9)


def test_model_overrides_per_topology_and_per_call():
    t = ring(4, bw_GBps=10.0, lat_us=0.0)
    kw = dict(algorithm="ring", channels=1, protocol="simple")
    base = collectives.simulate("allreduce", 4 * 2**20, t, **kw).time_s
    half = collectives.simulate("allreduce", 4 * 2**20, t, model={"generic": {"efficiency": 0.5}}, **kw).time_s
    assert close(half, 2 * base)
    assert close(collectives.simulate("allreduce", 4 * 2**20, set_model(t, {"generic": {"efficiency": 0.5}}),
                                      **kw).time_s, half)


def test_protocol_regimes():
    # On NVLink, LL pays less per message and gets half the bandwidth: it wins small messages,
    # Simple wins large ones, and auto takes the faster of the regimes.
    t = switch(8, bw_GBps=450.0, lat_us=0.3, link="nvlink")
    small = {p: collectives.simulate("allreduce", 4096, t, protocol=p, channels=1) for p in ("ll", "simple", "auto")}
    big = {p: collectives.simulate("allreduce", 1 << 34, t, protocol=p, channels=1) for p in ("ll", "simple", "auto")}
    assert small["ll"].time_s < small["simple"].time_s and small["auto"].protocol == "ll"
    assert big["simple"].time_s < big["ll"].time_s and big["auto"].protocol == "simple"
    assert close(big["ll"].busbw_GBps / big["simple"].busbw_GBps, 0.5, rel=2e-2)
    with pytest.raises(ValueError, match="unknown protocol 'fast'"):
        collectives.simulate("allreduce", 4096, t, protocol="fast")


def test_reduction_cost_uses_device_memory_bandwidth():
    # Streaming reduction: a step lasts max(network, bytes / (mem_bw / 3)).
    fast = collectives.simulate("reduce_scatter", 8 * 2**20, ring(4, bw_GBps=10.0, lat_us=0.0), algorithm="ring",
                                channels=1)
    slow_mem = collectives.simulate("reduce_scatter", 8 * 2**20, ring(4, bw_GBps=10.0, lat_us=0.0, mem_bw_GBps=6.0),
                                    algorithm="ring", channels=1)
    chunk = 2 * 2**20
    assert close(fast.time_s, 3 * chunk / 10e9)
    assert close(slow_mem.time_s, 3 * chunk / 2e9)


def test_results_are_deterministic_bit_for_bit():
    t = two_level(3, 4, fabric="fat-tree", leaf_ports=4)
    a = [collectives.simulate(c, 3 * 2**20, t, algorithm=alg).time_s
         for c, alg in [("allreduce", "ring"), ("alltoall", "pairwise"), ("allgather", "direct")]]
    t2 = two_level(3, 4, fabric="fat-tree", leaf_ports=4)
    b = [collectives.simulate(c, 3 * 2**20, t2, algorithm=alg).time_s
         for c, alg in [("allreduce", "ring"), ("alltoall", "pairwise"), ("allgather", "direct")]]
    assert a == b


def test_result_fields():
    r = collectives.simulate("allreduce", 2**20, switch(4, bw_GBps=100.0), algorithm="ring")
    assert r.P == 4 and r.nbytes == 2**20 and r.peak_GBps == 100.0
    assert close(r.busbw_GBps, r.algbw_GBps * 1.5) and close(r.bus_efficiency, r.busbw_GBps / 100.0)
    assert sum(s["repeat"] for s in r.steps) == 6
    util = r.link_utilisation()
    assert util and all(0 < u <= 1 + 1e-9 for u in util.values())


# -- bad input ---------------------------------------------------------------------------------------

def test_transfer_to_unknown_device():
    with pytest.raises(ValueError, match="device 5, not in topology"):
        simulate_transfers(ring(3), [0], [5], [10])


def test_negative_bytes():
    with pytest.raises(ValueError, match=r"nbytes=-1"):
        simulate_transfers(ring(3), [0], [1], [-1])


def test_dependency_cycle():
    with pytest.raises(ValueError, match="cycle"):
        simulate_transfers(ring(3), [0, 1], [1, 2], [1, 1], deps=[[1], [0]])


def test_unreachable_devices():
    g = nx.DiGraph()
    for i in range(3):
        g.add_node(i, kind="device", index=i)
    add_link(g, 0, 1, bw_GBps=1.0)
    add_link(g, 1, 2, bw_GBps=1.0)  # device 1 does not relay: 0 and 2 are cut off
    with pytest.raises(ValueError, match="devices 0 and 2 cannot reach each other"):
        Topology(g)


def test_simulate_bad_sizes():
    with pytest.raises(ValueError, match="not a multiple of the float32 element size"):
        collectives.simulate("allreduce", 1001, ring(2))
    with pytest.raises(ValueError, match="nbytes=-8"):
        collectives.simulate("allreduce", -8, ring(2))
    with pytest.raises(ValueError, match="efficiency"):
        collectives.simulate("allreduce", 8, ring(2), model={"generic": {"efficiency": 0}})
    with pytest.raises(ValueError, match="unknown model parameter 'eff'"):
        collectives.simulate("allreduce", 8, ring(2), model={"generic": {"eff": 0.5}})
