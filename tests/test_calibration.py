"""Model fidelity on the published measurements (issue acceptance thresholds), and the fit's
reproducibility."""

import pytest

from bench import calibration, fit_model
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
    assert fit_model.main(["--check"]) == 0
    assert "committed constants reproduced" in capsys.readouterr().out


def test_validate_command_prints_every_point(capsys, tmp_path):
    out_json = tmp_path / "v.json"
    assert main(["validate", "-J", str(out_json)]) == 0
    text = capsys.readouterr().out
    assert "a100_allreduce_curve >= 1 MiB" in text and "8589934592" in text and out_json.exists()
