"""NCCL and RCCL topology XML as NCCL reads it: cloud hint files, VM dumps, NVSwitch dumps, RCCL's
version 2 with xGMI, GB200's C2C; imported servers repeated with ``nodes=N``; bad files."""

import os
import re
import warnings

import pytest

from bench.cli import main
from collectives import simulate
from topologies import load_topology, preset
from topologies.nccl_xml import TopologyNote, load_nccl_xml
from topologies.peak import scaleout_bw_GBps

DATA = os.path.join(os.path.dirname(__file__), "data", "nccl_topo")
AZURE = os.path.join(DATA, "azure_ndv4_hint.xml")
VM = os.path.join(DATA, "vm_h100_dump.xml")
NVSWITCH = os.path.join(DATA, "nvswitch_h100_dump.xml")
MI300X = os.path.join(DATA, "rccl_mi300x_v2.xml")
GB200 = os.path.join(DATA, "gb200_c2c.xml")


def load(path, **kw):
    """Load without letting the one-line note reach the test output; returns (topology, notes)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t = load_nccl_xml(path, **kw)
    notes = [str(w.message) for w in caught if issubclass(w.category, TopologyNote)]
    assert len(notes) <= 1 and all("\n" not in n for n in notes)
    return t, (notes[0] if notes else "")


def nics(t):
    return [n for n, d in t.graph.nodes(data=True) if d["kind"] == "nic"]


def busbw(t, size=256 << 20, **kw):
    return simulate("allreduce", size, t, **kw).busbw_GBps


# -- the five kinds of file ------------------------------------------------------------------------------

def test_azure_hint_file_is_completed_from_the_gpu_model():
    t, note = load(AZURE, gpu="a100")
    g = t.graph
    assert t.num_devices == 8 and len(nics(t)) == 8
    assert "completed as dgx-a100 (from gpu='a100')" in note and "12 nvlink lanes of 25 GB/s to 6 switch chips" in note
    assert "8 NICs without a speed in the file: 200 Gb/s each, dgx-a100's NIC" in note
    assert t.peak_bw_GBps() == preset("dgx-a100").peak_bw_GBps() == 300.0
    assert g.graph["device_model"] == "A100" and g.nodes["gpu0"]["sm"] == 80
    assert all(g.nodes[n]["speed_Mbps"] == 200000 for n in nics(t))
    # "16 GT/s" (the kernel's older spelling) x16 is PCIe Gen4: 32 GB/s line rate.
    assert g["gpu0"]["pci:ffff:ff:01.0"]["bw_GBps"] == 32.0
    # GPUs are numbered in bus-id order, as NVML numbers them.
    assert [g.nodes[d]["busid"] for d in t.devices[:3]] == ["0001:00:00.0", "0002:00:00.0", "0003:00:00.0"]
    # Same NVSwitch fabric as the preset: the busbw agrees within a few percent (two GPUs on one PCIe
    # bridge also have a two-hop PCIe path, which the routing's weighted ECMP uses beside the NVLinks).
    assert busbw(t, algorithm="ring") == pytest.approx(busbw(preset("dgx-a100"), algorithm="ring"), rel=0.06)


def test_hint_file_gpu_model_from_the_pci_device_id(tmp_path):
    text = open(AZURE).read().replace('class="0x030200"', 'class="0x030200" vendor="0x10de" device="0x2330"')
    path = tmp_path / "ndv5_like.xml"
    path.write_text(text)
    t, note = load(path)
    assert "completed as dgx-h100 (from its PCI device id)" in note and "NICs without a speed" in note
    assert t.peak_bw_GBps() == 450.0 and t.graph.graph["device_model"] == "H100"
    assert sum(1 for _, d in t.graph.nodes(data=True) if d["kind"] == "switch" and d.get("reduce")) == 4


def test_hint_file_without_a_model_says_what_to_give():
    with pytest.raises(ValueError) as err:
        load(AZURE)
    msg = str(err.value)
    assert len(msg.splitlines()) == 1 and msg.startswith(AZURE)
    assert '8 GPUs are <pci class="0x030200"> hints' in msg and "expected gpu=MODEL (CLI --gpu MODEL)" in msg


def test_vm_dump_with_empty_link_speed_and_a_self_targeted_nvlink():
    t, note = load(VM)
    g = t.graph
    assert t.num_devices == 8 and len(nics(t)) == 8
    assert "1 <nvlink> to the GPU's own bus id (gpu7) ignored" in note
    assert "link_speed empty or missing on 16 <pci>: PCIe Gen3 (8 GT/s) assumed" in note
    assert "1 NVSwitch node stands for dgx-h100's 4 chips, with their summed in-network reduction rate" in note
    # NVML cannot see the NVSwitches in the VM: every GPU names "fffffff:ffff:ff", one shared switch.
    sw = "nvswitch:fffffff:ffff:ff"
    assert g.nodes[sw]["kind"] == "switch" and g.nodes[sw]["reduce"]
    assert [g[d][sw]["lanes"] for d in t.devices] == [18] * 7 + [17]
    assert not g.has_edge("gpu7", "gpu7")
    assert t.peak_bw_GBps() == 17 * 25.0                       # the GPU NCCL sees with 17 links
    assert g["cpu0"]["gpu0"]["bw_GBps"] == 16.0                # empty link_speed and width: Gen3 x16
    assert all(g.nodes[n]["speed_Mbps"] == 400000 for n in nics(t))
    assert 300 < busbw(t) < 450


def test_nvswitch_dump_is_the_dgx_h100_fabric():
    t, note = load(NVSWITCH)
    g = t.graph
    assert note == ""                                          # a complete dump: nothing assumed
    assert t.num_devices == 8 and len(nics(t)) == 8 and g.graph["device_model"] == "H100"
    nvs = sorted(n for n in g if n.startswith("nvswitch:"))
    assert nvs == ["nvswitch:0000:05:00.0", "nvswitch:0000:06:00.0", "nvswitch:0000:07:00.0", "nvswitch:0000:08:00.0"]
    assert all(g.nodes[n]["reduce"] for n in nvs)
    for dev in t.devices:
        assert sorted(g[dev][s]["lanes"] for s in nvs) == [4, 4, 5, 5]
    assert t.peak_bw_GBps() == preset("dgx-h100").peak_bw_GBps() == 450.0
    assert g["gpu0"]["pci:0000:15:00.0"]["bw_GBps"] == 64.0    # PCIe Gen5 x16 line rate
    assert busbw(t) == pytest.approx(busbw(preset("dgx-h100")), rel=0.02)
    assert busbw(t, algorithm="direct") == pytest.approx(busbw(preset("dgx-h100"), algorithm="direct"), rel=1e-9)


def test_rccl_v2_mi300x_keeps_every_xgmi_link():
    t, note = load(MI300X)
    g = t.graph
    assert note == "" and t.num_devices == 8 and len(nics(t)) == 8
    xgmi = [(u, v) for u, v, d in g.edges(data=True) if d["link"] == "xgmi" and str(u) < str(v)]
    assert len(xgmi) == 28 and all(g[u][v]["bw_GBps"] == 64.0 for u, v in xgmi)
    assert g.graph["device_model"] == "MI300X" and g.nodes["gpu3"]["gcn"] == "gfx942"
    assert t.peak_bw_GBps() == 448.0
    bw = busbw(t)
    assert 250 < bw < 448 and bw == pytest.approx(busbw(preset("mi300x-8")), rel=1e-9)   # hundreds, not 8


def test_gb200_tray_with_c2c():
    t, note = load(GB200)
    g = t.graph
    assert t.num_devices == 4 and len(nics(t)) == 4 and g.graph["device_model"] == "GB200"
    c2c = g["gpu0"]["cpu0"]
    assert c2c["link"] == "c2c" and c2c["lanes"] == 10 and c2c["bw_GBps"] == 10 * 45000 / 1000
    assert g["gpu2"]["cpu1"]["link"] == "c2c"
    assert t.peak_bw_GBps() == 18 * 50.0                       # NVLink5 through the NVSwitch trays
    assert g.graph["model"]["c2c"]["efficiency"] == 0.8
    assert note in ("", "gb200_c2c.xml: 1 NVSwitch node stands for gb200-nvl72's 18 chips, with their summed "
                        "in-network reduction rate")


# -- nodes=N: the imported server as a building block -------------------------------------------------------

@pytest.mark.parametrize("path,kw,per_nic", [(AZURE, {"gpu": "a100"}, 25.0), (MI300X, {}, 50.0),
                                             (NVSWITCH, {}, 50.0), (GB200, {}, 50.0)])
def test_imported_server_repeated_with_its_nics(path, kw, per_nic):
    one, _ = load(path, **kw)
    t, _ = load(path, nodes=2, **kw)
    g = t.graph
    assert t.num_devices == 2 * one.num_devices and t.name == one.name + "-x2"
    assert len(nics(t)) == 2 * len(nics(one)) and g.graph["nodes"] == 2 and g.graph["fabric"] == "rail"
    assert {g.nodes[d]["node"] for d in t.devices[:one.num_devices]} == {0}
    assert g.nodes[t.devices[-1]]["node"] == 1
    # Every NIC reaches the fabric at its own speed (the file's, or the model's for a hint NIC).
    for n in nics(t):
        up = [e for _, v, e in g.out_edges(n, data=True) if e["link"] in ("ib", "roce")]
        assert len(up) == 1 and up[0]["bw_GBps"] == per_nic
    assert scaleout_bw_GBps(t) == per_nic * len(nics(one)) / one.num_devices


def test_two_mi300x_servers_match_the_preset():
    t, _ = load(MI300X, nodes=2)
    assert busbw(t) == pytest.approx(busbw(preset("mi300x-8", nodes=2)), rel=0.02)


def test_load_topology_takes_nodes_and_gpu():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TopologyNote)
        t = load_topology(AZURE, nodes=3, gpu="dgx-a100")
    assert t.num_devices == 24
    with pytest.raises(ValueError, match="gpu='a100' applies to NCCL topology XML files"):
        load_topology("dgx-a100", gpu="a100")


def test_nics_of_different_speed_get_separate_fabrics(tmp_path):
    text = open(NVSWITCH).read().replace('name="mlx5_7" dev="7" speed="400000"', 'name="mlx5_7" dev="7" speed="100000"')
    path = tmp_path / "mixed.xml"
    path.write_text(text)
    t, _ = load(path, nodes=2)
    leaves = sorted(n for n in t.graph if str(n).startswith("fab") and "leaf" in n)
    assert leaves[0].startswith("fab0.") and leaves[-1].startswith("fab1.")


def test_nic_speed_below_one_is_nccls_default(tmp_path):
    text = open(NVSWITCH).read().replace('speed="400000"', 'speed="-1"', 1)
    path = tmp_path / "minus.xml"
    path.write_text(text)
    t, note = load(path)
    assert "1 <net> with speed <= 0: 10 Gb/s, NCCL's default" in note
    assert t.graph.nodes["nic:mlx5_0"]["speed_Mbps"] == 10000


def test_nvlink_targets_named_differently_are_merged_as_nccl_does(tmp_path):
    text = open(NVSWITCH).read().replace('<nvlink target="0000:08:00.0" count="4"',
                                         '<nvlink target="fffffff:ffff:ff" count="4"', 1)
    path = tmp_path / "odd.xml"
    path.write_text(text)
    t, note = load(path)
    assert "merged into one NVSwitch, as NCCL does" in note
    assert [t.graph[d]["nvswitch"]["lanes"] for d in t.devices] == [18] * 8 and t.peak_bw_GBps() == 450.0


def test_missing_tclass_and_hint_gpus_of_an_amd_model(tmp_path):
    # RCCL without tclass: the target is a GPU of the file, so the link is a GPU-GPU xGMI link.
    text = open(MI300X).read().replace(' tclass="0x120000"', "")
    path = tmp_path / "notclass.xml"
    path.write_text(text)
    t, _ = load(path)
    assert t.graph["gpu0"]["gpu1"]["link"] == "xgmi"
    # MI300X hint GPUs (class 0x120000, the PCI id says MI300X): the xGMI full mesh of the preset.
    hint = mi300x_hint(tmp_path, 8)
    t, note = load(hint)
    assert "completed as mi300x-8 (from its PCI device id): gfx942, xgmi full mesh" in note
    assert t.peak_bw_GBps() == 448.0 and t.graph["gpu0"]["gpu7"]["link"] == "xgmi"


# -- bad files: one line naming the file and what was expected ------------------------------------------

BAD = [
    (NVSWITCH, lambda s: s.replace('<system version="1">', '<system version="3">'), {},
     "topology XML version '3' is not supported; expected 1 (NCCL) or 2 (RCCL)"),
    (NVSWITCH, lambda s: s.replace('<system version="1">', "<system>"), {}, "no version attribute; expected"),
    (NVSWITCH, lambda s: s.replace('class="0x030200"', 'class="0x010802"').replace("<gpu ", "<gpx ")
     .replace("</gpu>", "</gpx>"), {}, "no GPU: expected <pci> elements of class 0x03xxxx"),
    (MI300X, lambda s: s.replace('count="1"', 'count="one"', 1), {}, "count='one' is not an integer"),
    (NVSWITCH, lambda s: s.replace('link_speed="32.0 GT/s PCIe"', 'link_speed="fast"', 1), {},
     "link_speed='fast' is not of the form '<n> GT/s'"),
    (NVSWITCH, lambda s: s, {"gpu": "atlas800t-a2"}, "gpu='atlas800t-a2' is not a GPU model; expected one of"),
    (NVSWITCH, lambda s: s, {"gpu": "a100"}, "is SM90 but the GPU model dgx-a100 is SM80"),
    (MI300X, lambda s: s, {"gpu": "h100"}, "is an AMD GPU but gpu='h100' is an NVIDIA model"),
    (GB200, lambda s: s.replace('<c2c bw="45000" count="10"/>', '<c2c count="10"/>'), {}, "missing attribute 'bw'"),
]


@pytest.mark.parametrize("source,mutate,kw,match", BAD)
def test_bad_files_give_one_line(tmp_path, source, mutate, kw, match):
    path = tmp_path / "bad.xml"
    path.write_text(mutate(open(source).read()))
    with pytest.raises(ValueError) as err:
        load(path, **kw)
    msg = str(err.value)
    assert len(msg.splitlines()) == 1 and msg.startswith(str(path)) and match in msg


def mi300x_hint(tmp_path, n):
    path = tmp_path / f"mi_hint{n}.xml"
    path.write_text('<system version="2"><cpu numaid="0" arch="x86_64" vendor="AuthenticAMD">'
                    + "".join(f'<pci busid="0000:{i + 1:02x}:00.0" class="0x120000" vendor="0x1002" device="0x74a1" '
                              f'link_speed="32.0 GT/s PCIe" link_width="16"/>' for i in range(n))
                    + "</cpu></system>")
    return path


def test_hint_gpus_beyond_a_full_mesh_are_refused(tmp_path):
    path = mi300x_hint(tmp_path, 9)
    with pytest.raises(ValueError) as err:
        load(path)
    msg = str(err.value)
    assert len(msg.splitlines()) == 1 and msg.startswith(str(path))
    assert "9 hint GPUs of model mi300x-8, whose xgmi full mesh joins at most 8; expected <= 8 GPUs" in msg


def test_gpu_without_sm_is_completed_from_its_pci_id(tmp_path):
    path = tmp_path / "nosm.xml"
    path.write_text(open(NVSWITCH).read().replace(' sm="90"', ""))
    t, note = load(path)
    assert t.graph.nodes["gpu0"]["sm"] == 90 and "8 <gpu> without sm: sm 90 from dgx-h100" in note
    assert t.peak_bw_GBps() == 450.0


def test_nodes_need_nics(tmp_path):
    text = open(MI300X).read()
    text = re.sub(r'<pci busid="[^"]*" class="0x020700".*?</pci>', "", text, flags=re.S)
    path = tmp_path / "nonic.xml"
    path.write_text(text)
    with pytest.raises(ValueError, match=r"nonic\.xml: nodes=2 needs NICs to join the servers.*expected <nic>"):
        load(path, nodes=2)
    t, _ = load(path)              # one server without NICs loads
    assert t.num_devices == 8 and not nics(t)


def test_hint_nic_without_model_is_refused(tmp_path):
    text = open(NVSWITCH).read().replace('vendor="0x10de" device="0x2330" ', "")
    text = text.replace('<nic>\n          <net name="mlx5_0" dev="0" speed="400000" port="1" latency="0.000000" '
                        'guid="0x946dae0300c3b100" maxconn="131072" gdr="1"/>\n        </nic>\n', "")
    path = tmp_path / "nospeed.xml"
    path.write_text(text)
    t, note = load(path)              # a model by SM (90: dgx-h100) gives the NIC its speed
    assert "1 NICs without a speed in the file: 400 Gb/s each, dgx-h100's NIC" in note


# -- the CLI ------------------------------------------------------------------------------------------------

def run(capsys, *argv):
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


@pytest.mark.parametrize("path,extra,devices,peak", [(AZURE, ["--gpu", "a100"], 8, "300.0"), (VM, [], 8, "425.0"),
                                                      (NVSWITCH, [], 8, "450.0"), (MI300X, [], 8, "448.0"),
                                                      (GB200, [], 4, "900.0")])
def test_topo_show_files(capsys, path, extra, devices, peak):
    status, out, err = run(capsys, "topo", "show", path, *extra)
    assert status == 0 and err == ""
    assert f"devices    {devices}" in out and f"peak per device       {peak} GB/s" in out
    status, out, err = run(capsys, "topo", "show", path, "--nodes", "2", *extra)
    assert status == 0 and f"devices    {2 * devices}" in out and "scale-out fabric      rail" in out
    if path == AZURE:
        assert "note: 8 GPUs are <pci> hints without <gpu>: completed as dgx-a100" in out
        assert "scale-out per device  25.0 GB/s" in out


def test_topo_show_hint_file_without_gpu_is_one_line(capsys):
    status, out, err = run(capsys, "topo", "show", AZURE)
    assert status == 2 and out == "" and len(err.strip().splitlines()) == 1 and "--gpu MODEL" in err


@pytest.mark.parametrize("path,extra,same", [(MI300X, [], "mi300x-8"), (AZURE, ["--gpu", "a100"], "dgx-a100")])
def test_bench_on_a_file_with_nodes(capsys, path, extra, same):
    def table(*argv):
        status, out, err = run(capsys, "bench", "allreduce", "-b", "1M", "-e", "64M", "-f", "64", "--model-only",
                               "--nodes", "2", *argv)
        assert status == 0 and "nGpus 16" in out
        rows = [line.split() for line in out.splitlines() if line.strip() and not line.startswith("#")]
        return [float(r[7]) for r in rows], err                  # busbw, out of place

    mine, err = table("--topology", path, *extra)
    theirs, _ = table("--topology", same)
    assert len(mine) == 2 and all(b > 0 for b in mine)
    # The preset of the same server, two of them: the same bandwidth (at 1 MiB the file's NICs behind
    # PCIe bridges add hops, so latency differs).
    assert mine[-1] == pytest.approx(theirs[-1], rel=0.06) and mine[0] == pytest.approx(theirs[0], rel=0.3)
    notes = [line for line in err.splitlines() if "note:" in line]
    assert len(notes) == (1 if extra else 0)
    if extra:
        assert notes[0].endswith("200 Gb/s each, dgx-a100's NIC") and "completed as dgx-a100" in notes[0]


def test_scale_out_options_and_limits():
    t, _ = load(MI300X, nodes=4, fabric="fat-tree", leaf_ports=8)
    assert t.num_devices == 32 and t.graph.graph["fabric"] == "fat-tree"
    for nodes, match in ((10**9, "would have 8000000000 devices; expected at most 1048576"),
                         (0, "nodes=0; expected an integer >= 1")):
        with pytest.raises(ValueError) as err:
            load(MI300X, nodes=nodes)
        assert len(str(err.value).splitlines()) == 1 and str(err.value).startswith(MI300X) and match in str(err.value)


def test_a_direct_nvlink_listed_by_both_gpus_is_one_link(tmp_path):
    path = tmp_path / "pair.xml"
    path.write_text('<system version="1"><cpu numaid="0" arch="x86_64" vendor="GenuineIntel">'
                    '<pci busid="0000:01:00.0" class="0x030200" link_speed="16.0 GT/s PCIe" link_width="16">'
                    '<gpu dev="0" sm="80" rank="0"><nvlink target="0000:02:00.0" count="2" tclass="0x030200"/>'
                    '<nvlink target="0000:02:00.0" count="2" tclass="0x030200"/></gpu></pci>'
                    '<pci busid="0000:02:00.0" class="0x030200" link_speed="16.0 GT/s PCIe" link_width="16">'
                    '<gpu dev="1" sm="80" rank="1"><nvlink target="0000:01:00.0" count="4" tclass="0x030200"/>'
                    '</gpu></pci></cpu></system>')
    t, _ = load(path)
    e = t.graph["gpu0"]["gpu1"]
    assert e["lanes"] == 4 and e["bw_GBps"] == 100.0 and t.graph["gpu1"]["gpu0"]["lanes"] == 4
