"""The scale-out table's placement and rows (bench/scaleout_table.py)."""

import pytest

from bench import scaleout_table as st


def test_devices_fill_the_fewest_blocks_evenly():
    t = st.system("gb200-nvl72", 72, 128)            # two racks of 64
    assert t.num_devices == 128
    nodes = [t.graph.nodes[d]["node"] for d in t.devices]
    assert nodes.count(nodes[0]) == 64 and len(set(nodes)) == 2
    assert st.system("hgx-h20", 8, 8).name == "hgx-h20"
    assert st.system("hgx-h20", 8, 24).num_devices == 24


def test_rows_name_the_algorithm_and_routing(capsys):
    assert st.main(["--devices", "16", "--systems", "atlas800t-a2", "--size", str(1 << 22)]) == 0
    out = capsys.readouterr().out
    assert "| 910B cluster | 16 |" in out and "ecmp on roce (seed 0)" in out and "peak traced memory" in out


def test_bad_arguments_exit_2(capsys):
    for argv in (["--devices", "8,x"], ["--systems", "dgx-z"], ["--size", "0"]):
        with pytest.raises(SystemExit) as info:
            st.main(argv)
        assert info.value.code == 2
