"""NCCL and RCCL topology XML, read as NCCL reads it: dumps (``NCCL_TOPO_DUMP_FILE``) and the hint files
clouds ship for ``NCCL_TOPO_FILE``.

What the file says and what NCCL does with it (docs/hardware.md#nccl-topology-files, from NVIDIA/nccl
``src/graph/xml.cc`` and ``topo.cc`` and ROCm/rccl ``src/graph/topo.cc``):

- ``<system version="1">`` is NCCL's format, ``version="2"`` RCCL's; other versions are refused.
- A ``<pci>`` of class ``0x03....`` (display / 3D controller) or ``0x120000`` (processing accelerator,
  AMD Instinct) is a GPU, and so is any ``<pci>`` holding a ``<gpu>``. GPUs become devices (index =
  ``rank`` when every GPU has a distinct one, else ``dev``, else bus-id order).
- A GPU ``<pci>`` without a ``<gpu>`` child is a *hint*: NCCL fills the GPU in at run time (NVML gives
  ``sm`` and the NVLinks). ccemu completes it from a GPU model: the ``gpu=`` argument (a preset name such
  as ``dgx-a100`` or a device name such as ``H100``), else the ``<pci>`` vendor/device id where known
  (:data:`PCI_DEVICE_MODELS`). The completed NVLinks / xGMI links are those of the model's preset
  (same chips, lanes and rates), so an Azure ND A100 v4 hint file with ``gpu="a100"`` gives the DGX
  A100 fabric. A ``<gpu>`` without ``sm`` is completed the same way.
- ``<nvlink>`` and ``<xgmi>`` (RCCL) have ``target``, ``count`` and ``tclass``. The target's class
  decides, as in NCCL: a GPU class links the two GPUs directly (``count`` lanes); ``0x068001`` is the
  local CPU; anything else (an NVSwitch ``0x068000``, a bridge, a bus id invisible in a VM such as
  ``fffffff:ffff:ff``) is an NVSwitch. A missing ``tclass`` is the class of the target in the file, or
  NVSwitch when the file does not list the target (NCCL's rule for targets hidden in a VM). GPUs that
  name the same NVSwitch targets keep one switch node per target (the physical chips); when they do
  not, all targets are merged into one switch, as NCCL merges them into its single NVS node. An NVLink
  whose target is the GPU's own bus id, or a GPU absent from the file, is dropped: NCCL's path search
  never uses it. Switches reduce in the network (NVLS) on SM90 and later.
- ``<c2c count bw>`` (Grace-Hopper / Grace-Blackwell) is a GPU-CPU link of ``count x bw / 1000`` GB/s.
- ``link_speed`` / ``link_width`` give a PCIe link's rate; an empty or missing ``link_speed`` is Gen3 and
  an empty, missing or zero ``link_width`` 16 lanes, NCCL's fallbacks.
- ``<nic><net speed>`` are NICs (speed in Mb/s); ``speed`` <= 0 is 10 Gb/s, NCCL's default. A NIC ``<pci>``
  (class ``0x02....``) without ``<nic>`` is a hint NIC, and a ``<net>`` without ``speed`` one NCCL fills
  at run time: both get the NIC of the GPU model's preset.

Rates are *line rates* in GB/s per direction, as in the presets (docs/hardware.md#nvidia-nvlink,
#mi300x, #mi250x, #pcie); the network model applies each link kind's efficiency on top. (NCCL's own
figures, 20 GB/s per NVLink or 24 for PCIe Gen4 x16, are already about 80% of the line rate.)

``nodes=N`` repeats the imported server ``N`` times and joins the file's NICs by a scale-out fabric
(:func:`topologies.builders.add_fabric`, ``fabric`` ``"rail"`` by default: NIC ``j`` of every server on
leaf ``j``), each NIC at its own speed; NICs of different speed or kind (InfiniBand class ``0x0207``,
Ethernet otherwise) get separate fabrics, as separate networks.

Everything completed or assumed is said in one :class:`TopologyNote` warning (the CLI prints it as one
line) and kept in ``graph["import_notes"]``. Bad input raises a one-line ``ValueError`` naming the file.
"""

from __future__ import annotations

import functools
import os
import re
import warnings
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

import networkx as nx

from .graph import Topology, add_link

__all__ = ["TopologyNote", "load_nccl_xml", "gpu_models", "PCI_DEVICE_MODELS"]


class TopologyNote(UserWarning):
    """What a topology import completed or assumed; one line."""


# -- figures (docs/hardware.md) --------------------------------------------------------------------------

# NVLink line rate per link, GB/s per direction, by SM (compute capability x 10).
# docs/hardware.md#nvidia-nvlink: V100 300 GB/s bidir over 6 links, A100 600 over 12, H100 900 over 18:
# 25 GB/s uni per link [E]; B200 1.8 TB/s bidir over 18: 50 [E]. SM60 (P100) and SM86 (GA10x bridges) are
# estimates (docs/hardware.md#estimates): NCCL's figures 18 and 12 (topo.h) over its 80% (nccl#1054).
def nvlink_line_GBps(sm: int) -> float:
    if sm >= 100:
        return 50.0
    if sm == 86:
        return 15.0
    if sm >= 70:
        return 25.0
    return 22.5


# xGMI line rate per link by gfx arch. docs/hardware.md#mi300x: 64 GB/s uni rated per link (gfx942);
# docs/hardware.md#mi250x: 50 per link (gfx90a). gfx95x and older arches are estimates
# (docs/hardware.md#estimates): RCCL's per-link figures (topo.h: gfx95x 48 as gfx942, others 24) over
# the 48/64 it uses for gfx942.
def xgmi_line_GBps(gcn: str | None) -> float:
    arch = gcn or ""
    if arch.startswith("gfx942") or arch.startswith("gfx94") or arch.startswith("gfx95"):
        return 64.0
    if arch.startswith("gfx90a"):
        return 50.0
    return 32.0


