"""Figures of the scaling study and the system comparison (matplotlib, headless).

Figures are built on :class:`matplotlib.figure.Figure` with the Agg canvas, never through pyplot,
so nothing needs a display and no global backend state changes. :func:`save` writes a figure as a
PNG through :func:`bench.errors.write_atomic` (a temporary file and a rename).
matplotlib is the ``plot`` extra (``pip install ccemu[plot]``); without it these functions raise
``ValueError`` saying so.
"""

from __future__ import annotations

import io
import math

from .errors import write_atomic
from collectives.study import byte_label

#: Line colours, one per system (matplotlib's tab10, fixed so a system keeps its colour across panels).
COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">")


def _figure(width_in, height_in):
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise ValueError("plots need matplotlib (pip install 'ccemu[plot]' or pip install matplotlib)") from None
    fig = Figure(figsize=(width_in, height_in), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def size_axis(ax, sizes, label):
    """A log2 x axis with byte labels (1K, 1M, 1G) at the given sizes (every other one when crowded)."""
    from matplotlib.ticker import FixedLocator, NullLocator

    ax.set_xscale("log", base=2)
    ticks = sorted(set(sizes))
    stride = max(1, math.ceil(len(ticks) / 8))
    shown = ticks[::stride]
    ax.xaxis.set_major_locator(FixedLocator(shown))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticklabels([byte_label(s) for s in shown])
    ax.set_xlabel(label)


def count_axis(ax, counts, label):
    """Device counts on x: linear for a short range, log2 when they span more than 8x; ticks at the counts."""
    from matplotlib.ticker import FixedLocator, NullLocator

    counts = sorted(set(counts))
    if counts and counts[-1] / counts[0] > 8:
        ax.set_xscale("log", base=2)
    ax.xaxis.set_major_locator(FixedLocator(counts))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticklabels([str(c) for c in counts])
    ax.set_xlabel(label)


def _ok(rows):
    return [r for r in rows if r.get("busbw_GBps") is not None]


def _by_topology(rows):
    out = {}
    for r in rows:
        out.setdefault(r["topology"], []).append(r)
    return out


def plot_scaling(study, size_for_efficiency: int | None = None):
    """Two panels: busbw against size per topology, bus efficiency against device count per topology.

    Left: one solid line per topology at its largest device count and, when the sweep varies the
    device count, a dashed line of the same colour at its smallest (the gap is the scaling loss).
    Right: bus efficiency at ``size_for_efficiency`` (default: the largest size) against the
    device count, one line per topology.

    Parameters
    ----------
    study : collectives.study.Study

    Returns
    -------
    matplotlib.figure.Figure
    """
    rows = _ok(study.rows)
    if not rows:
        raise ValueError("nothing to plot: no point of the sweep could run")
    sizes = sorted({r["size"] for r in rows})
    eff_size = size_for_efficiency or sizes[-1]
    size_word = "per-device message size" if study.per_device else "message size (nccl-tests S)"
    fig = _figure(13, 5)
    ax_bw, ax_eff = fig.subplots(1, 2)
    all_counts = sorted({r["P"] for r in rows})
    for i, (topo, trs) in enumerate(_by_topology(rows).items()):
        colour, marker = COLOURS[i % len(COLOURS)], MARKERS[i % len(MARKERS)]
        counts = sorted({r["P"] for r in trs})
        for P, style in ((counts[-1], "-"), (counts[0], "--")) if len(counts) > 1 else ((counts[0], "-"),):
            pts = sorted((r["size"], r["busbw_GBps"]) for r in trs if r["P"] == P)
            ax_bw.plot([p[0] for p in pts], [p[1] for p in pts], style, color=colour, marker=marker, markersize=4,
                       label=f"{topo}, P={P}")
        at = sorted((r for r in trs if r["size"] == eff_size), key=lambda r: r["P"])
        algos = "/".join(dict.fromkeys(r["algorithm"] for r in at))   # explains the level (NVLS above 1)
        ax_eff.plot([r["P"] for r in at], [r["bus_efficiency"] for r in at], "-", color=colour, marker=marker,
                    label=f"{topo}: {algos}")
    size_axis(ax_bw, sizes, f"{size_word} (bytes, log2 scale)")
    ax_bw.set_ylabel("busbw (GB/s)")
    ax_bw.set_title(f"{study.collective}: bus bandwidth against message size")
    ax_bw.set_ylim(bottom=0)
    ax_bw.grid(True, alpha=0.3)
    ax_bw.legend(fontsize=8, title="solid: most devices, dashed: fewest" if len(all_counts) > 1 else None,
                 title_fontsize=8)
    count_axis(ax_eff, all_counts, "devices (P)")
    ax_eff.set_ylabel("bus efficiency (busbw / per-device peak)")
    ax_eff.set_title(f"{study.collective}: bus efficiency against device count at {byte_label(eff_size)}")
    top = max(1.0, max(r["bus_efficiency"] for r in rows if r["size"] == eff_size) * 1.08)
    ax_eff.set_ylim(0, top)
    ax_eff.axhline(1.0, color="grey", linewidth=0.8, linestyle=":",
                   label="busbw = peak" + ("; above: in-network reduction" if top > 1.0 else ""))
    ax_eff.grid(True, alpha=0.3)
    ax_eff.legend(fontsize=8)
    fig.suptitle(f"ccemu scaling study: {study.collective}, algorithm {study.algorithm} (emulated)")
    return fig


def plot_compare(studies):
    """Two rows of panels, one column per collective: busbw and bus efficiency against size, one
    line per system (dashed for multi-node forms).

    Parameters
    ----------
    studies : list of collectives.study.Study
        One per collective, rows over the same systems.

    Returns
    -------
    matplotlib.figure.Figure
    """
    studies = [s for s in studies if _ok(s.rows)]
    if not studies:
        raise ValueError("nothing to plot: no point of the comparison could run")
    systems = []
    for s in studies:
        for r in _ok(s.rows):
            key = (r["topology"], r["nodes"])
            if key not in systems:
                systems.append(key)
    names = list(dict.fromkeys(t for t, _ in systems))
    twins = _identical_series(studies, systems)
    fig = _figure(5.2 * len(studies), 8.5)
    axes = fig.subplots(2, len(studies), squeeze=False, sharex="col")
    size_word = "per-device message size" if studies[0].per_device else "nccl-tests size S"
    for col, s in enumerate(studies):
        rows = _ok(s.rows)
        ax_bw, ax_eff = axes[0][col], axes[1][col]
        for topo, nodes in systems:
            trs = [r for r in rows if r["topology"] == topo and r["nodes"] == nodes]
            if not trs:
                continue
            i = names.index(topo)
            style = "-" if nodes in (None, 1) else "--"
            pts = sorted((r["size"], r["busbw_GBps"], r["bus_efficiency"]) for r in trs)
            label = f"{topo} (P={trs[0]['P']})" if nodes in (None, 1) else f"{topo} x{nodes} (P={trs[0]['P']})"
            if (topo, nodes) in twins:
                label += f" = {twins[(topo, nodes)]}"
            # A system whose line an identical later one would hide is drawn wider: it shows as a halo.
            width = 4.0 if (topo, nodes) in twins else 1.6
            kw = dict(color=COLOURS[i % len(COLOURS)], marker=MARKERS[i % len(MARKERS)], linewidth=width,
                      markersize=max(3.5, width + 2.5), label=label)
            ax_bw.plot([p[0] for p in pts], [p[1] for p in pts], style, **kw)
            ax_eff.plot([p[0] for p in pts], [p[2] for p in pts], style, **kw)
        sizes = sorted({r["size"] for r in rows})
        ax_bw.set_title(s.collective)
        ax_bw.set_ylabel("busbw (GB/s)")
        ax_bw.set_ylim(bottom=0)
        ax_bw.grid(True, alpha=0.3)
        ax_eff.set_ylabel("bus efficiency (busbw / peak)")
        top = max(1.0, max(r["bus_efficiency"] for r in rows) * 1.08)
        ax_eff.set_ylim(0, top)
        ax_eff.axhline(1.0, color="grey", linewidth=0.8, linestyle=":")
        if top > 1.0:
            ax_eff.text(0.98, 0.03, "dotted: busbw = peak; above it,\na switch reduces in the network (NVLS)",
                        transform=ax_eff.transAxes, ha="right", va="bottom", fontsize=8, color="dimgrey")
        ax_eff.grid(True, alpha=0.3)
        size_axis(ax_eff, sizes, f"{size_word} (bytes, log2 scale)")
        ax_bw.tick_params(labelbottom=True)
        size_axis(ax_bw, sizes, "")
    handles, labels = axes[0][0].get_legend_handles_labels()
    for ax in axes[0][1:]:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    multi = sorted({n for _, n in systems if n not in (None, 1)})
    title = f"solid: one server; dashed: {', '.join(map(str, multi))} servers (x{'/x'.join(map(str, multi))})" \
        if multi else None
    fig.legend(handles, labels, loc="outside lower center", title=title, title_fontsize=9,
               ncol=len(labels) if len(labels) <= 6 else 4,
               fontsize=9)
    algos = sorted({s.algorithm for s in studies})
    fig.suptitle(f"ccemu system comparison (emulated), algorithm {', '.join(algos)}: "
                 "busbw (top) and bus efficiency (bottom)")
    return fig


def _identical_series(studies, systems) -> dict:
    """``{system: other system}`` for systems whose busbw equals a later one's at every point of
    every study (their lines would coincide): the legend says so."""
    series = {}
    for key in systems:
        series[key] = tuple(tuple(round(r["busbw_GBps"], 9) for r in sorted(_ok(s.rows), key=lambda r: r["size"])
                                  if (r["topology"], r["nodes"]) == key) for s in studies)
    out = {}
    for a, ka in enumerate(systems):
        for kb in systems[a + 1:]:
            if series[ka] == series[kb] and ka not in out:
                out[ka] = kb[0] if kb[1] in (None, 1) else f"{kb[0]} x{kb[1]}"
    return out


def save(fig, path: str) -> None:
    """Write ``fig`` as a PNG to ``path`` through a temporary file and a rename (no partial file)."""
    if not str(path).lower().endswith(".png"):
        raise ValueError(f"plot file {path!r}: expected a .png name")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    write_atomic(path, buf.getvalue())
