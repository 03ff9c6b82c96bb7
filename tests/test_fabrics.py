"""Scale-out and supernode fabrics as they behave: the NIC transports and their costs, the NIC a
preset takes, CloudMatrix 384's UB tiers, the staged host path behind a lost HCCS link, what the
library does on a lost link, failed NICs, switches and planes, bad input.

Every expected time is computed here from the model data (``topologies.model``) and the links of
the topology, never copied from a run."""

import math

import networkx as nx
import numpy as np
import pytest

from bench.cli import main
from bench.topo_cmd import summary
from collectives import simulate
from collectives.registry import AlgorithmUnavailable
from topologies import Topology, load_topology, preset
from topologies.graph import add_link
from topologies.io import save_json
from topologies.model import LINK_DEFAULTS, LINK_PARAMS, MSG_KEY, NIC_KINDS, PROTOCOL_EFFICIENCY, load_data
from topologies.network import simulate_transfers
from topologies.peak import own_peak_bw_GBps, reference_peak, scaleout_bw_GBps
from topologies.whatif import LostLinkError, fail_link, fail_node, lost_links, take_devices

MiB = 1 << 20


def run(capsys, *argv):
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def msg_s(kind, protocol="simple"):
    return LINK_DEFAULTS[kind][MSG_KEY[protocol]] * 1e-6


def rate_Bps(kind, GBps, protocol="simple"):
    return GBps * 1e9 * LINK_DEFAULTS[kind]["efficiency"] * PROTOCOL_EFFICIENCY[protocol]


# -- transports ------------------------------------------------------------------------------------------

def test_every_transport_has_its_own_constants_with_provenance():
    doc = load_data()["link_kinds"]
    for kind in NIC_KINDS + ("host_memory",):
        assert set(LINK_PARAMS) <= set(doc[kind]), kind
        for p in LINK_PARAMS:
            prov = doc[kind][p]["provenance"]
            assert prov and ("docs/hardware.md" in prov or "estimate" in prov or "borrowed" in prov), (kind, p)
    own = {k: (LINK_DEFAULTS[k]["efficiency"], LINK_DEFAULTS[k]["msg_us"], LINK_DEFAULTS[k]["ll_msg_us"])
           for k in NIC_KINDS}
    assert len(set(own.values())) == len(NIC_KINDS)        # no two transports cost the same


def _anchors():
    import os
    import re
    text = open(os.path.join(os.path.dirname(__file__), "..", "docs", "hardware.md"), encoding="utf-8").read()
    return {re.sub(r"[^a-z0-9 -]", "", h.strip().lower()).replace(" ", "-")
            for h in re.findall(r"^#+ (.+)$", text, flags=re.M)}


def test_the_new_constants_cite_sections_that_exist():
    import re
    anchors = _anchors()
    doc = load_data()["link_kinds"]
    cited = {m for k in ("tcpx", "efa", "host_memory") for e in doc[k].values()
             for m in re.findall(r"docs/hardware\.md#([a-z0-9-]+)", e["provenance"])}
    cited |= {m for s in preset("cloudmatrix384").graph.graph["sources"]
              for m in re.findall(r"docs/hardware\.md#([a-z0-9-]+)", s)}
    assert cited and cited <= anchors, cited - anchors


def _nic_pair(kind, GBps, lat_us=0.5):
    """Two devices, each with a NIC of ``kind``, on one switch: every link of the path is of ``kind``."""
    g = nx.DiGraph()
    g.add_node("sw", kind="switch")
    for i in range(2):
        g.add_node(f"d{i}", kind="device", index=i)
        g.add_node(f"nic{i}", kind="nic")
        add_link(g, f"d{i}", f"nic{i}", bw_GBps=GBps, lat_us=lat_us, link=kind)
        add_link(g, f"nic{i}", "sw", bw_GBps=GBps, lat_us=lat_us, link=kind)
    return Topology(g)


@pytest.mark.parametrize("kind", NIC_KINDS)
@pytest.mark.parametrize("protocol", ["simple", "ll128", "ll"])
def test_one_transfer_costs_its_message_plus_bytes_over_rate(kind, protocol):
    topo = _nic_pair(kind, 25.0)
    for nbytes in (1024, MiB, 256 * MiB):
        r = simulate_transfers(topo, [0], [1], [nbytes], protocol=protocol)
        expected = 4 * 0.5e-6 + msg_s(kind, protocol) + nbytes / rate_Bps(kind, 25.0, protocol)
        assert math.isclose(r.end_s[0], expected, rel_tol=1e-9), (kind, protocol, nbytes)


