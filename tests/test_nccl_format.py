"""``ccemu bench`` speaks nccl-tests 2.19: its text layout (parsed here by a parser written to
nccl-tests' own printf formats, not to ccemu's code), every flag, its JSON keys and types, the
binary names, and ccemu's extras behind ``--columns extended``."""

import json
import re

import pytest

from bench.cli import main
from collectives import libraries

# -- a parser of nccl-tests' output, from nccl-tests 2.19's src/util.cu formats ---------------------------

# writeResultHeader, without -I/-S: three lines, ending in " %*s" (a trailing space).
HEAD_TOP = "# %10s  %12s  %8s  %6s  %6s           out-of-place                       in-place          " % (("",) * 5)
HEAD_NAMES = ("# %10s  %12s  %8s  %6s  %6s  %7s  %6s  %6s  %6s  %7s  %6s  %6s  %6s %*s"
              % ("size", "count", "type", "redop", "root", "time", "algbw", "busbw", "#wrong", "time", "algbw",
                 "busbw", "#wrong", 0, ""))
HEAD_UNITS = ("# %10s  %12s  %8s  %6s  %6s  %7s  %6s  %6s  %6s  %7s  %6s  %6s  %6s %*s"
              % ("(B)", "(elements)", "", "", "", "(us)", "(GB/s)", "(GB/s)", "", "(us)", "(GB/s)", "(GB/s)", "",
                 0, ""))
CONFIG = re.compile(r"^# nThread (\d+) nGpus (\d+) minBytes (\d+) maxBytes (\d+) step: (\d+)\((factor|bytes)\) "
                    r"warmup iters: (\d+) iters: (\d+) agg iters: (\d+) validation: (\d+) graph: (\d+) unalign: (\d+)$")
# parseRankInfo's sscanf: "#  Rank %d Group %d Pid %d on %s device %d [%[^]]] %[^\n]"
RANK = re.compile(r"^#  Rank +(\d+) Group +(\d+) Pid +(\d+) on +(\S+) device +(\d+) \[([^\]]+)\] (.+)$")
# writeBenchmarkLinePreamble "%12li  %12li  %8s  %6s  %6s" then, twice, "  %7s  %6s  %6s  %6g" (or "    N/A").
ROW_WIDTHS = [12, 12, 8, 6, 6] + [7, 6, 6, 6] * 2
TYPES = {"int8", "uint8", "int32", "uint32", "int64", "uint64", "half", "float", "double", "bfloat16", "f8e4m3",
         "f8e5m2"}


def split_fixed(line, widths=ROW_WIDTHS):
    """The fields of a row at nccl-tests' column positions (two spaces between columns)."""
    out, pos = [], 0
    for i, w in enumerate(widths):
        if i:
            assert line[pos:pos + 2] == "  ", (line, pos)
            pos += 2
        out.append(line[pos:pos + w])
        pos += w
    return out, line[pos:]


