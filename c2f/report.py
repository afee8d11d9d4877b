"""`c2f report`: the papers' tables (CSV), the figures (PNG) and report.md, from run directories.

A table is rows x columns; a cell is one metric of the run whose settings match the row's (and
the column's) settings. Where several runs match, the one closest to the defaults is used.
A row with a missing run is left out and listed in missing.txt with the command that would
produce it; a table whose runs come from different manifests or caches is refused.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.backbones import SPEC_RE

from .config import TrainConfig

log = logging.getLogger(__name__)
PATCH_SIZES = (96, 128, 160, 192)
# settings that make one run a variant of another (the rest: paths, optimisation, seed)
VARIANT_KEYS = ("coarse", "fine", "glance", "focus", "frames", "glimpses", "rnn", "coarse_hidden", "fine_hidden",
                "gamma", "lam", "sync", "policy", "reward", "reuse", "keep_ratio")


@dataclass
class Run:
    path: Path
    settings: dict
    metrics: dict
    manifest_sha256: str

    @property
    def source(self) -> tuple[str, str]:
        return self.manifest_sha256, str(Path(self.settings["cache"]).resolve())


@dataclass
class Column:
    label: str
    metric: str                      # a key of METRICS
    match: dict = field(default_factory=dict)


@dataclass
class Table:
    name: str
    title: str
    rows: list[tuple[str, dict]]     # (label, settings the run must have)
    columns: list[Column]


def _pct(value) -> str:
    return "" if value is None or not np.isfinite(value) else f"{100 * value:.1f}%"


METRICS = {
    "mAP": lambda m: _pct(m["mAP"]),
    "top1": lambda m: _pct(m["top1"]),
    "GFLOPs": lambda m: f"{m['gflops_mean']:.2f}",
    "GFLOPs ± std": lambda m: f"{m['gflops_mean']:.2f} ± {m['gflops_std']:.2f}",
    "# fine feat": lambda m: f"{m['fine_mean']:.2f} ± {m['fine_std']:.2f}",
    "seconds/video (head)": lambda m: f"{m.get('head_seconds_per_video', float('nan')):.5f}",
}


def _grid(size: int) -> dict:
    """AdaFocus rows and columns are per patch size, whatever the grid's backbone and G (the
    paper's is ResNet-50 on 7 x 7; the demo's ResNet-18 on 3 x 3)."""
    return {"patch_size": size}


def _patch_size(focus) -> int | None:
    # the registry's spec syntax, without its registry check: synthetic caches name sets too
    match = SPEC_RE.match(str(focus or ""))
    return int(match["patch"]) if match and match["patch"] else None


def paper_tables() -> list[Table]:
    le = {"method": "liteeval"}
    offline = [Column("mAP", "mAP"), Column("GFLOPs", "GFLOPs")]
    per_patch = lambda metric: [Column(f"{p}x{p}", metric, _grid(p)) for p in PATCH_SIZES]  # noqa: E731
    return [
        Table("liteeval_table1", "LiteEval Table 1: offline recognition",
              [("UNIFORM", {"method": "uniform"}), ("LSTM", {"method": "lstm"}),
               ("UNIFORM+CF", {"method": "uniform_cf"}), ("LSTM+CF", {"method": "lstm_cf"}),
               ("FRAMEGLIMPSE", {"method": "frameglimpse"}), ("FASTFORWARD", {"method": "fastforward"}),
               ("LITEEVAL-RL", {"method": "liteeval_rl"}), ("LITEEVAL", le)], offline),
        Table("liteeval_table2", "LiteEval Table 2 (offline): fine backbones",
              [("DPN-10", {"method": "uniform", "fine": "dpn107@224", "frames": 10}),
               ("DPN-25", {"method": "uniform", "fine": "dpn107@224", "frames": 25}),
               ("LiteEval (DPN)", le | {"fine": "dpn107@224"}),
               ("SlowFast-10", {"method": "uniform", "fine": "slowfast_r50", "frames": 10}),
               ("SlowFast-25", {"method": "uniform", "fine": "slowfast_r50", "frames": 25}),
               ("LiteEval (SlowFast)", le | {"fine": "slowfast_r50"})],
              offline + [Column("# fine feat", "# fine feat")]),
        Table("liteeval_table4_5", "LiteEval Tables 4-5: SlowFast snippets vs LiteEval",
              [(f"SlowFast-{k}", {"method": "uniform", "fine": "slowfast_r50", "frames": k}) for k in (3, 5, 8, 10)]
              + [("LiteEval", le | {"fine": "slowfast_r50"})],
              [Column("# fine feat", "# fine feat"), Column("GFLOPs", "GFLOPs ± std"), Column("top-1", "top1")]),
        Table("liteeval_table6", "LiteEval Table 6: recurrent networks",
              [(rnn.upper(), le | {"rnn": rnn}) for rnn in ("gru", "sru", "lstm")],
              [Column("mAP", "mAP"), Column("# fine feat", "# fine feat")]),
        Table("liteeval_table7", "LiteEval Table 7: gamma",
              [(str(g), le | {"gamma": g}) for g in (0.01, 0.03, 0.1, 0.05)], offline),
        Table("liteeval_table8", "LiteEval Table 8: syncing the RNNs",
              [("w/o. sync", le | {"sync": False}), ("LITEEVAL", le | {"sync": True})], [Column("mAP", "mAP")]),
        Table("liteeval_table9", "LiteEval Table 9: units in the coarse RNN",
              [(str(h), le | {"coarse_hidden": h}) for h in (64, 128, 256, 512)], [Column("mAP", "mAP")]),
        Table("liteeval_table10", "LiteEval Table 10: runtime",
              [("DPN-10", {"method": "uniform", "fine": "dpn107@224", "frames": 10}),
               ("SLOWFAST-10", {"method": "uniform", "fine": "slowfast_r50", "frames": 10}),
               ("LSTM", {"method": "lstm"}), ("LITEEVAL", le)],
              [Column("GFLOPs", "GFLOPs"), Column("seconds/video (head)", "seconds/video (head)"),
               Column("mAP", "mAP")]),
        Table("adafocus_table1", "AdaFocus Tables 1-2: efficient recognition",
              [("FrameGlimpses", {"method": "frameglimpse"}), ("LiteEval", le)]
              + [(f"AdaFocus ({p}x{p})", {"method": "adafocus", **_grid(p)}) for p in PATCH_SIZES]
              + [(f"AdaFocus+ ({p}x{p}, keep {r})", {"method": "adafocus_plus", **_grid(p), "keep_ratio": r})
                 for p in PATCH_SIZES for r in (0.9, 0.7, 0.5)],
              [Column("mAP", "mAP"), Column("top-1", "top1"), Column("GFLOPs", "GFLOPs")]),
        Table("adafocus_table4", "AdaFocus Table 4: reusing the glance feature (mAP)",
              [("w/o reuse", {"method": "adafocus", "reuse": False}), ("AdaFocus", {"method": "adafocus", "reuse": True})],
              per_patch("mAP")),
        Table("adafocus_table5", "AdaFocus Table 5: policies and rewards (mAP, no reuse)",
              [(f"{p.capitalize()} Policy", {"method": "adafocus", "policy": p, "reuse": False})
               for p in ("random", "central", "gaussian")]
              + [(f"{r.capitalize()} Reward", {"method": "adafocus", "reward": r, "reuse": False})
                 for r in ("confidence", "increments")]
              + [("AdaFocus (ours)", {"method": "adafocus", "policy": "learned", "reward": "adafocus", "reuse": False})],
              per_patch("mAP")),
    ]


def find_runs(runs_dir: str | Path) -> list[Run]:
    runs = []
    for metrics_path in sorted(Path(runs_dir).rglob("metrics.json")):
        folder = metrics_path.parent
        if not (folder / "config.json").exists():
            continue
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        settings = TrainConfig.from_dict(config["settings"]).to_dict()
        settings["patch_size"] = _patch_size(settings.get("focus")) if settings["method"].startswith("adafocus") else None
        runs.append(Run(folder, settings, json.loads(metrics_path.read_text(encoding="utf-8")),
                        config.get("manifest_sha256", "")))
    return runs


_DEFAULTS = TrainConfig(method="liteeval", manifest="", cache="", out="").to_dict()


def _distance_from_defaults(run: Run, fixed: dict) -> int:
    return sum(run.settings.get(k) != _DEFAULTS.get(k) for k in VARIANT_KEYS if k not in fixed and k != "frames")


def select(runs: list[Run], match: dict) -> Run | None:
    """The run with these settings; among several, the one closest to the defaults, then the newest."""
    found = [r for r in runs if all(r.settings.get(k) == v for k, v in match.items())]
    if not found:
        return None
    return min(found, key=lambda r: (_distance_from_defaults(r, match), -(r.path / "metrics.json").stat().st_mtime))


_FLAGS = {"fine": "--fine", "coarse": "--coarse", "frames": "--frames", "rnn": "--rnn", "gamma": "--gamma",
          "coarse_hidden": "--coarse-hidden", "focus": "--focus", "glance": "--glance", "policy": "--policy",
          "reward": "--reward", "keep_ratio": "--keep-ratio"}


def command_for(match: dict, manifest: str, cache: str, runs_dir: Path, label: str) -> str:
    parts = ["c2f train-head", f"--method {match['method']}", f"--manifest {manifest}", f"--cache {cache}"]
    for key, value in match.items():
        if key == "sync" and value is False:
            parts.append("--no-sync")
        elif key == "reuse" and value is False:
            parts.append("--no-reuse")
        elif key == "patch_size":
            parts.append(f"--focus resnet50@224-grid7x{value}")
        elif key in _FLAGS:
            parts.append(f"{_FLAGS[key]} {value}")
    name = "".join(c if c.isalnum() else "_" for c in label.lower()).strip("_")
    parts.append(f"--out {runs_dir / name}")
    return " ".join(parts)


def build_table(table: Table, runs: list[Run], runs_dir: Path) -> tuple[pd.DataFrame | None, list[str], str | None]:
    """The table (None when no row has its runs), the missing rows' lines, and a refusal message."""
    rows, missing, used = [], [], []
    reference = runs[0].settings if runs else {"manifest": "M.csv", "cache": "CACHE"}
    for label, match in table.rows:
        cells, absent = {}, []
        for column in table.columns:
            run = select(runs, match | column.match)
            if run is None:
                absent.append(match | column.match)
            else:
                cells[column.label] = METRICS[column.metric](run.metrics)
                used.append(run)
        if absent:     # one line per run to make (a run can fill several columns)
            missing += dict.fromkeys(
                f"{table.name} / {label}: " + command_for(m, reference["manifest"], reference["cache"], runs_dir,
                                                          f"{label} {m.get('patch_size') or ''}") for m in absent)
        else:
            rows.append({"row": label} | cells)
    sources = {r.source for r in used}
    if len(sources) > 1:
        return None, missing, (f"{table.name}: refused, its runs come from {len(sources)} different manifests or "
                               f"caches ({', '.join(sorted({str(r.path) for r in used})[:4])} ...)")
    return (pd.DataFrame(rows) if rows else None), missing, None


