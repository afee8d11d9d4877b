"""c2f command line: it only parses. Each command's options are generated from its settings
dataclass (pipeline.options), which carries their defaults, help and validation, and each
command calls a function a test can call too."""
from __future__ import annotations

import logging
import shlex
import sys
import time
from pathlib import Path

import click

from c2f.config import TrainConfig
from c2f.predict_job import PredictConfig
from pipeline.demo_videos import DemoVideoConfig
from pipeline.extract import ExtractConfig
from pipeline.files import DiskFullError
from pipeline.finetune import FinetuneConfig
from pipeline.options import click_options


def _fail(message: str) -> None:
    click.echo(f"c2f: error: {message}", err=True)
    sys.exit(2)


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="Log more.")
def main(verbose: bool) -> None:
    """c2f: coarse-to-fine video recognition on a feature cache (LiteEval, AdaFocus)."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(message)s")


# ------------------------------------------------------------------ manifests

@main.group()
def manifest() -> None:
    """Build a manifest CSV from official annotations, or check one."""


def _write_rows(rows, out):
    from pipeline.manifest import ManifestError, read_manifest, write_manifest
    try:
        path = write_manifest(rows, out)
        checked = read_manifest(path)
        classes = checked.classes()
    except (ManifestError, OSError) as err:
        _fail(str(err))
    splits = {s: len(checked.split(s)) for s in ("train", "val", "test")}
    click.echo(f"wrote {path}: {len(checked.entries)} videos ({', '.join(f'{k} {v}' for k, v in splits.items())}), "
               f"{len(classes)} classes, {len(checked.warnings)} unreadable paths")


@manifest.command("activitynet")
@click.argument("json_path", type=click.Path(exists=True, dir_okay=False))
@click.option("--videos", required=True, type=click.Path(file_okay=False), help="Folder of the video files.")
@click.option("--out", required=True, type=click.Path(dir_okay=False))
def manifest_activitynet(json_path, videos, out):
    """ActivityNet v1.3 JSON."""
    from pipeline.manifest import from_activitynet
    _write_rows(from_activitynet(json_path, videos), out)


@manifest.command("kinetics")
@click.argument("csv_path", type=click.Path(exists=True, dir_okay=False))
@click.option("--videos", required=True, type=click.Path(file_okay=False))
@click.option("--out", required=True, type=click.Path(dir_okay=False))
@click.option("--split", type=click.Choice(["train", "val", "test"]), help="Override the CSV's split column.")
@click.option("--subset", type=click.Path(exists=True, dir_okay=False), help="Mini-Kinetics: file of ids to keep.")
def manifest_kinetics(csv_path, videos, out, split, subset):
    """Kinetics / Mini-Kinetics CSV (label, youtube_id, time_start, time_end, split)."""
    from pipeline.manifest import from_kinetics
    _write_rows(from_kinetics(csv_path, videos, split, subset), out)


@manifest.command("fcvid")
@click.option("--split-list", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--labels", "label_matrix", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--categories", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--videos", required=True, type=click.Path(file_okay=False))
@click.option("--out", required=True, type=click.Path(dir_okay=False))
def manifest_fcvid(split_list, label_matrix, categories, videos, out):
    """FCVID split list, label matrix and category list."""
    from pipeline.manifest import from_fcvid
    _write_rows(from_fcvid(split_list, label_matrix, categories, videos), out)


@manifest.command("sthsth")
@click.argument("json_path", type=click.Path(exists=True, dir_okay=False))
@click.option("--labels", "labels_json", type=click.Path(exists=True, dir_okay=False), help="labels.json")
@click.option("--videos", required=True, type=click.Path(file_okay=False))
@click.option("--split", required=True, type=click.Choice(["train", "val", "test"]))
@click.option("--out", required=True, type=click.Path(dir_okay=False))
def manifest_sthsth(json_path, labels_json, videos, split, out):
    """Something-Something v2 JSON."""
    from pipeline.manifest import from_something_something
    _write_rows(from_something_something(json_path, labels_json, videos, split), out)


@manifest.command("folder")
@click.argument("root", type=click.Path(exists=True, file_okay=False))
@click.option("--split", default="train", type=click.Choice(["train", "val", "test"]),
              help="Split for ROOT/CLASS/... (ROOT/SPLIT/CLASS/... uses the folder names).")
@click.option("--out", required=True, type=click.Path(dir_okay=False))
def manifest_folder(root, split, out):
    """A folder per class."""
    from pipeline.manifest import from_folder
    _write_rows(from_folder(root, split), out)


@manifest.command("check")
@click.argument("path", type=click.Path(dir_okay=False))
def manifest_check(path):
    """Validate a manifest: errors with line numbers, unreadable paths as warnings."""
    from pipeline.manifest import ManifestError, read_manifest
    try:
        checked = read_manifest(path)
        classes = checked.classes()
    except ManifestError as err:
        _fail(str(err))
    for warning in checked.warnings:
        click.echo(f"warning: {warning}", err=True)
    click.echo(f"{path}: {len(checked.entries)} videos, {len(classes)} classes, ok")


# ------------------------------------------------------------------ phase one

def _config(config_class, options: dict):
    """The command's dataclass from its parsed options; its validation errors are one line."""
    try:
        return config_class(**options)
    except ValueError as err:
        _fail(str(err))


