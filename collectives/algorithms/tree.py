"""Tree algorithms: NCCL's double binary tree allreduce, binomial broadcast and reduce.

Allreduce ``tree`` (NCCL Tree). Two binary trees over the P devices, built as NCCL's
``ncclGetBtree`` / ``ncclGetDtree`` do: tree 1 is the in-order binary tree on ranks 0..P-1 rooted at
0 (its leaves are the odd ranks); tree 2 is its mirror ``r -> P-1-r`` for even P or its shift
``r -> r+1`` for odd P, so that (for even P) every device is a leaf in one tree and an inner node in
the other. Each tree carries half of the data, cut into ``chunks`` pieces that are pipelined: first
reduced up (a device at depth ``d`` sends chunk ``j`` to its parent in step ``j + D - d``, the
parent reducing what its one or two children send), then broadcast down (depth ``d`` receives chunk
``j`` in step ``j + d - 1``). NCCL overlaps the two directions; a synchronous step is either a
reduction or a copy, so here the broadcast pipeline follows the reduce pipeline:
``2 (D + C - 1)`` steps for depth ``D`` (about log2 P) and ``C`` chunks. A device sends about ``n``
in each pipeline (one chunk up per tree, two down in the tree where it is inner), which keeps its
link as busy as the overlapped version would: ``2 n`` per device, against the ring's
``2 (P-1)/P n``. The tree's gain is latency (log P steps instead of P), not bandwidth.
``channels`` pairs of trees run at once, pair ``c`` on ranks relabelled ``r -> r * s_c mod P``
(strides coprime with P) so that on a full mesh they use different links.

Broadcast / reduce ``binomial``: relative rank ``v = (d - root) mod P``; broadcast step k: ranks
``v < 2^k`` send the whole buffer to ``v + 2^k``; reduce step k: ranks with ``v mod 2^(k+1) == 2^k``
send to ``v - 2^k``, which reduces. ceil(log2 P) steps of the whole message.
"""

from __future__ import annotations

import numpy as np

from ..registry import algorithm, resolve_params
from ..schedule import Phase, Schedule, fixed, split
from .pipeline import DATA_PLANE_CHUNKS, ceil_log2, check_count_param, coprime_strides, pipeline_phases, tree_pipeline


def btree_parents(P: int) -> np.ndarray:
    """Parent of every rank in NCCL's binary tree on ranks 0..P-1 (root 0, parent -1).

    >>> btree_parents(6).tolist()
    [-1, 2, 4, 2, 0, 4]
    """
    parent = np.full(P, -1, dtype=np.int64)
    for r in range(1, P):
        bit = r & -r                       # lowest set bit
        up = (r ^ bit) | (bit << 1)
        if up >= P:
            up = r ^ bit
        parent[r] = up
    return parent


def double_tree(P: int) -> tuple[np.ndarray, np.ndarray]:
    """Parents of NCCL's two complementary trees (tree 2 mirrored for even P, shifted for odd P)."""
    p1 = btree_parents(P)
    label = (P - 1 - np.arange(P)) if P % 2 == 0 else (np.arange(P) + 1) % P
    p2 = np.full(P, -1, dtype=np.int64)
    has = p1 >= 0
    p2[label[has]] = label[p1[has]]
    return p1, p2


def depths(parent: np.ndarray) -> np.ndarray:
    d = np.zeros(len(parent), dtype=np.int64)
    for r in range(len(parent)):
        x, n = r, 0
        while parent[x] >= 0:
            x, n = parent[x], n + 1
        d[r] = n
    return d


@algorithm("allreduce", "tree", params={"channels": 1, "chunks": DATA_PLANE_CHUNKS}, channels="strides", pipeline=tree_pipeline, large_scale=True)
def tree_allreduce(spec, P, count, root=0, topology=None, **params):
    p = resolve_params(spec.name, "tree", params)
    channels, chunks = check_count_param("channels", p["channels"]), check_count_param("chunks", p["chunks"])
    trees = 2 * channels
    off, ln = split(count, trees * chunks)    # chunk (tree t, piece j) = t * chunks + j
    phases = []
    if P > 1:
        p1, p2 = double_tree(P)
        strides = coprime_strides(P)
        child, parent, depth, base = [], [], [], []
        for c in range(channels):
            s = strides[c % len(strides)]
            relabel = (np.arange(P, dtype=np.int64) * s) % P
            for t, par in enumerate((p1, p2)):
                kids = np.flatnonzero(par >= 0)
                child.append(relabel[kids])
                parent.append(relabel[par[kids]])
                depth.append(depths(par)[kids])
                base.append(np.full(len(kids), (2 * c + t) * chunks, dtype=np.int64))
        child, parent, depth, base = (np.concatenate(a) for a in (child, parent, depth, base))
        D = int(depth.max())

        def chunk_of(i, j):
            cc = base[i] + j
            return cc, cc

        phases = (pipeline_phases("tree-reduce", child, parent, D - depth, chunks, chunk_of, reduce=True)
                  + pipeline_phases("tree-broadcast", parent, child, depth - 1, chunks, chunk_of, reduce=False))
    return Schedule(spec.name, "tree", P, count, count, off, ln, phases, root,
                    info={"channels": channels, "chunks": chunks})


def _binomial(spec, P, count, root, topology, params, reduce):
    resolve_params(spec.name, "binomial", params)
    off, ln = np.array([0], dtype=np.int64), np.array([count], dtype=np.int64)
    v = np.arange(P, dtype=np.int64)
    dev = (v + root) % P          # relative rank -> device
    phases = []
    for k in range(ceil_log2(P)):
        step = 1 << k
        if reduce:
            senders = v[(v % (2 * step)) == step]
            src, dst = dev[senders], dev[senders - step]
        else:
            senders = v[(v < step) & (v + step < P)]
            src, dst = dev[senders], dev[senders + step]
        zero = np.zeros(len(src), dtype=np.int64)
        phases.append(Phase(f"binomial{k}", src, dst, fixed(zero), reduce=reduce))
    return Schedule(spec.name, "binomial", P, count, count, off, ln, phases, root)


@algorithm("broadcast", "binomial", large_scale=True)
def binomial_broadcast(spec, P, count, root=0, topology=None, **params):
    return _binomial(spec, P, count, root, topology, params, reduce=False)


@algorithm("reduce", "binomial", large_scale=True)
def binomial_reduce(spec, P, count, root=0, topology=None, **params):
    return _binomial(spec, P, count, root, topology, params, reduce=True)
