"""The report's figures (PNG, matplotlib): accuracy against GFLOPs for every run (LiteEval Fig. 2,
AdaFocus Fig. 6), online accuracy per budget, fine-feature use per class (LiteEval Fig. 4), and each
run's training curves (from its log.csv)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .runs import Run, select


def _score(metrics: dict) -> tuple[float, str]:
    if metrics.get("mAP") is not None and np.isfinite(metrics["mAP"]):
        return metrics["mAP"], "mAP"
    return metrics["top1"], "top-1"


def operating_points(runs: list[Run], runs_dir: Path) -> pd.DataFrame:
    """operating_points.csv: every run's curve.csv rows (its knobs' targets, its online budgets), run first."""
    curves = [(r, r.files.table("curve.csv")) for r in runs]
    tables = [curve.assign(run=str(r.path.relative_to(runs_dir)), method=r.method)
              for r, curve in curves if curve is not None]
    if not tables:
        return pd.DataFrame()
    table = pd.concat(tables, ignore_index=True)
    return table[["run", "method"] + [c for c in table.columns if c not in ("run", "method")]]


KNOB_STYLES = {"gate": "-", "keep": "-", "exit": "--", "budget": ":"}     # one line style per knob, every run


def _accuracy_vs_gflops(runs: list[Run], plt):
    """Every run a point at its trained setting; a run with curve.csv also its operating curve, a line
    per knob (the papers' figures: the adaptive methods' curves, the baselines' single points)."""
    fig, ax = plt.subplots(figsize=(7, 5))
    score, label = _score(runs[0].metrics)[1], {"mAP": "mAP", "top-1": "top1"}
    for i, method in enumerate(sorted({r.method for r in runs})):
        colour = f"C{i % 10}"
        points = [(r.metrics["gflops_mean"], _score(r.metrics)[0]) for r in runs if r.method == method]
        ax.scatter(*zip(*points), color=colour, label=method, zorder=3)
        for run in (r for r in runs if r.method == method and r.files.has("curve.csv")):
            curve = run.files.table("curve.csv")
            for knob, rows in curve.groupby("knob", sort=False):
                rows = rows.sort_values("gflops_mean")
                ax.plot(rows.gflops_mean, rows[label[score]], KNOB_STYLES.get(knob, "-."), color=colour, marker=".",
                        alpha=0.8,
                        label=f"{run.path.name}: {knob}")
    ax.set_xscale("log")
    ax.set(xlabel="GFLOPs per video", ylabel=score, title="accuracy vs computation (lines: one run's operating curve)")
    ax.legend(fontsize=6)
    fig.tight_layout()
    return fig


def make_figures(runs: list[Run], out: Path) -> list[str]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    if runs:                                     # LiteEval Fig. 2 / AdaFocus Fig. 6 (offline)
        _accuracy_vs_gflops(runs, plt).savefig(out / "accuracy_vs_gflops.png", dpi=120)
        plt.close("all")
        written.append("accuracy_vs_gflops.png")
    online = [(r, r.files.table("online.csv")) for r in runs if r.files.has("online.csv")]
    if online:                                   # online recognition with a budget (LiteEval Fig. 2)
        fig, ax = plt.subplots(figsize=(6, 4.5))
        for run, table in online:
            for method, rows in table.groupby("method", sort=False):
                ax.plot(rows.gflops_mean, rows.top1, marker="o", label=f"{run.path.name}: {method}")
        ax.set(xlabel="GFLOPs per video", ylabel="top-1", title="online recognition with a budget of K")
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / "online.png", dpi=120)
        plt.close(fig)
        written.append("online.png")
    main = select(runs, {"method": "liteeval"})
    if main is not None:                         # LiteEval Fig. 4: fine-feature use per class
        predictions = main.files.table("predictions.csv")
        predictions["class"] = predictions.label.astype(str).str.split("|").str[0]
        classes = predictions["class"].value_counts().index[:12]
        groups = [predictions.fine_count[predictions["class"] == c].to_numpy() for c in classes]
        fig, ax = plt.subplots(figsize=(7, 4.5))
        ax.boxplot(groups, tick_labels=list(classes))
        ax.scatter(range(1, len(groups) + 1), [g.mean() for g in groups], color="gold", zorder=3, label="mean")
        ax.set(ylabel="fine features read per video", title=f"fine-feature use per class ({main.path.name})")
        ax.tick_params(axis="x", rotation=45)
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / "fine_usage_per_class.png", dpi=120)
        plt.close(fig)
        written.append("fine_usage_per_class.png")
    return written


def training_curves(runs: list[Run], out: Path, runs_dir: Path) -> list[str]:
    """curves/RUN.png per run with a log.csv: the training loss and the learning rate per epoch, each
    stage a line of its own."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for run in runs:
        log = run.files.table("log.csv")
        if log is None:
            continue
        name = str(run.path.relative_to(runs_dir)).replace("/", "__")
        fig, (loss_ax, rate_ax) = plt.subplots(1, 2, figsize=(9, 3.5))
        for stage, rows in log.groupby("stage", sort=False):
            loss_ax.plot(rows.epoch, rows.train_loss, marker=".", label=str(stage))
            rate_ax.plot(rows.epoch, rows.lr, marker=".", label=str(stage))
        loss_ax.set(xlabel="epoch", ylabel="training loss", title=f"{name} ({run.method})")
        rate_ax.set(xlabel="epoch", ylabel="learning rate (at the epoch's start)", yscale="log", title="schedule")
        for ax in (loss_ax, rate_ax):
            if ax.lines:
                ax.legend(fontsize=6)
        fig.tight_layout()
        (out / "curves").mkdir(exist_ok=True)
        fig.savefig(out / "curves" / f"{name}.png", dpi=100)
        plt.close(fig)
        written.append(f"curves/{name}.png")
    return written