# NCCL inter-CPU figures (topo.h; not in docs/hardware.md: estimate): AMD 16, Intel SKL 10, POWER9 32, ARM 6.
_CPU_LINK_GBps = {"AuthenticAMD": 16.0, "GenuineIntel": 10.0, "ppc64": 32.0, "arm64": 6.0, "aarch64": 6.0}
_NVSWITCH_CLASS = "0x068000"
# Latencies, estimates as in the presets: NVLink GPU->switch 0.3 us (half of NCCL's 0.6 us per hop), a direct
# GPU-GPU NVLink or xGMI hop 0.6 us, a PCIe (or C2C) hop 0.5 us, a scale-out hop 0.5 us
# (docs/hardware.md#estimates).
_NVL_SWITCH_LAT_US, _NVL_DIRECT_LAT_US, _PCIE_LAT_US, _NIC_HOP_LAT_US = 0.3, 0.6, 0.5, 0.5
# NCCL's PCIe fallback when link_speed is empty or unknown: 60 x 100 Mb/s per lane, i.e. Gen3 (8 GT/s).
_PCIE_FALLBACK_GTS = 8.0
_NIC_DEFAULT_MBPS = 10000        # NCCL's speed for a <net> with speed <= 0 ("Some NICs define speed = -1")

# Estimates (docs/hardware.md#estimates): "socket" has no entry in model.json; pcie's efficiency (0.8) with a
# Simple message cost of 1 us. "c2c" (NVLink-C2C, GPU to Grace) likewise.
_MODEL_OVERRIDES = {"socket": {"efficiency": 0.8, "msg_us": 1.0}, "c2c": {"efficiency": 0.8, "msg_us": 1.0}}

# NCCL's (and RCCL's) PCI class dictionary, matched on the prefix (topo.cc kvDictPciClass).
_CLASS_TYPES = (("0x060400", "pci"), ("0x068000", "nvs"), ("0x068001", "cpu"), ("0x03", "gpu"), ("0x02", "nic"),
                ("0x120000", "gpu"))


def _class_type(cls: str) -> str:
    cls = (cls or "").lower()
    for prefix, kind in _CLASS_TYPES:
        if cls.startswith(prefix):
            return kind
    return "pci"


def _is_gpu_class(cls: str) -> bool:
    cls = (cls or "").lower()
    return cls.startswith("0x03") or cls.startswith("0x12")


# -- GPU models: the presets' devices ------------------------------------------------------------------

#: PCI (vendor, device) ids of GPUs whose model ccemu knows, to complete hint files (docs/hardware.md#gpu-pci-ids).
PCI_DEVICE_MODELS = {
    ("0x10de", "0x20b0"): "dgx-a100",     # A100 SXM4 40GB
    ("0x10de", "0x20b2"): "dgx-a100",     # A100 SXM4 80GB
    ("0x10de", "0x2330"): "dgx-h100",     # H100 SXM5 80GB
    ("0x10de", "0x2335"): "hgx-h200",     # H200 SXM 141GB
    ("0x10de", "0x2901"): "hgx-b200",     # B200
    ("0x1002", "0x74a1"): "mi300x-8",     # Instinct MI300X
}

# Presets whose device can complete a GPU of an NCCL/RCCL file: vendor, SM or gfx arch, device model name.
# SM: compute capability x 10 (A100 8.0, Hopper 9.0, Blackwell 10.0); gfx: docs/hardware.md#mi300x (gfx942),
# ROCm/rccl topo_expl models (gfx942, gfx90a).
_GPU_PRESETS = {
    "dgx-a100": ("nvidia", 80, "A100"), "hgx-a800": ("nvidia", 80, "A800"),
    "dgx-h100": ("nvidia", 90, "H100"), "hgx-h200": ("nvidia", 90, "H200"), "hgx-h800": ("nvidia", 90, "H800"),
    "hgx-h20": ("nvidia", 90, "H20"), "hgx-b200": ("nvidia", 100, "B200"), "gb200-nvl72": ("nvidia", 100, "GB200"),
    "mi300x-8": ("amd", "gfx942", "MI300X"), "mi308x-8": ("amd", "gfx942", "MI308X"),
    "mi250x-8": ("amd", "gfx90a", "MI250X"),
}
_ALIASES = {"hgx-a100": "dgx-a100", "hgx-h100": "dgx-h100", "dgx-h200": "hgx-h200", "dgx-b200": "hgx-b200",
            "gb200": "gb200-nvl72", **{m.lower(): p for p, (_, _, m) in _GPU_PRESETS.items()}}
# A dump's GPU of unknown device id: its model by SM / gfx arch (only the device model name, the HBM
# bandwidth and NVLS switch attributes are taken from it; the links come from the file).
_BY_ARCH = {80: "dgx-a100", 90: "dgx-h100", 100: "hgx-b200", "gfx942": "mi300x-8", "gfx90a": "mi250x-8"}


def gpu_models() -> list[str]:
    """Names ``gpu=`` takes: presets with a GPU model, and their device names (``a100``, ``mi300x``, ...)."""
    return sorted(_GPU_PRESETS) + sorted(_ALIASES)


def resolve_gpu_model(name) -> str:
    """The preset of GPU model ``name`` (a preset name or a device name, case-insensitive)."""
    key = str(name).strip().lower()
    key = _ALIASES.get(key, key)
    if key not in _GPU_PRESETS:
        raise ValueError(f"gpu={name!r} is not a GPU model; expected one of {', '.join(sorted(_GPU_PRESETS))} "
                         f"(or a device name: {', '.join(m for _, _, m in _GPU_PRESETS.values())})")
    return key


