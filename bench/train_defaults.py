"""Do `c2f train-head`'s defaults train each method as well as a small grid of fixed settings, and at
what cost?

    python bench/train_defaults.py [--tasks liteeval,adafocus,real,real_adafocus] [--methods lstm,liteeval,...]
                                   [--seeds 0,1] [--threads 1] [--root DIR] [--csv FILE] [--smoke]

Four tasks, each with a known answer:
- liteeval: the synthetic LiteEval cache (c2f.demo.synthetic.liteeval_cache: class evidence only in
  the fine features of the 1-3 frames a video that the coarse features mark), 500 training and
  2,000 validation videos, 5 classes; heads of 16 (coarse) and 64 (fine) units, 24 frames.
- adafocus: the synthetic AdaFocus cache (adafocus_cache: the class only in the patch of an object
  drifting over a 7 x 7 grid, marked in the glance map; evidence and marker of norm 3), 400 training
  and 1,000 validation videos, 5 classes; GRUs of 64 units.
- real: real H.264 videos (c2f.demo.real_task: a texture readable at 224 px only, on 3-5 of the 30
  frames sampled at 1 fps; 6 classes), torchvision's ImageNet MobileNetV2 at 112 px (coarse) and
  224 px (fine), 120 training and 360 validation videos; the heads' default sizes.
- real_adafocus: videos of the same kind (120 training, 180 validation), AdaFocus's sets: the ImageNet
  MobileNetV2 glance map at 112 px (it shows where the square is, not its texture) and a 3 x 3 grid of
  96 px patches cut from the 224 px frame, each through MobileNetV2 (the 56 px square fits in one);
  16 segments, GRUs of REAL_ADAFOCUS_HIDDEN units. Every AdaFocus setting is also trained with the
  random and the central patch policy (FIXED_POLICIES; same cache, seeds and stages): a learned
  policy that reads the glance must beat them.

Every single-stage method on the liteeval and real tasks, AdaFocus and AdaFocus+ on the adafocus tasks:
the defaults against every setting of a grid (every other setting at its default), each trained once
per seed and scored on the validation split, top-1 averaged over the seeds. Single-stage heads:
--lr {1e-3, 3e-3, 1e-2} x --epochs {10, 30, 60}, each rate given to every weight (a plain AdamW's rate,
as a user tuning by hand would set it; the defaults' --lr is width-scaled). AdaFocus (three stages):
STAGED_GRID, stage epochs x stage rates at 1/3, 1 and 3 times the paper's (0.05 for SGD in stage I,
3e-4 for Adam in stage II, 5e-3 for SGD in stage III), and the paper's own setting (--preset
adafocus-activitynet's 50, 50, 10 epochs at those rates). A method's defaults and grid run one after
the other, so that load from elsewhere on the machine weighs on both alike. Training seconds are
metrics.json's (the training loop's, not loading, evaluation or the operating curve, which is not
drawn: --no-curve); the time ratio is the defaults' over the grid best's. Prints one row per task
and method (on real_adafocus first one row per setting, with every seed's top-1 for each policy);
--csv keeps every setting's mean and per-seed top-1.
"""
from __future__ import annotations

import argparse
import itertools
import logging
import math
import statistics
import sys
import tempfile
from pathlib import Path
from unittest import mock

import pandas as pd
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from c2f.config import RATE_WIDTH, TrainConfig          # noqa: E402
from c2f.demo.real_task import GLANCE, FOCUS, write_real_task          # noqa: E402
from c2f.demo.synthetic import adafocus_cache, liteeval_cache     # noqa: E402
from c2f.training import train_head                     # noqa: E402
from c2f.training.presets import PRESETS                # noqa: E402

SINGLE_STAGE = ["uniform", "uniform_cf", "lstm", "lstm_cf", "liteeval", "liteeval_rl", "frameglimpse", "fastforward"]
STAGED = ["adafocus", "adafocus_plus"]
ADAFOCUS_TASKS = ("adafocus", "real_adafocus")
FIXED_POLICIES = {"real_adafocus": ("random", "central")}    # trained beside the learned policy, same seeds
GRID_LRS, GRID_EPOCHS = (1e-3, 3e-3, 1e-2), (10, 30, 60)
PAPER = PRESETS["adafocus-activitynet"].settings
PAPER_STAGE_LRS = tuple(PAPER["stage_lrs"])          # 0.05 (SGD), 3e-4 (Adam), 5e-3 (SGD)
PAPER_STAGE_EPOCHS = tuple(PAPER["stage_epochs"])    # 50, 50, 10
STAGE_EPOCHS, STAGE_LR_SCALES = ((10, 10, 3), (30, 30, 10), (60, 60, 20)), (1 / 3, 1.0, 3.0)
REAL_ADAFOCUS_HIDDEN = 128
SMOKE_DEFAULTS = ({"steps": 4}, {"stage_epochs": (1, 1, 1)})     # single-stage, staged: seconds, not a measurement