@pytest.mark.parametrize("kind", NIC_KINDS)
def test_a_preset_with_a_nic_of_each_kind_times_its_transfers_by_it(kind):
    topo = preset("dgx-h100", nodes=2, nic=f"{kind}:200")
    assert kind in topo.link_kinds and topo.graph.graph["nic"]["kind"] == kind
    g = topo.graph
    attach = g["n0.gpu0"]["n0.nic0"]["bw_GBps"]
    nbytes = 64 * MiB
    r = simulate_transfers(topo, [0], [8], [nbytes])           # GPU 0 of server 0 to GPU 0 of server 1 (rail 0)
    hops = 4 * 0.5e-6                                          # PCIe, NIC-leaf, leaf-NIC, PCIe
    expected = hops + max(msg_s("pcie"), msg_s(kind)) + nbytes / min(rate_Bps("pcie", attach), rate_Bps(kind, 25.0))
    assert math.isclose(r.end_s[0], expected, rel_tol=1e-9)


def test_small_messages_cost_more_over_tcpx_and_efa_than_over_infiniband():
    t = {k: simulate("alltoall", 64 * 1024, preset("dgx-h100", nodes=2, nic=f"{k}:400"), algorithm="direct").time_s
         for k in NIC_KINDS}
    assert t["ib"] < t["tcpx"] < t["efa"]


# -- the NIC a preset takes ------------------------------------------------------------------------------

@pytest.mark.parametrize("name,kind,Gbps,GBps", [
    ("dgx-h100", "ib", 400, 50.0), ("hgx-h20", "ib", 400, 50.0), ("dgx-a100", "ib", 200, 25.0),
    ("atlas800t-a2", "roce", 200, 25.0), ("atlas800-9000", "roce", 100, 12.5), ("cloudmatrix384", "roce", 400, 50.0),
])
def test_each_vendor_keeps_its_usual_nic(name, kind, Gbps, GBps):
    topo = preset(name, nodes=2)
    nic = topo.graph.graph["nic"]
    assert (nic["kind"], nic["Gbps"], nic["per_device"]) == (kind, Gbps, 1.0)
    assert kind in topo.link_kinds and scaleout_bw_GBps(topo) == GBps


def test_nic_strings_dicts_and_shares():
    one = preset("atlas800t-a2", nodes=2, nic="roce:400")
    assert one.graph.graph["nic"]["Gbps"] == 400.0
    assert scaleout_bw_GBps(one) == 32.0              # the A2's PCIe Gen4 attach link caps a 400G NIC
    d = preset("atlas800t-a2", nodes=2, nic={"kind": "ib", "Gbps": 400, "per_device": 1})
    assert "ib" in d.link_kinds and "roce" not in d.link_kinds
    assert preset("atlas800t-a2", nodes=2, nic={"Gbps": 100}).graph.graph["nic"]["kind"] == "roce"  # kind kept
    # Four NICs per device (AWS P5's 32 EFA for 8 GPUs): four NIC nodes, each on its own rail.
    p5 = preset("dgx-h100", nodes=2, nic="efa:100:4")
    assert sum(1 for _, d in p5.graph.nodes(data=True) if d["kind"] == "nic") == 2 * 8 * 4
    assert scaleout_bw_GBps(p5) == 50.0 and {"n0.nic0.0", "n0.nic0.3"} <= set(p5.graph)
    # One NIC per two GPUs (GCP A3 High's 4 GPUDirect-TCPX NICs for 8 GPUs): each GPU owns half of one.
    a3 = preset("dgx-h100", nodes=2, nic="tcpx:200:0.5")
    assert scaleout_bw_GBps(a3) == 12.5 and a3.graph.graph["nic"]["per_device"] == 0.5
    assert "NIC set to tcpx 200 Gb/s x0.5 per device" in a3.graph.graph["description"]
    # One server builds no NIC, but says which it would take.
    alone = preset("dgx-h100", nic="roce:200")
    assert "roce" not in alone.link_kinds and alone.graph.graph["nic"]["kind"] == "roce"


def test_load_topology_takes_the_nic(tmp_path):
    t = load_topology("mi300x-8", nodes=2, nic="roce:400")
    assert "roce" in t.link_kinds and scaleout_bw_GBps(t) == 50.0
    path = tmp_path / "a2.json"
    save_json(preset("atlas800t-a2"), path)
    with pytest.raises(ValueError, match="nic='roce:200' applies to presets; .* is a topology file"):
        load_topology(str(path), nic="roce:200")


