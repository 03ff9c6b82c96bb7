"""The scaling-loss study, ``ccemu scaling`` / ``ccemu compare``, sub-topologies and the figures."""

import io
import json

import networkx as nx
import pytest

from bench import plots
from collectives import study as scaling
from bench.cli import main
from collectives.study import Progress, sweep, take_devices
from topologies import Topology, preset, switch
from topologies.graph import add_link


# -- closed forms ---------------------------------------------------------------------------------------

def test_scaling_loss_of_ring_allreduce_on_a_switch_matches_the_closed_form():
    # Ring allreduce through one switch of generic links (efficiency 1, no message cost): 2(P-1)
    # steps, each a 2-hop latency 2L plus n/P bytes at B; so busbw = n / (2 L P + n / B).
    B, L, n = 50.0, 2.0, 2**20
    s = sweep("allreduce", [switch(8, bw_GBps=B, lat_us=L)], [n], devices=[2, 4, 8], algorithm="ring")
    t = {P: 2 * L * 1e-6 * P + n / (B * 1e9) for P in (2, 4, 8)}
    assert [r["P"] for r in s.rows] == [2, 4, 8]
    for r in s.rows:
        P = r["P"]
        assert r["nbytes"] == n and r["size"] == n and r["algorithm"] == "ring"
        assert r["busbw_GBps"] == pytest.approx(n / t[P] / 1e9, rel=1e-9)
        assert r["scaling_loss"] == pytest.approx(1 - t[2] / t[P], rel=1e-9, abs=1e-12)
        assert r["peak_GBps"] == B and r["bus_efficiency"] == pytest.approx(r["busbw_GBps"] / B, rel=1e-12)
    assert s.rows[0]["scaling_loss"] == 0.0 and 0.2 < s.rows[1]["scaling_loss"] < s.rows[2]["scaling_loss"]


def test_allgather_keeps_the_per_device_block_constant():
    # Direct allgather on the switch: every device sends its block m to P-1 peers over its uplink,
    # concurrently: time 2L + (P-1) m / B, busbw = (P-1) m / time; nbytes (nccl-tests S) = P m.
    B, L, m = 50.0, 2.0, 2**16
    s = sweep("allgather", [switch(8, bw_GBps=B, lat_us=L)], [m], devices=[2, 4, 8], algorithm="direct",
              per_device=True)
    busbw = {}
    for r in s.rows:
        P = r["P"]
        assert r["size"] == m and r["nbytes"] == P * m
        busbw[P] = (P - 1) * m / ((P - 1) * m / (B * 1e9) + 2 * L * 1e-6) / 1e9
        assert r["busbw_GBps"] == pytest.approx(busbw[P], rel=1e-9)
    for r in s.rows:  # busbw grows with P here: a ratio above 1, no loss
        assert r["busbw_ratio"] == pytest.approx(busbw[r["P"]] / busbw[2], rel=1e-9)
        assert r["scaling_loss"] == 0.0
    # With the nccl-tests convention (the default) the same S is split over more devices.
    tot = sweep("allgather", [switch(8, bw_GBps=B, lat_us=L)], [8 * m], devices=[2, 8], algorithm="direct")
    assert [r["nbytes"] for r in tot.rows] == [8 * m, 8 * m]


def test_nbytes_convention():
    assert scaling.nbytes_for("allreduce", 1024, 8, per_device=True) == 1024
    assert scaling.nbytes_for("alltoall", 1024, 8, per_device=True) == 8192
    assert scaling.nbytes_for("reduce_scatter", 1024, 3, per_device=True) == 3072
    assert scaling.nbytes_for("allgather", 1024, 8) == 1024


def test_a_gain_is_a_ratio_above_one_not_a_negative_loss():
    # On a full mesh a device has one link per peer, so busbw grows with P: ratio > 1, loss 0.
    from topologies import full_mesh
    s = sweep("allreduce", [full_mesh(8, bw_GBps=10.0)], [2**26], devices=[2, 8], algorithm="direct")
    small, big = s.rows
    assert small["busbw_ratio"] == 1.0 and small["scaling_loss"] == 0.0
    assert big["busbw_ratio"] > 3 and big["scaling_loss"] == 0.0
    assert big["scaling_gain"] == pytest.approx(big["busbw_ratio"] - 1)


