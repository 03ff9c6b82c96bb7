"""Hardened inputs: every bad input to the CLIs and file loaders gives one line on stderr, exit
status 2, no traceback, and no output file."""

import json
import os

import pytest

from bench.cli import main

GOOD_NODE = {"kind": "device", "index": 0, "id": "a"}


def topo_json(nodes=None, links=None, **top):
    doc = {"schema": "ccemu-topology", "version": 1, "directed": True, "multigraph": False, "graph": {},
           "nodes": nodes if nodes is not None else [dict(GOOD_NODE), {"kind": "device", "index": 1, "id": "b"}],
           "links": links if links is not None else [
               {"source": "a", "target": "b", "bw_GBps": 10.0, "lat_us": 1.0, "link": "generic", "lanes": 1},
               {"source": "b", "target": "a", "bw_GBps": 10.0, "lat_us": 1.0, "link": "generic", "lanes": 1}]}
    doc.update(top)
    return json.dumps(doc)


def link_with(**attrs):
    base = {"source": "a", "target": "b", "bw_GBps": 10.0, "lat_us": 1.0, "link": "generic", "lanes": 1}
    base.update(attrs)
    back = dict(base, source="b", target="a")
    return [base, back]


GOOD_XML_HEAD = '<system version="1"><cpu numaid="0"><pci busid="0000:01:00.0" class="0x030000">'
BILLION_LAUGHS = ('<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
                  '<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]><system>&lol2;</system>')

