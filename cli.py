"""c2f command line: parse, validate, call a function a test can call too."""
from __future__ import annotations

import logging
import sys

import click


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
    path = write_manifest(rows, out)
    try:
        checked = read_manifest(path)
    except ManifestError as err:
        _fail(str(err))
    splits = {s: len(checked.split(s)) for s in ("train", "val", "test")}
    click.echo(f"wrote {path}: {len(checked.entries)} videos ({', '.join(f'{k} {v}' for k, v in splits.items())}), "
               f"{len(checked.classes())} classes, {len(checked.warnings)} unreadable paths")


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
    except ManifestError as err:
        _fail(str(err))
    for warning in checked.warnings:
        click.echo(f"warning: {warning}", err=True)
    click.echo(f"{path}: {len(checked.entries)} videos, {len(checked.classes())} classes, ok")


# ------------------------------------------------------------------ phase one

@main.command()
@click.option("--manifest", "manifest_path", required=True, type=click.Path(dir_okay=False))
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Cache folder.")
@click.option("--backbone", "backbones", required=True, multiple=True,
              help="Feature set, e.g. mobilenet_v2@112, resnet101@224, mobilenet_v2@224-map, "
                   "resnet50@224-grid7x128, slowfast_r50. Repeat for several: one decode feeds all.")
@click.option("--fps", type=float, default=None, help="Frames per second to sample (default 1).")
@click.option("--num-frames", type=int, default=None, help="Sample N evenly spaced frames instead.")
@click.option("--weights", multiple=True, default=("imagenet",), show_default=True,
              help="imagenet | random | PATH, for all sets, or SET=VALUE for one set.")
@click.option("--batch-size", type=int, default=32, show_default=True)
@click.option("--workers", type=int, default=None,
              help="Decoding processes (default: GPU half the cores; CPU an eighth, 0 on 2 cores: decode in "
                   "the main process, since the backbones need every core).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:1, ...")
