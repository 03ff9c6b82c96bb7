"""``ccemu hccl-test``: hccl_test's start line, header and rows, emulated times, one-line errors."""

import pytest

from bench.cli import main

HEADER = "data_size(Bytes): | aveg_time(us): | alg_bandwidth(GB/s): | check_result:"


def parse_hccl_test(text):
    """What a script reading hccl_test's output does: the start line, then rows after the header,
    each ``%-17llu | %-14.2f | %-20.5f | result``."""
    lines = text.splitlines()
    start = lines[0]
    assert lines[1] == HEADER
    rows = []
    for line in lines[2:]:
        fields = line.split("|")
        assert len(fields) == 4, line
        size, time_us, algbw, check = fields
        # left-aligned fields padded to their printf widths, one space before each '|'
        assert len(size) == 18 and len(time_us) == 16 and len(algbw) == 22, line
        assert size[0] != " " and time_us[:2].strip() and algbw[:2].strip() and check.startswith(" ")
        rows.append({"size": int(size), "time": float(time_us), "algbw": float(algbw), "check": check.strip()})
    return start, rows


ARGS = ["hccl-test", "all_reduce_test", "-b", "8K", "-e", "1M", "-f", "2", "-d", "fp32", "-p", "8"]


def test_all_reduce_rows_match_the_emulated_time(capsys):
    from collectives import simulate
    from topologies import load_topology

    assert main(ARGS) == 0
    start, rows = parse_hccl_test(capsys.readouterr().out)
    assert start == "the minbytes is 8192, maxbytes is 1048576, iters is 20, warmup_iters is 5"
    assert [r["size"] for r in rows] == [8192 * 2**k for k in range(8)]
    topo = load_topology("atlas800t-a2")
    for r in rows:
        sim = simulate("allreduce", r["size"], topo, algorithm="auto", library="hccl", dtype="float32")
        assert float(f"{sim.time_s * 1e6:.2f}") == r["time"]
        assert sim.time_s * 1e6 == pytest.approx(r["time"], rel=1e-6, abs=0.005)
        assert r["algbw"] == pytest.approx(r["size"] / (sim.time_s * 1e6) / 1e3, rel=1e-6, abs=5e-6)
        assert r["algbw"] == pytest.approx(r["size"] / r["time"] / 1e3, rel=1e-3)
        assert r["check"] == "success"


@pytest.mark.parametrize("exe,coll", [("all_gather_test", "allgather"), ("reduce_scatter_test", "reduce_scatter"),
                                      ("alltoall_test", "alltoall"), ("broadcast_test", "broadcast"),
                                      ("reduce_test", "reduce"), ("scatter_test", "scatter")])
def test_other_collectives_use_data_size_as_nccl_tests_size(capsys, exe, coll):
    from collectives import simulate
    from topologies import load_topology

    assert main(["hccl-test", exe, "-b", "64K", "-e", "64K", "-d", "fp16", "-o", "max", "-r", "3"]) == 0
    _, rows = parse_hccl_test(capsys.readouterr().out)
    assert [r["size"] for r in rows] == [65536] and rows[0]["check"] == "success"
    sim = simulate(coll, 65536, load_topology("atlas800t-a2"), algorithm="auto", library="hccl", dtype="float16",
                   op="max", root=3)
    assert sim.time_s * 1e6 == pytest.approx(rows[0]["time"], abs=0.005)


def test_step_bytes_default_and_no_check(capsys):
    assert main(["hccl-test", "all_reduce_test", "-b", "1K", "-e", "11K", "-c", "0", "-n", "3", "-w", "0"]) == 0
    start, rows = parse_hccl_test(capsys.readouterr().out)
    assert start == "the minbytes is 1024, maxbytes is 11264, iters is 3, warmup_iters is 0"
    assert [r["size"] for r in rows] == [1024 * k for k in range(1, 12)]  # step (e - b) / 10 = 1K
    assert {r["check"] for r in rows} == {"NULL"}


@pytest.mark.parametrize("argv,words", [
    (ARGS[:-4] + ["-d", "fp99"], "fp99"),
    (["hccl-test", "all_reduce_test", "-b", "8K", "-e", "1M", "-f", "1.0"], "-f 1"),
    (["hccl-test", "scatter_test", "-r", "8"], "-r 8"),
    (["hccl-test", "all_reduce_test", "-p", "3"], "-p 3"),
    (["hccl-test", "all_reduce_test", "-o", "avg"], "-o avg"),
    (["hccl-test", "all_reduce_test", "-c", "2"], "-c 2"),
    (["hccl-test", "broadcast_test", "-r", "8"], "-r 8"),
    (["hccl-test", "nope_test"], "nope_test"),
])
def test_bad_input_is_one_line_and_exit_2(capsys, argv, words):
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and words in err[0], err


def test_p_must_be_the_devices_per_server(capsys):
    assert main(["hccl-test", "all_reduce_test", "--nodes", "2", "-p", "16", "-b", "8K", "-e", "8K"]) == 2
    assert "8 per server" in capsys.readouterr().err
    assert main(["hccl-test", "all_reduce_test", "--nodes", "2", "-p", "8", "-b", "8K", "-e", "8K", "-c", "0"]) == 0
    _, rows = parse_hccl_test(capsys.readouterr().out)
    assert len(rows) == 1


def test_no_op_flags_are_accepted(capsys):
    assert main(["hccl-test", "all_reduce_test", "-b", "8K", "-e", "8K", "-z", "1", "-s", "0", "-a", "1"]) == 0
    _, rows = parse_hccl_test(capsys.readouterr().out)
    assert rows[0]["check"] == "success"
