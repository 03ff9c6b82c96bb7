"""NCCL's tuner (libraries.md §1): the cost table of every (algorithm, protocol) and the strict-minimum pick.

What is modelled, by libraries.md section:

- 1.1 the algorithms and protocols in NCCL's order, the version each appeared in, which pairs are
  modelled per collective, and the eligibility rules (NVLS / NVLSTree Simple only with an NVLS graph
  of >= 2 channels, NVLS needs a reducing NVSwitch and SM >= 90 and, across servers, CollNet;
  NVLSTree off on one server; CollNet needs collnetEnable, which no preset has; PAT only with one GPU
  per server; LL128 only over NVLink with SM >= 70).
- 1.3 nBytes (= S), ``time = lat + nBytes / (1000 algBw)``, the tree correction factors, the ring
  Simple plateau factor, strict minimum with ties to the earlier algorithm then protocol, the
  per-call channel (and thread) reduction, NCCL_ALGO / NCCL_PROTO (comma lists, ``^`` excludes,
  per-function lists since 2.24, no implicit Ring fallback since then).
- 1.4 every latency formula with baseLat / hwLat / netOverhead, keyed by version (2.19.3, 2.30.7).
- 1.5 busBw = graph channels x speed, the refinements in code order, the caps by GPU generation and
  server count, NVLS efficiency, bus-to-algorithm ratios.
- 1.6 the ring graph search on the ladders (top speed, ring packing, lower speeds while next/best >
  0.49, pass 2, DupChannels), runtime channels (x2, x2 on SM >= 90 multi-node), NVLS channels, p2p
  channels. Ring packing is worked out for the cases the presets have: one server on NVSwitch
  (rings = GPU NVLink bandwidth / speed), one server on a full NVLink mesh, and servers with one NIC
  per GPU (rail): rings = NICs x (NIC path / speed), bounded by NVLink.

Left out (and why):

- FP8 Ring x1024 (1.1; the tuner is not given a data type), grouped operations (latCount = 1, 1.3),
  tuner plugins (1.3 step 5), NCCL_NVLS_NCHANNELS / NCCL_MIN/MAX_CTAS and other env (only NCCL_ALGO
  and NCCL_PROTO are read), CollNet (no SHARP network in any preset: always ineligible), the simple
  TREE graph pattern x0.85 (the tree graph is taken as balanced), chunk sizes (1.2).
- Readings where libraries.md is not explicit, marked "Reading" where used: the tree graph has the
  ring graph's channels and speed (1.6 "Tree graph reuses the ring count"); the NVLS graph has one
  channel per head (1.6: all GPUs of a server are heads, at most 32) at the top ladder speed with
  heads x speed <= the GPU's NVLink bandwidth; on one server NVLS is limited by intraBw only (there is
  no network, and the NVLSTree cap is NVLSTree's); a ring with a network runs bwIntra = bwInter =
  the ring speed; rings on NVSwitch are all the same order (sameChannels), rings over NICs are not;
  graph latencyInter (the net plugin's figure) is 0; the SM >= 90 multi-node x2 compares the graph's
  channel count with 16.
- The device table below holds SM version and host CPU per GPU model: hardware facts, not in
  libraries.md (marked).

Mapping to ccemu (``Choice.ccemu_*``):

=================  ==========================================  =======================================
NCCL               ccemu                                       exact?
=================  ==========================================  =======================================
Ring               ``ring`` (channels = min(call channels,     approximate: ccemu's channels are rings
                   ccemu's link-disjoint rings); on one        on index strides, not NCCL's CTAs; across
                   full-mesh server its mesh rings, which      servers they cross on <= 2 NICs where
                   use every link)                             NCCL's rings use every rail
Tree               ``tree``                                    approximate: ccemu's is a double binary
                                                               tree over all ranks; NCCL's is a chain in
                                                               each server and a double binary tree
                                                               across servers
NVLS (AllReduce)   ``in_network``                              exact: the switch reduces and multicasts
NVLS (AG / RS)     ``direct``                                  approximate: one-shot through the switch,
                                                               no multicast
NVLSTree           ``hierarchical`` intra ``direct``, inter    approximate: ccemu has no in-network
                   ``halving_doubling``                        intra part; log-depth across servers as
                                                               NCCL's tree
CollNetDirect/     ``in_network`` if a reducing switch reaches approximate (never eligible on presets)
Chain              every device, else ``hierarchical``
PAT                ``bruck``                                   approximate: log-depth, one GPU/server
AllToAll (p2p)     ``direct``                                  approximate: NCCL groups send/recv
Gather, Scatter,   ``direct``                                  approximate: as AllToAll (nccl-tests'
SendRecv (p2p)                                                 gather/scatter/sendrecv_perf group
                                                               ncclSend/ncclRecv in one step)
HyperCube (p2p)    ``recursive_doubling``                      approximate: log2(P) groups of
                                                               send/recv, one per dimension
=================  ==========================================  =======================================

Protocols map by name: LL -> ``ll``, LL128 -> ``ll128``, Simple -> ``simple``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from . import (MODELLED_COLLECTIVES, Candidate, Choice, check_call, check_env, check_version, ring_channel_cap, system,
               tuned_as)
from .. import registry
from ..tuning import rail_channel_count
from ..algorithms.pipeline import coprime_strides

NAME = "nccl"
# libraries.md 1.4 "Drift": constants keyed by NCCL version (2.19.3 tag v2.19.3-1; 2.30.7 commit 5067397c).
VERSIONS = ("2.19.3", "2.30.7")
DEFAULT_VERSION = "2.30.7"          # libraries.md header: NVIDIA/nccl 2.30.7, the newest documented

# libraries.md 1.1: order (src/init.cc), which is also the tie order (1.3 step 3).
ALGORITHMS = ("Tree", "Ring", "CollNetDirect", "CollNetChain", "NVLS", "NVLSTree", "PAT")
PROTOCOLS = ("LL", "LL128", "Simple")   # libraries.md 1.1
LL, LL128, SIMPLE = range(3)

# libraries.md 1.1: "Since (env.rst)".
SINCE = {"Tree": (2, 5), "Ring": (2, 5), "CollNetDirect": (2, 14), "CollNetChain": (2, 14), "NVLS": (2, 17),
         "NVLSTree": (2, 18), "PAT": (2, 23)}
# libraries.md 1.3 last bullet: per-function NCCL_ALGO / NCCL_PROTO lists, and no implicit Ring fallback, since 2.24.
PER_FUNCTION_SINCE = (2, 24)

# libraries.md 1.1: modelled pairs (src/graph/tuning.cc ncclTopoTuneModel).
MODELLED = {
    "broadcast": ("Ring",), "reduce": ("Ring",),
    "allgather": ("Ring", "PAT", "NVLS", "CollNetDirect"),
    "reduce_scatter": ("Ring", "PAT", "NVLS", "CollNetDirect"),
    "allreduce": ("Tree", "Ring", "CollNetDirect", "CollNetChain", "NVLS", "NVLSTree"),
}

# -- latency (libraries.md 1.4), (LL, LL128, Simple) in us ------------------------------------------------

_BASE_2_30 = {"Tree": (6.8, 14.0, 8.4), "Ring": (6.6, 14.0, 8.4),       # libraries.md 1.4: baseLat
              "CollNetDirect": (0.0, 0.0, 0.0), "CollNetChain": (0.0, 0.0, 0.0),
              "NVLS": (0.0, 0.0, 0.0), "NVLSTree": (0.0, 0.0, 0.0), "PAT": (8.0, 8.0, 8.0)}
BASE_LAT = {
    "2.30.7": _BASE_2_30,
    # libraries.md 1.4 Drift: at v2.19.3-1 Tree Simple base 0; no PAT.
    "2.19.3": {**{a: v for a, v in _BASE_2_30.items() if a != "PAT"}, "Tree": (6.8, 14.0, 0.0)},
}
# libraries.md 1.4 hwLat table; "-" (pairs that are never eligible) as 0.
_HW_2_30 = {
    "NVLINK": {"Tree": (0.6, 1.25, 4.0), "Ring": (0.6, 1.9, 3.4), "CollNetDirect": (0.0, 0.0, 3.7),
               "CollNetChain": (0.0, 0.0, 2.8), "NVLS": (0.0, 0.0, 25.0), "NVLSTree": (0.0, 0.0, 25.0),
               "PAT": (0.0, 0.0, 4.0)},
    "PCI": {"Tree": (1.0, 1.9, 4.0), "Ring": (1.0, 2.5, 5.7), "CollNetDirect": (0.0, 0.0, 3.7),
            "CollNetChain": (0.0, 0.0, 2.8), "NVLS": (0.0, 0.0, 0.0), "NVLSTree": (0.0, 0.0, 0.0),
            "PAT": (0.0, 0.0, 4.0)},
    "NET": {"Tree": (5.0, 8.5, 14.0), "Ring": (2.7, 4.0, 14.0), "CollNetDirect": (0.0, 0.0, 31.0),
            "CollNetChain": (0.0, 0.0, 30.0), "NVLS": (0.0, 0.0, 18.0), "NVLSTree": (0.0, 0.0, 20.9),
            "PAT": (0.0, 0.0, 14.0)},
}
HW_LAT = {
    "2.30.7": _HW_2_30,
    # libraries.md 1.4 Drift: v2.19.3-1 Tree Simple hwLat 28 on all hw; NVLS/NVLSTree NVLink 23; NET NVLSTree 14;
    # no PAT.
    "2.19.3": {
        "NVLINK": {**{a: v for a, v in _HW_2_30["NVLINK"].items() if a != "PAT"}, "Tree": (0.6, 1.25, 28.0),
                   "NVLS": (0.0, 0.0, 23.0), "NVLSTree": (0.0, 0.0, 23.0)},
        "PCI": {**{a: v for a, v in _HW_2_30["PCI"].items() if a != "PAT"}, "Tree": (1.0, 1.9, 28.0)},
        "NET": {**{a: v for a, v in _HW_2_30["NET"].items() if a != "PAT"}, "Tree": (5.0, 8.5, 28.0),
                "NVLSTree": (0.0, 0.0, 14.0)},
    },
}
# libraries.md 1.4: netOverhead 1.0 us Intel x86, 2.0 AMD x86, 1.0 other (NCCL_NET_OVERHEAD); x3 for Simple.
NET_OVERHEAD_US = {"intel": 1.0, "amd": 2.0, "arm": 1.0}
NET_OVERHEAD_SIMPLE_FACTOR = 3.0
# Reading (libraries.md 1.4 "NIC latency (graph latencyInter)" gives no value): the net plugin's figure, 0.
LATENCY_INTER_US = 0.0
# libraries.md 1.3 step 2: ring Simple AllReduce plateau factor, nNodes > 1, nBytes/(nChannels x nRanks) >= 64.
PLATEAU_MIN_BYTES = 64
PLATEAU_FACTOR = {"sm80+": 1.4, "older": 1.9}

# -- bandwidth (libraries.md 1.5) -------------------------------------------------------------------------

# libraries.md 1.5: search ladders (src/graph/search.cc), GB/s, by SM class. SM100's inter ladder ends in "..."
# before 0.12: read as SM90's tail (2.4, 1.2, 0.24).
LADDERS = {
    "pre-sm90": {"intra": (40, 30, 20, 18, 15, 12, 10, 9, 7, 6, 5, 4, 3),
                 "inter": (48, 30, 28, 24, 20, 18, 15, 12, 10, 9, 7, 6, 5, 4, 3, 2.4, 1.2, 0.24, 0.12)},
    "sm90": {"intra": (60, 50, 40, 30, 24, 20, 15, 12, 11, 6, 3),
             "inter": (48, 45, 42, 40, 30, 24, 22, 20, 17.5, 15, 12, 6, 3, 2.4, 1.2, 0.24, 0.12)},
    "sm100": {"intra": (90, 80, 70, 60, 50, 45, 40, 30, 24, 20, 19, 18),
              "inter": (96, 86, 80, 48, 45.1, 42, 40, 30, 24, 22, 20, 17.5, 15, 12, 6, 3, 2.4, 1.2, 0.24, 0.12)},
}
# libraries.md 1.5 Links: NVLink GB/s per link and direction by SM (src/graph/topo.h).
NVLINK_PER_LINK_GBps = {60: 18.0, 70: 20.0, 80: 20.0, 86: 12.0, 90: 20.6, 100: 40.1}
# libraries.md 1.5 Links: PCI = width x code/80: Gen3 x16 12, Gen4 24, Gen5 48 GB/s; keyed here by the line
# rate of the topology's x16 pcie edge (16 / 32 / 64 GB/s per direction).
PCI_GBps_BY_LINE_RATE = {16.0: 12.0, 32.0: 24.0, 64.0: 48.0}
# libraries.md 1.6: ring graph minChannels 1, maxChannels 32 (init.cc); MAXCHANNELS 64 (1.2).
MIN_CHANNELS, MAX_GRAPH_CHANNELS, MAXCHANNELS = 1, 32, 64
# libraries.md 1.6: the search tries lower speeds while next / current > 0.49.
SEARCH_RATIO = 0.49
# libraries.md 1.6: DupChannels if bwIntra >= 25 and not (SM > 80, bwIntra < 50, nCh > 4).
DUP_MIN_BW, DUP_SM, DUP_BW_BELOW, DUP_CH_ABOVE = 25.0, 80, 50.0, 4
# libraries.md 1.6: runtime x2 again for SM >= 90 multi-node with bwIntra > 45 and < 16 channels.
POSTSET_SM, POSTSET_BW_ABOVE, POSTSET_CH_BELOW = 90, 45.0, 16
# libraries.md 1.6: NVLS graph heads <= min(32, nGPUs) (NCCL_MAX_NVLS_ARITY 32, 1.1).
MAX_NVLS_HEADS = 32
# libraries.md 1.6: NVLS channels (src/transport/nvls.cc): SM90 16; SM100 one node 24, multi-node 32.
NVLS_CHANNELS = {"sm90": 16, "sm100-1node": 24, "sm100-multinode": 32}
# libraries.md 1.6: SM100 multi-node NVLSTree channels by NIC GB/s (2 nodes, >= 48 -> 32; >= 96 -> 24 if ppn <= 8
# else 32; >= 48 -> 24).
NVLSTREE_SM100_NIC = (48.0, 96.0, 8)

# libraries.md 1.5: caps, columns 1 node / 2 nodes / >= 3 nodes, rows Volta, Ampere, Hopper, Blackwell.
GENERATIONS = ("Volta", "Ampere", "Hopper", "Blackwell")
_LL_MAX_2_30 = ((39.0, 39.0, 20.4), (87.7, 22.5, 19.0), (141.0, 45.0, 35.0), (282.0, 90.0, 70.0))
LL_MAX_BWS = {
    "2.30.7": _LL_MAX_2_30,
    # libraries.md 1.4 Drift: v2.19.3-1 Hopper llMaxBws 87.7/22.5/19.0.
    "2.19.3": (_LL_MAX_2_30[0], _LL_MAX_2_30[1], (87.7, 22.5, 19.0), _LL_MAX_2_30[3]),
}
# libraries.md 1.5 caps table, rows perChMaxRingLL128, perChMaxTreeLL128, perChMaxTree, perChMaxNVLSTree ("-" = 0).
PER_CH_MAX_RING_LL128 = ((20.0, 20.0, 20.0), (20.0, 20.0, 20.0), (36.7, 36.7, 36.7), (40.0, 40.0, 40.0))
PER_CH_MAX_TREE_LL128 = ((20.0, 20.0, 20.0), (20.0, 20.0, 20.0), (36.7, 36.7, 29.0), (55.6, 31.67, 20.0))
PER_CH_MAX_TREE = ((26.5, 18.5, 10.0), (24.0, 23.6, 17.8), (38.7, 41.4, 36.0), (70.0, 42.8, 24.0))
PER_CH_MAX_NVLSTREE = ((0.0, 0.0, 0.0), (0.0, 0.0, 0.0), (0.0, 57.7, 45.5), (0.0, 96.0, 80.0))
# libraries.md 1.5: refinement factors in code order.
RING_LL_BUS_FACTOR = 0.5
RING_LL128_BUS_FACTOR = 0.92
TREE_AR_BUS_FACTOR = 0.92
TREE_LL_DIVISOR = 3.8
TREE_LL128_FACTOR = {"1node": 7.0 / 9.0, "multinode": 120.0 / 128.0}
PAT_FACTOR = 0.75
COLLNET_DIRECT_INTER_FACTOR = 0.9
COLLNET_DIRECT_SM90_FACTOR = 0.85
TREE_BUS_TO_ALG = 0.5                       # libraries.md 1.5 "Tree, CollNet x 0.5"
# libraries.md 1.5: NVLS efficiency Volta 0, Ampere 0, Hopper 0.85, Blackwell 0.74.
NVLS_EFFICIENCY = (0.0, 0.0, 0.85, 0.74)


def _expand(*runs):
    out = []
    for value, count in runs:
        out.extend([value] * count)
    return tuple(out)


# libraries.md 1.5: treeCorrectionFactor, entry i for nBytes = 64 x 2^i.
TREE_CORRECTION = (
    # LL
    _expand((1.0, 4), (.9, 1), (.8, 1), (.7, 4), (.6, 1), (.5, 1), (.4, 1), (.4, 1), (.5, 1), (.6, 1), (.7, 1),
            (.8, 1), (.9, 1), (1.0, 5)),
    # LL128
    _expand((1.0, 5), (.9, 1), (.8, 3), (.7, 1), (.6, 6), (.8, 1), (.9, 4), (1.0, 3)),
    # Simple
    _expand((.9, 7), (.8, 1), (.7, 1), (.6, 2), (.5, 4), (.6, 1), (.7, 1), (.8, 1), (.7, 2), (.8, 1), (.9, 3)),
)
TREE_CORRECTION_LIMIT = 23          # libraries.md 1.3: Tree AllReduce, applied for 0 <= i < 23
NVLSTREE_CORRECTION_LIMIT = 24      # libraries.md 1.3: NVLSTree AllReduce on SM >= 100 with x86, i < 24

# -- threads and channels per call (libraries.md 1.2, 1.3 step 4) -------------------------------------------
# libraries.md 1.2: threads Simple 512 (256 if ring bwIntra x nCh <= 12), LL 512, LL128 640, NVLS/CollNet 640,
# Tree and PAT always 640.
RING_THREADS = (512, 640, 512)              # LL, LL128, Simple
RING_SIMPLE_FEW_THREADS, RING_SIMPLE_FEW_BW = 256, 12.0
TREE_THREADS = PAT_THREADS = NVLS_THREADS = COLLNET_THREADS = 640
# libraries.md 1.3 step 4: thresholds LL 8 (Ring LL x nRanks), LL128 8, Simple 64, CollNet Simple 512.
THREAD_THRESHOLD = (8, 8, 64)
COLLNET_SIMPLE_THRESHOLD = 512
THREAD_HALVING_MULTIPLE = 128               # libraries.md 1.3 step 4: threads halve if a multiple of 128

# -- the device table ---------------------------------------------------------------------------------------
# Hardware facts, not from libraries.md: SM version (compute capability x 10) of each GPU model, and the host CPU
# vendor of its usual server (for netOverhead, 1.4, and the multi-node llMaxBws row, 1.5): DGX A100 has AMD
# EPYC, DGX/HGX Hopper and DGX B200 Intel Xeon, GB200 the Arm Grace CPU; A800/H800/H20 boards are assumed
# in Intel servers.
DEVICES = {
    "A100": {"sm": 80, "cpu": "amd"},
    "A800": {"sm": 80, "cpu": "intel"},
    "H100": {"sm": 90, "cpu": "intel"},
    "H200": {"sm": 90, "cpu": "intel"},
    "H20": {"sm": 90, "cpu": "intel"},
    "H800": {"sm": 90, "cpu": "intel"},
    "B200": {"sm": 100, "cpu": "intel"},
    "GB200": {"sm": 100, "cpu": "arm"},
}

# ccemu's protocol regimes (topologies/model.py PROTOCOLS) for NCCL's protocols (libraries.md 1.2).
CCEMU_PROTOCOL = {"LL": "ll", "LL128": "ll128", "Simple": "simple"}
# libraries.md 1.3 last bullet: NCCL_ALGO / NCCL_PROTO names (case-insensitive; "collnet" is both CollNet algorithms).
_ALGO_ENV = {"tree": ("Tree",), "ring": ("Ring",), "collnetdirect": ("CollNetDirect",),
             "collnetchain": ("CollNetChain",), "collnet": ("CollNetDirect", "CollNetChain"), "nvls": ("NVLS",),
             "nvlstree": ("NVLSTree",), "pat": ("PAT",)}
_PROTO_ENV = {"ll": ("LL",), "ll128": ("LL128",), "simple": ("Simple",)}
_FUNC_ENV = {"allreduce": "allreduce", "allgather": "allgather", "reducescatter": "reduce_scatter",
             "reduce_scatter": "reduce_scatter", "broadcast": "broadcast", "reduce": "reduce"}


def version_tuple(version: str) -> tuple:
    return tuple(int(x) for x in version.split("."))


def generation(sm: int) -> int:
    """Row of the cap tables (libraries.md 1.5: >= 100 Blackwell, >= 90 Hopper, >= 80 Ampere, else Volta)."""
    return 3 if sm >= 100 else 2 if sm >= 90 else 1 if sm >= 80 else 0


def sm_class(sm: int) -> str:
    return "sm100" if sm >= 100 else "sm90" if sm >= 90 else "pre-sm90"


def node_column(nodes: int) -> int:
    """Column of the cap tables: 1 node / 2 nodes / >= 3 nodes (libraries.md 1.5)."""
    return 0 if nodes == 1 else 1 if nodes == 2 else 2


def pci_GBps(line_rate):
    """NCCL's PCI bandwidth for a x16 link of this line rate (libraries.md 1.5 Links)."""
    if line_rate is None:
        return None
    for line, nccl in PCI_GBps_BY_LINE_RATE.items():
        if abs(line_rate - line) < 1e-6:
            return nccl
    return line_rate * 48.0 / 64.0    # libraries.md 1.5: width x code/80 (Gen5 x16 48) scales with the line rate


