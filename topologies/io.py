"""Topology files: node-link JSON and GraphML (lossless round trips), and NCCL topology XML import.

- JSON: networkx node-link data (``nodes``, ``links``, ``graph``) plus ``"schema": "ccemu-topology"``
  and ``"version": 1``. Node ids must be strings or integers.
- GraphML: every node, edge and graph attribute. GraphML stores only str/int/float/bool, so any other
  value (the ``model`` dict, lists, ``None``) is stored as a JSON string under ``<name>__json``, and an
  attribute whose type differs between elements is stored that way too; non-string node ids are kept
  in ``__id_json``. :func:`load_graphml` undoes all of it.
- NCCL XML (``NCCL_TOPO_DUMP_FILE``): GPUs become devices, NVLinks direct links or links to NVSwitch
  nodes, PCIe bridges switches, NICs NIC nodes, with NCCL's own per-link bandwidths (docs/hardware.md#nccl-model).

Every reader refuses XML with a DOCTYPE or ENTITY declaration (entity expansion) and turns
malformed or truncated input into a ``ValueError`` naming the line or element.
"""

from __future__ import annotations

import io
import json
import os
import re
import tempfile
import xml.etree.ElementTree as ET

import networkx as nx
import numpy as np

from .graph import Topology, add_link

SCHEMA = "ccemu-topology"
VERSION = 1
_JSON_SUFFIX = "__json"
_ID_KEY = "__id_json"


# -- JSON ----------------------------------------------------------------------------------------

def save_json(topo: Topology, path) -> None:
    """Write ``topo`` as node-link JSON (see the module docstring).

    >>> import tempfile, os
    >>> from topologies import ring
    >>> with tempfile.TemporaryDirectory() as d:
    ...     save_json(ring(3), os.path.join(d, "r.json"))
    ...     load_json(os.path.join(d, "r.json")).num_devices
    3
    """
    g = topo.graph
    for node in g.nodes:
        if isinstance(node, bool) or not isinstance(node, (str, int, np.integer)):
            raise ValueError(f"node id {node!r} cannot be stored in JSON; use strings or integers")
    data = nx.node_link_data(g, edges="links")
    data = {"schema": SCHEMA, "version": VERSION, **data}
    write_text_atomic(path, json.dumps(data, indent=1, default=_json_default))


def load_json(path) -> Topology:
    """Read a topology written by :func:`save_json`; ``ValueError`` on anything else."""
    text = _read_text(path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise ValueError(f"{path}: not a ccemu topology file (expected \"schema\": \"{SCHEMA}\")")
    if data.get("version") != VERSION:
        raise ValueError(f"{path}: topology file version {data.get('version')!r} is not supported "
                         f"(this ccemu reads version {VERSION})")
    body = {k: v for k, v in data.items() if k not in ("schema", "version")}
    for key in ("nodes", "links"):
        if not isinstance(body.get(key), list):
            raise ValueError(f"{path}: missing or malformed {key!r} list")
    _check_node_count(len(body["nodes"]), path)
    try:
        g = nx.node_link_graph(body, directed=True, multigraph=False, edges="links")
    except (KeyError, TypeError, nx.NetworkXError) as exc:
        raise ValueError(f"{path}: malformed node-link data: {exc!r}") from None
    return _topology(g, path)


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"attribute value {value!r} of type {type(value).__name__} cannot be stored in JSON")


# -- GraphML ---------------------------------------------------------------------------------------

_NATIVE = (str, int, float, bool)


def save_graphml(topo: Topology, path) -> None:
    """Write ``topo`` as GraphML, losslessly (see the module docstring)."""
    g = topo.graph
    h = nx.DiGraph()
    h.graph.update(_encode_attrs([g.graph])[0])
    ids = {n: n if isinstance(n, str) else f"n{i}" for i, n in enumerate(g.nodes)}
    if len(set(ids.values())) != len(ids):
        raise ValueError("node ids collide once written as strings; rename the nodes")
    node_attrs = _encode_attrs([g.nodes[n] for n in g.nodes])
    for n, attrs in zip(g.nodes, node_attrs):
        if not isinstance(n, str):
            attrs[_ID_KEY] = json.dumps(n, default=_json_default)
        h.add_node(ids[n], **attrs)
    edges = list(g.edges(data=True))
    for (u, v, _), attrs in zip(edges, _encode_attrs([d for _, _, d in edges])):
        h.add_edge(ids[u], ids[v], **attrs)
    buf = io.BytesIO()
    nx.write_graphml(h, buf, infer_numeric_types=False)
    write_text_atomic(path, buf.getvalue().decode("utf-8"))