# -- sub-topologies ----------------------------------------------------------------------------------

def test_take_devices_keeps_what_joins_the_devices():
    two = preset("hgx-h20", nodes=2)
    sub = take_devices(two, 12)
    assert sub.num_devices == 12 and sub.name == "hgx-h20-x2[:12]"
    kept = set(sub.graph.nodes)
    assert set(two.devices[:12]) <= kept and not set(two.devices[12:]) & kept
    # The NICs of removed devices lead nowhere and go; the kept devices' NICs stay.
    nics = {n for n in kept if sub.graph.nodes[n]["kind"] == "nic"}
    own = {v for d in two.devices[:12] for v in two.graph.successors(d) if two.graph.nodes[v]["kind"] == "nic"}
    assert nics == own
    # Every kept non-device node has at least two neighbours (no dead ends).
    und = sub.graph.to_undirected()
    assert all(und.degree(n) >= 2 for n in kept if sub.graph.nodes[n]["kind"] != "device")
    assert take_devices(two, 16) is two


def test_take_devices_errors():
    g = nx.DiGraph(name="line")
    for i, name in enumerate(["a", "b", "relay"]):
        g.add_node(name, kind="device", index=i, forward=name == "relay")
    add_link(g, "a", "relay", bw_GBps=10.0)
    add_link(g, "relay", "b", bw_GBps=10.0)
    t = Topology(g)
    with pytest.raises(ValueError, match=r"the first 2 devices of 'line' cannot reach each other without the other 1"):
        take_devices(t, 2)
    with pytest.raises(ValueError, match=r"expected an integer 1\.\.3"):
        take_devices(t, 0)
    with pytest.raises(ValueError, match="which has 8"):
        scaling.variants("hgx-h20", devices=[4, 16])
    with pytest.raises(ValueError, match="not both"):
        scaling.variants("hgx-h20", devices=[2, 4], nodes=[1, 2])
    with pytest.raises(ValueError, match="busbw is 0 on one device"):
        sweep("allreduce", ["hgx-h20"], [1024], devices=[1, 2])


def test_auto_leaves_out_slow_algorithms_only_at_scale():
    names, notes = scaling.candidates("alltoall", 8)
    assert "pairwise" in names and notes == []
    names, notes = scaling.candidates("alltoall", 384)
    assert "pairwise" not in names and "direct" in names and "pairwise" in notes[0]


# -- progress ------------------------------------------------------------------------------------------

def test_progress_bar_only_when_asked_or_on_a_terminal():
    buf = io.StringIO()
    p = Progress(3, stream=buf)            # StringIO is not a terminal: silent
    for _ in range(3):
        p.step("x")
    assert buf.getvalue() == ""
    p = Progress(2, stream=buf, enabled=True)
    p.step("first")
    p.step("second")
    text = buf.getvalue()
    assert "[###############---------------] 1/2 first" in text and "2/2 second" in text and text.endswith("\n")


# -- the command ----------------------------------------------------------------------------------------

def _rows(text):
    return [line.split() for line in text.splitlines() if line.strip() and not line.startswith(("#", "topology"))]


def test_scaling_cli_table_and_json(capsys, tmp_path):
    out = tmp_path / "s.json"
    rc = main(["scaling", "allreduce", "--topology", "atlas800t-a2,hgx-h20", "--devices", "2,4,8",
               "--sizes", "1M,64M", "-J", str(out)])
    text = capsys.readouterr().out
    assert rc == 0
    rows = _rows(text)
    assert len(rows) == 2 * 3 * 2
    assert rows[0][:4] == ["atlas800t-a2", "-", "2", "1M"] and rows[0][-2:] == ["1.000", "0.000"]
    doc = json.loads(out.read_text())
    assert doc["schema"] == "ccemu-scaling" and doc["version"] == 1 and doc["size_convention"] == "total"
    r = doc["rows"][-1]
    assert set(scaling.ROW_KEYS) <= set(r) and r["topology"] == "hgx-h20" and r["P"] == 8
    base = next(x for x in doc["rows"] if x["topology"] == "hgx-h20" and x["P"] == 2 and x["size"] == r["size"])
    assert r["busbw_ratio"] == pytest.approx(r["busbw_GBps"] / base["busbw_GBps"])
    assert r["scaling_loss"] == pytest.approx(max(0.0, 1 - r["busbw_ratio"]))


