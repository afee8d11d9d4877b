"""c2f command line: it only parses. Each command's options are generated from its settings dataclass
(pipeline.core.options), which carries their defaults, help and validation, and each command calls a
function a test can call too. Installed as the `c2f` console script (`python -m c2f` runs it through
c2f/__main__.py); nothing else imports it.

Commands are built when they run (or their help is shown), so `c2f --help` and the light commands
(manifest, cache, demo-videos) import neither torch nor torchvision. Every error a user can act on
is a C2FError, caught once here: one line, `c2f: error: ...`, exit status 2 (1 for a fault)."""
from __future__ import annotations

import logging
import os
import shlex
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

import click

from c2f import __version__
from pipeline.core.errors import C2FError
from pipeline.core.options import click_options


def _fail(message: str, status: int = 2) -> None:
    click.echo(f"c2f: error: {message}", err=True)
    sys.exit(status)


class LazyGroup(click.Group):
    """A group whose commands are made when first asked for, each from a factory; the list in
    `c2f --help` comes from their short help, written beside the factory."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.lazy: dict[str, tuple[Callable[[], click.Command], str]] = {}

    def lazy_command(self, name: str, short_help: str):
        def register(factory):
            self.lazy[name] = (factory, short_help)
            return factory
        return register

    def list_commands(self, ctx):
        return sorted(set(super().list_commands(ctx)) | set(self.lazy))

    def get_command(self, ctx, name):
        if name in self.lazy and name not in self.commands:
            self.add_command(self.lazy[name][0](), name)
        return super().get_command(ctx, name)

    def format_commands(self, ctx, formatter):
        rows = [(name, self.lazy[name][1] if name in self.lazy else self.commands[name].get_short_help_str(60))
                for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def main(self, args=None, *rest, **kwargs):
        # the command line as given, for the provenance a run records (the demo runs its steps in-process)
        self.args = list(sys.argv[1:] if args is None else args)
        return super().main(args, *rest, **kwargs)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except C2FError as err:
            _fail(err.line(), err.exit_status)
        except OSError as err:            # a file system refusal (permissions, a read-only disk): one line
            _fail(f"{err.strerror or err.__class__.__name__}: {err.filename or err}" if err.filename else str(err))


@click.group(cls=LazyGroup)
@click.version_option(__version__, prog_name="c2f")
@click.option("-v", "--verbose", is_flag=True, help="Log more.")
@click.option("--offline", is_flag=True, help="Never download weights: the torch hub cache only (as C2F_OFFLINE=1).")
def main(verbose: bool, offline: bool) -> None:
    """c2f: coarse-to-fine video recognition on a feature cache (LiteEval, AdaFocus)."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(message)s")
    if offline:
        os.environ["C2F_OFFLINE"] = "1"


@contextmanager
def _quieter(logger_name: str):
    """A logger's warnings silenced for the block only: the demo runs its steps in this process, and
    the steps after `manifest check` must still warn."""
    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _config(config_class, options: dict):
    """The command's dataclass from its parsed options (its validation raises SettingsError: one line)."""
    return config_class(**options)


# ------------------------------------------------------------------ manifests

@main.group()
def manifest() -> None:
    """Build a manifest CSV from official annotations or a folder, or check one."""


def _write_rows(rows, out):
    from pipeline.core.manifest import read_manifest, write_manifest
    path = write_manifest(rows, out)
    checked = read_manifest(path)
    classes = checked.classes()
    splits = {s: len(checked.split(s)) for s in ("train", "val", "test")}
    click.echo(f"wrote {path}: {len(checked.entries)} videos ({', '.join(f'{k} {v}' for k, v in splits.items())}), "
               f"{len(classes)} classes, {len(checked.warnings)} unreadable paths")


