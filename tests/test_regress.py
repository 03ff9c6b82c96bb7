"""The regression suite: case files, results, ``regress compare`` and the committed baseline."""

import copy
import json
import os

import pytest

from bench import regress
from bench.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_CASES = os.path.join(ROOT, "bench", "cases", "default.json")
DEFAULT_BASELINE = os.path.join(ROOT, "bench", "baselines", "default.json")

SMALL = {"schema": "ccemu-cases", "version": 1,
         "host": {"reduce_mib": 1, "repeat": 3, "allreduce_devices": 4, "allreduce_kib": 16},
         "cases": [{"presets": ["hgx-h20", "atlas800t-a2"], "collectives": ["allreduce", "alltoall"],
                    "algorithms": ["direct", "auto"], "sizes": ["1M", "64M"]}]}


def _write(path, doc):
    path.write_text(json.dumps(doc))
    return str(path)


def test_committed_baseline_matches_the_default_cases():
    """What CI checks: the emulated metrics of bench/cases/default.json equal the committed baseline.

    A deliberate change of the model or an algorithm moves them; then regenerate the baseline with
    ``ccemu regress run --cases bench/cases/default.json --emulated-only -o bench/baselines/default.json``
    and commit it with the change.
    """
    base = regress.load_results(DEFAULT_BASELINE)
    cases = regress.expand_cases(regress.read_case_file(DEFAULT_CASES))
    new = regress.run(cases, host_cfg=None)
    report = regress.compare(base, new)
    assert report.ok, "emulated metrics drifted from bench/baselines/default.json:\n" + report.text()
    assert report.compared == len(cases) == len(base["emulated"])


def test_default_cases_are_the_declared_set():
    cases = regress.expand_cases(regress.read_case_file(DEFAULT_CASES))
    presets = {c.preset for c in cases}
    assert {"hgx-h20", "atlas800t-a2", "mi308x-8", "dgx-h100"} <= presets
    assert {c.collective for c in cases} == {"allreduce", "allgather", "alltoall"}
    assert {"ring", "direct", "auto"} <= {c.algorithm for c in cases}
    assert {2**10, 2**20, 2**28} <= {c.size for c in cases}


def test_injected_5_percent_model_change_is_caught(tmp_path, capsys):
    cases = _write(tmp_path / "cases.json", SMALL)
    a, b, c = (str(tmp_path / n) for n in ("a.json", "b.json", "c.json"))
    assert main(["regress", "run", "--cases", cases, "--emulated-only", "-o", a]) == 0
    assert main(["regress", "run", "--cases", cases, "--emulated-only", "-o", b]) == 0
    # NVLink efficiency 0.82 -> 0.779 (5% lower) for the second run.
    assert main(["regress", "run", "--cases", cases, "--emulated-only", "-o", c,
                 "--model", json.dumps({"nvlink": {"efficiency": 0.82 * 0.95}})]) == 0
    capsys.readouterr()
    assert main(["regress", "compare", a, b]) == 0
    out = capsys.readouterr().out
    assert out.rstrip().endswith("OK: 16 emulated cases compared, 0 failure(s)")
    assert main(["regress", "compare", a, c]) == 1
    out = capsys.readouterr().out
    assert "FAIL hgx-h20/n1/allreduce/direct/64M: busbw_GBps" in out and "REGRESSION" in out
    assert "FAIL hgx-h20/n1/alltoall/direct/64M: time_s" in out
    assert "atlas800t-a2" not in out.replace("note", "")     # HCCS links did not change
    assert "run-level model overrides differ" in out


def test_tolerance_and_algorithm_change(tmp_path):
    cases = regress.expand_cases(SMALL)
    base = regress.run(cases, host_cfg=None)
    new = copy.deepcopy(base)
    key = "hgx-h20/n1/allreduce/direct/1M"
    new["emulated"][key]["metrics"]["time_s"] *= 1 + 1e-12          # below the default rtol
    assert regress.compare(base, new).ok
    new["emulated"][key]["metrics"]["time_s"] *= 1 + 1e-6
    rep = regress.compare(base, new)
    assert not rep.ok and rep.failures[0].startswith(f"{key}: time_s")
    assert regress.compare(base, new, rtol=1e-3).ok
    new = copy.deepcopy(base)
    new["emulated"]["hgx-h20/n1/allreduce/auto/1M"]["metrics"]["algorithm"] = "tree"
    del new["emulated"]["atlas800t-a2/n1/alltoall/auto/64M"]
    new["emulated"]["extra/n1/allreduce/ring/1K"] = base["emulated"][key]
    rep = regress.compare(base, new)
    assert any(f.startswith("hgx-h20/n1/allreduce/auto/1M: algorithm") for f in rep.failures)
    assert "atlas800t-a2/n1/alltoall/auto/64M: missing from NEW" in rep.failures
    assert any("only in NEW" in n for n in rep.notes)


def _with_host(doc, ratio, spread):
    d = copy.deepcopy(doc)
    d["host"] = {m: {"median": ratio, "spread": spread, "samples": [ratio] * 3} for m in regress.HOST_RATIOS}
    return d