def paper_baselines(num_classes: int = 200) -> list[dict]:
    """The papers' baseline GFLOPs in their settings, counted from the modules: backbone per frame
    (or patch, or snippet) x frames + the head's own per-frame cost (ActivityNet: 200 classes)."""
    from pipeline.backbones import gflops_per_frame, parse_spec

    from .heads import HeadDims
    from .heads.adafocus import AdaFocusHead
    from .heads.uniform import UniformHead

    cost = {spec: gflops_per_frame(parse_spec(spec)) for spec in
            ("mobilenet_v2@112", "resnet101@224", "dpn107@224", "slowfast_r50", "mobilenet_v2@224-map",
             "resnet50@224-grid7x128")}

    def uniform(fine: str, dim: int, frames: int, coarse: bool = False) -> float:
        head = UniformHead(HeadDims(num_classes, dim, 1280 if coarse else None), frames, combine=coarse)
        per_frame = cost[fine] + head.costs["fine_classifier"]
        if coarse:
            per_frame += cost["mobilenet_v2@112"] + head.costs["coarse_classifier"]
        return frames * per_frame

    focus = AdaFocusHead(HeadDims(num_classes, 2048, 1280, (1280, 7, 7), 49, (128 / 224) ** 2), frames=16)
    c = focus.costs
    adafocus = (16 * (cost["mobilenet_v2@224-map"] + cost["resnet50@224-grid7x128"] + c["patch_policy_step"]
                      + c["classifier_step"]) + c["classifier"])
    return [
        {"baseline": "UNIFORM (ResNet-101, 25 frames)", "gflops_counted": uniform("resnet101@224", 2048, 25),
         "gflops_paper": 195.5},
        {"baseline": "UNIFORM+CF (25 frames)", "gflops_counted": uniform("resnet101@224", 2048, 25, coarse=True),
         "gflops_paper": 197.5},
        {"baseline": "DPN-10", "gflops_counted": uniform("dpn107@224", 2688, 10), "gflops_paper": 183.4},
        {"baseline": "SlowFast-10", "gflops_counted": uniform("slowfast_r50", 2304, 10), "gflops_paper": 657.1},
        {"baseline": "AdaFocus (128x128, 16 frames)", "gflops_counted": adafocus, "gflops_paper": 26.6},
    ]


