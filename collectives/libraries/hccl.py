"""HCCL's algorithm selection (libraries.md §3): level 0 by topology type, level 1 by its own rules.

What is modelled, by libraries.md section:

- 3.1 the algorithms and their documented alpha-beta costs; the intra-server algorithm follows the
  topology type and cannot be configured (910B NP_MESH -> Mesh, A3 NP_DOUBLE_RING -> Ring (a double
  ring), 910A 8P_RING -> Ring; rooted ops inside a mesh -> Star).
- 3.2 the composition across servers (AllReduce = intra RS -> inter AR -> intra AG, AllGather = intra
  AG -> inter AG, ReduceScatter = inter RS -> intra RS, Broadcast = intra Scatter -> inter Bcast ->
  intra AG, Reduce = intra RS -> inter Reduce -> intra Gather, AlltoAll = Pairwise).
- 3.3 HCCL_ALGO (level0 only NA; level1 ring, H-D_R, NHR, NHR_V1, NB, pipeline, pairwise (AlltoAll);
  level2; per-op ``op=...`` lists separated by ``/``; setting it disables the automatic choice; A3 maps
  H-D_R to NHR); the level-1 automatic choice on 910B / A3 (Pipeline first when level 0 is a mesh and
  the per-slice size reaches its threshold; else alpha-beta with delta = 60 us, B = the level-1
  bandwidth per NPU (25.0 x 0.8 GB/s), S = min(size, CCL buffer), NHR only if strictly cheaper than
  Ring, H-D_R only if cheaper than both); 910A's default (Ring unless the server count is a power of
  2, then H-D_R); the bandwidth constants; the 910B AllReduce executors by size (SelectAlgfor910B)
  and the A3 ones (SelectAlgfor91093, including flat NHR for small sizes); level 2 by its default rule.
- 3.4 HCCL_BUFFSIZE (MB, default 200): AllReduce / AllGather / ReduceScatter run in pieces of at most
  the CCL buffer, each a full algorithm run (``Choice.pieces``; the predicted time adds them up).

``predicted_us`` is HCCL's alpha-beta cost with HCCL's constants: the level-1 terms exactly as 3.3
gives them, and for the level-0 parts the 3.1 costs with HCCL's level-0 bandwidth (18.3 GB/s per HCCS
link on 910B / 910_93, 10.0 on 910A) and, as alpha, the same delta = 60 us (libraries.md gives no
intra-server alpha; reduction time gamma is left out, as the 3.3 selection leaves it out). On one
server HCCL has no cost-based choice: the pick is the topology's algorithm, and the candidates' times
only show what the 3.1 costs would give.

Note on the 3.3 "Derived" line ("NHR for m >= 3 at any size"): with m = 3 servers Ring's 2(m-1) = 4
and NHR's 2 ceil(log2 3) = 4 latency terms are equal and the beta terms are the same, so the strict
"NHR only if < Ring" rule keeps Ring; this module follows the [S] rule: Ring for m = 2 and 3, NHR from
m = 4 (below the Pipeline threshold).

Left out: AIV / AI_CPU / CCU expansion modes (the A2 default is HOST, 3.4), HCCL_DETERMINISTIC (off by
default), AHC (its documented cost is ambiguous, 3.1: HCCL_ALGO level1:AHC raises), NHR-HCF and
Grouped Full-Mesh (A3 special cases), unequal servers (ARS), the 16P-box PCIe rule, the FFTS context
estimate (taken as within 65,535), hccl_test's output (3.5). Assumptions (in the device table): RDMA
lite is taken as unsupported on every chip (so the 2 MiB "without RDMA-lite" Pipeline thresholds
apply); 910B reduces inline (SDMA + RDMA), 910A does not.

Mapping to ccemu (``Choice.ccemu_*``):

===============================  ======================================================  ==============
HCCL                             ccemu                                                   exact?
===============================  ======================================================  ==============
Mesh (one server)                ``direct``                                              exact
Ring (910A 8P_RING)              ``ring``, 1 channel                                     exact
Ring (A3 double ring)            ``ring``, 2 channels                                    approximate
Star (rooted ops in a mesh)      ``binomial``                                            approximate
Pairwise (AlltoAll)              ``pairwise``                                            approximate
                                                                                         across servers
level0 + level1 (AllReduce)      ``hierarchical``, intra ``direct`` (Mesh) / ``ring``,   exact for Ring
                                 inter: Ring ``ring``, H-D_R ``halving_doubling``,       and H-D_R
                                 NHR / NB / NHR_V1 ``halving_doubling``, Pipeline
                                 ``ring`` (no overlap of the two levels)
level0 + level1 (AG / RS)        ``hierarchical``, inter Ring ``ring``, H-D_R            approximate
                                 ``halving_doubling``, NHR / NB ``bruck``                (ccemu orders
                                                                                         the levels the
                                                                                         other way)
flat NHR (A3 small sizes)        ``halving_doubling`` (AR), ``bruck`` (AG / RS)          approximate
Broadcast / Reduce across        ``ring``                                                approximate
servers
Scatter (HcclScatter): Mesh      ``direct``                                              exact on one
(one server), Ring inside /                                                              mesh server
level 1 Ring across servers
Gather, SendRecv, HyperCube      ``direct`` (``recursive_doubling`` for HyperCube)       approximate
(HcclSend / HcclRecv,
HcclBatchSendRecv: no tuner)
===============================  ======================================================  ==============
"""

