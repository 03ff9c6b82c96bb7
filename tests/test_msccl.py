"""MSCCL XML algorithm files as ccemu schedules (issue 16, item 5): :mod:`collectives.formats.msccl`.

The two files under ``tests/data/msccl`` were written for these tests in MSCCL's classic XML format:

- ``allpairs.xml`` (8 GPUs, in place, no scratch): gpu g sends chunk p to every peer p, which
  reduces it into its chunk p (``rrc``, one thread block per peer, all at once); once all of its
  reductions are done (``nop`` steps carry the extra dependencies) gpu g sends its chunk g to every
  peer (``s`` / ``r``). In ccemu's step model that is two steps: the P(P-1) reductions of ccemu's
  ``direct`` scatter-reduce, then its gather. Real MSCCL would have the P-1 ``rrc`` of one GPU
  race on one chunk (msccl-tools stages them in scratch and fuses a ``re`` instead); ccemu reduces
  them as one multi-source reduction, as RCCL's allpairs kernel does, and has no room for scratch
  in its allreduce buffer, so the file is written without it.
- ``ring.xml`` (4 GPUs, in place, one channel): ring 0 -> 1 -> 2 -> 3 -> 0; gpu g sends chunk
  g-1, reduces and forwards (``rrcs``) P-1 chunks, then forwards (``rcs``) and keeps (``r``) the
  others: 2(P-1) steps, the same transfers step for step as ccemu's ``ring`` with ``channels=1``.
"""

import math
import re
from pathlib import Path

import numpy as np
import pytest

import collectives
from collectives import registry
from collectives.formats.msccl import MAX_FILE_BYTES, load_msccl, register_msccl
from collectives.registry import AlgorithmUnavailable
from collectives.schedule import check
from topologies import full_mesh, ring

DATA = Path(__file__).parent / "data" / "msccl"
ALLPAIRS, RING = DATA / "allpairs.xml", DATA / "ring.xml"


@pytest.fixture
def registered():
    names = [register_msccl(ALLPAIRS), register_msccl(RING)]
    yield names
    for n in names:
        registry.unregister("allreduce", n)


def close(a, b, rel=1e-9):
    return math.isclose(a, b, rel_tol=rel, abs_tol=0.0)


# -- the two files --------------------------------------------------------------------------------

@pytest.mark.parametrize("path, P, levels", [(ALLPAIRS, 8, 2), (RING, 4, 6)])
def test_files_load_and_their_schedules_pass_the_checker(path, P, levels):
    alg = load_msccl(path)
    assert (alg.coll, alg.ngpus, alg.nchunksperloop, alg.proto, alg.inplace) == ("allreduce", P, P, "Simple", True)
    assert alg.num_levels == levels
    spec = registry.collective("allreduce")
    for count in (0, 3, P, 1000, 1003):
        s = alg.schedule(P, count)
        assert s.num_steps == levels and s.length == count
        check(s, spec)


def test_register_names_and_the_registry_entry(registered):
    assert registered == ["msccl:allpairs", "msccl:ring"]
    assert set(registered) <= set(registry.list_algorithms("allreduce"))
    assert registry.info("allreduce", "msccl:ring").params == {}
    with pytest.raises(ValueError, match="has no parameter 'chunks'"):
        collectives.run("allreduce", np.ones((4, 8), np.float32), algorithm="msccl:ring", chunks=2)
    custom = register_msccl(RING, name="my-ring")
    try:
        assert custom == "my-ring" and "my-ring" in registry.list_algorithms("allreduce")
    finally:
        registry.unregister("allreduce", custom)


@pytest.mark.parametrize("name, P", [("msccl:allpairs", 8), ("msccl:ring", 4)])
@pytest.mark.parametrize("dtype", [np.float32, np.int32])
@pytest.mark.parametrize("count", [1, 8, 1003])
def test_run_equals_the_reference(registered, name, P, dtype, count):
    rng = np.random.default_rng(count)
    data = rng.integers(-1000, 1000, size=(P, count)).astype(dtype)  # integer-valued: any order is exact
    out = collectives.run("allreduce", data, algorithm=name)
    np.testing.assert_array_equal(out, collectives.reference("allreduce", data))


def test_other_device_counts_are_unavailable(registered):
    with pytest.raises(AlgorithmUnavailable, match=r"msccl:allpairs .* 8 GPUs .*P=4"):
        collectives.simulate("allreduce", 1 << 20, full_mesh(4), algorithm="msccl:allpairs")
    with pytest.raises(AlgorithmUnavailable, match="4 GPUs"):
        collectives.run("allreduce", np.ones((3, 4), np.float32), algorithm="msccl:ring")


@pytest.mark.parametrize("nbytes", [8 << 10, 1 << 20, 64 << 20])
def test_allpairs_times_as_direct_on_a_full_mesh(registered, nbytes):
    """Same two steps over the same pairs and chunks as ``direct``: equal times."""
    t = full_mesh(8, bw_GBps=25.0, lat_us=1.0)
    got = collectives.simulate("allreduce", nbytes, t, algorithm="msccl:allpairs")
    want = collectives.simulate("allreduce", nbytes, t, algorithm="direct")
    assert close(got.time_s, want.time_s), (got.time_s, want.time_s)
    assert [s["repeat"] for s in got.steps] == [1, 1]