def _markdown(frame: pd.DataFrame) -> str:
    header = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "---|" * len(frame.columns)
    body = ["| " + " | ".join("" if pd.isna(v) else str(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *body])


def _score(metrics: dict) -> tuple[float, str]:
    if metrics.get("mAP") is not None and np.isfinite(metrics["mAP"]):
        return metrics["mAP"], "mAP"
    return metrics["top1"], "top-1"


def make_figures(runs: list[Run], out: Path) -> list[str]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    if runs:                                     # LiteEval Fig. 2 / AdaFocus Fig. 6 (offline)
        fig, ax = plt.subplots(figsize=(6, 4.5))
        for method in sorted({r.settings["method"] for r in runs}):
            points = [(r.metrics["gflops_mean"], _score(r.metrics)[0]) for r in runs if r.settings["method"] == method]
            ax.scatter(*zip(*points), label=method)
        ax.set_xscale("log")
        ax.set(xlabel="GFLOPs per video", ylabel=_score(runs[0].metrics)[1], title="accuracy vs computation")
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / "accuracy_vs_gflops.png", dpi=120)
        plt.close(fig)
        written.append("accuracy_vs_gflops.png")
    online = [(r, pd.read_csv(r.path / "online.csv")) for r in runs if (r.path / "online.csv").exists()]
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
        predictions = pd.read_csv(main.path / "predictions.csv")
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