def load_graphml(path) -> Topology:
    """Read a topology written by :func:`save_graphml` (or any GraphML with the same attributes)."""
    text = _read_text(path)
    _reject_dtd(text, path)
    _check_node_count(text.count("<node "), path)
    try:
        g = nx.read_graphml(path, node_type=str)
    except ET.ParseError as exc:
        line, col = exc.position
        raise ValueError(f"{path}: malformed XML at line {line}, column {col}: {exc}") from None
    except (nx.NetworkXError, KeyError, ValueError, TypeError) as exc:
        raise ValueError(f"{path}: not a readable GraphML topology: {exc}") from None
    if g.is_multigraph() or not g.is_directed():
        raise ValueError(f"{path}: expected a directed graph without parallel edges")
    out = nx.DiGraph()
    # networkx's reader adds node_default/edge_default dicts; a stored dict would carry "__json".
    graph_attrs = {k: v for k, v in g.graph.items()
                   if not (k in ("node_default", "edge_default") and isinstance(v, dict))}
    out.graph.update(_decode_attrs(graph_attrs, path))
    rename = {}
    for n, d in g.nodes(data=True):
        attrs = _decode_attrs(d, path)
        node = n
        if _ID_KEY in attrs:
            node = _from_json_id(attrs.pop(_ID_KEY))
        rename[n] = node
        out.add_node(node, **attrs)
    for u, v, d in g.edges(data=True):
        out.add_edge(rename[u], rename[v], **_decode_attrs(d, path))
    return _topology(out, path)


def _encode_attrs(dicts):
    """GraphML-safe copies of attribute dicts: one native type per attribute name, else JSON strings."""
    types = {}
    for d in dicts:
        for k, v in d.items():
            types.setdefault(k, set()).add(type(_plain(v)))
    as_json = {k for k, ts in types.items() if len(ts) > 1 or not ts <= set(_NATIVE) or k.endswith(_JSON_SUFFIX)}
    out = []
    for d in dicts:
        enc = {}
        for k, v in d.items():
            v = _plain(v)
            if k in as_json:
                enc[k + _JSON_SUFFIX] = json.dumps(v, default=_json_default)
            else:
                enc[k] = v
        out.append(enc)
    return out


def _plain(v):
    return v.item() if isinstance(v, np.generic) else v


def _decode_attrs(d, path):
    out = {}
    for k, v in d.items():
        if k.endswith(_JSON_SUFFIX) and k != _ID_KEY:
            try:
                out[k[:-len(_JSON_SUFFIX)]] = json.loads(v)
            except (TypeError, json.JSONDecodeError):
                raise ValueError(f"{path}: attribute {k!r} holds invalid JSON {v!r}") from None
        else:
            out[k] = v
    return out


def _from_json_id(text):
    def tup(x):
        return tuple(tup(i) for i in x) if isinstance(x, list) else x
    return tup(json.loads(text))


# -- NCCL topology XML -----------------------------------------------------------------------------

# docs/hardware.md#nccl-model "NCCL's own model of a link" (NVIDIA/nccl src/graph/topo.h): GB/s per direction per NVLink.
# SM60 (18.0) and SM86 (12.0) also exist in NCCL but are not in docs/hardware.md; they fall to the SM70/80 value.
def _nvlink_GBps(sm: int) -> float:
    if sm >= 100:
        return 40.1
    if sm >= 90:
        return 20.6
    return 20.0


