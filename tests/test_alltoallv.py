"""alltoallv (issue 14, part 5): uneven all-to-all with per-pair counts, the MoE dispatch pattern.

The data plane against an independent numpy reference, bit for bit, for P = 1..9, every dtype, uneven
and zero counts; the checker; the time plane (bytes per pair, algbw, busbw, the pairwise closed form);
the MoE generators; the library models; bad input.
"""

import numpy as np
import pytest

import collectives
from collectives import registry
from collectives.alltoallv import Counts, even_counts
from collectives.api import build_schedule
from collectives.moe import expert_devices, topk_counts, uniform_counts
from collectives.schedule import ScheduleError, check
from topologies import full_mesh, switch

SPEC = registry.collective("alltoallv")
ALGORITHMS = registry.list_algorithms("alltoallv")
DTYPES = ["float32", "float64", "float16", "bfloat16", "int8", "uint8", "int32", "uint32", "int64", "uint64"]


def random_counts(P, seed, high=5, zeros=0.3):
    """Uneven counts with zeros: some pairs, a whole row and a whole column when P > 2."""
    rng = np.random.default_rng(seed)
    m = rng.integers(0, high, (P, P))
    m[rng.random((P, P)) < zeros] = 0
    if P > 2:
        m[1, :] = 0          # a device that sends nothing
        m[:, 2] = 0          # one that receives nothing
    return m


def bits_input(P, width, dtype, seed):
    """Random bit patterns of ``dtype`` (NaNs, signed zeros and all): a copy must keep every bit."""
    rng = np.random.default_rng(seed)
    store = np.uint16 if dtype == "bfloat16" else np.dtype(dtype)
    raw = rng.integers(0, 256, size=(P, width * np.dtype(store).itemsize), dtype=np.uint8)
    return raw.view(store).reshape(P, width)


def numpy_alltoallv(data, m):
    """The MPI_Alltoallv result with packed displacements, written out block by block."""
    P = data.shape[0]
    out = np.zeros((P, int(m.sum(axis=0).max())), data.dtype)
    for j in range(P):
        at = 0
        for i in range(P):
            start = int(m[i, :j].sum())
            out[j, at:at + m[i, j]] = data[i, start:start + m[i, j]]
            at += m[i, j]
    return out


def same_bits(a, b):
    return a.shape == b.shape and a.dtype == b.dtype and np.array_equal(
        np.ascontiguousarray(a).view(np.uint8), np.ascontiguousarray(b).view(np.uint8))


# -- data plane ------------------------------------------------------------------------------------