def test_topo_show_lists_the_nic(capsys):
    status, out, err = run(capsys, "topo", "show", "dgx-h100", "--nodes", "2", "--nic", "efa:100:4")
    assert status == 0 and err == ""
    assert "NIC per device        efa 100 Gb/s x4 = 50.0 GB/s (PCIe attach 64 GB/s)" in out
    assert any(line.split()[:1] == ["efa"] for line in out.splitlines())
    status, out, _ = run(capsys, "topo", "show", "dgx-h100", "--nodes", "2", "--nic", "tcpx:200:0.5")
    assert "tcpx 200 Gb/s x0.5 (one NIC per 2 devices) = 12.5 GB/s" in out
    status, out, _ = run(capsys, "topo", "show", "atlas800t-a2")
    assert "NIC per device        roce 200 Gb/s x1 = 25.0 GB/s (PCIe attach 32 GB/s); built with --nodes N > 1" in out


def test_bench_takes_the_nic(capsys):
    # --algo best: the library models (collectives.libraries) see only ib and roce NICs so far.
    status, out, err = run(capsys, "bench", "alltoall", "-b", "1M", "-e", "1M", "--model-only", "--algo", "best",
                           "--topology", "dgx-h100", "--nodes", "2", "--nic", "tcpx:200:0.5")
    assert status == 0, err
    row = next(line.split() for line in out.splitlines() if line.strip().startswith("1048576"))
    via_ib = simulate("alltoall", MiB, preset("dgx-h100", nodes=2), algorithm="best")
    via_tcpx = simulate("alltoall", MiB, preset("dgx-h100", nodes=2, nic="tcpx:200:0.5"), algorithm="best")
    assert via_tcpx.time_s > via_ib.time_s
    assert math.isclose(float(row[5]), via_tcpx.time_s * 1e6, rel_tol=1e-3)


# -- CloudMatrix 384: the UB tiers -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def cm_dies():
    return preset("cloudmatrix384", devices="die")


def test_cloudmatrix_is_built_from_its_tiers(cm_dies):
    g = cm_dies.graph
    kinds = {}
    for _, d in g.nodes(data=True):
        kinds[d["kind"]] = kinds.get(d["kind"], 0) + 1
    assert kinds == {"device": 768, "switch": 48 * 7 + 7 * 16}          # dies, L1 chips on boards, L2 planes
    d0, d1, d2 = "s0.n0.npu0.die0", "s0.n0.npu0.die1", "s0.n0.npu1.die0"
    assert g.has_edge(d0, d1) and not g.has_edge(d0, d2)               # die-to-die only inside an NPU
    assert sorted(v for v in g.successors(d0) if g.nodes[v]["kind"] == "switch") == [f"s0.n0.ub{k}" for k in range(7)]
    assert {v for v in g.successors("s0.n0.ub3") if ".l2." in v} == {f"s0.l2.p3.{m}" for m in range(16)}
    # The tiers' latencies add up to the measured 0.2 / 0.7 / 2.1 us per die pair.
    lat = {k: sum(g.edges[e]["lat_us"] for e in zip(p, p[1:]))
           for k, p in {"die": [d0, d1], "npu": [d0, "s0.n0.ub0", d2],
                        "node": [d0, "s0.n0.ub0", "s0.l2.p0.0", "s0.n1.ub0", "s0.n1.npu0.die0"]}.items()}
    assert [round(lat[k], 9) for k in ("die", "npu", "node")] == [0.2, 0.7, 2.1]


@pytest.mark.parametrize("size", [64 * MiB, 256 * MiB])
def test_cloudmatrix_alltoall_busbw_falls_tier_by_tier(cm_dies, size):
    """One NPU's two dies -> one node board (8 NPUs) -> two boards -> all 48 boards (every L2 plane full)."""
    busbw = [simulate("alltoall", size, take_devices(cm_dies, k), algorithm="direct").busbw_GBps
             for k in (2, 16, 32, 768)]
    assert all(a > b for a, b in zip(busbw, busbw[1:])), busbw


