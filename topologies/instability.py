"""Instability: bandwidth jitter, stragglers, retransmit stalls and slow devices, seeded and reproducible.

The network model gives each step of a schedule its undisturbed time. Under an instability profile
every step of every sampled iteration is disturbed on top of that:

- **bandwidth jitter** (per link kind): a flow's data time is stretched by ``exp(bw_sigma * E)``,
  ``E`` exponential with mean 1, drawn per flow; a step waits for its slowest flow.
- **retransmit stalls** (per link kind): each message stalls with probability ``stall_prob`` for
  ``stall_s`` seconds (RDMA's retransmit timeout; HCCL's default is 4.096 us x 2^20, about 4.3 s,
  docs/hardware.md#hccl: HCCL defaults).
- **stragglers** (per device): in each step a device is late with probability ``straggler_prob`` by
  a Pareto-distributed delay (scale ``straggler_us``, tail index ``straggler_alpha``), the "fast/slow
  card" waits HCCL users see counted inside a collective.
- **slow devices**: per call, each device is slow with probability ``slow_prob``; a step in which a
  slow device takes part moves its data at ``slow_factor`` of the speed.

A step's flows are grouped by the link kind with the largest ``bw_sigma`` on their path; the largest
data time of each group is stretched by the largest of its flows' draws (drawn directly as an order
statistic, so a 16384-device step costs one draw, not 16384). That is exact for the symmetric steps
of ring, mesh and pairwise algorithms and an upper bound otherwise.

Profiles name parameter sets; per-link-kind values in ``topology.model[kind]["jitter"]`` (see
:func:`topologies.whatif.set_jitter`) override a profile's.
"""

from __future__ import annotations

import math

import numpy as np

# Per link kind (applied to every kind unless the topology overrides it) and per device.
PROFILES = {
    "stable": {},
    "noisy": {"bw_sigma": 0.05, "straggler_prob": 0.02, "straggler_us": 5.0, "straggler_alpha": 2.5},
    "lossy": {"bw_sigma": 0.05, "straggler_prob": 0.02, "straggler_us": 5.0, "straggler_alpha": 2.5,
              "stall_prob": 1e-4, "stall_s": 4.096e-6 * 2**20},
}
LINK_KEYS = ("bw_sigma", "stall_prob", "stall_s")
DEFAULTS = {"bw_sigma": 0.0, "stall_prob": 0.0, "stall_s": 0.0, "straggler_prob": 0.0, "straggler_us": 0.0,
            "straggler_alpha": 2.0, "slow_prob": 0.0, "slow_factor": 1.0}


def profile(spec) -> dict:
    """Parameters of a profile name, or a dict of parameters checked and completed with defaults.

    >>> profile("noisy")["bw_sigma"]
    0.05
    >>> profile({"stall_prob": 0.5})["stall_prob"]
    0.5
    """
    if isinstance(spec, str):
        if spec not in PROFILES:
            raise ValueError(f"unknown jitter profile {spec!r}; expected one of {', '.join(PROFILES)}")
        spec = PROFILES[spec]
    if not isinstance(spec, dict):
        raise TypeError(f"jitter must be a profile name or a dict, got {type(spec).__name__}")
    out = dict(DEFAULTS)
    for k, v in spec.items():
        if k not in DEFAULTS:
            raise ValueError(f"unknown jitter parameter {k!r}; expected one of {', '.join(DEFAULTS)}")
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
            raise ValueError(f"jitter parameter {k}={v!r}; expected a finite number >= 0")
        if k.endswith("_prob") and v > 1:
            raise ValueError(f"jitter parameter {k}={v!r}; expected a probability 0..1")
        if k == "slow_factor" and not 0 < v <= 1:
            raise ValueError(f"jitter parameter slow_factor={v!r}; expected 0 < slow_factor <= 1")
        if k == "straggler_alpha" and v <= 0:
            raise ValueError(f"jitter parameter straggler_alpha={v!r}; expected > 0")
        out[k] = float(v)
    return out


def is_quiet(params: dict, kind_params: dict) -> bool:
    """True when nothing would disturb a step (then results equal the undisturbed model exactly)."""
    link_quiet = all(p["bw_sigma"] == 0 and p["stall_prob"] == 0 for p in kind_params.values())
    return link_quiet and params["straggler_prob"] == 0 and params["slow_prob"] == 0


