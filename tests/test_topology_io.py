"""Topology files: JSON and GraphML round trips, NCCL XML import, and bad input."""

import json
import math
import os

import networkx as nx
import pytest

from topologies import Topology, add_link, load_topology, preset
from topologies.io import load_graphml, load_json, load_nccl_xml, save_graphml, save_json

DATA = os.path.join(os.path.dirname(__file__), "data")
XML_8GPU = os.path.join(DATA, "nccl_8gpu_nvswitch.xml")
XML_2GPU = os.path.join(DATA, "nccl_2gpu_bridge.xml")


def assert_same(a: Topology, b: Topology):
    assert a.name == b.name
    assert list(a.graph.nodes) == list(b.graph.nodes)
    assert dict(a.graph.nodes(data=True)) == dict(b.graph.nodes(data=True))
    assert {(u, v): d for u, v, d in a.graph.edges(data=True)} == {(u, v): d for u, v, d in b.graph.edges(data=True)}
    assert a.graph.graph == b.graph.graph
    for x, y in [(a.graph.nodes[n], b.graph.nodes[n]) for n in a.graph.nodes]:
        assert all(type(x[k]) is type(y[k]) for k in x)     # 1 stays int, 1.0 stays float, True stays bool


def _odd_topology():
    """Integer and tuple node ids, None and list attributes, an attribute of mixed types, a model dict."""
    g = nx.DiGraph(name="odd", model={"generic": {"efficiency": 0.5, "jitter": {"sigma": 0.1}}}, note=None)
    g.add_node(0, kind="device", index=0, tag=None, coord=[1, 2], label="x")
    g.add_node(("sw", 1), kind="switch", reduce=True, label=7)
    g.add_node("c", kind="device", index=1, forward=True, label=2.5)
    add_link(g, 0, ("sw", 1), bw_GBps=12.5, lat_us=0.25, lanes=3)
    add_link(g, "c", ("sw", 1), bw_GBps=1e-3, link="nvlink")
    return Topology(g)


@pytest.mark.parametrize("name,options", [("atlas800t-a2", {"nodes": 2}), ("dgx-h100", {}), ("mi250x-8", {}),
                                          ("atlas800t-a3", {"devices": "die"})])
def test_json_round_trip_is_lossless(tmp_path, name, options):
    topo = preset(name, **options)
    path = tmp_path / "t.json"
    save_json(topo, path)
    data = json.loads(path.read_text())
    assert data["schema"] == "ccemu-topology" and data["version"] == 1
    assert_same(topo, load_json(path))


@pytest.mark.parametrize("name,options", [("atlas800t-a2", {"nodes": 2}), ("dgx-h100", {}), ("mi250x-8", {}),
                                          ("atlas800t-a3", {"devices": "die"})])
def test_graphml_round_trip_is_lossless(tmp_path, name, options):
    topo = preset(name, **options)
    path = tmp_path / "t.graphml"
    save_graphml(topo, path)
    assert_same(topo, load_graphml(path))


def test_graphml_keeps_odd_ids_and_values(tmp_path):
    topo = _odd_topology()
    path = tmp_path / "odd.graphml"
    save_graphml(topo, path)
    back = load_graphml(path)
    assert_same(topo, back)
    assert back.graph.graph["model"]["generic"]["jitter"] == {"sigma": 0.1}


def test_json_keeps_int_ids_and_model(tmp_path):
    g = nx.DiGraph(name="ints", model={"nvlink": {"efficiency": 0.7}})
    for i in range(3):
        g.add_node(i, kind="device", index=i, forward=True)
    add_link(g, 0, 1, bw_GBps=10.0)
    add_link(g, 1, 2, bw_GBps=10.0)
    topo = Topology(g)
    save_json(topo, tmp_path / "i.json")
    assert_same(topo, load_json(tmp_path / "i.json"))


def test_json_refuses_tuple_node_ids(tmp_path):
    with pytest.raises(ValueError, match="node id"):
        save_json(_odd_topology(), tmp_path / "odd.json")


def test_json_bad_input(tmp_path):
    path = tmp_path / "t.json"
    save_json(preset("atlas800t-a2"), path)
    text = path.read_text()
    truncated = tmp_path / "cut.json"
    truncated.write_text(text[: len(text) // 2])
    with pytest.raises(ValueError, match=r"cut\.json: not valid JSON at line \d+"):
        load_json(truncated)
    data = json.loads(text)
    data["version"] = 2
    v2 = tmp_path / "v2.json"
    v2.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="version 2 is not supported"):
        load_json(v2)
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"nodes": [], "links": []}))
    with pytest.raises(ValueError, match="not a ccemu topology"):
        load_json(other)
    del data["links"]
    data["version"] = 1
    nolinks = tmp_path / "nolinks.json"
    nolinks.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="'links'"):
        load_json(nolinks)


