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
    """Training loss and dev metric against step (the `.curve.png` beside a head checkpoint); one line per
    seed when the frame has a `seed` column."""
    dev = [c for c in curve.columns if c.startswith("dev_")]
    dev = ["dev_cos"] if "dev_cos" in dev else dev  # a student's curve: its mean held-out target cosine
    runs = list(curve.groupby("seed")) if "seed" in curve.columns else [(None, curve)]
    fig = _figure(figsize=(6, 3.5))
    ax = fig.subplots()
    twin = ax.twinx() if dev else None  # distillation curves have no dev metric: no empty second axis
    for i, (_, run) in enumerate(runs):
        alpha = 1.0 if i == 0 else 0.5
        loss = run[["step", "train_loss"]].dropna()
        ax.plot(loss["step"], loss["train_loss"], color="tab:blue", alpha=alpha, label="train loss")
        for col in dev:
            points = run[["step", col]].dropna()
            twin.plot(points["step"], points[col], color="tab:orange", marker="o", ms=3, alpha=alpha, label=col)
    ax.set_xlabel("step")
    ax.set_ylabel("train loss", color="tab:blue")
    if twin is not None:
        twin.set_ylabel(", ".join(dev), color="tab:orange")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def _empty(path: str | Path, message: str) -> None:
    fig = _figure(figsize=(5, 1.5))
    fig.text(0.5, 0.5, message, ha="center", va="center", color="0.4")
    fig.savefig(path, dpi=100)


