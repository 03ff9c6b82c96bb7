"""nccl-tests' remaining collectives: gather, scatter, sendrecv, hypercube (and hccl_test's scatter_test,
alltoallv_test).

The expected results are written here from nccl-tests' own descriptions (``src/gather.cu``,
``scatter.cu``, ``sendrecv.cu``, ``hypercube.cu``: who sends what to whom), not from the specs; sizes,
counts and bandwidths from its ``*GetCollByteCount`` and ``*GetBw`` formulas, recomputed here.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import collectives
from bench.cli import main
from collectives import dataplane, dtypes, libraries, registry

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_hccl_test import parse_hccl_test  # noqa: E402  (the hccl_test output parser)
from test_nccl_format import parse, row_fields, run  # noqa: E402  (the nccl-tests output parser)

ROOT = Path(__file__).resolve().parents[1]
NEW = ("gather", "scatter", "sendrecv", "hypercube")
ALGORITHM = {"gather": "direct", "scatter": "direct", "sendrecv": "direct", "hypercube": "recursive_doubling"}
OP_ORDER = ("sum", "prod", "max", "min", "avg", "mulsum")


def pow2(P):
    return P & (P - 1) == 0


# -- nccl-tests' semantics, from its sources -----------------------------------------------------------------

def expected(coll, data, root):
    """What each device holds after the call (None where nccl-tests checks nothing): the rows of
    ``data`` (P, x) moved as nccl-tests' RunColl moves them."""
    P = data.shape[0]
    if coll == "gather":         # every rank ncclSend(sendbuff) to root; root ncclRecv(recvbuff + r * count) from r
        return {root: np.concatenate(list(data))}
    if coll == "scatter":        # root ncclSend(sendbuff + r * count) to r; every rank ncclRecv from root
        m = data.shape[1] // P
        return {d: data[root, d * m:(d + 1) * m] for d in range(P)}
    if coll == "sendrecv":       # ncclSend to (rank+1) % n, ncclRecv from (rank-1+n) % n
        return {d: data[(d - 1) % P] for d in range(P)}
    if coll == "hypercube":      # for mask = 1, 2, ...: send blocks from rank & ~(mask-1) to rank ^ mask
        P, m = data.shape
        held = [{d: data[d]} for d in range(P)]
        mask = 1
        while mask < P:
            held = [{**held[r], **held[r ^ mask]} for r in range(P)]
            mask <<= 1
        return {d: np.concatenate([held[d][s] for s in range(P)]) for d in range(P)}
    raise AssertionError(coll)


def input_width(coll, P, m):
    return P * m if coll == "scatter" else m


def make_data(name, shape, rng):
    """Random data of dtype ``name`` (every bit pattern: NaNs, infinities, padding bytes), and the ``dtype=``
    argument ``run`` takes for it."""
    row = dtypes.TABLE[name]
    if row.numpy is None:                       # bfloat16, fp8: their storage bit patterns
        return rng.integers(0, 256, size=shape[0] * shape[1] * row.itemsize, dtype=np.uint8).view(
            row.storage).reshape(shape), name
    if row.kind == "bool":
        return rng.integers(0, 2, size=shape).astype(bool), None
    nbytes = shape[0] * shape[1] * row.numpy.itemsize
    return rng.integers(0, 256, size=nbytes, dtype=np.uint8).view(row.numpy).reshape(shape), None


def same_bytes(a, b):
    return np.ascontiguousarray(a).view(np.uint8).tobytes() == np.ascontiguousarray(b).view(np.uint8).tobytes()


def result_rows(coll, out, P, root):
    """``run``'s result as ``{device: row}`` (gather returns the root's row only)."""
    if coll == "gather":
        return {root: out}
    return {d: out[d] for d in range(P)}


# -- the data plane: every device count, size, root and dtype ------------------------------------------------