@dataclass(frozen=True)
class GpuModel:
    """A preset's device as a building block: its scale-up links, HBM and NIC."""

    preset: str
    vendor: str
    arch: object                      # SM (int) or gfx arch (str)
    device_model: str
    mem_bw_GBps: float | None
    link_kind: str                    # "nvlink" / "xgmi"
    lane_GBps: float                  # line rate per lane
    lanes_per_switch: tuple = ()      # NVSwitch fabric: lanes to each chip
    switch_attrs: dict = field(default_factory=dict)
    mesh_size: int = 0                # full mesh: devices per server
    nic_Mbps: int | None = None
    nic_kind: str = "ib"

    def describe(self) -> str:
        if self.lanes_per_switch:
            lanes = sorted(set(self.lanes_per_switch))
            each = "/".join(map(str, lanes))
            return (f"{sum(self.lanes_per_switch)} {self.link_kind} lanes of {self.lane_GBps:g} GB/s to "
                    f"{len(self.lanes_per_switch)} switch chips ({each} each)")
        if self.mesh_size:
            return f"{self.link_kind} full mesh, one {self.lane_GBps:g} GB/s link to each peer"
        return f"{self.link_kind} partial mesh"


@functools.lru_cache(maxsize=None)
def gpu_model(name: str) -> GpuModel:
    """The :class:`GpuModel` of preset ``name`` (taken from the preset's own graph, so it follows the preset)."""
    from .presets import preset

    name = resolve_gpu_model(name)
    vendor, arch, device = _GPU_PRESETS[name]
    t = preset(name)
    g = t.graph
    d0 = t.devices[0]
    server = g.nodes[d0].get("node", 0)
    peers = [d for d in t.devices if g.nodes[d].get("node", 0) == server]
    switches, mesh = [], []
    for _, v, e in g.out_edges(d0, data=True):
        kind = g.nodes[v]["kind"]
        if e["link"] == "pcie" or kind in ("nic", "cpu"):
            continue
        (switches if kind == "switch" else mesh).append((v, e))
    nic_Mbps, nic_kind = None, "ib"
    t2 = preset(name, nodes=2)
    g2 = t2.graph
    for _, nic, _ in g2.out_edges(t2.devices[0], data=True):
        if g2.nodes[nic]["kind"] == "nic":
            for _, _, e in g2.out_edges(nic, data=True):
                if e["link"] in ("ib", "roce"):
                    nic_Mbps, nic_kind = int(round(e["bw_GBps"] * 8000)), e["link"]
    common = dict(preset=name, vendor=vendor, arch=arch, device_model=g.graph.get("device_model") or device,
                  mem_bw_GBps=g.nodes[d0].get("mem_bw_GBps"), nic_Mbps=nic_Mbps, nic_kind=nic_kind)
    if switches:
        e0 = switches[0][1]
        attrs = {k: v for k, v in g.nodes[switches[0][0]].items() if k not in ("kind", "node", "name")}
        return GpuModel(link_kind=e0["link"], lane_GBps=e0["bw_GBps"] / e0["lanes"],
                        lanes_per_switch=tuple(e["lanes"] for _, e in switches), switch_attrs=attrs, **common)
    if mesh:
        e0 = mesh[0][1]
        full = len(mesh) == len(peers) - 1 and len({e["bw_GBps"] for _, e in mesh}) == 1
        return GpuModel(link_kind=e0["link"], lane_GBps=e0["bw_GBps"] / e0["lanes"],
                        mesh_size=len(peers) if full else 0, **common)
    return GpuModel(link_kind="pcie", lane_GBps=0.0, **common)


# -- the reader ------------------------------------------------------------------------------------------

def load_nccl_xml(path, *, gpu=None, nodes=1, fabric="rail", oversubscription=1.0, leaf_ports=32,
                  _stacklevel=2) -> Topology:
    """Import an NCCL or RCCL topology XML file (a dump or a hint file) as a :class:`Topology`.

    ``gpu`` names the GPU model that completes hint GPUs (see the module docstring); ``nodes`` repeats
    the server and joins its NICs by a scale-out fabric (``fabric``, ``oversubscription``, ``leaf_ports``
    as for the presets).

    >>> import tempfile, os
    >>> dump = '''<system version="1"><cpu numaid="0" vendor="AuthenticAMD">
    ...   <pci busid="0000:01:00.0" class="0x030200" link_speed="16.0 GT/s PCIe" link_width="16">
    ...     <gpu dev="0" sm="80" rank="0"><nvlink target="0000:02:00.0" count="4" tclass="0x030200"/></gpu></pci>
    ...   <pci busid="0000:02:00.0" class="0x030200" link_speed="16.0 GT/s PCIe" link_width="16">
    ...     <gpu dev="1" sm="80" rank="1"><nvlink target="0000:01:00.0" count="4" tclass="0x030200"/></gpu></pci>
    ... </cpu></system>'''
    >>> with tempfile.TemporaryDirectory() as d:
    ...     path = os.path.join(d, "two.xml")
    ...     with open(path, "w") as fh:
    ...         _ = fh.write(dump)
    ...     t = load_nccl_xml(path)
    >>> t.num_devices, t.graph["gpu0"]["gpu1"]["bw_GBps"], t.graph["gpu0"]["cpu0"]["bw_GBps"]
    (2, 100.0, 32.0)
    """
    from .io import _read_text, _reject_dtd

    text = _read_text(path)
    _reject_dtd(text, path)
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        line, col = exc.position
        raise ValueError(f"{path}: malformed XML at line {line}, column {col}: {exc}") from None
    if root.tag != "system":
        raise ValueError(f"{path}: root element is <{root.tag}>; an NCCL topology file starts with <system>")
    imp = _Import(root, path, gpu)
    g = imp.build()
    try:
        Topology(g)          # validate the one server before repeating it
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    if imp.notes:
        g.graph["import_notes"] = list(imp.notes)
        warnings.warn(f"{os.path.basename(str(path))}: " + "; ".join(imp.notes), TopologyNote,
                      stacklevel=_stacklevel)
    if nodes is None:
        nodes = 1
    if nodes != 1:
        g = _scale_out(g, path, nodes, fabric, oversubscription, leaf_ports)
    try:
        return Topology(g)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