def synthetic(folder: Path, make, **arguments) -> dict:
    """A synthetic cache's manifest and cache folder, written unless --root holds it already."""
    if not (folder / "manifest.csv").exists():
        make(folder, **arguments)
    return dict(manifest=str(folder / "manifest.csv"), cache=str(folder / "cache"))


def make_tasks(root: Path, names: list[str], smoke: bool) -> dict[str, dict]:
    """name -> the settings every run on that task shares (data, feature sets, head sizes)."""
    tasks = {}
    if "liteeval" in names:
        train, val = (40, 20) if smoke else (500, 2000)
        tasks["liteeval"] = synthetic(root / f"liteeval_{train}_{val}", liteeval_cache, num_train=train, num_val=val,
                                      evidence=5.0) | dict(coarse_hidden=16, fine_hidden=64, frames=24)
    if "adafocus" in names:
        train, val = (40, 20) if smoke else (400, 1000)
        tasks["adafocus"] = synthetic(root / f"adafocus_{train}_{val}", adafocus_cache, num_train=train, num_val=val,
                                      grid=7, marker=3.0, evidence=3.0) | dict(focus="resnet50@224-grid7x128",
                                                                                adafocus_hidden=64)
    for name, sets, (train, val, seconds) in (("real", None, (120, 360, 30)), ("real_adafocus", (GLANCE, FOCUS),
                                                                                (120, 180, 30))):
        if name not in names:
            continue
        train, val, seconds = (6, 6, 5) if smoke else (train, val, seconds)
        real = write_real_task(root / f"{name}_{train}_{val}_{seconds}s", train, val, seconds,
                               weights="random" if smoke else "imagenet", **({"sets": sets} if sets else {}))
        tasks[name] = dict(manifest=str(real.manifest), cache=str(real.cache)) | (
            dict(glance=real.glance, focus=real.focus, adafocus_hidden=REAL_ADAFOCUS_HIDDEN) if sets else
            dict(coarse=real.coarse, fine=real.fine))
    return tasks


def staged_grid() -> list[dict]:
    """AdaFocus's grid: the paper's own setting first, then every length at every scale of its rates."""
    settings = [{"stage_epochs": e, "stage_lrs": tuple(float(f"{lr * s:.3g}") for lr in PAPER_STAGE_LRS)}
                for e, s in itertools.product(STAGE_EPOCHS, STAGE_LR_SCALES)]
    return [{"stage_epochs": PAPER_STAGE_EPOCHS, "stage_lrs": PAPER_STAGE_LRS}] + settings


def grid(method: str, smoke: bool) -> list[dict]:
    """The grid's settings for a method (every other setting at its default)."""
    if method in STAGED:
        return [{"stage_epochs": (1, 1, 1), "stage_lrs": PAPER_STAGE_LRS}] if smoke else staged_grid()
    lrs, epochs = ((1e-2,), (2,)) if smoke else (GRID_LRS, GRID_EPOCHS)
    return [{"lr": lr, "epochs": e} for lr, e in itertools.product(lrs, epochs)]


def train_once(runs: Path, task: dict, method: str, seed: int, settings: dict) -> dict:
    """One training; a grid setting (one that names --lr) gives every weight that rate, as a plain
    AdamW would: the grid is the rates a user would try, not c2f's width-scaled ones."""
    name = "_".join([method, str(seed)] + [f"{k}{v}" for k, v in settings.items()]).replace(" ", "")
    cfg = TrainConfig.of(method=method, out=str(runs / name), seed=seed, progress=False, overwrite=True, curve=False,
                         **(task | settings))
    with mock.patch("c2f.training.schedule.RATE_WIDTH", math.inf if "lr" in settings else RATE_WIDTH):
        metrics = train_head(cfg)
    return {"top1": metrics["top1"], "seconds": metrics["training"]["seconds"], "gflops": metrics["gflops_mean"],
            "epochs": metrics["training"]["epochs"]}


def trained(runs_dir: Path, task: dict, method: str, seeds: list[int], settings: dict, policy: str) -> dict:
    """One setting with one patch policy (None: the method has none), trained once per seed: the means,
    and every seed's top-1."""
    given = settings | ({"policy": policy} if policy else {})
    results = [train_once(runs_dir, task, method, seed, given) for seed in seeds]
    return {"settings": settings, "policy": policy, "top1": statistics.mean(r["top1"] for r in results),
            "top1_seeds": [r["top1"] for r in results], "seconds": statistics.mean(r["seconds"] for r in results),
            "gflops": statistics.mean(r["gflops"] for r in results), "epochs": results[0]["epochs"]}


