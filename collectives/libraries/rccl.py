"""RCCL's tuner (libraries.md §2): NCCL's cost table with RCCL's constants, tuning model 5 (MI300X).

What is modelled, by libraries.md section:

- 2.1 NCCL's algorithm set without PAT (2.21.5), and no NVLS or CollNet hardware on AMD, so Ring and
  Tree remain; baseLat 12/12/17; tuning model 5's hwLat (xGMI as the NVLINK row), bwRatio (<= 2 / > 2
  servers) and 27-entry correction factors (Tree always, Ring only across servers); NCCL's caps are
  not applied; Ring LL Broadcast/Reduce x1.65 on one gfx94 server; Tree/Simple skipped on one gfx94
  server; LL128 off; inter latency is the NET row (graph latencyInter 0), AllReduce crosses servers
  in 2N steps, no ring plateau factor; when nothing has bandwidth, Ring's is restored.
- 2.2 the MI300X ring graph: ``rome_model_79`` (8 GPUs, 7 xGMI links of 48 GB/s each, 28 rings)
  and the channel arithmetic (max 128, 64 across servers or the CU count for 80/20/38 CUs; postset x2
  if <= max/2, then x nc: 2, or 16 / 4 for 2 / 4 ranks): 8 ranks -> 28 -> 56 -> 112 channels
  (libraries.md marks 112 unverified by any log).
- 2.3 MSCCL: noted, not picked. Where ``RCCL_MSCCL_ENABLE=1`` (the default) would run an MSCCL
  schedule instead (MI300X, 8 ranks, AllReduce / AllToAll in the size windows), ``Choice.notes`` says
  so; the pick and the ccemu mapping stay the tuner's.

Left out: MSCCL++ (graph capture only, 2.3), the newer RCCL of 2.4 (per-release detail unverified:
one version, 2.21.5, is documented), models other than 5 (so MI250X / gfx90a raises), baseBw
(rome_model_79 sets none, 2.2). Readings: the per-channel speed of the rome-model rings is the xGMI
bandwidth shared by the rings over each link (7 x 48 / 28 = 12 GB/s); across servers the rings come
from NCCL's search on the pre-SM90 inter ladder without DupChannels (libraries.md gives RCCL's
multi-node search no constants of its own); threads and channel thresholds per call are NCCL's.

Mapping to ccemu: as :mod:`.nccl` (Ring -> ``ring``, Tree -> ``tree``, both approximate: ccemu's
rings on index strides use 4 of the 7 xGMI links of an 8-GPU mesh where the 28 rome-model rings use
all of them; AllToAll, Gather, Scatter, SendRecv and HyperCube on NCCL's p2p path, :data:`.nccl.P2P`).
"""

from __future__ import annotations

import math

from . import Choice, check_call, check_env, check_version, system, tuned_as
from . import nccl
from .nccl import LL, LL128, SIMPLE, Graph, NCCLModel, PROTOCOLS, nsteps

NAME = "rccl"
VERSIONS = ("2.21.5",)              # libraries.md header: ROCm/rccl 2.21.5 (commit 0cbce2a)
DEFAULT_VERSION = "2.21.5"

# libraries.md 2.1: NCCL's algorithm set, no PAT in 2.21.5.
ALGORITHMS = ("Tree", "Ring", "CollNetDirect", "CollNetChain", "NVLS", "NVLSTree")
MODELLED = {c: tuple(a for a in algos if a in ALGORITHMS) for c, algos in nccl.MODELLED.items()}

# libraries.md 2.1: baseLat (us, LL/LL128/Simple) 12/12/17 for Tree, Ring, CollNetDirect, CollNetChain; NVLS 0.
BASE_LAT = {"2.21.5": {"Tree": (12.0, 12.0, 17.0), "Ring": (12.0, 12.0, 17.0), "CollNetDirect": (12.0, 12.0, 17.0),
                       "CollNetChain": (12.0, 12.0, 17.0), "NVLS": (0.0, 0.0, 0.0), "NVLSTree": (0.0, 0.0, 0.0)}}
# libraries.md 2.1: tuning model 5 hwLat (NVLINK = xGMI); rows for algorithms without hardware are 0.
HW_LAT = {5: {
    "NVLINK": {"Tree": (0.9, 0.0, 2.3), "Ring": (0.8, 0.0, 2.1)},
    "PCI": {"Tree": (2.2, 2.2, 5.7), "Ring": (2.2, 2.2, 5.7)},
    "NET": {"Tree": (10.5, 0.0, 25.0), "Ring": (9.5, 0.0, 320.0)},
}}
# libraries.md 2.1: model 5 bwRatio, <= 2 nodes and > 2 nodes.
BW_RATIO = {5: {"<=2": {"Tree": (0.06, 0.0, 0.11), "Ring": (0.08, 0.0, 1.00)},
                ">2": {"Tree": (0.06, 0.0, 0.59), "Ring": (0.08, 0.0, 1.00)}}}