def kind_params(params: dict, link_kinds, topo_model: dict) -> dict:
    """Per link kind: the profile's link parameters overridden by ``topology.model[kind]["jitter"]``."""
    out = {}
    for k in link_kinds:
        entry = {key: params[key] for key in LINK_KEYS}
        override = (topo_model.get(k) or {}).get("jitter") or {}
        checked = profile({key: v for key, v in override.items() if key in LINK_KEYS})
        entry.update({key: checked[key] for key in override if key in LINK_KEYS})
        out[k] = entry
    return out


def max_exponential(rng, n, size):
    """Largest of ``n`` iid Exp(1) draws, ``size`` times (inverse CDF of the maximum)."""
    u = rng.random(size)
    return -np.log1p(-u ** (1.0 / n))


def step_times(rng, iters, repeat, groups, n_devices, params):
    """Disturbed times (iters x repeat) of one step shape.

    ``groups``: list of ``(n_flows, lat_s, data_s, bw_sigma, stall_prob, stall_s)``, one per link
    kind group, with the group's largest latency and data time. ``n_devices``: devices taking part.
    """
    shape = (iters, repeat)
    t = np.zeros(shape)
    for n, lat, data, sigma, p_stall, stall_s in groups:
        stretch = np.exp(sigma * max_exponential(rng, n, shape)) if sigma > 0 else 1.0
        g = lat + data * stretch
        if p_stall > 0:
            any_stall = rng.random(shape) < 1.0 - (1.0 - p_stall) ** n
            g = g + any_stall * stall_s
        t = np.maximum(t, g)
    q = params["straggler_prob"]
    if q > 0 and params["straggler_us"] > 0 and n_devices > 0:
        late = rng.binomial(n_devices, q, shape)
        u = rng.random(shape)
        with np.errstate(divide="ignore"):
            worst = params["straggler_us"] * 1e-6 * (1 - u ** (1.0 / np.maximum(late, 1))) ** (-1.0 / params["straggler_alpha"])
        t = t + np.where(late > 0, worst, 0.0)
    return t


def sample_totals(topo, shapes, call_s, total_s, jitter, seed=0, iters=20) -> np.ndarray:
    """Total times of ``iters`` disturbed calls of a timed schedule.

    ``shapes``: per timed step ``(repeat, StepDetail or None, reduce_s, devices taking part)`` as
    ``collectives.simulate`` collects them; ``call_s``: the per-call cost; ``total_s``: the
    undisturbed time (returned as is when nothing disturbs). Same seed, same times.
    """
    if isinstance(iters, bool) or not isinstance(iters, (int, np.integer)) or iters < 1:
        raise ValueError(f"iters={iters!r}; expected an integer >= 1")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed={seed!r}; expected an integer >= 0")
    params = profile(jitter)
    a = topo.arrays
    per_kind = kind_params(params, a.link_kinds, topo.model)
    if is_quiet(params, per_kind):
        return np.full(iters, total_s)
    rng = np.random.default_rng(seed)
    sigma_of_kind = np.array([per_kind[k]["bw_sigma"] for k in a.link_kinds])
    slow = np.zeros(iters, bool)
    if params["slow_prob"] > 0:
        slow = rng.random(iters) < 1.0 - (1.0 - params["slow_prob"]) ** topo.num_devices
    stretch_slow = np.where(slow, 1.0 / params["slow_factor"], 1.0)[:, None]
    total = np.full(iters, call_s)
    for repeat, detail, red, n_dev in shapes:
        if detail is None:
            total += repeat * red
            continue
        groups = _groups(detail, sigma_of_kind, a.link_kinds, per_kind)
        t = step_times(rng, iters, repeat, groups, n_dev, params)
        if slow.any():
            base = max(lat + data for _, lat, data, *_ in groups)
            t = t + (stretch_slow - 1.0) * base
        total += np.maximum(t, red).sum(axis=1)
    return total


def _groups(detail, sigma_of_kind, kinds, per_kind):
    """Flows grouped by the link kind with the largest jitter on their path."""
    # Rank kinds by sigma (ties: lower index); each flow takes the highest-ranked kind on its path.
    rank = np.lexsort((-np.arange(len(kinds)), sigma_of_kind))
    kind_of_flow = np.full(len(detail.nbytes), -1)
    for ki in rank:
        on_path = (detail.kind_mask >> ki) & 1 == 1
        kind_of_flow[on_path] = ki
    out = []
    for ki in np.unique(kind_of_flow[kind_of_flow >= 0]):
        sel = kind_of_flow == ki
        p = per_kind[kinds[ki]]
        out.append((int(sel.sum()), float(detail.lat_s[sel].max()), float(detail.data_s[sel].max()),
                    p["bw_sigma"], p["stall_prob"], p["stall_s"]))
    return out