# (file name, file content (str or bytes) or None, argv with {f} for the file path, text the error must contain)
CASES = [
    # topology files
    ("t.json", topo_json()[:-40], ["topo", "show", "{f}"], "not valid JSON at line"),
    ("t.json", "", ["topo", "show", "{f}"], "not valid JSON"),
    ("t.json", "[1, 2]", ["topo", "show", "{f}"], "not a ccemu topology file"),
    ("t.json", topo_json(schema="other"), ["topo", "show", "{f}"], "not a ccemu topology file"),
    ("t.json", topo_json(version=2), ["topo", "show", "{f}"], "version 2 is not supported"),
    ("t.json", topo_json(links=link_with(bw_GBps=float("nan"))), ["topo", "show", "{f}"], "bw_GBps=nan"),
    ("t.json", topo_json(links=link_with(lat_us=-1.0)), ["topo", "show", "{f}"], "lat_us=-1.0"),
    ("t.json", topo_json(links=link_with(bw_GBps=1e400)), ["topo", "show", "{f}"], "bw_GBps=inf"),
    ("t.json", topo_json(links=link_with(bw_GBps="fast")), ["topo", "show", "{f}"], "bw_GBps='fast'"),
    ("t.json", topo_json(links=link_with(lanes=0)), ["topo", "show", "{f}"], "lanes=0"),
    ("t.json", topo_json(nodes=[dict(GOOD_NODE), {"kind": "gpu", "index": 1, "id": "b"}]), ["topo", "show", "{f}"],
     "kind 'gpu'"),
    ("t.json", topo_json(nodes=[dict(GOOD_NODE), {"kind": "device", "index": 5, "id": "b"}]), ["topo", "show", "{f}"],
     "missing index 1"),
    ("t.json", topo_json(nodes=[{"kind": "switch", "id": f"s{i}"} for i in range(1_000_001)], links=[]),
     ["topo", "show", "{f}"], "more than the 250000"),
    ("t.json", b'{"schema": "ccemu-topology", "name": "\xff\xfe"}', ["topo", "show", "{f}"], "not UTF-8"),
    ("t.json", topo_json(nodes="many"), ["topo", "show", "{f}"], "malformed 'nodes'"),
    ("t.graphml", '<?xml version="1.0"?><graphml><graph edgedefault="directed"><node id="a"', ["topo", "show", "{f}"],
     "malformed XML at line"),
    ("t.graphml", BILLION_LAUGHS, ["topo", "show", "{f}"], "refused"),
    ("t.xml", BILLION_LAUGHS, ["topo", "show", "{f}"], "refused"),
    ("t.xml", GOOD_XML_HEAD + '<gpu dev="0" sm="90" rank="0"', ["topo", "show", "{f}"], "malformed XML"),
    ("t.xml", GOOD_XML_HEAD + '<gpu dev="0" sm="90" rank="0"><nvlink target="0000:02:00.0" count="abc" '
     'tclass="0x030000"/></gpu></pci></cpu></system>', ["topo", "show", "{f}"], "count"),
    ("t.txt", "hello", ["topo", "show", "{f}"], "unknown extension '.txt'"),
    ("t.json", topo_json(), ["bench", "allreduce", "--topology", "{f}", "--nodes", "2", "--model-only"],
     "applies to presets and NCCL XML files"),
    # benchmark arguments
    (None, None, ["bench", "allreduce", "-b", "7", "-e", "7", "--model-only"], "not a multiple of the float32"),
    (None, None, ["bench", "allreduce", "-b", "1M", "-e", "512K"], "-b 1M is larger than -e 512K"),
    (None, None, ["bench", "allreduce", "-e", "99999999999999999999G", "--model-only"], "largest size"),
    (None, None, ["bench", "allreduce", "-d", "float128", "--model-only"], "unknown datatype 'float128'"),
    (None, None, ["bench", "allreduce", "-o", "mean", "--model-only"], "unknown op 'mean'"),
    (None, None, ["bench", "allreduce", "--algo", "nope", "--model-only"], "unknown algorithm 'nope'"),
    (None, None, ["bench", "allreduce", "-n", "-1", "--model-only"], "-n -1"),
    (None, None, ["bench", "allreduce", "-f", "nan", "--model-only"], "-f nan"),
    (None, None, ["bench", "allreduce", "-f", "1", "--model-only"], "-f 1"),
    (None, None, ["bench", "allreduce", "-n", "many"], "invalid int value: 'many'"),
    (None, None, ["bench", "allreduce", "--nodes", "0"], "--nodes 0"),
    (None, None, ["bench", "allreduce", "-r", "100", "--model-only"], "-r 100"),
    (None, None, ["bench", "allreduce", "--topology", "dgx-z100"], "valid presets"),
    (None, None, ["bench", "allreduce", "--devices-per-rank", "3", "-b", "1K", "-e", "1K"], "--devices-per-rank 3"),
    (None, None, ["bench", "allgatherv"], "invalid choice: 'allgatherv'"),
    (None, None, ["bench", "allreduce", "-b", "1K", "-e", "1K", "--model-only", "-J", "/nonexistent/dir/out.json"],
     "No such file or directory"),
    (None, None, ["topo", "show", "dgx-z100"], "valid presets"),
    (None, None, ["frobnicate"], "invalid choice: 'frobnicate'"),
    ("c.json", '{"schema": "ccemu-calibration", "version": 1, "datasets": ', ["validate", "--data", "{f}"],
     "line 1"),
    # bounded sizes and numbers, refused before any work (issue 12, item 9.1)
    (None, None, ["bench", "allreduce", "--nodes", "1000000000", "--model-only"], "--nodes 1000000000: expected"),
    (None, None, ["bench", "allreduce", "--nodes", "200000", "--model-only"],
     "nodes=200000: atlas800t-a2 would have 1600000 devices; expected at most 1048576"),
    (None, None, ["topo", "show", "hgx-h20", "--nodes", "1000000000"], "nodes=1000000000: hgx-h20 would have"),
    (None, None, ["topo", "show", "hgx-h20", "--nodes", "2", "-o", "leaf_ports=1000000000"],
     "of memory this machine has"),
    (None, None, ["bench", "allreduce", "-n", "1000000000000", "--model-only"], "-n 1000000000000: expected"),
    (None, None, ["bench", "allreduce", "-w", "1000000000000", "--model-only"], "-w 1000000000000: expected"),
    (None, None, ["bench", "allreduce", "-c", "1000000000000", "--model-only"], "-c 1000000000000: expected"),
    (None, None, ["bench", "allreduce", "-b", "4", "-e", "1G", "-i", "4", "--model-only"], "more than 10000 sizes"),
    (None, None, ["bench", "allreduce", "-b", "4", "-e", "1G", "-f", "1.0001", "--model-only"],
     "more than 10000 sizes"),
    (None, None, ["bench", "allreduce", "--devices-per-rank", "1000000000", "--model-only"],
     "--devices-per-rank 1000000000"),
    (None, None, ["scaling", "allreduce", "--devices", "1000000000"], "'1000000000' is not a whole number from 1"),
    (None, None, ["scaling", "allreduce", "--nodes", "1,1000000000"], "'1000000000' is not a whole number from 1"),
    (None, None, ["scaling", "allreduce", "--iters", "1000000000000"], "--iters 1000000000000: expected"),
    (None, None, ["scaling", "allreduce", "--sizes", ",".join(["1K"] * 10001)], "expected at most 10000"),
    (None, None, ["compare", "--max-devices", "1000000000"], "--max-devices 1000000000: expected"),
    ("c.json", "{}", ["regress", "run", "--cases", "{f}", "--repeat", "1000000000000"], "--repeat 1000000000000"),
    ("c.json", "{}", ["regress", "run", "--cases", "{f}", "--host-mib", "1e12"], "--host-mib 1000000000000.0"),
    ("r.json", "{}", ["regress", "compare", "{f}", "{f}", "--rtol", "nan"], "--rtol nan"),
    (None, None, ["fit", "--iters", "1000000000"], "--iters 1000000000: expected"),
    # --seed checked with or without --jitter (9.2); compare has no instability, so no --jitter
    (None, None, ["bench", "allreduce", "--seed", "-1", "--model-only"], "--seed -1: expected"),
    (None, None, ["bench", "allreduce", "--seed", "99999999999", "--model-only"], "--seed 99999999999"),
    (None, None, ["scaling", "allreduce", "--seed", "-1"], "--seed -1: expected"),
    (None, None, ["compare", "--seed", "-1"], "--seed -1: expected"),
    (None, None, ["compare", "--jitter", "noisy"], "expected no --jitter"),
    # every output path checked before the work (9.3), so no output appears when one is bad (9.4)
    (None, None, ["bench", "allreduce", "-b", "1K", "-e", "1K", "--model-only", "-J", "/"], "-J /: is a directory"),
    ("x", "", ["bench", "allreduce", "-b", "1K", "-e", "1K", "--model-only", "-J", "{f}/out.json"],
     "is not a directory"),
    ("x", "", ["scaling", "allreduce", "--sizes", "1K", "-J", "{f}.json", "--plot", "/nonexistent/dir/s.png"],
     "--plot /nonexistent/dir/s.png: directory /nonexistent/dir does not exist"),
    (None, None, ["scaling", "allreduce", "--sizes", "1K", "-J", "/nonexistent/dir/s.json"], "does not exist"),
    ("x", "", ["scaling", "allreduce", "--sizes", "1K", "-J", "{f}.png", "--plot", "{f}.png"], "the same file as"),
    ("x", "", ["compare", "--systems", "hgx-h20", "--sizes", "1M", "-J", "/", "--plot", "{f}.png"],
     "-J /: is a directory"),
    ("c.json", "{}", ["regress", "run", "--cases", "{f}", "-o", "/nonexistent/dir/r.json"],
     "-o /nonexistent/dir/r.json: directory"),
    (None, None, ["validate", "-J", "/nonexistent/dir/v.json"], "-J /nonexistent/dir/v.json: directory"),
]


