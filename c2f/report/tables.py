"""The papers' tables as data: each row is a label and the settings its run must have, each column a
metric (and, for AdaFocus's per-patch tables, a patch size). `c2f report` (write.py) fills them."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

PATCH_SIZES = (96, 128, 160, 192)


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
    published: dict[str, str] = field(default_factory=dict)     # row label -> the published row's backbones
    note: str = ""                   # said under the table in report.md


def _pct(value) -> str:
    return "" if value is None or not np.isfinite(value) else f"{100 * min(value, 1.0):.1f}%"


def _gflops(value) -> str:
    return f"{value:.2f}" if value is not None and np.isfinite(value) else ""


def backbones(feature_sets: dict) -> str:
    """The feature sets a run read, cheap first (a run's config.json `feature_sets`)."""
    return " + ".join(dict.fromkeys(info["name"] for info in feature_sets.values()))


# each takes the run's metrics.json and config.json's feature sets
METRICS = {
    "mAP": lambda m, sets: _pct(m["mAP"]),
    "top1": lambda m, sets: _pct(m["top1"]),
    "GFLOPs": lambda m, sets: _gflops(m["gflops_mean"]),
    "GFLOPs ± std": lambda m, sets: f"{m['gflops_mean']:.2f} ± {m['gflops_std']:.2f}",
    "# fine feat": lambda m, sets: f"{m['fine_mean']:.2f} ± {m['fine_std']:.2f}",
    "seconds/video (head)": lambda m, sets: f"{m.get('head_seconds_per_video', float('nan')):.5f}",
    "backbones": lambda m, sets: backbones(sets),
}

# AdaFocus Tables 1-2 copy each baseline's row from elsewhere, with its own backbones
PUBLISHED = {"FrameGlimpses": "VGG", "AdaFrame": "MobileNetV2 + ResNet-101", "LiteEval": "MobileNetV2 + ResNet-101",
             "ListenToLook": "MobileNetV2 + ResNet-101", "SCSampler": "MobileNetV2 + ResNet-50",
             "AR-Net": "MobileNetV2 + ResNet-50/34/18", "AdaFocus (128x128)": "MobileNetV2 + ResNet-50",
             "AdaFocus (160x160)": "MobileNetV2 + ResNet-50", "AdaFocus+ (160x160)": "MobileNetV2 + ResNet-50"}
NOT_THE_PAPERS = ("Every row is a run c2f trained on one cache, its GFLOPs counted one way (docs/contracts/flops.md), "
                  "on the backbones it read (`backbones`); the published rows used theirs (`published with`), so "
                  "these GFLOPs are not the paper's.")


def _grid(size: int) -> dict:
    """AdaFocus rows and columns are per patch size, whatever the grid's backbone and G (the
    paper's is ResNet-50 on 7 x 7; the demo's ResNet-18 on 3 x 3)."""
    return {"patch_size": size}


LITEEVAL = {"method": "liteeval"}


def paper_tables() -> list[Table]:
    """Every paper table the report fills: LiteEval's, then AdaFocus's."""
    return liteeval_tables() + adafocus_tables()


def liteeval_tables() -> list[Table]:
    le = LITEEVAL
    offline = [Column("mAP", "mAP"), Column("GFLOPs", "GFLOPs")]
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
              [(f"LiteEval, {rnn.upper()}", le | {"rnn": rnn}) for rnn in ("gru", "sru", "lstm")],
              [Column("mAP", "mAP"), Column("# fine feat", "# fine feat")]),
        Table("liteeval_table7", "LiteEval Table 7: gamma",
              [(f"LiteEval, gamma {g}", le | {"gamma": g}) for g in (0.01, 0.03, 0.1, 0.05)], offline),
        Table("liteeval_table8", "LiteEval Table 8: syncing the RNNs",
              [("LiteEval w/o. sync", le | {"sync": False}), ("LiteEval", le | {"sync": True})], [Column("mAP", "mAP")]),
        Table("liteeval_table9", "LiteEval Table 9: units in the coarse RNN",
              [(f"LiteEval, {h} coarse units", le | {"coarse_hidden": h}) for h in (64, 128, 256, 512)],
              [Column("mAP", "mAP")]),
        Table("liteeval_table10", "LiteEval Table 10: runtime",
              [("DPN-10", {"method": "uniform", "fine": "dpn107@224", "frames": 10}),
               ("SLOWFAST-10", {"method": "uniform", "fine": "slowfast_r50", "frames": 10}),
               ("LSTM", {"method": "lstm"}), ("LITEEVAL", le)],
              [Column("GFLOPs", "GFLOPs"), Column("seconds/video (head)", "seconds/video (head)"),
               Column("mAP", "mAP")]),
    ]


def adafocus_tables() -> list[Table]:
    le = LITEEVAL
    per_patch = lambda metric: [Column(f"{p}x{p}", metric, _grid(p)) for p in PATCH_SIZES]  # noqa: E731
    return [
        Table("adafocus_table1", "AdaFocus Table 1: efficient recognition (ActivityNet, FCVID)",
              [("FrameGlimpses", {"method": "frameglimpse"}), ("AdaFrame", {"method": "adaframe"}), ("LiteEval", le),
               ("ListenToLook", {"method": "listentolook"}), ("SCSampler", {"method": "scsampler"}),
               ("AR-Net", {"method": "arnet"}), ("AdaFocus (128x128)", {"method": "adafocus", **_grid(128)})],
              [Column("backbones", "backbones"), Column("mAP", "mAP"), Column("GFLOPs", "GFLOPs")],
              PUBLISHED, NOT_THE_PAPERS),
        Table("adafocus_table2_minikinetics", "AdaFocus Table 2: Mini-Kinetics",
              [("LiteEval", le), ("SCSampler", {"method": "scsampler"}), ("AR-Net", {"method": "arnet"}),
               ("AdaFocus (128x128)", {"method": "adafocus", **_grid(128)}),
               ("AdaFocus (160x160)", {"method": "adafocus", **_grid(160)}),
               ("AdaFocus+ (160x160)", {"method": "adafocus_plus", **_grid(160)})],
              [Column("backbones", "backbones"), Column("Top-1 Acc.", "top1"), Column("GFLOPs", "GFLOPs")],
              PUBLISHED, NOT_THE_PAPERS),
        Table("adafocus_fig6", "AdaFocus Fig. 6 (offline): patch sizes, and AdaFocus+'s kept frames",
              [(f"AdaFocus ({p}x{p})", {"method": "adafocus", **_grid(p)}) for p in PATCH_SIZES]
              + [(f"AdaFocus+ ({p}x{p}, keep {r})", {"method": "adafocus_plus", **_grid(p), "keep_ratio": r})
                 for p in PATCH_SIZES for r in (0.9, 0.7, 0.5)],
              [Column("mAP", "mAP"), Column("top-1", "top1"), Column("GFLOPs", "GFLOPs")]),
        Table("adafocus_table4", "AdaFocus Table 4: reusing the glance feature (mAP)",
              [("AdaFocus w/o reuse", {"method": "adafocus", "reuse": False}),
               ("AdaFocus", {"method": "adafocus", "reuse": True})],
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
