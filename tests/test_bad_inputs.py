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
     "applies to presets only"),
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
