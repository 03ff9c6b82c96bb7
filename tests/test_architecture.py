"""The architecture's promises: topologies cannot go stale, ``simulate`` is the one entry point
(``auto`` is what the CLI picks), the registries are the only lists of collectives and
algorithms, and schedules are pure."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import networkx as nx
import pytest

import collectives
from bench.cli import main
from collectives import registry, simulate
from topologies import Topology, preset, presets
from topologies.graph import ReadOnlyTopologyError
from topologies.whatif import scale_links, set_model

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "plugins"))
import dummy  # noqa: E402


# -- no stale results ----------------------------------------------------------------------------------

def _fresh(t: Topology, edit) -> Topology:
    """The same system built anew from an edited plain copy of its graph (no caches carried over)."""
    g = t.graph.copy()
    edit(g)
    return Topology(g)


@pytest.fixture
def a2():
    t = preset("atlas800t-a2")
    simulate("allreduce", 256 << 20, t)  # fill every cache the topology keeps
    return t


def test_model_override_raises_and_the_what_if_gives_the_fresh_answer(a2):
    before = simulate("allreduce", 256 << 20, a2)
    with pytest.raises(ReadOnlyTopologyError, match="set_model"):
        a2.model["hccs"] = {"efficiency": 0.5}
    assert simulate("allreduce", 256 << 20, a2).time_s == before.time_s   # nothing changed behind it
    via = simulate("allreduce", 256 << 20, set_model(a2, {"hccs": {"efficiency": 0.5}}))

    def edit(g):
        g.graph["model"] = {"hccs": {"efficiency": 0.5}}
    fresh = simulate("allreduce", 256 << 20, _fresh(a2, edit))
    assert via.time_s == fresh.time_s and via.time_s > 1.5 * before.time_s


def test_edge_attribute_edit_raises_and_scale_links_gives_the_fresh_answer(a2):
    u, v = a2.devices[:2]
    with pytest.raises(ReadOnlyTopologyError):
        a2.graph.edges[u, v]["bw_GBps"] /= 2
    for _, _, d in list(a2.graph.edges(data=True))[:1]:
        with pytest.raises(ReadOnlyTopologyError):
            d.update(bw_GBps=1.0)
    via = simulate("allreduce", 256 << 20, scale_links(a2, factor_bw=0.5))

    def edit(g):
        for _, _, d in g.edges(data=True):
            d["bw_GBps"] /= 2
    assert via.time_s == simulate("allreduce", 256 << 20, _fresh(a2, edit)).time_s


def test_nodes_and_edges_cannot_be_added_or_removed(a2):
    g = a2.graph
    for call in (lambda: g.add_node("x", kind="switch"), lambda: g.add_edge(*a2.devices[:2], bw_GBps=1.0),
                 lambda: g.remove_node(a2.devices[0]), lambda: g.remove_edge(*a2.devices[:2]),
                 lambda: g.graph.update(model={}), lambda: setattr(a2, "graph", nx.DiGraph())):
        with pytest.raises(ReadOnlyTopologyError):
            call()
    # An editable copy builds a new topology; the original is untouched.
    h = g.copy()
    h.add_node("x", kind="switch")
    assert "x" not in a2.graph and isinstance(h, nx.DiGraph) and not isinstance(h, type(g))


def test_topologies_pickle_and_deepcopy_as_values(a2):
    import copy
    import pickle

    back = pickle.loads(pickle.dumps(a2))
    assert simulate("allreduce", 1 << 20, back).time_s == simulate("allreduce", 1 << 20, a2).time_s
    assert isinstance(copy.deepcopy(a2.graph), nx.DiGraph)


# -- one entry point -----------------------------------------------------------------------------------

SIZES = ("1K", "1M", "1G")


@pytest.mark.parametrize("name", presets())
def test_auto_is_the_clis_choice_on_every_preset(name, tmp_path, capsys):
    out = tmp_path / "r.json"
    assert main(["bench", "allreduce", "--topology", name, "--model-only", "-b", SIZES[0], "-e", SIZES[-1],
                 "-f", "1024", "-J", str(out)]) == 0
    capsys.readouterr()
    doc = json.loads(out.read_text())
    rows = doc["results"]
    assert [r["size"] for r in rows] == [2**10, 2**20, 2**30]
    t = preset(name)
    for row, extra in zip(rows, doc["ccemu"]["results"]):
        r = simulate("allreduce", row["size"], t)
        assert r.selection == "auto"
        assert (extra["algorithm"], extra["params"]) == (r.algorithm, r.params)
        assert row["out_of_place"]["time"] == pytest.approx(r.time_s * 1e6, rel=1e-12)


def test_simulate_takes_a_preset_name_and_reports_its_choice():
    r = simulate("allreduce", 1 << 20, "atlas800t-a2", algorithm="best", candidates=True)
    assert r.selection == "best" and r.candidates[0].algorithm == r.algorithm
    timed = [c.result.time_s for c in r.candidates if c.result is not None]
    assert timed == sorted(timed) and timed[0] == r.time_s
    named = simulate("allreduce", 1 << 20, "atlas800t-a2", algorithm=r.algorithm, **r.params)
    assert named.selection == "named" and named.time_s == r.time_s
    with pytest.raises(ValueError, match="expected auto, best or one of"):
        simulate("allreduce", 1 << 20, "atlas800t-a2", algorithm="rign")


def test_choices_take_jitter_failure_and_parameters():
    from topologies.whatif import fail_link
    t = preset("atlas800t-a2")
    noisy = simulate("allreduce", 16 << 20, t, jitter="noisy", seed=3, iters=10)
    assert noisy.time_samples_s is not None and len(noisy.time_samples_s) == 10
    broken = simulate("allreduce", 16 << 20, t, algorithm="best", failure=(0, fail_link(t, 0, 1)))
    assert broken.time_s >= simulate("allreduce", 16 << 20, t, algorithm="best").time_s
    two = simulate("allreduce", 16 << 20, t, algorithm="best", channels=2, candidates=True)
    assert {c.algorithm for c in two.candidates} <= {"ring", "tree"} and two.params["channels"] == 2


# -- one registry per kind -------------------------------------------------------------------------------

@pytest.fixture
def plugin():
    dummy.register()
    yield dummy
    dummy.unregister()


def test_a_new_collective_and_algorithm_reach_everything(plugin, capsys, tmp_path):
    # The CLI: the collective is a command (and a bench subcommand), the algorithm an --algo choice.
    assert main([dummy.COLLECTIVE, "-b", "8", "-e", "1K", "-f", "4", "-r", "3"]) == 0
    text = capsys.readouterr().out
    assert "dummy_copy_perf" in text and "Out of bounds values : 0 OK" in text
    assert main(["bench", "allreduce", "--algo", dummy.ALGORITHM, "-b", "1K", "-e", "1K"]) == 0
    assert "Out of bounds values : 0 OK" in capsys.readouterr().out
    assert main(["scaling", dummy.COLLECTIVE, "--devices", "2,4", "--sizes", "1M"]) == 0
    capsys.readouterr()
    # best's candidates, and auto on the new collective.
    cands = simulate("allreduce", 1 << 20, "atlas800t-a2", algorithm="best", candidates=True).candidates
    assert dummy.ALGORITHM in {c.algorithm for c in cands}
    assert simulate(dummy.COLLECTIVE, 1 << 20, "hgx-h20").algorithm == "star"
    # The data plane, checked by the schedule checker and against the numpy reference.
    import numpy as np
    data = np.arange(15, dtype=np.float32).reshape(3, 5)
    for coll, alg in ((dummy.COLLECTIVE, "star"), ("allreduce", dummy.ALGORITHM)):
        collectives.check(collectives.build_schedule(coll, alg, 5, 7, root=2), registry.collective(coll))
        assert np.array_equal(collectives.run(coll, data, algorithm=alg, root=1),
                              collectives.reference(coll, data, root=1))


def test_a_new_collective_and_algorithm_run_on_the_mpi_executor():
    import shutil
    here = Path(sys.executable).parent / "mpiexec"
    MPIEXEC = str(here) if here.exists() else shutil.which("mpiexec")
    if MPIEXEC is None:
        pytest.skip("no mpiexec next to the interpreter or on PATH")
    env = dict(os.environ, OMP_NUM_THREADS="1", NUMBA_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    for n in (2, 3):
        proc = subprocess.run([MPIEXEC, "-n", str(n), sys.executable, "tests/plugins/run_under_mpi.py"], cwd=ROOT,
                              env=env, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert proc.stdout.count(": OK") == n and "MISMATCH" not in proc.stdout


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(ValueError, match="expected one of allreduce, allgather"):
        registry.collective("allreduse")
    with pytest.raises(ValueError, match="expected one of bruck, direct, hierarchical, pairwise"):
        registry.info("alltoall", "ring")


# -- pure schedules ------------------------------------------------------------------------------------------

def test_schedules_and_algorithms_load_neither_numba_nor_the_network_model():
    code = ("import sys, collectives.schedule, collectives.registry, collectives.algorithms.ring, "
            "collectives.algorithms.hierarchical, collectives.algorithms.in_network\n"
            "bad = [m for m in sys.modules if m == 'numba' or m.startswith('numba.') or m in "
            "('topologies.network', 'topologies.routing', 'collectives.kernels', 'collectives.timing')]\n"
            "print(bad)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stdout + out.stderr


def test_version():
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