# -- the graph search (libraries.md 1.6) -------------------------------------------------------------------

@dataclass(frozen=True)
class Graph:
    """A search result: ``n_channels`` at ``bw_intra`` / ``bw_inter`` GB/s each."""

    pattern: str
    n_channels: int
    bw_intra: float
    bw_inter: float
    same_channels: bool
    speed_before_dup: float = 0.0
    channels_before_dup: int = 0


def search(ladder, max_bw, total_bw, rings_at, min_ch=MIN_CHANNELS, max_ch=MAX_GRAPH_CHANNELS):
    """``(channels, speed)`` of NCCL's search (libraries.md 1.6): start at the top ladder speed <= maxBw with
    speed x minCh <= totalBw; keep a result only if channels x speed beats the best so far; stop once it
    reaches totalBw or the next speed is not above 0.49 of the best speed; then pass 2 tries faster speeds
    at the channel count found.

    >>> search((60, 50, 40, 30, 24, 20), 370.8, 370.8, lambda s: int(370.8 // s))
    (6, 60)
    """
    eps = 1e-9
    speeds = [s for s in ladder if s <= max_bw + eps and s * min_ch <= total_bw + eps]
    best = None
    for i, s in enumerate(speeds):
        n = min(max_ch, rings_at(s))
        if n >= min_ch and (best is None or n * s > best[0] * best[1] + eps):
            best = (n, s)
        if best is not None and best[0] * best[1] >= total_bw - eps:
            break
        if i + 1 < len(speeds) and best is not None and not speeds[i + 1] / best[1] > SEARCH_RATIO:
            break
    if best is None:
        return None
    n, s = best
    for faster in sorted(x for x in speeds if x > s):       # pass 2: faster speeds at this channel count
        if rings_at(faster) >= n:
            s = faster
    return n, s