def test_graphml_bad_input(tmp_path):
    path = tmp_path / "t.graphml"
    save_graphml(preset("atlas800t-a2"), path)
    text = path.read_text()
    cut = tmp_path / "cut.graphml"
    cut.write_text(text[: len(text) // 2])
    with pytest.raises(ValueError, match=r"malformed XML at line \d+"):
        load_graphml(cut)
    evil = tmp_path / "evil.graphml"
    evil.write_text('<?xml version="1.0"?>\n<!DOCTYPE g [<!ENTITY a "aaaa">]>\n' + text.split("\n", 1)[1])
    with pytest.raises(ValueError, match="DOCTYPE"):
        load_graphml(evil)


def test_nccl_8gpu_nvswitch_import():
    t = load_nccl_xml(XML_8GPU)
    g = t.graph
    assert t.num_devices == 8 and t.name == "nccl_8gpu_nvswitch"
    nvs = sorted(n for n in g if n.startswith("nvswitch:"))
    assert len(nvs) == 4 and all(g.nodes[n]["kind"] == "switch" and g.nodes[n]["reduce"] for n in nvs)
    for dev in t.devices:
        lanes = sorted(g[dev][s]["lanes"] for s in nvs)
        assert lanes == [4, 4, 5, 5]
        assert math.isclose(sum(g[dev][s]["bw_GBps"] for s in nvs), 18 * 25.0)   # NVLink4 line rate per link
    assert math.isclose(t.peak_bw_GBps(), 450.0)                                 # as the dgx-h100 preset
    assert g.nodes["gpu5"]["busid"] == "0000:52:00.0" and g.nodes["gpu5"]["sm"] == 90     # rank 5 in the file
    nics = [n for n, d in g.nodes(data=True) if d["kind"] == "nic"]
    assert len(nics) == 8 and g.nodes["nic:mlx5_0"]["speed_Mbps"] == 400000
    assert sum(1 for _, d in g.nodes(data=True) if d["kind"] == "cpu") == 2
    # PCIe Gen5 x16 = 64 GB/s line rate (NCCL's model counts 48), GPU to its PCIe switch.
    assert g["gpu0"]["pci:0000:18:00.0"]["bw_GBps"] == 64.0
    assert g["cpu0"]["cpu1"]["link"] == "socket"


def test_nccl_2gpu_bridge_import():
    t = load_topology(XML_2GPU)
    g = t.graph
    assert t.num_devices == 2
    assert g["gpu0"]["gpu1"]["lanes"] == 4 and g["gpu0"]["gpu1"]["bw_GBps"] == 100.0    # 4 x NVLink3 25 GB/s
    assert not any(d["kind"] == "switch" for _, d in g.nodes(data=True))
    assert g["gpu0"]["cpu0"]["bw_GBps"] == 32.0                                        # PCIe Gen4 x16 line rate
    assert g["cpu0"]["nic:mlx5_0"]["bw_GBps"] == 32.0 and g.nodes["nic:mlx5_0"]["speed_Mbps"] == 200000
    assert t.peak_bw_GBps() == 100.0


def test_nccl_rank_sets_the_device_index(tmp_path):
    text = open(XML_2GPU).read()
    text = text.replace('rank="0"', 'rank="X"').replace('rank="1"', 'rank="0"').replace('rank="X"', 'rank="1"')
    path = tmp_path / "swapped.xml"
    path.write_text(text)
    t = load_nccl_xml(path)
    assert t.graph.nodes[t.device_node(0)]["busid"] == "0000:c1:00.0"


@pytest.mark.parametrize("mutate,match", [
    (lambda s: s[: len(s) // 2], r"malformed XML at line \d+, column \d+"),
    (lambda s: '<!DOCTYPE system [<!ENTITY lol "lol">]>\n' + s, "DOCTYPE"),
    (lambda s: s.replace("<system", '<!ENTITY x "y">\n<system', 1), "ENTITY"),
    # A <gpu> without sm is completed from the PCI device id when ccemu knows it; 0x20b5 it does not.
    (lambda s: s.replace('sm="80" rank="0"', 'rank="0"'), r"1 GPUs are <gpu> elements without an sm attribute and "
                                                          r"PCI device 0x20b5 is not one ccemu knows; expected gpu=MODEL"),
    (lambda s: s.replace('count="4"', 'count="four"', 1), r"<nvlink target=.*count='four' is not an integer"),
    (lambda s: s.replace('speed="200000"', 'speed="fast"'), r"<net .*speed='fast' is not an integer"),
    (lambda s: s.replace("<system", "<machine").replace("</system>", "</machine>"), "root element is <machine>"),
    (lambda s: s.replace("<gpu", "<gpx").replace("</gpu>", "</gpx>").replace('class="0x030200"', 'class="0x010802"'),
     "no GPU: expected <pci> elements of class 0x03xxxx or 0x120000, or holding a <gpu> element"),
    (lambda s: s.replace("<gpu", "<gpx").replace("</gpu>", "</gpx>"), "2 GPUs are <pci class=\"0x030200\"> hints"),
])
def test_nccl_bad_input(tmp_path, mutate, match):
    path = tmp_path / "bad.xml"
    path.write_text(mutate(open(XML_2GPU).read()))
    with pytest.raises(ValueError, match=match):
        load_nccl_xml(path)


def test_billion_laughs_is_refused_before_parsing(tmp_path):
    refs = ["&lol;"] + [f"&lol{i};" for i in range(1, 9)]
    entities = "".join(f' <!ENTITY lol{i} "{refs[i - 1] * 10}">\n' for i in range(1, 10))
    bomb = ('<?xml version="1.0"?>\n<!DOCTYPE lolz [\n <!ENTITY lol "lol">\n' + entities
            + ']>\n<system version="1">&lol9;</system>\n')
    path = tmp_path / "bomb.xml"
    path.write_text(bomb)
    with pytest.raises(ValueError, match="line 2: <!DOCTYPE"):
        load_nccl_xml(path)
