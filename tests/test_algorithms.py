"""The algorithms real libraries use (issue #5): correctness, closed-form costs, busbw, auto-selection.

Closed forms are Thakur, Rabenseifner and Gropp (2005), "Optimization of collective communication
operations in MPICH", with ``alpha`` the latency of one message, ``beta`` seconds per byte on one
link and ``gamma`` seconds per byte reduced. Generic links have efficiency 1 and no message or call
cost, so on a full mesh ``alpha`` is one link's ``lat_us`` and on a non-blocking ``switch`` two hops'.
Devices without ``mem_bw_GBps`` reduce for free (``gamma = 0``); with it, a device reduces at
``mem_bw / 3`` bytes/s (read two buffers, write one), so ``gamma = 3 / mem_bw``. The model streams a
reduction with the transfer that feeds it (a step takes ``max(alpha + s beta, s gamma)``), except
recursive doubling, which reduces a received buffer in a step of its own (TRG's additive form).
"""

import math
import time

import networkx as nx
import numpy as np
import pytest

import collectives
from collectives import registry
from collectives.tuning import default_params
from collectives.algorithms.tree import double_tree, depths
from collectives.api import build_schedule
from collectives.kernels import OPS
from collectives.registry import AlgorithmUnavailable
from topologies import Topology, add_link, full_mesh, switch, two_level

CASES = [(c, a) for c in registry.COLLECTIVES for a in registry.list_algorithms(c)]
NEEDS_TOPOLOGY = {"hierarchical", "in_network"}


def close(a, b, rel=1e-9):
    return math.isclose(a, b, rel_tol=rel, abs_tol=0.0)


def small_ints(shape, seed, op):
    """Integer data every reduction order handles exactly (products stay small)."""
    rng = np.random.default_rng(seed)
    if op == "prod":
        return rng.choice([-1, 1, 1, 2], size=shape)
    return rng.integers(-3, 4, size=shape)


def check_run(coll, alg, P, count, op, dtype="int32", root=None, **params):
    spec = registry.collective(coll)
    root = P // 2 if root is None else root
    data = small_ints(spec.input_shape(P, count), P * 7919 + count, op).astype(dtype if op != "avg" else "float32")
    out = collectives.run(coll, data, alg, op=op, root=root, **params)
    ref = collectives.reference(coll, data, op, root=root)
    np.testing.assert_array_equal(out, ref, err_msg=f"{coll}/{alg} P={P} count={count} {op} {params}")


# -- correctness: data plane against numpy, and the checker ---------------------------------------

def test_every_collective_has_algorithms():
    assert registry.list_algorithms("broadcast") == ["binomial", "ring"]
    assert registry.list_algorithms("reduce") == ["binomial", "ring"]
    data = np.arange(12, dtype=np.float32).reshape(3, 4)
    np.testing.assert_array_equal(collectives.run("broadcast", data, root=1), np.tile(data[1], (3, 1)))


@pytest.mark.parametrize("coll,alg", CASES)
def test_run_matches_numpy_for_17_device_counts(coll, alg):
    ops = OPS if registry.collective(coll).reduces else ["sum"]
    for P in filter(registry.collective(coll).supports, range(1, 18)):   # hypercube: powers of two
        for op in ops:
            check_run(coll, alg, P, 3 * P + 1, op)        # counts that do not divide evenly
        check_run(coll, alg, P, 1, "sum")                  # fewer elements than chunks
        check_run(coll, alg, P, 0, "sum", root=0)