@pytest.mark.parametrize("nbytes", [8 << 10, 1 << 20, 64 << 20])
def test_ring_times_as_ring_with_one_channel_on_a_ring(registered, nbytes):
    """Step k of the file moves the chunks ccemu's ring moves in its step k: equal times."""
    t = ring(4, bw_GBps=25.0, lat_us=1.0)
    got = collectives.simulate("allreduce", nbytes, t, algorithm="msccl:ring")
    want = collectives.simulate("allreduce", nbytes, t, algorithm="ring", channels=1)
    assert close(got.time_s, want.time_s), (got.time_s, want.time_s)
    assert sum(s["repeat"] for s in got.steps) == 6


def test_out_of_place_file_is_mapped_onto_the_one_buffer(tmp_path):
    p = tmp_path / "ring_oop.xml"
    p.write_text(RING.read_text().replace('inplace="1"', 'inplace="0"'))
    alg = load_msccl(p)
    assert not alg.inplace
    check(alg.schedule(4, 100), registry.collective("allreduce"))


# -- refused files ----------------------------------------------------------------------------------

def _variant(tmp_path, text, name="bad.xml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def _refused(path, *needles):
    with pytest.raises(ValueError) as info:
        load_msccl(path)
    msg = str(info.value)
    assert "\n" not in msg and str(path) in msg, msg
    for n in needles:
        assert n in msg, msg
    return msg


RING_TEXT = RING.read_text()
FIRST_STEP = '<step s="0" type="s" srcbuf="i" srcoff="3" dstbuf="o" dstoff="-1" cnt="1" depid="-1" deps="-1" hasdep="0"/>'


@pytest.mark.parametrize("old, new, needles", [
    (' nchunksperloop="4"', "", ["<algo>", "'nchunksperloop'", "missing"]),
    (FIRST_STEP, FIRST_STEP.replace(' cnt="1"', ""), ["<gpu id=0> <tb id=0> <step s=0>", "'cnt'"]),
    (FIRST_STEP, FIRST_STEP.replace('type="s"', 'type="xyz"'), ["<step s=0>", "type='xyz'"]),
    (FIRST_STEP, FIRST_STEP.replace('srcoff="3"', 'srcoff="three"'), ["srcoff='three'", "not an integer"]),
    (FIRST_STEP, FIRST_STEP.replace('srcoff="3"', 'srcoff="4"'), ["srcoff=4", "outside buffer"]),
    (FIRST_STEP, FIRST_STEP.replace('srcbuf="i"', 'srcbuf="s"'), ["srcbuf='s'", "scratch"]),
    (FIRST_STEP, FIRST_STEP.replace('srcbuf="i"', 'srcbuf="x"'), ["srcbuf='x'"]),
    (FIRST_STEP, FIRST_STEP.replace('depid="-1" deps="-1"', 'depid="3" deps="0"'), ["depid=3", "no such <tb>"]),
    ('coll="allreduce"', 'coll="allgather"', ["coll='allgather'", "not supported"]),
    ('proto="Simple"', 'proto="Fast"', ["proto='Fast'"]),
    ('<tb id="0" send="1" recv="3"', '<tb id="1" send="1" recv="3"', ["<tb id=0> is missing"]),
    ('<tb id="0" send="1" recv="3"', '<tb id="0" send="0" recv="3"', ["send=0", "the gpu itself"]),
    ('chan="0"', 'chan="1"', ["chan=1", "out of range"]),
    ('ngpus="4"', 'ngpus="5"', ["ngpus=5", "<gpu id=4> is missing"]),
    ('<step s="6" type="r" srcbuf="i" srcoff="-1" dstbuf="i" dstoff="1"',   # gpu 0 drops its last receive
     '<step s="6" type="nop" srcbuf="i" srcoff="-1" dstbuf="i" dstoff="1"',
     ["gpu 3 sends 6 time(s) to gpu 0", "receives 5"]),
    (FIRST_STEP, "", ["s=1 out of order"]),
    ("<step ", "<op ", ["<op>", "not supported"]),
    ("</algo>", "", ["not well-formed"]),
])
def test_malformed_files_raise_naming_file_element_and_attribute(tmp_path, old, new, needles):
    assert old in RING_TEXT
    _refused(_variant(tmp_path, RING_TEXT.replace(old, new, 1)), *needles)


@pytest.mark.parametrize("prolog", [
    '<!DOCTYPE algo [<!ENTITY x "y">]>\n',
    '<!DOCTYPE algo SYSTEM "http://example.invalid/msccl.dtd">\n',
    '<!ENTITY lol "lol">\n',
])
def test_dtd_and_entities_are_refused(tmp_path, prolog):
    text = RING_TEXT.replace("<algo ", prolog + "<algo ", 1)
    _refused(_variant(tmp_path, text), "DTD / ENTITY")


def test_files_over_64_mib_are_refused_unread(tmp_path):
    p = tmp_path / "huge.xml"
    with open(p, "wb") as f:   # sparse: nothing is written but the size
        f.truncate(MAX_FILE_BYTES + 1)
    _refused(p, "64 MiB")


def test_missing_file_and_non_utf8_are_refused(tmp_path):
    _refused(tmp_path / "absent.xml", "cannot read")
    p = tmp_path / "latin.xml"
    p.write_bytes(RING_TEXT.replace("ring_allreduce", "ring\xe9").encode("latin-1"))
    _refused(p, "not UTF-8")


def _two_gpu(steps0, steps1, tb0='send="1" recv="1"', tb1='send="0" recv="0"'):
    def block(gid, tb, steps):
        body = "\n".join(f'<step s="{i}" {s}/>' for i, s in enumerate(steps))
        return f'<gpu id="{gid}" i_chunks="2" o_chunks="2" s_chunks="0"><tb id="0" {tb} chan="0">{body}</tb></gpu>'
    return ('<algo name="t" nchunksperloop="2" nchannels="1" proto="Simple" ngpus="2" coll="allreduce" '
            f'inplace="1">{block(0, tb0, steps0)}{block(1, tb1, steps1)}</algo>')


def _op(kind, so=-1, do=-1, extra='depid="-1" deps="-1" hasdep="0"'):
    return f'type="{kind}" srcbuf="i" srcoff="{so}" dstbuf="i" dstoff="{do}" cnt="1" {extra}'


def test_a_small_handmade_file_loads(tmp_path):
    """2 GPUs: each sends the other's chunk, reduces its own, sends it back, keeps the other's."""
    text = _two_gpu([_op("s", 1), _op("rrc", 0, 0), _op("s", 0), _op("r", do=1)],
                    [_op("s", 0), _op("rrc", 1, 1), _op("s", 1), _op("r", do=0)])
    alg = load_msccl(_variant(tmp_path, text, "two.xml"))
    assert alg.num_levels == 2
    data = np.arange(10, dtype=np.int32).reshape(2, 5)
    name = register_msccl(_variant(tmp_path, text, "two.xml"), name="msccl-test-two")
    try:
        np.testing.assert_array_equal(collectives.run("allreduce", data, algorithm=name),
                                      collectives.reference("allreduce", data))
    finally:
        registry.unregister("allreduce", name)


def test_a_dependency_cycle_is_refused(tmp_path):
    """Both GPUs receive before they send: each waits for the other (MSCCL would hang)."""
    text = _two_gpu([_op("r", do=0), _op("s", 1)], [_op("r", do=1), _op("s", 0)])
    _refused(_variant(tmp_path, text), "cycle")


def test_a_dependency_on_a_step_without_hasdep_is_refused(tmp_path):
    text = _two_gpu([_op("s", 1), _op("rrc", 0, 0), _op("s", 0), _op("r", do=1)],
                    [_op("s", 0), _op("rrc", 1, 1), _op("s", 1, extra='depid="0" deps="1" hasdep="0"'),
                     _op("r", do=0)])
    _refused(_variant(tmp_path, text), "<gpu id=1> <tb id=0> <step s=1>", "hasdep=0")


def test_a_file_that_does_not_compute_the_allreduce_is_refused(tmp_path):
    """GPU 1 never sends its reduced chunk back: GPU 0 ends without it."""
    text = _two_gpu([_op("s", 1), _op("rrc", 0, 0), _op("s", 0)],
                    [_op("s", 0), _op("rrc", 1, 1), _op("r", do=0)])
    msg = _refused(_variant(tmp_path, text), "does not compute allreduce")
    assert re.search(r"device 0 chunk 1", msg), msg


def test_rrc_between_different_chunks_is_refused(tmp_path):
    text = _two_gpu([_op("s", 1), _op("rrc", 0, 1)], [_op("s", 0), _op("rrc", 1, 1)])
    _refused(_variant(tmp_path, text), "dstoff=1", "srcoff=0")


def test_a_buffered_send_overwritten_before_it_is_taken_is_refused(tmp_path):
    """GPU 0's send of chunk 1 is buffered in MSCCL, but GPU 1 takes it only in step 3 (after two
    local copies), while GPU 0 overwrites chunk 1 in step 1: the step model cannot keep the old data."""
    text = _two_gpu([_op("s", 1), _op("r", do=1)], [_op("s", 1), _op("cpy", 0, 1), _op("cpy", 1, 0), _op("r", do=0)])
    _refused(_variant(tmp_path, text), "buffered send of chunk 1", "step 3", "step 1")


def test_bench_algo_msccl_file(capsys):
    # --algo msccl:FILE registers the file and runs it on data (checked) with its emulated time.
    from bench.cli import main
    path = DATA / "allpairs.xml"
    assert main(["allreduce", "-b", "64K", "-e", "64K", "--topology", "mi308x-8", "--algo", f"msccl:{path}"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines() if line.strip() and not line.startswith("#")]
    assert len(rows) == 1 and rows[0][8] == "0" and rows[0][12] == "0"
    assert main(["allgather", "-b", "64K", "-e", "64K", "--algo", f"msccl:{path}"]) == 2
    assert "allreduce only" in capsys.readouterr().err
