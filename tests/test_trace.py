"""Chrome traces of an emulated call (collectives/trace.py, ``--trace``)."""

import json

import numpy as np
import pytest

from bench.cli import main
from collectives import simulate
from collectives.trace import trace, write_trace
from topologies import preset

CASES = [("allreduce", 1 << 24, "hgx-h20"), ("allreduce", 1 << 26, "atlas800t-a2"),
         ("alltoall", 1 << 22, "atlas800t-a2"), ("allgather", 3 << 20, "mi300x-8"),
         ("reduce_scatter", 1 << 22, "dgx-h100")]


@pytest.mark.parametrize("collective,nbytes,system", CASES)
def test_events_have_the_chrome_fields_and_end_at_the_emulated_time(collective, nbytes, system):
    doc = trace(collective, nbytes, system)
    result = simulate(collective, nbytes, system)
    events = doc["traceEvents"]
    for e in events:
        assert {"ph", "pid", "tid", "name"} <= set(e)
        if e["ph"] == "X":
            assert isinstance(e["ts"], float) and e["dur"] >= 0
    complete = [e for e in events if e["ph"] == "X"]
    end = max(e["ts"] + e["dur"] for e in complete)
    assert end == pytest.approx(result.time_s * 1e6, rel=1e-9)
    call = [e for e in complete if e["name"] == "call"]
    assert len(call) == 1 and call[0]["dur"] == pytest.approx(result.time_s * 1e6, rel=1e-9)
    assert doc["otherData"]["algorithm"] == result.algorithm
    names = {(e["pid"], e["tid"]) for e in events if e["ph"] == "M" and e["name"] == "thread_name"}
    assert {(e["pid"], e["tid"]) for e in complete} <= names


@pytest.mark.parametrize("collective,nbytes,system", CASES[:3])
def test_each_links_busy_time_is_its_bytes_over_its_capacity(collective, nbytes, system):
    topo = preset(system)
    doc = trace(collective, nbytes, topo)
    result = simulate(collective, nbytes, topo)
    busy = np.zeros(len(result.edges))
    for e in doc["traceEvents"]:
        if e["ph"] == "X" and e["pid"] == 1:
            busy[e["tid"]] += e["dur"] * 1e-6
    used = result.link_bytes > 0
    assert used.any()
    np.testing.assert_allclose(busy[used], result.link_bytes[used] / result.capacity_Bps[used], rtol=1e-9)
    assert not busy[~used].any()


def test_device_events_carry_each_transfers_bytes():
    doc = trace("allreduce", 8 << 20, "atlas800t-a2", algorithm="ring", channels=1, orders="strides")
    sends = [e for e in doc["traceEvents"] if e["ph"] == "X" and e["pid"] == 0]
    assert len(sends) == 2 * 7 * 8                  # 2 (P - 1) steps, every device sends once per step
    assert {e["args"]["bytes"] for e in sends} == {(8 << 20) / 8}
    assert all(e["args"]["to"] == (e["tid"] + 1) % 8 for e in sends)


def test_too_many_events_is_refused(tmp_path):
    with pytest.raises(ValueError, match="more than max_events=10 events"):
        trace("allreduce", 1 << 20, "hgx-h20", max_events=10)


def test_the_bench_writes_a_trace_of_its_largest_size(tmp_path, capsys):
    path = tmp_path / "t.json"
    assert main(["bench", "allreduce", "-b", "1M", "-e", "4M", "--model-only", "--trace", str(path)]) == 0
    doc = json.loads(path.read_text())
    assert doc["otherData"]["nbytes"] == 4 << 20 and doc["otherData"]["topology"] == "atlas800t-a2"
    bad = tmp_path / "missing" / "t.json"
    assert main(["bench", "allreduce", "-b", "1M", "-e", "1M", "--model-only", "--trace", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "t.json" in err and len(err.strip().splitlines()) == 1 and not bad.exists()


def test_write_trace_writes_json(tmp_path):
    doc = write_trace(tmp_path / "x.json", "alltoall", 1 << 20, "hgx-h20")
    assert json.loads((tmp_path / "x.json").read_text()) == json.loads(json.dumps(doc))