# NCCL's per-lane PCIe figures (topo.h): bw = value x width / 80 GB/s, so Gen4 x16 = 24 and Gen5 x16 = 48
# as in docs/hardware.md#pcie; Gen1-3 and Gen6 follow the same table [E].
_PCIE_PER_LANE = {2.5: 15.0, 5.0: 30.0, 8.0: 60.0, 16.0: 120.0, 32.0: 240.0, 64.0: 480.0}
_PCIE_DEFAULT_GBps = 12.0   # NCCL's PCI_BW (Gen3 x16) when the speed is missing or unknown (estimate)
# NCCL inter-CPU figures (topo.h, not in docs/hardware.md: estimate): AMD 16, Intel SKL 10, POWER9 32, ARM 6.
_CPU_LINK_GBps = {"AuthenticAMD": 16.0, "GenuineIntel": 10.0, "ppc64": 32.0, "arm64": 6.0, "aarch64": 6.0}
_NVSWITCH_CLASS = "0x068000"
# Latencies, estimates as in the presets: NVLink GPU->switch 0.3 us (half of NCCL's 0.6 us per hop),
# a direct GPU-GPU NVLink 0.6 us, a PCIe hop 0.5 us.
_NVL_SWITCH_LAT_US, _NVL_DIRECT_LAT_US, _PCIE_LAT_US = 0.3, 0.6, 0.5

