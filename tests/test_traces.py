"""Recorded communication: NCCL INFO logs, PyTorch profiler (Kineto) traces and Chakra execution traces
read, written and replayed (workloads.trace)."""

from __future__ import annotations

import collections
import json
from pathlib import Path

import pytest

from bench.cli import main
from collectives import simulate
from collectives.alltoallv import Counts
from topologies import preset
from topologies.whatif import select_devices, take_devices
from workloads.step import system_topology
from workloads.trace import (load_trace, read_chakra, read_kineto, read_nccl_log, replay, workload_calls,
                             write_nccl_log)

DATA = Path(__file__).resolve().parent / "data" / "traces"
NCCL = DATA / "nccl_info.log"
KINETO = [DATA / "kineto_rank0.json", DATA / "kineto_rank1.json"]
CHAKRA = DATA / "chakra_rank0.json"
GROUPS = json.loads((DATA / "chakra_groups.json").read_text())


def _calls(trace):
    return [(c.collective, c.nbytes.tolist() if isinstance(c.nbytes, Counts) else c.nbytes, c.group, c.dtype)
            for c in trace.calls]


# -- the samples load, with the calls written in them -----------------------------------------------

def test_nccl_sample():
    t = load_trace(NCCL)
    assert t.format == "nccl" and t.world == 4 and t.notes == []
    assert _calls(t) == [
        ("allreduce", 262144 * 4, (0, 1, 2, 3), "float32"),          # count is per rank: S = count x 4 bytes
        ("allgather", 65536 * 2 * 2, (0, 1), "bfloat16"),            # send count x ranks x 2 bytes
        ("reduce_scatter", 32768 * 2 * 4, (2, 3), "float32"),         # receive count x ranks x 4 bytes
        ("broadcast", 1000 * 2, (0, 1, 2, 3), "float16"),
        ("p2p", [[0, 4096], [0, 0]], (0, 2), "bfloat16")]            # Send 0 -> peer 2 and its Recv: one send
    assert t.calls[3].root == 1


def test_kineto_sample():
    t = load_trace(KINETO)
    assert t.format == "kineto" and t.world == 2
    assert _calls(t) == [
        ("allreduce", 262144 * 4, (0, 1), "float32"),
        ("allgather", 2048 * 2, (0, 1), "bfloat16"),
        ("alltoallv", [[1024, 2048], [2048, 1024]], (0, 1), "float32"),   # split rows x 3072 / 3 elements
        ("reduce_scatter", 4096 * 2, (0, 1), "bfloat16")]                 # the barrier is left out
    assert t.calls[0].recorded_s == pytest.approx(14e-6)                  # the slower rank's duration
    one = read_kineto(KINETO[0])
    assert one.calls[2].nbytes.tolist() == [[1024, 2048], [2048, 1024]] and one.notes   # rank 1 inferred


def test_chakra_sample():
    t = read_chakra(CHAKRA, groups=GROUPS)
    assert t.format == "chakra"
    assert _calls(t) == [
        ("allreduce", 1048576, (0, 1, 2, 3), "uint8"), ("allgather", 262144, (0, 1), "uint8"),
        ("reduce_scatter", 262144, (0, 2), "uint8"), ("alltoall", 65536, (0, 1, 2, 3), "uint8"),
        ("p2p", [[0, 8192], [0, 0]], (0, 3), "uint8")]
    assert t.calls[0].recorded_s == pytest.approx(250e-6)
    assert load_trace(CHAKRA, groups=GROUPS).calls == t.calls
    with pytest.raises(ValueError, match="pg_name '1' has no group"):
        read_chakra(CHAKRA, groups={"0": [0, 1, 2, 3]})
    assert read_chakra(CHAKRA, world_size=4).calls[1].group == (0, 1, 2, 3)


# -- replay: per call exactly simulate() of that collective, size and group -------------------------------

