"""Parameters of the network model, in one place.

Per link kind:

- ``efficiency``: the fraction of a link's line rate that carries data (protocol headers, flow
  control, CRC) in the full-bandwidth regime. A link of ``bw_GBps`` moves data at
  ``bw_GBps * efficiency * PROTOCOL_EFFICIENCY[protocol]``.
- ``msg_us`` / ``ll128_msg_us`` / ``ll_msg_us``: fixed cost of one message that crosses links of
  this kind (software and DMA setup, synchronisation) in each protocol regime, added once per
  transfer on top of the links' ``lat_us``; a path through several kinds pays the largest.

- ``call_us`` / ``ll128_call_us`` / ``ll_call_us``: fixed cost of one collective call (kernel
  launch, bookkeeping) in each regime, paid once; a topology pays the largest among its link kinds
  (it belongs to the vendor's software stack, which the link kinds stand for).

A call runs in one regime; ``simulate(..., protocol="auto")`` picks the fastest, as NCCL's tuner does.

Values below are first estimates from the measured-vs-line-rate figures in
``../shared/reference/hardware.md``; ``generic`` is an ideal link (no overhead) for textbook
topologies and closed-form checks. Override them per topology (``topology.model``) or per call
(``model=`` argument), e.g. ``{"nvlink": {"efficiency": 0.75, "call_us": 5.0}}``.
"""

from __future__ import annotations

import math

# Protocol regimes, after NCCL's (hardware.md: NCCL protocols): LL carries 8 data bytes per 16-byte
# line, LL128 120 of 128; Simple sends the data as is but pays more per message. The factor scales a
# link's ``efficiency``; each regime has its own per-message (``*msg_us``) and per-call costs.
PROTOCOLS = ("simple", "ll128", "ll")
PROTOCOL_EFFICIENCY = {"simple": 1.0, "ll128": 120 / 128, "ll": 8 / 16}
MSG_KEY = {"simple": "msg_us", "ll128": "ll128_msg_us", "ll": "ll_msg_us"}
CALL_KEY = {"simple": "call_us", "ll128": "ll128_call_us", "ll": "ll_call_us"}

# Costs of one message (per transfer) and of one call, per regime, in microseconds.
COST_KEYS = ("msg_us", "ll128_msg_us", "ll_msg_us", "call_us", "ll128_call_us", "ll_call_us")


def _costs(msg, ll128_msg, ll_msg, call, ll128_call, ll_call) -> dict:
    return dict(zip(COST_KEYS, (msg, ll128_msg, ll_msg, call, ll128_call, ll_call)))


# NVLink, fitted by bench/fit_model.py on bench/data/calibration.json (see its docstring): the
# efficiency from the 8x A100 and 8x H100 peak figures (about 80% of line rate, hardware.md
# NVLink), the costs on the A100 allreduce curve and the DGX-A100 ring latency table. Simple's
# 17.6 us per message is an effective cost: it carries NCCL's slow climb to full bandwidth between
# 4 and 256 MiB (fewer channels and pipeline fill on mid-size messages), which the flow model does
# not otherwise see.
NVLINK = {"efficiency": 0.7937, "msg_us": 17.6, "ll128_msg_us": 12.87, "ll_msg_us": 1.604,
          "call_us": 4.479e-05, "ll128_call_us": 0.004113, "ll_call_us": 5.021}
_NVLINK_COSTS = {k: NVLINK[k] for k in COST_KEYS}
# HCCL synchronises through notify records rather than NCCL's flags in the data path: estimate
# twice NVLink's costs (no published HCCS latency curve to fit on).
_HCCL_COSTS = {k: 2 * v for k, v in _NVLINK_COSTS.items()}
# hardware.md: NCCL's network per-hop latencies LL / LL128 / Simple 2.7 / 4.0 / 14 us; the call
# costs are NVLink's (the same launch path).
_NET_COSTS = _costs(14.0, 4.0, 2.7, NVLINK["call_us"], NVLINK["ll128_call_us"], NVLINK["ll_call_us"])

