"""`c2f report`: the papers' tables (CSV), the figures (PNG, figures.py) and report.md, from run directories.

A table is rows x columns; a cell is one metric of the run whose settings match the row's (and
the column's) settings. Where several runs match, the one closest to the defaults is used.
A row with a missing run is left out and listed in missing.txt with the command that would
produce it; a table whose runs come from different manifests or caches is refused.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.backbones.registry import SPEC_RE
from pipeline.options import to_args

from .config import TrainConfig
from .figures import make_figures
from .methods import method as method_record
from .runs import Run, find_runs, select

log = logging.getLogger(__name__)
PATCH_SIZES = (96, 128, 160, 192)
_DEFAULTS = {f.name: f.default for f in fields(TrainConfig)}


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
              # the rewards are PPO's (under --stage2 expected they differ by terms no action changes)
              + [(f"{r.capitalize()} Reward", {"method": "adafocus", "reward": r, "stage2": "ppo", "reuse": False})
                 for r in ("confidence", "increments")]
              + [("AdaFocus (ours)", {"method": "adafocus", "policy": "learned", "reward": "adafocus", "stage2": "ppo",
                                      "reuse": False}),
                 ("Expected reward, every candidate (c2f)", {"method": "adafocus", "policy": "learned",
                                                             "stage2": "expected", "reuse": False})],
              per_patch("mAP")),
    ]


def _with_patch_size(focus: str, patch: int) -> str:
    """The grid set `focus` with patches of `patch` px (same backbone, input and G)."""
    match = SPEC_RE.match(focus)
    if not match or not match["patch"]:
        return focus
    return f"{match['name']}@{match['size'] or 224}-grid{match['grid']}x{patch}"


def _settings_for(match: dict, runs: list[Run]) -> dict:
    """A missing row's settings: what the row fixes, the feature sets its method reads as the runs
    used them (so the command fits the cache the runs came from), the rest left at the defaults."""
    record = method_record(match["method"])
    settings = {k: v for k, v in match.items() if k not in ("method", "patch_size")}
    for role in record.roles.values():
        used = [r.settings[role.option] for r in runs if role.option in r.settings
                and method_record(r.settings["method"]).role_of_kind(role.kind)]
        if role.option not in settings and used:
            settings[role.option] = max(set(used), key=used.count)
    if match.get("patch_size"):
        grid_option = record.roles[record.role_of_kind("grid")].option
        focus = settings.get(grid_option) or _DEFAULTS[grid_option]
        settings[grid_option] = _with_patch_size(focus, match["patch_size"])
    return settings


def command_for(match: dict, runs: list[Run], reference: dict, runs_dir: Path, label: str) -> str:
    """The `c2f train-head` command that would fill a missing row; preceded by the `c2f extract` it
    needs when a feature set it reads is not in the cache."""
    settings = _settings_for(match, runs)
    name = "".join(c if c.isalnum() else "_" for c in label.lower()).strip("_")
    args = ["--method", match["method"], "--manifest", reference["manifest"], "--cache", reference["cache"]]
    args += to_args(TrainConfig, settings) + ["--out", str(runs_dir / name)]
    record = method_record(match["method"])
    needed = [settings.get(r.option, _DEFAULTS[r.option]) for r in record.roles.values()]
    absent = [s for s in needed if not (Path(reference["cache"]) / s / "index.json").exists()]
    extract = ""
    if absent:
        extract = ("c2f extract --manifest " + reference["manifest"] + " --out " + reference["cache"] + " "
                   + " ".join(f"--backbone {s}" for s in absent) + " ...; then ")
    return extract + "c2f train-head " + " ".join(args)


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
                f"{table.name} / {label}: " + command_for(m, runs, reference, runs_dir,
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