@pytest.mark.parametrize("alg", ALGORITHMS)
@pytest.mark.parametrize("P", range(1, 10))
def test_every_device_count_uneven_and_zero_counts(alg, P):
    for seed in range(3):
        m = random_counts(P, 100 * P + seed)
        for extra in (0, 3):  # the input may be wider than the largest row: the rest is not sent
            data = bits_input(P, int(m.sum(axis=1).max()) + extra, "float32", seed).view(np.float32)
            before = data.copy()
            out = collectives.run("alltoallv", data, alg, counts=m)
            assert same_bits(out, numpy_alltoallv(data, m)), (alg, P, seed)
            assert same_bits(out, collectives.reference("alltoallv", data, counts=m))
            assert same_bits(data, before)
    zero = np.zeros((P, P), np.int64)
    out = collectives.run("alltoallv", np.ones((P, 2), np.float32), alg, counts=zero)
    assert out.shape == (P, 0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("alg", ALGORITHMS)
def test_every_dtype_bit_for_bit(alg, dtype):
    for P in (1, 3, 4, 7):
        m = random_counts(P, P, high=9)
        data = bits_input(P, int(m.sum(axis=1).max()), dtype, P)
        bf = "bfloat16" if dtype == "bfloat16" else None
        out = collectives.run("alltoallv", data, alg, dtype=bf, counts=m)
        assert same_bits(out, numpy_alltoallv(data, m)), (alg, dtype, P)
        assert same_bits(out, collectives.reference("alltoallv", data, dtype=bf, counts=m))


def test_counts_forms_and_defaults():
    P = 4
    m = random_counts(P, 1)
    data = np.arange(P * int(m.sum(axis=1).max()), dtype=np.int32).reshape(P, -1)
    want = numpy_alltoallv(data, m)
    for given in (m, m.tolist(), Counts(m), m.astype(np.uint16)):
        assert same_bits(collectives.run("alltoallv", data, "direct", counts=given), want)
    # Without counts: every row cut evenly; at a multiple of P, alltoall's result.
    even = np.arange(P * 8, dtype=np.float32).reshape(P, 8)
    assert same_bits(collectives.run("alltoallv", even, "pairwise"), collectives.run("alltoall", even, "pairwise"))
    odd = np.arange(P * 7, dtype=np.float32).reshape(P, 7)
    assert same_bits(collectives.run("alltoallv", odd, "direct"), numpy_alltoallv(odd, even_counts(P, P * 7).matrix))
    assert even_counts(P, P * 7).tolist() == [[2, 2, 2, 1]] * P


def test_moe_routing_through_both_algorithms():
    c = topk_counts(6, 40, 3, experts=24, top_k=4, seed=2)
    data = np.random.default_rng(0).normal(size=(6, int(c.send.max()))).astype(np.float32)
    want = numpy_alltoallv(data, c.matrix)
    for alg in ALGORITHMS:
        assert same_bits(collectives.run("alltoallv", data, alg, counts=c), want)
    # The combine sends the results back: the transposed counts, and the round trip is the identity.
    back = collectives.run("alltoallv", want, "pairwise", counts=c.matrix.T)
    np.testing.assert_array_equal(back[:, :data.shape[1]], data)


# -- schedules and the checker -------------------------------------------------------------------------

@pytest.mark.parametrize("alg", ALGORITHMS)
def test_checker_proves_both_algorithms(alg):
    for P in list(range(1, 18)) + [33]:
        m = random_counts(P, P)
        check(build_schedule("alltoallv", alg, P, int(m.sum()), counts=m), SPEC)
        check(build_schedule("alltoallv", alg, P, 2 * P + 1), SPEC)


def test_schedule_shape_and_placement():
    m = np.array([[1, 2, 0], [0, 0, 0], [3, 0, 4]])
    s = build_schedule("alltoallv", "pairwise", 3, int(m.sum()), counts=m)
    # Pairs with nothing to send are left out, and so is a step with nothing in it (exchange2: 0->2, 1->0, 2->1).
    assert [(ph.name, list(zip(ph.src.tolist(), ph.dst.tolist()))) for ph in s.phases] == \
        [("local-copy", [(0, 0), (2, 2)]), ("exchange1", [(0, 1), (2, 0)])]
    assert s.length == 7 + 4 and s.count == 10          # max send (device 2: 7) + max receive (device 0: 4)
    # Chunk 0*3+1 (0 -> 1) sits at 1 on device 0 (after its own block) and at Smax + 0 on device 1.
    assert s.offsets([0, 1], [1, 1]).tolist() == [1, 7]
    # Device 2's own block (chunk 8) and its receive copy (chunk 9 + 2) in its receive area after 0's block.
    assert s.offsets([2, 2], [8, 11]).tolist() == [3, 7 + 0]
    d = build_schedule("alltoallv", "direct", 3, int(m.sum()), counts=m)
    assert len(d.phases) == 1 and len(d.phases[0].src) == 4


def test_checker_rejects_broken_alltoallv_schedules():
    m = np.array([[1, 2, 3], [4, 0, 5], [6, 7, 8]])
    s = build_schedule("alltoallv", "direct", 3, int(m.sum()), counts=m)
    ph = s.phases[0]
    src_chunk, dst_chunk = ph.chunks(0)
    swapped = dst_chunk.copy()
    swapped[[1, 2]] = swapped[[2, 1]]       # two blocks land in each other's place (lengths 2 and 3)
    ph.chunks = lambda k: (src_chunk, swapped)
    with pytest.raises(ScheduleError):
        check(s, SPEC)
    s = build_schedule("alltoallv", "pairwise", 3, int(m.sum()), counts=m)
    s.phases.pop()                           # one step short
    with pytest.raises(ScheduleError, match="ends with nothing"):
        check(s, SPEC)
    s = build_schedule("alltoallv", "direct", 3, int(m.sum()), counts=m)
    ph = s.phases[0]
    sc, _ = ph.chunks(0)
    ph.chunks = lambda k: (sc, sc)           # self blocks written over the send blocks they are read from
    with pytest.raises(ScheduleError, match="read and written"):
        check(s, SPEC)
    s = build_schedule("alltoallv", "direct", 3, int(m.sum()), counts=m)
    s.placement.sd = s.placement.sd * 0      # every send block at offset 0: they overlap
    with pytest.raises(ScheduleError, match="overlap"):
        check(s, SPEC)


# -- time plane ------------------------------------------------------------------------------------------

def test_simulate_takes_the_matrix_with_its_dtype():
    t = switch(4, bw_GBps=10.0, lat_us=1.0)
    m = random_counts(4, 3, high=1000)
    for dtype, size in (("bfloat16", 2), ("float32", 4), ("float64", 8)):
        r = collectives.simulate("alltoallv", m, t, algorithm="pairwise", dtype=dtype)
        total = int(m.sum()) * size
        assert (r.nbytes, r.count, r.dtype, r.P) == (total, int(m.sum()), dtype, 4)
        assert r.algbw_GBps == pytest.approx(total / r.time_s / 1e9, rel=1e-12)
        assert r.busbw_GBps == pytest.approx(r.algbw_GBps * 3 / 16, rel=1e-12)  # (P-1)/P on S/P
        # The same call through the counts keyword, and as a Counts.
        assert collectives.simulate("alltoallv", total, t, "pairwise", dtype, counts=m).time_s == r.time_s
        assert collectives.simulate("alltoallv", Counts(m), t, "pairwise", dtype=dtype).time_s == r.time_s


def test_pairwise_is_hccls_documented_cost_on_a_switch():
    """Step k lasts alpha + max_i n(i, i+k) / bw: (P-1) alpha + beta sum_k max_i n(i, i+k) in all."""
    P, bw, lat = 5, 10.0, 1.0
    t = switch(P, bw_GBps=bw, lat_us=lat)
    m = random_counts(P, 4, high=1 << 20, zeros=0.0) + 1
    r = collectives.simulate("alltoallv", m, t, algorithm="pairwise", dtype="float32")
    alpha = 2 * lat * 1e-6      # device -> switch -> device
    steps = [max(m[i, (i + k) % P] for i in range(P)) * 4 / (bw * 1e9) for k in range(1, P)]
    assert r.time_s == pytest.approx((P - 1) * alpha + sum(steps), rel=1e-9)
    assert [st["phase"] for st in r.steps] == ["local-copy"] + [f"exchange{k}" for k in range(1, P)]


def test_uniform_counts_time_as_alltoall():
    for t in (switch(8, bw_GBps=25.0, lat_us=1.0), full_mesh(6, bw_GBps=50.0, lat_us=0.5)):
        P = t.num_devices
        for alg in ALGORITHMS:
            per_pair = 1 << 14
            a = collectives.simulate("alltoall", P * per_pair * 4, t, algorithm=alg)
            v = collectives.simulate("alltoallv", uniform_counts(P, per_pair), t, algorithm=alg)
            s = collectives.simulate("alltoallv", P * P * per_pair * 4, t, algorithm=alg)   # a scalar: even counts
            assert v.time_s == pytest.approx(a.time_s, rel=1e-12) and s.time_s == v.time_s
            assert v.nbytes == P * a.nbytes and v.busbw_GBps == pytest.approx(a.busbw_GBps, rel=1e-12)


def test_skewed_routing_is_slower_than_even_and_best_chooses():
    t = switch(8, bw_GBps=25.0, lat_us=1.0)
    even = topk_counts(8, 2048, 256, skew=0.0, seed=3)
    hot = topk_counts(8, 2048, 256, skew=1.5, seed=3)
    te = collectives.simulate("alltoallv", even, t, algorithm="direct", dtype="bfloat16").time_s
    th = collectives.simulate("alltoallv", hot, t, algorithm="direct", dtype="bfloat16").time_s
    assert th > 1.2 * te
    r = collectives.simulate("alltoallv", hot, t, algorithm="best", dtype="bfloat16", candidates=True)
    assert {c.algorithm for c in r.candidates} == set(ALGORITHMS)
    assert r.time_s == min(c.result.time_s for c in r.candidates if c.result is not None)
    assert r.params["counts"] == hot


@pytest.mark.parametrize("name,options,library", [("atlas800t-a2", {}, None), ("atlas800t-a2", {"nodes": 2}, "hccl"),
                                                  ("dgx-h100", {}, "nccl"), ("mi300x-8", {}, "rccl")])
def test_auto_and_the_library_models(name, options, library):
    from topologies import preset

    t = preset(name, **options)
    m = topk_counts(t.num_devices, 512, 7168, seed=5)
    r = collectives.simulate("alltoallv", m, t, dtype="bfloat16", library=library)
    assert r.selection == "auto" and r.algorithm in ALGORITHMS and r.time_s > 0
    if library is not None:
        c = r.library_choice
        assert (c.library, c.collective, c.nbytes) == (library, "alltoallv", r.nbytes)
        assert c.pieces is None and "tuned as alltoall" in c.notes[-1]


def test_simulate_at_scale():
    """Pairwise on a CloudMatrix 384 supernode (about 2 s: 383 steps of 384 flows). Direct there is
    one step of 147,072 flows of different sizes, which the network model's event loop takes minutes
    over (about 1.7 s at 64 devices, 63 s at 128), so it is not timed here."""
    from topologies import preset

    t = preset("cloudmatrix384")
    r = collectives.simulate("alltoallv", topk_counts(384, 64, 7168, seed=1), t, algorithm="pairwise",
                             dtype="bfloat16")
    assert r.P == 384 and r.time_s > 0 and len(r.steps) >= 383


# -- MoE generators ----------------------------------------------------------------------------------------

def test_topk_counts_reproducible_and_sized():
    a = topk_counts(8, 1000, 7168, seed=11)
    assert a == topk_counts(8, 1000, 7168, seed=11) and hash(a) == hash(topk_counts(8, 1000, 7168, seed=11))
    assert a != topk_counts(8, 1000, 7168, seed=12)
    assert a.total == 8 * 1000 * 8 * 7168 and (a.send == 1000 * 8 * 7168).all()
    d = topk_counts(8, 1000, 7168, seed=11, dedup=True)
    assert (d.matrix <= a.matrix).all() and d.total < a.total
    uneven = topk_counts(3, [0, 10, 20], 2, experts=6, top_k=2)
    assert uneven.send.tolist() == [0, 40, 80]
    assert expert_devices(8).tolist() == np.repeat(np.arange(8), 32).tolist()
    assert np.bincount(expert_devices(9), minlength=9).tolist() == [29, 28, 29, 28, 29, 28, 29, 28, 28]


def test_skew_concentrates_the_receives():
    flat = topk_counts(8, 4096, 1, skew=0.0, seed=1).recv
    hot = topk_counts(8, 4096, 1, skew=1.5, seed=1).recv
    assert flat.max() / flat.mean() < 1.05 < 1.5 < hot.max() / hot.mean()


def test_counts_values():
    c = Counts([[0, 2], [3, 1]])
    assert c.sdispls.tolist() == [[0, 0], [0, 3]] and c.rdispls.tolist() == [[0, 0], [0, 2]]
    assert c.kron(2).matrix.tolist() == [[0, 0, 2, 2], [0, 0, 2, 2], [3, 3, 1, 1], [3, 3, 1, 1]]
    assert c.fingerprint() == Counts(np.array([[0, 2], [3, 1]], np.uint8)).fingerprint()
    with pytest.raises(AttributeError):
        c.matrix = None
    with pytest.raises(ValueError):
        c.matrix[0, 0] = 5
    assert "P=2, total=6" in repr(c)


# -- bad input ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("call,kind,match", [
    (lambda d: collectives.run("alltoallv", d, "direct", counts=[[1, -2, 0], [0, 0, 0], [0, 0, 0]]), ValueError,
     r"^counts\[0\]\[1\] = -2; counts must be >= 0$"),
    (lambda d: collectives.run("alltoallv", d, "direct", counts=np.ones((3, 2), int)), ValueError,
     r"^counts has shape \(3, 2\); expected \(3, 3\) for P=3 devices$"),
    (lambda d: collectives.run("alltoallv", d, "direct", counts=np.ones((4, 4), int)), ValueError, r"shape \(4, 4\)"),
    (lambda d: collectives.run("alltoallv", d, "direct", counts=[[1, 2], [3]]), TypeError, "ragged list"),
    (lambda d: collectives.run("alltoallv", d, "direct", counts=np.full((3, 3), 0.5)), TypeError,
     "integers, got float64"),
    (lambda d: collectives.run("alltoallv", d, "direct", counts=5), TypeError, "matrix of integers, got int"),
    (lambda d: collectives.run("alltoallv", d, "direct", counts=[[7, 0, 0], [0, 0, 0], [0, 0, 0]]), ValueError,
     "input has 6 elements per device; counts has device 0 send 7"),
    (lambda d: collectives.reference("alltoallv", d, count=[[1]]), TypeError, "'count'; alltoallv takes counts"),
    (lambda d: build_schedule("alltoallv", "direct", 3, 5, counts=np.ones((3, 3), int)), ValueError,
     "counts sum to 9 elements; the call's count is 5"),
    (lambda d: collectives.simulate("alltoallv", np.ones((2, 2), int), "atlas800t-a2"), ValueError,
     r"\(8, 8\) for P=8"),
    (lambda d: collectives.simulate("alltoallv", 64, switch(2), counts=[[1, 1], [1, 1]]), ValueError,
     "nbytes=64 but counts sum to 4 elements"),
    (lambda d: collectives.simulate("alltoallv", [[1, 1], [1, 1]], switch(2), counts=[[1, 1], [1, 1]]), ValueError,
     "given twice"),
    (lambda d: topk_counts(4, 10, 8, top_k=300), ValueError, "top_k=300; expected at most experts=256"),
    (lambda d: topk_counts(4, 10, 8, skew=-1), ValueError, "skew=-1"),
    (lambda d: topk_counts(4, [1, 2], 8), ValueError, r"tokens_per_device=\[1, 2\]"),
    (lambda d: topk_counts(0, 10, 8), ValueError, "P=0"),
])
def test_bad_input_one_line_naming_the_value(call, kind, match):
    data = np.ones((3, 6), np.float32)
    with pytest.raises(kind, match=match) as exc:
        call(data)
    assert "\n" not in str(exc.value)