@click.option("--shard-videos", type=int, default=64, show_default=True, help="Videos per shard.")
@click.option("--retry-failed", is_flag=True, help="Try again the videos listed as failed.")
@click.option("--no-progress", is_flag=True)
def extract(manifest_path, out, backbones, fps, num_frames, weights, batch_size, workers, device,
            shard_videos, retry_failed, no_progress):
    """Phase one: decode each video once, run every backbone, write HDF5 shards."""
    import os

    from pipeline.backbones import WeightsError
    from pipeline.extract import ExtractConfig, extract as run_extract
    from pipeline.manifest import ManifestError

    if fps is not None and num_frames is not None:
        _fail("give --fps or --num-frames, not both")
    if batch_size < 1 or shard_videos < 1:
        _fail("--batch-size and --shard-videos must be >= 1")
    if workers is None:
        from pipeline.extract import resolve_device
        cores = os.cpu_count() or 2
        workers = max(1, cores // 2) if resolve_device(device).type == "cuda" else cores // 8
    cfg = ExtractConfig(manifest_path, out, list(backbones), fps=fps if num_frames is None else None,
                        num_frames=num_frames, weights=list(weights), batch_size=batch_size, workers=workers,
                        device=device, shard_videos=shard_videos, retry_failed=retry_failed,
                        progress=not no_progress)
    if cfg.fps is None and cfg.num_frames is None:
        cfg.fps = 1.0
    try:
        summary = run_extract(cfg)
    except (ManifestError, WeightsError, ValueError, RuntimeError) as err:
        _fail(str(err))
    click.echo(summary.line())
    if summary.failed:
        click.echo(f"failed videos are listed in {os.path.join(out, 'errors.csv')}")
    if summary.done == 0 and summary.failed > 0:
        sys.exit(1)


@main.command("finetune-backbone")
@click.option("--manifest", "manifest_path", required=True, type=click.Path(dir_okay=False))
@click.option("--backbone", required=True, help="The plain backbone, e.g. resnet18@224 (its weights also serve "
                                                 "its -map and -grid sets).")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Weights file to write (.pt).")
@click.option("--num-frames", default=8, show_default=True, help="Frames per video (segment centres).")
@click.option("--epochs", default=3, show_default=True)
@click.option("--lr", default=1e-3, show_default=True, help="AdamW, cosine schedule.")
@click.option("--batch-size", default=32, show_default=True)
@click.option("--init", default="random", show_default=True, help="Start from: imagenet | random | PATH.")
@click.option("--pooling", default="frame", show_default=True, type=click.Choice(["frame", "max"]),
              help="frame: every frame learns its video's labels; max: the class-wise maximum over a video's "
                   "frames does (multiple-instance learning, for labels shown on a few frames only).")
@click.option("--split", default="train", show_default=True)
@click.option("--eval-split", default="val", show_default=True, help="Frame and video accuracy on this split at the end; 'none' to skip.")
@click.option("--seed", default=0, show_default=True)
@click.option("--no-progress", is_flag=True)
def finetune_backbone(manifest_path, backbone, out, num_frames, epochs, lr, batch_size, init, pooling, split,
                      eval_split, seed, no_progress):
    """Fine-tune a backbone as a frame classifier on the manifest's videos, for `c2f extract --weights SET=OUT`.

    Every sampled frame takes its video's labels. A killed run resumes from OUT.partial."""
    from pipeline.backbones import WeightsError
    from pipeline.finetune import FinetuneConfig, finetune
    from pipeline.manifest import ManifestError

    if min(num_frames, epochs, batch_size) < 1 or lr <= 0:
        _fail("--num-frames, --epochs and --batch-size must be >= 1 and --lr > 0")
    cfg = FinetuneConfig(manifest_path, backbone, out, num_frames=num_frames, epochs=epochs, lr=lr,
                         batch_size=batch_size, init=init, pooling=pooling, split=split,
                         eval_split=None if eval_split == "none" else eval_split, seed=seed, progress=not no_progress)
    try:
        record = finetune(cfg)
    except (ManifestError, WeightsError, ValueError) as err:
        _fail(str(err))
    last = record["history"][-1] if record["history"] else {}
    held_out = "".join(f", {cfg.eval_split} {kind} accuracy {record[f'{cfg.eval_split}_{kind}_accuracy']:.3f}"
                       for kind in ("frame", "video") if f"{cfg.eval_split}_{kind}_accuracy" in record)
    click.echo(f"wrote {out} ({record['train_frames']} frames, loss {last.get('loss', float('nan')):.3f}, "
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
    from c2f.demo import run_demo
    report = run_demo(data, out, progress=not no_progress)
    click.echo(f"\ndemo done: videos in {data}, cache in {out}/cache, runs in {out}/runs, report: {report}")


@main.command("demo-videos")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Folder: videos/*.mp4, manifest.csv, classes.txt.")
@click.option("--train-videos", default=150, show_default=True)
@click.option("--val-videos", default=100, show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option("--no-progress", is_flag=True)
def demo_videos(out, train_videos, val_videos, seed, no_progress):
    """The embedded demo dataset: 224 px H.264 videos whose class is a 1-pixel texture on a small
    square shown on a few frames: visible at 112 px, readable only at 224 px."""
    from pipeline.demo_videos import DemoVideoConfig, write_demo_videos

    if train_videos < 1 or val_videos < 0:
        _fail("--train-videos must be >= 1 and --val-videos >= 0")
    path = write_demo_videos(DemoVideoConfig(out, train_videos=train_videos, val_videos=val_videos, seed=seed,
                                             progress=not no_progress))
    click.echo(f"wrote {path}: {train_videos} train and {val_videos} val videos")


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

_METHODS = ["uniform", "lstm", "uniform_cf", "lstm_cf", "liteeval", "liteeval_rl", "frameglimpse", "fastforward",
            "adafocus", "adafocus_plus"]


def _triple(kind):
    def parse(ctx, param, value):
        try:
            parts = tuple(kind(v) for v in value.split(","))
        except ValueError:
            parts = ()
        if len(parts) != 3:
            raise click.BadParameter("three comma-separated values, for stages I, II and III")
        return parts
    return parse


@main.command("train-head")
@click.option("--method", required=True, type=click.Choice(_METHODS))
@click.option("--manifest", "manifest_path", required=True, type=click.Path(dir_okay=False))
@click.option("--cache", required=True, type=click.Path(file_okay=False))
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Run directory.")
@click.option("--coarse", default="mobilenet_v2@112", show_default=True, help="Coarse feature set.")
@click.option("--fine", default="resnet101@224", show_default=True, help="Fine feature set.")
@click.option("--train-split", default="train", show_default=True, type=click.Choice(["train", "val", "test"]))
@click.option("--eval-split", default="val", show_default=True, type=click.Choice(["train", "val", "test"]))
@click.option("--glance", default="mobilenet_v2@224-map", show_default=True, help="AdaFocus: glance map set.")
@click.option("--focus", default="resnet50@224-grid7x128", show_default=True, help="AdaFocus: patch grid set.")
@click.option("--frames", type=int, default=None,
              help="UNIFORM / LSTM: evenly spaced frames (default 25); AdaFocus: segments (default 16).")
@click.option("--glimpses", default=4, show_default=True, help="FRAMEGLIMPSE: frames looked at.")
@click.option("--step-penalty", default=0.01, show_default=True, help="FASTFORWARD: reward cost per frame read.")
@click.option("--rnn", default="lstm", show_default=True, type=click.Choice(["lstm", "gru", "sru"]))
@click.option("--coarse-hidden", default=64, show_default=True)
@click.option("--fine-hidden", default=512, show_default=True, help="Also the hidden size of LSTM baselines.")
@click.option("--gamma", default=0.05, show_default=True, help="LiteEval: target fraction of fine reads.")
@click.option("--lam", default=2.0, show_default=True, help="LiteEval: weight of the fire-rate penalty.")
@click.option("--no-sync", is_flag=True, help="LiteEval: do not sync the fine RNN with the coarse one.")
@click.option("--tau-start", default=5.0, show_default=True, help="Gumbel-softmax temperature, first epoch.")
@click.option("--tau-end", default=0.5, show_default=True, help="... and last epoch (exponential annealing).")
@click.option("--policy", default="learned", show_default=True,
              type=click.Choice(["learned", "random", "central", "gaussian"]), help="AdaFocus patch policy.")
@click.option("--reward", default="adafocus", show_default=True,
              type=click.Choice(["adafocus", "confidence", "increments"]), help="AdaFocus stage-II reward.")
@click.option("--no-reuse", is_flag=True, help="AdaFocus: the glance feature does not feed the classifier.")
@click.option("--keep-ratio", default=0.5, show_default=True, help="AdaFocus+: fraction of frames given a patch.")
@click.option("--eta", default=0.1, show_default=True, help="AdaFocus+: weight of the patch cost in the keep reward.")
@click.option("--adafocus-hidden", default=1024, show_default=True, help="AdaFocus: GRU size.")
@click.option("--ppo-epochs", default=2, show_default=True, help="AdaFocus: PPO updates per rollout.")
@click.option("--stage-epochs", default="50,50,10", show_default=True, callback=_triple(int),
              help="AdaFocus: epochs of stages I, II, III.")
@click.option("--stage-lrs", default="0.05,3e-4,5e-3", show_default=True, callback=_triple(float),
              help="AdaFocus: learning rates of stages I (SGD), II (Adam), III (SGD).")
@click.option("--epochs", default=30, show_default=True)
@click.option("--lr", default=1e-4, show_default=True)
@click.option("--batch-size", default=128, show_default=True)
@click.option("--weight-decay", default=0.0, show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option("--device", default="cpu", show_default=True)
@click.option("--overwrite", is_flag=True, help="Replace the run directory if it holds a run.")
@click.option("--no-progress", is_flag=True)
def train_head(manifest_path, no_sync, no_reuse, no_progress, **options):
    """Phase two: train a head on the cache's train split, evaluate it, write the run directory."""
    import json

    from c2f.config import TrainConfig
    from c2f.data import CacheError
    from c2f.train import train_head as run_train
    from pipeline.manifest import ManifestError

    for name in ("frames", "glimpses", "epochs", "batch_size", "coarse_hidden", "fine_hidden", "adafocus_hidden",
                 "ppo_epochs"):
        if options[name] is not None and options[name] < 1:
            _fail(f"--{name.replace('_', '-')} must be >= 1")
    if not options["lr"] > 0 or not all(lr > 0 for lr in options["stage_lrs"]):
        _fail("learning rates must be > 0")
    if not 0 < options["keep_ratio"] <= 1:
        _fail("--keep-ratio must be in (0, 1]")
    cfg = TrainConfig(manifest=manifest_path, sync=not no_sync, reuse=not no_reuse, progress=not no_progress,
                      **options)
    try:
        metrics = run_train(cfg)
    except (ManifestError, CacheError, FileExistsError, ValueError, FloatingPointError) as err:
        _fail(str(err))
    shown = {k: metrics[k] for k in ("top1", "mAP", "gflops_mean", "fine_mean")}
    click.echo(f"{cfg.method} on {metrics['num_videos']} {cfg.eval_split} videos: {json.dumps(shown)}; "
               f"run in {cfg.out}")


@main.command("evaluate-online")
@click.option("--run", "run_dir", required=True, type=click.Path(file_okay=False, exists=True))
@click.option("--budget", "budgets", required=True, multiple=True, type=int,
              help="K: fine-feature reads before predicting. Repeat for several.")
@click.option("--uniform-run", type=click.Path(file_okay=False, exists=True),
              help="A uniform run on the same fine features: adds the UNIFORM-K and SEQ-K rows.")
@click.option("--batch-size", default=256, show_default=True)
@click.option("--no-progress", is_flag=True)
def evaluate_online_command(run_dir, budgets, uniform_run, batch_size, no_progress):
    """Online recognition with a budget of K fine reads; writes RUN/online.csv."""
    from c2f.data import CacheError
    from c2f.online import evaluate_online
    from pipeline.manifest import ManifestError

    if any(k < 1 for k in budgets):
        _fail("--budget must be >= 1")
    try:
        rows = evaluate_online(run_dir, sorted(set(budgets)), uniform_run, batch_size, progress=not no_progress)
    except (ManifestError, CacheError, FileNotFoundError, ValueError) as err:
        _fail(str(err))
    click.echo(f"{'method':<14}{'K':>4}{'top1':>8}{'GFLOPs':>10}{'fine':>7}{'frames':>8}")
    for r in rows:
        click.echo(f"{r['method']:<14}{r['K']:>4}{r['top1']:>8.3f}{r['gflops_mean']:>10.2f}{r['fine_mean']:>7.2f}"
                   f"{r['frames_seen_mean']:>8.2f}")
    click.echo(f"written to {run_dir}/online.csv")


@main.command("synthetic-cache")
@click.option("--kind", required=True, type=click.Choice(["liteeval", "adafocus"]))
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Folder: manifest.csv and cache/.")
@click.option("--train-videos", default=600, show_default=True)
@click.option("--val-videos", default=300, show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option("--overwrite", is_flag=True)
def synthetic_cache(kind, out, train_videos, val_videos, seed, overwrite):
    """A feature cache with a known answer, to try phase two in minutes (no video, no backbone).

    liteeval: class evidence only in the fine features of 1-3 frames a video, which the coarse
    features mark. adafocus: the class only in the patch holding a drifting object, a 5 x 5 grid,
    the glance map marking where the object is. Sets are named and priced like the real backbones."""
    import shutil
    from pathlib import Path

    from c2f.synthetic import adafocus_cache, liteeval_cache

    folder = Path(out)
    if folder.exists() and any(folder.iterdir()):
        if not overwrite:
            _fail(f"{folder} is not empty; give --overwrite to replace it")
        shutil.rmtree(folder)
    if kind == "liteeval":
        made = liteeval_cache(folder, num_train=train_videos, num_val=val_videos, evidence=5.0, seed=seed)
        sets = "mobilenet_v2@112, resnet101@224"
    else:
        made = adafocus_cache(folder, num_train=train_videos, num_val=val_videos, grid=5, marker=5.0, evidence=5.0,
                              seed=seed)
        sets = "mobilenet_v2@224-map, resnet50@224-grid5x128"
    click.echo(f"wrote {made.manifest} and {made.cache} ({sets}); {train_videos} train, {val_videos} val videos")


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
    except FileNotFoundError as err:
        _fail(str(err))
    for refusal in summary["refused"]:
        click.echo(f"warning: {refusal}", err=True)
    click.echo(f"{summary['runs']} runs: {len(summary['tables'])} tables, {len(summary['figures'])} figures, "
               f"{summary['missing']} missing rows (see missing.txt); open {out}/report.md")


if __name__ == "__main__":
    main()
