"""Counts matrices for ``alltoallv`` from mixture-of-experts routing (the dispatch of a MoE layer).

:func:`topk_counts` routes every token of every device to ``top_k`` distinct experts out of ``experts``
(DeepSeek-V3: 256 routed experts, top-8, hidden size 7168), the experts spread over the P devices in
contiguous blocks, and counts what each device sends each other device: ``hidden`` elements per
(token, expert) pair, as an all-to-all dispatcher that permutes tokens by expert sends them (a token
going to two experts of one device travels twice; ``dedup=True`` sends it once, as DeepEP does). The
combine is the same exchange back: the transposed matrix.

Routing is skewed, as trained routers are: expert ``e``'s popularity is ``1 / rank(e)^skew``, its rank
a seeded permutation of the experts (so the hot ones land on random devices), and each token's
``top_k`` experts are drawn without replacement in proportion to it (Gumbel top-k). ``skew=0`` is
uniform routing (the counts still vary token by token); larger values make a few experts, and the
devices hosting them, receive more. With the default ``skew=0.5``, 8 devices and 4096 tokens each,
the busiest device receives about 1.3 times the mean (``skew=1``: 1.7 times, ``skew=1.5``: 2 times).
The same arguments give the same matrix.

>>> from collectives.moe import topk_counts, uniform_counts
>>> c = topk_counts(8, 4096, 7168, seed=1)
>>> c.P, c.total == 8 * 4096 * 8 * 7168
(8, True)
>>> uniform_counts(2, 3).tolist()
[[3, 3], [3, 3]]
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from .alltoallv import Counts

__all__ = ["topk_counts", "uniform_counts", "expert_devices"]

#: Tokens routed per block of work (bounds the memory of the random keys: block x experts floats).
_BLOCK_TOKENS = 8192


def uniform_counts(P: int, per_pair: int) -> Counts:
    """Every device sends ``per_pair`` elements to every device (itself included): alltoall's pattern."""
    _check_int("P", P, 1)
    _check_int("per_pair", per_pair, 0)
    return Counts(np.full((int(P), int(P)), int(per_pair), np.int64))


def expert_devices(P: int, experts: int = 256) -> np.ndarray:
    """The device hosting each expert: contiguous blocks, ``expert e -> e * P // experts`` (with
    ``experts`` a multiple of P, ``experts / P`` per device; with more devices than experts, some host none)."""
    _check_int("P", P, 1)
    _check_int("experts", experts, 1)
    return (np.arange(int(experts), dtype=np.int64) * int(P)) // int(experts)


def topk_counts(P: int, tokens_per_device, hidden: int, experts: int = 256, top_k: int = 8, skew: float = 0.5,
                seed: int = 0, dedup: bool = False) -> Counts:
    """The dispatch counts of one MoE layer: ``counts[i][j]`` elements device i sends device j.

    Parameters
    ----------
    P : int
        Devices (the expert-parallel group).
    tokens_per_device : int or sequence of P ints
        Tokens each device routes (a sequence for uneven batches).
    hidden : int
        Elements per token (DeepSeek-V3: 7168); the counts are tokens x ``hidden``.
    experts, top_k : int
        Routed experts, spread over the devices by :func:`expert_devices`, and experts per token
        (``1 <= top_k <= experts``).
    skew : float
        Zipf exponent of the experts' popularity (>= 0; 0 is uniform).
    seed : int
        Seed of the popularity ranking and of the routing.
    dedup : bool
        Send a token once per destination device, not once per expert there.
    """
    _check_int("P", P, 1)
    _check_int("hidden", hidden, 0)
    _check_int("experts", experts, 1)
    _check_int("top_k", top_k, 1)
    _check_int("seed", seed, 0)
    P, hidden, experts, top_k = int(P), int(hidden), int(experts), int(top_k)
    if top_k > experts:
        raise ValueError(f"top_k={top_k}; expected at most experts={experts} (distinct experts per token)")
    if isinstance(skew, bool) or not isinstance(skew, numbers.Real) or not math.isfinite(skew) or skew < 0:
        raise ValueError(f"skew={skew!r}; expected a finite number >= 0")
    tokens = _tokens(tokens_per_device, P)
    rng = np.random.default_rng(int(seed))
    rank = rng.permutation(experts) + 1
    log_p = -float(skew) * np.log(rank.astype(np.float64))
    host = expert_devices(P, experts)
    out = np.zeros((P, P), np.int64)
    for i in range(P):
        for lo in range(0, int(tokens[i]), _BLOCK_TOKENS):
            n = min(_BLOCK_TOKENS, int(tokens[i]) - lo)
            keys = log_p[None, :] + rng.gumbel(size=(n, experts))
            chosen = np.argpartition(-keys, top_k - 1, axis=1)[:, :top_k] if top_k < experts \
                else np.broadcast_to(np.arange(experts), (n, experts))
            dest = host[chosen]                                   # (n, top_k) destination devices
            if dedup:
                hit = np.zeros((n, P), bool)
                hit[np.arange(n)[:, None], dest] = True
                out[i] += hit.sum(axis=0)
            else:
                out[i] += np.bincount(dest.ravel(), minlength=P)
    return Counts(out * hidden)


def _tokens(tokens_per_device, P) -> np.ndarray:
    if isinstance(tokens_per_device, (numbers.Integral, np.integer)) and not isinstance(tokens_per_device, bool):
        _check_int("tokens_per_device", tokens_per_device, 0)
        return np.full(P, int(tokens_per_device), np.int64)
    try:
        values = [int(v) if isinstance(v, (numbers.Integral, np.integer)) and not isinstance(v, bool) else None
                  for v in tokens_per_device]
    except TypeError:
        raise TypeError(f"tokens_per_device={tokens_per_device!r}; expected an integer or {P} integers") from None
    if len(values) != P or any(v is None or v < 0 for v in values):
        raise ValueError(f"tokens_per_device={list(tokens_per_device)!r}; expected an integer >= 0 or {P} of them")
    return np.array(values, np.int64)


def _check_int(name, value, low):
    if isinstance(value, bool) or not isinstance(value, (numbers.Integral, np.integer)) or value < low:
        raise ValueError(f"{name}={value!r}; expected an integer >= {low}")