# libraries.md 2.1: Ring LL Broadcast/Reduce x1.65 on single-node gfx94.
RING_LL_ROOTED_GFX94 = 1.65
# libraries.md 2.1: "interLat = graph latencyInter if nonzero else hwLat NET"; latencyInter read as 0 (as NCCL's).
LATENCY_INTER_US = 0.0
# libraries.md 1.4 (RCCL's latency is "as NCCL"): netOverhead by host CPU, x3 Simple.
NET_OVERHEAD_US = nccl.NET_OVERHEAD_US
NET_OVERHEAD_SIMPLE_FACTOR = nccl.NET_OVERHEAD_SIMPLE_FACTOR


def _expand(*runs):
    out = []
    for value, count in runs:
        out.extend([value] * count)
    assert len(out) == CORRECTION_ENTRIES, len(out)
    return tuple(out)


# libraries.md 2.1: correction factors have 27 entries, i = log2(nBytes/64) clamped to 26.
CORRECTION_ENTRIES = 27
CORRECTION = {5: {
    "Tree": (_expand((.1, 6), (1.0, 5), (.6, 1), (1.0, 1), (.9, 1), (1.0, 1), (1.0, 1), (.1, 11)),     # LL
             _expand((0.0, 27)),                                                                     # LL128
             _expand((.1, 15), (.7, 1), (1.0, 10), (.8, 1))),                                         # Simple
    "Ring": (_expand((.1, 11), (1.0, 1), (.2, 1), (1.0, 1), (.4, 1), (.4, 1), (.1, 1), (.2, 1), (.2, 1), (.1, 8)),
             _expand((0.0, 27)),
             _expand((.1, 23), (.8, 1), (1.0, 1), (1.0, 1), (1.0, 1))),
}}

# libraries.md 2.2: xGMI link = LINK_NVL, count x 48 GB/s (GFX94X_XGMI_WIDTH 48.0).
XGMI_WIDTH_GBps = {"gfx942": 48.0}
# libraries.md 2.2: rome_model_79: 8 GPUs, 7 links per GPU, full mesh, 28 ring orderings, tuning 5.
ROME_MODEL_79 = {"gpus": 8, "links": 7, "rings": 28, "tuning": 5}
# libraries.md 2.2: MAXCHANNELS 128; gfx94 128 (64 if multi-node), or exactly the CU count if CU in {80, 20, 38}.
MAXCHANNELS = 128
GFX94_MULTINODE_MAX = 64
CU_EXACT = (80, 20, 38)
# libraries.md 2.2: postset x nc: default 2; MI300X 2 ranks 16, 4 ranks 4.
NC_DEFAULT = 2
NC_MI300X = {2: 16, 4: 4}

# libraries.md 2.3: MSCCL windows (bytes) on 8 ranks.
MSCCL_RANKS = 8
MSCCL_WINDOWS = {
    "allreduce": ((0, 65_536, "allpairs LL 4 ch"), (65_537, 524_287, "allpairs LL 8 ch"),
                  (524_288, 16_777_216, "allpairs Simple 8 ch (out-of-place)")),
    "alltoall": ((0, 9_216, "LL 1 ch"), (9_217, 194_560, "LL 2 ch"), (194_561, 524_288, "LL 4 ch"),
                 (524_289, 7_340_032, "Simple 32 ch"), (7_340_033, 45_088_768, "Simple 8 ch")),
}

# Hardware facts, not from libraries.md: the GPU's architecture and CU count (MI300X 304 CUs, MI308X 80), and
# the host CPU (AMD EPYC platforms assumed). The tuning model is libraries.md 2.1/2.2 (MI300X: 5) and 2.4
# (gfx942 -> model 5).
DEVICES = {
    "MI300X": {"arch": "gfx942", "cus": 304, "tuning": 5, "cpu": "amd"},
    "MI308X": {"arch": "gfx942", "cus": 80, "tuning": 5, "cpu": "amd"},
}