def parse(text, extra_after_rows=""):
    """nccl-tests' output as a dict; asserts the layout line by line."""
    lines = text.split("\n")
    i = 0
    doc = {"rows": [], "ranks": []}
    if lines[i].startswith("# Writing JSON output to "):
        doc["json"] = lines[i][len("# Writing JSON output to "):]
        i += 1
    m = re.match(r"^# nccl-tests version (\S+) nccl-headers=(\S+) nccl-library=(\S+)$", lines[i])
    assert m, lines[i]
    doc["version"], doc["headers"], doc["library"] = m.groups()
    i += 1
    m = re.match(r"^# Collective test starting: (\S+)$", lines[i])
    assert m, lines[i]
    doc["binary"] = m.group(1)
    i += 1
    m = CONFIG.match(lines[i])
    assert m, lines[i]
    keys = ("nThread", "nGpus", "minBytes", "maxBytes", "step", "step_kind", "warmup", "iters", "agg", "validation",
            "graph", "unalign")
    doc["config"] = {k: (v if k == "step_kind" else int(v)) for k, v in zip(keys, m.groups())}
    i += 1
    doc["notes"] = []
    while lines[i] != "#":
        assert lines[i].startswith("# ccemu ") or lines[i].startswith("# ") and lines[i].endswith(" "), lines[i]
        doc["notes"].append(lines[i])
        i += 1
    i += 1
    assert lines[i] == "# Using devices"
    i += 1
    while lines[i].startswith("#  Rank"):
        m = RANK.match(lines[i])
        if m:
            doc["ranks"].append(m.groups())
        else:
            assert lines[i].endswith("..."), lines[i]  # the 2048-byte buffer cut
        i += 1
    assert lines[i] == "#"
    i += 1
    doc["head"] = lines[i:i + 3]
    i += 3
    while lines[i] and not lines[i].startswith("#"):
        doc["rows"].append(lines[i])
        i += 1
    m = re.match(r"^# Out of bounds values : (\d+) (OK|FAILED)$", lines[i])
    assert m, lines[i]
    doc["oob"] = (int(m.group(1)), m.group(2))
    m = re.match(r"^# Avg bus bandwidth    : (\S+) (|OK|FAILED)$", lines[i + 1])
    assert m, lines[i + 1]
    doc["avg"], doc["avg_check"] = float(m.group(1)), m.group(2)
    assert lines[i + 2] == "#"
    assert lines[i + 3] == f"# Collective test concluded: {doc['binary']}"
    i += 4
    if lines[i].startswith("# GPU memory usage     : "):
        doc["memory"] = lines[i]
        i += 1
    assert lines[i:] == ["#", "", ""], lines[i:]  # finalizeFooter's "#", writeErrors' empty line
    return doc


def row_fields(row, widths=ROW_WIDTHS):
    """A default row: exactly 13 whitespace fields, at nccl-tests' column positions, with its types."""
    f = row.split()
    assert len(f) == 13, row
    fixed, rest = split_fixed(row, widths)
    assert rest == "" and [x.strip() for x in fixed] == f, row
    assert f[2] in TYPES
    out = {"size": int(f[0]), "count": int(f[1]), "type": f[2], "redop": f[3], "root": int(f[4])}
    for name, j in (("oop", 5), ("ip", 9)):
        out[name] = {"time": float(f[j]), "algbw": float(f[j + 1]), "busbw": float(f[j + 2]),
                     "wrong": f[j + 3] if f[j + 3] == "N/A" else int(f[j + 3])}
    return out


def run(argv, capsys, rc=0):
    got = main(argv)
    cap = capsys.readouterr()
    assert got == rc, cap.err
    return cap.out


# -- the default layout -------------------------------------------------------------------------------------

def test_default_output_is_nccl_tests_layout(capsys):
    text = run(["bench", "allreduce", "-b", "8", "-e", "64K", "-f", "8", "-n", "2", "--topology", "atlas800t-a2"],
               capsys)
    doc = parse(text)
    assert doc["version"] == "2.19.6" and doc["binary"] == "all_reduce_perf" and doc["notes"] == []
    assert doc["config"] == {"nThread": 1, "nGpus": 8, "minBytes": 8, "maxBytes": 65536, "step": 8,
                             "step_kind": "factor", "warmup": 1, "iters": 2, "agg": 1, "validation": 1, "graph": 0,
                             "unalign": 0}
    assert [int(r[0]) for r in doc["ranks"]] == list(range(8))
    assert all(r[1] == "0" and r[6] == "910B (emulated)" and r[4] == str(i) for i, r in enumerate(doc["ranks"]))
    assert doc["head"] == [HEAD_TOP, HEAD_NAMES, HEAD_UNITS]
    rows = [row_fields(r) for r in doc["rows"]]
    assert [r["size"] for r in rows] == [8, 64, 512, 4096, 32768]
    assert [r["count"] for r in rows] == [2, 16, 128, 1024, 8192]
    assert all(r["type"] == "float" and r["redop"] == "sum" and r["root"] == -1 for r in rows)
    assert all(r["oop"]["wrong"] == 0 and r["ip"]["wrong"] == 0 for r in rows)
    assert doc["oob"] == (0, "OK") and doc["avg_check"] == ""
    mean = sum(r[p]["busbw"] for r in rows for p in ("oop", "ip")) / (2 * len(rows))
    assert doc["avg"] == pytest.approx(mean, abs=0.01)
    for r in rows:  # algbw = S / t with GB = 1e9; busbw = algbw x 2(P-1)/P
        assert r["oop"]["algbw"] == pytest.approx(r["size"] / r["oop"]["time"] / 1e3, abs=0.006)
        assert r["oop"]["busbw"] == pytest.approx(r["oop"]["algbw"] * 2 * 7 / 8, abs=0.02)