def _rings(cap_GBps, speed):
    return int(cap_GBps / speed + 1e-9)


def nvlink_GBps(si, dev) -> float:
    """A GPU's NVLink bandwidth as NCCL counts it: link count (sum of ``lanes``) x per-link rate by SM."""
    if si.scaleup_kind != "nvlink":
        raise ValueError(f"the NCCL model needs GPUs joined by NVLink; {si.name!r} has {si.scaleup_kind} links")
    return si.scaleup_lanes * NVLINK_PER_LINK_GBps[dev["sm"]]


def ring_graph(si, dev) -> Graph:
    """The ring graph NCCL's search finds (libraries.md 1.6), after DupChannels.

    >>> from topologies import preset
    >>> from collectives.libraries import system
    >>> g = ring_graph(system(preset("dgx-h100")), DEVICES["H100"])
    >>> g.channels_before_dup, g.speed_before_dup, g.n_channels, g.bw_intra
    (6, 60, 12, 30.0)
    """
    sm = dev["sm"]
    ladders = LADDERS[sm_class(sm)]
    nv = nvlink_GBps(si, dev)
    if si.nodes == 1:
        if si.via_switch:
            # Every ring leaves and enters each GPU once over its NVLinks to the NVSwitch.
            max_bw, rings_at, same = nv, (lambda s: _rings(nv, s)), True
        else:
            # Full NVLink mesh: the P-1 directed Hamiltonian cycles each use every GPU's link to one peer.
            pair = nv / max(1, si.mesh_peers)
            max_bw, rings_at, same = pair, (lambda s: si.mesh_peers * _rings(pair, s)), False
        found = search(ladders["intra"], max_bw, nv, rings_at)
    else:
        if not si.nic_GBps or not si.nics_per_node:
            raise ValueError(f"{si.name!r} has {si.nodes} servers but no NIC the NCCL model can see")
        path = min(si.nic_GBps, pci_GBps(si.attach_GBps) or si.nic_GBps)   # GPU -> NIC path (1.5 Links)
        share = (si.ppn - 1) / si.ppn if si.ppn > 1 else 0.0

        def rings_at(s):
            # One NIC per ring in and out; every GPU but the exit one forwards each ring over NVLink.
            r = si.nics_per_node * _rings(path, s)
            return min(r, _rings(nv / share, s)) if share else r
        found = search(ladders["inter"], min(path, nv), nv, rings_at)
        same = False
    if found is None:
        raise ValueError(f"NCCL's ring search finds no ring on {si.name!r}")
    n0, s0 = found
    n, bw = n0, float(s0)
    if bw >= DUP_MIN_BW and not (sm > DUP_SM and bw < DUP_BW_BELOW and n > DUP_CH_ABOVE) \
            and 2 * n <= MAX_GRAPH_CHANNELS:
        n, bw = 2 * n, bw / 2
    return Graph("ring", n, bw, bw, same, s0, n0)