@dataclass
class _Gpu:
    busid: str
    key: int
    pci: ET.Element
    elem: ET.Element | None           # the <gpu>, None for a hint
    cpu: str                          # graph node of its CPU
    vendor: str = "nvidia"
    sm: int | None = None
    gcn: str | None = None
    model: str | None = None          # preset of its GPU model, if known
    node: str = ""


def _busid_key(text) -> int | None:
    """A bus id as NCCL compares them (busIdToInt64): its hex digits, ignoring ':' and '.'."""
    value, digits = 0, 0
    for c in str(text or "").lower():
        if c in ".:":
            continue
        if c not in "0123456789abcdef":
            break
        value, digits = value * 16 + int(c, 16), digits + 1
    return value if digits else None


class _Import:
    def __init__(self, root, path, gpu):
        self.root, self.path = root, path
        self.base = os.path.basename(str(path))
        self.g = nx.DiGraph(name=os.path.splitext(self.base)[0])
        self.notes: list[str] = []
        self.gpu_arg, self.gpu_given = None, gpu
        if gpu is not None:
            try:
                self.gpu_arg = resolve_gpu_model(gpu)
            except ValueError as exc:
                raise ValueError(f"{path}: {exc}") from None
        self.gpus: list[_Gpu] = []
        self.by_key: dict[int, _Gpu] = {}
        self.classes: dict[int, str] = {}       # bus id -> class, for nvlinks without tclass
        self.empty_speed = 0
        self.cpu_arch: dict[str, str] = {}
        self.nic_attach = []                    # (NIC node, parent node, attach GB/s or None)
        self.default_speed_nics = []

    # -- errors and attributes ------------------------------------------------------------------------
    def fail(self, elem, message):
        where = " ".join(f"{k}={v!r}" for k, v in elem.attrib.items() if k in ("busid", "dev", "rank", "name",
                                                                                  "numaid", "target"))
        raise ValueError(f"{self.path}: <{elem.tag}{' ' + where if where else ''}>: {message}")

    def int_attr(self, elem, key, default=None, empty=None):
        value = elem.get(key)
        if value is None or (value.strip() == "" and empty is not None):
            if value is None and default is None:
                self.fail(elem, f"missing attribute {key!r}")
            return default if value is None else empty
        try:
            return int(value, 0) if value.strip().lower().startswith("0x") else int(value)
        except ValueError:
            self.fail(elem, f"attribute {key}={value!r} is not an integer")

    # -- build ----------------------------------------------------------------------------------------
    def build(self) -> nx.DiGraph:
        version = self.root.get("version")
        if version is None:
            raise ValueError(f"{self.path}: <system> has no version attribute; expected version=\"1\" (NCCL) "
                             "or \"2\" (RCCL)")
        if version.strip() not in ("1", "2"):
            raise ValueError(f"{self.path}: topology XML version {version!r} is not supported; expected 1 (NCCL) "
                             "or 2 (RCCL)")
        self.rccl = version.strip() == "2"
        cpus = [c for c in self.root if c.tag == "cpu"]
        if not cpus:
            raise ValueError(f"{self.path}: <system> has no <cpu> element; expected <cpu> elements holding the "
                             "<pci> tree")
        cpu_nodes = []
        for k, cpu in enumerate(cpus):
            node = f"cpu{self.int_attr(cpu, 'numaid', default=k, empty=k)}"
            if node in self.g:
                self.fail(cpu, "duplicate numaid")
            self.g.add_node(node, kind="cpu")
            self.cpu_arch[node] = (cpu.get("arch") or "").strip().lower()
            cpu_nodes.append((node, cpu))
        for node, cpu in cpu_nodes:
            self._scan(cpu, node)
        if not self.gpus:
            raise ValueError(f"{self.path}: no GPU: expected <pci> elements of class 0x03xxxx or 0x120000, or "
                             "holding a <gpu> element")
        self._index_gpus()
        self._resolve_models()
        for node, cpu in cpu_nodes:
            self._children(cpu, node)
        for i, (a, ea) in enumerate(cpu_nodes):
            for b, _ in cpu_nodes[i + 1:]:
                bw = _CPU_LINK_GBps.get(ea.get("vendor"), _CPU_LINK_GBps.get(ea.get("arch"), 10.0))
                add_link(self.g, a, b, bw_GBps=bw, lat_us=_PCIE_LAT_US, link="socket")
        self._links()
        self._complete()
        self._attach_nics()
        if self.empty_speed:
            self.notes.append(f"link_speed empty or missing on {self.empty_speed} <pci>: PCIe Gen3 (8 GT/s) "
                              "assumed, as NCCL does")
        self._describe()
        return self.g

    def _scan(self, elem, cpu):
        """Pass 1: every GPU and the class of every bus id."""
        for pci in elem.iter("pci"):
            busid = (pci.get("busid") or "").strip().lower()
            key = _busid_key(busid)
            cls = (pci.get("class") or "").strip().lower()
            if key is not None and cls:
                self.classes.setdefault(key, cls)
            gpu = pci.find("gpu")
            if gpu is None and not (_is_gpu_class(cls) and pci.find("nic") is None and pci.find("pci") is None):
                continue
            if key is None:
                self.fail(pci, "a <pci> holding a GPU needs a busid")
            if key in self.by_key:
                self.fail(pci, "duplicate GPU bus id")
            rec = _Gpu(busid=busid, key=key, pci=pci, elem=gpu, cpu=cpu)
            self.gpus.append(rec)
            self.by_key[key] = rec

    def _index_gpus(self):
        found = self.gpus
        ranks = [r.elem.get("rank") if r.elem is not None else None for r in found]
        devs = [r.elem.get("dev") if r.elem is not None else None for r in found]
        if all(x not in (None, "") for x in ranks):
            keys = [self.int_attr(r.elem, "rank") for r in found]
        elif all(x not in (None, "") for x in devs):
            keys = [self.int_attr(r.elem, "dev") for r in found]
        elif all(r.elem is None for r in found):
            keys = [r.key for r in found]           # NVML numbers GPUs in bus-id order
        else:
            keys = list(range(len(found)))
        if len(set(keys)) != len(keys):
            keys = list(range(len(found)))          # duplicate ranks/devs: document order
        order = sorted(range(len(found)), key=lambda i: keys[i])
        self.gpus = [found[i] for i in order]
        for index, rec in enumerate(self.gpus):
            rec.node = f"gpu{index}"

    def _resolve_models(self):
        """Vendor, SM / gfx arch and GPU model of every GPU; hint GPUs need a model."""
        sm_filled = []
        for rec in self.gpus:
            pci, elem = rec.pci, rec.elem
            vendor_id = (pci.get("vendor") or "").strip().lower()
            device_id = (pci.get("device") or "").strip().lower()
            by_id = PCI_DEVICE_MODELS.get((vendor_id, device_id))
            gcn = elem.get("gcn") if elem is not None else None
            amd = (gcn is not None or vendor_id == "0x1002" or (pci.get("class") or "").lower().startswith("0x12")
                   or (self.rccl and vendor_id != "0x10de"))
            rec.model = self.gpu_arg or by_id
            if rec.model is not None and _GPU_PRESETS[rec.model][0] == "amd":
                amd = True
            rec.vendor = "amd" if amd else "nvidia"
            if amd:
                rec.gcn = _gfx(gcn) if gcn else None
                if rec.gcn is None and rec.model is not None:
                    rec.gcn = _GPU_PRESETS[rec.model][1]
                if rec.model is None and rec.gcn in _BY_ARCH and elem is not None:
                    rec.model = _BY_ARCH[rec.gcn]
            else:
                sm = self.int_attr(elem, "sm", default=-1, empty=-1) if elem is not None else -1
                if sm < 0 and elem is not None:
                    sm_filled.append(rec)
                if sm < 0 and rec.model is not None:
                    sm = _GPU_PRESETS[rec.model][1]
                rec.sm = sm if sm >= 0 else None
                if rec.model is None and elem is not None and rec.sm in _BY_ARCH:
                    # A Blackwell GPU on an Arm (Grace) CPU is a GB200.
                    arm = self.cpu_arch.get(rec.cpu) in ("arm64", "aarch64")
                    rec.model = "gb200-nvl72" if rec.sm == 100 and arm else _BY_ARCH[rec.sm]
        hints = [r for r in self.gpus if r.elem is None]
        no_sm = [r for r in self.gpus if r.elem is not None and r.vendor == "nvidia" and r.sm is None]
        missing = [r for r in hints if r.model is None] + no_sm
        if missing:
            r = missing[0]
            what = (f"<pci class=\"{r.pci.get('class')}\"> hints without a <gpu> element" if r.elem is None
                    else "<gpu> elements without an sm attribute")
            dev = r.pci.get("device")
            known = f"PCI device {dev} is not one ccemu knows" if dev else "give no PCI device id"
            raise ValueError(f"{self.path}: {len(missing)} GPUs are {what} and {known}; expected gpu=MODEL "
                             f"(CLI --gpu MODEL) naming their model, one of {', '.join(sorted(_GPU_PRESETS))}")
        if sm_filled:
            models = sorted({r.model for r in sm_filled})
            self.notes.append(f"{len(sm_filled)} <gpu> without sm: sm {sm_filled[0].sm} from {', '.join(models)}")
        for r in self.gpus:
            if r.model is None:
                continue
            vendor, arch, _ = _GPU_PRESETS[r.model]
            if vendor != r.vendor:
                raise ValueError(f"{self.path}: GPU {r.busid} is an {r.vendor.upper()} GPU but gpu={self.gpu_given!r} "
                                 f"is an {vendor.upper()} model; expected an {r.vendor.upper()} model")
            mine = r.sm if r.vendor == "nvidia" else r.gcn
            if r.elem is not None and mine is not None and mine != arch:
                what = f"SM{mine}" if r.vendor == "nvidia" else mine
                raise ValueError(f"{self.path}: GPU {r.busid} is {what} but the GPU model {r.model} is "
                                 f"{'SM' + str(arch) if r.vendor == 'nvidia' else arch}; expected a gpu= model of "
                                 "the file's GPUs")

    # -- the PCI tree ---------------------------------------------------------------------------------
    def _pcie_GBps(self, pci):
        speed = pci.get("link_speed")
        width = self.int_attr(pci, "link_width", default=0, empty=0)
        if width < 0:
            self.fail(pci, f"link_width={width}; expected lanes >= 0")
        lanes = width or 16                                  # NCCL: width 0 (unknown) counts as 16
        if speed is None or not speed.strip():
            self.empty_speed += 1
            gts = _PCIE_FALLBACK_GTS
        else:
            m = re.match(r"\s*([0-9]+(?:\.[0-9]+)?)\s*GT/s", speed)
            if not m or float(m.group(1)) <= 0:
                self.fail(pci, f"link_speed={speed!r} is not of the form '<n> GT/s'")
            gts = float(m.group(1))
        # docs/hardware.md#pcie: GT/s x lanes / 8 bits (Gen4 x16 32, Gen5 x16 64 GB/s) [E].
        return gts * lanes / 8.0

    def _children(self, elem, parent):
        for child in elem:
            if child.tag == "pci":
                self._pci(child, parent)
            elif child.tag == "nic":
                self._nic(child, parent, attach=None, cls="")

    def _pci(self, pci, parent):
        busid = (pci.get("busid") or "").strip().lower()
        key = _busid_key(busid)
        rec = self.by_key.get(key) if key is not None else None
        cls = (pci.get("class") or "").strip().lower()
        if rec is not None and rec.pci is pci:
            bw = self._pcie_GBps(pci)
            add_link(self.g, parent, rec.node, bw_GBps=bw, lat_us=_PCIE_LAT_US, link="pcie")
            index = int(rec.node[3:])
            attrs = dict(kind="device", index=index, name=rec.node, forward=False, busid=busid, node=0)
            if rec.vendor == "nvidia":
                attrs["sm"] = rec.sm
            else:
                attrs["gcn"] = rec.gcn
            if rec.model is not None:
                attrs["gpu_model"] = rec.model
                mem = gpu_model(rec.model).mem_bw_GBps
                if mem:
                    attrs["mem_bw_GBps"] = float(mem)
                if rec.model == "mi250x-8":
                    attrs["forward"] = True        # as the preset: Infinity Fabric routes between GCDs
            self.g.add_node(rec.node, **attrs)
            return
        if pci.find("nic") is not None:
            bw = self._pcie_GBps(pci)
            for nic in pci.findall("nic"):
                self._nic(nic, parent, attach=bw, cls=cls)
            return
        if any(c.tag in ("pci", "nic") for c in pci):
            if not busid:
                self.fail(pci, "a PCIe bridge needs a busid")
            bw = self._pcie_GBps(pci)
            node = f"pci:{busid}"
            if node in self.g:
                self.fail(pci, "duplicate bus id")
            self.g.add_node(node, kind="switch", reduce=False)
            add_link(self.g, parent, node, bw_GBps=bw, lat_us=_PCIE_LAT_US, link="pcie")
            self._children(pci, node)
            return
        if _class_type(cls) == "nic":                          # a hint NIC: NCCL fills <nic> at run time
            bw = self._pcie_GBps(pci)
            if not busid:
                self.fail(pci, "a NIC <pci> needs a busid")
            self._add_nic(f"nic:{busid}", parent, attach=bw, speed=None, cls=cls, elem=pci)
        # Any other leaf <pci> (an NVSwitch listed on PCIe, storage, ...) carries no collective traffic.

    def _nic(self, nic, parent, attach, cls):
        nets = nic.findall("net")
        if not nets:
            self.fail(nic, "no <net> element")
        for net in nets:
            dev = net.get("dev")
            name = net.get("name") or (f"net{dev}" if dev not in (None, "") else None)
            if not name:
                name = f"net-{len([n for n, d in self.g.nodes(data=True) if d['kind'] == 'nic'])}"
            raw = net.get("speed")
            if raw is None:
                speed = None                                  # filled at run time by NCCL's net plugin
            else:
                speed = self.int_attr(net, "speed", empty=0)
                if speed <= 0:
                    speed = _NIC_DEFAULT_MBPS
                    self.default_speed_nics.append(name)
            self._add_nic(f"nic:{name}", parent, attach=attach, speed=speed, cls=cls, elem=net)

    def _add_nic(self, node, parent, *, attach, speed, cls, elem):
        if node in self.g:
            self.fail(elem, "duplicate NIC name")
        # InfiniBand controllers are class 0x0207, Ethernet 0x0200; a NIC without a class takes the model's kind.
        kind = "ib" if cls.startswith("0x0207") else "roce" if cls else None
        self.g.add_node(node, kind="nic", node=0, nic_link=kind, **({} if speed is None else {"speed_Mbps": speed}))
        self.nic_attach.append((node, parent, attach))

    def _attach_nics(self):
        """NICs whose speed the file does not give get the model's; attach every NIC."""
        models = sorted({r.model for r in self.gpus if r.model})
        model = gpu_model(models[0]) if len(models) == 1 else None
        filled = []
        for node, parent, attach in self.nic_attach:
            d = self.g.nodes[node]
            if "speed_Mbps" not in d:
                if model is None or model.nic_Mbps is None:
                    raise ValueError(f"{self.path}: NIC {node[4:]!r} gives no speed and no GPU model is known to "
                                     "take it from; expected <net speed=...> (Mb/s) or gpu=MODEL")
                d["speed_Mbps"] = model.nic_Mbps
                filled.append(node)
            if d["nic_link"] is None:
                d["nic_link"] = model.nic_kind if model is not None else "roce"
            bw = d["speed_Mbps"] / 8000.0           # docs/hardware.md#nccl-model: speed (Mb/s) / 8000 GB/s
            add_link(self.g, parent, node, bw_GBps=bw if attach is None else attach, lat_us=_PCIE_LAT_US, link="pcie")
        if filled:
            gbps = self.g.nodes[filled[0]]["speed_Mbps"] / 1000
            self.notes.append(f"{len(filled)} NICs without a speed in the file: {gbps:g} Gb/s each, "
                              f"{model.preset}'s NIC")
        if self.default_speed_nics:
            self.notes.append(f"{len(self.default_speed_nics)} <net> with speed <= 0: "
                              f"{_NIC_DEFAULT_MBPS // 1000} Gb/s, NCCL's default")

    # -- NVLink, xGMI, C2C ----------------------------------------------------------------------------
    def _links(self):
        switch_links = {}                           # gpu node -> [(target, count, nvs class, tag, rate, gpu)]
        direct = {}                                 # (gpu, gpu, tag) -> (lanes listed by the first, rate)
        self_links, unknown = [], []
        for rec in self.gpus:
            if rec.elem is None:
                continue
            for link in rec.elem:
                if link.tag == "c2c":
                    self._c2c(rec, link)
                    continue
                if link.tag not in ("nvlink", "xgmi"):
                    continue
                count = self.int_attr(link, "count")
                if count < 1:
                    self.fail(link, f"count={count}; expected >= 1")
                target = (link.get("target") or "").strip().lower()
                tkey = _busid_key(target)
                tclass = (link.get("tclass") or "").strip().lower()
                if not tclass:
                    if tkey in self.by_key:
                        tclass = "0x030200"
                    else:                           # NCCL: a target not visible (a VM) is an NVSwitch
                        tclass = self.classes.get(tkey, _NVSWITCH_CLASS) if tkey is not None else _NVSWITCH_CLASS
                ttype = _class_type(tclass)
                per_lane = nvlink_line_GBps(rec.sm or 0) if link.tag == "nvlink" else xgmi_line_GBps(rec.gcn)
                if ttype == "gpu":
                    if tkey is None:
                        self.fail(link, "missing attribute 'target'")
                    if tkey == rec.key:
                        self_links.append(rec.node)
                        continue
                    other = self.by_key.get(tkey)
                    if other is None:
                        unknown.append(target)
                        continue
                    key = (rec.node, other.node, link.tag)
                    direct[key] = (direct.get(key, (0, per_lane))[0] + count, per_lane)
                elif ttype == "cpu":
                    self._add_or_grow(rec.node, rec.cpu, count, per_lane, link.tag, _NVL_SWITCH_LAT_US)
                else:
                    switch_links.setdefault(rec.node, []).append((target or "hidden", count,
                                                                  ttype == "nvs", link.tag, per_lane, rec))
        # Both GPUs list a direct link: it is added once, with the lanes the GPUs list (NCCL adds up several
        # <nvlink> to one target).
        for (a, b, tag), (count, per_lane) in direct.items():
            if self.g.has_edge(a, b) and self.g[a][b]["link"] == tag:
                continue
            count = max(count, direct.get((b, a, tag), (0, 0.0))[0])
            add_link(self.g, a, b, bw_GBps=count * per_lane, lat_us=_NVL_DIRECT_LAT_US, link=tag, lanes=count)
        if self_links:
            self.notes.append(f"{len(self_links)} <nvlink> to the GPU's own bus id ({', '.join(self_links)}) "
                              "ignored: NCCL's path search never uses it")
        if unknown:
            self.notes.append(f"{len(unknown)} <nvlink> to a GPU not in the file ({unknown[0]}) ignored, as NCCL does")
        if not switch_links:
            return
        sets = {frozenset(t for t, *_ in links) for links in switch_links.values()}
        merged = len(sets) > 1
        if merged:
            self.notes.append("GPUs name different NVSwitch targets: merged into one NVSwitch, as NCCL does")
        reducing = {}                               # reducing switch -> GPU model giving its NVLS figures
        for gnode, links in switch_links.items():
            for target, count, nvs, tag, per_lane, rec in links:
                sw = "nvswitch" if merged else f"nvswitch:{target}"
                if sw not in self.g:
                    self.g.add_node(sw, kind="switch", reduce=False)
                # NVLS needs NVSwitch gen3 (SM90+): docs/hardware.md#nvidia-nvlink.
                if nvs and rec.vendor == "nvidia" and (rec.sm or 0) >= 90:
                    self.g.nodes[sw]["reduce"] = True
                    if rec.model is not None and gpu_model(rec.model).switch_attrs.get("reduce"):
                        reducing.setdefault(sw, rec.model)
                self._add_or_grow(gnode, sw, count, per_lane, tag, _NVL_SWITCH_LAT_US)
        # The model preset's NVLS figures (a chip's reduce rate). Fewer switch nodes than the model has chips
        # (NVSwitches NVML cannot see, or merged targets) stand for all of them: the chips' rates are shared.
        for name in sorted(set(reducing.values())):
            nodes = [sw for sw, m in reducing.items() if m == name]
            m = gpu_model(name)
            chips = len(m.lanes_per_switch) or 1
            for sw in nodes:
                for k, v in m.switch_attrs.items():
                    if k == "reduce_bw_GBps" and len(nodes) < chips:
                        v = v * chips / len(nodes)
                    self.g.nodes[sw].setdefault(k, v)
            if len(nodes) < chips and "reduce_bw_GBps" in m.switch_attrs:
                one = len(nodes) == 1
                self.notes.append(f"{len(nodes)} NVSwitch node{'' if one else 's'} stand{'s' if one else ''} for "
                                  f"{name}'s {chips} chips, with their summed in-network reduction rate")

    def _add_or_grow(self, u, v, count, per_lane, tag, lat):
        if self.g.has_edge(u, v) and self.g[u][v]["link"] == tag:
            for a, b in ((u, v), (v, u)):
                e = self.g[a][b]
                e["lanes"] += count
                e["bw_GBps"] += count * per_lane
            return
        add_link(self.g, u, v, bw_GBps=count * per_lane, lat_us=lat, link=tag, lanes=count)

    def _c2c(self, rec, link):
        count = self.int_attr(link, "count")
        bw = self.int_attr(link, "bw")
        if count < 1 or bw <= 0:
            self.fail(link, f"count={count}, bw={bw}; expected count >= 1 and bw > 0 (MB/s per link)")
        # NCCL topo.cc ncclTopoAddC2c: count x bw / 1000 GB/s between the GPU and its CPU.
        add_link(self.g, rec.node, rec.cpu, bw_GBps=count * bw / 1000.0, lat_us=_PCIE_LAT_US, link="c2c",
                 lanes=count)

    # -- hint GPUs ------------------------------------------------------------------------------------
    def _complete(self):
        hints = [r for r in self.gpus if r.elem is None]
        if not hints:
            return
        models = sorted({r.model for r in hints})
        for name in models:
            group = [r for r in hints if r.model == name]
            m = gpu_model(name)
            source = "gpu=" + repr(self.gpu_given) if self.gpu_arg else "its PCI device id"
            if m.lanes_per_switch:
                switches = []
                for k in range(len(m.lanes_per_switch)):
                    sw = f"nvswitch:{name}.{k}"
                    self.g.add_node(sw, kind="switch", **m.switch_attrs)
                    switches.append(sw)
                for r in group:
                    for sw, lanes in zip(switches, m.lanes_per_switch):
                        add_link(self.g, r.node, sw, bw_GBps=lanes * m.lane_GBps, lat_us=_NVL_SWITCH_LAT_US,
                                 link=m.link_kind, lanes=lanes)
            elif m.mesh_size:
                if len(group) > m.mesh_size:
                    raise ValueError(f"{self.path}: {len(group)} hint GPUs of model {name}, whose {m.link_kind} "
                                     f"full mesh joins at most {m.mesh_size}; expected <= {m.mesh_size} GPUs")
                for i, a in enumerate(group):
                    for b in group[i + 1:]:
                        add_link(self.g, a.node, b.node, bw_GBps=m.lane_GBps, lat_us=_NVL_DIRECT_LAT_US,
                                 link=m.link_kind, lanes=1)
            else:
                raise ValueError(f"{self.path}: hint GPUs of model {name} cannot be completed: its {m.link_kind} "
                                 "links are not a full mesh or a switch fabric; expected <xgmi>/<nvlink> elements "
                                 "in the file")
            what = f"sm {m.arch}" if m.vendor == "nvidia" else m.arch
            self.notes.append(f"{len(group)} GPUs are <pci> hints without <gpu>: completed as {name} (from {source}):"
                              f" {what}, {m.describe()}")

    def _describe(self):
        models = sorted({r.model for r in self.gpus if r.model})
        hint = all(r.elem is None for r in self.gpus)
        lib = "RCCL" if self.rccl else "NCCL"
        kind = "hint file" if hint else "dump"
        self.g.graph["description"] = f"imported from {lib} topology {kind} {self.base}" + (
            f"; GPUs as {', '.join(models)}" if models else "")
        self.g.graph["sources"] = ["docs/hardware.md#nccl-topology-files: NCCL/RCCL topology XML as NCCL reads it",
                                   "docs/hardware.md#nvidia-nvlink, #mi300x, #mi250x, #pcie: line rates"]
        if len(models) == 1:
            m = gpu_model(models[0])
            self.g.graph["device_model"] = m.device_model
            self.g.graph["gpu_model"] = m.preset
        kinds = {d["link"] for _, _, d in self.g.edges(data=True)}
        self.g.graph["model"] = {k: dict(v) for k, v in _MODEL_OVERRIDES.items() if k in kinds or k == "socket"}