def test_version_line_carries_the_emulated_library(capsys):
    nccl = libraries.library("nccl").default_version
    major, minor, patch = (int(x) for x in nccl.split("."))
    base = ["bench", "allreduce", "-b", "1K", "-e", "1K", "--model-only", "--topology", "hgx-h20"]
    doc = parse(run(base + ["--library", "nccl"], capsys))
    assert doc["headers"] == doc["library"] == str(major * 10000 + minor * 100 + patch)  # NCCL_VERSION_CODE
    hccl = libraries.library("hccl").default_version
    doc = parse(run(base[:-1] + ["atlas800t-a2", "--library", "hccl"], capsys))
    assert doc["library"] == f"hccl-{hccl}"
    doc = parse(run(base + ["--algo", "ring"], capsys))  # a named algorithm: ccemu's own schedule
    assert doc["library"].startswith("ideal-")


def test_model_only_prints_na_and_no_validation(capsys):
    doc = parse(run(["bench", "allgather", "-b", "1M", "-e", "1M", "--model-only", "--topology", "hgx-h20"], capsys))
    row = row_fields(doc["rows"][0])
    assert row["oop"]["wrong"] == row["ip"]["wrong"] == "N/A" and doc["config"]["validation"] == 0
    assert row["redop"] == "none" and row["count"] == (1 << 20) // 8 // 4


def test_check_zero_prints_na(capsys):
    doc = parse(run(["bench", "allreduce", "-b", "1K", "-e", "1K", "-c", "0", "-n", "1"], capsys))
    row = row_fields(doc["rows"][0])
    assert row["oop"]["wrong"] == row["ip"]["wrong"] == "N/A" and doc["config"]["validation"] == 0


@pytest.mark.parametrize("coll,dtype,size,count", [
    ("alltoall", "float", 1000, 28),       # 1000 / 8 ranks / 4 B = 31 -> 28 (a multiple of 16 / 4)
    ("alltoall", "int8", 1000, 112),       # 125 -> 112 (a multiple of 16)
    ("alltoall", "double", 1000, 14),      # 15 -> 14 (a multiple of 2)
    ("allgather", "float", 1000, 28),
    ("reduce_scatter", "half", 1000, 56),  # 62 -> 56 (a multiple of 8)
    ("allreduce", "float", 1000, 250),     # whole buffers: no rounding
])
def test_count_column_rounds_as_nccl_tests(coll, dtype, size, count, capsys):
    doc = parse(run(["bench", coll, "-b", str(size), "-e", str(size), "-d", dtype, "-n", "1", "--topology", "hgx-h20"],
                    capsys))
    row = row_fields(doc["rows"][0])
    item = {"float": 4, "int8": 1, "double": 8, "half": 2}[dtype]
    assert row["count"] == count
    assert row["size"] == (count * item if coll == "allreduce" else count * 8 * item)
    if coll == "alltoall":  # nccl-tests checks no in-place alltoall
        assert row["oop"]["wrong"] == 0 and row["ip"]["wrong"] == "N/A"
    else:
        assert row["ip"]["wrong"] == 0


def test_device_lines_cut_at_nccl_tests_buffer(capsys):
    text = run(["bench", "allreduce", "-b", "1M", "-e", "1M", "--model-only", "--topology", "cloudmatrix384"], capsys)
    doc = parse(text)
    block = "".join(line + "\n" for line in text.split("\n") if line.startswith("#  Rank"))
    assert len(block) == 2047 and block.endswith("...\n")  # nccl-tests' 2048-byte line buffer
    assert 20 < len(doc["ranks"]) < 30 and doc["config"]["nGpus"] == 384