class RCCLModel(NCCLModel):
    """RCCL's tuner (module docstring)."""

    name = NAME
    versions = VERSIONS
    default_version = DEFAULT_VERSION
    algorithms = ALGORITHMS
    protocols = PROTOCOLS
    env_keys = ("NCCL_ALGO", "NCCL_PROTO")       # RCCL reads NCCL's variables
    devices = DEVICES

    def graphs(self, topology) -> dict:
        """The ring graph (rome model on one MI300X server), its channels at runtime.

        >>> from topologies import preset
        >>> g = RCCL.graphs(preset("mi300x-8"))
        >>> g["ring"].n_channels, g["ring"].bw_intra, g["comm_channels"]
        (28, 12.0, 112)
        """
        si = system(topology)
        dev = self.device(si)
        if si.scaleup_kind != "xgmi":
            raise ValueError(f"the RCCL model needs GPUs joined by xGMI; {si.name!r} has {si.scaleup_kind} links")
        width = XGMI_WIDTH_GBps[dev["arch"]]
        xgmi = si.scaleup_lanes * width
        rome = ROME_MODEL_79
        if si.nodes == 1:
            if not (si.ppn == rome["gpus"] and si.full_mesh and si.scaleup_lanes == rome["links"]):
                raise ValueError(f"{si.name!r} is not rome_model_79 (8 GPUs, full xGMI mesh of 7 links), the only "
                                 "RCCL topology model libraries.md documents (2.2)")
            ring = Graph("ring", rome["rings"], xgmi / rome["rings"], xgmi / rome["rings"], False,
                         xgmi / rome["rings"], rome["rings"])
        else:
            if not si.nic_GBps or not si.nics_per_node:
                raise ValueError(f"{si.name!r} has {si.nodes} servers but no NIC the RCCL model can see")
            path = min(si.nic_GBps, nccl.pci_GBps(si.attach_GBps) or si.nic_GBps)
            share = (si.ppn - 1) / si.ppn

            def rings_at(s):
                return min(si.nics_per_node * nccl._rings(path, s), nccl._rings(xgmi / share, s))
            n, s = nccl.search(nccl.LADDERS["pre-sm90"]["inter"], min(path, xgmi), xgmi, rings_at)
            ring = Graph("ring", n, float(s), float(s), False, float(s), n)
        return {"system": si, "device": dev, "ring": ring, "tree": ring, "nvls": None,
                "comm_channels": self.comm_channels(ring, si, dev)}

    @staticmethod
    def comm_channels(ring: Graph, si, dev) -> int:
        """libraries.md 2.2: max 128 (64 multi-node) or the CU count; x2 if <= max/2; x nc."""
        top = dev["cus"] if dev["cus"] in CU_EXACT else (GFX94_MULTINODE_MAX if si.nodes > 1 else MAXCHANNELS)
        n = ring.n_channels
        if n <= top // 2:
            n *= 2
        nc = NC_MI300X.get(si.P, NC_DEFAULT) if (dev["arch"] == "gfx942" and si.nodes == 1) else NC_DEFAULT
        return min(top, n * nc)

    def ineligible(self, algo, proto, collective, si, dev, version, g) -> str | None:
        if algo not in MODELLED.get(collective, ()):
            return f"not modelled for {collective}"
        if algo in ("NVLS", "NVLSTree", "CollNetDirect", "CollNetChain"):
            return f"no {algo} hardware on AMD (libraries.md 2.1)"
        p = PROTOCOLS.index(proto)
        if p == LL128:
            return "LL128 off (RCCL builds it only for gfx90a models that enable it)"
        if algo == "Tree" and p == SIMPLE and dev["arch"].startswith("gfx94") and si.nodes == 1:
            return "Tree/Simple skipped on gfx94 when all ranks are on one node"
        return None

    def latency(self, algo, proto, collective, si, dev, version, g) -> float:
        p = PROTOCOLS.index(proto)
        n, N = si.P, si.nodes
        ppn = n / N
        hw = HW_LAT[dev["tuning"]]
        base = BASE_LAT[version][algo][p]
        intra_row = hw["NVLINK"] if si.scaleup_kind == "xgmi" else hw["PCI"]
        intra = intra_row[algo][p]
        inter = LATENCY_INTER_US or hw["NET"][algo if ppn > 1 else "Tree"][p]
        overhead = NET_OVERHEAD_US[dev["cpu"]] * (NET_OVERHEAD_SIMPLE_FACTOR if p == SIMPLE else 1.0)
        steps = nsteps(collective, n)
        if algo == "Ring":
            if collective in ("allreduce", "allgather", "reduce_scatter"):
                if collective == "allreduce":
                    k = 2 * N if N > 1 else 0          # libraries.md 2.1: inter steps 2N for AllReduce
                else:
                    k = N - 1
                per = max(intra, overhead) if N > 1 else intra
                return base + (steps - k) * per + k * inter
            row = hw["NET"] if N > 1 else intra_row
            hop = row["Tree" if p == SIMPLE else "Ring"][p]
            return base + (hop if g["ring"].same_channels else steps * hop)
        if algo == "Tree":
            return base + 2 * ((ppn - 1) * intra + math.log2(N) * inter)
        raise AssertionError(algo)

    def bus_bw(self, algo, proto, collective, si, dev, version, g) -> float:
        p = PROTOCOLS.index(proto)
        ring = g["ring"]
        bus = ring.n_channels * ring.bw_intra
        ratio = BW_RATIO[dev["tuning"]]["<=2" if si.nodes <= 2 else ">2"][algo][p]
        bus *= ratio
        if (algo == "Ring" and p == LL and collective in ("broadcast", "reduce") and dev["arch"].startswith("gfx94")
                and si.nodes == 1):
            bus *= RING_LL_ROOTED_GFX94
        return bus

    def alg_bw(self, algo, proto, collective, bus, si, dev, nbytes) -> float:
        n = si.P
        alg = bus * n / nsteps(collective, n) if algo == "Ring" else bus * nccl.TREE_BUS_TO_ALG
        i = min(max(nccl.log2_index(nbytes), 0), CORRECTION_ENTRIES - 1)
        p = PROTOCOLS.index(proto)
        if algo == "Tree" or (algo == "Ring" and si.nodes > 1):
            alg *= CORRECTION[dev["tuning"]][algo][p][i]
        return alg

    def _fill(self, e, collective, nbytes, si, dev, version, g):
        algo, proto = e.algorithm, e.protocol
        e.bus_GBps = self.bus_bw(algo, proto, collective, si, dev, version, g)
        e.alg_GBps = self.alg_bw(algo, proto, collective, e.bus_GBps, si, dev, nbytes) if e.bus_GBps > 0 else 0.0
        if e.alg_GBps <= 0:
            e.reason = "bandwidth 0 (bwRatio or correction factor 0)"
            return
        e.lat_us = self.latency(algo, proto, collective, si, dev, version, g)   # no ring plateau factor (2.1)
        e.time_us = e.lat_us + nbytes / (1000.0 * e.alg_GBps)
        e.channels, e.threads = self.channels(algo, proto, nbytes, si, dev, g)

    def choose(self, collective, nbytes, topology, version=None, env=None) -> Choice:
        """RCCL's pick: the strict minimum of its cost table (libraries.md 2.1, 1.3).

        >>> from topologies import preset
        >>> c = RCCL.choose("allreduce", 256 << 20, preset("mi300x-8"))
        >>> c.algorithm, c.protocol, c.channels, round(c.predicted_us, 1), c.ccemu_algorithm, c.ccemu_params
        ('Ring', 'Simple', 112, 1444.5, 'ring', {'channels': 14, 'orders': 'mesh'})
        """
        check_call(collective, nbytes)
        tuned = tuned_as(self, collective, nbytes, topology, version, env)
        if tuned is not None:
            return tuned
        nbytes = int(nbytes)
        version = check_version(self, version)
        env = check_env(self, env)
        g = self.graphs(topology)
        si, dev = g["system"], g["device"]
        if collective in nccl.P2P:
            c = self._p2p(collective, nbytes, version, g)
            c.notes += self._msccl(collective, nbytes, si, dev)
            return c
        notes = []
        rows = self._table(collective, nbytes, version, env, g)
        pick = nccl._strict_min(rows)
        if pick is None:
            # libraries.md 2.1: if no algorithm has bandwidth, Ring bandwidths are restored.
            restored = self._table(collective, nbytes, version, {}, g)
            rows = [r if r.algorithm != "Ring" else n for r, n in zip(rows, restored)]
            pick = nccl._strict_min([e for e in rows if e.algorithm == "Ring"])
            if pick is None:
                raise ValueError(f"RCCL finds no Ring protocol for {collective} on {si.name}")
            notes.append("no algorithm had bandwidth: Ring bandwidths restored (libraries.md 2.1)")
        if pick.channels != g["comm_channels"]:
            notes.append(f"channels {g['comm_channels']} -> {pick.channels}, threads {pick.threads} "
                         "(libraries.md 1.3 step 4)")
        notes += self._msccl(collective, nbytes, si, dev)
        alg, params, exact, note = self.mapping(pick.algorithm, collective, si, pick.channels)
        return Choice(self.name, version, collective, nbytes, pick.algorithm, pick.protocol, pick.channels,
                      pick.time_us, [e.candidate() for e in rows], alg, params, nccl.CCEMU_PROTOCOL[pick.protocol],
                      exact, note, notes=notes)

    @staticmethod
    def _msccl(collective, nbytes, si, dev) -> list:
        if si.P != MSCCL_RANKS or si.nodes != 1 or dev["arch"] != "gfx942":
            return []
        for lo, hi, what in MSCCL_WINDOWS.get(collective, ()):
            if lo <= nbytes <= hi:
                return [f"RCCL_MSCCL_ENABLE=1 (default) would run MSCCL {what} here if the count divides the "
                        "schedule's chunks (libraries.md 2.3); the tuner's pick is shown"]
        return []


RCCL = RCCLModel()