def test_a_failed_l2_plane_reroutes_over_the_other_six(cm_dies):
    cm = preset("cloudmatrix384")
    plane = [f"s0.l2.p2.{m}" for m in range(16)]
    cut = fail_node(cm, plane)
    assert not any(n in cut.graph for n in plane)
    before = simulate("alltoall", 256 * MiB, cm, algorithm="direct")
    after = simulate("alltoall", 256 * MiB, cut, algorithm="direct")
    # All-to-all over 48 boards is bound by the L2 tier: 6 planes of 7 left.
    assert 1.10 < after.time_s / before.time_s < 7 / 6 + 1e-6
    assert after.peak_GBps == before.peak_GBps == 392.0                 # bus efficiency against the whole system


def test_gb200_racks_joined_by_infiniband_fall_off_the_nvlink_domain():
    two = preset("gb200-nvl72", nodes=2)
    assert "ib" in two.link_kinds and two.num_devices == 144
    rack, racks = (simulate("alltoall", 256 * MiB, take_devices(two, k), algorithm="direct").busbw_GBps
                   for k in (72, 144))
    assert rack > 5 * racks


# -- a lost HCCS link: the staged host path --------------------------------------------------------------

@pytest.fixture(scope="module")
def a2():
    return preset("atlas800t-a2")


def _host_path_s(a2, nbytes, sharing=2, protocol="simple"):
    """One transfer NPU0 -> NPU1 through CPU0's memory: PCIe down, a copy in host memory (``sharing``
    copies at once, each reading and writing every byte), PCIe up, one after the other."""
    g = a2.graph
    pcie = g["n0.npu0"]["n0.cpu0"]
    mem = g.nodes["n0.cpu0"]["host_mem_GBps"]
    copy_Bps = rate_Bps("host_memory", mem, protocol) / (2 * sharing)
    return (2 * pcie["lat_us"] * 1e-6 + 2 * msg_s("pcie", protocol) + msg_s("host_memory", protocol)
            + 2 * nbytes / rate_Bps("pcie", pcie["bw_GBps"], protocol) + nbytes / copy_Bps)


def _hccs_s(a2, nbytes, protocol="simple"):
    link = a2.graph["n0.npu0"]["n0.npu1"]
    return link["lat_us"] * 1e-6 + msg_s("hccs", protocol) + nbytes / rate_Bps("hccs", link["bw_GBps"], protocol)


@pytest.mark.parametrize("size", [MiB, 256 * MiB])
def test_a_lost_hccs_link_slows_direct_allreduce_by_the_host_path(a2, size):
    lost = fail_link(a2, 0, 1)
    chunk = size // 8                                       # direct: 2 steps, each pair moves S/P
    before = simulate("allreduce", size, a2, algorithm="direct", protocol="simple")
    after = simulate("allreduce", size, lost, algorithm="direct", protocol="simple")
    # Every other pair keeps its HCCS link; NPU0 <-> NPU1 go through CPU0's memory both ways at once.
    host, hccs = _host_path_s(a2, chunk, sharing=2), _hccs_s(a2, chunk)
    assert host > hccs
    assert math.isclose(after.time_s - before.time_s, 2 * (host - hccs), rel_tol=1e-9)
    assert math.isclose(before.time_s, 2 * hccs, rel_tol=1e-5)           # plus the call cost
    # The regime the call would pick is slower too.
    assert simulate("allreduce", size, lost, algorithm="direct").time_s > simulate("allreduce", size, a2,
                                                                                  algorithm="direct").time_s
    # Bus efficiency is against the A2's 196 GB/s, and the topology says so.
    assert after.peak_GBps == 196.0 and reference_peak(lost) == {"GBps": 196.0, "system": "atlas800t-a2"}
    assert own_peak_bw_GBps(lost) == 168.0
    assert "peak per device       196.0 GB/s (of atlas800t-a2 before its what-ifs; this system's own: 168.0 GB/s)" \
        in summary(lost)


def test_a_host_path_across_cpus_copies_over_the_socket_link(a2):
    lost = fail_link(a2, 0, 7)                              # NPU0 on CPU0, NPU7 on CPU3
    g = a2.graph
    pcie, sock = g["n0.npu0"]["n0.cpu0"], g["n0.cpu0"]["n0.cpu3"]
    socket_model = {**LINK_DEFAULTS.get("socket", LINK_DEFAULTS["generic"]), **a2.model["socket"]}
    nbytes = 64 * MiB
    r = simulate_transfers(lost, [0], [7], [nbytes])
    socket_Bps = sock["bw_GBps"] * 1e9 * socket_model["efficiency"]
    mem_Bps = rate_Bps("host_memory", g.nodes["n0.cpu0"]["host_mem_GBps"])
    expected = (2 * pcie["lat_us"] * 1e-6 + sock["lat_us"] * 1e-6
                + 2 * msg_s("pcie") + max(msg_s("host_memory"), socket_model["msg_us"] * 1e-6)
                + 2 * nbytes / rate_Bps("pcie", pcie["bw_GBps"]) + nbytes / min(socket_Bps, mem_Bps))
    assert math.isclose(r.end_s[0], expected, rel_tol=1e-9)
    assert "staged through host memory at n0.cpu0 and n0.cpu3" in lost.graph.graph["whatifs"][-1]