def nvls_graph(si, dev) -> Graph | None:
    """The NVLS graph (Reading of libraries.md 1.6): one channel per head, at the top ladder speed with
    heads x speed <= the GPU's NVLink bandwidth (and <= the NIC path across servers)."""
    heads = min(MAX_NVLS_HEADS, si.ppn)
    nv = nvlink_GBps(si, dev)
    ladders = LADDERS[sm_class(dev["sm"])]
    if si.nodes == 1:
        cap, ladder = nv / heads, ladders["intra"]
    else:
        path = min(si.nic_GBps or 0.0, pci_GBps(si.attach_GBps) or si.nic_GBps or 0.0)
        cap, ladder = min(nv / heads, path), ladders["inter"]
    speeds = [s for s in ladder if s <= cap + 1e-9]
    if not speeds:
        return None
    return Graph("nvls", heads, float(speeds[0]), float(speeds[0]), True, float(speeds[0]), heads)


def comm_channels(graph: Graph, si, dev) -> int:
    """Runtime channels (libraries.md 1.6 ncclTopoPostset): min(64, 2 x graph), x2 on SM >= 90 multi-node
    with bwIntra > 45 and fewer than 16 graph channels."""
    n = min(MAXCHANNELS, 2 * graph.n_channels)
    if dev["sm"] >= POSTSET_SM and si.nodes > 1 and graph.bw_intra > POSTSET_BW_ABOVE \
            and graph.n_channels < POSTSET_CH_BELOW:
        n = min(MAXCHANNELS, 2 * n)
    return n