@manifest.command("activitynet")
@click.argument("json_path", type=click.Path(exists=True, dir_okay=False))
@click.option("--videos", required=True, type=click.Path(file_okay=False), help="Folder of the video files.")
@click.option("--out", required=True, type=click.Path(dir_okay=False))
def manifest_activitynet(json_path, videos, out):
    """ActivityNet v1.3 JSON."""
    from pipeline.core.converters import from_activitynet
    _write_rows(from_activitynet(json_path, videos), out)


@manifest.command("kinetics")
@click.argument("csv_path", type=click.Path(exists=True, dir_okay=False))
@click.option("--videos", required=True, type=click.Path(file_okay=False))
@click.option("--out", required=True, type=click.Path(dir_okay=False))
@click.option("--split", type=click.Choice(["train", "val", "test"]), help="Override the CSV's split column.")
@click.option("--subset", type=click.Path(exists=True, dir_okay=False), help="Mini-Kinetics: file of ids to keep.")
def manifest_kinetics(csv_path, videos, out, split, subset):
    """Kinetics / Mini-Kinetics CSV (label, youtube_id, time_start, time_end, split)."""
    from pipeline.core.converters import from_kinetics
    _write_rows(from_kinetics(csv_path, videos, split, subset), out)


@manifest.command("fcvid")
@click.option("--split-list", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--labels", "label_matrix", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--categories", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--videos", required=True, type=click.Path(file_okay=False))
@click.option("--out", required=True, type=click.Path(dir_okay=False))
def manifest_fcvid(split_list, label_matrix, categories, videos, out):
    """FCVID split list, label matrix and category list."""
    from pipeline.core.converters import from_fcvid
    _write_rows(from_fcvid(split_list, label_matrix, categories, videos), out)


@manifest.command("sthsth")
@click.argument("json_path", type=click.Path(exists=True, dir_okay=False))
@click.option("--labels", "labels_json", type=click.Path(exists=True, dir_okay=False), help="labels.json")
@click.option("--videos", required=True, type=click.Path(file_okay=False))
@click.option("--split", required=True, type=click.Choice(["train", "val", "test"]))
@click.option("--out", required=True, type=click.Path(dir_okay=False))
def manifest_sthsth(json_path, labels_json, videos, split, out):
    """Something-Something v2 JSON."""
    from pipeline.core.converters import from_something_something
    _write_rows(from_something_something(json_path, labels_json, videos, split), out)


@manifest.command("from-folder")
@click.argument("root", type=click.Path(exists=True, file_okay=False))
@click.option("--split", default="train", type=click.Choice(["train", "val", "test"]),
              help="Split for ROOT/CLASS/... (ROOT/SPLIT/CLASS/... uses the folder names).")
@click.option("--out", required=True, type=click.Path(dir_okay=False))
def manifest_folder(root, split, out):
    """A folder per class (ROOT/CLASS/video.mp4, or ROOT/SPLIT/CLASS/video.mp4)."""
    from pipeline.core.converters import from_folder
    _write_rows(from_folder(root, split), out)


manifest.add_command(manifest_folder, "folder")          # its name before 0.2

@manifest.command("check")
@click.argument("path", type=click.Path(dir_okay=False))
def manifest_check(path):
    """Validate a manifest: errors with line numbers, unreadable paths as warnings."""
    from pipeline.core.manifest import read_manifest
    with _quieter("pipeline.core.manifest"):        # its warnings are listed below, not logged twice
        checked = read_manifest(path)
    classes = checked.classes()
    for warning in checked.warnings[:20]:
        click.echo(f"warning: {warning}", err=True)
    if len(checked.warnings) > 20:
        click.echo(f"warning: ... and {len(checked.warnings) - 20} more paths that cannot be read", err=True)
    readable = len(checked.entries) - len(checked.warnings)
    click.echo(f"{path}: {len(checked.entries)} videos ({readable} readable), {len(classes)} classes, ok")


# ------------------------------------------------------------------ phase one

@main.lazy_command("extract", "Phase one: decode each video once, run every backbone, write HDF5 shards.")
def _extract_command() -> click.Command:
    from pipeline.extract import ExtractConfig
    from pipeline.extract import extract as run_extract

    @click.command()
    @click.argument("videos", nargs=-1, type=click.Path(dir_okay=False))
    @click_options(ExtractConfig)
    def extract(videos, **options):
        """Phase one: decode each video once, run every backbone, write HDF5 shards. The videos: a
        manifest (--manifest), or video files (VIDEO..., --paths LIST, --folder DIR; ids from their
        names, written to OUT/videos.csv)."""
        cfg = _config(ExtractConfig, options | {"videos": list(videos)})
        summary = run_extract(cfg)
        click.echo(summary.line())
        if summary.failed:
            click.echo(f"failed videos are listed in {Path(cfg.out) / 'errors.csv'}")
        if summary.done == 0 and summary.failed > 0 and summary.in_cache == 0:     # nothing extracted, ever
            sys.exit(1)
    return extract


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
    from pipeline.cache import reindex_cache
    for name, index in reindex_cache(Path(folder)).items():
        click.echo(f"{name}: {len(index.shards)} shards, {len(index.done_videos())} videos, "
                   f"{len(index.failed)} failed (from errors.csv)")


@main.lazy_command("finetune-backbone", "Fine-tune a backbone as a frame classifier, for c2f extract --weights.")
def _finetune_command() -> click.Command:
    from pipeline.finetune import FinetuneConfig, finetune

    @click.command()
    @click_options(FinetuneConfig)
    def finetune_backbone(**options):
        """Fine-tune a backbone as a frame classifier on the manifest's videos, for `c2f extract
        --weights SET=OUT`. Every sampled frame takes its video's labels. A killed run resumes from
        OUT.partial."""
        cfg = _config(FinetuneConfig, options)
        record = finetune(cfg)
        last = record["history"][-1] if record["history"] else {}
        held_out = "".join(f", {cfg.eval_split} {kind} accuracy {record[f'{cfg.eval_split}_{kind}_accuracy']:.3f}"
                           for kind in ("frame", "video") if f"{cfg.eval_split}_{kind}_accuracy" in record)
        click.echo(f"wrote {cfg.out} ({record['train_frames']} frames, loss {last.get('loss', float('nan')):.3f}, "
                   f"train accuracy {last.get('train_accuracy', float('nan')):.3f}{held_out}); "
                   f"use it with c2f extract --weights {record['feature_set']}=PATH")
    return finetune_backbone


@main.command()
@click.option("--data", default="data_manifests/demo", show_default=True, type=click.Path(file_okay=False),
              help="Where the demo videos and their manifest go.")
@click.option("--out", default="demo_out", show_default=True, type=click.Path(file_okay=False))
@click.option("--no-progress", is_flag=True)
def demo(data, out, no_progress):
    """The whole pipeline on the embedded demo videos (`make demo`): each step is printed as the
    `c2f` command it runs."""
    from c2f.demo.steps import demo_steps

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


@main.lazy_command("demo-videos", "The embedded demo dataset: H.264 videos whose class needs 224 px.")
def _demo_videos_command() -> click.Command:
    from c2f.demo.videos import DemoVideoConfig, write_demo_videos

    @click.command()
    @click_options(DemoVideoConfig)
    def demo_videos(**options):
        """The embedded demo dataset: 224 px H.264 videos whose class is a 1-pixel texture on a small
        square shown on a few frames: visible at 112 px, readable only at 224 px."""
        cfg = _config(DemoVideoConfig, options)
        path = write_demo_videos(cfg)
        click.echo(f"wrote {path}: {cfg.train_videos} train and {cfg.val_videos} val videos")
    return demo_videos


@main.lazy_command("flops", "Counted GFLOPs (multiply-adds) per frame of the papers' feature sets, or of SET...")
def _flops_command() -> click.Command:
    @click.command()
    @click.argument("sets", nargs=-1)
    @click.option("--csv", "as_csv", is_flag=True, help="CSV instead of a table.")
    def flops(sets, as_csv):
        """Counted GFLOPs (multiply-adds) per frame of the feature sets given (e.g. resnet34@224,
        timm:convnext_tiny@224), or of the papers' sets; kept on disk once counted, per version of the counting, c2f and the libraries."""
        from pipeline.backbones import flops_table
        rows = flops_table(list(sets))
        if as_csv:
            click.echo("feature_set,gflops_counted,gflops_paper")
            for r in rows:
                click.echo(f"{r['feature_set']},{r['gflops_counted']:.4f},{r['gflops_paper'] or ''}")
            return
        click.echo(f"{'feature set':<26}{'input':<18}{'feature':<16}{'GFLOPs counted':>15}{'paper':>9}")
        for r in rows:
            paper = f"{r['gflops_paper']:.4g}" if r["gflops_paper"] else "-"
            click.echo(f"{r['feature_set']:<26}{'x'.join(map(str, r['input'])):<18}"
                       f"{'x'.join(map(str, r['feature_shape'])):<16}{r['gflops_counted']:>15.4f}{paper:>9}")
        click.echo("per frame; a grid's cost is per patch, SlowFast's per 8x8 snippet")
    return flops


# ------------------------------------------------------------------ phase two

def _shown(metrics: dict) -> str:
    """Metrics for people: rounded, no float noise."""
    return ", ".join(f"{k} {metrics[k]:.4g}" for k in ("top1", "mAP", "gflops_mean", "fine_mean"))


@main.lazy_command("train-head", "Phase two: train a head on the cache, evaluate it, write the run folder.")
def _train_head_command() -> click.Command:
    from c2f.config import TrainConfig
    from c2f.heads import methods
    from c2f.training import train_head as run_train
    from c2f.training.presets import PRESETS, preset, read_settings_file
    from pipeline.core.options import merged_click_options

    @click.command()
    @click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False),
                  help="Settings from a YAML or JSON file (a run's config.json repeats that run); flags override.")
    @click.option("--preset", "preset_name", type=click.Choice(sorted(PRESETS)),
                  help="Start from a paper's settings (a config file and flags override).")
    @click_options(TrainConfig, unset=True)
    @merged_click_options({m.name: m.settings for m in methods().values()})
    def train_head(config_file, preset_name, **options):
        """Phase two: train a head on the cache's train split, evaluate it, write the run folder.
        Settings: the defaults, then --preset, then --config, then the flags given."""
        values = preset(preset_name) if preset_name else {}
        if config_file:
            values |= read_settings_file(config_file)
        values |= {k: v for k, v in options.items() if v is not None}
        missing = [f"--{k}" for k in ("method", "manifest", "cache", "out") if not values.get(k)]
        if missing:
            _fail(f"give {', '.join(missing)} (or set them in --config)")
        cfg = TrainConfig.from_dict(values, strict=True)
        metrics = run_train(cfg, command=shlex.join(["c2f", *main.args]))
        click.echo(f"{cfg.method} on {metrics['num_videos']} {cfg.eval_split} videos: {_shown(metrics)}; "
                   f"run in {Path(cfg.out).resolve()}")
    return train_head


