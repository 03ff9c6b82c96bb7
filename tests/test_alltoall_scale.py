"""All-to-all at scale: steps solved on their quotient by the topology's automorphisms
(topologies.symmetry, StepSolver.solve_pattern) give the general path's figures to 1e-12."""

import numpy as np
import pytest

from collectives import simulate
from topologies import builders, load_topology, preset, symmetry
from topologies.network import PatternDetail, StepSolver
from topologies.whatif import fail_link, scale_links


def _general(monkeypatch, *args, **kwargs):
    """``simulate`` with every step timed from its arrays (no symmetry used)."""
    with monkeypatch.context() as m:
        m.setattr(StepSolver, "solve_pattern", lambda self, pattern, nbytes: None)
        return simulate(*args, **kwargs)


def _same(a, b):
    assert a.time_s == pytest.approx(b.time_s, rel=1e-12, abs=0)
    assert a.protocol == b.protocol
    assert [s["phase"] for s in a.steps] == [s["phase"] for s in b.steps]
    for x, y in zip(a.steps, b.steps):
        assert x["repeat"] == y["repeat"]
        assert x["step_s"] == pytest.approx(y["step_s"], rel=1e-12, abs=0)
    scale = max(float(np.abs(b.link_bytes).max()), 1.0)
    np.testing.assert_allclose(a.link_bytes, b.link_bytes, rtol=1e-12, atol=1e-12 * scale)


def _systems():
    base = load_topology("dgx-h100", nodes=3)
    return {
        "dgx-h100 x1": load_topology("dgx-h100"),
        "dgx-h100 x3 rail": base,
        "dgx-h100 x5 rail": load_topology("dgx-h100", nodes=5),
        "dgx-h100 x6 fat-tree, 3 leaves": preset("dgx-h100", nodes=6, fabric="fat-tree", leaf_ports=16),
        "fat-tree x3, mesh inside": builders.two_level(3, 4, intra="mesh", fabric="fat-tree", leaf_ports=4),
        "rail x5, 2 leaves per rail": builders.two_level(5, 2, fabric="rail", leaf_ports=3),
        "ring 7 (devices relay)": builders.ring(7),
        "ring 6 (two equal paths)": builders.ring(6),
        "torus 3x4": builders.torus((3, 4)),
        "ecmp": load_topology("dgx-h100", nodes=3, routing="ecmp"),
        "failed nvlink": fail_link(base, "n0.gpu0", "n0.nvs0"),
        "failed spine link": fail_link(base, "fab.leaf0", "fab.spine0"),
        "one slow link": scale_links(base, 0.5, kind="pcie"),
    }


SYSTEMS = _systems()
NO_SYMMETRY = {"ecmp", "failed nvlink"}            # hashed flows; a server unlike the others
NO_SHIFT_SYMMETRY = {"rail x5, 2 leaves per rail"}  # no rotation of all devices is an automorphism


@pytest.mark.parametrize("name", sorted(SYSTEMS))
@pytest.mark.parametrize("algorithm", ["direct", "pairwise"])
@pytest.mark.parametrize("nbytes", [0, 4 * 1001 * 7, 3 << 22])
def test_pattern_steps_equal_general_path(monkeypatch, name, algorithm, nbytes):
    from collectives.timing import _timer

    topo = SYSTEMS[name]
    fast = simulate("alltoall", nbytes, topo, algorithm=algorithm)
    _same(fast, _general(monkeypatch, "alltoall", nbytes, topo, algorithm=algorithm))
    solved = [p for (key, _), p in _timer(topo, None, "simple").solver._patterns.items()
              if p is not None and (key[2] == "all") == (algorithm == "direct")]
    if name in NO_SYMMETRY or (algorithm == "pairwise" and name in NO_SHIFT_SYMMETRY):
        assert not solved
    else:                                       # the quotient was used, not the fallback
        assert solved and all(len(p.unit) < topo.num_devices * (topo.num_devices - 1) for p in solved)


