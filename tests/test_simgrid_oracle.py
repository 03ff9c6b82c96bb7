"""The max-min solver against SimGrid's (an independent implementation), on random trees of links.

Optional: needs Debian's ``python3-simgrid`` for the system interpreter (``.ci/run`` installs it
when it can) and the reference script in ``../shared/tools``; skipped otherwise. Trees give every
pair one path, links have random bandwidths and no latency, and each step's flows start together,
as ``shared/tools/simgrid_flows.py`` times them.
"""

import json
import os
import subprocess

import networkx as nx
import numpy as np
import pytest

from topologies import Topology, add_link
from topologies.network import StepSolver, StepTimer
from topologies.routing import route_pairs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(os.path.dirname(ROOT), "shared", "tools", "simgrid_flows.py")
SYSTEM_PYTHON = "/usr/bin/python3"


def _have_simgrid() -> bool:
    if not (os.path.exists(SCRIPT) and os.path.exists(SYSTEM_PYTHON)):
        return False
    return subprocess.run([SYSTEM_PYTHON, "-c", "import simgrid"], capture_output=True).returncode == 0


pytestmark = pytest.mark.skipif(not _have_simgrid(), reason="SimGrid (python3-simgrid) or its script not available")


def step_of(topo, src, dst, nbytes):
    """One step for the SimGrid script: each flow with the route ccemu gives it (its edges by id)."""
    routes = route_pairs(topo, src, dst)
    return [[f"d{s}", f"d{d}", float(b), [f"e{e}" for e in routes.edge[routes.ptr[k]:routes.ptr[k + 1]]]]
            for k, (s, d, b) in enumerate(zip(src, dst, nbytes))]


def simgrid_step_s(topo, steps) -> list:
    """SimGrid's time of each step, on ``topo``'s links (bandwidth, no latency)."""
    a = topo.arrays
    links = {f"e{i}": [float(a.bw_GBps[i] * 1e9), 0.0] for i in range(len(a.bw_GBps))}
    out = subprocess.run([SYSTEM_PYTHON, SCRIPT], input=json.dumps({"links": links, "steps": steps}),
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)["step_s"]


def random_tree(rng, n_devices):
    """Devices as leaves of a random tree of switches; every link gets its own random bandwidth per direction."""
    g = nx.DiGraph()
    switches = [f"s{i}" for i in range(max(1, n_devices // 3))]
    for i, s in enumerate(switches):
        g.add_node(s, kind="switch")
        if i:
            parent = switches[rng.integers(0, i)]
            add_link(g, s, parent, bw_GBps=1.0, lat_us=0.0)
    for d in range(n_devices):
        g.add_node(f"d{d}", kind="device", index=d)
        add_link(g, f"d{d}", switches[rng.integers(0, len(switches))], bw_GBps=1.0, lat_us=0.0)
    for u, v in g.edges:
        g[u][v]["bw_GBps"] = float(rng.choice([1.0, 2.0, 5.0, 10.0, 25.0]))
    return Topology(g, name="tree")


@pytest.mark.parametrize("seed", range(6))
def test_step_times_equal_simgrid(seed):
    rng = np.random.default_rng(seed)
    topo = random_tree(rng, int(rng.integers(4, 12)))
    P = topo.num_devices
    timer = StepTimer(StepSolver(topo), protocol="simple")
    steps, ours = [], []
    for _ in range(3):
        n = int(rng.integers(2, 3 * P))
        src = rng.integers(0, P, n)
        dst = (src + rng.integers(1, P, n)) % P
        order = np.lexsort((dst, src))
        src, dst = src[order], dst[order]
        keep = np.concatenate(([True], (np.diff(src) != 0) | (np.diff(dst) != 0)))  # one flow per pair
        src, dst = src[keep], dst[keep]
        nbytes = rng.integers(1, 100, len(src)).astype(float) * 1e6
        ours.append(timer.time(src, dst, nbytes)[0])
        steps.append(step_of(topo, src, dst, nbytes))
    np.testing.assert_allclose(ours, simgrid_step_s(topo, steps), rtol=1e-9)


@pytest.mark.parametrize("seed", range(3))
def test_ecmp_step_times_equal_simgrid_on_a_fat_tree(seed):
    """ECMP hashes each flow onto one of the equal-cost spine paths; SimGrid times the same flows on
    the routes ccemu hashed, given to it explicitly."""
    from topologies.whatif import set_routing
    rng = np.random.default_rng(100 + seed)
    g = nx.DiGraph()
    leaves, spines, per_leaf = 4, 4, 3
    for s in range(spines):
        g.add_node(f"sp{s}", kind="switch")
    for lf in range(leaves):
        g.add_node(f"lf{lf}", kind="switch")
        for s in range(spines):
            add_link(g, f"lf{lf}", f"sp{s}", bw_GBps=float(rng.choice([10.0, 25.0])), lat_us=0.0)
        for k in range(per_leaf):
            d = lf * per_leaf + k
            g.add_node(f"d{d}", kind="device", index=d)
            add_link(g, f"d{d}", f"lf{lf}", bw_GBps=float(rng.choice([25.0, 50.0])), lat_us=0.0)
    topo = set_routing(Topology(g, name="fat-tree"), {"generic": "ecmp"}, seed=seed)
    P = topo.num_devices
    timer = StepTimer(StepSolver(topo), protocol="simple")
    steps, ours = [], []
    for shift in (4, 5, 7):                     # every device sends to one on another leaf
        src = np.arange(P)
        dst = (src + shift) % P
        nbytes = rng.integers(1, 100, P).astype(float) * 1e6
        ours.append(timer.time(src, dst, nbytes)[0])
        assert np.all(route_pairs(topo, src, dst).frac == 1.0)       # one path per flow
        steps.append(step_of(topo, src, dst, nbytes))
    np.testing.assert_allclose(ours, simgrid_step_s(topo, steps), rtol=1e-9)


def test_two_hashed_flows_on_one_uplink_take_twice_as_long_in_simgrid_too():
    """The ECMP collision case of tests/test_ecmp.py (two leaves, two spines): for each seed, SimGrid
    on the routes ccemu hashed gives ccemu's time, twice one flow's when both take one spine."""
    from topologies.whatif import set_routing
    g = nx.DiGraph()
    for s in range(2):
        g.add_node(f"sp{s}", kind="switch")
    for lf in range(2):
        g.add_node(f"lf{lf}", kind="switch")
        for s in range(2):
            add_link(g, f"lf{lf}", f"sp{s}", bw_GBps=25.0, lat_us=0.0)
        for k in range(2):
            d = 2 * lf + k
            g.add_node(f"d{d}", kind="device", index=d)
            add_link(g, f"d{d}", f"lf{lf}", bw_GBps=25.0, lat_us=0.0)
    src, dst, nbytes = np.array([0, 1]), np.array([2, 3]), np.array([1e9, 1e9])
    times = set()
    for seed in range(8):
        topo = set_routing(Topology(g, name="leafspine"), {"generic": "ecmp"}, seed=seed)
        ours = StepTimer(StepSolver(topo), protocol="simple").time(src, dst, nbytes)[0]
        ref = simgrid_step_s(topo, [step_of(topo, src, dst, nbytes)])[0]
        assert ours == pytest.approx(ref, rel=1e-9)
        times.add(round(ref / (1e9 / 25e9), 9))
    assert times == {1.0, 2.0}                  # some seeds collide, some do not