# Per link kind. ``efficiency`` is Simple's fraction of line rate; msg costs are per transfer, call
# costs per collective call (a topology pays the largest of its link kinds').
LINK_DEFAULTS = {
    # Ideal link: closed forms and user-built textbook topologies (no overhead in any regime).
    "generic": {"efficiency": 1.0, **_costs(0.0, 0.0, 0.0, 0.0, 0.0, 0.0)},
    "nvlink": dict(NVLINK),
    # hardware.md MI300X: 48 GB/s usable of 64 GB/s rated per xGMI link, 0.75. Costs: estimates,
    # NVLink's (RCCL is NCCL's port, with the same protocols).
    "xgmi": {"efficiency": 0.75, **_NVLINK_COSTS},
    # hardware.md Ascend 910B: 19-26 GB/s measured on a 28 GB/s link; 0.8 is an estimate at the top
    # of that range. Costs: HCCL's estimate above.
    "hccs": {"efficiency": 0.8, **_HCCL_COSTS},
    # hardware.md CloudMatrix 384: 150-210 GB/s measured per die pair on 196 GB/s-class UB links;
    # estimate 0.85. Costs: HCCL's estimate above.
    "ub": {"efficiency": 0.85, **_HCCL_COSTS},
    # hardware.md IB NDR: 46-49 GB/s of 50 raw per NIC, about 0.94.
    "ib": {"efficiency": 0.94, **_NET_COSTS},
    # hardware.md Ascend RoCE: 22.5 GB/s measured of 25 GB/s (200 GbE), 0.9.
    "roce": {"efficiency": 0.9, **_NET_COSTS},
    # Estimate: PCIe Gen4/5 x16 DMA reaches about 80% of line rate (NCCL models Gen4 x16 at 24 of 32
    # GB/s); costs as NVLink's.
    "pcie": {"efficiency": 0.8, **_NVLINK_COSTS},
}
LINK_PARAMS = ("efficiency",) + COST_KEYS


def resolve(topology_model: dict | None = None, call_model: dict | None = None) -> dict:
    """Merge defaults, the topology's overrides and the call's overrides into one parameter dict.

    >>> p = resolve({"nvlink": {"efficiency": 0.5}}, {"nvlink": {"call_us": 3.0}})
    >>> p["nvlink"]["efficiency"], p["generic"]["msg_us"], p["nvlink"]["call_us"]
    (0.5, 0.0, 3.0)
    """
    params = {k: dict(v) for k, v in LINK_DEFAULTS.items()}
    for layer in (topology_model or {}), (call_model or {}):
        if not isinstance(layer, dict):
            raise TypeError(f"model overrides must be a dict, got {type(layer).__name__}")
        for key, value in layer.items():
            if key in LINK_PARAMS:
                raise ValueError(f"model parameter {key!r} needs a link kind, e.g. {{'nvlink': {{{key!r}: ...}}}}")
            if not isinstance(value, dict):
                raise ValueError(f"model override for link kind {key!r} must be a dict of "
                                 f"{', '.join(LINK_PARAMS)}; got {value!r}")
            entry = params.setdefault(key, dict(LINK_DEFAULTS["generic"]))
            for pk, pv in value.items():
                if pk not in LINK_PARAMS and pk != "jitter":
                    raise ValueError(f"unknown model parameter {pk!r} for link kind {key!r}; "
                                     f"expected one of {', '.join(LINK_PARAMS)}")
                entry[pk] = pv if pk == "jitter" else _check(pk, pv, f"{key}.{pk}")
    return params


def link_param(params: dict, kind: str, name: str) -> float:
    """A link kind's parameter; kinds without an entry behave as ``generic``."""
    return params.get(kind, params["generic"])[name]


def _check(name, value, label):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"model parameter {label}={value!r}; expected a finite number")
    if name == "efficiency" and not 0 < value <= 1:
        raise ValueError(f"model parameter {label}={value!r}; expected 0 < efficiency <= 1")
    if name != "efficiency" and value < 0:
        raise ValueError(f"model parameter {label}={value!r}; expected a number >= 0")
    return float(value)
