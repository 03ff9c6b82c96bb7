"""Readers of algorithm files written by other tools (MSCCL XML: :mod:`collectives.formats.msccl`)."""