# -- flags ------------------------------------------------------------------------------------------------------

# Every nccl-tests 2.19 flag, short and long, with a value it takes.
FLAGS = [("-t", "--nthreads", "8"), ("-g", "--ngpus", "8"), ("-b", "--minbytes", "1K"), ("-e", "--maxbytes", "1K"),
         ("-i", "--stepbytes", "1K"), ("-f", "--stepfactor", "2"), ("-n", "--iters", "3"), ("-m", "--agg_iters", "2"),
         ("-w", "--warmup_iters", "0"), ("-N", "--run_cycles", "2"), ("-p", "--parallel_init", "1"),
         ("-c", "--check", "1"), ("-o", "--op", "max"), ("-d", "--datatype", "int32"), ("-r", "--root", "1"),
         ("-z", "--blocking", "3"), ("-y", "--stream_null", "1"), ("-T", "--timeout", "100"),
         ("-G", "--cudagraph", "4"), ("-C", "--report_cputime", "1"), ("-S", "--report_timestamps", "1"),
         ("-a", "--average", "2"), ("-R", "--local_register", "2"), ("-x", "--cta_policy", "1"),
         ("-D", "--device_implementation", "0"), ("-V", "--device_cta_count", "32"), ("-M", "--memory_report", "1"),
         ("-u", "--unalign", "3"), ("-I", "--per_iter_timing", "1"), ("-K", "--per_iter_skip", "1")]


@pytest.mark.parametrize("form", [0, 1], ids=["short", "long"])
@pytest.mark.parametrize("short,long,value", FLAGS, ids=[f[0] for f in FLAGS])
def test_every_nccl_tests_flag_is_accepted(short, long, value, form, capsys):
    flag = (short, long)[form]
    argv = ["bench", "allreduce", "--model-only", "--topology", "hgx-h20", "-b", "1K", "-e", "1K", flag, value]
    text = run(argv, capsys)
    assert "# Collective test concluded: all_reduce_perf" in text


def test_flags_have_their_effect(capsys, tmp_path):
    base = ["bench", "allreduce", "--model-only", "--topology", "hgx-h20", "-b", "1K", "-e", "4K", "-f", "2"]
    plain = parse(run(base, capsys))
    assert len(plain["rows"]) == 3
    doc = parse(run(base + ["-N", "2", "-m", "4", "-w", "3", "-G", "2", "-u", "5", "-n", "7"], capsys))
    assert len(doc["rows"]) == 6 and doc["rows"][:3] == doc["rows"][3:]
    assert {k: doc["config"][k] for k in ("agg", "warmup", "graph", "unalign", "iters")} == \
        {"agg": 4, "warmup": 3, "graph": 2, "unalign": 5, "iters": 7}
    doc = parse(run(base + ["-z", "1", "-p", "1"], capsys))
    assert doc["notes"] == ["# Blocking Enabled: wait and barrier after each inner iteration (-m) ",
                            "# Parallel Init Enabled: threads call into NcclInitRank concurrently "]
    doc = parse(run(["bench", "allreduce", "--model-only", "-b", "1K", "-e", "3K", "-i", "1K"], capsys))
    assert [row_fields(r)["size"] for r in doc["rows"]] == [1024, 2048, 3072]
    assert (doc["config"]["step"], doc["config"]["step_kind"]) == (1024, "bytes")
    doc = parse(run(base + ["-M", "1"], capsys))
    assert doc["memory"].startswith("# GPU memory usage     : Initialization 0.00 B | User-Allocated 8.00 KB | ")


def test_ops_types_and_roots_all(capsys):
    text = run(["bench", "reduce", "--model-only", "--topology", "hgx-h20", "-b", "1K", "-e", "1K", "-o", "all", "-d",
                "all", "-r", "all"], capsys)
    rows = [row_fields(r) for r in parse(text)["rows"]]
    assert len(rows) == 12 * 6 * 8
    assert [r["type"] for r in rows[::48]] == ["int8", "uint8", "int32", "uint32", "int64", "uint64", "half", "float",
                                              "double", "bfloat16", "f8e4m3", "f8e5m2"]  # nccl-tests' order
    assert [r["redop"] for r in rows[:48:8]] == ["sum", "prod", "max", "min", "avg", "mulsum"]
    assert [r["root"] for r in rows[:8]] == list(range(8))


