"""Hardware topologies: validated NetworkX graphs of devices, switches and links, routing, and the
contention-aware network model that gives a schedule its emulated time."""

from .graph import Topology, add_link
from .builders import full_mesh, ring, switch, torus, two_level
from .routing import paths, route_pairs

__all__ = ["Topology", "add_link", "full_mesh", "ring", "switch", "torus", "two_level", "paths", "route_pairs"]
from .presets import load_topology, preset, presets

__all__ += ["preset", "presets", "load_topology"]