def test_symmetry_found_where_expected():
    rail = load_topology("dgx-h100", nodes=3)
    q = symmetry.quotient(rail.arrays.routing, symmetry.Circulant(24, range(24)))
    assert len(q.reps) == 1                    # every device alike: one source stands for all
    q = symmetry.quotient(rail.arrays.routing, symmetry.Circulant(24, [5]))
    assert len(q.reps) == 8                    # a shift: the server rotations only
    assert symmetry.generators(load_topology("dgx-h100", nodes=3, routing="ecmp").arrays.routing) == []
    broken = fail_link(rail, "n0.gpu0", "n0.nvs0")
    q = symmetry.quotient(broken.arrays.routing, symmetry.Circulant(24, range(24)))
    assert q is None or len(q.reps) > 1       # gpu0 of server 0 is no longer like the others


def test_generators_are_automorphisms():
    a = builders.two_level(3, 4, intra="mesh", fabric="fat-tree", leaf_ports=4).arrays.routing
    n = len(a.nodes)
    edges = {(int(u), int(v)): i for i, (u, v) in enumerate(zip(a.edge_src, a.edge_dst))}
    gens = symmetry.generators(a)
    assert gens
    for g in gens:
        assert sorted(g.node_perm.tolist()) == list(range(n))
        for (u, v), e in edges.items():
            f = edges[(int(g.node_perm[u]), int(g.node_perm[v]))]
            assert g.edge_perm[e] == f
            assert a.bw_GBps[f] == a.bw_GBps[e] and a.lat_us[f] == a.lat_us[e]


def test_failure_segments_and_jitter(monkeypatch):
    topo = load_topology("dgx-h100", nodes=3)
    after = fail_link(topo, "fab.leaf0", "fab.spine0")
    for alg in ("direct", "pairwise"):
        for first in (0, 7):
            kw = dict(algorithm=alg, failure=(first, after))
            _same(simulate("alltoall", 1 << 22, topo, **kw), _general(monkeypatch, "alltoall", 1 << 22, topo, **kw))
    a = simulate("alltoall", 1 << 22, topo, algorithm="pairwise", jitter="noisy", seed=3, iters=5)
    b = _general(monkeypatch, "alltoall", 1 << 22, topo, algorithm="pairwise", jitter="noisy", seed=3, iters=5)
    np.testing.assert_array_equal(a.time_samples_s, b.time_samples_s)


def test_pattern_detail_expands_to_the_general_detail():
    from collectives.timing import _timer

    topo = load_topology("dgx-h100", nodes=2)
    timer = _timer(topo, None, "simple")
    pattern = symmetry.Circulant(16, range(16))
    t, detail = timer.time_pattern(pattern, 1e6)
    assert isinstance(detail, PatternDetail)
    src, dst, nb = pattern.transfers(1e6)
    t2, full = timer.time(src, dst, nb)
    assert t == pytest.approx(t2, rel=1e-12)
    np.testing.assert_array_equal(detail.src, full.src)
    np.testing.assert_allclose(detail.data_s, full.data_s, rtol=0)
    per_edge = np.zeros(len(timer.solver.arrays.edge_kind))
    per_edge[detail.edge_ids] = detail.edge_bytes
    ref = np.zeros_like(per_edge)
    ref[full.edge_ids] = full.edge_bytes
    np.testing.assert_allclose(per_edge, ref, rtol=1e-12)


def test_large_direct_alltoall_builds_no_pair_arrays():
    """1024 devices: the direct step is solved from one source; its P^2 arrays are never built."""
    from collectives.registry import build_schedule

    topo = load_topology("dgx-h100", nodes=128)
    r = simulate("alltoall", 1 << 26, topo, algorithm="direct")
    assert r.time_s > 0
    sched = build_schedule("alltoall", "direct", 1024, 1 << 14, topology=topo)
    assert sched.phases[0]._src is None
