"""Presets of real systems, by name: ``preset("atlas800t-a2", nodes=4)``.

Every preset is a plain function in a vendor module (:mod:`.nvidia`, :mod:`.amd`, :mod:`.huawei`,
:mod:`.others`) registered under its name; nothing is built until asked for. Every server preset
takes ``nodes`` (servers, default 1: no scale-out fabric), ``fabric`` (``"rail"``, ``"fat-tree"``
or ``"switch"``), ``oversubscription`` and ``leaf_ports``; some take more (``devices="die"``).
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


def load_topology(spec: str, nodes: int | None = None) -> Topology:
    """A preset name, or a ``.json`` / ``.graphml`` / ``.xml`` (NCCL topology dump) file.

    ``nodes`` applies to presets only (files describe a fixed system).

    >>> load_topology("mi300x-8").num_devices
    8
    """
    if not isinstance(spec, str) or not spec:
        raise ValueError(f"topology {spec!r}; expected a preset name or a file path")
    if spec in REGISTRY:
        return preset(spec) if nodes is None else preset(spec, nodes=nodes)
    if os.path.isfile(spec):
        ext = os.path.splitext(spec)[1].lower()
        if ext not in _FILE_LOADERS:
            raise ValueError(f"topology file {spec!r}: unknown extension {ext!r}; expected "
                             f"{', '.join(_FILE_LOADERS)}")
        if nodes not in (None, 1):
            raise ValueError(f"nodes={nodes!r} applies to presets only; file {spec!r} describes a fixed system")
        from .. import io
        return getattr(io, _FILE_LOADERS[ext])(spec)
    raise ValueError(f"unknown topology {spec!r}: neither a preset nor an existing file; "
                     f"valid presets: {', '.join(presets())}")