from __future__ import annotations

import math

from . import MODELLED_COLLECTIVES, Candidate, Choice, check_call, check_env, check_version, system, tuned_as

NAME = "hccl"
# libraries.md header: hicann/hccl commit 09300b70 (docs) and hicann/hcomm (search index); no release number.
VERSIONS = ("09300b70",)
DEFAULT_VERSION = "09300b70"

# libraries.md 3.1 (table) and 3.3 (HCCL_ALGO names).
ALGORITHMS = ("Mesh", "Ring", "H-D_R", "NHR", "NHR_V1", "NB", "Pipeline", "Pairwise", "Star")
PROTOCOLS = ("Simple",)
LEVEL1 = ("Ring", "NHR", "H-D_R", "NB", "NHR_V1", "Pipeline", "Pairwise")

# libraries.md 3.1: topology types (alg_param.h) and the intra-server algorithm each fixes.
TOPO_LEVEL0 = {"8P_RING": "Ring", "4P_MESH": "Mesh", "NP_MESH": "Mesh", "NP_DOUBLE_RING": "Ring",
               "NP_SINGLE_RING": "Ring"}
MESH_TYPES = ("4P_MESH", "NP_MESH")

# libraries.md 3.3: delta = 60 us static latency of the level-1 choice.
DELTA_US = 60.0
# libraries.md 3.3 Pipeline thresholds: AllReduce size/(m d) >= 1 MiB (2 MiB without RDMA-lite); AG / RS >= 32 KiB
# (2 MiB without RDMA-lite).
PIPELINE_AR_MIN = {True: 1 << 20, False: 2 << 20}
PIPELINE_AG_RS_MIN = {True: 32 << 10, False: 2 << 20}
# libraries.md 3.3 SelectAlgfor910B: single server op-base <= 256 KB -> MeshSmallCount; multi-server < 512 KB.
AR_910B_SMALL = 256 << 10
AR_910B_MULTI_SMALL = 512 << 10
# libraries.md 3.3 SelectAlgfor91093: one server > 2 devices and <= 512 KB x ranks -> MeshSmallCount; one superpod
# <= 1 MB x d -> flat NHR; several superpods 64-256 KB -> MidCount, <= 16 KB x d -> flat NHR.
A3_MESH_SMALL_PER_RANK = 512 << 10
A3_FLAT_NHR_PER_DEVICE = 1 << 20
A3_MIDCOUNT = (64 << 10, 256 << 10)
A3_MULTIPOD_FLAT_NHR_PER_DEVICE = 16 << 10
# libraries.md 3.3: level 2 is ring if < 8 superpods and not a power of 2, else H-D_R.
LEVEL2_RING_BELOW = 8
# libraries.md 3.4: HCCL_BUFFSIZE in MB, default 200.
BUFFSIZE_MB_DEFAULT = 200
MB = 1 << 20
# libraries.md 3.1: HCCL_ALGO per-op names.
OPS = {"allgather": "allgather", "reducescatter": "reduce_scatter", "allreduce": "allreduce",
       "broadcast": "broadcast", "reduce": "reduce", "scatter": "scatter", "alltoall": "alltoall"}
LEVEL1_ENV = {"ring": "Ring", "h-d_r": "H-D_R", "nhr": "NHR", "nhr_v1": "NHR_V1", "nb": "NB", "ahc": "AHC",
              "pipeline": "Pipeline", "pairwise": "Pairwise"}
LEVEL2_ENV = {"ring": "Ring", "h-d_r": "H-D_R", "nhr": "NHR", "nb": "NB", "pipeline": "Pipeline"}

#: nccl-tests' collectives HCCL has no collective call for (none of hccl_test's eight binaries, libraries.md
#: 3.5): read as HcclSend / HcclRecv pairs (HcclBatchSendRecv), with no algorithm choice and no cost model:
#: ``{collective: (ccemu algorithm, what HCCL runs, how ccemu's schedule stands for it)}``.
P2P = {
    "gather": ("direct", "no HcclGather: HcclSend to the root and the root's HcclRecv from every rank "
                         "(HcclBatchSendRecv)", "every block to the root at once"),
    "sendrecv": ("direct", "HcclSend to rank+1 and HcclRecv from rank-1 in one HcclBatchSendRecv",
                 "every device to the next at once"),
    "hypercube": ("recursive_doubling", "one HcclBatchSendRecv with rank ^ mask per dimension (nccl-tests' "
                                        "hypercube_perf)", "log2(P) exchange steps"),
}