def nvls_channels(si, dev, algo: str, comm_nch: int) -> int:
    """nvlsChannels (libraries.md 1.6), multi-node NVLS taking min(nvls, nChannels) (1.3 step 4)."""
    sm = dev["sm"]
    if sm >= 100:
        if si.nodes == 1:
            n = NVLS_CHANNELS["sm100-1node"]
        elif algo == "NVLSTree":
            lo, hi, ppn_max = NVLSTREE_SM100_NIC
            nic = si.nic_GBps or 0.0
            n = NVLS_CHANNELS["sm100-multinode"]
            if si.nodes == 2 and nic >= lo:
                n = 32
            elif nic >= hi:
                n = 24 if si.ppn <= ppn_max else 32
            elif nic >= lo:
                n = 24
        else:
            n = NVLS_CHANNELS["sm100-multinode"]
    else:
        n = NVLS_CHANNELS["sm90"]
    if algo == "NVLS" and si.nodes > 1:
        n = min(n, comm_nch)
    return n


#: nccl-tests' collectives NCCL runs on its p2p path, grouped ncclSend/ncclRecv with no tuner (no
#: algorithm or protocol choice, no cost model: libraries.md 1.1 for AllToAll; nccl-tests'
#: src/gather.cu, scatter.cu, sendrecv.cu, hypercube.cu call ncclSend/ncclRecv, or from NCCL 2.28
#: ncclGather/ncclScatter, read here as the same p2p path: an assumption, libraries.md does not
#: cover them): ``{collective: (ccemu algorithm, what NCCL runs, how ccemu's schedule stands for it)}``.
P2P = {
    "alltoall": ("direct", "no tuned AllToAll: grouped ncclSend/ncclRecv on p2p channels (libraries.md 1.1)",
                 "every pair at once, as the grouped send/recv are launched together"),
    "gather": ("direct", "no tuned Gather: grouped ncclSend/ncclRecv to the root (ncclGather from 2.28) on p2p "
                         "channels", "every block to the root at once, as the grouped send/recv are launched together"),
    "scatter": ("direct", "no tuned Scatter: grouped ncclSend/ncclRecv from the root (ncclScatter from 2.28) on p2p "
                          "channels", "every block from the root at once, as the grouped send/recv are launched "
                                      "together"),
    "sendrecv": ("direct", "no tuned SendRecv: ncclSend to rank+1 and ncclRecv from rank-1 in one group on p2p "
                           "channels", "every device to the next at once, as the grouped send/recv are launched "
                                       "together"),
    "hypercube": ("recursive_doubling", "no tuned HyperCube: one group of ncclSend/ncclRecv with rank ^ mask per "
                                        "dimension (nccl-tests' hypercube_perf) on p2p channels",
                  "log2(P) exchange steps, one per group"),
}


def p2p_channels(comm_nch: int) -> int:
    """pow2Up(min(nChannels, NCCL_MAX_P2P_NCHANNELS)) (libraries.md 1.6); the maximum taken as MAXCHANNELS."""
    n = min(comm_nch, MAXCHANNELS)
    return 1 << max(0, (n - 1).bit_length())


def call_channels(nbytes, start, threads, threshold):
    """libraries.md 1.3 step 4: drop channels by 1 while nBytes < nc x nThreads x threshold, then halve the
    threads (while a multiple of 128) by the same rule. Returns ``(channels, threads)``.

    >>> call_channels(1024, 24, 512, 64)
    (1, 64)
    >>> call_channels(256 << 20, 24, 512, 64)
    (24, 512)
    """
    nc, nt = start, threads
    while nbytes < nc * nt * threshold:
        if nc > 1:
            nc -= 1
        elif nt % THREAD_HALVING_MULTIPLE == 0:
            nt //= 2
        else:
            break
    return nc, nt


def log2_index(nbytes: int) -> int:
    """i = log2(nBytes / 64), integer (libraries.md 1.3); -1 below 64 bytes."""
    return (nbytes >> 6).bit_length() - 1


def nsteps(collective: str, n: int) -> int:
    """libraries.md 1.4: 2(n-1) AllReduce, n-1 AllGather / ReduceScatter, n otherwise."""
    if collective == "allreduce":
        return 2 * (n - 1)
    if collective in ("allgather", "reduce_scatter"):
        return n - 1
    return n


# -- NCCL_ALGO / NCCL_PROTO (libraries.md 1.3 last bullet) ----------------------------------------------------

def parse_selection(key, value, names, universe, collective, per_function: bool, version: str):
    """The names ``key=value`` enables for ``collective`` (``None``: not restricted).

    Comma lists, ``^`` excludes; with ``per_function`` also ``list;func:list;...`` where a function's
    own list wins over the general one.

    >>> sorted(parse_selection("NCCL_ALGO", "^tree", _ALGO_ENV, ALGORITHMS, "allreduce", True, "2.30.7"))
    ['CollNetChain', 'CollNetDirect', 'NVLS', 'NVLSTree', 'PAT', 'Ring']
    >>> parse_selection("NCCL_ALGO", "ring;allreduce:nvls", _ALGO_ENV, ALGORITHMS, "allreduce", True, "2.30.7")
    {'NVLS'}
    """
    def one_list(text):
        text = text.strip()
        exclude = text.startswith("^")
        if exclude:
            text = text[1:]
        chosen = set()
        for tok in text.split(","):
            t = tok.strip().lower()
            if t not in names:
                raise ValueError(f"{key}={value!r}: unknown name {tok.strip()!r}; expected {', '.join(names)} "
                                 "(comma list, '^' to exclude)")
            chosen.update(names[t])
        return set(universe) - chosen if exclude else chosen

    general = specific = None
    for entry in value.split(";"):
        if not entry.strip():
            continue
        if ":" in entry:
            if not per_function:
                raise ValueError(f"{key}={value!r}: per-function lists (func:list) exist since NCCL 2.24; "
                                 f"version {version} takes one comma list")
            funcs, lst = entry.split(":", 1)
            targets = set()
            for f in funcs.split(","):
                f = f.strip().lower()
                if f not in _FUNC_ENV:
                    raise ValueError(f"{key}={value!r}: unknown function {f!r}; expected "
                                     f"{', '.join(sorted(set(_FUNC_ENV) - {'reduce_scatter'}))}")
                targets.add(_FUNC_ENV[f])
            if collective in targets:
                specific = one_list(lst)
        else:
            general = one_list(entry)
    return specific if specific is not None else general


# -- the cost table -----------------------------------------------------------------------------------------

@dataclass
class Entry:
    """One (algorithm, protocol): latency, bus and algorithm bandwidth (GB/s), time, channels, or why not."""

    algorithm: str
    protocol: str
    lat_us: float = 0.0
    bus_GBps: float = 0.0
    alg_GBps: float = 0.0
    time_us: float | None = None
    channels: int | None = None
    threads: int | None = None
    reason: str = ""

    def candidate(self) -> Candidate:
        if self.time_us is None:
            return Candidate(self.algorithm, self.protocol, self.channels, None, self.reason)
        why = f"lat {self.lat_us:.2f} us, algBw {self.alg_GBps:.2f} GB/s (busBw {self.bus_GBps:.2f})"
        return Candidate(self.algorithm, self.protocol, self.channels, self.time_us, why)