def test_host_ratio_threshold_is_noise_aware():
    base = regress.run(regress.expand_cases(SMALL), host_cfg=None)
    ref = _with_host(base, 1.0, 0.02)
    assert regress.compare(ref, _with_host(base, 0.9, 0.02)).ok             # -10% < 25%
    rep = regress.compare(ref, _with_host(base, 0.6, 0.02))                # -40% > 25%
    assert not rep.ok and rep.failures[0].startswith("host reduce_into_ratio: 1.000 -> 0.600")
    assert regress.compare(ref, _with_host(base, 0.6, 0.2)).ok               # noisy: 3 x 20% = 60%
    assert regress.compare(ref, _with_host(base, 0.6, 0.02), emulated_only=True).ok
    assert regress.compare(ref, _with_host(base, 2.0, 0.02)).ok               # faster is fine
    rep = regress.compare(base, _with_host(base, 0.1, 0.0))
    assert rep.ok and any("not in BASE" in n for n in rep.notes)


def test_host_metrics_recorded(tmp_path, capsys):
    cases = _write(tmp_path / "cases.json", SMALL)
    out = tmp_path / "r.json"
    assert main(["regress", "run", "--cases", cases, "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "reduce-into" in text and "np.add" in text
    doc = regress.load_results(str(out))
    h = doc["host"]
    assert h["config"]["reduce_mib"] == 1 and h["config"]["repeat"] == 3
    for m in ("reduce_into_GBps", "np_add_GBps", "reduce_into_ratio", "allreduce_wall_s", "allreduce_ratio"):
        assert h[m]["median"] > 0 and len(h[m]["samples"]) == 3 and h[m]["spread"] >= 0
    assert {"python", "numpy", "numba", "cpus"} <= set(h["machine"])


@pytest.mark.parametrize("block,match", [
    ({"presets": ["hgx-h2O"]}, "case 1: unknown preset 'hgx-h2O'; valid presets:"),
    ({"collectives": ["allreduse"]}, "case 1: unknown collective 'allreduse'"),
    ({"algorithms": ["rign"]}, "case 1: unknown algorithm 'rign' for allreduce"),
    ({"sizes": ["1Q"]}, "case 1: size '1Q' is not a whole number of bytes"),
    ({"nodes": [0]}, "case 1: node count 0"),
    ({"model": {"nvlink": {"efficiency": 2}}}, "case 1: model parameter nvlink.efficiency=2"),
    ({"sise": ["1K"]}, "case 1: unknown key 'sise'"),
])
def test_bad_case_is_one_line_exit_2_and_no_results(block, match, tmp_path, capsys):
    good = {"presets": ["hgx-h20"], "collectives": ["allreduce"], "algorithms": ["ring"], "sizes": ["1K"]}
    cases = _write(tmp_path / "cases.json", {"cases": [good, {**good, "tag": "t", **block}]})
    out = tmp_path / "r.json"
    rc = main(["regress", "run", "--cases", cases, "--emulated-only", "-o", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and match.replace("case 1", "case 2") in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["cases.json"]


def test_duplicate_cases_need_a_tag(tmp_path, capsys):
    good = {"presets": ["hgx-h20"], "collectives": ["allreduce"], "algorithms": ["ring"], "sizes": ["1K"]}
    cases = _write(tmp_path / "cases.json", {"cases": [good, good]})
    assert main(["regress", "run", "--cases", cases, "--emulated-only"]) == 2
    assert "case hgx-h20/n1/allreduce/ring/1K is also in case 1" in capsys.readouterr().err
    # Model overrides make their own tag, so the same cases under another model are distinct.
    doc = {"cases": [good, {**good, "model": {"nvlink": {"efficiency": 0.5}}}]}
    keys = [c.key for c in regress.expand_cases(doc)]
    assert keys == ["hgx-h20/n1/allreduce/ring/1K", "hgx-h20/n1/allreduce/ring/1K/nvlink.efficiency=0.5"]


def test_results_files_are_checked(tmp_path, capsys):
    cases = _write(tmp_path / "cases.json", SMALL)
    good = str(tmp_path / "good.json")
    assert main(["regress", "run", "--cases", cases, "--emulated-only", "-o", good]) == 0
    doc = json.loads(open(good).read())
    other = _write(tmp_path / "v2.json", {**doc, "version": 2})
    foreign = _write(tmp_path / "foreign.json", {**doc, "schema": "ccemu-scaling"})
    capsys.readouterr()
    for argv, match in [([good, other], "version 2; this ccemu reads version 1"),
                        ([foreign, good], "has schema 'ccemu-scaling'; expected 'ccemu-regress'"),
                        ([good, str(tmp_path / "missing.json")], "not found"),
                        ([cases, good], "has schema 'ccemu-cases'")]:
        rc = main(["regress", "compare", *argv])
        err = capsys.readouterr().err
        assert rc == 2 and match in err and len(err.strip().splitlines()) == 1, err
    rc = main(["regress", "run", "--cases", str(tmp_path / "nope.json"), "-o", str(tmp_path / "x.json")])
    assert rc == 2 and "case file" in capsys.readouterr().err and not (tmp_path / "x.json").exists()


def test_yaml_cases(tmp_path, capsys):
    path = tmp_path / "cases.yaml"
    path.write_text("cases:\n  - presets: [hgx-h20]\n    collectives: [allreduce]\n    algorithms: [ring]\n"
                    "    sizes: [1K]\n")
    try:
        import yaml  # noqa: F401
    except ImportError:
        assert main(["regress", "run", "--cases", str(path), "--emulated-only"]) == 2
        assert "reading YAML needs PyYAML" in capsys.readouterr().err
    else:
        assert main(["regress", "run", "--cases", str(path), "--emulated-only"]) == 0
        assert "1 emulated cases" in capsys.readouterr().out
