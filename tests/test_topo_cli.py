"""``ccemu topo list`` and ``ccemu topo show``: output and exit status."""

import os

import pytest

from bench.cli import main
from topologies import preset, presets
from topologies.io import save_graphml, save_json

DATA = os.path.join(os.path.dirname(__file__), "data")


def run(capsys, *argv):
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def test_list_has_one_row_per_preset(capsys):
    status, out, err = run(capsys, "topo", "list")
    assert status == 0 and err == ""
    lines = out.splitlines()
    assert lines[0].split()[:4] == ["name", "devices", "link", "kinds"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert sorted(rows) == presets()
    assert rows["dgx-h100"][1:4] == ["8", "nvlink", "450.0"]
    assert rows["atlas800t-a2"][1:4] == ["8", "hccs,pcie,socket", "196.0"]
    assert rows["cloudmatrix384"][1:4] == ["384", "ub", "392.0"]
    assert rows["mi300x-8"][3] == "448.0" and rows["hgx-h800"][3] == "200.0" and rows["dgx-a100"][3] == "300.0"
    assert "full xGMI mesh" in out                              # the one-line descriptions


def test_show_preset(capsys):
    status, out, err = run(capsys, "topo", "show", "atlas800t-a2")
    assert status == 0 and err == ""
    assert out.splitlines()[0] == "atlas800t-a2"
    assert "devices    8" in out and "CPUs       4" in out and "NICs       0" in out
    assert "in-network reduction: no" in out
    hccs = next(line.split() for line in out.splitlines() if line.strip().startswith("hccs"))
    assert hccs == ["hccs", "28", "1", "28", "0.6"]             # 28 links, 1 lane, 28 GB/s, 0.6 us
    assert "peak per device       196.0 GB/s" in out
    assert "sources (docs/hardware.md in the ccemu repository):" in out
    assert "docs/hardware.md#huawei-ascend-910b: Ascend 910B" in out


def test_show_nvls_and_nodes(capsys):
    status, out, _ = run(capsys, "topo", "show", "dgx-h100", "--nodes", "2")
    assert status == 0
    assert "dgx-h100-x2" in out and "devices    16" in out and "NICs       16" in out
    assert "in-network reduction: yes, on 8 switches" in out
    assert "scale-out per device  50.0 GB/s" in out and "scale-out fabric      rail" in out
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.startswith("    ")}
    assert rows["ib"][3] == "50" and rows["pcie"][1:4] == ["16", "1", "64"]
    assert rows["nvlink"][2:4] == ["4/5", "100/125"]


def test_show_preset_options(capsys):
    status, out, _ = run(capsys, "topo", "show", "cloudmatrix384", "-o", "devices=die")
    assert status == 0 and "devices    768" in out and "peak per device       196.0 GB/s" in out
    status, out, _ = run(capsys, "topo", "show", "atlas800t-a2", "--nodes", "4", "-o", "fabric=fat-tree",
                         "-o", "leaf_ports=8", "-o", "oversubscription=2")
    assert status == 0 and "devices    32" in out and "scale-out fabric      fat-tree" in out


def test_show_files(capsys, tmp_path):
    status, out, _ = run(capsys, "topo", "show", os.path.join(DATA, "nccl_8gpu_nvswitch.xml"))
    assert status == 0 and "nccl_8gpu_nvswitch" in out and "peak per device       450.0 GB/s" in out
    assert "in-network reduction: yes, on 4 switches" in out
    path = tmp_path / "a2.json"
    save_json(preset("atlas800t-a2"), path)
    status, out, _ = run(capsys, "topo", "show", str(path))
    assert status == 0 and "peak per device       196.0 GB/s" in out
    gml = tmp_path / "mi.graphml"
    save_graphml(preset("mi250x-8"), gml)
    status, out, _ = run(capsys, "topo", "show", str(gml))
    assert status == 0 and "8 relay traffic" in out and "peak per device       150.0 GB/s" in out


@pytest.mark.parametrize("argv,match", [
    (["topo", "show", "dgx-h1000"], "valid presets: atlas800-9000"),
    (["topo", "show", "dgx-h100", "--nodes", "0"], "nodes=0"),
    (["topo", "show", "dgx-h100", "--nodes", "two"], "invalid int value"),
    (["topo", "show", "dgx-h100", "-o", "colour=red"], "no option 'colour'"),
    (["topo", "show", "dgx-h100", "-o", "nodes"], "expected KEY=VALUE"),
    (["topo", "show", os.path.join(DATA, "nccl_2gpu_bridge.xml"), "-o", "nodes=2"], "presets only"),
    (["topo", "show", os.path.join(DATA, "nccl_2gpu_bridge.xml"), "--gpu", "x100"], "gpu='x100' is not a GPU model"),
    (["topo", "show", "dgx-h100", "--gpu", "h100"], "gpu='h100' applies to NCCL topology XML files"),
    (["topo"], "required"),
    (["topo", "frobnicate"], "invalid choice"),
])
def test_errors_are_one_line_exit_2(capsys, argv, match):
    status, out, err = run(capsys, *argv)
    assert status == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert match in err