@pytest.mark.parametrize("fname,content,argv,match", CASES, ids=[f"{i}-{c[2][0]}" for i, c in enumerate(CASES)])
def test_bad_input(fname, content, argv, match, tmp_path, capsys):
    path = None
    if fname is not None:
        path = tmp_path / fname
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    out_json = tmp_path / "results.json"
    full = [a.format(f=path) for a in argv]
    if full[0] == "bench" and "-J" not in full:
        full += ["-J", str(out_json)]
    before = set(os.listdir(tmp_path))
    rc = main(full)
    err = capsys.readouterr().err
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert match in lines[0], lines[0]
    assert set(os.listdir(tmp_path)) == before  # no results file, no temporary left behind


def test_at_least_thirty_cases():
    assert len(CASES) >= 30


def _unwritable_dir(tmp_path):
    """A directory this process cannot create files in: a read-only one, or for root (whom file
    modes do not stop) /sys where sysfs refuses new files; None when there is none to be had."""
    import tempfile

    if os.geteuid() != 0:
        d = tmp_path / "ro"
        d.mkdir()
        d.chmod(0o500)
        return str(d)
    try:
        fd, probe = tempfile.mkstemp(dir="/sys")
    except OSError:
        return "/sys"
    os.close(fd)
    os.unlink(probe)
    return None