def _gfx(gcn: str) -> str:
    """RCCL's gcn attribute ("gfx942", "gfx942:sramecc+:xnack-", or the older "906") as "gfx..."."""
    arch = str(gcn).strip().lower().split(":")[0]
    return arch if arch.startswith("gfx") else "gfx" + arch


# -- scale-out ---------------------------------------------------------------------------------------------

def _scale_out(g1: nx.DiGraph, path, nodes, fabric, oversubscription, leaf_ports) -> nx.DiGraph:
    from .builders import add_fabric
    from .presets._common import check_nodes, check_scaleout, check_size

    try:
        check_nodes(nodes)
        check_scaleout(fabric, oversubscription, leaf_ports)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    nics = [n for n, d in g1.nodes(data=True) if d["kind"] == "nic"]
    if not nics:
        raise ValueError(f"{path}: nodes={nodes} needs NICs to join the servers, and the file lists none; expected "
                         "<nic><net speed=...> elements or NIC <pci> entries (class 0x02xxxx)")
    devices = sorted((n for n, d in g1.nodes(data=True) if d["kind"] == "device"), key=lambda n: g1.nodes[n]["index"])
    P = len(devices)
    base = g1.graph["name"]
    try:
        check_size(base, nodes, P, g1.number_of_nodes(), g1.number_of_edges(), fabric=fabric,
                   oversubscription=oversubscription, leaf_ports=leaf_ports)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    g = nx.DiGraph()
    g.graph.update({k: v for k, v in g1.graph.items()})
    g.graph.update(name=f"{base}-x{nodes}", nodes=nodes, fabric=fabric)
    groups: dict = {}
    for s in range(nodes):
        rename = {n: f"n{s}.{n}" for n in g1.nodes}
        for n, d in g1.nodes(data=True):
            attrs = dict(d)
            if attrs["kind"] == "device":
                attrs["index"] = s * P + d["index"]
                attrs["name"] = rename[n]
            if attrs["kind"] in ("device", "nic"):
                attrs["node"] = s
            g.add_node(rename[n], **attrs)
        for u, v, d in g1.edges(data=True):
            g.add_edge(rename[u], rename[v], **dict(d))
        for j, nic in enumerate(nics):
            d = g1.nodes[nic]
            groups.setdefault((d["nic_link"], d["speed_Mbps"]), []).append((s, j, rename[nic]))
    for k, ((kind, speed), members) in enumerate(sorted(groups.items())):
        local = {}
        for s, j, nic in members:                    # rail j: the j-th NIC of the group in every server
            local.setdefault(s, []).append((s, nic))
        ordered = [(s, j, nic) for s, lst in local.items() for j, (_, nic) in enumerate(lst)]
        add_fabric(g, ordered, fabric=fabric, bw_GBps=speed / 8000.0, lat_us=_NIC_HOP_LAT_US, link=kind,
                   leaf_ports=leaf_ports, oversubscription=float(oversubscription),
                   prefix="fab" if len(groups) == 1 else f"fab{k}")
    return g
