"""Algorithms as schedules: one module per family, each a pure function of (P, count, root)."""