@main.command()
@click_options(ExtractConfig)
def extract(**options):
    """Phase one: decode each video once, run every backbone, write HDF5 shards."""
    from pipeline.backbones import WeightsError
    from pipeline.extract import extract as run_extract
    from pipeline.manifest import ManifestError

    cfg = _config(ExtractConfig, options)
    try:
        summary = run_extract(cfg)
    except DiskFullError as err:           # a fault, not a usage error: exit status 1
        click.echo(f"c2f: error: {err}", err=True)
        sys.exit(1)
    except (ManifestError, WeightsError, ValueError, RuntimeError, OSError) as err:
        _fail(str(err))
    click.echo(summary.line())
    if summary.failed:
        click.echo(f"failed videos are listed in {Path(cfg.out) / 'errors.csv'}")
    if summary.done == 0 and summary.failed > 0 and summary.in_cache == 0:     # nothing extracted, ever
        sys.exit(1)


@main.group()
def cache() -> None:
    """Check a feature cache, or rebuild its index.json files from the shards."""


@cache.command("verify")
@click.argument("folder", type=click.Path(file_okay=False, exists=True))
def cache_verify(folder):
    """Every shard of every set opens and agrees with index.json (ids, offsets, frame counts,
    attributes). Exit status 1 when anything is wrong."""
    from pipeline.cache import REPAIR, verify_cache
    report = verify_cache(Path(folder))
    for name, problems in report.items():
        click.echo(f"{name}: " + ("ok" if not problems else f"{len(problems)} problems"))
        for problem in problems:
            click.echo(f"  {problem}")
    if any(report.values()):
        click.echo(f"repair: {REPAIR}; or c2f cache reindex {folder} for a damaged index.json")
        sys.exit(1)


@cache.command("reindex")
@click.argument("folder", type=click.Path(file_okay=False, exists=True))
def cache_reindex(folder):
    """Rebuild each set's index.json from its shards (which carry every attribute); a damaged index
    is kept aside as index.json.damaged, unreadable shards as *.broken."""
    from pipeline.cache import CacheError, reindex_cache
    try:
        rebuilt = reindex_cache(Path(folder))
    except (CacheError, RuntimeError, OSError) as err:
        _fail(str(err))
    for name, index in rebuilt.items():
        click.echo(f"{name}: {len(index.shards)} shards, {len(index.done_videos())} videos, "
                   f"{len(index.failed)} failed (from errors.csv)")


@main.command("finetune-backbone")
@click_options(FinetuneConfig)
def finetune_backbone(**options):
    """Fine-tune a backbone as a frame classifier on the manifest's videos, for `c2f extract --weights SET=OUT`.

    Every sampled frame takes its video's labels. A killed run resumes from OUT.partial."""
    from pipeline.backbones import WeightsError
    from pipeline.finetune import finetune
    from pipeline.manifest import ManifestError

    cfg = _config(FinetuneConfig, options)
    try:
        record = finetune(cfg)
    except (ManifestError, WeightsError, ValueError, OSError) as err:
        _fail(str(err))
    last = record["history"][-1] if record["history"] else {}
    held_out = "".join(f", {cfg.eval_split} {kind} accuracy {record[f'{cfg.eval_split}_{kind}_accuracy']:.3f}"
                       for kind in ("frame", "video") if f"{cfg.eval_split}_{kind}_accuracy" in record)
    click.echo(f"wrote {cfg.out} ({record['train_frames']} frames, loss {last.get('loss', float('nan')):.3f}, "
               f"train accuracy {last.get('train_accuracy', float('nan')):.3f}{held_out}); "
               f"use it with c2f extract --weights {record['feature_set']}=PATH")


