"""The nccl-tests-style CLI: table, JSON, checks, and one-line errors with exit status 2."""

import json
import subprocess
import sys

import pytest

from bench.cli import main


def parse_nccl_tests(text):
    """What users' scripts do with nccl-tests output: rows are the non-comment lines; the first
    13 fields are size count type redop root, then time algbw busbw #wrong twice."""
    rows = []
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        f = line.split()
        rows.append({"size": int(f[0]), "count": int(f[1]), "type": f[2], "redop": f[3], "root": int(f[4]),
                     "oop": {"time": float(f[5]), "algbw": float(f[6]), "busbw": float(f[7]), "wrong": f[8]},
                     "ip": {"time": float(f[9]), "algbw": float(f[10]), "busbw": float(f[11]), "wrong": f[12]}})
    avg = [line for line in text.splitlines() if line.startswith("# Avg bus bandwidth")]
    return rows, float(avg[0].split(":")[1]) if avg else None


def test_allreduce_sweep_parses_and_checks(capsys, tmp_path):
    out_json = tmp_path / "r.json"
    rc = main(["bench", "allreduce", "-b", "8", "-e", "64K", "-f", "8", "-n", "2", "-w", "1",
               "--topology", "atlas800t-a2", "-J", str(out_json)])
    text = capsys.readouterr().out
    assert rc == 0
    rows, avg = parse_nccl_tests(text)
    assert [r["size"] for r in rows] == [8, 64, 512, 4096, 32768]
    assert all(r["oop"]["wrong"] == "0" and r["ip"]["wrong"] == "0" for r in rows)
    assert all(r["type"] == "float" and r["redop"] == "sum" and r["root"] == -1 for r in rows)
    assert rows[-1]["oop"]["busbw"] > rows[0]["oop"]["busbw"]
    assert avg == pytest.approx(sum(r[p]["busbw"] for r in rows for p in ("oop", "ip")) / (2 * len(rows)), rel=1e-2)
    assert "# Out of bounds values : 0 OK" in text and "# Collective test starting: all_reduce_perf" in text
    doc = json.loads(out_json.read_text())
    assert set(doc) >= {"config", "results", "out_of_bounds", "average_bus_bandwidth"}
    r0 = doc["results"][0]
    assert set(r0) >= {"size", "count", "type", "redop", "root", "out_of_place", "in_place"}
    assert set(r0["out_of_place"]) >= {"time", "alg_bw", "bus_bw", "nwrong"}
    assert doc["out_of_bounds"] == {"count": 0, "okay": "true"}  # nccl-tests writes booleans as strings


@pytest.mark.parametrize("coll", ["allgather", "reduce_scatter", "alltoall", "broadcast", "reduce"])
def test_every_collective_runs_and_checks(coll, capsys):
    rc = main(["bench", coll, "-b", "1K", "-e", "4K", "-f", "4", "-n", "1", "-w", "0", "--topology", "hgx-h20",
               "-d", "all", "-o", "max", "-r", "3"])
    rows, _ = parse_nccl_tests(capsys.readouterr().out)
    assert rc == 0 and len(rows) == 2 * 12
    assert all(r["oop"]["wrong"] == "0" for r in rows)
    root = 3 if coll in ("broadcast", "reduce") else -1
    assert all(r["root"] == root for r in rows)


def test_check_zero_prints_na_and_model_only_needs_no_data(capsys):
    assert main(["bench", "allgather", "-b", "1M", "-e", "1M", "-c", "0", "-n", "1", "--topology", "hgx-h20"]) == 0
    rows, _ = parse_nccl_tests(capsys.readouterr().out)
    assert rows[0]["oop"]["wrong"] == "N/A"
    assert main(["bench", "allreduce", "-b", "1G", "-e", "1G", "--model-only", "--topology", "cloudmatrix384",
                 "--algo", "ring"]) == 0
    rows, _ = parse_nccl_tests(capsys.readouterr().out)
    assert rows[0]["size"] == 2**30 and rows[0]["oop"]["busbw"] > 0


def test_python_m_bench_same_as_ccemu(capsys):
    argv = ["allreduce", "-b", "1M", "-e", "1M", "--model-only", "--columns", "extended"]
    out = subprocess.run([sys.executable, "-m", "bench", *argv], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "all_reduce_perf" in out.stdout and "topology atlas800t-a2" in out.stdout
    assert main(["bench", *argv]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines() if not line.startswith("#")]
    assert rows == [line.split() for line in out.stdout.splitlines() if not line.startswith("#")]


@pytest.mark.parametrize("argv,match", [
    (["bench", "allreduse"], "invalid choice: 'allreduse'"),
    (["bench", "allreduce", "--topology", "dgx-z100"], "dgx-a100"),
    (["bench", "allreduce", "--algo", "rign", "--model-only"], "expected one of"),
    (["bench", "allreduce", "-b", "2M", "-e", "1M"], "-b 2M is larger than -e 1M"),
    (["bench", "allreduce", "-d", "complex", "--model-only"], "unknown datatype 'complex'"),
    (["bench", "allreduce", "-o", "mean", "--model-only"], "unknown op 'mean'"),
    (["bench", "allreduce", "-b", "12X"], "size '12X'"),
    (["bench", "allreduce", "--nodes", "0"], "--nodes 0"),
    (["bench", "allreduce", "-r", "9", "--topology", "hgx-h20"], "-r 9"),
    (["bench", "allreduce", "--model-only", "-b", "1M", "-e", "1M", "--topology", "hgx-h20", "--algo", "direct",
      "-n", "0"], "-n 0"),
])
def test_bad_input_one_line_exit_2(argv, match, capsys):
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2
    assert match in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_failed_run_leaves_no_json(tmp_path, capsys):
    target = tmp_path / "out.json"
    assert main(["bench", "allreduce", "--topology", "nope", "-J", str(target)]) == 2
    assert not target.exists()


def test_jitter_profile_median_and_p99_reproducible(capsys, tmp_path):
    argv = ["bench", "allreduce", "-b", "1M", "-e", "16M", "-f", "4", "--model-only", "--topology", "atlas800t-a2",
            "--jitter", "noisy", "--seed", "3", "-n", "50", "--columns", "extended"]
    assert main(argv + ["-J", str(tmp_path / "a.json")]) == 0
    first = capsys.readouterr().out
    assert main(argv) == 0
    assert "# Writing JSON output to " + str(tmp_path / "a.json") + "\n" + capsys.readouterr().out == first
    assert "p99_us" in first
    rows, _ = parse_nccl_tests(first)
    doc = json.loads((tmp_path / "a.json").read_text())
    assert len(rows) == len(doc["results"]) == len(doc["ccemu"]["results"]) == 3
    for r, d in zip(rows, doc["ccemu"]["results"]):
        stats = d["time_stats_us"]
        assert stats["min"] <= stats["median"] <= stats["p99"] <= stats["max"]
        assert r["oop"]["time"] == pytest.approx(stats["median"], abs=0.01)
    assert doc["ccemu"]["jitter"] == "noisy" and doc["ccemu"]["seed"] == 3
    plain = ["bench", "allreduce", "-b", "1M", "-e", "1M", "--model-only", "--topology", "atlas800t-a2"]
    assert main(plain + ["--jitter", "stable"]) == 0
    stable, _ = parse_nccl_tests(capsys.readouterr().out)
    assert main(plain) == 0
    assert parse_nccl_tests(capsys.readouterr().out)[0][0]["oop"]["time"] == stable[0]["oop"]["time"]