@pytest.mark.parametrize("coll", NEW)
def test_every_device_count_size_and_root_against_nccl_tests(coll):
    spec = registry.collective(coll)
    rng = np.random.default_rng(7)
    for P in (1, 2, 3, 4, 5, 7, 8):
        if not spec.supports(P):
            continue
        for m in (0, 1, 7, 13):
            for root in (range(P) if spec.rooted else [0]):
                data = rng.integers(-1000, 1000, size=(P, input_width(coll, P, m))).astype(np.int32)
                before = data.copy()
                out = collectives.run(coll, data, ALGORITHM[coll], root=root)
                want = expected(coll, data, root)
                got = result_rows(coll, out, P, root)
                assert set(want) <= set(got), (coll, P, m, root)
                for d, row in want.items():
                    np.testing.assert_array_equal(got[d], row, err_msg=f"{coll} P={P} m={m} root={root} device {d}")
                np.testing.assert_array_equal(collectives.reference(coll, data, root=root), out)
                np.testing.assert_array_equal(data, before)
                collectives.check(registry.build_schedule(coll, ALGORITHM[coll], P, m, root), spec)


@pytest.mark.parametrize("coll", NEW)
@pytest.mark.parametrize("name", list(dtypes.TABLE))
def test_every_dtype_moves_bit_for_bit(coll, name):
    spec = registry.collective(coll)
    rng = np.random.default_rng(len(name))
    for P in ((4, 8) if coll == "hypercube" else (3, 5)):
        root = P - 2 if spec.rooted else 0
        data, bits = make_data(name, (P, input_width(coll, P, 11)), rng)
        out = collectives.run(coll, data, ALGORITHM[coll], root=root, dtype=bits)
        assert out.dtype == data.dtype
        raw = data.view(f"V{data.dtype.itemsize}")     # numpy copies raw bytes (structured padding too)
        for d, row in expected(coll, raw, root).items():
            assert same_bytes(result_rows(coll, out, P, root)[d], row), (coll, name, P, d)
        assert same_bytes(out, collectives.reference(coll, data, root=root, dtype=bits))


@pytest.mark.parametrize("coll", NEW)
def test_data_plane_column_blocks_and_in_place(coll):
    """The benchmark's data plane (column blocks of bounded memory, in-place runs) counts no wrong element."""
    spec = registry.collective(coll)
    for P, root in ((8, 5), (4, 0)) if coll == "hypercube" else ((5, 3), (3, 0)):
        for dtype in ("float32", "int8", "bfloat16", "float8_e5m2"):
            runs = dataplane.measure(coll, P, 37, ALGORITHM[coll], dtype=dtype, root=root if spec.rooted else 0,
                                     iters=2, block_bytes=64)
            assert [r.nwrong for r in runs] == [0, 0] and runs[0].blocks > 1, (coll, P, dtype)


def test_hypercube_needs_a_power_of_two():
    spec = registry.collective("hypercube")
    assert [P for P in range(1, 20) if spec.supports(P)] == [1, 2, 4, 8, 16]
    for P in (3, 5, 6, 12):
        with pytest.raises(ValueError) as e:
            collectives.run("hypercube", np.zeros((P, 2), np.float32), "recursive_doubling")
        msg = str(e.value)
        assert "\n" not in msg and f"power-of-two device count, got P={P}" in msg and "not a power of 2" in msg
        with pytest.raises(ValueError, match="power-of-two"):
            registry.build_schedule("hypercube", "recursive_doubling", P, 4)
    from topologies import preset
    for algorithm in ("auto", "best", "recursive_doubling"):
        with pytest.raises(ValueError, match="got P=24"):
            collectives.simulate("hypercube", 1 << 20, preset("atlas800t-a2", nodes=3), algorithm=algorithm)


def test_schedule_shapes():
    """gather/scatter/sendrecv: one step of P-1 (gather, scatter) or P transfers; hypercube: log2 P steps
    of P transfers, the k-th moving 2^k blocks per device."""
    for P in (2, 5, 8):
        g = registry.build_schedule("gather", "direct", P, 3, root=1)
        s = registry.build_schedule("scatter", "direct", P, 3, root=1)
        r = registry.build_schedule("sendrecv", "direct", P, 3)
        assert g.num_steps == s.num_steps == r.num_steps == 1
        assert set(g.phases[0].dst.tolist()) == {1} and 1 not in g.phases[0].src.tolist()
        assert set(s.phases[0].src.tolist()) == {1} and len(s.phases[0].dst) == P - 1
        assert (r.phases[0].dst == (r.phases[0].src + 1) % P).all()
    for P in (2, 4, 8, 16):
        h = registry.build_schedule("hypercube", "recursive_doubling", P, 3)
        assert h.num_steps == P.bit_length() - 1
        for k, ph in enumerate(h.phases):
            assert (ph.dst == ph.src ^ (1 << k)).all() and len(ph.src) == P * (1 << k)


