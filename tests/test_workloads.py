"""Workloads: the model and its parallelism, the step's collectives (closed forms), compute, the step
on a topology, and the ``ccemu workload`` command."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bench.cli import main
from collectives.alltoallv import Counts
from collectives.moe import topk_counts
from workloads import builtin_model, builtin_workload, load_workload
from workloads.comms import boundary_ops, layer_ops, routing, stage_params, step_ops
from workloads.compute import ComputeModel, chip, chip_for, layer_work
from workloads.placement import Layout, Placement
from workloads.step import compare, simulate_step, system_topology
from workloads.workload import load_yaml

# tiny-dense: hidden 64, 8 heads of 8, 4 KV heads, FFN 256 (SwiGLU), 4 layers, vocab 1024, seq 128,
# micro-batch 2, bf16. tiny-moe: the same attention with 8 KV heads, 16 experts of FFN 32, top-2,
# 1 shared expert, the first layer dense.
H, E, B, S = 64, 2, 2, 128
ATTN_DENSE = 2 * H * 8 * 8 + 2 * H * 4 * 8        # 12288: Q and O, K and V of 4 heads
MLP = 3 * H * 256                                  # 49152
EMB = 1024 * H                                     # 65536


def _w(name, devices, **over):
    return builtin_workload(name).with_overrides(over).resolved(devices)


def _sig(ops, phase=None):
    return [(o.group, o.collective, o.where, o.nbytes) for o in ops if phase is None or o.phase == phase]


# -- model counts ------------------------------------------------------------------------------------

def test_builtin_models_have_their_published_sizes():
    assert round(builtin_model("llama3-70b").total_params() / 1e9, 2) == 70.55
    d = builtin_model("deepseek-v3")
    assert round(d.total_params() / 1e9, 1) == 671.0            # DeepSeek-V3: 671B parameters
    assert round(d.active_params_per_token() / 1e9, 1) == 36.6  # 37B activated (36.6B with the head)
    assert d.kv_per_token_per_layer == 512 + 64 and d.qk_dim == 192 and d.v_dim == 128
    assert round(builtin_model("gpt3-175b").total_params() / 1e9, 1) == 174.6
    for name in ("llama3-70b", "deepseek-v3", "gpt3-175b"):
        assert builtin_model(name).source.startswith(("Meta", "DeepSeek", "Brown"))


# -- the collectives' sizes, closed forms -------------------------------------------------------------

def test_tensor_parallel_with_sequence_parallelism():
    w = _w("tiny-dense", 8, tp=2, pp=1)
    A = B * S * H * E                                              # 32768: the micro-batch's activations
    assert _sig(layer_ops(w, "dense"), "fwd") == [
        ("tp", "allgather", "attn.in", A), ("tp", "reduce_scatter", "attn.out", A),
        ("tp", "allgather", "mlp.in", A), ("tp", "reduce_scatter", "mlp.out", A)]
    assert _sig(layer_ops(w, "dense"), "bwd") == [
        ("tp", "reduce_scatter", "attn.in", A), ("tp", "allgather", "attn.out", A),
        ("tp", "reduce_scatter", "mlp.in", A), ("tp", "allgather", "mlp.out", A)]


def test_tensor_parallel_without_sequence_parallelism_allreduces():
    w = _w("tiny-dense", 8, tp=4, pp=1, sequence_parallel=False)
    A = B * S * H * E
    assert _sig(layer_ops(w, "dense")) == [
        ("tp", "allreduce", "attn.out", A), ("tp", "allreduce", "mlp.out", A),
        ("tp", "allreduce", "attn.in", A), ("tp", "allreduce", "mlp.in", A)]


def test_context_parallel_ring_exchange_of_keys_and_values():
    w = _w("tiny-dense", 8, tp=1, pp=1, cp=2)
    T = B * S // 2                                                  # 128 tokens per CP rank
    block = T * (2 * 4 * 8) * E                                     # K and V of 4 heads of 8: 16384 bytes
    ops = [o for o in layer_ops(w, "dense") if o.group == "cp"]
    assert [(o.collective, o.nbytes, o.phase, o.overlap, o.algorithm) for o in ops] == [
        ("allgather", 2 * block, "fwd", "core", "ring"), ("allgather", 2 * 2 * block, "bwd", "core", "ring")]
    # With tp=2 the 4 KV heads split over the tensor-parallel group: half the block.
    ops = [o for o in layer_ops(_w("tiny-dense", 8, tp=2, pp=1, cp=2), "dense") if o.group == "cp"]
    assert ops[0].nbytes == 2 * block // 2


def test_pipeline_sends_and_data_parallel_gradients():
    w = _w("tiny-dense", 8, tp=2, pp=2, zero=1)                     # dp = 8 / (2 * 2) = 2
    A = B * S * H * E
    (fwd, bwd) = boundary_ops(w)
    assert fwd.nbytes == bwd.nbytes == Counts([[0, A // 2 // E], [0, 0]])     # A / tp, in elements
    assert (fwd.group, fwd.phase, bwd.phase) == ("pp", "fwd", "bwd")
    per_stage = 2 * (ATTN_DENSE + MLP) + EMB                        # 2 layers and the embedding (or the head)
    assert stage_params(w, 0)["dense"] == stage_params(w, 1)["dense"] == per_stage
    assert [(o.group, o.collective, o.where, o.nbytes, o.stage) for o in step_ops(w)] == [
        ("dp", "reduce_scatter", "grads", per_stage // 2 * E, 0), ("dp", "allgather", "params", per_stage // 2 * E, 0),
        ("dp", "reduce_scatter", "grads", per_stage // 2 * E, 1), ("dp", "allgather", "params", per_stage // 2 * E, 1)]
    plain = _w("tiny-dense", 8, tp=2, pp=2, zero=0)
    assert [(o.collective, o.nbytes) for o in step_ops(plain)] == [("allreduce", per_stage // 2 * E)] * 2
    fp32 = _w("tiny-dense", 8, tp=2, pp=2, zero=0, grad_dtype="float32")
    assert [o.nbytes for o in step_ops(fp32)] == [per_stage // 2 * 4] * 2


def test_fsdp_gathers_every_layer():
    w = _w("tiny-dense", 8, tp=1, pp=1, zero=3)
    layer = (ATTN_DENSE + MLP) * E                                  # 122880 bytes
    assert [(o.group, o.collective, o.where, o.phase, o.nbytes, o.overlap) for o in layer_ops(w, "dense")] == [
        ("dp", "allgather", "fsdp.params", "fwd", layer, "prefetch"),
        ("dp", "allgather", "fsdp.params", "bwd", layer, "prefetch"),
        ("dp", "reduce_scatter", "fsdp.grads", "bwd", layer, "prefetch")]
    assert step_ops(w) == []


def test_expert_parallel_dispatch_and_combine_are_the_routing_counts():
    w = _w("tiny-moe", 16, tp=1, pp=2, ep=4)                        # dp 8, EP groups of 4
    counts = topk_counts(4, B * S, H, experts=16, top_k=2, skew=0.5, seed=0)
    ops = layer_ops(w, "moe")
    assert [(o.group, o.where) for o in ops] == [("ep", "moe.dispatch"), ("ep", "moe.combine"),
                                                 ("ep", "moe.combine.grad"), ("ep", "moe.dispatch.grad")]
    assert ops[0].nbytes == counts and ops[1].nbytes == Counts(counts.matrix.T)
    assert ops[2].nbytes == counts and ops[3].nbytes == Counts(counts.matrix.T)
    assert counts.total == 4 * B * S * 2 * H                        # every token to 2 experts, 64 elements each
    # Expert gradients over the expert-data-parallel group (8 / 4 = 2 devices), dense ones over all 8.
    experts_per_layer = 16 * 3 * H * 32
    s1 = [o for o in step_ops(w) if o.stage == 1]
    assert [(o.group, o.collective, o.nbytes) for o in s1] == [
        ("dp", "reduce_scatter", (2 * (16384 + 3 * H * 32 + H * 16) + EMB) * E),
        ("dp", "allgather", (2 * (16384 + 3 * H * 32 + H * 16) + EMB) * E),
        ("edp", "reduce_scatter", 2 * experts_per_layer // 4 * E), ("edp", "allgather", 2 * experts_per_layer // 4 * E)]


def test_moe_with_tensor_parallelism_gathers_the_received_tokens():
    w = _w("tiny-moe", 16, tp=2, pp=1, ep=4)
    counts, pairs = routing(w)
    assert counts == topk_counts(4, B * S // 2, H, experts=16, top_k=2, skew=0.5, seed=0)   # the SP share
    assert np.array_equal(pairs, counts.recv / H)
    sizes = tuple(int(2 * r * H * E) for r in pairs)
    ops = [o for o in layer_ops(w, "moe") if o.phase == "fwd"]
    assert [(o.group, o.collective, o.where) for o in ops] == [
        ("tp", "allgather", "attn.in"), ("tp", "reduce_scatter", "attn.out"), ("ep", "alltoallv", "moe.dispatch"),
        ("tp", "allgather", "moe.expert.in"), ("tp", "reduce_scatter", "moe.expert.out"),
        ("ep", "alltoallv", "moe.combine")]
    assert ops[3].nbytes == ops[4].nbytes == sizes
    assert [o.where for o in layer_ops(w, "dense") if o.phase == "fwd"] == ["attn.in", "attn.out", "mlp.in", "mlp.out"]


def test_placement_and_groups():
    lay = Layout(builtin_workload("tiny-moe").with_overrides({"tp": 2, "pp": 1, "ep": 4}).parallel.resolve(
        builtin_model("tiny-moe"), 16))
    assert lay.groups("tp")[0] == [0, 1] and lay.groups("ep")[0] == [0, 2, 4, 6]
    assert lay.groups("edp")[0] == [0, 8] and len(lay.groups("dp")) == 2
    # EP innermost: its groups are the first devices.
    w = builtin_workload("tiny-moe").with_overrides({"tp": 2, "pp": 1, "ep": 4,
                                                     "placement.order": ["ep", "tp", "cp", "dp", "pp"]})
    assert w.resolved(16).groups("ep")[0] == [0, 1, 2, 3] and w.resolved(16).groups("tp")[0] == [0, 4]
    with pytest.raises(ValueError, match="permutation"):
        Placement(("tp", "dp"))


# -- bad input: one line naming the value --------------------------------------------------------------

@pytest.mark.parametrize("name, devices, over, match", [
    ("llama3-70b", 24, {"tp": 3}, "tp=3 does not divide heads=64"),
    ("llama3-70b", 100, {}, "devices=100 is not divisible by tp\\*cp\\*pp=32"),
    ("llama3-70b", 64, {"ep": 2}, "ep=2 needs a mixture-of-experts model"),
    ("deepseek-v3", 64, {"ep": 16}, "ep=16 does not divide dp=8"),
    ("tiny-dense", 8, {"tp": 1, "pp": 1, "cp": 3}, "devices=8 is not divisible"),
    ("tiny-dense", 8, {"pp": 8, "tp": 1}, "pp=8 is more than the 4 layers"),
    ("tiny-moe", 16, {"tp": 2, "sequence_parallel": False}, "needs sequence_parallel"),
    ("tiny-dense", 8, {"mode": "decode", "cp": 2, "tp": 1}, "cp=2 in decode mode"),
    ("tiny-dense", 8, {"zero": 4}, "zero=4"),
    ("tiny-dense", 8, {"dp": 3}, "dp=3"),
])
def test_impossible_parallelism_raises_one_line(name, devices, over, match):
    with pytest.raises(ValueError, match=match) as e:
        builtin_workload(name).with_overrides(over).resolved(devices)
    assert "\n" not in str(e.value)


def test_bad_workload_inputs(tmp_path):
    with pytest.raises(ValueError, match="neither a file nor a built-in workload"):
        load_workload("llama-9")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_workload(bad)
    bad.write_text(json.dumps({"model": "tiny-dense", "paralel": {}}))
    with pytest.raises(ValueError, match="unknown key 'paralel'"):
        load_workload(bad)
    bad.write_text(json.dumps({"model": {"layers": 2, "hidden": 64, "heads": 8}}))
    with pytest.raises(ValueError, match="missing 'ffn'"):
        load_workload(bad)
    bad.write_text(json.dumps({"model": "nosuch"}))
    with pytest.raises(ValueError, match="unknown model 'nosuch'"):
        load_workload(bad)
    bad.write_text(json.dumps({"model": "tiny-dense", "compute": {"mfu": 1.5}}))
    with pytest.raises(ValueError, match="compute.mfu=1.5"):
        load_workload(bad)
    with pytest.raises(ValueError, match="unknown section"):
        builtin_workload("tiny-dense").with_overrides({"modle.layers": 2})


def test_workload_files_json_and_yaml(tmp_path):
    doc = {"name": "mine", "model": {"base": "tiny-moe", "seq_len": 256}, "parallel": {"tp": 1, "pp": 2, "ep": 2},
           "routing": {"skew": 1.0, "seed": 3}, "overlap": {"dp": False}}
    p = tmp_path / "w.json"
    p.write_text(json.dumps(doc))
    w = load_workload(p)
    assert (w.name, w.model.seq_len, w.parallel.ep, w.skew, w.seed, w.overlaps("dp"), w.overlaps("cp")) == \
        ("mine", 256, 2, 1.0, 3, False, True)
    y = tmp_path / "w.yaml"
    y.write_text("name: mine\nmodel:\n  base: tiny-moe   # a built-in, changed\n  seq_len: 256\nparallel:\n"
                 "  tp: 1\n  pp: 2\n  ep: 2\nrouting:\n  skew: 1.0\n  seed: 3\noverlap:\n  dp: false\n")
    assert load_workload(y) == w
    assert load_yaml("a: [1, 2.5, x]\nb:\n  - 1\n  - two\n") == {"a": [1, 2.5, "x"], "b": [1, "two"]}
    assert load_workload({"base": "deepseek-v3", "parallel": {"pp": 16, "ep": 64}}).parallel.tp == 1


# -- compute --------------------------------------------------------------------------------------

def test_chips_and_the_roofline():
    assert chip_for("hgx-h800").bf16_tflops == 989.4 and chip_for("atlas800t-a2").key == "ascend-910b"
    assert chip_for(system_topology("cloudmatrix384")).key == "ascend-910c"
    with pytest.raises(ValueError, match="no compute figures"):
        chip_for("mi308x-8")
    cm = ComputeModel(mfu=0.5, mem_efficiency=1.0)
    c = chip("h20")
    assert cm.time(148e12, 0, c) == pytest.approx(2.0)                 # 148 TFLOP at half of 148 TFLOPS
    assert cm.time(0, 4e12, c) == pytest.approx(1.0)                    # 4 TB at 4 TB/s
    w = _w("tiny-dense", 8, tp=2, pp=1)
    work = layer_work(w.model, w.parallel, "dense", "train")
    T = B * S
    assert work.flops == 2 * T * (ATTN_DENSE + MLP) / 2
    assert work.core_flops == T * (S / 2) * (8 / 2) * 2 * (8 + 8)


# -- the step --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def h20x2():
    return system_topology("hgx-h20", 16)


def test_step_parts_add_up_and_follow_the_rules(h20x2):
    r = simulate_step("tiny-moe", h20x2)
    assert abs(sum(r.breakdown.values()) - r.step_s) < 1e-12 * r.step_s
    w = builtin_workload("tiny-moe").resolved(16)
    mb, pp = w.parallel.micro_batches, w.parallel.pp
    slot = max(s["slot_s"] for s in r.stages)
    assert r.breakdown["bubble"] == pytest.approx((pp - 1) * slot)
    ep = [p for p in r.phases if p.op.group == "ep"]
    assert ep and all(p.calls == 4 for p in ep)                          # 16 / 4 expert-parallel groups at once
    assert r.tokens_per_step == mb * B * S * w.parallel.dp
    assert 0 < r.mfu < 1 and r.by_link_kind
    d = r.as_dict()
    assert d["schema"] == "ccemu-workload-step" and d["breakdown_s"] == r.breakdown
    json.dumps(d)


def test_gradient_reduction_is_hidden_unless_overlap_is_off(h20x2):
    w = builtin_workload("tiny-dense").with_overrides({"tp": 2, "pp": 1, "micro_batches": 1})
    on = simulate_step(w, h20x2)
    off = simulate_step(w.with_overrides({"overlap.dp": False}), h20x2)
    grads = max(p.time_s for p in off.phases if p.op.where == "grads")
    assert off.breakdown["dp reduce_scatter"] == pytest.approx(grads)
    assert on.breakdown["dp reduce_scatter"] < off.breakdown["dp reduce_scatter"]


def test_modes_and_fsdp_run(h20x2):
    for over in ({"mode": "prefill"}, {"mode": "decode", "micro_batches": 2}, {"zero": 3, "pp": 1, "tp": 2}):
        r = simulate_step(builtin_workload("tiny-dense").with_overrides(over), h20x2)
        assert r.step_s > 0 and abs(sum(r.breakdown.values()) - r.step_s) < 1e-9 * r.step_s
    dec = simulate_step(builtin_workload("tiny-dense").with_overrides({"mode": "decode"}), h20x2)
    assert "optimizer" not in dec.breakdown and dec.tokens_per_step == 4 * B * 4


def test_compare_scaling_efficiency():
    comp = compare("tiny-dense", ["hgx-h20", "atlas800t-a2"], [8, 16])
    rows = comp.rows()
    assert [(r["system"], r["devices"]) for r in rows] == [("hgx-h20", 8), ("hgx-h20", 16), ("atlas800t-a2", 8),
                                                           ("atlas800t-a2", 16)]
    assert rows[0]["scaling_efficiency"] == 1.0 and rows[2]["scaling_efficiency"] == 1.0
    assert "scaling eff" in comp.table()
    assert comp.as_dict()["rows"][1]["devices"] == 16


# -- the command ----------------------------------------------------------------------------------------

def test_cli_workload(tmp_path, capsys):
    out = tmp_path / "r.json"
    png = tmp_path / "r.png"
    log = tmp_path / "r.log"
    assert main(["workload", "tiny-moe", "--system", "hgx-h20", "--nodes", "2", "-J", str(out), "--plot", str(png),
                 "--nccl-log", str(log), "--phases", "--set", "micro_batches=2"]) == 0
    text = capsys.readouterr().out
    assert "ep alltoallv" in text and "every timed phase" in text
    doc = json.loads(out.read_text())
    assert doc["parallel"]["micro_batches"] == 2 and png.read_bytes()[:4] == b"\x89PNG"
    assert "NCCL INFO AllGather" in log.read_text() or "NCCL INFO Send" in log.read_text()
    assert main(["workload", "tiny-dense", "--compare", "hgx-h20,atlas800t-a2", "--devices", "8", "--markdown"]) == 0
    assert "| system |" in capsys.readouterr().out


@pytest.mark.parametrize("argv, match", [
    (["workload", "tiny-dense"], "give --system"),
    (["workload", "tiny-dense", "--system", "hgx-h20", "--compare", "hgx-h20"], "give --system"),
    (["workload", "nosuch", "--system", "hgx-h20"], "neither a file nor a built-in"),
    (["workload", "tiny-dense", "--system", "hgx-h20", "--set", "tp"], "expected KEY=VALUE"),
    (["workload", "tiny-dense", "--system", "hgx-h20", "--set", "tp=3"], "tp=3 does not divide heads=8"),
    (["workload", "tiny-dense", "--compare", "hgx-h20"], "needs --devices"),
    (["workload", "tiny-dense", "--system", "nosuch"], "nosuch"),
    (["workload", "tiny-dense", "--system", "hgx-h20", "--plot", "x.pdf"], "png"),
])
def test_cli_bad_input_exits_2_with_one_line(argv, match, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and __import__("re").search(match, err)
