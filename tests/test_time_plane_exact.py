"""The time plane's reductions are exact: merging twin switches, sharing one solve across protocol
regimes and across sizes give the times of the plain, one-by-one computation to 1e-12."""

from __future__ import annotations

import numpy as np
import pytest

import collectives
from collectives import registry, timing
from topologies import preset, two_level
from topologies.network import LinkParams, _run_flows, flow_latency_s
from topologies.routing import route_pairs
from topologies.whatif import set_routing

# atlas800t-a2's RoCE fabric hashes flows (ECMP) by default, which keeps its spines apart; adaptive, they merge.
SYSTEMS = [lambda: preset("dgx-h100", nodes=4), lambda: preset("hgx-h20"),
           lambda: two_level(4, 4, fabric="fat-tree", leaf_ports=4),
           lambda: set_routing(preset("atlas800t-a2", nodes=2), "adaptive")]


def _plain(coll, alg, topo, nbytes, monkeypatch):
    """The call timed on unmerged arrays (twins kept apart)."""
    orig = timing._timer
    with monkeypatch.context() as m:
        m.setattr(timing, "_timer", lambda t, model, p, merge=True: orig(t, model, p, False))
        return collectives.simulate(coll, nbytes, topo, algorithm=alg)


@pytest.mark.parametrize("make", SYSTEMS)
def test_merging_twin_switches_is_exact(make, monkeypatch):
    topo = make()
    merged_any = topo.arrays.routing is not topo.arrays
    for coll in ("allreduce", "alltoall", "allgather"):
        for alg in registry.list_algorithms(coll):
            try:
                a = collectives.simulate(coll, 3 << 20, topo, algorithm=alg)
            except registry.AlgorithmUnavailable:
                continue
            b = _plain(coll, alg, topo, 3 << 20, monkeypatch)
            assert a.time_s == pytest.approx(b.time_s, rel=1e-12, abs=0), (coll, alg)
            np.testing.assert_allclose(a.link_bytes, b.link_bytes, rtol=1e-12, atol=1e-6)
    assert merged_any  # each of these fabrics has twin switches (spines, or NVSwitch chips)


def test_twins_are_merged_where_they_exist():
    t = preset("dgx-h100", nodes=4)
    r = t.arrays.routing
    # The fat tree's spines merge into one node, each server's four NVSwitch chips into one.
    assert len(t.arrays.nodes) - len(r.nodes) == r.merged >= 4 * 3
    mesh = preset("atlas800t-a2").arrays
    assert mesh.routing is mesh  # an HCCS mesh node has no twin switches


@pytest.mark.parametrize("protocol", ["simple", "ll128", "ll"])
def test_one_solve_serves_every_regime_and_size(protocol):
    # A step solved directly (plain routes, this regime's capacities and latencies) against the
    # shared, rescaled solution.
    topo = preset("dgx-h100", nodes=2)
    rng = np.random.default_rng(1)
    P = topo.num_devices
    src = np.arange(P)
    dst = (src + rng.integers(1, P, P)) % P
    for scale in (1.0, 3.5, 1e6):
        nbytes = rng.integers(1, 100, P).astype(float) * scale
        t_shared = collectives.timing._timer(topo, None, protocol).time(src, dst, nbytes)[0]
        routes = route_pairs(topo, src, dst)
        link = LinkParams(topo, None, protocol)
        lat = flow_latency_s(routes, link, topo.arrays.edge_kind)
        none = np.zeros(P + 1, np.int64)
        _, end, _ = _run_flows(routes.ptr, routes.edge, routes.frac, link.capacity_Bps, nbytes, lat, none, none[:0])
        assert t_shared == pytest.approx(float(end.max()), rel=1e-12)