def test_cputime_timestamps_and_per_iteration_columns(capsys, tmp_path):
    base = ["bench", "allreduce", "--topology", "hgx-h20", "-b", "1K", "-e", "1K", "-n", "4"]
    doc = parse(run(base + ["-C", "1"], capsys))
    assert doc["head"][1].split()[6] == "cputime"
    row = row_fields(doc["rows"][0])
    assert row["oop"]["time"] > 0 and row["oop"]["algbw"] > 0
    doc = parse(run(base + ["-S", "1", "--model-only"], capsys))
    assert doc["head"][1].endswith(" " + "timestamp".rjust(19))
    f = doc["rows"][0].split()
    assert len(f) == 15 and re.match(r"^\d{4}-\d\d-\d\d$", f[13]) and re.match(r"^\d\d:\d\d:\d\d$", f[14])
    out = tmp_path / "i.json"
    doc = parse(run(base + ["-I", "1", "-K", "1", "--model-only", "--jitter", "noisy", "-J", str(out)], capsys))
    assert doc["notes"] == ["# Per-Iteration Report: CUDA event timing; i_* uses max over process rows; "
                            "summary skips first 1 iterations "]
    assert doc["head"][1].split()[6:15] == ["time", "algbw", "busbw", "#wrong", "i_min", "i_max", "i_p99", "i_cv%",
                                             "time"]
    f = doc["rows"][0].split()
    assert len(f) == 21 and float(f[9]) <= float(f[10]) and float(f[11]) <= float(f[10])
    res = json.loads(out.read_text())["results"][0]
    per = res["out_of_place_per_iter"]
    assert per["skipped_iterations"] == 1 and len(per["times_us"]) == 4
    assert per["min_us"] == pytest.approx(min(per["times_us"][1:]))


def test_timeout_and_min_bandwidth(capsys, monkeypatch):
    base = ["bench", "allreduce", "--model-only", "-b", "1G", "-e", "1G", "-n", "100"]
    out = run(base + ["-T", "1"], capsys, rc=1)
    assert re.search(r": Test timeout \(1s\) emulated: 100 call\(s\) of 1073741824 bytes wait \d", out)
    assert "# Out of bounds values" not in out
    assert "Test timeout" not in run(base + ["-T", "1", "-z", "1"], capsys)  # one call per synchronisation
    monkeypatch.setenv("NCCL_TESTS_MIN_BW", "100000")
    doc = parse(run(["bench", "allreduce", "--model-only", "-b", "1K", "-e", "1K"], capsys, rc=1))
    assert doc["avg_check"] == "FAILED"
    monkeypatch.setenv("NCCL_TESTS_MIN_BW", "0")
    assert parse(run(["bench", "allreduce", "--model-only", "-b", "1K", "-e", "1K"], capsys))["avg_check"] == "OK"


def test_threads_and_gpus_must_make_the_topologys_devices(capsys):
    doc = parse(run(["bench", "allreduce", "--model-only", "-b", "1K", "-e", "1K", "-t", "2", "-g", "4"], capsys))
    assert (doc["config"]["nThread"], doc["config"]["nGpus"]) == (2, 4) and len(doc["ranks"]) == 8
    for extra, shown in ((["-g", "4"], "-t 1 (default) x -g 4 x 1 rank(s) = 4 devices"),
                         (["-t", "3", "-g", "2"], "-t 3 x -g 2 x 1 rank(s) = 6 devices"),
                         (["-t", "1"], "-t 1 x -g 1 (default) x 1 rank(s) = 1 devices")):
        assert main(["bench", "allreduce", "-b", "1K", "-e", "1K", *extra]) == 2
        err = capsys.readouterr().err
        assert shown in err and "atlas800t-a2 has 8" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("argv,match", [
    (["bench", "allreduce", "-N", "0"], "-N 0: nccl-tests' endless cycles are not emulated"),
    (["bench", "allreduce", "-D", "1"], "-D 1: nccl-tests' device-API kernels are not modelled"),
    (["bench", "allreduce", "-z", "4"], "-z 4: expected a whole number from 0 to 3"),
    (["bench", "allreduce", "-n", "5", "-K", "5"], "-K 5: expected a whole number from 0 to 4"),
    (["bench", "allreduce", "-r", "x"], "-r x: expected a device index or all"),
    (["bench", "bisection_perf"], "argument COLLECTIVE: invalid choice: 'bisection_perf'"),
    (["bench", "hypercube_perf", "--nodes", "3"], "atlas800t-a2-x3: hypercube needs a power-of-two device count, "
                                                  "got P=24"),
])
def test_bad_nccl_tests_input_one_line_exit_2(argv, match, capsys):
    assert main(argv + ["--model-only"]) == 2
    err = capsys.readouterr().err
    assert match in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