def robustness_figure(summary: pd.DataFrame, path: str | Path, tasks: list[str], conditions: list[str],
                      upstreams: list[str]) -> None:
    """Grouped bars: a panel per task, conditions on x, a bar per upstream (mean over seeds, std as error)."""
    summary = summary[summary["primary"] & summary["upstream"].isin(upstreams)]
    tasks = [t for t in tasks if t in set(summary["task"])]
    if not tasks:
        _empty(path, "no robustness scores in this run")
        return
    fig = _figure(figsize=(2.0 + 1.5 * len(conditions) * len(tasks), 4.2))
    axes = fig.subplots(1, len(tasks), squeeze=False)
    width = 0.8 / len(upstreams)
    for ax, task in zip(axes[0], tasks, strict=True):
        sub = summary[summary["task"] == task]
        conds = [c for c in conditions if c in set(sub["condition"])]
        for j, up in enumerate(upstreams):
            rows = sub[sub["upstream"] == up].set_index("condition").reindex(conds)
            x = np.arange(len(conds)) + (j - (len(upstreams) - 1) / 2) * width
            yerr = rows["std"] * 100 if rows["std"].notna().any() else None
            ax.bar(x, rows["value"] * 100, width, yerr=yerr, label=up, capsize=2, color=_color(j))
        metric = sub["metric"].iloc[0]
        ax.set_title(f"{task.upper()} ({metric}, {'lower' if metric in ('wer', 'per', 'cer') else 'higher'} is better)",
                     fontsize=10)
        ax.set_xticks(np.arange(len(conds)), conds)
        ax.set_xlim(-0.5, len(conds) - 0.5)
        ax.set_ylabel(f"{metric} (%)")
        ax.grid(axis="y", alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, loc="lower center", ncol=min(len(upstreams), 6), frameon=False)
    fig.tight_layout(rect=(0, 0.06 * (1 + (len(upstreams) - 1) // 6), 1, 1))
    fig.savefig(path, dpi=110)


def _color(i: int) -> tuple:
    from matplotlib import colormaps

    return colormaps["tab20"](i % 20)


def head_curves_figure(curves: dict[str, dict[str, pd.DataFrame]], path: str | Path) -> None:
    """Dev metric against head training step: a panel per task, a line per upstream (first seed)."""
    tasks = list(curves)
    if not tasks:
        _empty(path, "no downstream heads in this run")
        return
    cols = min(3, len(tasks))
    rows = (len(tasks) + cols - 1) // cols
    fig = _figure(figsize=(5.0 * cols, 3.4 * rows + 0.6))
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    upstreams = list(dict.fromkeys(u for by_up in curves.values() for u in by_up))
    for ax, task in zip(axes, tasks, strict=False):
        for up, curve in curves[task].items():
            dev = next(c for c in curve.columns if c.startswith("dev_"))
            ax.plot(curve["step"], curve[dev] * 100, label=up, color=_color(upstreams.index(up)), lw=1.2)
            ax.set_ylabel(f"{dev} (%)")
        ax.set_title(task.upper(), fontsize=10)
        ax.set_xlabel("head training step")
        ax.grid(alpha=0.3)
    for ax in axes[len(tasks):]:
        ax.set_visible(False)
    handles = [h for ax in axes[: len(tasks)] for h in ax.get_legend_handles_labels()[0]]
    names = [n for ax in axes[: len(tasks)] for n in ax.get_legend_handles_labels()[1]]
    unique = dict(zip(names, handles, strict=True))
    fig.legend(list(unique.values()), list(unique), fontsize=8, loc="lower center", ncol=min(len(unique), 6),
               frameon=False)
    fig.tight_layout(rect=(0, 0.04 * (1 + (len(unique) - 1) // 6), 1, 1))
    fig.savefig(path, dpi=100)


def student_curves_figure(curves: dict[str, pd.DataFrame], path: str | Path) -> None:
    """Left: distillation loss relative to its first logged value (log scale); right: mean target cosine on
    held-out dev crops; one line per student, against step."""
    if not curves:
        _empty(path, "no students in this run")
        return
    fig = _figure(figsize=(12, 4.5))
    ax, dev_ax = fig.subplots(1, 2)
    for i, (name, curve) in enumerate(curves.items()):
        train = curve[["step", "train_loss"]].dropna()
        loss = train["train_loss"].to_numpy(dtype=float)
        smooth = pd.Series(loss).rolling(max(1, len(loss) // 20), min_periods=1).mean().to_numpy()
        if len(loss) and np.isfinite(loss[0]) and abs(loss[0]) > 0:
            ax.plot(train["step"], smooth / abs(loss[0]), label=name, color=_color(i), lw=1.2)
        if "dev_cos" in curve.columns:
            dev = curve[["step", "dev_cos"]].dropna()
            dev_ax.plot(dev["step"], dev["dev_cos"], label=name, color=_color(i), lw=1.2, marker="o", ms=3)
    ax.set_yscale("log")
    ax.set_xlabel("distillation step")
    ax.set_ylabel("training loss / first loss")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, ncol=2, loc="upper right")
    dev_ax.set_xlabel("distillation step")
    dev_ax.set_ylabel("mean target cosine, held-out dev crops")
    dev_ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def layer_weights_figure(weights: dict[str, dict[str, list[float]]], path: str | Path) -> None:
    """Heat maps of the learned softmax layer weights: a panel per task, upstreams x layer index."""
    tasks = list(weights)
    if not tasks:
        _empty(path, "no downstream heads in this run")
        return
    cols = min(3, len(tasks))
    rows = (len(tasks) + cols - 1) // cols
    ups = max(len(w) for w in weights.values())
    fig = _figure(figsize=(4.6 * cols, (0.28 * ups + 1.4) * rows))
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, task in zip(axes, tasks, strict=False):
        names = list(weights[task])
        width = max(len(w) for w in weights[task].values())
        grid = np.full((len(names), width), np.nan)
        for i, name in enumerate(names):
            grid[i, : len(weights[task][name])] = weights[task][name]
        image = ax.imshow(grid, aspect="auto", cmap="viridis", vmin=0, interpolation="nearest")
        ax.set_yticks(range(len(names)), names, fontsize=7)
        ax.set_xticks(range(width))
        ax.set_xlabel("hidden state (0 = input of first layer)", fontsize=8)
        ax.set_title(task.upper(), fontsize=10)
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.02)
    for ax in axes[len(tasks):]:
        ax.set_visible(False)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


VERDICT_COLOURS = {"reproduced": "tab:green", "opposite": "tab:red", "inconclusive": "0.55"}


def claims_figure(rows: list[dict], path: str | Path, not_run: int = 0) -> None:
    """One horizontal line per measured claim row: its difference (points, positive = claim holds) and 95 % interval,
    coloured by verdict; zero marked, and each non-inferiority margin as a tick at -margin."""
    if not rows:
        _empty(path, f"no claim could be measured in this run ({not_run} rows not run)")
        return
    fig = _figure(figsize=(10, 1.2 + 0.24 * len(rows)))
    ax = fig.subplots()
    y = np.arange(len(rows))[::-1]
    for yi, row in zip(y, rows, strict=True):
        colour = VERDICT_COLOURS.get(row["verdict"], "0.55")
        ax.hlines(yi, row["low"] * 100, row["high"] * 100, color=colour, lw=2.2)
        ax.plot(row["value"] * 100, yi, "o", color=colour, ms=4)
        if row["margin"]:
            ax.plot(-row["margin"] * 100, yi, "|", color="0.2", ms=9)
    ax.axvline(0, color="0.15", lw=0.9)
    ax.set_yticks(y, [row["label"] for row in rows], fontsize=7)
    ax.set_ylim(-0.7, len(rows) - 0.3)
    ax.set_xlabel("difference, points (positive = the claim holds); | = non-inferiority margin")
    ax.grid(axis="x", alpha=0.3)
    handles = [ax.plot([], [], color=c, lw=2.2, label=v)[0] for v, c in VERDICT_COLOURS.items()]
    ax.legend(handles=handles, fontsize=8, loc="lower right", framealpha=0.9)
    title = "The papers' claims: paired-bootstrap 95 % intervals"
    ax.set_title(title + (f"\n({not_run} rows not run: see the claims table)" if not_run else ""), fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