def compare(runs_dir: Path, task: dict, method: str, seeds: list[int], smoke: bool, fixed: tuple[str, ...] = ()):
    """The defaults against every setting of the grid, each the mean over the seeds, trained one after
    the other; the grid's best is its highest top-1 (the faster setting on a tie). An AdaFocus method
    with `fixed` patch policies also trains them at the defaults and at the grid's first setting (the
    paper's own), same seeds and stages: the row's `fixed` is their mean top-1 at the defaults. Each
    setting of such a task is printed as it is done. Returns the summary and every run."""
    runs, fixed_at_defaults = [], {}
    defaults = SMOKE_DEFAULTS[method in STAGED] if smoke else {}
    settings_list = [defaults] + grid(method, smoke)
    for k, settings in enumerate(settings_list):
        runs.append(trained(runs_dir, task, method, seeds, settings, "learned" if method in STAGED else None))
        others = [trained(runs_dir, task, method, seeds, settings, policy) for policy in fixed if k < 2]
        if fixed:
            print(setting_row(runs[-1], others), flush=True)
        fixed_at_defaults = fixed_at_defaults or {r["policy"]: r["top1"] for r in others}
        runs += others
    learned = [r for r in runs if r["policy"] in (None, "learned")]
    default, tuned = learned[0], learned[1:]
    best = max(tuned, key=lambda r: (r["top1"], -r["seconds"]))
    return {"default": default, "best": best, "gap": best["top1"] - default["top1"], "fixed": fixed_at_defaults,
            "time_ratio": default["seconds"] / best["seconds"] if best["seconds"] else float("nan")}, runs


def setting_text(settings: dict) -> str:
    text = " ".join(f"--{k.replace('_', '-')} {','.join(map(str, v)) if isinstance(v, tuple) else v}"
                    for k, v in settings.items())
    return text or "defaults"


def setting_row(learned: dict, fixed: list[dict]) -> str:
    """One setting of an AdaFocus task with fixed policies: every policy's top-1, per seed and mean."""
    def seeds(run: dict) -> str:
        return f"{run['top1']:.3f} ({' / '.join(f'{t:.3f}' for t in run['top1_seeds'])})"
    cells = [setting_text(learned["settings"]), f"learned {seeds(learned)}"] + [f"{r['policy']} {seeds(r)}" for r in fixed]
    if fixed:
        cells.append(f"margin {(learned['top1'] - max(r['top1'] for r in fixed)) * 100:+.1f}")
    return "  setting | " + " | ".join(cells + [f"{learned['seconds']:.1f} s"])


def table_row(task: str, method: str, row: dict) -> str:
    default, best = row["default"], row["best"]
    epochs = default["epochs"] if isinstance(default["epochs"], int) else ",".join(map(str, default["epochs"]))
    fixed = row["fixed"] and f" (random {row['fixed']['random']:.3f}, central {row['fixed']['central']:.3f})"
    return (f"| {task} | {method} | {default['top1']:.3f}{fixed or ''} | {epochs} | {default['seconds']:.1f} | "
            f"{best['top1']:.3f} | {setting_text(best['settings'])} | {best['seconds']:.1f} | "
            f"{row['gap'] * 100:+.1f} | {row['time_ratio']:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", default="liteeval,adafocus,real,real_adafocus")
    parser.add_argument("--methods", default=",".join(SINGLE_STAGE + STAGED))
    parser.add_argument("--seeds", default="0,1", help="training seeds, comma-separated (results are their mean)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: steady timings on a busy machine)")
    parser.add_argument("--root", help="keep the tasks' data here (reused by later runs); default: a temporary folder")
    parser.add_argument("--csv", help="write every run here")
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    logging.disable(logging.WARNING)          # the tasks' shared sizes do not apply to every method
    methods = args.methods.split(",")
    if args.smoke:
        methods, args.seeds = ["uniform", "lstm", "adafocus"], "0"
    seeds = [int(s) for s in args.seeds.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.root or tmp)
        tasks = make_tasks(root, args.tasks.split(","), args.smoke)
        print(f"top-1 on each task's validation split, the mean over seeds {seeds}; seconds: of the training loop "
              f"({args.threads} thread); gap: grid's best minus defaults, in points; time ratio: defaults' seconds "
              f"over the grid best's; margin: the learned patch policy's top-1 minus the best fixed one's")
        print("| task | method | defaults: top-1 | epochs | s | grid best: top-1 | setting | s | gap | time ratio |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        every = []
        for task_name, task in tasks.items():
            for method in [m for m in methods if (m in STAGED) == (task_name in ADAFOCUS_TASKS)]:
                row, runs = compare(root / "runs" / task_name, task, method, seeds, args.smoke,
                                    FIXED_POLICIES.get(task_name, ()))
                every += [{"task": task_name, "method": method, **r, "settings": setting_text(r["settings"])}
                          for r in runs]
                print(table_row(task_name, method, row), flush=True)
        if args.csv:
            pd.DataFrame(every).to_csv(args.csv, index=False)


if __name__ == "__main__":
    main()
