"""Figures of step results: where a step's time goes, per system and device count (matplotlib, headless).

Figures are :class:`matplotlib.figure.Figure` objects on the Agg canvas (no pyplot, no display).
Without matplotlib these functions raise ``ValueError`` saying so.
"""

from __future__ import annotations

#: Colours per part of the step: compute, bubble, optimizer, then communication kinds in order.
FIXED = {"compute": "#4c72b0", "bubble": "#bbbbbb", "optimizer": "#8c8c8c"}
COMM = ("#dd8452", "#c44e52", "#55a868", "#8172b3", "#937860", "#da8bc3", "#ccb974", "#64b5cd", "#2f4b7c", "#ff7c43")


def _figure(width, height):
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise ValueError("plots need matplotlib (pip install 'ccemu[plot]' or pip install matplotlib)") from None
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _parts(results):
    parts = ["compute"]
    for r in results:
        for k in r.breakdown:
            if k not in parts and k not in ("bubble", "optimizer"):
                parts.append(k)
    return parts + ["bubble", "optimizer"]


def _colour(part, parts):
    if part in FIXED:
        return FIXED[part]
    comm = [p for p in parts if p not in FIXED]
    return COMM[comm.index(part) % len(COMM)]


def plot_step(result):
    """One stacked bar: the step's compute, exposed communication per kind, bubble and optimizer (ms)."""
    fig = _figure(7, 5)
    ax = fig.subplots()
    parts = _parts([result])
    bottom = 0.0
    for p in parts:
        v = result.breakdown.get(p, 0.0) * 1e3
        if v <= 0:
            continue
        ax.bar([0], [v], bottom=[bottom], color=_colour(p, parts), label=f"{p} ({v:.1f} ms)", width=0.5)
        bottom += v
    ax.set_xticks([0])
    ax.set_xticklabels([f"{result.system}\n{result.devices} devices"])
    ax.set_ylabel("ms per step")
    ax.set_xlim(-0.8, 1.8)
    ax.legend(fontsize=8, loc="upper right")
    ax.grid(True, axis="y", alpha=0.3)
    fig.suptitle(f"ccemu workload {result.workload} ({result.mode}): step {result.step_s * 1e3:.1f} ms, "
                 f"{result.tokens_per_s:,.0f} tokens/s (emulated)", fontsize=10)
    return fig


def plot_compare(comparison):
    """Top: each system and device count's step split into its parts, as shares of the step (stacked
    bars). Bottom: tokens per second per device (the scaling as devices are added)."""
    rows = comparison.rows()
    if not rows:
        raise ValueError("nothing to plot: no step was timed")
    results = [r["result"] for r in rows]
    parts = _parts(results)
    systems = list(dict.fromkeys(r["system"] for r in rows))
    fig = _figure(max(8, 1.1 * len(rows) + 3), 8)
    ax, ax2 = fig.subplots(2, 1, height_ratios=(2, 1))
    x, labels, pos = [], [], 0.0
    for s in systems:
        for r in rows:
            if r["system"] == s:
                x.append(pos)
                labels.append(f"{s}\n{r['devices']}")
                pos += 1
        pos += 0.6
    for p in parts:
        vals = [r["result"].breakdown.get(p, 0.0) / r["result"].step_s for r in rows]
        if not any(v > 0 for v in vals):
            continue
        bottom = [sum(r["result"].breakdown.get(q, 0.0) / r["result"].step_s for q in parts[:parts.index(p)])
                  for r in rows]
        ax.bar(x, vals, bottom=bottom, color=_colour(p, parts), label=p, width=0.8)
    for xi, r in zip(x, rows):
        ax.text(xi, 1.01, f"{r['result'].step_s:.2f} s", ha="center", va="bottom", fontsize=7)
    ax.set_xticks(x)
    ax.set_xticklabels(labels, fontsize=8)
    ax.set_ylim(0, 1.1)
    ax.set_ylabel("share of the step time")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.grid(True, axis="y", alpha=0.3)
    ax.set_title("where the step goes: compute, exposed communication per kind, pipeline bubble, optimizer "
                 "(step time above each bar)", fontsize=9)
    for i, s in enumerate(systems):
        pts = sorted((r["devices"], r["result"].tokens_per_s_per_device) for r in rows if r["system"] == s)
        ax2.plot([p[0] for p in pts], [p[1] for p in pts], "-o", color=COMM[i % len(COMM)], label=s)
    counts = sorted({r["devices"] for r in rows})
    if counts and counts[-1] / counts[0] > 8:
        ax2.set_xscale("log", base=2)
    ax2.set_xticks(counts)
    ax2.set_xticklabels([str(c) for c in counts])
    ax2.set_xlabel("devices")
    ax2.set_ylabel("tokens/s per device")
    ax2.set_ylim(bottom=0)
    ax2.grid(True, alpha=0.3)
    ax2.legend(fontsize=8)
    fig.suptitle(f"ccemu workload {comparison.workload}: one step per system and device count (emulated)",
                 fontsize=10)
    return fig
