"""Executors run a schedule on real data: ``local`` (all devices in one process), ``mpi`` (across ranks)."""