class NCCLModel:
    """NCCL's tuner (module docstring). ``choose`` picks; ``cost_table`` and ``graphs`` show the parts."""

    name = NAME
    versions = VERSIONS
    default_version = DEFAULT_VERSION
    algorithms = ALGORITHMS
    #: The collectives this model has a tuner for (nccl-tests' and hccl_test's); others run as ``ideal``.
    collectives = MODELLED_COLLECTIVES
    protocols = PROTOCOLS
    env_keys = ("NCCL_ALGO", "NCCL_PROTO")
    devices = DEVICES

    # -- system ---------------------------------------------------------------------------------------
    def device(self, si) -> dict:
        dev = self.devices.get(si.model)
        if dev is None:
            raise ValueError(f"{self.name} has no device entry for {si.model!r} ({si.name}); expected one of "
                             f"{', '.join(self.devices)}")
        return dev

    def graphs(self, topology) -> dict:
        """``{"ring", "tree", "nvls"}`` graphs and ``comm_channels`` of ``topology``.

        >>> from topologies import preset
        >>> g = NCCL.graphs(preset("dgx-h100"))
        >>> g["ring"].n_channels, g["ring"].bw_intra, g["comm_channels"], g["nvls"].n_channels, g["nvls"].bw_intra
        (12, 30.0, 24, 8, 40.0)
        """
        si = system(topology)
        dev = self.device(si)
        ring = ring_graph(si, dev)
        nvls = nvls_graph(si, dev)
        return {"system": si, "device": dev, "ring": ring, "tree": ring, "nvls": nvls,
                "comm_channels": comm_channels(ring, si, dev)}

    # -- eligibility -------------------------------------------------------------------------------------
    def ineligible(self, algo, proto, collective, si, dev, version, g) -> str | None:
        if algo not in MODELLED.get(collective, ()):
            return f"not modelled for {collective}"
        if version_tuple(version) < SINCE[algo]:
            return f"{algo} appeared in NCCL {'.'.join(map(str, SINCE[algo]))}"
        p = PROTOCOLS.index(proto)
        if algo in ("CollNetDirect", "CollNetChain"):
            return "CollNet needs collnetEnable (NCCL_COLLNET_ENABLE and a SHARP network; none here)"
        if algo in ("NVLS", "NVLSTree"):
            if p != SIMPLE:
                return f"{algo} runs Simple only"
            if dev["sm"] < 90:
                return f"NVLS needs SM >= 90 (this GPU is SM{dev['sm']})"
            if not (si.via_switch and si.reducing_switch):
                return "NVLS needs an NVSwitch that reduces (reduce=True)"
            if si.ppn < 2:
                return "NVLS needs >= 2 GPUs per server"
            if g["nvls"] is None or g["nvls"].n_channels < 2:
                return "NVLS needs an NVLS graph of >= 2 channels"
            if algo == "NVLS" and si.nodes > 1:
                return "NVLS across servers needs CollNet (IB SHARP), not enabled"
            if algo == "NVLSTree" and si.nodes == 1:
                return "NVLSTree is off on one server"
            if algo == "NVLS" and collective != "allreduce" and si.ppn > MAX_NVLS_HEADS:
                return f"NVLS for {collective} skipped with more than {MAX_NVLS_HEADS} local ranks"
        if algo == "PAT":
            if p != SIMPLE:
                return "PAT runs Simple only"
            if si.nodes != si.P:
                return "PAT needs one GPU per server (nNodes == nRanks)"
            if dev["sm"] < 60:
                return "PAT needs SM >= 60"
        if p == LL128 and not self.ll128_enabled(si, dev):
            return "LL128 off: needs NVLink inside the server and SM >= 70"
        return None

    def ll128_enabled(self, si, dev) -> bool:
        # libraries.md 1.1: typeIntra <= NVB and the GPU-NIC path <= PXN (SM >= 90) else <= PXB, SM >= 70. The
        # presets attach each NIC to its GPU directly (PIX), so only the intra path decides.
        return si.scaleup_kind == "nvlink" and dev["sm"] >= 70

    # -- latency (libraries.md 1.4) --------------------------------------------------------------------
    def latency(self, algo, proto, collective, si, dev, version, g) -> float:
        p = PROTOCOLS.index(proto)
        n, N = si.P, si.nodes
        ppn = n / N
        hw = HW_LAT[version]
        base = BASE_LAT[version][algo][p]
        intra_row = hw["NVLINK"] if si.scaleup_kind == "nvlink" else hw["PCI"]
        intra = intra_row[algo][p]
        inter = hw["NET"][algo if ppn > 1 else "Tree"][p] + LATENCY_INTER_US * (2 if p == SIMPLE else 1)
        overhead = NET_OVERHEAD_US[dev["cpu"]] * (NET_OVERHEAD_SIMPLE_FACTOR if p == SIMPLE else 1.0)
        steps = nsteps(collective, n)
        if algo == "Ring":
            if collective in ("allreduce", "allgather", "reduce_scatter"):
                k = 2 * (N - 1) if collective == "allreduce" else N - 1
                per = max(intra, overhead) if N > 1 else intra
                return base + (steps - k) * per + k * inter
            row = hw["NET"] if N > 1 else intra_row
            hop = row["Tree" if p == SIMPLE else "Ring"][p]
            return base + (hop if g["ring"].same_channels else steps * hop)
        if algo == "Tree":
            return base + 2 * ((ppn - 1) * intra + math.log2(N) * inter)
        if algo == "CollNetDirect":                 # libraries.md 1.4: the 0.4 per extra local rank
            return base + 2 * (min(1, ppn - 1) * intra + 0.4 * (ppn - 1)) + inter
        if algo == "CollNetChain":
            return base + 2 * (ppn - 1) * intra + inter
        if algo == "NVLS":
            return intra + (inter if N > 1 else 0.0)
        if algo == "NVLSTree":
            return base + intra + 2 * math.log2(N) * inter
        if algo == "PAT":                           # libraries.md 1.4: interLat / 3.5 per level, 2.8 per rank
            return base + math.log2(N) * inter / 3.5 + 2.8 * n
        raise AssertionError(algo)

    # -- bandwidth (libraries.md 1.5) --------------------------------------------------------------------
    def bus_bw(self, algo, proto, collective, si, dev, version, g) -> float:
        p = PROTOCOLS.index(proto)
        N = si.nodes
        ppn = si.P / N
        gen, col = generation(dev["sm"]), node_column(N)
        graph = g["nvls"] if algo in ("NVLS", "NVLSTree") else g["tree"] if algo == "Tree" else g["ring"]
        collnet = algo.startswith("CollNet")
        bw = graph.bw_intra if (N <= 2 or collnet) else graph.bw_inter
        nch = graph.n_channels
        bus = nch * bw
        ll_row = gen if N == 1 else (1 if dev["cpu"] == "amd" else 0)
        ll_max = LL_MAX_BWS[version][ll_row][col]
        if algo == "Ring" and p == LL:
            bus = min(ll_max, RING_LL_BUS_FACTOR * bus)
        if algo == "Ring" and p == LL128:
            bus = min(RING_LL128_BUS_FACTOR * bus, nch * PER_CH_MAX_RING_LL128[gen][col])
        if algo == "Tree" and collective == "allreduce":
            bus = min(TREE_AR_BUS_FACTOR * bus, nch * PER_CH_MAX_TREE[gen][col])
        if algo == "Tree" and p == LL:
            bus = min(bus / TREE_LL_DIVISOR, ll_max)
        if algo == "Tree" and p == LL128:
            f = TREE_LL128_FACTOR["1node" if N == 1 else "multinode"]
            bus = min(bus * f, nch * PER_CH_MAX_TREE_LL128[gen][col])
        if algo == "PAT":
            bus *= PAT_FACTOR
        if collnet and p != SIMPLE:
            bus = 0.0
        if algo == "CollNetDirect" and p == SIMPLE:
            if collective in ("allgather", "reduce_scatter"):
                bus = ppn * min(graph.bw_intra, COLLNET_DIRECT_INTER_FACTOR * graph.bw_inter)
            else:
                f = ppn / nch
                bus = bus / (f - (f - 1) / 2) if f > 0 else 0.0
            if dev["sm"] >= 90:
                bus *= COLLNET_DIRECT_SM90_FACTOR
        if algo in ("NVLS", "NVLSTree"):
            intra_bw = graph.bw_intra * NVLS_EFFICIENCY[gen] * (nch - 1) / nch
            intra_bw *= 2 if collective == "allreduce" else (ppn - 1) / ppn
            inter_bw = graph.bw_inter * (2 if (algo == "NVLSTree" and N <= 2) else 1)
            per = intra_bw if N == 1 else min(intra_bw, inter_bw)
            if algo == "NVLSTree":
                per = min(per, PER_CH_MAX_NVLSTREE[gen][col])
            bus = nch * per
        return bus

    def alg_bw(self, algo, proto, collective, bus, si, dev, nbytes) -> float:
        n = si.P
        two_sided = collective in ("allgather", "reduce_scatter")
        if algo == "Ring":
            alg = bus * n / nsteps(collective, n)
        elif algo in ("NVLS", "NVLSTree"):
            alg = bus if two_sided else bus * n / nsteps(collective, n)
        elif algo in ("Tree", "CollNetChain") or (algo == "CollNetDirect" and not two_sided):
            alg = bus * TREE_BUS_TO_ALG
        else:                                       # PAT, CollNetDirect AG/RS: unconverted
            alg = bus
        i = log2_index(nbytes)
        p = PROTOCOLS.index(proto)
        if collective == "allreduce" and algo == "Tree" and 0 <= i < TREE_CORRECTION_LIMIT:
            alg *= TREE_CORRECTION[p][i]
        if (collective == "allreduce" and algo == "NVLSTree" and dev["sm"] >= 100 and dev["cpu"] in ("intel", "amd")
                and 0 <= i < NVLSTREE_CORRECTION_LIMIT):
            alg *= TREE_CORRECTION[p][i]
        return alg

    # -- channels per call (libraries.md 1.3 step 4) -------------------------------------------------------
    def channels(self, algo, proto, nbytes, si, dev, g) -> tuple[int, int]:
        p = PROTOCOLS.index(proto)
        comm = g["comm_channels"]
        if algo in ("NVLS", "NVLSTree"):
            return nvls_channels(si, dev, algo, comm), NVLS_THREADS
        if algo == "Ring":
            ring = g["ring"]
            threads = RING_THREADS[p]
            if p == SIMPLE and ring.bw_intra * ring.n_channels <= RING_SIMPLE_FEW_BW:
                threads = RING_SIMPLE_FEW_THREADS
            threshold = THREAD_THRESHOLD[p] * (si.P if p == LL else 1)
        elif algo in ("CollNetDirect", "CollNetChain"):
            threads, threshold = COLLNET_THREADS, COLLNET_SIMPLE_THRESHOLD
        else:                                       # Tree, PAT
            threads, threshold = (PAT_THREADS if algo == "PAT" else TREE_THREADS), THREAD_THRESHOLD[p]
        return call_channels(nbytes, comm, threads, threshold)

    # -- the table ---------------------------------------------------------------------------------------
    def cost_table(self, collective, nbytes, topology, version=None, env=None) -> list[Entry]:
        """Every (algorithm, protocol) in NCCL's order with its latency, bandwidth and time, or the reason
        it is not eligible (libraries.md 1.3 steps 1-2 and 4).

        >>> from topologies import preset
        >>> rows = {(e.algorithm, e.protocol): e for e in NCCL.cost_table("allreduce", 1 << 30, preset("dgx-h100"))}
        >>> [round(rows["Ring", p].lat_us, 1) for p in PROTOCOLS]
        [15.0, 40.6, 56.0]
        >>> [round(rows["Ring", p].alg_GBps, 1) for p in PROTOCOLS]
        [80.6, 189.3, 205.7]
        """
        check_call(collective, nbytes)
        nbytes = int(nbytes)
        version = check_version(self, version)
        env = check_env(self, env)
        g = self.graphs(topology)
        return self._table(collective, nbytes, version, env, g)

    def _masks(self, collective, version, env):
        per_function = version_tuple(version) >= PER_FUNCTION_SINCE
        algos = protos = None
        if "NCCL_ALGO" in env:
            algos = parse_selection("NCCL_ALGO", env["NCCL_ALGO"], _ALGO_ENV, ALGORITHMS, collective, per_function,
                                    version)
        if "NCCL_PROTO" in env:
            protos = parse_selection("NCCL_PROTO", env["NCCL_PROTO"], _PROTO_ENV, PROTOCOLS, collective,
                                     per_function, version)
        return algos, protos

    def _table(self, collective, nbytes, version, env, g) -> list[Entry]:
        si, dev = g["system"], g["device"]
        algos, protos = self._masks(collective, version, env)
        rows = []
        for algo in ALGORITHMS:
            for proto in PROTOCOLS:
                e = Entry(algo, proto)
                why = self.ineligible(algo, proto, collective, si, dev, version, g)
                if why is None and algos is not None and algo not in algos:
                    why = f"excluded by NCCL_ALGO={env['NCCL_ALGO']}"
                if why is None and protos is not None and proto not in protos:
                    why = f"excluded by NCCL_PROTO={env['NCCL_PROTO']}"
                if why is None:
                    self._fill(e, collective, nbytes, si, dev, version, g)
                else:
                    e.reason = why
                rows.append(e)
        return rows

    def _fill(self, e, collective, nbytes, si, dev, version, g):
        algo, proto = e.algorithm, e.protocol
        e.bus_GBps = self.bus_bw(algo, proto, collective, si, dev, version, g)
        if e.bus_GBps <= 0:
            e.reason = "bandwidth 0 (ineligible)"
            return
        e.alg_GBps = self.alg_bw(algo, proto, collective, e.bus_GBps, si, dev, nbytes)
        if e.alg_GBps <= 0:
            e.reason = "bandwidth 0 (ineligible)"
            return
        lat = self.latency(algo, proto, collective, si, dev, version, g)
        comm = g["comm_channels"]
        if (algo == "Ring" and proto == "Simple" and collective == "allreduce" and si.nodes > 1
                and nbytes / (comm * si.P) >= PLATEAU_MIN_BYTES):
            lat *= PLATEAU_FACTOR["sm80+" if dev["sm"] >= 80 else "older"]
        e.lat_us = lat
        e.time_us = lat + nbytes / (1000.0 * e.alg_GBps)
        e.channels, e.threads = self.channels(algo, proto, nbytes, si, dev, g)

    # -- the pick ------------------------------------------------------------------------------------------
    def choose(self, collective, nbytes, topology, version=None, env=None) -> Choice:
        """NCCL's pick for one call: the strict minimum of its cost table, ties to the earlier algorithm
        then protocol (libraries.md 1.3).

        >>> from topologies import preset
        >>> c = NCCL.choose("allreduce", 1 << 20, preset("dgx-h100"))
        >>> c.algorithm, c.protocol, c.channels, round(c.predicted_us, 2), c.ccemu_algorithm, c.ccemu_protocol
        ('Ring', 'LL', 24, 28.01, 'ring', 'll')
        >>> NCCL.choose("allreduce", 256 << 20, preset("dgx-h100"), env={"NCCL_ALGO": "^nvls"}).algorithm
        'Ring'
        """
        check_call(collective, nbytes)
        tuned = tuned_as(self, collective, nbytes, topology, version, env)
        if tuned is not None:
            return tuned
        nbytes = int(nbytes)
        version = check_version(self, version)
        env = check_env(self, env)
        g = self.graphs(topology)
        si = g["system"]
        notes = []
        if collective in P2P:
            return self._p2p(collective, nbytes, version, g)
        if si.P == 1:
            return Choice(self.name, version, collective, nbytes, "Ring", "Simple", 1, 0.0,
                          [Candidate("Ring", "Simple", 1, 0.0, "one rank: nothing to do")], "ring", {}, "simple",
                          True, "one rank")
        rows = self._table(collective, nbytes, version, env, g)
        pick = _strict_min(rows)
        if pick is None:
            if version_tuple(version) >= PER_FUNCTION_SINCE:
                raise ValueError(f"NCCL {version} has no algorithm/protocol left for {collective} on {si.name} "
                                 f"with {_env_text(env)} (no implicit Ring fallback since 2.24): "
                                 + "; ".join(f"{e.algorithm}/{e.protocol}: {e.reason}" for e in rows
                                             if e.algorithm in MODELLED.get(collective, ())))
            # Before 2.24 NCCL falls back to Ring when the selection leaves nothing (libraries.md 1.3).
            ring_env = {k: v for k, v in env.items() if k != "NCCL_ALGO"}
            rows = self._table(collective, nbytes, version, ring_env, g)
            pick = _strict_min([e for e in rows if e.algorithm == "Ring"])
            if pick is None:
                raise ValueError(f"NCCL {version}: no Ring protocol left for {collective} with {_env_text(env)}")
            notes.append("nothing left by NCCL_ALGO: NCCL before 2.24 falls back to Ring")
        if pick.channels != g["comm_channels"] and pick.algorithm in ("Ring", "Tree", "PAT"):
            notes.append(f"channels {g['comm_channels']} -> {pick.channels}, threads {pick.threads} "
                         "(libraries.md 1.3 step 4)")
        alg, params, exact, note = self.mapping(pick.algorithm, collective, si, pick.channels)
        return Choice(self.name, version, collective, nbytes, pick.algorithm, pick.protocol, pick.channels,
                      pick.time_us, [e.candidate() for e in rows], alg, params, CCEMU_PROTOCOL[pick.protocol], exact,
                      note, notes=notes)

    def _p2p(self, collective, nbytes, version, g) -> Choice:
        """The p2p path (:data:`P2P`): ``SendRecv``/``Simple`` on the p2p channels, no predicted time."""
        nch = p2p_channels(g["comm_channels"])
        alg, what, how = P2P[collective]
        why = f"{what}; no cost model"
        return Choice(self.name, version, collective, nbytes, "SendRecv", "Simple", nch, None,
                      [Candidate("SendRecv", "Simple", nch, None, why)], alg, {}, "simple", False,
                      f"approximate: {how}", notes=[why])

    def mapping(self, algo, collective, si, channels):
        """``(ccemu algorithm, params, exact, note)`` for a pick (module docstring table)."""
        cap = ring_channel_cap(si)
        nch = max(1, min(channels or 1, cap))
        if (algo == "Ring" and si.nodes == 1 and si.full_mesh and si.P > 2
                and "orders" in registry.info(collective, "ring").params):
            return "ring", {"channels": cap, "orders": "mesh"}, False, (
                f"approximate: ring over ccemu's {cap} mesh rings, which use every link alike, as the library's "
                "ring orders on a full mesh do (libraries.md 2.2); its channels are CTAs on those orders")
        if (algo == "Ring" and si.nodes > 1 and si.uniform and si.ppn > 1
                and "orders" in registry.info(collective, "ring").params):
            rails = rail_channel_count(si.ppn)
            return "ring", {"channels": min(channels or 1, rails), "orders": "rails"}, False, (
                f"approximate: ring over min(NCCL's {channels}, {rails}) rail rings, each crossing between "
                "servers rail to rail as NCCL's rings do on a rail-optimised fabric")
        if algo == "Ring":
            note = (f"ring with channels = min(NCCL's {channels}, the {cap} link-disjoint rings ccemu has here); "
                    "ccemu's channels are rings on index strides, NCCL's are CTAs on one ring order")
            return "ring", {"channels": nch}, False, "approximate: " + note
        if algo == "Tree":
            if si.nodes == 1 and si.full_mesh:   # trees take the stride orders: one per coprime stride
                nch = max(1, min(channels or 1, len(coprime_strides(si.P))))
            return "tree", {"channels": nch}, False, ("approximate: ccemu's double binary tree spans all ranks; "
                                                      "NCCL chains the GPUs of a server")
        if algo == "NVLS":
            if collective == "allreduce":
                return "in_network", {}, True, "exact: the NVSwitch reduces and multicasts (in_network)"
            return "direct", {}, False, "approximate: NVLS AllGather/ReduceScatter as a one-shot mesh (no multicast)"
        if algo in ("NVLSTree", "CollNetDirect", "CollNetChain") and not si.uniform:
            return "tree", {"channels": nch}, False, (f"approximate: {algo} as ccemu's tree, since its two-level "
                                                      "composition needs servers of equal size and these differ")
        if algo == "NVLSTree":
            return ("hierarchical", {"intra": "direct", "inter": "halving_doubling"}, False,
                    "approximate: hierarchical has no in_network intra part; direct inside, halving-doubling across")
        if algo in ("CollNetDirect", "CollNetChain"):
            if collective == "allreduce" and si.reducing_switch and si.nodes == 1:
                return "in_network", {}, False, "approximate: CollNet as in-network reduction"
            return ("hierarchical", {"intra": "direct", "inter": "ring"}, False,
                    "approximate: CollNet as a two-level composition")
        if algo == "PAT":
            return "bruck", {}, False, "approximate: PAT as Bruck (log-depth)"
        raise AssertionError(algo)


def _strict_min(rows):
    best = None
    for e in rows:                      # NCCL's order: ties keep the earlier algorithm, then protocol
        if e.time_us is not None and (best is None or e.time_us < best.time_us):
            best = e
    return best


def _env_text(env):
    return ", ".join(f"{k}={v}" for k, v in env.items()) or "no overrides"


NCCL = NCCLModel()