# Per chip (device model): libraries.md 3.1 topology type, 3.3 bandwidth constants (device_capacity.cc: level 0 HCCS
# 910A 10.0, 910B / 910_93 18.3; level 1 RDMA 910A 12.5 x 0.8, 910B / 910_93 25.0 x 0.8 GB/s). Assumptions, not in
# libraries.md: inline SDMA + RDMA reduce on 910B / 910_93 only; RDMA-lite unsupported.
DEVICES = {
    "910": {"chip": "910A", "topo": "8P_RING", "level0_GBps": 10.0, "level1_GBps": 12.5 * 0.8,
            "inline_reduce": False, "rdma_lite": False},
    "910B": {"chip": "910B", "topo": "NP_MESH", "level0_GBps": 18.3, "level1_GBps": 25.0 * 0.8,
             "inline_reduce": True, "rdma_lite": False},
    "910C": {"chip": "910_93", "topo": "NP_DOUBLE_RING", "level0_GBps": 18.3, "level1_GBps": 25.0 * 0.8,
             "inline_reduce": True, "rdma_lite": False},
}

# libraries.md 3.4: pieces are cclBuff / typeSize elements; typeSize of float32, the type ccemu times by default.
ITEMSIZE = 4


def _clog2(m: int) -> int:
    return (m - 1).bit_length()


def _pow2(m: int) -> bool:
    return m & (m - 1) == 0


# -- HCCL_ALGO and HCCL_BUFFSIZE ---------------------------------------------------------------------------

def parse_hccl_algo(value: str, collective: str) -> dict:
    """``{"level1": name or None, "level2": name or None}`` that ``HCCL_ALGO=value`` sets for ``collective``.

    >>> parse_hccl_algo("level0:NA;level1:NHR", "allreduce")
    {'level1': 'NHR', 'level2': None}
    >>> parse_hccl_algo("allreduce=level0:NA;level1:ring/allgather=level0:NA;level1:H-D_R", "allgather")
    {'level1': 'H-D_R', 'level2': None}
    """
    general = specific = None
    for entry in value.split("/"):
        entry = entry.strip()
        if not entry:
            continue
        op = None
        if "=" in entry:
            op, entry = (x.strip() for x in entry.split("=", 1))
            if op.lower() not in OPS:
                raise ValueError(f"HCCL_ALGO={value!r}: unknown op {op!r}; expected {', '.join(OPS)}")
        levels = {"level1": None, "level2": None}
        for part in entry.split(";"):
            part = part.strip()
            if not part:
                continue
            if ":" not in part:
                raise ValueError(f"HCCL_ALGO={value!r}: {part!r} is not 'levelN:algo'")
            level, algo = (x.strip() for x in part.split(":", 1))
            level = level.lower()
            if level == "level0":
                if algo.upper() != "NA":
                    raise ValueError(f"HCCL_ALGO={value!r}: level0 takes only NA (the intra-server algorithm follows "
                                     "the hardware)")
            elif level in ("level1", "level2"):
                names = LEVEL1_ENV if level == "level1" else LEVEL2_ENV
                if algo.lower() not in names:
                    spelled = ("ring", "H-D_R", "NHR", "NHR_V1", "NB", "AHC", "pipeline", "pairwise")
                    raise ValueError(f"HCCL_ALGO={value!r}: unknown {level} algorithm {algo!r}; expected "
                                     f"{', '.join(a for a in spelled if a.lower() in names)}")
                levels[level] = names[algo.lower()]
            else:
                raise ValueError(f"HCCL_ALGO={value!r}: unknown level {level!r}; expected level0, level1, level2")
        if op is None:
            general = levels
        elif OPS[op.lower()] == collective:
            specific = levels
    return specific or general or {"level1": None, "level2": None}


def buffer_bytes(env) -> int:
    """The CCL buffer: ``HCCL_BUFFSIZE`` MB (default 200)."""
    text = env.get("HCCL_BUFFSIZE")
    if text is None:
        return BUFFSIZE_MB_DEFAULT * MB
    if not text.strip().isdigit() or int(text) < 1:
        raise ValueError(f"HCCL_BUFFSIZE={text!r}; expected a whole number of MB >= 1 (default {BUFFSIZE_MB_DEFAULT})")
    return int(text) * MB