# -- sizes and bandwidths: nccl-tests' formulas --------------------------------------------------------------

def nccl_tests_columns(coll, size, P, elt, sec):
    """(size column, count column, algbw, busbw) by nccl-tests 2.19's GetCollByteCount and GetBw."""
    count = size // elt
    if coll == "sendrecv":
        sendcount = recvcount = paramcount = count
        alg = paramcount * elt / 1.0e9 / sec
        return max(sendcount, recvcount) * elt, paramcount, alg, alg * 1
    base = (count // P) & -(16 // elt)            # gather's sendcount, scatter's recvcount, hypercube's base
    if coll == "hypercube":
        alg = base * elt * (P - 1) / 1.0e9 / sec
        return base * P * elt, base, alg, alg * 1
    alg = base * P * elt / 1.0e9 / sec           # Gather/ScatterGetBw: count * nranks * typesize
    return base * P * elt, base, alg, alg * (P - 1) / P


def test_busbw_factors_are_nccl_tests():
    for P in range(1, 10):
        for coll, bus, alg in (("gather", (P - 1) / P, 1.0), ("scatter", (P - 1) / P, 1.0), ("sendrecv", 1.0, 1.0),
                               ("hypercube", (P - 1) / P, (P - 1) / P)):
            spec = registry.collective(coll)
            assert spec.busbw_factor(P) == pytest.approx(bus) and spec.algbw_factor(P) == pytest.approx(alg)


@pytest.mark.parametrize("coll", NEW)
def test_bench_rows_are_nccl_tests_columns(coll, capsys, tmp_path):
    out = tmp_path / f"{coll}.json"
    text = run(["bench", coll, "-b", "96", "-e", "1M", "-f", "7", "-d", "all", "-n", "2", "-J", str(out),
                "--model-only"], capsys)
    doc = parse(text)
    assert doc["binary"] == f"{coll}_perf" and doc["oob"] == (0, "OK")
    rows = [row_fields(r) for r in doc["rows"]]
    results = json.loads(out.read_text())["results"]
    sizes = [96 * 7 ** k for k in range(5)]                  # 96 ... 230496 (-f 7 up to 1M)
    types = dtypes.nccl_names()
    assert len(rows) == len(results) == len(sizes) * len(types)
    for i, (r, j) in enumerate(zip(rows, results)):
        name, size = types[i // len(sizes)], sizes[i % len(sizes)]
        elt = dtypes.itemsize(name)
        sec = j["out_of_place"]["time"] * 1e-6
        size_col, count_col, alg, bus = nccl_tests_columns(coll, size, 8, elt, sec)
        assert (r["size"], r["count"]) == (size_col, count_col) == (j["size"], j["count"]), (coll, name, size, r)
        assert j["out_of_place"]["alg_bw"] == pytest.approx(alg, rel=1e-12, abs=1e-15)
        assert j["out_of_place"]["bus_bw"] == pytest.approx(bus, rel=1e-12, abs=1e-15)
        assert r["oop"]["algbw"] == pytest.approx(alg, abs=0.006) and r["oop"]["busbw"] == pytest.approx(bus, abs=0.006)
        assert r["redop"] == ("sum" if coll == "sendrecv" else "none")
        assert r["root"] == (0 if coll in ("gather", "scatter") else -1)
        assert r["oop"]["wrong"] == r["ip"]["wrong"] == "N/A"


@pytest.mark.parametrize("coll", NEW)
def test_bench_checks_the_data_with_zero_wrong(coll, capsys):
    """The default topology (atlas800t-a2, 8 NPUs), data checked (-c 1): 0 wrong, N/A where nccl-tests
    checks nothing (in-place sendrecv)."""
    doc = parse(run(["bench", coll, "-b", "8", "-e", "1M", "-f", "32", "-c", "1", "-n", "2", "-r", "3"], capsys))
    rows = [row_fields(r) for r in doc["rows"]]
    assert [r["size"] for r in rows] == ([8, 256, 8192, 262144] if coll == "sendrecv" else [0, 256, 8192, 262144])
    for r in rows:
        assert r["oop"]["wrong"] == 0 and r["ip"]["wrong"] == ("N/A" if coll == "sendrecv" else 0)
        assert r["oop"]["time"] > 0 and r["oop"]["busbw"] <= r["oop"]["algbw"] + 0.01
    assert doc["oob"] == (0, "OK")


def test_gather_binary_name_every_root_and_sendrecv_every_op(capsys):
    doc = parse(run(["gather_perf", "-b", "1M", "-e", "1M", "-r", "all", "--model-only"], capsys))
    assert [row_fields(r)["root"] for r in doc["rows"]] == list(range(8))
    doc = parse(run(["bench", "sendrecv_perf", "-b", "64K", "-e", "64K", "-o", "all", "-c", "1", "-n", "1"], capsys))
    rows = [row_fields(r) for r in doc["rows"]]
    assert [r["redop"] for r in rows] == list(OP_ORDER) and {r["oop"]["wrong"] for r in rows} == {0}


def test_json_output(capsys, tmp_path):
    out = tmp_path / "s.json"
    run(["bench", "sendrecv", "-b", "1M", "-e", "1M", "-n", "1", "-J", str(out)], capsys)
    doc = json.loads(out.read_text())
    res, mine = doc["results"][0], doc["ccemu"]["results"][0]
    assert (res["redop"], res["root"], res["out_of_place"]["nwrong"], res["in_place"]["nwrong"]) == ("sum", "    -1",
                                                                                                   0.0, None)
    assert mine["sendrecv_in_place_nwrong"] == 0 and mine["algorithm"] == "direct"
    assert mine["library"]["algorithm"] == "SendRecv" and doc["ccemu"]["collective"] == "sendrecv"
    out = tmp_path / "h.json"
    run(["bench", "hypercube", "-b", "1M", "-e", "1M", "--model-only", "-J", str(out)], capsys)
    res = json.loads(out.read_text())["results"][0]
    t = res["out_of_place"]["time"] * 1e-6
    assert res["out_of_place"]["alg_bw"] == pytest.approx(res["count"] * 4 * 7 / 1e9 / t)   # HyperCubeGetBw
    assert res["out_of_place"]["bus_bw"] == res["out_of_place"]["alg_bw"]


@pytest.mark.parametrize("argv", [["bench", "hypercube", "--nodes", "3"], ["hypercube_perf", "--nodes", "3", "-c", "0"],
                                  ["bench", "hypercube", "--nodes", "3", "--model-only"]])
def test_hypercube_on_24_devices_is_one_line_and_exit_2(argv, capsys):
    assert main(argv + ["-b", "1K", "-e", "1K"]) == 2
    cap = capsys.readouterr()
    err = cap.err.strip().splitlines()
    assert cap.out == "" and len(err) == 1 and "Traceback" not in cap.err
    assert "atlas800t-a2-x3: hypercube needs a power-of-two device count, got P=24" in err[0]


def test_every_nccl_tests_binary_is_a_collective():
    from bench.nccl_tests import NCCL_TESTS_ONLY, binary_names, perf_names
    assert NCCL_TESTS_ONLY == ()
    assert set(binary_names()) == {"all_reduce_perf", "all_gather_perf", "broadcast_perf", "reduce_scatter_perf",
                                   "reduce_perf", "alltoall_perf", "alltoallv_perf", "gather_perf", "scatter_perf",
                                   "sendrecv_perf", "hypercube_perf"}
    assert {perf_names()[f"{c}_perf"] for c in NEW} == set(NEW)


# -- the libraries: the p2p path ---------------------------------------------------------------------------

@pytest.mark.parametrize("name,lib", [("dgx-h100", "nccl"), ("mi300x-8", "rccl"), ("atlas800t-a2", "hccl")])
def test_libraries_run_them_on_the_p2p_path(name, lib):
    from topologies import preset
    t = preset(name)
    for coll in NEW:
        c = libraries.library(lib).choose(coll, 1 << 20, t)
        assert c.collective == coll and c.ccemu_algorithm == ALGORITHM[coll] and c.ccemu_protocol == "simple"
        if lib == "hccl" and coll == "scatter":        # HcclScatter: the mesh's one-shot algorithm
            assert (c.algorithm, c.ccemu_exact, c.levels) == ("Mesh", True, {"level0": "Mesh"})
            assert c.predicted_us > 0
        else:                                           # grouped send/recv: no tuner, no cost model
            assert (c.algorithm, c.protocol, c.predicted_us) == ("SendRecv", "Simple", None)
            assert [x.algorithm for x in c.candidates] == ["SendRecv"] and not c.ccemu_exact
        for algorithm in ("auto", "best"):
            r = collectives.simulate(coll, 1 << 20, t, algorithm=algorithm, library=lib)
            assert r.algorithm == ALGORITHM[coll] and r.time_s > 0
    s = libraries.library("hccl").choose("scatter", 1 << 20, preset("atlas800t-a2", nodes=2))
    assert (s.algorithm, s.levels, s.ccemu_algorithm) == ("Ring", {"level0": "Mesh", "level1": "Ring"}, "direct")


# -- hccl_test: scatter_test and alltoallv_test --------------------------------------------------------------

def test_hccl_test_scatter_and_alltoallv(capsys):
    from topologies import load_topology
    topo = load_topology("atlas800t-a2")
    assert main(["hccl-test", "scatter_test", "-b", "1000", "-e", "100K", "-f", "10", "-r", "6", "-d", "fp16"]) == 0
    _, rows = parse_hccl_test(capsys.readouterr().out)
    assert [r["size"] for r in rows] == [1000, 10000, 100000] and {r["check"] for r in rows} == {"success"}
    for r in rows:   # hccl_scatter_rootinfo_test.cc: count = ceil(count / ranks); algbw = kSize x ranks / time
        m = -(-(-(-r["size"] // 2)) // 8)
        sim = collectives.simulate("scatter", 8 * m * 2, topo, library="hccl", dtype="float16", root=6)
        assert r["time"] == pytest.approx(sim.time_s * 1e6, abs=0.005)
        assert r["algbw"] == pytest.approx(8 * m * 2 / (sim.time_s * 1e6) / 1e3, rel=1e-5, abs=5e-6)
    assert main(["hccl-test", "alltoallv_test", "-b", "1000", "-e", "1M", "-f", "32"]) == 0
    _, rows = parse_hccl_test(capsys.readouterr().out)
    assert [r["size"] for r in rows] == [1000, 32000, 1024000] and {r["check"] for r in rows} == {"success"}
    for r in rows:   # hccl_alltoallv_rootinfo_test.cc: count aligned to ranks x 128 (or ranks); kSize / time
        count = -(-r["size"] // 4)
        align = 8 * 128 if count >= 8 * 128 else 8
        count = -(-count // align) * align
        sim = collectives.simulate("alltoallv", 8 * count * 4, topo, library="hccl")
        assert r["time"] == pytest.approx(sim.time_s * 1e6, abs=0.005)
        assert r["algbw"] == pytest.approx(count * 4 / (sim.time_s * 1e6) / 1e3, rel=1e-5, abs=5e-6)


# -- under MPI ------------------------------------------------------------------------------------------------

def _mpiexec():
    import shutil
    here = Path(sys.executable).parent / "mpiexec"
    return str(here) if here.exists() else shutil.which("mpiexec")


@pytest.mark.skipif(_mpiexec() is None, reason="no mpiexec next to the interpreter or on PATH")
def test_gather_and_sendrecv_under_mpiexec():
    """``mpiexec -n 2 python -m bench gather -r 5`` (the root on rank 1, 4 devices per rank) and
    sendrecv (device 3 sends across ranks): the data checked on the MPI executor, 0 wrong."""
    env = dict(os.environ, OMP_NUM_THREADS="1", NUMBA_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    for coll, extra in (("gather", ["-r", "5"]), ("sendrecv", [])):
        cmd = [_mpiexec(), "-n", "2", sys.executable, "-m", "bench", coll, "-b", "1K", "-e", "64K", "-f", "8", "-n",
               "2", *extra]
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
        start = time.monotonic()
        try:
            out, err = proc.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            pytest.fail(f"{' '.join(cmd)} did not finish in 300 s ({time.monotonic() - start:.0f} s)\n"
                        f"{err[-3000:]}")
        assert proc.returncode == 0, out[-3000:] + err[-3000:]
        doc = parse(out)
        rows = [row_fields(r) for r in doc["rows"]]
        assert doc["config"]["nGpus"] == 4 and len(doc["ranks"]) == 8 and len(rows) == 3
        assert all(r["oop"]["wrong"] == 0 and r["ip"]["wrong"] == ("N/A" if coll == "sendrecv" else 0) for r in rows)
        assert {r["root"] for r in rows} == ({5} if coll == "gather" else {-1})