def write_report(runs_dir: str | Path, out_dir: str | Path, count_paper_settings: bool = True) -> dict:
    """Every table the runs can fill (CSV), missing.txt, flops.csv, the figures and report.md."""
    runs_dir, out = Path(runs_dir), Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    runs = find_runs(runs_dir)
    if not runs:
        raise FileNotFoundError(f"no finished run (metrics.json + config.json) under {runs_dir}")
    sections, missing, refused, written = [], [], [], []
    for table in paper_tables():
        frame, absent, refusal = build_table(table, runs, runs_dir)
        missing += absent
        if refusal:
            refused.append(refusal)
            continue
        if frame is not None:
            frame.to_csv(out / f"{table.name}.csv", index=False)
            written.append(f"{table.name}.csv")
            sections.append(f"## {table.title}\n\n{_markdown(frame)}\n")
    (out / "missing.txt").write_text("\n".join(missing) + ("\n" if missing else ""), encoding="utf-8")
    if count_paper_settings:
        from pipeline.backbones import flops_table
        flops = pd.DataFrame([{"feature_set": r["feature_set"], "gflops_counted": round(r["gflops_counted"], 4),
                               "gflops_paper": r["gflops_paper"]} for r in flops_table()])
        flops.to_csv(out / "flops.csv", index=False)
        baselines = pd.DataFrame(paper_baselines()).round(2)
        baselines.to_csv(out / "paper_baselines.csv", index=False)
        sections.append(f"## GFLOPs per frame of every backbone (counted)\n\n{_markdown(flops)}\n")
        sections.append(f"## The papers' baselines in their settings (counted)\n\n{_markdown(baselines)}\n")
        written += ["flops.csv", "paper_baselines.csv"]
    figures = make_figures(runs, out)
    lines = [f"# c2f report: {len(runs)} runs under {runs_dir}\n", *sections]
    if refused:
        lines.append("## Refused\n\n" + "\n".join(f"- {r}" for r in refused) + "\n")
    lines.append(f"## Missing rows\n\n{len(missing)} rows have no run; missing.txt lists the commands.\n")
    lines += [f"![{name}]({name})\n" for name in figures]
    (out / "report.md").write_text("\n".join(lines), encoding="utf-8")
    return {"runs": len(runs), "tables": written, "figures": figures, "missing": len(missing), "refused": refused}
