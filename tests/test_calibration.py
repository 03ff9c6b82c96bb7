"""Model fidelity on the published measurements (issue acceptance thresholds), and the fit's
reproducibility."""

import pytest

from collectives import calibration
from bench.cli import main


@pytest.fixture(scope="module")
def summary():
    return calibration.summary(calibration.predictions())


def test_a100_allreduce_curve(summary):
    assert summary["a100_allreduce_curve >= 1 MiB"]["median"] <= 0.10
    assert summary["a100_allreduce_curve 64 KiB..1 MiB"]["median"] <= 0.25


def test_dgx_a100_ring_latency_within_15_percent_everywhere(summary):
    assert summary["dgx_a100_ring_latency"]["max"] <= 0.15


@pytest.mark.parametrize("name", ["h100_ring_peak", "mi300x_link", "ascend_910b_link"])
def test_peak_figures_within_5_percent(summary, name):
    assert summary[name]["max"] <= 0.05


def test_fit_reproduces_the_committed_constants(capsys):
    assert main(["fit", "--check"]) == 0
    assert "committed constants reproduced" in capsys.readouterr().out


def test_model_data_file_is_self_consistent():
    # Every derived entry is its source's value times its factor, and every entry has a provenance.
    import copy

    from topologies import model
    doc = model.load_data()
    assert calibration.derive(copy.deepcopy(doc)) == doc
    for kind, params in doc["link_kinds"].items():
        for name, entry in params.items():
            assert entry["provenance"].strip(), (kind, name)


def test_fit_write_writes_the_data_file(tmp_path, monkeypatch):
    import json

    from topologies import model
    target = tmp_path / "model.json"
    target.write_text(open(model.DATA_FILE).read())
    r = calibration.FitResult(0.5, 0.79, {k: 1.0 for k in calibration.NAMES}, 1.0, 1.0)
    calibration.write_model(r, str(target))
    doc = json.loads(target.read_text())
    assert doc["link_kinds"]["nvlink"]["efficiency"]["value"] == 0.5
    assert doc["link_kinds"]["hccs"]["msg_us"]["value"] == 2.0  # derived: twice NVLink's


def test_validate_command_prints_every_point(capsys, tmp_path):
    out_json = tmp_path / "v.json"
    assert main(["validate", "-J", str(out_json)]) == 0
    text = capsys.readouterr().out
    assert "a100_allreduce_curve >= 1 MiB" in text and "8589934592" in text and out_json.exists()