def test_on_lost_ring_falls_back_to_a_ring_around_the_lost_link(a2):
    lost = fail_link(a2, 0, 1, on_lost="ring")
    assert lost_links(lost) == {(0, 1): "ring"}
    with pytest.raises(AlgorithmUnavailable, match="falls back to a ring"):
        simulate("allreduce", MiB, lost, algorithm="direct")
    ring = simulate("allreduce", 64 * MiB, lost, algorithm="ring")
    used = ring.link_utilisation()
    assert not any(("cpu" in str(u)) or ("cpu" in str(v)) for u, v in used)   # never through the host
    best = simulate("allreduce", 64 * MiB, lost, algorithm="best")
    assert best.algorithm != "direct"
    # Mesh rings use every link: unavailable around a lost one.
    with pytest.raises(AlgorithmUnavailable, match="mesh rings use every link"):
        simulate("allreduce", MiB, lost, algorithm="ring", orders="mesh")


def test_on_lost_fail_stops_with_an_error(a2):
    lost = fail_link(a2, 0, 1, on_lost="fail")
    for algorithm in ("direct", "ring", "best"):
        with pytest.raises(LostLinkError, match=r"devices 0 and 1 .* on_lost='fail'"):
            simulate("allreduce", MiB, lost, algorithm=algorithm)
    assert isinstance(LostLinkError("x"), ValueError)                   # the CLI's one-line errors
    # The lost pair goes with a sub-system that leaves one of its devices out.
    assert lost_links(take_devices(fail_link(a2, 6, 7, on_lost="fail"), 7)) == {}


# -- failed NICs, switches -------------------------------------------------------------------------------

def test_a_failed_nic_reroutes_over_the_devices_other_nic():
    two = preset("dgx-h100", nodes=2, nic="ib:400:2")
    one = fail_node(two, "n0.nic0.1")
    nbytes = 256 * MiB
    hops = 4 * 0.5e-6
    msg = max(msg_s("pcie"), msg_s("ib"))
    nic = rate_Bps("ib", 50.0)
    for topo, nics in ((two, 2), (one, 1)):
        r = simulate_transfers(topo, [0], [8], [nbytes])
        assert math.isclose(r.end_s[0], hops + msg + nbytes / (nics * nic), rel_tol=1e-9)
    used = simulate("alltoall", 64 * MiB, one, algorithm="direct").link_utilisation()
    assert ("n0.gpu0", "n0.nic0.0") in used and not any("n0.nic0.1" in (u, v) for u, v in used)
    # A device whose only NIC fails is cut off: devices do not relay.
    with pytest.raises(ValueError, match=r"failing nic n0.nic0 .* cuts off device pairs \(0, 8\)"):
        fail_node(preset("dgx-h100", nodes=2), "n0.nic0")


def test_a_failed_spine_reroutes_over_the_other_spines():
    ft = preset("dgx-h100", nodes=4, fabric="fat-tree", leaf_ports=8)
    cut = fail_node(ft, "fab.spine0")
    before = simulate("alltoall", 256 * MiB, ft, algorithm="direct")
    after = simulate("alltoall", 256 * MiB, cut, algorithm="direct")
    assert before.time_s < after.time_s <= before.time_s * 8 / 7 + 1e-9
    assert after.bus_efficiency < before.bus_efficiency and after.peak_GBps == before.peak_GBps