def pieces(collective: str, nbytes: int, P: int, ccl: int) -> list[int]:
    """The runs a call is cut into (libraries.md 3.4): AllReduce pieces of cclBuff/typeSize elements, AllGather
    and ReduceScatter of cclBuff/(typeSize x ranks) elements per rank; other collectives run once.

    >>> pieces("allreduce", 500 << 20, 8, 200 << 20) == [200 << 20, 200 << 20, 100 << 20]
    True
    """
    if collective == "allreduce":
        step = (ccl // ITEMSIZE) * ITEMSIZE
    elif collective in ("allgather", "reduce_scatter"):
        step = (ccl // (ITEMSIZE * P)) * ITEMSIZE * P
    else:
        return [nbytes]
    if nbytes <= step or step <= 0:
        return [nbytes]
    out = [step] * (nbytes // step)
    if nbytes % step:
        out.append(nbytes % step)
    return out


# -- the model ----------------------------------------------------------------------------------------------

class HCCLModel:
    """HCCL's selection (module docstring)."""

    name = NAME
    versions = VERSIONS
    default_version = DEFAULT_VERSION
    algorithms = ALGORITHMS
    #: The collectives this model has a tuner for (nccl-tests' and hccl_test's); others run as ``ideal``.
    collectives = MODELLED_COLLECTIVES
    protocols = PROTOCOLS
    env_keys = ("HCCL_ALGO", "HCCL_BUFFSIZE")
    devices = DEVICES

    def device(self, si) -> dict:
        dev = self.devices.get(si.model)
        if dev is None:
            raise ValueError(f"hccl has no device entry for {si.model!r} ({si.name}); expected one of "
                             f"{', '.join(self.devices)}")
        return dev

    # -- costs (microseconds; bytes; GB/s) --------------------------------------------------------------
    @staticmethod
    def level0_cost(algo, collective, n, d, dev) -> float:
        """libraries.md 3.1 costs on the ``d`` devices of a server, alpha = delta, beta = 1 / level-0 bandwidth."""
        if d <= 1:
            return 0.0
        a = DELTA_US
        beta = 1.0 / (dev["level0_GBps"] * 1e3)
        if dev["topo"] == "NP_DOUBLE_RING" and algo == "Ring":
            beta /= 2                               # two rings, half of the data each
        if algo == "Mesh":
            if collective == "allreduce":
                return 2 * a + 2 / d * n * beta
            if collective == "alltoall":
                return a + n / d * beta
            return a + n * beta / d                 # RS, AG, scatter, gather
        if algo == "Ring":
            if collective == "allreduce":
                return 2 * (d - 1) * a + 2 * (d - 1) / d * n * beta
            if collective in ("broadcast", "reduce"):
                return (d - 1) * (a + n * beta)
            if collective == "alltoall":
                return (d - 1) * (a + n / d * beta)
            return (d - 1) * a + (d - 1) / d * n * beta
        if algo == "Star":
            return a + n * beta
        if algo == "Pairwise":
            return (d - 1) * (a + n / d * beta)
        raise AssertionError(algo)

    @staticmethod
    def level1_cost(algo, collective, S, m, d, P, dev) -> float:
        """libraries.md 3.3 level-1 alpha-beta terms (S = AllReduce size, or per-rank size for AG / RS)."""
        a = DELTA_US
        B = dev["level1_GBps"] * 1e3                # bytes per us
        lg = _clog2(m)
        if collective == "allreduce":
            beta = 2 * (m - 1) / m * S / (d * B)
            if algo == "Ring":
                return 2 * (m - 1) * a + beta
            if algo in ("NHR", "NB", "NHR_V1"):
                return 2 * lg * a + beta
            if algo == "H-D_R":
                if _pow2(m):
                    return 2 * math.log2(m) * a + beta
                return 2 * lg * a + 2 * (2 * m - 1) / m * S / (d * B)
        elif collective in ("allgather", "reduce_scatter"):
            beta = (m - 1) / m * S * P / B
            if algo == "Ring":
                return (m - 1) * a + beta
            if algo in ("NHR", "NB", "NHR_V1"):
                return lg * a + beta
            if algo == "H-D_R":
                # Reading: AllReduce's H-D_R rule for one half (libraries.md 3.3 gives AG/RS Ring and NHR only).
                if _pow2(m):
                    return math.log2(m) * a + beta
                return lg * a + (2 * m - 1) / m * S * P / B
        else:                                       # rooted ops across servers: a ring of m steps (3.1 Ring Bcast)
            return (m - 1) * (a + S / d / B)
        raise AssertionError((algo, collective))

    @staticmethod
    def pipeline_cost(collective, s, m, d, P, dev) -> float:
        """libraries.md 3.1 Pipeline: AG/RS max(s beta_inter/p + alpha, s beta_intra/p + alpha)(m-1)
        + s beta_intra/p + alpha; AllReduce twice that (alpha = delta on both levels)."""
        a = DELTA_US
        b_inter = 1.0 / (dev["level1_GBps"] * 1e3)
        b_intra = 1.0 / (dev["level0_GBps"] * 1e3)
        one = max(s * b_inter / P + a, s * b_intra / P + a) * (m - 1) + s * b_intra / P + a
        return 2 * one if collective == "allreduce" else one

    def composed(self, level0, level1, collective, n, si, dev) -> float:
        """One run of ``n`` bytes: the 3.2 composition of the level-0 and level-1 costs."""
        m, d, P = si.nodes, si.ppn, si.P
        if m == 1:
            return self.level0_cost(level0, collective, n, d, dev)
        if level1 == "Pipeline":
            return self.pipeline_cost(collective, n, m, d, P, dev)
        if level1 == "Pairwise":                     # flat over every rank, at the level-1 rate
            B = dev["level1_GBps"] * 1e3
            return (P - 1) * (DELTA_US + n / P / B)
        if collective == "allreduce":
            return (self.level0_cost(level0, "reduce_scatter", n, d, dev)
                    + self.level1_cost(level1, collective, n, m, d, P, dev)
                    + self.level0_cost(level0, "allgather", n, d, dev))
        if collective in ("allgather", "reduce_scatter"):
            return (self.level0_cost(level0, collective, n / m, d, dev)
                    + self.level1_cost(level1, collective, n / P, m, d, P, dev))
        # Broadcast: intra Scatter -> inter Bcast -> intra AG; Reduce: intra RS -> inter Reduce -> intra Gather
        # (libraries.md 3.2). A scatter / gather of n costs what the 3.1 AllGather of n costs (one step of n/d per
        # link on a mesh, d-1 steps on a ring), so the two intra parts are two such costs.
        intra = self.level0_cost(level0, "allgather", n, d, dev)
        return 2 * intra + self.level1_cost(level1, collective, n, m, d, P, dev)

    def flat_nhr_cost(self, collective, n, si, dev) -> float:
        """Flat NHR over all ranks (A3 small sizes), with the level-1 terms on P ranks of one device each."""
        return self.level1_cost("NHR", collective, n if collective == "allreduce" else n / si.P, si.P, 1, si.P, dev)

    # -- the choice ------------------------------------------------------------------------------------
    def level0(self, collective, si, dev) -> str:
        algo = TOPO_LEVEL0[dev["topo"]]
        if collective in ("broadcast", "reduce") and algo == "Mesh":
            return "Star"
        return algo

    def choose(self, collective, nbytes, topology, version=None, env=None) -> Choice:
        """HCCL's algorithm for one call (libraries.md 3.1-3.4).

        >>> from topologies import preset
        >>> c = HCCL.choose("allreduce", 1 << 20, preset("atlas800t-a2"))
        >>> c.algorithm, c.executor, c.ccemu_algorithm, round(c.predicted_us, 1)
        ('Mesh', 'AllReduceMeshOpbaseLoopExecutor', 'direct', 134.3)
        >>> c = HCCL.choose("allreduce", 1 << 20, preset("atlas800t-a2", nodes=4))
        >>> c.levels, c.ccemu_algorithm, c.ccemu_params
        ({'level0': 'Mesh', 'level1': 'NHR'}, 'hierarchical', {'intra': 'direct', 'inter': 'halving_doubling'})
        """
        check_call(collective, nbytes)
        tuned = tuned_as(self, collective, nbytes, topology, version, env)
        if tuned is not None:
            return tuned
        nbytes = int(nbytes)
        version = check_version(self, version)
        env = check_env(self, env)
        si = system(topology)
        dev = self.device(si)
        if collective in P2P:
            return self._p2p(collective, nbytes, version, env)
        if not si.uniform:
            raise ValueError(f"{si.name}: servers with different device counts (HCCL's ARS case) are not modelled")
        ccl = buffer_bytes(env)
        forced = {"level1": None, "level2": None}
        if "HCCL_ALGO" in env:
            forced = parse_hccl_algo(env["HCCL_ALGO"], collective)
        if forced["level1"] == "AHC":
            raise ValueError("HCCL_ALGO level1:AHC is not modelled (its documented cost is ambiguous, "
                             f"libraries.md 3.1); modelled level-1 algorithms: {', '.join(LEVEL1)}")
        runs = pieces(collective, nbytes, si.P, ccl)
        S_sel = min(nbytes, ccl)                    # libraries.md 3.3: S = min(size, CCL buffer)
        notes = []
        if len(runs) > 1:
            notes.append(f"{len(runs)} runs of at most the {ccl // MB} MB CCL buffer (HCCL_BUFFSIZE, libraries.md 3.4)")
        lv0 = self.level0(collective, si, dev)
        if collective == "scatter":
            return self._scatter(nbytes, si, dev, version, lv0, forced, notes)
        if si.nodes == 1:
            return self._one_server(collective, nbytes, si, dev, version, lv0, runs, forced, notes)
        return self._servers(collective, nbytes, si, dev, version, lv0, runs, S_sel, forced, notes)

    def _p2p(self, collective, nbytes, version, env) -> Choice:
        """A collective HCCL runs as point-to-point calls (:data:`P2P`): no choice, no predicted time."""
        alg, what, how = P2P[collective]
        why = f"{what}; no cost model"
        notes = [why] + (["HCCL_ALGO has no effect on point-to-point calls"] if "HCCL_ALGO" in env else [])
        return Choice(self.name, version, collective, nbytes, "SendRecv", "Simple", 1, None,
                      [Candidate("SendRecv", "Simple", 1, None, why)], alg, {}, "simple", False,
                      f"approximate: {how}", notes=notes)

    def _scatter(self, nbytes, si, dev, version, lv0, forced, notes) -> Choice:
        """HcclScatter: the level-0 algorithm inside a server (3.1, a mesh sends every block at once);
        across servers "Scatter = inter -> intra" (3.2) with level 1 Ring (no automatic rule for rooted
        ops in 3.3) unless HCCL_ALGO sets it. ccemu has no two-level scatter: ``direct`` stands in."""
        m, d, P = si.nodes, si.ppn, si.P
        if m == 1:
            if forced["level1"] is not None:
                notes.append("HCCL_ALGO level1 has no effect on one server (level 0 follows the hardware)")
            pred = self.level0_cost(lv0, "scatter", nbytes, d, dev)
            exact = lv0 == "Mesh"
            note = ("exact: one-shot full mesh" if exact else
                    f"approximate: ccemu has no {lv0} scatter; every block from the root at once")
            return Choice(self.name, version, "scatter", nbytes, lv0, "Simple", 1, pred,
                          [Candidate(lv0, "Simple", 1, pred, f"{dev['topo']}: HCCL's intra-server algorithm")],
                          "direct", {}, "simple", exact, note, levels={"level0": lv0}, notes=notes)
        level1 = forced["level1"] or "Ring"
        if level1 == "Pairwise":
            raise ValueError("HCCL_ALGO level1:pairwise applies to AlltoAll only (libraries.md 3.3)")
        notes.append(f"forced by HCCL_ALGO={forced['level1']}" if forced["level1"] else
                     "no automatic rule for rooted ops in libraries.md 3.3: Ring")
        pred = self.level1_cost(level1, "scatter", nbytes, m, d, P, dev) + self.level0_cost(lv0, "scatter",
                                                                                           nbytes / m, d, dev)
        return Choice(self.name, version, "scatter", nbytes, level1, "Simple", 1, pred,
                      [Candidate(level1, "Simple", 1, pred, "inter -> intra (libraries.md 3.2)")], "direct", {},
                      "simple", False, "approximate: ccemu has no two-level scatter; every block from the root at once",
                      levels={"level0": lv0, "level1": level1}, notes=notes)

    def _total(self, level0, level1, collective, runs, si, dev, flat=False) -> float:
        if flat:
            return sum(self.flat_nhr_cost(collective, n, si, dev) for n in runs)
        return sum(self.composed(level0, level1, collective, n, si, dev) for n in runs)

    def _one_server(self, collective, nbytes, si, dev, version, lv0, runs, forced, notes) -> Choice:
        if forced["level1"] is not None:
            notes.append("HCCL_ALGO level1 has no effect on one server (level 0 follows the hardware)")
        algo = lv0
        executor = None
        if collective == "alltoall":
            algo = "Mesh" if dev["topo"] in MESH_TYPES else "Pairwise"
        if dev["chip"] == "910_93" and collective == "allreduce":
            if si.ppn > 2 and nbytes <= A3_MESH_SMALL_PER_RANK * si.P:
                algo, executor = "Mesh", "MeshSmallCount"
            else:
                executor = "FastDoubleRingFor91093"
        if dev["chip"] == "910B" and collective == "allreduce" and dev["inline_reduce"]:
            executor = ("AllReduceMeshSmallCountExecutor" if nbytes <= AR_910B_SMALL
                        else "AllReduceMeshOpbaseLoopExecutor")
        cands = []
        options = ("Mesh", "Ring", "Star", "Pairwise")
        for name in options:
            if name == "Star" and collective not in ("broadcast", "reduce"):
                continue
            if name == "Pairwise" and collective != "alltoall":
                continue
            if name == algo:
                cost = self._total(name, None, collective, runs, si, dev)
                cands.append(Candidate(name, "Simple", 1, cost, f"{dev['topo']}: HCCL's intra-server algorithm"))
            else:
                cands.append(Candidate(name, "Simple", 1, None, f"{dev['topo']}: intra-server algorithm is {algo} "
                                                                 "(follows the hardware, not configurable)"))
        pred = self._total(algo, None, collective, runs, si, dev)
        alg, params, exact, note = self.mapping(collective, si, dev, algo, None)
        return Choice(self.name, version, collective, nbytes, algo, "Simple", 1, pred, cands, alg, params, "simple",
                      exact, note, levels={"level0": algo}, executor=executor, pieces=runs if len(runs) > 1 else None,
                      notes=notes)

    def _servers(self, collective, nbytes, si, dev, version, lv0, runs, S_sel, forced, notes) -> Choice:
        m, d, P = si.nodes, si.ppn, si.P
        chip = dev["chip"]
        lv0 = "Mesh" if dev["topo"] in MESH_TYPES else "Ring"      # the level-0 part of the composition (3.2)
        options = ["Ring", "NHR", "H-D_R", "NB", "Pipeline"] if collective != "alltoall" else ["Pairwise"]
        why_not = {}
        pipeline_ok, pipeline_why = self._pipeline_ok(collective, nbytes, si, dev)
        if not pipeline_ok:
            why_not["Pipeline"] = pipeline_why
        if chip == "910_93":
            why_not["H-D_R"] = "A3 maps H-D_R to NHR"
        if collective in ("broadcast", "reduce"):
            why_not["Pipeline"] = "Pipeline is for AllReduce, AllGather, ReduceScatter (libraries.md 3.3)"
        # -- the pick
        level1 = forced["level1"]
        flat = False
        executor = None
        if level1 is not None:
            if chip == "910_93" and level1 == "H-D_R":
                level1 = "NHR"
                notes.append("HCCL_ALGO level1:H-D_R runs as NHR on A3 (libraries.md 3.3)")
            if level1 == "Pairwise" and collective != "alltoall":
                raise ValueError("HCCL_ALGO level1:pairwise applies to AlltoAll only (libraries.md 3.3)")
            if level1 != "Pairwise" and collective == "alltoall":
                raise ValueError(f"HCCL_ALGO level1:{level1} does not apply to AlltoAll (pairwise only)")
            if level1 == "Pipeline" and lv0 != "Mesh":
                raise ValueError("HCCL_ALGO level1:pipeline needs a mesh inside the server (level 0 is "
                                 f"{dev['topo']})")
            how = f"forced by HCCL_ALGO={forced['level1']}"
            if level1 not in options:
                options.append(level1)
        elif collective == "alltoall":
            level1, how = "Pairwise", "AlltoAll across servers: Pairwise (libraries.md 3.1)"
        elif chip == "910A":
            level1 = "H-D_R" if _pow2(m) else "Ring"
            how = "910A default: Ring unless the server count is a power of 2 (libraries.md 3.3)"
        elif collective in ("broadcast", "reduce"):
            level1, how = "Ring", "no automatic rule for rooted ops in libraries.md 3.3: Ring"
        elif pipeline_ok:
            level1 = "Pipeline"
            how = "Pipeline: level 0 is a mesh and the size reaches the threshold (libraries.md 3.3)"
        else:
            level1, how = self._alpha_beta(collective, S_sel, si, dev)
        if chip == "910_93" and forced["level1"] is None and collective == "allreduce":
            if si.superpods == 1 and nbytes <= A3_FLAT_NHR_PER_DEVICE * d:
                flat, executor = True, "flat NHR"
                how = "A3, one superpod, <= 1 MB x devices: flat NHR (libraries.md 3.3)"
            elif si.superpods > 1 and nbytes <= A3_MULTIPOD_FLAT_NHR_PER_DEVICE * d:
                flat, executor, how = True, "flat NHR", "A3, several superpods, <= 16 KB x devices: flat NHR"
            elif si.superpods > 1 and A3_MIDCOUNT[0] <= nbytes <= A3_MIDCOUNT[1]:
                executor = "MidCountFor91093"
            else:
                executor = "FastDoubleRingFor91093"
        if chip == "910B" and collective == "allreduce":
            executor = ("AllReduceMeshOpbasePipelineExecutor" if level1 == "Pipeline"
                        else "AllReduceMeshOpbaseSmallCountDeterministicExecutor" if nbytes < AR_910B_MULTI_SMALL
                        else "AllReduceMeshExecutor")
        # -- the table
        cands = []
        for name in options:
            if name in why_not and name != level1:
                cands.append(Candidate(name, "Simple", 1, None, why_not[name]))
                continue
            cost = self._total(lv0, name, collective, runs, si, dev)
            s_term = S_sel if collective == "allreduce" else S_sel / P
            term = (self.pipeline_cost(collective, S_sel, m, d, P, dev) if name == "Pipeline"
                    else self.level1_cost(name, collective, s_term, m, d, P, dev) if name != "Pairwise" else None)
            reason = f"level 1 term {term:.2f} us" if term is not None else "flat pairwise"
            if name == "NB" and name != level1:
                reason += " (NB only by HCCL_ALGO)"
            if name == "NHR_V1":
                reason += " (legacy)"
            cands.append(Candidate(name, "Simple", 1, cost, reason))
        if flat:
            cands.append(Candidate("NHR", "Simple", 1, self._total(lv0, "NHR", collective, runs, si, dev, flat=True),
                                   "flat NHR over all ranks (A3 small sizes)"))
        pred = self._total(lv0, level1, collective, runs, si, dev, flat=flat)
        levels = {"level0": lv0, "level1": "NHR" if flat else level1}
        if flat:
            levels = {"flat": "NHR"}
        if si.superpods > 1:
            default = "Ring" if si.superpods < LEVEL2_RING_BELOW and not _pow2(si.superpods) else "H-D_R"
            lv2 = forced["level2"] or default
            levels["level2"] = lv2
            notes.append("level 2 (between superpods) is not in ccemu's two-level hierarchical: ignored in the mapping")
        notes.append(how)
        algo = "NHR" if flat else level1
        alg, params, exact, note = self.mapping(collective, si, dev, lv0, algo, flat=flat)
        return Choice(self.name, version, collective, nbytes, algo, "Simple", 1, pred, cands, alg, params, "simple",
                      exact, note, levels=levels, executor=executor, pieces=runs if len(runs) > 1 else None,
                      notes=notes)

    def _pipeline_ok(self, collective, nbytes, si, dev):
        if collective not in ("allreduce", "allgather", "reduce_scatter"):
            return False, "Pipeline is for AllReduce, AllGather, ReduceScatter"
        if dev["topo"] not in MESH_TYPES:
            return False, f"Pipeline needs a mesh inside the server ({dev['topo']})"
        if si.ppn == 1:
            return False, "Pipeline needs more than one device per server"
        if dev["chip"] == "910A":
            return False, "910A has no automatic level-1 choice"
        if collective in ("allreduce", "reduce_scatter") and not dev["inline_reduce"]:
            return False, "Pipeline of a reduction needs inline SDMA + RDMA reduce"
        lite = dev["rdma_lite"]
        per = nbytes / (si.nodes * si.ppn)
        need = PIPELINE_AR_MIN[lite] if collective == "allreduce" else PIPELINE_AG_RS_MIN[lite]
        if per < need:
            which = "" if lite else " without RDMA-lite"
            return False, f"size per slice {per:.0f} B < {need} B (Pipeline threshold{which})"
        return True, ""

    def _alpha_beta(self, collective, S, si, dev):
        m, d, P = si.nodes, si.ppn, si.P
        n = S if collective == "allreduce" else S / P
        ring = self.level1_cost("Ring", collective, n, m, d, P, dev)
        nhr = self.level1_cost("NHR", collective, n, m, d, P, dev)
        pick = "NHR" if nhr < ring else "Ring"      # libraries.md 3.3: NHR only if < Ring
        if dev["chip"] != "910_93":
            hd = self.level1_cost("H-D_R", collective, n, m, d, P, dev)
            if hd < min(ring, nhr):                 # H-D_R only if < both (ties: Ring > NHR > HD)
                pick = "H-D_R"
        return pick, (f"alpha-beta with delta {DELTA_US:g} us, B {dev['level1_GBps']:g} GB/s, S {S} B: "
                      f"Ring {ring:.2f} us, NHR {nhr:.2f} us (libraries.md 3.3)")

    # -- ccemu ----------------------------------------------------------------------------------------------
    @staticmethod
    def mapping(collective, si, dev, level0, level1, flat=False):
        """``(ccemu algorithm, params, exact, note)`` (module docstring table)."""
        if flat:
            if collective == "allreduce":
                return "halving_doubling", {}, False, "approximate: flat NHR as flat halving-doubling"
            return "bruck", {}, False, "approximate: flat NHR as flat Bruck"
        if level1 is None:                          # one server
            if level0 == "Mesh":
                return "direct", {}, True, "exact: one-shot full mesh"
            if level0 == "Pairwise":
                return "pairwise", {}, True, "exact: pairwise exchange"
            if level0 == "Star":
                return "binomial", {}, False, "approximate: Star (root to all at once) as a binomial tree"
            if dev["topo"] == "NP_DOUBLE_RING":
                return "ring", {"channels": 2}, False, "approximate: the double ring as ccemu's two ring channels"
            return "ring", {"channels": 1}, True, "exact: one ring"
        if level1 == "Pairwise":
            return "pairwise", {}, False, "approximate: flat pairwise (HCCL composes intra -> inter)"
        if si.ppn == 1 and collective not in ("broadcast", "reduce"):   # level 0 has nothing to do
            if collective == "allreduce":
                inter = "ring" if level1 in ("Ring", "Pipeline") else "halving_doubling"
            else:
                inter = {"Ring": "ring", "H-D_R": "halving_doubling", "Pipeline": "ring"}.get(level1, "bruck")
            return inter, {}, level1 == "Ring", (f"{'exact' if level1 == 'Ring' else 'approximate'}: one device "
                                                 f"per server, so level 1 alone: {level1} as {inter}")
        if collective in ("broadcast", "reduce"):
            return "ring", {}, False, "approximate: rooted op across servers as a flat pipelined ring"
        intra = "direct" if level0 == "Mesh" else "ring"
        if collective == "allreduce":
            inter = {"Ring": "ring", "H-D_R": "halving_doubling"}.get(level1, "halving_doubling")
            if level1 == "Pipeline":
                inter = "ring"
            exact = level1 in ("Ring", "H-D_R") and level0 == "Mesh"
            how = {"Pipeline": "Pipeline as direct + ring without overlap of the levels",
                   "NHR": "NHR as halving-doubling", "NB": "NB as halving-doubling",
                   "NHR_V1": "NHR_V1 as halving-doubling"}.get(level1, "")
            if level0 != "Mesh":
                how = (how + "; " if how else "") + "the double ring as a ring"
            note = ("exact: " if exact else "approximate: ") + (how or f"intra {intra}, inter {inter}")
            return "hierarchical", {"intra": intra, "inter": inter}, exact, note
        inter = {"Ring": "ring", "H-D_R": "halving_doubling", "Pipeline": "ring"}.get(level1, "bruck")
        return ("hierarchical", {"intra": intra, "inter": inter}, False,
                f"approximate: ccemu orders the two levels the other way; {level1} as {inter}")


HCCL = HCCLModel()
