"""The instability model: seeded, reproducible disturbances of the emulated time."""

import math

import numpy as np
import pytest

import collectives
from topologies import preset, switch
from topologies.instability import PROFILES, profile
from topologies.whatif import set_jitter


@pytest.fixture(scope="module")
def h20():
    return preset("hgx-h20")


def test_same_seed_same_times_and_stable_is_exact(h20):
    a = collectives.simulate("allreduce", 16 << 20, h20, jitter="noisy", seed=7, iters=50)
    b = collectives.simulate("allreduce", 16 << 20, h20, jitter="noisy", seed=7, iters=50)
    c = collectives.simulate("allreduce", 16 << 20, h20, jitter="noisy", seed=8, iters=50)
    assert np.array_equal(a.time_samples_s, b.time_samples_s) and not np.array_equal(a.time_samples_s, c.time_samples_s)
    plain = collectives.simulate("allreduce", 16 << 20, h20)
    stable = collectives.simulate("allreduce", 16 << 20, h20, jitter="stable", seed=3, iters=10)
    assert stable.time_s == plain.time_s and set(stable.time_samples_s.tolist()) == {plain.time_s}
    # Disturbances only ever slow a call down.
    assert a.time_stats()["min"] >= plain.time_s


def test_lossy_stalls_show_at_the_configured_rate():
    # 4 devices on a switch, direct allreduce: 2 steps of 12 messages, so a call stalls with
    # probability 1 - (1 - p)^24. With p = 2e-3 that is 4.7%: the p99 is a stall, the median not.
    t = switch(4, bw_GBps=100.0, lat_us=1.0)
    p, stall = 2e-3, 0.5
    n = 4000
    r = collectives.simulate("allreduce", 1 << 20, t, algorithm="direct", jitter={"stall_prob": p, "stall_s": stall},
                             seed=11, iters=n)
    base = collectives.simulate("allreduce", 1 << 20, t, algorithm="direct").time_s
    stalled = np.mean(r.time_samples_s > base + stall / 2)
    expect = 1 - (1 - p) ** 24
    assert abs(stalled - expect) < 4 * math.sqrt(expect * (1 - expect) / n)
    stats = r.time_stats()
    assert stats["median"] == base and stats["p99"] >= base + stall


def test_stragglers_and_bandwidth_jitter_slow_the_median(h20):
    plain = collectives.simulate("allgather", 64 << 20, h20, algorithm="ring").time_s
    bw = collectives.simulate("allgather", 64 << 20, h20, algorithm="ring", jitter={"bw_sigma": 0.1}, iters=200).time_s
    late = collectives.simulate("allgather", 64 << 20, h20, algorithm="ring", jitter={"straggler_prob": 0.5, "straggler_us": 10.0},
                                iters=200).time_s
    assert bw > plain * 1.05 and late > plain + 7 * 5e-6
    slow = collectives.simulate("allgather", 64 << 20, h20, algorithm="ring", jitter={"slow_prob": 1.0, "slow_factor": 0.5}, iters=5)
    assert slow.time_s == pytest.approx(2 * plain, rel=0.05)


def test_per_link_kind_override_beats_the_profile():
    a2 = preset("atlas800t-a2")
    calm = collectives.simulate("allreduce", 64 << 20, a2, jitter={"bw_sigma": 0.0}, iters=50).time_s
    shaky = set_jitter(a2, "hccs", bw_sigma=0.3)
    assert collectives.simulate("allreduce", 64 << 20, shaky, jitter={"bw_sigma": 0.0}, iters=50).time_s > calm * 1.2


def test_profiles_and_bad_parameters():
    assert set(PROFILES) >= {"stable", "noisy", "lossy"}
    assert profile("lossy")["stall_s"] == pytest.approx(4.294967296)
    for bad, match in [("wobbly", "unknown jitter profile 'wobbly'"), ({"bw_sigma": -1}, "bw_sigma=-1"),
                       ({"stall_prob": 1.5}, "probability"), ({"sigma": 1}, "unknown jitter parameter 'sigma'"),
                       ({"slow_factor": 0}, "slow_factor=0")]:
        with pytest.raises(ValueError, match=match):
            profile(bad)
    with pytest.raises(ValueError, match="iters=0"):
        collectives.simulate("allreduce", 1024, switch(2), jitter="noisy", iters=0)


def test_link_failing_mid_run_reroutes_and_costs_time():
    from topologies.whatif import fail_link, fail_node

    t = preset("dgx-h100")
    after = fail_link(t, "n0.gpu0", "n0.nvs0")  # GPU 0 loses 5 of its 18 NVLinks
    kw = dict(algorithm="ring", channels=1, protocol="simple")
    healthy = collectives.simulate("allreduce", 1 << 30, t, **kw)
    broken = collectives.simulate("allreduce", 1 << 30, t, failure=(0, after), **kw)
    mid = collectives.simulate("allreduce", 1 << 30, t, failure=(7, after), **kw)
    # The first 7 steps (reduce-scatter) run healthy, the last 7 (allgather) on 13 links.
    assert healthy.time_s < mid.time_s < broken.time_s
    step_ok, step_bad = healthy.steps[0]["step_s"], broken.steps[0]["step_s"]
    assert mid.time_s == pytest.approx(healthy.time_s + 7 * (step_bad - step_ok), rel=1e-12)
    assert step_bad == pytest.approx(step_ok * 18 / 13, rel=0.02)  # bandwidth-bound: 18/13 slower
    assert collectives.simulate("allreduce", 1 << 30, t, failure=(99, after), **kw).time_s == healthy.time_s
    # No path left: the what-if says which devices are cut off.
    with pytest.raises(ValueError, match=r"cuts off device pairs \(0, 1\)"):
        fail_node(switch(4), "sw0")
    with pytest.raises(ValueError, match="failure step -1"):
        collectives.simulate("allreduce", 1 << 20, t, failure=(-1, after))
    with pytest.raises(ValueError, match="8 devices"):
        collectives.simulate("allreduce", 1 << 20, switch(4), failure=(1, t))
