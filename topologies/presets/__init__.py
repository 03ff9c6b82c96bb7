"""Presets of real systems, by name: ``preset("atlas800t-a2", nodes=4)``.

Every preset is a plain function in a vendor module (:mod:`.nvidia`, :mod:`.amd`, :mod:`.huawei`,
:mod:`.others`) registered under its name; nothing is built until asked for. Every server preset
takes ``nodes`` (servers, default 1: no scale-out fabric), ``fabric`` (``"rail"``, ``"fat-tree"``
or ``"switch"``), ``oversubscription``, ``leaf_ports`` and ``nic`` (the NICs of a multi-node system
instead of the vendor's usual one: ``"roce:200"``, ``"tcpx:200:0.5"``, ``{"kind": "ib", "Gbps": 400,
"per_device": 1}``; see :func:`topologies.presets._common.parse_nic`); some take more (``devices="die"``).
The numbers come from ``docs/hardware.md`` (in the ccemu repository) and are cited next to each with
the section they come from, or marked as estimates (listed in ``docs/hardware.md#estimates``).

>>> "dgx-h100" in presets()
True
>>> preset("atlas800t-a2", nodes=2).num_devices
16
"""

from __future__ import annotations

import inspect
import os

from ..graph import Topology
from . import amd, huawei, nvidia, others  # noqa: F401  (importing registers the presets)
from ._common import REGISTRY

__all__ = ["preset", "presets", "preset_info", "load_topology"]

_FILE_LOADERS = {".json": "load_json", ".graphml": "load_graphml", ".xml": "load_nccl_xml"}


def presets() -> list[str]:
    """Names of all presets, sorted."""
    return sorted(REGISTRY)


def preset_info(name: str):
    """The registry entry (``name``, ``build``, ``description``, ``vendor``) of preset ``name``."""
    try:
        return REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown preset {name!r}; valid presets: {', '.join(presets())}") from None


def preset(name: str, **options) -> Topology:
    """Build preset ``name`` with ``options`` (e.g. ``nodes=4``, ``devices="die"``).

    Raises
    ------
    ValueError
        Unknown name (the message lists the valid names), an option the preset does not take, or a
        bad option value.

    >>> preset("dgx-h100").peak_bw_GBps()
    450.0
    >>> preset("dgx-h100", nodes=0)
    Traceback (most recent call last):
    ...
    ValueError: nodes=0; expected an integer >= 1 (servers in the system)
    """
    info = preset_info(name)
    params = inspect.signature(info.build).parameters
    unknown = sorted(set(options) - set(params))
    if unknown:
        raise ValueError(f"preset {name!r} has no option {unknown[0]!r}; its options are: {', '.join(params)}")
    return info.build(**options)


def load_topology(spec: str, nodes: int | None = None, gpu: str | None = None, nic=None, routing=None) -> Topology:
    """A preset name, or a ``.json`` / ``.graphml`` / ``.xml`` (NCCL or RCCL topology dump or hint file) file.

    ``nodes`` applies to presets and NCCL XML files (the file's server repeated, its NICs as the
    scale-out links); JSON and GraphML files describe a fixed system. ``gpu`` names the GPU model that
    completes the GPUs of an NCCL hint file (:mod:`topologies.nccl_xml`). ``nic`` (presets only) names
    the NICs of a multi-node preset, as ``preset(name, nodes=N, nic=...)`` takes it. ``routing`` (any
    system) is :func:`topologies.whatif.set_routing`'s: ``"ecmp"``, ``"adaptive"`` or ``"default"``.

    >>> load_topology("mi300x-8").num_devices
    8
    >>> load_topology("atlas800t-a2", nodes=2, nic="roce:400").graph.graph["nic"]["Gbps"]
    400.0
    >>> load_topology("hgx-h20", nodes=2, routing="ecmp").routing_text()
    'ecmp on ib (seed 0), adaptive elsewhere'
    """
    topo = _load(spec, nodes, gpu, nic)
    if routing is None:
        return topo
    from ..whatif import set_routing
    return set_routing(topo, routing)


def _load(spec, nodes, gpu, nic) -> Topology:
    if not isinstance(spec, str) or not spec:
        raise ValueError(f"topology {spec!r}; expected a preset name or a file path")
    if spec in REGISTRY:
        if gpu is not None:
            raise ValueError(f"gpu={gpu!r} applies to NCCL topology XML files; {spec!r} is a preset")
        options = {} if nodes is None else {"nodes": nodes}
        if nic is not None:
            options["nic"] = nic
        return preset(spec, **options)
    if os.path.isfile(spec):
        if nic is not None:
            raise ValueError(f"nic={nic!r} applies to presets; {spec!r} is a topology file, which brings its own "
                             "NICs")
        ext = os.path.splitext(spec)[1].lower()
        if ext not in _FILE_LOADERS:
            raise ValueError(f"topology file {spec!r}: unknown extension {ext!r}; expected "
                             f"{', '.join(_FILE_LOADERS)}")
        from .. import io
        if ext == ".xml":
            from ..nccl_xml import load_nccl_xml
            return load_nccl_xml(spec, gpu=gpu, nodes=1 if nodes is None else nodes, _stacklevel=3)
        if nodes not in (None, 1):
            raise ValueError(f"nodes={nodes!r} applies to presets and NCCL XML files; file {spec!r} describes a "
                             "fixed system")
        if gpu is not None:
            raise ValueError(f"gpu={gpu!r} applies to NCCL topology XML files; {spec!r} is a {ext} file")
        return getattr(io, _FILE_LOADERS[ext])(spec)
    raise ValueError(f"unknown topology {spec!r}: neither a preset nor an existing file; "
                     f"valid presets: {', '.join(presets())}")
