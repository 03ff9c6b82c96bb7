"""Workloads: what a training or inference step of a model loses to communication on a system.

- :mod:`workloads.model`: the model (dense or MoE) and its counts; built-in examples;
- :mod:`workloads.parallel`: data (ZeRO, FSDP), tensor, pipeline, expert and context parallelism;
- :mod:`workloads.placement`: where the ranks sit on the topology, and every communicator's group;
- :mod:`workloads.workload`: a workload (model + parallelism + placement + mode + compute model),
  from Python or a JSON/YAML file;
- :mod:`workloads.comms`: the collectives of each layer and phase, with their sizes;
- :mod:`workloads.compute`: compute time from FLOPs and bytes on the chip's figures;
- :mod:`workloads.step`: the step's time on a topology, with concurrent groups on one fabric
  (:mod:`collectives.concurrent`) and the overlap rules; comparisons over systems and device counts;
- :mod:`workloads.trace`: recorded communication (NCCL ``NCCL_DEBUG=INFO`` logs, PyTorch profiler
  traces, Chakra execution traces) read, written and replayed on any topology.

``ccemu workload`` and ``ccemu replay`` (:mod:`bench.workload_cmd`) are their command-line faces.
"""

from .model import Model, builtin_model, builtin_models
from .parallel import Parallelism
from .placement import Layout, Placement
from .workload import Workload, builtin_workload, builtin_workloads, load_workload

__all__ = ["Model", "builtin_model", "builtin_models", "Parallelism", "Layout", "Placement", "Workload",
           "builtin_workload", "builtin_workloads", "load_workload"]