@pytest.mark.parametrize("binary,coll", [("all_reduce_perf", "allreduce"), ("all_gather_perf", "allgather"),
                                         ("reduce_scatter_perf", "reduce_scatter"), ("alltoall_perf", "alltoall"),
                                         ("broadcast_perf", "broadcast"), ("reduce_perf", "reduce"),
                                         ("alltoallv_perf", "alltoallv"), ("gather_perf", "gather"),
                                         ("scatter_perf", "scatter"), ("sendrecv_perf", "sendrecv"),
                                         ("hypercube_perf", "hypercube")])
def test_binary_names_are_aliases(binary, coll, capsys):
    tail = ["-b", "1K", "-e", "4K", "-f", "4", "--model-only", "--topology", "hgx-h20"]
    by_name = parse(run(["bench", coll, *tail], capsys))
    by_binary = parse(run(["bench", binary, *tail], capsys))
    shortcut = parse(run([binary, *tail], capsys))
    assert by_name["binary"] == by_binary["binary"] == shortcut["binary"] == binary
    assert by_name["rows"] == by_binary["rows"] == shortcut["rows"]


# -- --columns extended ---------------------------------------------------------------------------------------

def test_extended_columns_follow_nccl_tests_columns(capsys):
    base = ["bench", "allreduce", "-b", "1K", "-e", "4K", "-f", "4", "-n", "2", "--topology", "hgx-h20", "--library",
            "nccl"]
    plain = parse(run(base, capsys))
    ext = parse(run(base + ["--columns", "extended"], capsys))
    assert ext["notes"][0].startswith("# ccemu ") and "topology hgx-h20 (8 devices)" in ext["notes"][0]
    assert ext["head"][1].split()[14:] == ["algo", "buseff", "host_us", "headroom"]
    assert len(plain["rows"]) == len(ext["rows"]) == 2
    for p, e in zip(plain["rows"], ext["rows"]):
        f = e.split()
        assert len(f) == 17 and f[:13] == p.split()  # nccl-tests' 13 fields first, unchanged
        assert float(f[15]) > 0 and float(f[16]) >= 1.0   # host_us, headroom time(nccl) / time(best)
    jit = parse(run(["bench", "allreduce", "-b", "1M", "-e", "1M", "--model-only", "--jitter", "noisy", "--columns",
                     "extended"], capsys))
    assert "p99_us" in jit["head"][1]


# -- JSON ---------------------------------------------------------------------------------------------------------

# nccl-tests 2.19's keys and the types its writer gives them (jsonBool writes the strings "true"/"false",
# "root" is the "%6i" string, "nwrong" a double or null).
TOP = {"version": int, "start_time": str, "args": list, "env": list, "nccl_version": int, "config": dict,
       "results": list, "out_of_bounds": dict, "average_bus_bandwidth": dict, "errors": list, "end_time": str}
CONFIG_KEYS = {"nthreads": int, "ngpus": int, "minimum_bytes": int, "maximum_bytes": int, "step_factor": int,
               "warmup_iters": int, "iterations": int, "aggregated_iterations": int, "validation": int, "graph": int,
               "blocking_collectives": str, "per_iter_timing": str, "per_iter_skip": int, "parallel_init": str,
               "devices": list}