def test_multi_plane_nics_build_independent_planes_that_share_each_nic():
    one = preset("atlas800t-a2", nodes=4)
    two = preset("atlas800t-a2", nodes=4, nic="roce:200:1:2")
    assert two.graph.graph["nic"]["planes"] == 2 and "over 2 planes" in summary(two)
    plane_switches = {str(n).split(".")[1] for n in two.graph.nodes if str(n).startswith("fab.")}
    assert plane_switches == {"plane0", "plane1"}
    nic = "n0.nic0"
    ports = sorted(d["bw_GBps"] for _, v, d in two.graph.out_edges(nic, data=True) if d["link"] == "roce")
    assert ports == [12.5, 12.5]                          # 200 Gb/s split over two planes
    assert scaleout_bw_GBps(two) == scaleout_bw_GBps(one)
    from topologies.whatif import set_routing
    # Adaptive: the planes together carry what one plane of full-rate ports does.
    a1 = simulate("alltoall", 64 * MiB, set_routing(one, "adaptive"), algorithm="pairwise")
    a2_ = simulate("alltoall", 64 * MiB, set_routing(two, "adaptive"), algorithm="pairwise")
    assert a2_.time_s == pytest.approx(a1.time_s, rel=1e-9)
    # A failed plane leaf: the NICs on it reach the fabric over the other plane only.
    cut = fail_node(set_routing(two, "adaptive"), "fab.plane1.leaf0")
    slower = simulate("alltoall", 64 * MiB, cut, algorithm="pairwise")
    assert slower.time_s > a2_.time_s


# -- bad input -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("nic,match", [
    ("roce200", r"nic='roce200': expected KIND:GBPS\[:PER_DEVICE\[:PLANES\]\] with KIND one of ib, roce, tcpx, efa"),
    ("roce:fast", r"Gbps 'fast' is not a number"),
    ("roce:-5", r"Gbps=-5.0; expected a line rate"),
    ("roce:inf", r"Gbps=inf"),
    ("nvlink:400", r"unknown NIC kind 'nvlink'"),
    ("roce:200:0.3", r"per_device=0.3; expected an integer 1..64 or a fraction 1/m"),
    ("roce:200:0", r"per_device=0.0"),
    ("roce:200:1:2:3", r"expected KIND:GBPS"),
    ("roce:200:1:0", r"planes=0.0; expected an integer 1..16"),
    ("roce:200:1:1.5", r"planes=1.5"),
    ({"kind": "ib", "planes": 17}, r"planes=17"),
    ({"kind": "ib", "speed": 400}, r"unknown key 'speed'"),
    ({"kind": "ib", "Gbps": True}, r"Gbps=True"),
    (400, r"nic=400: expected"),
])
def test_bad_nic_is_one_line_naming_the_value(nic, match):
    with pytest.raises(ValueError, match=match) as info:
        preset("dgx-h100", nodes=2, nic=nic)
    assert "\n" not in str(info.value)


def test_bad_input_of_the_what_ifs(a2):
    with pytest.raises(ValueError, match=r"on_lost='reroute'; expected 'host' .* 'ring' .* 'fail'"):
        fail_link(a2, 0, 1, on_lost="reroute")
    with pytest.raises(ValueError, match=r"fail_node\(\[\]\)"):
        fail_node(a2, [])
    with pytest.raises(ValueError, match="no node 'n0.cpu9'"):
        fail_node(a2, ["n0.cpu0", "n0.cpu9"])
    with pytest.raises(ValueError, match="devices cannot be failed"):
        fail_node(a2, ["n0.cpu0", 3])


def test_bad_nic_on_the_command_line_is_one_line_and_status_2(capsys):
    status, out, err = run(capsys, "topo", "show", "dgx-h100", "--nodes", "2", "--nic", "ib-400")
    assert status == 2 and out == "" and len(err.strip().splitlines()) == 1 and "nic='ib-400'" in err
    status, out, err = run(capsys, "bench", "allreduce", "-b", "1M", "-e", "1M", "--model-only",
                           "--topology", "atlas800t-a2", "--nodes", "2", "--nic", "roce:200:3.5")
    assert status == 2 and len(err.strip().splitlines()) == 1 and "per_device=3.5" in err


def test_multi_node_staging_keeps_the_solver_exact():
    """The staged path on a multi-node A2 (twin spines merged for routing): the same times with and without
    merging twins."""
    t = fail_link(preset("atlas800t-a2", nodes=2), 8, 9)
    a = simulate("allreduce", 16 * MiB, t, algorithm="direct", protocol="simple")
    from topologies.network import StepSolver, StepTimer
    src = np.array([8]); dst = np.array([9]); nb = np.array([float(MiB)])
    merged = StepTimer(StepSolver(t, merge_twins=True)).time(src, dst, nb)[0]
    plain = StepTimer(StepSolver(t, merge_twins=False)).time(src, dst, nb)[0]
    assert math.isclose(merged, plain, rel_tol=1e-12) and a.time_s > 0
