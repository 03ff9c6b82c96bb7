"""The library models (collectives/libraries): each tuner's pick follows its documented rule
(/work/shared/reference/libraries.md), the derived numbers of libraries.md come out to its digits,
overrides and bad names behave, every pick maps to a ccemu schedule that runs, and ``ccemu tune``."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

import collectives
from collectives.libraries import LIBRARIES, Choice, device_model, library, native_library, system
from collectives.libraries import hccl as hccl_mod
from collectives.libraries import nccl as nccl_mod
from topologies import Topology, preset

ROOT = Path(__file__).resolve().parents[1]
KiB, MiB = 1 << 10, 1 << 20
SIZES = (1 * KiB, 1 * MiB, 256 * MiB)
NCCL, RCCL, HCCL = library("nccl"), library("rccl"), library("hccl")


@pytest.fixture(scope="module")
def h100():
    return preset("dgx-h100")


@pytest.fixture(scope="module")
def mi300x():
    return preset("mi300x-8")


def rows(choice):
    return {(c.algorithm, c.protocol): c for c in choice.candidates}


def strict_min(candidates):
    """The documented rule (libraries.md 1.3 step 3): strict minimum, ties to the earlier row."""
    best = None
    for c in candidates:
        if c.predicted_us is not None and (best is None or c.predicted_us < best.predicted_us):
            best = c
    return best


# -- NCCL -------------------------------------------------------------------------------------------------

def test_nccl_h100_graph_matches_the_derived_search(h100):
    # libraries.md 1.6 Derived: 18 x 20.6 = 370.8 GB/s; 6 rings at 60 -> dup 12 x 30 -> 24 runtime channels.
    g = NCCL.graphs(h100)
    si = g["system"]
    assert si.scaleup_lanes == 18 and nccl_mod.nvlink_GBps(si, g["device"]) == pytest.approx(370.8)
    ring = g["ring"]
    assert (ring.channels_before_dup, ring.speed_before_dup) == (6, 60)
    assert (ring.n_channels, ring.bw_intra) == (12, 30.0)
    assert g["comm_channels"] == 24
    assert nccl_mod.p2p_channels(g["comm_channels"]) == 32       # the [M] log: 32 p2p channels


def test_nccl_h100_derived_bandwidths_and_latencies(h100):
    table = {(e.algorithm, e.protocol): e for e in NCCL.cost_table("allreduce", 1 << 30, h100)}
    # libraries.md 1.5 Derived: Ring AR algBw Simple 205.7, LL128 189.3, LL 80.6 GB/s.
    assert [round(table["Ring", p].alg_GBps, 1) for p in ("Simple", "LL128", "LL")] == [205.7, 189.3, 80.6]
    assert [round(table["Ring", p].bus_GBps, 1) for p in ("Simple", "LL128", "LL")] == [360.0, 331.2, 141.0]
    # libraries.md 1.4 Derived, 8 GPUs one NVLink node, AllReduce (LL/LL128/Simple).
    assert [round(table["Ring", p].lat_us, 1) for p in nccl_mod.PROTOCOLS] == [15.0, 40.6, 56.0]
    assert [round(table["Tree", p].lat_us, 1) for p in nccl_mod.PROTOCOLS] == [15.2, 31.5, 64.4]
    assert table["NVLS", "Simple"].lat_us == pytest.approx(25.0)


@pytest.mark.parametrize("nbytes, want", [(1 * KiB, ("Ring", "LL")), (1 * MiB, ("Ring", "LL")),
                                          (256 * MiB, ("NVLS", "Simple"))])
def test_nccl_h100_picks_the_strict_minimum_of_its_table(h100, nbytes, want):
    c = NCCL.choose("allreduce", nbytes, h100)
    eligible = {k for k, v in rows(c).items() if v.predicted_us is not None}
    assert eligible == {("Tree", "LL"), ("Tree", "LL128"), ("Tree", "Simple"), ("Ring", "LL"), ("Ring", "LL128"),
                        ("Ring", "Simple"), ("NVLS", "Simple")}
    assert len(c.candidates) == len(nccl_mod.ALGORITHMS) * len(nccl_mod.PROTOCOLS)
    best = strict_min(c.candidates)
    assert (c.algorithm, c.protocol) == (best.algorithm, best.protocol) == want
    assert c.predicted_us == best.predicted_us and c.channels == best.channels
    # every eligible time is lat + nBytes / (1000 algBw) (libraries.md 1.3 step 2)
    for e in NCCL.cost_table("allreduce", nbytes, h100):
        if e.time_us is not None:
            assert e.time_us == pytest.approx(e.lat_us + nbytes / (1000 * e.alg_GBps))
    ring_ll = rows(c)["Ring", "LL"].predicted_us
    assert ring_ll == pytest.approx(15.0 + nbytes / (1000 * 141.0 * 8 / 14))


def test_nccl_channels_per_call(h100):
    # libraries.md 1.3 step 4: 24 channels drop to 1, then threads halve, for a 1 KiB Ring LL call
    small = NCCL.choose("allreduce", 1 * KiB, h100)
    assert small.channels == 1 and any("24 -> 1" in n for n in small.notes)
    assert NCCL.choose("allreduce", 256 * MiB, h100).channels == 16          # nvlsChannels, SM90
    assert rows(NCCL.choose("allreduce", 256 * MiB, h100))["Ring", "Simple"].channels == 24


def test_nccl_ties_go_to_the_earlier_algorithm_then_protocol():
    from collectives.libraries.nccl import Entry, _strict_min
    es = [Entry("Tree", "LL", time_us=2.0), Entry("Ring", "LL", time_us=2.0), Entry("Ring", "LL128", time_us=1.0),
          Entry("Ring", "Simple", time_us=1.0)]
    assert (_strict_min(es).algorithm, _strict_min(es).protocol) == ("Ring", "LL128")
    assert _strict_min(es[:2]).algorithm == "Tree"


@pytest.mark.parametrize("nbytes", SIZES)
def test_nccl_algo_nvls_forces_nvls_and_caret_tree_excludes_tree(h100, nbytes):
    c = NCCL.choose("allreduce", nbytes, h100, env={"NCCL_ALGO": "NVLS"})
    assert (c.algorithm, c.protocol, c.ccemu_algorithm) == ("NVLS", "Simple", "in_network")
    assert all(v.predicted_us is None for k, v in rows(c).items() if k[0] != "NVLS")
    c = NCCL.choose("allreduce", nbytes, h100, env={"NCCL_ALGO": "^Tree"})
    assert c.algorithm != "Tree"
    assert all(v.predicted_us is None and "NCCL_ALGO" in v.reason for k, v in rows(c).items() if k[0] == "Tree")
    assert rows(c)["Ring", "LL"].predicted_us is not None


def test_nccl_proto_and_per_function_lists(h100):
    c = NCCL.choose("allreduce", 1 * KiB, h100, env={"NCCL_PROTO": "^LL,LL128"})
    assert c.protocol == "Simple" and c.algorithm == "NVLS"
    c = NCCL.choose("allreduce", 1 * KiB, h100, env={"NCCL_ALGO": "ring;allreduce:tree"})
    assert c.algorithm == "Tree"
    assert NCCL.choose("allgather", 1 * KiB, h100, env={"NCCL_ALGO": "ring;allreduce:tree"}).algorithm == "Ring"
    with pytest.raises(ValueError, match="per-function lists .* since NCCL 2.24"):
        NCCL.choose("allreduce", 1 * KiB, h100, version="2.19.3", env={"NCCL_ALGO": "ring;allreduce:tree"})
    with pytest.raises(ValueError, match="unknown name 'rign'; expected tree, ring"):
        NCCL.choose("allreduce", 1 * KiB, h100, env={"NCCL_ALGO": "rign"})


def test_nccl_no_implicit_ring_fallback_since_2_24(h100):
    # Tree is not modelled for AllGather (libraries.md 1.1): nothing is left.
    with pytest.raises(ValueError, match="no implicit Ring fallback"):
        NCCL.choose("allgather", 1 * MiB, h100, env={"NCCL_ALGO": "tree"})
    old = NCCL.choose("allgather", 1 * MiB, h100, version="2.19.3", env={"NCCL_ALGO": "tree"})
    assert old.algorithm == "Ring" and any("falls back to Ring" in n for n in old.notes)


def test_nccl_constants_keyed_by_version(h100):
    # libraries.md 1.4 Drift: v2.19.3 Tree Simple hwLat 28 and base 0, NVLS NVLink 23, Hopper llMaxBws 87.7, no PAT.
    old = {(e.algorithm, e.protocol): e for e in NCCL.cost_table("allreduce", 1 << 30, h100, version="2.19.3")}
    assert old["Tree", "Simple"].lat_us == pytest.approx(14 * 28.0)
    assert old["NVLS", "Simple"].lat_us == pytest.approx(23.0)
    assert round(old["Ring", "LL"].alg_GBps, 2) == round(87.7 * 8 / 14, 2)
    assert "appeared in NCCL 2.23" in {(e.algorithm, e.protocol): e for e in NCCL.cost_table(
        "allgather", 1 * MiB, preset("dgx-h100", nodes=2), version="2.19.3")}["PAT", "Simple"].reason
    assert NCCL.default_version == "2.30.7" and NCCL.versions == ("2.19.3", "2.30.7")


def test_nccl_across_servers():
    t = preset("dgx-h100", nodes=2)
    g = NCCL.graphs(t)
    assert (g["ring"].n_channels, g["ring"].bw_intra, g["comm_channels"]) == (8, 48.0, 32)
    c = NCCL.choose("allreduce", 256 * MiB, t)
    r = rows(c)
    assert r["NVLS", "Simple"].predicted_us is None and "CollNet" in r["NVLS", "Simple"].reason
    assert r["NVLSTree", "Simple"].predicted_us is not None
    assert (c.algorithm, c.ccemu_algorithm) == ("NVLSTree", "hierarchical") and not c.ccemu_exact
    assert strict_min(c.candidates).algorithm == c.algorithm
    # Ring AR across 2 servers (libraries.md 1.4): base + (nsteps - 2(N-1)) max(intra, netOverhead) + 2(N-1) NET
    lat = {(e.algorithm, e.protocol): e for e in NCCL.cost_table("allreduce", 1 * KiB, t)}["Ring", "LL"].lat_us
    assert lat == pytest.approx(6.6 + 28 * 1.0 + 2 * 2.7)


def test_nccl_alltoall_is_p2p(h100):
    c = NCCL.choose("alltoall", 1 * MiB, h100)
    assert (c.algorithm, c.predicted_us, c.channels, c.ccemu_algorithm) == ("SendRecv", None, 32, "direct")


# -- RCCL -------------------------------------------------------------------------------------------------

def test_rccl_mi300x_derived_latency(mi300x):
    table = {(e.algorithm, e.protocol): e for e in RCCL.cost_table("allreduce", 1 * MiB, mi300x)}
    # libraries.md 2.1 Derived: 12 + 14 x 0.8 = 23.2 us (LL); 17 + 14 x 2.1 = 46.4 us (Simple)
    assert round(table["Ring", "LL"].lat_us, 1) == 23.2
    assert round(table["Ring", "Simple"].lat_us, 1) == 46.4
    g = RCCL.graphs(mi300x)
    assert (g["ring"].n_channels, g["comm_channels"]) == (28, 112)   # libraries.md 2.2 Derived 28 -> 56 -> 112


@pytest.mark.parametrize("collective", collectives.list_collectives())
def test_rccl_one_mi300x_node_never_tree_simple_nor_ll128(mi300x, collective):
    for n in (1 * KiB, 64 * KiB, 1 * MiB, 16 * MiB, 256 * MiB, 1 << 30):
        c = RCCL.choose(collective, n, mi300x)
        assert (c.algorithm, c.protocol) != ("Tree", "Simple") and c.protocol != "LL128"
        r = rows(c)
        for (algo, proto), cand in r.items():
            if proto == "LL128" or (algo, proto) == ("Tree", "Simple"):
                assert cand.predicted_us is None
        if (collective not in nccl_mod.P2P                          # the p2p path has no cost model
                and collectives.registry.collective(collective).tuned_as not in nccl_mod.P2P):
            assert (c.algorithm, c.protocol) == (strict_min(c.candidates).algorithm, strict_min(c.candidates).protocol)


def test_rccl_picks_and_msccl_note(mi300x):
    assert (RCCL.choose("allreduce", 1 * KiB, mi300x).protocol, RCCL.choose("allreduce", 256 * MiB, mi300x).protocol) \
        == ("LL", "Simple")
    assert any("MSCCL" in n for n in RCCL.choose("allreduce", 1 * KiB, mi300x).notes)
    assert "PAT" not in RCCL.algorithms and RCCL.versions == ("2.21.5",)
    with pytest.raises(ValueError, match="no device entry for 'MI250X'"):
        RCCL.choose("allreduce", 1 * KiB, preset("mi250x-8"))


# -- HCCL -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("collective", ["allreduce", "allgather", "reduce_scatter", "alltoall"])
def test_hccl_a2_uses_mesh_inside_the_server(collective):
    t = preset("atlas800t-a2")
    for n in SIZES:
        c = HCCL.choose(collective, n, t)
        assert c.algorithm == "Mesh" and c.levels == {"level0": "Mesh"} and c.ccemu_algorithm == "direct"
        assert {x.algorithm for x in c.candidates if x.predicted_us is None} >= {"Ring"}


def test_hccl_a2_allreduce_executors():
    t = preset("atlas800t-a2")
    assert HCCL.choose("allreduce", 256 * KiB, t).executor == "AllReduceMeshSmallCountExecutor"
    assert HCCL.choose("allreduce", 256 * KiB + 4, t).executor == "AllReduceMeshOpbaseLoopExecutor"


@pytest.mark.parametrize("nbytes", (1 * KiB, 1 * MiB))
def test_hccl_level1_ring_for_two_servers_nhr_from_four(nbytes):
    # libraries.md 3.3: Ring and NHR share the beta term; NHR only if strictly cheaper than Ring.
    two = HCCL.choose("allreduce", nbytes, preset("atlas800t-a2", nodes=2))
    assert two.levels == {"level0": "Mesh", "level1": "Ring"} and two.algorithm == "Ring"
    assert two.ccemu_algorithm == "hierarchical" and two.ccemu_params == {"intra": "direct", "inter": "ring"}
    four = HCCL.choose("allreduce", nbytes, preset("atlas800t-a2", nodes=4))
    assert four.levels == {"level0": "Mesh", "level1": "NHR"}
    # m = 3: Ring 2(m-1) delta = NHR 2 ceil(log2 3) delta, so the [S] rule keeps Ring (libraries.md's
    # "Derived" line says NHR for m >= 3; see collectives/libraries/hccl.py).
    si = system(preset("atlas800t-a2", nodes=3))
    dev = hccl_mod.DEVICES["910B"]
    ring = hccl_mod.HCCLModel.level1_cost("Ring", "allreduce", nbytes, 3, 8, 24, dev)
    nhr = hccl_mod.HCCLModel.level1_cost("NHR", "allreduce", nbytes, 3, 8, 24, dev)
    assert ring == nhr
    three = HCCL.choose("allreduce", nbytes, preset("atlas800t-a2", nodes=3))
    assert si.nodes == 3 and three.levels == {"level0": "Mesh", "level1": "Ring"}


def test_hccl_pipeline_above_the_threshold_and_hccl_algo_forces_level1():
    t = preset("atlas800t-a2", nodes=2)
    big = HCCL.choose("allreduce", 256 * MiB, t)
    assert big.levels["level1"] == "Pipeline" and big.executor == "AllReduceMeshOpbasePipelineExecutor"
    # size/(m d) threshold 2 MiB (without RDMA-lite): 32 MiB on 2 x 8 NPUs
    assert HCCL.choose("allreduce", 32 * MiB, t).algorithm == "Pipeline"
    assert HCCL.choose("allreduce", 32 * MiB - 4, t).algorithm == "Ring"
    for algo, want, inter in (("NHR", "NHR", "halving_doubling"), ("H-D_R", "H-D_R", "halving_doubling"),
                              ("ring", "Ring", "ring")):
        for n in SIZES:
            c = HCCL.choose("allreduce", n, t, env={"HCCL_ALGO": f"level0:NA;level1:{algo}"})
            assert c.levels["level1"] == want and c.ccemu_params["inter"] == inter
    per_op = {"HCCL_ALGO": "allreduce=level0:NA;level1:NHR/allgather=level0:NA;level1:H-D_R"}
    assert HCCL.choose("allgather", 1 * MiB, t, env=per_op).algorithm == "H-D_R"
    assert HCCL.choose("allreduce", 1 * MiB, t, env=per_op).algorithm == "NHR"
    with pytest.raises(ValueError, match="level0 takes only NA"):
        HCCL.choose("allreduce", 1 * MiB, t, env={"HCCL_ALGO": "level0:ring;level1:NHR"})
    with pytest.raises(ValueError, match="AHC is not modelled"):
        HCCL.choose("allreduce", 1 * MiB, t, env={"HCCL_ALGO": "level0:NA;level1:AHC"})


def test_hccl_buffsize_cuts_the_call_into_pieces():
    t = preset("atlas800t-a2")
    one = HCCL.choose("allreduce", 100 * MiB, t)
    cut = HCCL.choose("allreduce", 100 * MiB, t, env={"HCCL_BUFFSIZE": "30"})
    assert one.pieces is None and cut.pieces == [30 * MiB] * 3 + [10 * MiB]
    assert cut.predicted_us > one.predicted_us            # one 2 alpha per piece
    with pytest.raises(ValueError, match="HCCL_BUFFSIZE='x'"):
        HCCL.choose("allreduce", 1 * MiB, t, env={"HCCL_BUFFSIZE": "x"})


def test_hccl_a3_and_910a():
    a3 = preset("atlas800t-a3")
    assert HCCL.choose("allreduce", 1 * MiB, a3).algorithm == "Mesh"       # <= 512 KB x ranks: MeshSmallCount
    big = HCCL.choose("allreduce", 64 * MiB, a3)
    assert (big.algorithm, big.executor, big.ccemu_params) == ("Ring", "FastDoubleRingFor91093", {"channels": 2})
    assert HCCL.choose("allreduce", 1 * MiB, preset("atlas800t-a3", nodes=2)).levels == {"flat": "NHR"}
    old = HCCL.choose("allreduce", 1 * MiB, preset("atlas800-9000", nodes=2))
    assert old.levels == {"level0": "Ring", "level1": "H-D_R"}              # 910A: 2 servers, a power of 2


# -- all libraries ------------------------------------------------------------------------------------------

MAPPED = [("dgx-h100", {}), ("mi300x-8", {}), ("atlas800t-a2", {}), ("atlas800t-a2", {"nodes": 2}),
          ("atlas800t-a2", {"nodes": 3})]


@pytest.mark.parametrize("name, options", MAPPED)
def test_every_pick_maps_to_a_ccemu_schedule_that_runs(name, options):
    t = preset(name, **options)
    for lib in (library(native_library(t)), library("ideal")):
        for coll in filter(lambda c: collectives.registry.collective(c).supports(t.num_devices),
                           collectives.list_collectives()):      # hypercube: not on 24 devices
            for n in SIZES:
                c = lib.choose(coll, n, t)
                assert isinstance(c, Choice) and c.library == lib.name and c.collective == coll
                assert c.ccemu_algorithm in collectives.list_algorithms(coll) + ["best"]
                assert c.ccemu_protocol in ("simple", "ll128", "ll", "auto")
                r = collectives.simulate(coll, n, t, algorithm=c.ccemu_algorithm, protocol=c.ccemu_protocol,
                                         **c.ccemu_params)
                assert r.time_s > 0


def test_ideal_is_ccemus_best(h100):
    c = library("ideal").choose("allreduce", 1 * MiB, h100)
    assert (c.ccemu_algorithm, c.ccemu_protocol, c.candidates) == ("best", "auto", [])


def test_unknown_library_version_or_env_key_lists_the_valid_ones(h100):
    with pytest.raises(ValueError, match="unknown library 'nvidia'; expected one of nccl, rccl, hccl, ideal"):
        library("nvidia")
    with pytest.raises(ValueError, match=r"unknown nccl version '2.18'; expected one of 2.19.3, 2.30.7"):
        NCCL.choose("allreduce", 1 * KiB, h100, version="2.18")
    with pytest.raises(ValueError, match="nccl does not read 'NCCL_BUFFSIZE'; its overrides are NCCL_ALGO, NCCL_PROTO"):
        NCCL.choose("allreduce", 1 * KiB, h100, env={"NCCL_BUFFSIZE": "1"})
    with pytest.raises(ValueError, match="hccl does not read 'NCCL_ALGO'; its overrides are HCCL_ALGO, HCCL_BUFFSIZE"):
        HCCL.choose("allreduce", 1 * KiB, preset("atlas800t-a2"), env={"NCCL_ALGO": "ring"})
    with pytest.raises(ValueError, match="ideal does not read 'NCCL_ALGO'"):
        library("ideal").choose("allreduce", 1 * KiB, h100, env={"NCCL_ALGO": "ring"})
    with pytest.raises(ValueError, match="unknown collective"):
        NCCL.choose("allreduse", 1 * KiB, h100)
    with pytest.raises(ValueError, match="no device entry for '910B'"):
        NCCL.choose("allreduce", 1 * KiB, preset("atlas800t-a2"))
    assert list(LIBRARIES) == ["nccl", "rccl", "hccl", "ideal"]


def test_device_model_attribute_wins_over_the_preset_fallback(h100):
    g = h100.graph.copy()
    g.graph["device_model"] = "H800"
    assert device_model(h100) == "H100" and device_model(Topology(g)) == "H800"
    g.graph.pop("device_model")
    g.graph.pop("preset")
    with pytest.raises(ValueError, match="names no device model"):
        device_model(Topology(g))
    assert native_library(Topology(g)) == "ideal"


def test_library_modules_load_neither_numba_nor_the_network_model():
    code = ("import sys, collectives.libraries\n"
            "bad = [m for m in sys.modules if m == 'numba' or m.startswith('numba.') or m in "
            "('topologies.network', 'collectives.timing', 'collectives.kernels')]\nprint(bad)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stdout + out.stderr


# -- ccemu tune ---------------------------------------------------------------------------------------------

def run_tune(argv):
    from bench import tune_cmd
    p = argparse.ArgumentParser()
    sub = p.add_subparsers()
    tune_cmd.register(sub)
    args = p.parse_args(["tune", *argv])
    return args.func(args)


def test_tune_prints_the_table_the_pick_and_the_emulated_time(capsys, tmp_path):
    out = tmp_path / "t.json"
    assert run_tune(["dgx-h100", "allreduce", "-b", "1K", "-e", "1M", "-f", "1024", "-J", str(out)]) == 0
    text = capsys.readouterr().out
    assert "nccl 2.30.7 on dgx-h100" in text and "pick: Ring/LL" in text and "emulated" in text
    assert "NVLSTree is off on one server" in text
    doc = json.loads(out.read_text())
    assert [r["size"] for r in doc["results"]] == [1 * KiB, 1 * MiB]
    first = doc["results"][0]
    assert first["choice"]["algorithm"] == "Ring" and first["choice"]["protocol"] == "LL"
    r = collectives.simulate("allreduce", 1 * KiB, "dgx-h100", algorithm="ring", protocol="ll",
                             **first["choice"]["ccemu_params"])
    assert first["emulated_us"] == pytest.approx(r.time_s * 1e6)


def test_tune_defaults_to_the_vendors_library_and_takes_env(capsys):
    assert run_tune(["atlas800t-a2", "allreduce", "--nodes", "2", "-b", "1M", "-e", "1M",
                     "--env", "HCCL_ALGO=level0:NA;level1:NHR"]) == 0
    text = capsys.readouterr().out
    assert "hccl" in text and "level1 NHR" in text
    assert run_tune(["mi300x-8", "allreduce", "-b", "1K", "-e", "1K"]) == 0
    assert "rccl 2.21.5" in capsys.readouterr().out


@pytest.mark.parametrize("argv, match", [
    (["dgx-h100", "allreduce", "--library", "mpi"], "unknown library 'mpi'"),
    (["dgx-h100", "allreduce", "--version", "9.9"], "unknown nccl version '9.9'"),
    (["dgx-h100", "allreduce", "--env", "NCCL_ALGO"], "expected KEY=VALUE"),
    (["dgx-h100", "allreduce", "--env", "FOO=1"], "nccl does not read 'FOO'"),
    (["dgx-h100", "allreduse"], "unknown collective"),
    (["nosuch", "allreduce"], "unknown topology"),
])
def test_tune_errors_are_one_line_value_errors(argv, match):
    with pytest.raises(ValueError, match=match):
        run_tune(argv + ["-b", "1K", "-e", "1K"])


def test_nccl_on_servers_of_different_sizes_runs_a_tree_where_it_would_compose_two_levels():
    from topologies.whatif import take_devices
    from topologies import preset
    t = take_devices(preset("gb200-nvl72", nodes=8), 512)      # 7 racks of 72 and one of 8
    r = collectives.simulate("allreduce", 256 << 20, t)
    choice = r.library_choice
    assert (choice.library, choice.algorithm) == ("nccl", "NVLSTree")    # NVLS inside racks, trees across
    assert r.algorithm == "tree" and "servers of equal size" in choice.ccemu_note


@pytest.mark.parametrize("collective", ["allreduce", "allgather", "reduce_scatter"])
def test_hccl_with_one_device_per_server_runs_its_level_1_algorithm_alone(collective):
    from topologies import preset
    from topologies.whatif import select_devices
    t = select_devices(preset("atlas800t-a2", nodes=4), [0, 8, 16, 24])    # a data-parallel group
    r = collectives.simulate(collective, 1 << 24, t)
    assert r.library_choice.library == "hccl" and r.algorithm != "hierarchical"
    assert "one device per server" in r.library_choice.ccemu_note