@main.lazy_command("evaluate-online", "Online recognition with a budget of K fine reads; writes RUN/online.csv.")
def _online_command() -> click.Command:
    from c2f.evaluate import EVAL_BATCH
    from c2f.training.online import evaluate_online
    from pipeline.core.devices import DEVICE_HELP

    @click.command()
    @click.option("--run", "run_dir", required=True, type=click.Path(file_okay=False, exists=True))
    @click.option("--budget", "budgets", required=True, multiple=True, type=click.IntRange(min=1),
                  help="K: fine-feature reads before predicting. Repeat for several.")
    @click.option("--uniform-run", type=click.Path(file_okay=False, exists=True),
                  help="A uniform run on the same fine features: adds the UNIFORM-K and SEQ-K rows.")
    @click.option("--batch-size", default=EVAL_BATCH, show_default=True, type=click.IntRange(min=1))
    @click.option("--device", default="auto", show_default=True, help=DEVICE_HELP)
    @click.option("--no-progress", is_flag=True)
    def evaluate_online_command(run_dir, budgets, uniform_run, batch_size, device, no_progress):
        """Online recognition with a budget of K fine reads; writes RUN/online.csv."""
        rows = evaluate_online(run_dir, sorted(set(budgets)), uniform_run, batch_size, progress=not no_progress,
                               device=device)
        click.echo(f"{'method':<14}{'K':>4}{'top1':>8}{'GFLOPs':>10}{'fine':>7}{'frames':>8}")
        for r in rows:
            click.echo(f"{r['method']:<14}{r['K']:>4}{r['top1']:>8.3f}{r['gflops_mean']:>10.2f}"
                       f"{r['fine_mean']:>7.2f}{r['frames_seen_mean']:>8.2f}")
        click.echo(f"written to {run_dir}/online.csv")
    return evaluate_online_command


