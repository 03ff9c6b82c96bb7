"""Model fidelity on the published measurements, against the targets the calibration data file sets
(issue 13's acceptance thresholds), under each measurement's conditions; and the fit's reproducibility."""

import copy
import json

import pytest

from collectives import calibration
from bench.cli import main

DATASETS = calibration.load()


@pytest.fixture(scope="module")
def preds():
    return calibration.predictions()


@pytest.fixture(scope="module")
def summary(preds):
    return calibration.summary(preds)


# Targets the model does not meet yet, and why (strict: the test fails once a target is met, so the
# entry must then go). Each is in the closing note with its figures.
KNOWN_MISSES = {
    ("mi300x_rccl_curve", ">= 1 MiB"): "median 5.1% against 5%: RCCL's 16-64 MiB busbw grows slower than a "
                                       "ring of constant per-message cost predicts (16 MiB: 251 GB/s against 197)",
}
TARGETED = [pytest.param(name, band, marks=pytest.mark.xfail(strict=True, reason=KNOWN_MISSES[(name, band)]))
            if (name, band) in KNOWN_MISSES else (name, band)
            for name, ds in DATASETS.items() for band in ds.get("targets", {})]


@pytest.mark.parametrize("name,band", TARGETED)
def test_each_data_set_meets_its_target(summary, name, band):
    key = name if band == "all" else f"{name} {band}"
    s = summary[key]
    assert s["met"], f"{key}: median {s['median']:.3f}, max {s['max']:.3f}; target {s['target']}"


def test_every_calibration_set_is_targeted_or_a_small_message_check():
    # The curves, latencies, peaks and card counts of sets A-F all carry targets.
    untargeted = sorted(n for n, ds in DATASETS.items() if "targets" not in ds)
    assert untargeted == ["mi300x_rccl_small"]


def test_library_sets_run_the_library_model_under_their_conditions(preds):
    # D forces NVLS (Simple only); E is RCCL's own choice; F is HCCL's.
    assert all(r["ran"].startswith("NVLS/Simple") and r["ran"].endswith("in_network") for r in preds["h100_nvls_curve"])
    assert all(r["ran"].startswith("Ring/") for r in preds["mi300x_rccl_curve"])
    assert all(r["ran"].startswith("Mesh/") for r in preds["ascend_910b_by_cards"])


def test_launch_cost_is_a_condition_of_the_measurement_not_of_the_library():
    # The same call, measured with -g 8 (one process, 8 GPUs) and with one process per GPU.
    ds = dict(DATASETS["a100_allreduce_curve"], points=[[1024, 0.04]])
    one = copy.deepcopy(ds)
    one["conditions"]["gpus_per_process"] = 1
    launch = calibration.committed()["launch.us_per_extra_gpu"]
    g8 = calibration.predictions(None, {"a": ds})["a"][0]
    g1 = calibration.predictions(None, {"a": one})["a"][0]
    t8, t1 = (1024 * 2 * 7 / 8 / (r["predicted"] * 1e3) for r in (g8, g1))   # busbw -> us
    assert t8 - t1 == pytest.approx(7 * launch, rel=1e-6)


def test_hccl_efficiency_separates_collectives_from_one_sided_transfers(preds):
    # HCCS one-sided transfers (set C) keep the link's rate; HCCL's collectives (set F) reach less of it.
    from collectives import simulate
    from topologies import preset

    t = preset("atlas800t-a2")
    lib = simulate("allreduce", 1 << 30, t, library="hccl")
    forced = simulate("allreduce", 1 << 30, t, algorithm=lib.algorithm, **lib.params)
    factor = calibration.committed()["library.hccl.bw_efficiency"]
    assert 0.5 < factor < 1.0
    assert lib.busbw_GBps < forced.busbw_GBps * (factor + 0.05)
    assert preds["ascend_910b_link"][0]["error"] == 0.0


def test_fit_reproduces_the_committed_constants(capsys):
    assert main(["fit", "--check"]) == 0
    assert "committed constants reproduced" in capsys.readouterr().out


def test_model_data_file_is_self_consistent():
    # Every derived entry is its source's value times its factor, and every entry has a provenance.
    from topologies import model
    doc = model.load_data()
    assert calibration.derive(copy.deepcopy(doc)) == doc
    for section in ("link_kinds", "switches", "libraries"):
        for kind, params in doc[section].items():
            for name, entry in params.items():
                assert entry["provenance"].strip(), (section, kind, name)


def test_fit_write_writes_the_data_files(tmp_path):
    from topologies import model
    target, cal = tmp_path / "model.json", tmp_path / "calibration.json"
    target.write_text(open(model.DATA_FILE).read())
    cal.write_text(open(calibration.DATA_FILE).read())
    groups = [calibration.GroupFit(g, {p: 1.0 for p in g.params}, 1.0, 1.0) for g in calibration.GROUPS]
    calibration.write_model(calibration.FitResult(0.5, 0.79, groups), str(target), str(cal))
    doc = json.loads(target.read_text())
    assert doc["link_kinds"]["nvlink"]["efficiency"]["value"] == 0.5
    assert doc["link_kinds"]["hccs"]["msg_us"]["value"] == 2.0       # derived: twice NVLink's
    assert doc["link_kinds"]["xgmi"]["msg_us"]["value"] == 1.0       # fitted on its own data
    assert "derived" not in doc["link_kinds"]["xgmi"]["msg_us"]
    assert doc["switches"]["nvswitch4"]["reduce_GBps"]["value"] == 2.0
    assert json.loads(cal.read_text())["launch"]["us_per_extra_gpu"]["value"] == 1.0


def test_validate_command_prints_every_point_with_what_ran(capsys, tmp_path):
    out_json = tmp_path / "v.json"
    assert main(["validate", "-J", str(out_json)]) == 0
    text = capsys.readouterr().out
    assert "a100_allreduce_curve >= 1 MiB" in text and "8589934592" in text and out_json.exists()
    assert "NVLS/Simple" in text and "conditions: library=nccl" in text