DEVICE_KEYS = {"rank": int, "group": int, "pid": int, "hostname": str, "device": int, "device_hex": str,
               "device_info": str}
RESULT_KEYS = {"size": int, "count": int, "type": str, "redop": str, "root": str, "out_of_place": dict,
               "in_place": dict, "actual_iterations": int, "experiment_name": str}
PLACE_KEYS = {"time": float, "alg_bw": float, "bus_bw": float, "nwrong": float}


def _types(d, spec):
    assert list(d) == list(spec), (list(d), list(spec))
    for k, t in spec.items():
        assert isinstance(d[k], t) and not isinstance(d[k], bool), (k, d[k])


def test_json_keys_and_types_are_nccl_tests(capsys, tmp_path):
    out = tmp_path / "r.json"
    text = run(["bench", "alltoall", "-b", "1K", "-e", "4K", "-f", "4", "-n", "2", "--topology", "hgx-h20",
                "-J", str(out)], capsys)
    assert parse(text)["json"] == str(out)
    doc = json.loads(out.read_text())
    assert list(doc) == list(TOP) + ["ccemu"]
    _types({k: doc[k] for k in TOP}, TOP)
    assert doc["version"] == 3 and doc["args"][-2:] == ["-J", str(out)] and doc["errors"] == []
    _types(doc["config"], CONFIG_KEYS)
    assert doc["config"]["step_factor"] == 4 and doc["config"]["blocking_collectives"] == "false"
    assert len(doc["config"]["devices"]) == 8
    for d in doc["config"]["devices"]:
        _types(d, DEVICE_KEYS)
    assert len(doc["results"]) == 2
    for r in doc["results"]:
        _types(r, RESULT_KEYS)
        assert r["root"] == "    -1" and r["redop"] == "none"
        _types(r["out_of_place"], PLACE_KEYS)
        assert r["in_place"]["nwrong"] is None  # alltoall in place: not checked, as nccl-tests
    assert doc["out_of_bounds"] == {"count": 0, "okay": "true"}
    assert doc["average_bus_bandwidth"]["okay"] == "unchecked"
    assert isinstance(doc["average_bus_bandwidth"]["bandwidth"], float)
    ccemu = doc["ccemu"]
    assert ccemu["topology"] == "hgx-h20" and len(ccemu["results"]) == len(doc["results"])
    for r, c in zip(doc["results"], ccemu["results"]):
        assert c["size"] == r["size"] and c["algorithm"] and "time_stats_us" in c
        assert c["host_time_us"]["out_of_place"] > 0 and c["alltoall_in_place_nwrong"] == 0


def test_json_cputime_key_step_bytes_and_per_iter_keys(capsys, tmp_path):
    out = tmp_path / "c.json"
    run(["bench", "allreduce", "--model-only", "-b", "1K", "-e", "2K", "-C", "1", "-z", "2", "-J", str(out)], capsys)
    doc = json.loads(out.read_text())
    assert "step_bytes" in doc["config"] and "step_factor" not in doc["config"]
    assert doc["config"]["blocking_collectives"] == "true"
    place = doc["results"][0]["out_of_place"]
    assert list(place) == ["cpu_time", "alg_bw", "bus_bw", "nwrong"]
    assert place["cpu_time"] == "nan" and place["nwrong"] is None  # no host time without data; nccl-tests' NaN


def test_json_always_has_the_ccemu_block(capsys, tmp_path):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    base = ["bench", "allreduce", "--model-only", "-b", "1K", "-e", "1K", "--topology", "hgx-h20", "--library", "nccl"]
    run(base + ["-J", str(a)], capsys)
    run(base + ["-J", str(b), "--columns", "extended"], capsys)
    da, db = json.loads(a.read_text()), json.loads(b.read_text())
    for d in (da, db):
        row = d["ccemu"]["results"][0]
        assert row["library"]["library"] == "nccl" and row["headroom"] >= 1.0
        assert {"algorithm", "params", "protocol", "bus_efficiency", "peak_GBps", "time_stats_us"} <= set(row)
    assert da["results"] == db["results"]