def test_output_in_unwritable_directory(tmp_path, capsys):
    folder = _unwritable_dir(tmp_path)
    if folder is None:
        pytest.skip("no unwritable directory here")
    before = set(os.listdir(tmp_path))
    rc = main(["bench", "allreduce", "-b", "1K", "-e", "1K", "--model-only", "-J", os.path.join(folder, "o.json")])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1, err
    assert f"cannot write to directory {folder}" in err
    assert set(os.listdir(tmp_path)) == before


def test_scaling_outputs_all_or_none(tmp_path, capsys, monkeypatch):
    """A write that fails after the up-front check (the PNG's folder went away) leaves no JSON
    either, nor a temporary file, and the error names the user's path (9.4, 9.5)."""
    from bench import scaling_cmd

    monkeypatch.setattr(scaling_cmd, "check_output_paths", lambda *outputs: None)
    out, png = tmp_path / "s.json", tmp_path / "gone" / "s.png"
    rc = main(["scaling", "allreduce", "--sizes", "1K", "-J", str(out), "--plot", str(png)])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1, err
    assert str(png) in err and ".tmp-" not in err
    assert os.listdir(tmp_path) == []


def test_scaling_outputs_all_or_none_when_a_rename_fails(tmp_path, capsys, monkeypatch):
    """The second rename fails: the first output, already in place, is taken back."""
    from bench import errors

    real_replace, calls = os.replace, []

    def replace(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise PermissionError(13, "Permission denied", src)
        real_replace(src, dst)

    monkeypatch.setattr(errors.os, "replace", replace)
    out, png = tmp_path / "s.json", tmp_path / "s.png"
    rc = main(["scaling", "allreduce", "--sizes", "1K", "-J", str(out), "--plot", str(png)])
    err = capsys.readouterr().err
    assert rc == 2 and "Permission denied" in err and str(png) in err and ".tmp-" not in err, err
    assert len(calls) == 2 and os.listdir(tmp_path) == []


def test_scaling_writes_both_outputs(tmp_path, capsys):
    out, png = tmp_path / "s.json", tmp_path / "s.png"
    assert main(["scaling", "allreduce", "--sizes", "1K", "-J", str(out), "--plot", str(png)]) == 0
    assert json.loads(out.read_text()) and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(os.listdir(tmp_path)) == ["s.json", "s.png"]


@pytest.mark.parametrize("target", ["missing/out.json", "adir"])
def test_write_text_atomic_names_the_users_path(tmp_path, target):
    """The error names the path asked for, not the temporary file, and leaves no temporary (9.5)."""
    from topologies.io import write_text_atomic

    (tmp_path / "adir").mkdir()
    path = str(tmp_path / target)
    with pytest.raises(OSError) as info:
        write_text_atomic(path, "{}")
    assert path in str(info.value) and ".tmp-" not in str(info.value), info.value
    assert sorted(os.listdir(tmp_path)) == ["adir"] and os.listdir(tmp_path / "adir") == []


def test_size_refusal_is_prompt():
    """preset(..., nodes=10**9) is refused at once (it used to build until the memory ran out),
    while the largest system the presets are known to need still builds."""
    import time

    from topologies.presets import preset
    from topologies.presets._common import BYTES_PER_ELEMENT, check_size, estimate_elements

    start = time.perf_counter()
    with pytest.raises(ValueError, match="nodes=1000000000: atlas800t-a2 would have 8000000000 devices"):
        preset("atlas800t-a2", nodes=1_000_000_000)
    with pytest.raises(ValueError, match="leaf_ports=1000000000"):
        preset("dgx-h100", nodes=2, leaf_ports=1_000_000_000)
    assert time.perf_counter() - start < 1.0
    # dgx-h100 x 2048 (16384 devices): about 270k graph elements, a few hundred MB; not refused.
    per_server = preset("dgx-h100")
    n = estimate_elements(2048, 8, per_server.graph.number_of_nodes(), per_server.graph.number_of_edges())
    assert n * BYTES_PER_ELEMENT < 2**30
    check_size("dgx-h100", 2048, 8, per_server.graph.number_of_nodes(), per_server.graph.number_of_edges())
