"""Steps whose chunks differ by an element are timed a block at a time (``StepShape``): the same
figures as timing them step by step, to the bit for the times."""

import numpy as np
import pytest

import collectives
import collectives.timing as timing
from topologies import preset
from topologies.network import _distinct_rows


def _step_by_step(monkeypatch):
    plain = timing._timing
    monkeypatch.setattr(timing, "_timing", lambda s, i, p=True, blocks=False: plain(s, i, p, False))


@pytest.mark.parametrize("system, kw", [("dgx-h100", {"nodes": 2}), ("hgx-h20", {"nodes": 2}),
                                        ("atlas800t-a2", {}), ("mi300x-8", {})])
@pytest.mark.parametrize("collective", ["allreduce", "allgather", "reduce_scatter"])
def test_blocks_equal_step_by_step(system, kw, collective, monkeypatch):
    topo = preset(system, **kw)
    blocks = []
    real = timing._time_block
    monkeypatch.setattr(timing, "_time_block", lambda *a, **k: blocks.append(1) or real(*a, **k))
    for nbytes in (4 * 1001, (1 << 20) + 12, 8):   # counts that do not divide by P x channels
        for algorithm in ("ring", "auto"):
            got = collectives.simulate(collective, nbytes, topo, algorithm=algorithm)
            with monkeypatch.context() as m:
                _step_by_step(m)
                want = collectives.simulate(collective, nbytes, topo, algorithm=algorithm)
            assert got.time_s == want.time_s
            assert got.steps == want.steps
            np.testing.assert_allclose(got.link_bytes, want.link_bytes, rtol=1e-12, atol=1e-9)
    assert blocks, "no phase was timed by blocks"


def test_distinct_rows_as_unique():
    rng = np.random.default_rng(1)
    base = rng.integers(0, 3, (7, 5)).astype(np.float64) / 3
    u = base[rng.integers(0, 7, 200)]
    distinct, which = _distinct_rows(u)
    assert np.array_equal(distinct[which], u)
    assert len(distinct) == len(np.unique(u, axis=0))