@main.command()
@click.option("--data", default="data_manifests/demo", show_default=True, type=click.Path(file_okay=False),
              help="Where the demo videos and their manifest go.")
@click.option("--out", default="demo_out", show_default=True, type=click.Path(file_okay=False))
@click.option("--no-progress", is_flag=True)
def demo(data, out, no_progress):
    """The whole pipeline on the embedded demo videos (`make demo`): each step is printed as the
    `c2f` command it runs."""
    from c2f.demo import demo_steps

    started = time.perf_counter()
    for step in demo_steps(data, out, progress=not no_progress):
        click.echo(f"\n$ c2f {shlex.join(step)}", err=True)
        step_started = time.perf_counter()
        try:
            main.main(step, prog_name="c2f", standalone_mode=False)
        except SystemExit as stop:
            if stop.code:
                _fail(f"the demo stopped at `c2f {step[0]}` (exit status {stop.code})")
        click.echo(f"({step[0]}: {time.perf_counter() - step_started:.0f} s)", err=True)
    click.echo(f"\nall steps: {time.perf_counter() - started:.0f} s", err=True)
    click.echo(f"\ndemo done: videos in {data}, cache in {out}/cache, runs in {out}/runs, "
               f"report: {Path(out) / 'report' / 'report.md'}")


@main.command("demo-videos")
@click_options(DemoVideoConfig)
def demo_videos(**options):
    """The embedded demo dataset: 224 px H.264 videos whose class is a 1-pixel texture on a small
    square shown on a few frames: visible at 112 px, readable only at 224 px."""
    from pipeline.demo_videos import write_demo_videos

    cfg = _config(DemoVideoConfig, options)
    path = write_demo_videos(cfg)
    click.echo(f"wrote {path}: {cfg.train_videos} train and {cfg.val_videos} val videos")


@main.command()
@click.option("--csv", "as_csv", is_flag=True, help="CSV instead of a table.")
def flops(as_csv):
    """Counted GFLOPs (multiply-adds) per frame of every supported feature set."""
    from pipeline.backbones import flops_table
    rows = flops_table()
    if as_csv:
        click.echo("feature_set,gflops_counted,gflops_paper")
        for r in rows:
            click.echo(f"{r['feature_set']},{r['gflops_counted']:.4f},{r['gflops_paper'] if r['gflops_paper'] else ''}")
        return
    click.echo(f"{'feature set':<26}{'input':<18}{'feature':<16}{'GFLOPs counted':>15}{'paper':>9}")
    for r in rows:
        paper = f"{r['gflops_paper']:.4g}" if r["gflops_paper"] else "-"
        click.echo(f"{r['feature_set']:<26}{'x'.join(map(str, r['input'])):<18}"
                   f"{'x'.join(map(str, r['feature_shape'])):<16}{r['gflops_counted']:>15.4f}{paper:>9}")
    click.echo("per frame; a grid's cost is per patch, SlowFast's per 8x8 snippet")


# ------------------------------------------------------------------ phase two

@main.command("train-head")
@click_options(TrainConfig)
def train_head(**options):
    """Phase two: train a head on the cache's train split, evaluate it, write the run directory."""
    import json

    from c2f.data import CacheError
    from c2f.train import train_head as run_train
    from pipeline.manifest import ManifestError

    cfg = _config(TrainConfig, options)
    try:
        metrics = run_train(cfg)
    except (ManifestError, CacheError, OSError, ValueError, FloatingPointError) as err:
        _fail(str(err))
    shown = {k: metrics[k] for k in ("top1", "mAP", "gflops_mean", "fine_mean")}
    click.echo(f"{cfg.method} on {metrics['num_videos']} {cfg.eval_split} videos: {json.dumps(shown)}; "
               f"run in {cfg.out}")


@main.command("evaluate-online")
@click.option("--run", "run_dir", required=True, type=click.Path(file_okay=False, exists=True))
@click.option("--budget", "budgets", required=True, multiple=True, type=click.IntRange(min=1),
              help="K: fine-feature reads before predicting. Repeat for several.")
@click.option("--uniform-run", type=click.Path(file_okay=False, exists=True),
              help="A uniform run on the same fine features: adds the UNIFORM-K and SEQ-K rows.")
