"""Topology files: node-link JSON and GraphML (lossless round trips), and NCCL topology XML import.

- JSON: networkx node-link data (``nodes``, ``links``, ``graph``) plus ``"schema": "ccemu-topology"``
  and ``"version": 1``. Node ids must be strings or integers.
- GraphML: every node, edge and graph attribute. GraphML stores only str/int/float/bool, so any other
  value (the ``model`` dict, lists, ``None``) is stored as a JSON string under ``<name>__json``, and an
  attribute whose type differs between elements is stored that way too; non-string node ids are kept
  in ``__id_json``. :func:`load_graphml` undoes all of it.
- NCCL / RCCL topology XML (dumps and ``NCCL_TOPO_FILE`` hint files, :mod:`topologies.nccl_xml`): GPUs
  become devices, NVLinks and xGMI links direct links or links to NVSwitch nodes, PCIe bridges switches,
  NICs NIC nodes, at the links' line rates; hint GPUs are completed from a GPU model.

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

from .graph import Topology

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

_DTD = re.compile(r"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)


def load_nccl_xml(path, *, gpu=None, nodes=1, fabric="rail", oversubscription=1.0, leaf_ports=32) -> Topology:
    """Import an NCCL or RCCL topology XML file (a dump or a cloud's hint file); see
    :func:`topologies.nccl_xml.load_nccl_xml`."""
    from .nccl_xml import load_nccl_xml as load

    return load(path, gpu=gpu, nodes=nodes, fabric=fabric, oversubscription=oversubscription, leaf_ports=leaf_ports,
                _stacklevel=3)


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