@main.lazy_command("synthetic-cache", "A feature cache with a known answer, to try phase two in minutes.")
def _synthetic_command() -> click.Command:
    from c2f.demo.synthetic import write_synthetic_cache

    @click.command()
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
        the glance map marking where the object is. Sets are named after real backbones and cost what those count."""
        made, sets = write_synthetic_cache(kind, out, train_videos, val_videos, seed, overwrite)
        click.echo(f"wrote {made.manifest} and {made.cache} ({sets}); {train_videos} train, {val_videos} val videos")
    return synthetic_cache


@main.lazy_command("predict", "Run a trained head on raw videos, the expensive network only where it decides.")
def _predict_command() -> click.Command:
    from c2f.predict import PredictConfig, predict_videos

    @click.command()
    @click.argument("videos", nargs=-1, type=click.Path(dir_okay=False))
    @click_options(PredictConfig)
    def predict(videos, **options):
        """Run a trained head on raw videos (VIDEO... or --manifest), computing the expensive network only
        where the head decides; writes OUT/predictions.csv, decisions.csv, summary.json, errors.csv."""
        cfg = _config(PredictConfig, options | {"videos": list(videos)})
        summary = predict_videos(cfg)
        if summary is None:          # a torchrun rank other than 0: rank 0 reports
            return
        seconds = summary["seconds"]
        click.echo(f"{summary['videos']} videos ({summary['errors']} failed, see errors.csv), {summary['frames']} "
                   f"frames: {summary['gflops_executed_mean'] or 0:.2f} GFLOPs executed a video; seconds: "
                   + ", ".join(f"{k} {v:.1f}" for k, v in seconds.items()) + f"; written to {cfg.out}")
        if summary["videos"] == 0 and summary["errors"]:        # nothing could be predicted
            sys.exit(1)
    return predict


# ------------------------------------------------------------------ report

@main.lazy_command("report", "The papers' tables (CSV), runs.csv, missing.txt, flops.csv and figures from runs.")
def _report_command() -> click.Command:
    from c2f.report import write_report

    @click.command()
    @click.option("--runs", "runs_dir", required=True, type=click.Path(file_okay=False, exists=True),
                  help="Folder holding run directories (searched recursively).")
    @click.option("--out", required=True, type=click.Path(file_okay=False), help="Report folder.")
    def report(runs_dir, out):
        """The papers' tables (CSV), runs.csv, missing.txt, flops.csv, figures (PNG) and report.md from runs."""
        summary = write_report(runs_dir, out)
        for refusal in summary["refused"]:
            click.echo(f"warning: {refusal}", err=True)
        click.echo(f"{summary['runs']} runs: {len(summary['tables'])} tables, {len(summary['figures'])} figures, "
                   f"{summary['missing']} missing rows (see missing.txt); open {out}/report.md")
    return report