@click.option("--batch-size", default=256, show_default=True, type=click.IntRange(min=1))
@click.option("--no-progress", is_flag=True)
def evaluate_online_command(run_dir, budgets, uniform_run, batch_size, no_progress):
    """Online recognition with a budget of K fine reads; writes RUN/online.csv."""
    from c2f.data import CacheError
    from c2f.online import evaluate_online
    from pipeline.manifest import ManifestError

    try:
        rows = evaluate_online(run_dir, sorted(set(budgets)), uniform_run, batch_size, progress=not no_progress)
    except (ManifestError, CacheError, OSError, ValueError) as err:
        _fail(str(err))
    click.echo(f"{'method':<14}{'K':>4}{'top1':>8}{'GFLOPs':>10}{'fine':>7}{'frames':>8}")
    for r in rows:
        click.echo(f"{r['method']:<14}{r['K']:>4}{r['top1']:>8.3f}{r['gflops_mean']:>10.2f}{r['fine_mean']:>7.2f}"
                   f"{r['frames_seen_mean']:>8.2f}")
    click.echo(f"written to {run_dir}/online.csv")


@main.command("synthetic-cache")
@click.option("--kind", required=True, type=click.Choice(["liteeval", "adafocus"]))
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Folder: manifest.csv and cache/.")
@click.option("--train-videos", default=600, show_default=True, type=click.IntRange(min=1))
@click.option("--val-videos", default=300, show_default=True, type=click.IntRange(min=0))
@click.option("--seed", default=0, show_default=True)
@click.option("--overwrite", is_flag=True)
def synthetic_cache(kind, out, train_videos, val_videos, seed, overwrite):
    """A feature cache with a known answer, to try phase two in minutes (no video, no backbone).

    liteeval: class evidence only in the fine features of 1-3 frames a video, which the coarse
    features mark. adafocus: the class only in the patch holding a drifting object, a 5 x 5 grid,
    the glance map marking where the object is. Sets are named and priced like the real backbones."""
    from c2f.synthetic import write_synthetic_cache
    try:
        made, sets = write_synthetic_cache(kind, out, train_videos, val_videos, seed, overwrite)
    except FileExistsError as err:
        _fail(str(err))
    click.echo(f"wrote {made.manifest} and {made.cache} ({sets}); {train_videos} train, {val_videos} val videos")


@main.command()
@click.argument("videos", nargs=-1, type=click.Path(dir_okay=False))
@click_options(PredictConfig)
def predict(videos, **options):
    """Run a trained head on raw videos (VIDEO... or --manifest), computing the expensive network only
    where the head decides; writes OUT/predictions.csv, decisions.csv, summary.json, errors.csv."""
    from c2f.predict import PredictError
    from c2f.predict_job import predict_videos
    from pipeline.backbones import WeightsError
    from pipeline.manifest import ManifestError

    cfg = _config(PredictConfig, options | {"videos": list(videos)})
    try:
        summary = predict_videos(cfg)
    except (PredictError, WeightsError, ManifestError, OSError, ValueError, RuntimeError) as err:
        _fail(str(err))
    if summary is None:          # a torchrun rank other than 0: rank 0 reports
        return
    seconds = summary["seconds"]
    click.echo(f"{summary['videos']} videos ({summary['errors']} failed, see errors.csv), {summary['frames']} frames: "
               f"{summary['gflops_executed_mean'] or 0:.2f} GFLOPs executed a video; seconds: "
               + ", ".join(f"{k} {v:.1f}" for k, v in seconds.items()) + f"; written to {cfg.out}")


# ------------------------------------------------------------------ report

@main.command()
@click.option("--runs", "runs_dir", required=True, type=click.Path(file_okay=False, exists=True),
              help="Folder holding run directories (searched recursively).")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Report folder.")
def report(runs_dir, out):
    """The papers' tables (CSV), missing.txt, flops.csv, figures (PNG) and report.md from runs."""
    from c2f.report import write_report
    try:
        summary = write_report(runs_dir, out)
    except OSError as err:
        _fail(str(err))
    for refusal in summary["refused"]:
        click.echo(f"warning: {refusal}", err=True)
    click.echo(f"{summary['runs']} runs: {len(summary['tables'])} tables, {len(summary['figures'])} figures, "
               f"{summary['missing']} missing rows (see missing.txt); open {out}/report.md")


if __name__ == "__main__":
    main()