def test_scaling_cli_varies_nodes(capsys):
    rc = main(["scaling", "allreduce", "--topology", "hgx-h20", "--nodes", "1,2", "--sizes", "64M", "--algo", "ring",
               "--markdown"])
    text = capsys.readouterr().out
    assert rc == 0
    table = [line for line in text.splitlines() if line.startswith("| hgx-h20")]
    assert len(table) == 2 and "| 1 | 8 |" in table[0] and "| 2 | 16 |" in table[1]
    assert all("| ring |" in line for line in table)


@pytest.mark.parametrize("argv,match", [
    (["scaling", "allreduce", "--topology", "hgx-h2O"], "unknown topology 'hgx-h2O'"),
    (["scaling", "allreduse"], "invalid choice"),
    (["scaling", "allreduce", "--devices", "2,x"], "'x' is not a whole number"),
    (["scaling", "allreduce", "--devices", "2,4", "--nodes", "1,2"], "not both"),
    (["scaling", "allreduce", "--devices", "4,16"], "16 devices asked of 'atlas800t-a2', which has 8"),
    (["scaling", "allreduce", "--algo", "rign"], "unknown algorithm 'rign'"),
    (["scaling", "allreduce", "--sizes", "1M,6"], "size 6 is not a whole number of float32"),
    (["scaling", "allreduce", "--plot", "x.pdf"], "expected a .png"),
    (["scaling", "allreduce", "--model", "{\"nvlink\": {\"eficiency\": 0.5}}"], "unknown model parameter"),
    (["compare", "--systems", "hgx-h20,nope"], "unknown topology 'nope'"),
    (["compare", "--collectives", "allreduce,allgatherr"], "unknown collective 'allgatherr'"),
])
def test_bad_input_is_one_line_exit_2_and_no_file(argv, match, capsys, tmp_path):
    out = tmp_path / "o.json"
    rc = main(argv + ["-J", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and match in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_compare_table_multi_node_and_device_cap(capsys, tmp_path):
    out = tmp_path / "c.json"
    rc = main(["compare", "--systems", "hgx-h20,atlas800t-a2", "--collectives", "allreduce,alltoall",
               "--sizes", "1M,256M", "--nodes", "1,2", "--max-devices", "8", "-J", str(out), "--markdown"])
    text = capsys.readouterr().out
    assert rc == 0
    assert "hgx-h20 x2 (16 devices) left out" in text
    rows = [line for line in text.splitlines() if line.startswith("| all")]
    assert len(rows) == 2 * 2
    assert rows[0].startswith("| allreduce | hgx-h20 | 1 | 8 | 450.0 |")
    doc = json.loads(out.read_text())
    assert doc["schema"] == "ccemu-compare" and [s["collective"] for s in doc["studies"]] == ["allreduce", "alltoall"]
    assert doc["studies"][0]["size_convention"] == "total"
    assert {r["nbytes"] for r in doc["studies"][1]["rows"]} == {2**20, 2**28}


# -- figures -------------------------------------------------------------------------------------------

def test_scaling_figure_axes(tmp_path):
    s = sweep("allreduce", [switch(8, bw_GBps=50.0, lat_us=2.0), "atlas800t-a2"], [2**10, 2**20, 2**30],
              devices=[2, 4, 8], algorithm="ring")
    fig = plots.plot_scaling(s)
    ax_bw, ax_eff = fig.axes[:2]
    assert ax_bw.get_xscale() == "log" and ax_bw.xaxis.get_transform().base == 2
    assert [t.get_text() for t in ax_bw.get_xticklabels()] == ["1K", "1M", "1G"]
    assert "bytes" in ax_bw.get_xlabel() and ax_bw.get_ylabel() == "busbw (GB/s)"
    assert ax_eff.get_xlabel() == "devices (P)" and "bus efficiency" in ax_eff.get_ylabel()
    assert [t.get_text() for t in ax_eff.get_xticklabels()] == ["2", "4", "8"]
    assert ax_bw.get_title() and ax_eff.get_title() and fig.get_suptitle()
    # Left: a solid (P=8) and a dashed (P=2) line per topology; right: one per topology (+ the peak line).
    left = [ln.get_label() for ln in ax_bw.get_lines()]
    assert left == ["switch8, P=8", "switch8, P=2", "atlas800t-a2, P=8", "atlas800t-a2, P=2"]
    assert [ln.get_linestyle() for ln in ax_bw.get_lines()] == ["-", "--", "-", "--"]
    right = [ln for ln in ax_eff.get_lines() if not ln.get_label().startswith("busbw = peak")]
    assert [ln.get_label() for ln in right] == ["switch8: ring", "atlas800t-a2: ring"]
    assert list(right[0].get_xdata()) == [2, 4, 8]
    assert [t.get_text() for t in ax_bw.get_legend().get_texts()] == left
    path = tmp_path / "s.png"
    plots.save(fig, str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_compare_figure_and_cli_plot(capsys, tmp_path):
    path = tmp_path / "c.png"
    rc = main(["compare", "--systems", "hgx-h20,dgx-h100,atlas800t-a2", "--collectives", "allreduce,allgather",
               "--sizes", "1M,16M,256M", "--plot", str(path)])
    assert rc == 0 and path.read_bytes()[:4] == b"\x89PNG"
    capsys.readouterr()
    a = switch(4, bw_GBps=50.0, lat_us=2.0)
    systems = [a, a.copy(name="twin"), switch(4, bw_GBps=20.0, lat_us=2.0).copy(name="slow")]
    studies = [sweep(c, systems, [2**20, 2**24], per_device=False) for c in ("allreduce", "allgather")]
    fig = plots.plot_compare(studies)
    axes = fig.axes
    assert len(axes) == 4                                   # busbw and efficiency x 2 collectives
    assert [axes[i].get_title() for i in (0, 1)] == ["allreduce", "allgather"]
    for ax in axes:
        assert ax.get_xscale() == "log" and ax.xaxis.get_transform().base == 2
        assert [t.get_text() for t in ax.get_xticklabels()] == ["1M", "16M"]
        assert len([ln for ln in ax.get_lines() if not ln.get_label().startswith("_")]) == 3
    assert axes[0].get_ylabel() == "busbw (GB/s)" and "bus efficiency" in axes[2].get_ylabel()
    assert "nccl-tests size S" in axes[2].get_xlabel()
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    # switch4 and twin are the same system: identical lines, and the legend says so.
    assert labels == ["switch4 (P=4) = twin", "twin (P=4)", "slow (P=4)"]


def test_scaling_cli_on_a_topology_file(capsys, tmp_path):
    from topologies.io import save_json

    path = tmp_path / "sw.json"
    save_json(switch(4, bw_GBps=50.0, lat_us=2.0), str(path))
    rc = main(["scaling", "allreduce", "--topology", str(path), "--devices", "2,4", "--sizes", "1M", "--algo", "ring"])
    rows = _rows(capsys.readouterr().out)
    assert rc == 0 and [r[2] for r in rows] == ["2", "4"] and rows[0][0] == str(path)
    B, L, n = 50.0, 2.0, 2**20
    assert float(rows[1][8]) == pytest.approx(n / (2 * L * 1e-6 * 4 + n / (B * 1e9)) / 1e9, abs=0.006)
    assert main(["scaling", "allreduce", "--topology", str(path), "--nodes", "2"]) == 2
    assert "applies to presets and NCCL XML files" in capsys.readouterr().err


def test_scaling_under_jitter_reports_p99(capsys):
    assert main(["scaling", "allreduce", "--topology", "hgx-h20", "--devices", "4,8", "--sizes", "1M",
                 "--jitter", "lossy", "--seed", "1", "--iters", "30"]) == 0
    out = capsys.readouterr().out
    assert "p99_us" in out
    assert main(["scaling", "allreduce", "--topology", "hgx-h20", "--devices", "4", "--sizes", "1M",
                 "--jitter", "wobbly"]) == 2
    assert "unknown jitter profile 'wobbly'" in capsys.readouterr().err