_DTD = re.compile(r"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)


def load_nccl_xml(path) -> Topology:
    """Import an NCCL topology dump (``NCCL_TOPO_DUMP_FILE``) as a :class:`Topology`.

    GPUs become devices (index = ``rank`` when every GPU has a distinct one, else ``dev`` order);
    an ``<nvlink>`` to another GPU's bus id becomes a direct link of ``count`` lanes, any other target
    (an NVSwitch, class ``0x068000``, or a bridge) a switch node shared by all GPUs naming it, with
    in-network reduction on SM90 and later. ``<pci>`` bridges become switches, ``<net>`` NICs,
    ``<cpu>`` CPUs (joined pairwise).

    >>> import tempfile, os
    >>> dump = '''<system version="1"><cpu numaid="0" vendor="AMD">
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
    (2, 80.0, 24.0)
    """
    text = _read_text(path)
    _reject_dtd(text, path)
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        line, col = exc.position
        raise ValueError(f"{path}: malformed XML at line {line}, column {col}: {exc}") from None
    if root.tag != "system":
        raise ValueError(f"{path}: root element is <{root.tag}>; an NCCL topology dump starts with <system>")
    return _NcclImport(root, path).build()


class _NcclImport:
    def __init__(self, root, path):
        self.root, self.path = root, path
        self.g = nx.DiGraph(name=os.path.splitext(os.path.basename(str(path)))[0])
        self.gpu_node = {}       # busid -> device node id

    def fail(self, elem, message):
        where = " ".join(f"{k}={v!r}" for k, v in elem.attrib.items() if k in ("busid", "dev", "rank", "name",
                                                                                  "numaid", "target"))
        raise ValueError(f"{self.path}: <{elem.tag}{' ' + where if where else ''}>: {message}")

    def int_attr(self, elem, key, default=None):
        value = elem.get(key)
        if value is None:
            if default is None:
                self.fail(elem, f"missing attribute {key!r}")
            return default
        try:
            return int(value)
        except ValueError:
            self.fail(elem, f"attribute {key}={value!r} is not an integer")

    def build(self) -> Topology:
        gpus = self._find_gpus()
        if not gpus:
            raise ValueError(f"{self.path}: no <gpu> element; nothing to import as devices")
        cpus = [c for c in self.root if c.tag == "cpu"]
        if not cpus:
            raise ValueError(f"{self.path}: <system> has no <cpu> element")
        cpu_nodes = []
        for k, cpu in enumerate(cpus):
            node = f"cpu{self.int_attr(cpu, 'numaid', default=k)}"
            if node in self.g:
                self.fail(cpu, "duplicate numaid")
            self.g.add_node(node, kind="cpu")
            cpu_nodes.append((node, cpu))
            self._children(cpu, node)
        for i, (a, ea) in enumerate(cpu_nodes):
            for b, _ in cpu_nodes[i + 1:]:
                bw = _CPU_LINK_GBps.get(ea.get("vendor"), _CPU_LINK_GBps.get(ea.get("arch"), 10.0))
                add_link(self.g, a, b, bw_GBps=bw, lat_us=_PCIE_LAT_US, link="socket")
        self._nvlinks(gpus)
        self.g.graph["description"] = f"imported from NCCL topology dump {os.path.basename(str(self.path))}"
        self.g.graph["sources"] = ["docs/hardware.md#nccl-model: NCCL's own model of a link (NVIDIA/nccl src/graph/topo.h)"]
        # Estimate: pcie's efficiency (0.8) with a Simple message cost of 1 us (pcie's is 17.6); "socket" has
        # no entry in topologies/model.py's LINK_DEFAULTS, so its other costs stay at generic's 0. A
        # GPU-to-GPU path through the sockets also crosses pcie links and pays the largest message cost on
        # its path, i.e. pcie's.
        self.g.graph["model"] = {"socket": {"efficiency": 0.8, "msg_us": 1.0}}
        try:
            return Topology(self.g)
        except ValueError as exc:
            raise ValueError(f"{self.path}: {exc}") from None

    def _find_gpus(self):
        """All <gpu> elements with their parent <pci> bus id; assigns device indices."""
        found = []
        for pci in self.root.iter("pci"):
            for gpu in pci.findall("gpu"):
                busid = pci.get("busid")
                if not busid:
                    self.fail(pci, "a <pci> holding a <gpu> needs a busid")
                found.append((busid.lower(), gpu))
        ranks = [gpu.get("rank") for _, gpu in found]
        if all(r is not None for r in ranks):
            keys = [self.int_attr(gpu, "rank") for _, gpu in found]
        else:
            keys = [self.int_attr(gpu, "dev", default=i) for i, (_, gpu) in enumerate(found)]
        if len(set(keys)) != len(keys):
            keys = list(range(len(found)))      # duplicate ranks/devs: fall back to document order
        order = sorted(range(len(found)), key=lambda i: keys[i])
        out = []
        for index, i in enumerate(order):
            busid, gpu = found[i]
            sm = self.int_attr(gpu, "sm")
            self.gpu_node[busid] = f"gpu{index}"
            out.append((index, busid, gpu, sm))
        return out

    def _pcie_GBps(self, pci):
        speed = pci.get("link_speed")
        if speed is None:
            return _PCIE_DEFAULT_GBps
        m = re.match(r"\s*([0-9.]+)\s*GT/s", speed)
        if not m:
            self.fail(pci, f"link_speed={speed!r} is not of the form '<n> GT/s'")
        per_lane = _PCIE_PER_LANE.get(float(m.group(1)))
        lanes = self.int_attr(pci, "link_width", default=16)
        if per_lane is None or lanes < 1:
            return _PCIE_DEFAULT_GBps
        return per_lane * lanes / 80.0

    def _children(self, elem, parent):
        """Attach the <pci> and <nic> children of ``elem`` to graph node ``parent``."""
        for child in elem:
            if child.tag == "pci":
                self._pci(child, parent)
            elif child.tag == "nic":
                self._nic(child, parent, bw_attach=None)

    def _pci(self, pci, parent):
        busid = (pci.get("busid") or "").lower()
        bw = self._pcie_GBps(pci)
        if pci.find("gpu") is not None:
            add_link(self.g, parent, self.gpu_node[busid], bw_GBps=bw, lat_us=_PCIE_LAT_US, link="pcie")
            node = self.gpu_node[busid]
            gpu = pci.find("gpu")
            attrs = self.g.nodes[node]
            attrs.update(kind="device", index=int(node[3:]), name=node, forward=False, busid=busid,
                         sm=self.int_attr(gpu, "sm"))
            return
        if pci.find("nic") is not None:
            for nic in pci.findall("nic"):
                self._nic(nic, parent, bw_attach=bw)
            return
        if any(c.tag in ("pci", "nic") for c in pci):
            if not busid:
                self.fail(pci, "a PCIe bridge needs a busid")
            node = f"pci:{busid}"
            self.g.add_node(node, kind="switch", reduce=False)
            add_link(self.g, parent, node, bw_GBps=bw, lat_us=_PCIE_LAT_US, link="pcie")
            self._children(pci, node)
        # Any other leaf <pci> (an NVSwitch listed on PCIe, storage, ...) carries no collective traffic.

    def _nic(self, nic, parent, bw_attach):
        nets = nic.findall("net")
        if not nets:
            self.fail(nic, "no <net> element")
        for net in nets:
            name = net.get("name") or f"net{self.int_attr(net, 'dev')}"
            speed_Mbps = self.int_attr(net, "speed")
            if speed_Mbps <= 0:
                self.fail(net, f"speed={speed_Mbps} Mb/s; expected > 0")
            bw = speed_Mbps / 8000.0        # docs/hardware.md#nccl-model: NIC speed(Mbps)/8000 GB/s
            node = f"nic:{name}"
            if node in self.g:
                self.fail(net, "duplicate NIC name")
            self.g.add_node(node, kind="nic", speed_Mbps=speed_Mbps)
            attach = bw if bw_attach is None else bw_attach
            add_link(self.g, parent, node, bw_GBps=attach, lat_us=_PCIE_LAT_US, link="pcie")

    def _nvlinks(self, gpus):
        for index, busid, gpu, sm in gpus:
            node = self.gpu_node[busid]
            per_link = _nvlink_GBps(sm)
            for nvl in gpu.findall("nvlink"):
                target = (nvl.get("target") or "").lower()
                if not target:
                    self.fail(nvl, "missing attribute 'target'")
                count = self.int_attr(nvl, "count")
                if count < 1:
                    self.fail(nvl, f"count={count}; expected >= 1")
                bw = count * per_link
                if target in self.gpu_node:
                    other = self.gpu_node[target]
                    if other == node:
                        self.fail(nvl, "an NVLink to the GPU itself")
                    if not self.g.has_edge(node, other):   # both GPUs list the link; add it once
                        add_link(self.g, node, other, bw_GBps=bw, lat_us=_NVL_DIRECT_LAT_US, link="nvlink",
                                 lanes=count)
                    continue
                # Not a GPU: an NVSwitch (tclass 0x068000, or bus id ffffffff when hidden in a VM) or a
                # bridge. All GPUs naming the same target share the switch node. NVLS needs NVSwitch
                # gen3 (SM90+): docs/hardware.md#nvidia-nvlink, NVIDIA blog on third-generation NVSwitch.
                sw = f"nvswitch:{target}"
                if sw not in self.g:
                    self.g.add_node(sw, kind="switch", reduce=False, tclass=nvl.get("tclass", _NVSWITCH_CLASS))
                if sm >= 90 and nvl.get("tclass", _NVSWITCH_CLASS) == _NVSWITCH_CLASS:
                    self.g.nodes[sw]["reduce"] = True
                if self.g.has_edge(node, sw):
                    self.fail(nvl, f"second <nvlink> to the same target {target!r}")
                add_link(self.g, node, sw, bw_GBps=bw, lat_us=_NVL_SWITCH_LAT_US, link="nvlink", lanes=count)


# -- shared ------------------------------------------------------------------------------------------

# A topology larger than this is refused before it is parsed: the largest preset systems (16384
# devices with NICs and a fat tree) have about 40,000 nodes; a file of a million nodes is a mistake
# or an attack, and would take minutes and gigabytes to validate.
MAX_NODES = 250_000
MAX_FILE_BYTES = 256 * 2**20


def write_text_atomic(path, text: str | bytes) -> None:
    """Write ``text`` (str as UTF-8, or bytes) through a temporary file in the same folder and a
    rename: a failed write never leaves a partial file. An ``OSError`` names ``path`` (never the
    temporary file), e.g. ``[Errno 2] No such file or directory: 'missing/out.json'``."""
    folder = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=folder)
    except OSError as exc:
        if exc.errno is None:
            raise
        raise OSError(exc.errno, exc.strerror, os.fspath(path)) from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(text.encode("utf-8") if isinstance(text, str) else text)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual mode
        os.replace(tmp, path)
    except BaseException as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.errno is not None:  # same errno and subclass, the user's path
            raise OSError(exc.errno, exc.strerror, os.fspath(path)) from None
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _check_node_count(n, path):
    if n > MAX_NODES:
        raise ValueError(f"{path}: {n} nodes is more than the {MAX_NODES} a topology file may have")


def _read_text(path) -> str:
    size = os.path.getsize(path)
    if size > MAX_FILE_BYTES:
        raise ValueError(f"{path}: {size} bytes is larger than the {MAX_FILE_BYTES} a topology file may be")
    try:
        with open(path, "r", encoding="utf-8") as fh:
            return fh.read()
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def _reject_dtd(text, path):
    m = _DTD.search(text)
    if m:
        line = text.count("\n", 0, m.start()) + 1
        raise ValueError(f"{path}: line {line}: <!{m.group(1).upper()} ...> declarations are refused "
                         "(entity expansion); remove the DTD")


def _topology(g, path) -> Topology:
    try:
        return Topology(g)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
