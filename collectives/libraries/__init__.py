"""Models of what NCCL, RCCL and HCCL run: each library's own tuner, and the ccemu schedule closest to its pick.

Users compare ccemu with what the vendors' libraries actually run. Each module here models one
library from the facts in ``/work/shared/reference/libraries.md`` (cited by section next to every
constant): :mod:`.nccl` (§1), :mod:`.rccl` (§2), :mod:`.hccl` (§3), and :mod:`.ideal` (no tuner of
its own: ccemu's search over every algorithm).

A library object has ``name``, ``versions`` (``default_version`` the newest documented),
``algorithms``, ``protocols``, ``env_keys`` and
``choose(collective, nbytes, topology, version=None, env=None) -> Choice``: the library's own pick of
(algorithm, protocol, channels) by its published cost model and rules, with the full table of
candidates and their predicted times (what ``NCCL_DEBUG_SUBSYS=TUNING`` prints), and the ccemu
schedule that :func:`collectives.simulate` runs for it::

    c = library("nccl").choose("allreduce", 1 << 20, topologies.preset("dgx-h100"))
    collectives.simulate("allreduce", 1 << 20, t, algorithm=c.ccemu_algorithm, protocol=c.ccemu_protocol,
                         **c.ccemu_params)

``nbytes`` is nccl-tests' size S (for AllGather / ReduceScatter the total buffer, which is NCCL's
``nBytes``, libraries.md 1.3 step 1). ``env`` holds env-style overrides (``NCCL_ALGO``, ``HCCL_ALGO``,
...); a key the library does not read is a ``ValueError`` naming it.

What a tuner knows of the system comes from the topology (:func:`system`): ranks, servers (distinct
``node`` values of the devices), the scale-up links of a device (kind, ``lanes``, whether they reach a
switch that reduces), the NIC and its attach link. Facts about the device itself (SM version, CPU
vendor, chip) are in one table per library module keyed by the device model
(:func:`device_model`). This module does not load numba or the network model.

>>> sorted(LIBRARIES)
['hccl', 'ideal', 'nccl', 'rccl']
>>> library("mpich")
Traceback (most recent call last):
...
ValueError: unknown library 'mpich'; expected one of nccl, rccl, hccl, ideal
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass, field
from typing import NamedTuple

__all__ = ["Choice", "Candidate", "LIBRARIES", "library", "device_model", "native_library", "system", "System",
           "check_env", "check_version"]


#: The collectives the vendor library models have tuners for (alltoallv through alltoall's: :func:`tuned_as`).
MODELLED_COLLECTIVES = ("allreduce", "allgather", "reduce_scatter", "alltoall", "alltoallv", "broadcast", "reduce",
                        "gather", "scatter", "sendrecv", "hypercube")


class Candidate(NamedTuple):
    """One row of a library's cost table: ``predicted_us`` is ``None`` when the pair is ineligible,
    and ``reason`` says why (or, for an eligible row, the latency and bandwidth that make its time)."""

    algorithm: str
    protocol: str
    channels: int | None
    predicted_us: float | None
    reason: str


@dataclass
class Choice:
    """A library's pick for one call, its cost table, and the ccemu schedule that stands for it.

    ``algorithm``/``protocol`` are the library's own names (NCCL ``"Ring"``/``"LL128"``, HCCL
    ``"NHR"``/``"Simple"``), ``channels`` the channels (CTAs) of this call, ``predicted_us`` the time
    by the library's own model. ``ccemu_algorithm``/``ccemu_params``/``ccemu_protocol`` run with
    :func:`collectives.simulate`; ``ccemu_exact`` says whether that schedule is the library's or the
    closest ccemu has (``ccemu_note`` says how it differs). HCCL also fills ``levels`` (the algorithm
    per level) and ``executor``; ``pieces`` lists the sizes of the runs a call is cut into (HCCL's CCL
    buffer loop, libraries.md 3.4), or is ``None`` for one run.
    """

    library: str
    version: str
    collective: str
    nbytes: int
    algorithm: str
    protocol: str
    channels: int | None
    predicted_us: float | None
    candidates: list = field(default_factory=list)
    ccemu_algorithm: str = "best"
    ccemu_params: dict = field(default_factory=dict)
    ccemu_protocol: str = "auto"
    ccemu_exact: bool = False
    ccemu_note: str = ""
    levels: dict | None = None
    executor: str | None = None
    pieces: list | None = None
    notes: list = field(default_factory=list)

    def as_dict(self) -> dict:
        out = {k: getattr(self, k) for k in ("library", "version", "collective", "nbytes", "algorithm", "protocol",
                                             "channels", "predicted_us", "ccemu_algorithm", "ccemu_params",
                                             "ccemu_protocol", "ccemu_exact", "ccemu_note", "levels", "executor",
                                             "pieces", "notes")}
        out["candidates"] = [c._asdict() for c in self.candidates]
        return out


# -- the registry ------------------------------------------------------------------------------------

def library(name: str):
    """The library model called ``name`` (``ValueError`` listing the valid names otherwise)."""
    lib = LIBRARIES.get(name) if isinstance(name, str) else None
    if lib is None:
        raise ValueError(f"unknown library {name!r}; expected one of {', '.join(LIBRARIES)}")
    return lib


def check_version(lib, version) -> str:
    """``version`` if ``lib`` documents it, its default for ``None``; ``ValueError`` listing them otherwise."""
    if version is None:
        return lib.default_version
    if version not in lib.versions:
        raise ValueError(f"unknown {lib.name} version {version!r}; expected one of {', '.join(lib.versions)}")
    return version


def check_env(lib, env) -> dict:
    """``env`` as a ``{key: str}`` dict; a key ``lib`` does not read is a ``ValueError`` naming it."""
    if env is None:
        return {}
    if not isinstance(env, dict):
        raise TypeError(f"env must be a dict of environment-style overrides, got {type(env).__name__}")
    for key, value in env.items():
        if key not in lib.env_keys:
            raise ValueError(f"{lib.name} does not read {key!r}; its overrides are "
                             f"{', '.join(lib.env_keys) if lib.env_keys else 'none'}")
        if not isinstance(value, str):
            raise ValueError(f"{key}={value!r}; expected a string, as in the environment")
    return dict(env)


# -- the device model ------------------------------------------------------------------------------

#: Fallback only: the device model of each preset, for topologies whose graph does not carry
#: ``graph["device_model"]`` yet (the presets will set it; a topology that has it never reads this).
PRESET_DEVICE_MODELS = {
    "dgx-a100": "A100", "hgx-a800": "A800", "dgx-h100": "H100", "hgx-h200": "H200", "hgx-h800": "H800",
    "hgx-h20": "H20", "hgx-b200": "B200", "gb200-nvl72": "GB200",
    "mi300x-8": "MI300X", "mi308x-8": "MI308X", "mi250x-8": "MI250X",
    "atlas800-9000": "910", "atlas800t-a2": "910B", "atlas800t-a3": "910C", "cloudmatrix384": "910C",
    "mlu370-x8": "MLU370", "mccx-d800": "S4000", "br100-8": "BR100",
}

#: Which library a device model's vendor ships (``native_library``).
_VENDOR_LIBRARY = {
    **{m: "nccl" for m in ("A100", "A800", "H100", "H200", "H20", "H800", "B200", "GB200")},
    **{m: "rccl" for m in ("MI300X", "MI308X", "MI250X")},
    **{m: "hccl" for m in ("910", "910B", "910C")},
}


def device_model(topology) -> str:
    """The device model of ``topology``: ``graph["device_model"]``, or else (fallback, until every
    preset sets that attribute) the model of its preset from :data:`PRESET_DEVICE_MODELS`.

    >>> from topologies import preset
    >>> device_model(preset("dgx-h100")), device_model(preset("atlas800t-a2", nodes=2))
    ('H100', '910B')
    """
    meta = topology.graph.graph
    model = meta.get("device_model")
    if model:
        return str(model)
    name = meta.get("preset")
    if name in PRESET_DEVICE_MODELS:
        return PRESET_DEVICE_MODELS[name]
    raise ValueError(f"topology {topology.name!r} names no device model: set graph['device_model'] (e.g. 'H100', "
                     f"'MI300X', '910B'), or use a preset ({', '.join(PRESET_DEVICE_MODELS)})")


def native_library(topology) -> str:
    """The library the system's vendor ships: ``nccl``, ``rccl``, ``hccl``, or ``ideal`` when none is
    modelled for this device (no device model, or the library's model has no entry for it)."""
    try:
        model = device_model(topology)
    except ValueError:
        return "ideal"
    name = _VENDOR_LIBRARY.get(model, "ideal")
    if name != "ideal" and model not in LIBRARIES[name].devices:
        return "ideal"
    return name


# -- what a tuner reads from the topology --------------------------------------------------------------

# topologies.model.SCALE_OUT_KINDS (not imported: the topologies package loads numba; a test keeps them equal).
SCALE_OUT_KINDS = ("ib", "roce", "tcpx", "efa")


@dataclass(frozen=True)
class System:
    """What the tuners read from a topology (device 0 stands for every device: the presets are uniform).

    ``scaleup_kind``: link kind of the device's scale-up links (``nvlink``, ``xgmi``, ``hccs``, ``ub``,
    or ``pcie`` when it has none); ``scaleup_lanes``: sum of their ``lanes`` (NVLink link count per
    GPU); ``via_switch``: they reach switches, and ``reducing_switch`` all of those have
    ``reduce=True``; ``mesh_peers``: devices of the same server reached by a direct link.
    ``nic_GBps`` is the scale-out (ib/roce) edge bandwidth of the device's NIC and ``attach_GBps`` the
    line rate of the device-NIC link; ``nics_per_node`` the NICs of server 0.
    """

    name: str
    preset: str | None
    model: str
    P: int
    nodes: int
    ppn: int
    uniform: bool
    scaleup_kind: str
    scaleup_lanes: int
    scaleup_GBps: float
    via_switch: bool
    reducing_switch: bool
    mesh_peers: int
    nic_GBps: float | None
    nic_kind: str | None
    attach_GBps: float | None
    nics_per_node: int
    superpods: int

    @property
    def full_mesh(self) -> bool:
        return self.ppn > 1 and self.mesh_peers == self.ppn - 1


def system(topology) -> System:
    """The :class:`System` a tuner sees in ``topology``.

    >>> from topologies import preset
    >>> s = system(preset("dgx-h100", nodes=2))
    >>> s.P, s.nodes, s.ppn, s.scaleup_kind, s.scaleup_lanes, s.reducing_switch, s.nic_GBps, s.attach_GBps
    (16, 2, 8, 'nvlink', 18, True, 50.0, 64.0)
    """
    g = topology.graph
    devs = topology.devices
    per_node: dict = {}
    for d in devs:
        per_node.setdefault(g.nodes[d].get("node", 0), []).append(d)
    sizes = {len(v) for v in per_node.values()}
    dev0 = devs[0]
    node0 = g.nodes[dev0].get("node", 0)
    kinds: dict = {}
    lanes: dict = {}
    bw: dict = {}
    via_switch = False
    reducing = True
    mesh_peers = 0
    nic = None
    attach = None
    for v in g.successors(dev0):
        e = g.edges[dev0, v]
        kind_v = g.nodes[v].get("kind")
        if kind_v == "nic":
            nic = v
            attach = float(e["bw_GBps"])
            continue
        if kind_v == "cpu" or e["link"] in SCALE_OUT_KINDS:
            continue
        if kind_v == "device" and g.nodes[v].get("node", 0) != node0:
            continue
        k = e["link"]
        kinds[k] = kinds.get(k, 0) + 1
        lanes[k] = lanes.get(k, 0) + int(e.get("lanes", 1))
        bw[k] = bw.get(k, 0.0) + float(e["bw_GBps"])
        if kind_v == "switch" and k != "pcie":     # an imported NCCL topology's GPU also has a PCIe switch
            via_switch = True
            reducing = reducing and bool(g.nodes[v].get("reduce"))
        elif kind_v == "device":
            mesh_peers += 1
    if kinds:
        main = max(kinds, key=lambda k: (bw[k], k))
    else:
        main = "pcie"
    if nic is None:
        nic, attach = _nearest_nic(g, dev0)
    nic_bw = nic_kind = None
    if nic is not None:
        for w in g.successors(nic):
            e = g.edges[nic, w]
            if e["link"] in SCALE_OUT_KINDS:
                nic_bw = float(e["bw_GBps"]) if nic_bw is None else min(nic_bw, float(e["bw_GBps"]))
                nic_kind = e["link"]
    nics0 = sum(1 for n, d in g.nodes(data=True) if d.get("kind") == "nic" and d.get("node") == node0)
    pods = {g.nodes[d].get("supernode", 0) for d in devs}
    return System(name=topology.name, preset=g.graph.get("preset"), model=device_model(topology), P=len(devs),
                  nodes=len(per_node), ppn=max(sizes), uniform=len(sizes) == 1, scaleup_kind=main,
                  scaleup_lanes=lanes.get(main, 0), scaleup_GBps=bw.get(main, 0.0),
                  via_switch=via_switch and main != "pcie",
                  reducing_switch=via_switch and reducing, mesh_peers=mesh_peers, nic_GBps=nic_bw, nic_kind=nic_kind,
                  attach_GBps=attach, nics_per_node=nics0, superpods=len(pods))


def _nearest_nic(g, dev):
    """A device's nearest NIC through PCIe switches and CPUs (an imported NCCL topology, whose NICs sit on
    the PCIe tree), as NCCL pairs a GPU with its closest NIC: ``(nic, attach GB/s)``, or ``(None, None)``."""
    seen, frontier = {dev}, [dev]
    while frontier:
        found = [v for u in frontier for v in g.successors(u)
                 if g.nodes[v].get("kind") == "nic" and g.edges[u, v]["link"] == "pcie" and v not in seen]
        if found:
            nic = sorted(found, key=str)[0]
            return nic, max(float(g.edges[u, nic]["bw_GBps"]) for u in g.predecessors(nic)
                            if g.edges[u, nic]["link"] == "pcie")
        nxt = []
        for u in frontier:
            for v in g.successors(u):
                if v not in seen and g.nodes[v].get("kind") in ("switch", "cpu") and g.edges[u, v]["link"] == "pcie":
                    seen.add(v)
                    nxt.append(v)
        frontier = nxt
    return None, None


def tuned_as(model, collective: str, nbytes, topology, version=None, env=None):
    """``model``'s pick for a collective its tuner treats as another (the spec's ``tuned_as``:
    alltoallv as alltoall, which HCCL's AlltoAllV, RCCL's AllToAllv and NCCL's grouped send/recv
    share), or ``None`` for a collective tuned as itself.

    The tuner sees the other collective at ``spec.tuned_nbytes`` (alltoallv: the mean bytes per
    device, alltoall's S); the pick keeps the library's algorithm and protocol, and runs the
    collective's ccemu algorithm of the same name (``best`` if it has none). The library's
    CCL-buffer pieces are not kept: an uneven call is timed as one run.
    """
    from dataclasses import replace

    from .. import registry

    spec = registry.collective(collective)
    if not spec.tuned_as or spec.tuned_as == collective:
        return None
    check_call(collective, nbytes)
    size = spec.tuned_nbytes(int(nbytes), topology.num_devices)
    c = model.choose(spec.tuned_as, size, topology, version=version, env=env)
    same = c.ccemu_algorithm in registry.list_algorithms(collective)
    notes = [*c.notes, f"tuned as {spec.tuned_as} of {size} bytes per device"
             + ("" if same else f"; ccemu has no {collective} {c.ccemu_algorithm}: best stands in")
             + ("; the CCL-buffer pieces are not modelled for it" if c.pieces else "")]
    return replace(c, collective=collective, nbytes=int(nbytes), ccemu_algorithm=c.ccemu_algorithm if same else "best",
                   ccemu_params=c.ccemu_params if same else {}, ccemu_protocol=c.ccemu_protocol if same else "auto",
                   ccemu_exact=c.ccemu_exact and same, pieces=None, notes=notes)


def check_call(collective: str, nbytes) -> str:
    """The collective's registry name (``ValueError`` listing them otherwise) after checking ``nbytes``."""
    from .. import registry

    registry.collective(collective)
    if isinstance(nbytes, bool) or not isinstance(nbytes, numbers.Integral) or nbytes < 0:
        raise ValueError(f"nbytes={nbytes!r}; expected an integer >= 0 (nccl-tests' size S)")
    return collective


def ring_channel_cap(sysinfo: System) -> int:
    """How many ccemu ring/tree channels use distinct links on this system: on a full mesh the
    rings that cover every link (:func:`~collectives.algorithms.pipeline.mesh_rings`, as
    :mod:`collectives.tuning` defaults), else the two directions of the index ring (as
    :mod:`collectives.select` tries)."""
    from ..algorithms.pipeline import mesh_rings

    P = sysinfo.P
    if P <= 2:
        return 1
    if sysinfo.nodes == 1 and sysinfo.full_mesh:
        return len(mesh_rings(P))
    return 2


# The library modules import the names above, so the registry is filled last.
def _load():
    from . import hccl, ideal, nccl, rccl
    return {"nccl": nccl.NCCL, "rccl": rccl.RCCL, "hccl": hccl.HCCL, "ideal": ideal.IDEAL}


#: ``{name: library model}``, in the order libraries are listed.
LIBRARIES: dict = _load()