@pytest.mark.parametrize("coll,alg", CASES)
def test_checker_proves_every_algorithm_up_to_64_devices(coll, alg):
    spec = registry.collective(coll)
    for P in filter(spec.supports, list(range(1, 18)) + [24, 31, 32, 33, 48, 63, 64]):
        for count in (2 * P + 1, 5):
            collectives.check(build_schedule(coll, alg, P, count, root=(3 * P) // 4), spec)


@pytest.mark.parametrize("coll,alg", [("allreduce", "ring"), ("reduce_scatter", "ring"), ("allgather", "ring"),
                                      ("broadcast", "ring"), ("reduce", "ring"), ("allreduce", "tree")])
def test_channels_and_chunks_keep_results_exact(coll, alg):
    spec = registry.collective(coll)
    for P in (1, 2, 3, 5, 8, 12):
        for channels in (1, 2, 3, 7):
            for chunks in (1, 2, 5):
                collectives.check(build_schedule(coll, alg, P, 4 * P + 3, root=P - 1, channels=channels,
                                                 chunks=chunks), spec)
        for op in OPS if spec.reduces else ["sum"]:
            check_run(coll, alg, P, 4 * P + 3, op, channels=3, chunks=2)


@pytest.mark.parametrize("nodes,per_node", [(1, 4), (2, 1), (2, 3), (3, 4), (4, 2), (5, 3)])
@pytest.mark.parametrize("coll", ["allreduce", "reduce_scatter", "allgather", "alltoall"])
def test_hierarchical_on_two_level_topologies(coll, nodes, per_node):
    topo = two_level(nodes, per_node, fabric="switch")
    spec = registry.collective(coll)
    if nodes == 1 or per_node == 1:
        with pytest.raises(AlgorithmUnavailable, match="one server|one device per server"):
            build_schedule(coll, "hierarchical", topo.num_devices, 4, topology=topo)
        return
    P = topo.num_devices
    variants = [{}] if coll == "alltoall" else [{}, {"intra": "ring", "inter": "direct"},
                                                {"intra": "halving_doubling", "inter": "halving_doubling"}]
    if coll != "allreduce" and coll != "alltoall":
        variants.append({"intra": "bruck", "inter": "bruck"})
    for params in variants:
        collectives.check(build_schedule(coll, "hierarchical", P, 2 * P + 1, topology=topo, **params), spec)
        for op in OPS if spec.reduces else ["sum"]:
            check_run(coll, "hierarchical", P, 2 * P + 1, op, topology=topo, **params)
    r = collectives.simulate(coll, 4 * P * P * 64, topo, algorithm="hierarchical")
    assert r.time_s > 0
    assert r.params == ({} if coll == "alltoall" else {"intra": "direct", "inter": "ring"})


def test_hierarchical_groups_devices_by_their_node_attribute_not_their_index():
    # Servers hold devices {0, 2, 4} and {1, 3, 5}: groups follow the attribute.
    g = nx.DiGraph(name="interleaved")
    for i in range(6):
        g.add_node(f"d{i}", kind="device", index=i, node=i % 2)
    for s in (0, 1):
        g.add_node(f"sw{s}", kind="switch")
        for i in range(s, 6, 2):
            add_link(g, f"d{i}", f"sw{s}", bw_GBps=100.0)
    add_link(g, "sw0", "sw1", bw_GBps=10.0)
    topo = Topology(g)
    s = build_schedule("allreduce", "hierarchical", 6, 13, topology=topo)
    assert s.info["nodes"] == 2 and s.info["per_node"] == 3
    intra = [ph for ph in s.phases if ph.name.startswith("intra")]
    assert all(((ph.src % 2) == (ph.dst % 2)).all() for ph in intra)
    for op in OPS:
        check_run("allreduce", "hierarchical", 6, 13, op, topology=topo)


@pytest.mark.parametrize("P", [1, 2, 3, 8, 13])
def test_in_network_on_reducing_switches(P):
    spec = registry.collective("allreduce")
    one = switch(P, reduce=True)
    # Two reducing switch chips with 2 and 1 lanes from every device: shards of 2/3 and 1/3.
    g = nx.DiGraph(name="two-chips")
    for i in range(P):
        g.add_node(f"d{i}", kind="device", index=i)
    for k, lanes in enumerate((2, 1)):
        g.add_node(f"nvs{k}", kind="switch", reduce=True)
        for i in range(P):
            add_link(g, f"d{i}", f"nvs{k}", bw_GBps=25.0 * lanes, lanes=lanes)
    two = Topology(g)
    for topo in (one, two):
        for chunks in (1, 2, 5):
            s = build_schedule("allreduce", "in_network", P, 3 * P + 2, topology=topo, chunks=chunks)
            collectives.check(s, spec)
            for op in OPS:
                check_run("allreduce", "in_network", P, 3 * P + 2, op, topology=topo, chunks=chunks)
    s = build_schedule("allreduce", "in_network", P, 3000, topology=two, chunks=1)
    if P > 1:
        assert s.info["switches"] == ["nvs0", "nvs1"] and s.chunk_len.tolist() == [2000, 1000]


def test_double_binary_tree_is_complementary():
    for P in range(2, 40):
        p1, p2 = double_tree(P)
        for par in (p1, p2):
            assert (par < 0).sum() == 1
            kids = np.bincount(par[par >= 0], minlength=P)
            assert kids.max() <= 2
            assert depths(par).max() <= math.ceil(math.log2(P)) + 1
        if P % 2 == 0:  # NCCL's mirror: no device is an inner node of both trees
            inner1 = np.bincount(p1[p1 >= 0], minlength=P) > 0
            inner2 = np.bincount(p2[p2 >= 0], minlength=P) > 0
            assert not (inner1 & inner2).any()


# -- closed forms (contention-free uniform topologies) ---------------------------------------------

B_GBPS, LAT_US = 10.0, 2.0
BETA = 1.0 / (B_GBPS * 1e9)


def topo_and_alpha(kind, P, **kw):
    if kind == "mesh":
        return full_mesh(P, bw_GBps=B_GBPS, lat_us=LAT_US, **kw), LAT_US * 1e-6
    return switch(P, bw_GBps=B_GBPS, lat_us=LAT_US / 2, **kw), LAT_US * 1e-6  # two hops of 1 us


def sim(coll, nbytes, topo, alg, **params):
    return collectives.simulate(coll, nbytes, topo, algorithm=alg, protocol="simple", **params).time_s


KINDS = ["mesh", "switch"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("P", [2, 3, 5, 8, 12])
def test_ring_closed_forms(kind, P):
    topo, a = topo_and_alpha(kind, P)
    n = 4 * P * 3000
    # allreduce: 2(P-1) alpha + 2 (P-1)/P n beta
    assert close(sim("allreduce", n, topo, "ring", channels=1), 2 * (P - 1) * a + 2 * (P - 1) / P * n * BETA)
    # allgather / reduce_scatter (n = P m): (P-1) alpha + (P-1)/P n beta
    for coll in ("allgather", "reduce_scatter"):
        assert close(sim(coll, n, topo, "ring", channels=1), (P - 1) * a + (P - 1) / P * n * BETA)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("P", [2, 4, 8, 16])
def test_recursive_doubling_and_halving_closed_forms(kind, P):
    topo, a = topo_and_alpha(kind, P)
    lg = int(math.log2(P))
    n = 4 * P * 1000
    # allgather recursive doubling: lg P alpha + (P-1)/P n beta
    assert close(sim("allgather", n, topo, "recursive_doubling"), lg * a + (P - 1) / P * n * BETA)
    # reduce_scatter recursive halving: lg P alpha + (P-1)/P n beta (+ (P-1)/P n gamma, 0 here)
    assert close(sim("reduce_scatter", n, topo, "recursive_halving"), lg * a + (P - 1) / P * n * BETA)
    # allreduce Rabenseifner: 2 lg P alpha + 2 (P-1)/P n beta
    assert close(sim("allreduce", n, topo, "halving_doubling"), 2 * lg * a + 2 * (P - 1) / P * n * BETA)
    # allreduce recursive doubling: lg P alpha + n lg P beta
    assert close(sim("allreduce", n, topo, "recursive_doubling"), lg * (a + n * BETA))


@pytest.mark.parametrize("P", [4, 8])
def test_gamma_terms(P):
    mem = 6.0                                  # GB/s: reduces at 2 GB/s, slower than the 10 GB/s links
    gamma = 3.0 / (mem * 1e9)
    topo, a = topo_and_alpha("mesh", P, mem_bw_GBps=mem)
    lg = int(math.log2(P))
    n = 4 * P * 50_000
    # recursive doubling, TRG's additive form: lg P alpha + n lg P beta + n lg P gamma
    assert close(sim("allreduce", n, topo, "recursive_doubling"), lg * (a + n * BETA) + lg * n * gamma)
    # streamed reductions: every step max(alpha + s beta, s gamma); here s gamma wins.
    s = n / P
    assert close(sim("reduce_scatter", n * P, topo, "ring", channels=1), (P - 1) * max(a + n * BETA, n * gamma))
    halving = sum(max(a + s * (P >> (k + 1)) * BETA, s * (P >> (k + 1)) * gamma) for k in range(lg))
    assert close(sim("allreduce", n, topo, "halving_doubling"), halving + sum(a + s * (1 << k) * BETA
                                                                                for k in range(lg)))
    # binomial reduce: ceil(lg P) max(alpha + n beta, n gamma)
    assert close(sim("reduce", n, topo, "binomial"), lg * max(a + n * BETA, n * gamma))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("P", [2, 3, 5, 6, 8, 11, 16])
def test_bruck_and_pairwise_closed_forms(kind, P):
    topo, a = topo_and_alpha(kind, P)
    steps = math.ceil(math.log2(P))
    m = 4 * 1000                               # bytes per block
    n = P * m
    # allgather / reduce_scatter Bruck: ceil(lg P) alpha + (P-1)/P n beta
    assert close(sim("allgather", n, topo, "bruck"), steps * a + (P - 1) / P * n * BETA)
    assert close(sim("reduce_scatter", n, topo, "bruck"), steps * a + (P - 1) / P * n * BETA)
    # alltoall pairwise exchange: (P-1) alpha + (P-1)/P n beta
    assert close(sim("alltoall", n, topo, "pairwise"), (P - 1) * a + (P - 1) / P * n * BETA)
    # alltoall Bruck: step k sends the blocks whose index has bit k set; for a power of two that is
    # n/2 every step: lg P alpha + (n/2) lg P beta.
    per_step = [sum(1 for j in range(P) if j >> k & 1) * m for k in range(steps)]
    assert close(sim("alltoall", n, topo, "bruck"), steps * a + sum(per_step) * BETA)
    if P & (P - 1) == 0:
        assert close(sum(per_step), n / 2 * steps)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("P", [2, 3, 7, 8])
def test_broadcast_and_reduce_closed_forms(kind, P):
    topo, a = topo_and_alpha(kind, P)
    n = 4 * 6000
    # binomial tree: ceil(lg P) (alpha + n beta)
    for coll in ("broadcast", "reduce"):
        assert close(sim(coll, n, topo, "binomial"), math.ceil(math.log2(P)) * (a + n * BETA))
    # pipelined chain of C chunks: (P - 2 + C) (alpha + n/C beta)
    for C in (1, 4, 6):
        for coll in ("broadcast", "reduce"):
            assert close(sim(coll, n, topo, "ring", channels=1, chunks=C), (P - 2 + C) * (a + n / C * BETA))


@pytest.mark.parametrize("P", [2, 4, 8])
def test_in_network_closed_form(P):
    # Up copies of chunk t and down copies of chunk t-1 share a step (opposite link directions),
    # one hop each way: (C + 1) (lat + n/C beta); the switch reduces for free.
    topo = switch(P, bw_GBps=B_GBPS, lat_us=LAT_US, reduce=True)
    n = 4 * 12000
    for C in (1, 3, 8):
        assert close(sim("allreduce", n, topo, "in_network", chunks=C), (C + 1) * (LAT_US * 1e-6 + n / C * BETA))


# -- bandwidth: channels, meshes and switches --------------------------------------------------------

BIG = 256 << 20


def test_full_mesh_auto_uses_all_links_and_one_ring_uses_one():
    topo = full_mesh(8, bw_GBps=28.0, link="hccs")
    link = 28.0 * 0.8                          # hccs efficiency
    best = collectives.simulate("allreduce", BIG, topo, algorithm="best")
    assert best.busbw_GBps >= 0.9 * 7 * link
    one = collectives.simulate("allreduce", BIG, topo, algorithm="ring", channels=1)
    assert 0.9 * link <= one.busbw_GBps <= link * (1 + 1e-9)
    # The default ring runs the 14 mesh rings, which use all 7 links of a device alike ...
    seven = collectives.simulate("allreduce", 4 * BIG, topo, algorithm="ring")   # per-message costs amortised
    assert seven.params == {"channels": 14, "chunks": 1, "orders": "mesh"}
    assert 0.9 * 7 * link <= seven.busbw_GBps <= 7 * link * (1 + 1e-9)
    # ... the rings on strides coprime with 8 (1, 7, 3, 5) reach four links' worth.
    four = collectives.simulate("allreduce", BIG, topo, algorithm="ring", orders="strides", channels=4)
    assert 0.9 * 4 * link <= four.busbw_GBps <= 4 * link * (1 + 1e-9)


def test_busbw_flat_on_a_switch_and_growing_on_a_mesh():
    on_switch = [collectives.simulate("allreduce", BIG, switch(P, bw_GBps=450.0), algorithm="best").busbw_GBps for P in range(2, 9)]
    assert max(on_switch) <= 1.02 * min(on_switch) and min(on_switch) >= 0.95 * 450.0
    on_mesh = [collectives.simulate("allreduce", BIG, full_mesh(P, bw_GBps=450.0), algorithm="best").busbw_GBps for P in range(2, 9)]
    assert all(b > a * 1.1 for a, b in zip(on_mesh, on_mesh[1:]))
    assert on_mesh[-1] >= 0.95 * 7 * 450.0


def test_in_network_beats_rings_on_a_reducing_switch():
    topo = switch(8, bw_GBps=450.0, link="nvlink", reduce=True)
    best = collectives.simulate("allreduce", BIG, topo, algorithm="best")
    ring = collectives.simulate("allreduce", BIG, topo, algorithm="ring")
    assert best.algorithm == "in_network" and best.params["chunks"] > 1
    assert best.busbw_GBps > 1.5 * ring.busbw_GBps


def test_hierarchical_beats_a_flat_ring_that_crosses_servers_on_one_nic():
    topo = two_level(4, 8, fabric="switch")
    flat = collectives.simulate("allreduce", BIG, topo, algorithm="ring", orders="strides", channels=1)
    hier = collectives.simulate("allreduce", BIG, topo, algorithm="hierarchical")
    assert hier.time_s < 0.5 * flat.time_s


def test_rail_rings_cross_servers_on_every_nic():
    """The default multi-server ring: channel c crosses on rails c and c + s_c, so the 8 NICs of every
    server each carry the ring's traffic; a flat stride ring crosses on one NIC per server."""
    from collectives.algorithms.ring import rail_rings
    topo = two_level(4, 8, fabric="switch")
    rails = collectives.simulate("allreduce", BIG, topo, algorithm="ring")
    assert rails.params == {"channels": 16, "chunks": 1, "orders": "rails"}
    strides = collectives.simulate("allreduce", BIG, topo, algorithm="ring", orders="strides", channels=16)
    assert rails.time_s < strides.time_s / 2
    orders = rail_rings(topo, 32, 8)
    node = np.arange(32) // 8
    for o in orders:                                   # every hop between servers joins one local rank
        a, b = o, np.roll(o, -1)
        cross = node[a] != node[b]
        assert np.array_equal(a[cross] % 8, b[cross] % 8)
    senders = {(int(a) // 8, int(a) % 8) for o in orders for a, b in zip(o, np.roll(o, -1)) if a // 8 != b // 8}
    assert senders == {(n, r) for n in range(4) for r in range(8)}


def test_tree_has_fewer_steps_than_a_ring_for_small_messages():
    topo = switch(64, bw_GBps=100.0)
    tree = collectives.simulate("allreduce", 4096, topo, algorithm="tree", protocol="simple")
    ring = collectives.simulate("allreduce", 4096, topo, algorithm="ring", protocol="simple")
    assert tree.time_s < ring.time_s / 3


def test_ring_like_simulate_stays_fast_on_1024_devices():
    from topologies import ring
    topos = [ring(1024), switch(1024)]
    for topo in topos:
        collectives.simulate("allreduce", 1 << 20, topo, algorithm="ring")  # jit and routes
    for topo in topos:
        for coll in ("allreduce", "allgather", "reduce_scatter"):
            for nbytes in (1 << 20, (1 << 28) + 4 * 1024 * 3):  # equal and unequal chunks
                t0 = time.perf_counter()
                collectives.simulate(coll, nbytes, topo, algorithm="ring")
                assert time.perf_counter() - t0 < 1.0, (topo.name, coll, nbytes)


# -- parameters and auto ---------------------------------------------------------------------------

def test_default_params_per_topology():
    assert default_params("allreduce", "ring", full_mesh(8)) == {"channels": 14, "chunks": 1, "orders": "mesh"}
    assert default_params("allreduce", "ring", full_mesh(7))["channels"] == 6   # 3 Walecki cycles, both ways
    assert default_params("allreduce", "ring", switch(8)) == {"channels": 1, "chunks": 1, "orders": "strides"}
    assert default_params("allreduce", "direct", switch(8)) == {}
    small = default_params("broadcast", "ring", switch(8), 1024)["chunks"]
    large = default_params("broadcast", "ring", switch(8), BIG)["chunks"]
    assert small == 1 and large > small
    assert default_params("allreduce", "hierarchical", two_level(2, 4)) == {"intra": "direct", "inter": "ring"}


def test_simulate_reports_the_params_it_ran_with():
    r = collectives.simulate("allreduce", 1 << 20, full_mesh(8), algorithm="ring", chunks=2)
    assert r.params == {"channels": 14, "chunks": 2, "orders": "mesh"}
    assert collectives.simulate("allreduce", 1 << 20, full_mesh(8), algorithm="direct").params == {}


def test_auto_reports_algorithm_and_params_and_ranks_candidates():
    topo = switch(8, bw_GBps=100.0, reduce=True)
    trials = collectives.simulate("allreduce", BIG, topo, algorithm="best", candidates=True).candidates
    timed = [t.result.time_s for t in trials if t.result is not None]
    assert timed == sorted(timed) and len(trials) > len(registry.list_algorithms("allreduce"))
    # Every candidate is timed or proven slower: a pruned one's lower bound exceeds the best time,
    # and its real time does too.
    from collectives.timing import lower_bound
    pruned = [t for t in trials if t.result is None and t.skipped.startswith("pruned")]
    assert pruned and all(t.result is not None or t.algorithm == "hierarchical" or t in pruned for t in trials)
    for t in pruned:
        if t.result is None:
            real = collectives.simulate("allreduce", BIG, topo, algorithm=t.algorithm, **t.params).time_s
            assert real >= lower_bound("allreduce", BIG, topo, t.algorithm, **t.params) > timed[0]
    best = collectives.simulate("allreduce", BIG, topo, algorithm="best")
    assert best.algorithm == trials[0].algorithm and best.params == trials[0].params
    assert collectives.simulate("allreduce", BIG, topo).algorithm == best.algorithm  # auto is best for now


# -- bad input ---------------------------------------------------------------------------------------

def test_unavailable_algorithms_say_why_and_auto_skips_them():
    mesh = full_mesh(8)
    with pytest.raises(AlgorithmUnavailable, match="reduce=True.*no reducing switch"):
        collectives.simulate("allreduce", 1 << 20, mesh, algorithm="in_network")
    with pytest.raises(ValueError, match="which devices share a server.*'node'"):
        collectives.simulate("allreduce", 1 << 20, mesh, algorithm="hierarchical")
    with pytest.raises(AlgorithmUnavailable, match="reach at most 4 of its 8"):
        build_schedule("allreduce", "in_network", 8, 16, topology=two_level(2, 4, intra_reduce=True))
    uneven = nx.DiGraph(name="uneven")
    for i in range(5):
        uneven.add_node(f"d{i}", kind="device", index=i, node=0 if i < 3 else 1)
        add_link(uneven, f"d{i}", "sw", bw_GBps=10.0)
    uneven.nodes["sw"]["kind"] = "switch"
    with pytest.raises(AlgorithmUnavailable, match="same number of devices on every server.*2, 3"):
        build_schedule("allgather", "hierarchical", 5, 4, topology=Topology(uneven))
    for coll in ("allreduce", "allgather", "reduce_scatter", "alltoall"):
        for nbytes in (1 << 10, BIG):
            best = collectives.simulate(coll, nbytes, mesh, algorithm="best")
            assert best.algorithm not in NEEDS_TOPOLOGY
    skipped = {t.algorithm: t.skipped for t in collectives.simulate("allreduce", 1 << 20, mesh, algorithm="best", candidates=True).candidates if t.result is None}
    assert "reducing switch" in skipped["in_network"] and "'node'" in skipped["hierarchical"]


@pytest.mark.parametrize("call,match", [
    (lambda: build_schedule("allreduce", "ring", 4, 8, channels=0), "channels=0"),
    (lambda: build_schedule("allreduce", "ring", 4, 8, chunks=1.5), "chunks=1.5"),
    (lambda: build_schedule("allreduce", "ring", 4, 8, lanes=2), "no parameter 'lanes'.*channels, chunks"),
    (lambda: build_schedule("allreduce", "direct", 4, 8, channels=2), "takes no parameters"),
    (lambda: build_schedule("allreduce", "hierarchical", 4, 8, inter="bruck"), "inter='bruck'"),
    (lambda: build_schedule("allreduce", "hierarchical", 6, 8, per_node=4), "per_node=4"),
])
def test_bad_parameters_give_clear_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# -- the bench table ---------------------------------------------------------------------------------

def test_auto_table_prints_rows_and_names_missing_presets():
    import io

    from bench import auto_table

    out = io.StringIO()
    missing = auto_table.table(["mi308x-8", "no-such-system"], ["allreduce"], [1 << 20], out=out)
    text = out.getvalue()
    assert missing == 1
    assert "no-such-system" in text and "not available" in text
    row = next(line for line in text.splitlines() if line.startswith("mi308x-8") and "allreduce" in line)
    assert "1 MiB" in row and "direct" in row
    assert "in_network" in text  # reported as skipped, with its reason