@pytest.mark.parametrize("source", ["nccl", "kineto", "chakra"])
def test_replay_gives_simulate_per_call(source):
    t = {"nccl": lambda: load_trace(NCCL), "kineto": lambda: load_trace(KINETO),
         "chakra": lambda: read_chakra(CHAKRA, groups=GROUPS)}[source]()
    topo = preset("hgx-h800")
    r = replay(t, topo)
    assert len(r.calls) == len(t.calls)
    for rc in r.calls:
        coll, nb = rc.call.simulate_args()
        want = simulate(coll, nb, select_devices(topo, rc.call.group), dtype=rc.call.dtype, op=rc.call.op,
                        root=rc.call.root)
        assert rc.time_s == want.time_s
    per = r.per_rank()
    assert r.comm_s == max(per.values()) and per[0] == sum(rc.time_s for rc in r.calls if 0 in rc.call.group)
    assert "busiest rank" in r.table(calls=3)


def test_a_workloads_log_round_trips_and_replays_exactly():
    topo = system_topology("hgx-h20", 16)
    for name in ("tiny-moe", "tiny-dense"):
        calls = workload_calls(name, topo)
        text = write_nccl_log(calls)
        back = read_nccl_log(text)

        def key(c):
            nb = c.nbytes.fingerprint() if isinstance(c.nbytes, Counts) else c.nbytes
            return c.collective, nb, tuple(c.group), c.dtype
        assert collections.Counter(map(key, calls)) == collections.Counter(map(key, back.calls))
    # Replayed on another system, each call takes what simulate() gives it there.
    other = system_topology("atlas800t-a2", 16)
    r = replay(back, other)
    seen = set()
    for rc in r.calls:
        k = key(rc.call)
        if k in seen:
            continue
        seen.add(k)
        coll, nb = rc.call.simulate_args()
        sub = select_devices(other, rc.call.group)
        try:
            want = simulate(coll, nb, sub, dtype=rc.call.dtype)
        except ValueError:             # the library's pick cannot run there: replay says ideal stood in
            want = simulate(coll, nb, sub, dtype=rc.call.dtype, library="ideal")
            assert rc.notes
        assert rc.time_s == want.time_s
    fast = replay(back, other, share_equivalent=True)
    assert [c.time_s for c in fast.calls] == [c.time_s for c in r.calls]   # no ECMP inside a server or on IB


# -- bad input ---------------------------------------------------------------------------------------

def test_bad_traces_raise_one_line(tmp_path):
    empty = tmp_path / "x.log"
    empty.write_text("NCCL INFO nothing here\n")
    with pytest.raises(ValueError, match="no NCCL collective lines"):
        read_nccl_log(empty)
    bad = tmp_path / "dt.log"
    bad.write_text(NCCL.read_text().replace("datatype 7 op 0 root 0 comm 0x7f0c741162f0", "datatype 12 op 0 root 0 "
                                            "comm 0x7f0c741162f0", 1))
    with pytest.raises(ValueError, match="datatype 12 is not one ccemu models"):
        read_nccl_log(bad)
    k = tmp_path / "k.json"
    k.write_text(json.dumps({"traceEvents": [{"name": "aten::mm", "args": {}}]}))
    with pytest.raises(ValueError, match="no record_param_comms"):
        read_kineto(k)
    other = tmp_path / "o.txt"
    other.write_text("hello\n")
    with pytest.raises(ValueError, match="not an NCCL INFO log"):
        load_trace(other)
    with pytest.raises(ValueError, match="no such file"):
        load_trace(tmp_path / "missing.log")
    with pytest.raises(ValueError, match="has rank 3 but"):
        replay(load_trace(NCCL), take_devices(preset("hgx-h800"), 2))


def test_cli_replay(tmp_path, capsys):
    out = tmp_path / "r.json"
    assert main(["replay", str(NCCL), "--system", "cloudmatrix384", "-J", str(out), "--calls", "2"]) == 0
    assert "busiest rank" in capsys.readouterr().out
    doc = json.loads(out.read_text())
    assert doc["schema"] == "ccemu-replay" and len(doc["calls"]) == 5
    assert main(["replay", str(CHAKRA), "--system", "hgx-h20", "--groups", str(DATA / "chakra_groups.json")]) == 0
    capsys.readouterr()
    assert main(["replay", str(DATA / "chakra_groups.json"), "--system", "hgx-h20"]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
