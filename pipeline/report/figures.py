"""Figures drawn on matplotlib's Agg canvas directly: no pyplot state, no display on cluster nodes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def _figure(**kwargs) -> Figure:
    fig = Figure(**kwargs)
    FigureCanvasAgg(fig)
    return fig


def plot_curve(curve: pd.DataFrame, path: str | Path, title: str = "") -> None:
    """Training loss and dev metric against step (the `.curve.png` beside a head checkpoint)."""
    dev = [c for c in curve.columns if c.startswith("dev_")]
    fig = _figure(figsize=(6, 3.5))
    ax = fig.subplots()
    ax.plot(curve["step"], curve["train_loss"], color="tab:blue", label="train loss")
    ax.set_xlabel("step")
    ax.set_ylabel("train loss", color="tab:blue")
    if dev:  # distillation curves have no dev metric: no empty second axis
        twin = ax.twinx()
        for col in dev:
            twin.plot(curve["step"], curve[col], color="tab:orange", marker="o", ms=3, label=col)
        twin.set_ylabel(", ".join(dev), color="tab:orange")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def robustness_figure(summary: pd.DataFrame, path: str | Path, tasks: list[str], conditions: list[str],
                      upstreams: list[str]) -> None:
    """Grouped bars: a panel per task, conditions on x, a bar per upstream (mean over seeds, std as error)."""
    fig = _figure(figsize=(1.6 + 1.4 * len(conditions) * len(tasks), 3.6))
    axes = fig.subplots(1, len(tasks), squeeze=False)
    width = 0.8 / len(upstreams)
    for ax, task in zip(axes[0], tasks, strict=True):
        sub = summary[summary["task"] == task]
        for j, up in enumerate(upstreams):
            rows = sub[sub["upstream"] == up].set_index("condition").reindex(conditions)
            x = np.arange(len(conditions)) + (j - (len(upstreams) - 1) / 2) * width
            yerr = rows["std"] * 100 if rows["std"].notna().any() else None
            ax.bar(x, rows["value"] * 100, width, yerr=yerr, label=up, capsize=2)
        metric = sub["metric"].iloc[0]
        ax.set_title(f"{task} ({metric})")
        ax.set_xticks(np.arange(len(conditions)), conditions)
        ax.set_xlim(-0.5, len(conditions) - 0.5)
        ax.set_ylabel(f"{metric} (%)")
        ax.grid(axis="y", alpha=0.3)
    axes[0][-1].legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
