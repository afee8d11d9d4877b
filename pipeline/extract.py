"""Phase one: decode each video once and run every requested frozen backbone on its frames.

Layout of the work:
- DataLoader workers decode videos (pipeline.decode, .frames) and hand over chunks of sampled
  squares; decoding overlaps compute.
- The main process queues frames across videos (frames.FrameQueue) and runs each backbone
  (runner.FeatureRunner) on fixed-size batches (the tail is zero-padded). A frame's feature is
  then a function of the frame alone: the same whatever its neighbours in the batch, so a
  resumed or re-sliced run gives bit-identical features to an uninterrupted one.
- Finished videos go into shards (pipeline.cache): complete shards are renamed into place
  and index.json is updated atomically; a rerun skips every video already in a complete
  shard. Failed videos go to CACHE/errors.csv and the run goes on.
- Under torchrun every rank reads the same index, takes an interleaved share of the videos
  still to do (so a rerun with another number of ranks resumes), writes its own
  shard-RRRR-* files and merges them into the one index.json (pipeline.core.ranks, .cache).
"""
from __future__ import annotations

import logging
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from . import backbones as bb
from .cache import FeatureIndex, shard_attrs
from .batching import CPU_BATCH, GPU_BATCH_MAX, GPU_MEMORY_SHARE, measured_gpu_batch, recorded
from .core.devices import DEVICE_HELP, default_workers, resolve_device
from .core.memory import freed_memory_kept
from .core.errors import SettingsError
from .core.converters import from_paths, from_paths_file, from_video_folder
from .core.manifest import Manifest, VideoEntry, manifest_of_rows, read_manifest, write_manifest
from .core.options import option, validate
from .core.ranks import Ranks, lock_for_the_whole_run
from .decode import SEEK_MODES, VIDEO_TIMEOUT, Sampling
from .extraction import Extraction, ExtractSummary
from .frames import DecodedVideos
from .runner import PRECISIONS, FeatureRunner

log = logging.getLogger(__name__)


@dataclass
class ExtractConfig:
    manifest: str | None = option(None, "Manifest CSV (video_id, path, labels, split). Or give the videos: VIDEO...,"
                                        " --paths or --folder.")
    out: str = option(None, "Cache folder.", required=True)
    backbones: list[str] = option([], "Feature set, e.g. mobilenet_v2@112, resnet101@224, mobilenet_v2@224-map, "
                                      "resnet50@224-grid7x128, slowfast_r50, any torchvision model (resnet34@224), "
                                      "timm:NAME. Repeat for several: one decode feeds all.",
                                  flag="--backbone", required=True)
    fps: float | None = option(None, "Frames per second to sample (default 1).", above=0, kind=float)
    num_frames: int | None = option(None, "Sample N evenly spaced frames instead.", minimum=1, kind=int)
    weights: list[str] = option(["imagenet"], "imagenet | random | PATH, for all sets, or SET=VALUE for one set.")
    batch_size: int | None = option(None, f"Frames per backbone call (the last is padded). Default: {CPU_BATCH} on the "
                                          f"CPU, on a GPU the largest up to {GPU_BATCH_MAX} that fits "
                                          f"{GPU_MEMORY_SHARE:.0%} of its free memory; a resumed cache keeps its own.",
                                    minimum=1, kind=int)
    workers: int | None = option(None, "Decoding processes (default: GPU every core but one; CPU an eighth, 0 on "
                                       "2 cores: decode in the main process, since the backbones need every core).",
                                 minimum=0, kind=int)
    device: str = option("auto", DEVICE_HELP)
    shard_videos: int = option(64, "Videos per shard.", minimum=1)
    retry_failed: bool = option(False, "Try again the videos listed as failed.")
    video_timeout: float = option(VIDEO_TIMEOUT, "Seconds one video may take to decode; past it the video goes to "
                                          "errors.csv and the run goes on.", above=0)
    preprocess: str = option("eval", "eval: each set as its weights are evaluated (short side to input x 256/224, "
                                     "centre crop; SlowFast: Kinetics' 256/256); full: the whole short side "
                                     "(c2f before 2026-11).", choices=bb.PREPROCESS)
    canvas: int | None = option(None, "Side of the decoded square every set is cut from (default: what the largest set "
                                      "needs). A set added to a cache later gives the cache's (its attribute "
                                      "`canvas`), so that its features pair with the others' as if extracted with "
                                      "them (c2f report's missing.txt does).", minimum=32, kind=int)
    seek: str = option("exact", "exact: the first frame at or after each sample time; nonref: the decoder skips "
                                "non-reference frames, the nearest decoded frame is taken; keyframe: keyframes "
                                "only, the nearest one.", choices=SEEK_MODES)
    precision: str = option("auto", "Backbone arithmetic: fp32, or bf16 autocast (auto: bf16 on CUDA, fp32 on the "
                                    "CPU). Features are stored as float16 either way.", choices=("auto",) + PRECISIONS)
    channels_last: bool = option(True, "channels_last memory format for the 2D backbones (in fp32 on a CPU, 1.4-2.2x "
                                       "the frames/s of the contiguous format: "
                                       "docs/measurements/phase-one.md#precision-and-memory-format).")
    progress: bool = option(True, "Show a progress bar.")
    videos: list[str] = option([], "Video files (the command's arguments): ids from their file names.", cli=False)
    paths: str | None = option(None, "A text file listing video files, one per line: ids from their file names.")
    folder: str | None = option(None, "A folder of videos (searched below too): ids from their paths under it.")

    def __post_init__(self):
        validate(self)
        given = [name for name, value in (("--manifest", self.manifest), ("VIDEO...", self.videos),
                                          ("--paths", self.paths), ("--folder", self.folder)) if value]
        if len(given) != 1:
            raise SettingsError("give the videos one way: --manifest, VIDEO..., --paths or --folder"
                                + (f" (not {' and '.join(given)})" if given else ""))
        if self.fps is not None and self.num_frames is not None:
            raise SettingsError("give --fps or --num-frames, not both")
        if self.fps is None and self.num_frames is None:
            self.fps = 1.0
        resolve_device(self.device)        # a device that is not there: one line, before anything is written
        if self.workers is None:
            self.workers = default_workers(self.device)
        if self.seek != "exact" and any(bb.parse_spec(b).output == "clip" for b in self.backbones):
            raise SettingsError("snippet sets (SlowFast) need every frame: --seek exact")

    def read_videos(self) -> Manifest:
        """The videos to extract: the manifest, or the files given (ids from their names, no labels)."""
        if self.manifest:
            return read_manifest(self.manifest)
        rows = (from_paths(self.videos) if self.videos else from_paths_file(self.paths) if self.paths
                else from_video_folder(self.folder))
        return manifest_of_rows(rows, self.paths or self.folder or "VIDEO arguments")

    @property
    def sampling(self) -> Sampling:
        return Sampling(num_frames=self.num_frames) if self.num_frames else Sampling(fps=self.fps)

    def numerics(self, device: torch.device) -> tuple[str, bool]:
        """(precision, channels_last) on this device."""
        auto = "bf16" if device.type == "cuda" else "fp32"
        return auto if self.precision == "auto" else self.precision, self.channels_last


def weights_for(specs: list[bb.FeatureSet], weights: list[str]) -> dict[str, str]:
    """`--weights VALUE` applies to every set; `--weights SET=VALUE` to one set."""
    bare, per_set = bb.parse_weights_option(weights)
    default = bare[-1] if bare else "imagenet"
    unknown = set(per_set) - {fs.name for fs in specs}
    if unknown:
        raise SettingsError(f"--weights names feature sets that are not extracted: {', '.join(sorted(unknown))}")
    return {fs.name: per_set.get(fs.name, default) for fs in specs}


def extract(cfg: ExtractConfig) -> ExtractSummary:
    """Run phase one (one rank of it under torchrun); returns this rank's summary (see `c2f extract`)."""
    started = time.perf_counter()
    specs = list({fs.name: fs for fs in map(bb.parse_spec, cfg.backbones)}.values())
    weights = weights_for(specs, cfg.weights)
    manifest = cfg.read_videos()
    out = Path(cfg.out)
    ranks, device = Ranks.start(resolve_device(cfg.device))
    summary = ExtractSummary(rank=ranks.rank, world=ranks.world)
    try:
        with ExitStack() as stack:
            lock_for_the_whole_run(stack, out, ranks)
            runner = _runner(cfg, specs, weights, device, out)
            if device.type == "cpu":      # from the moment the models are built (pipeline.core.memory)
                stack.enter_context(freed_memory_kept())
            summary.batch_size = runner.batch_size
            indices = {fs.name: FeatureIndex.open(out / fs.name, _attrs(fs, weights[fs.name], cfg, runner),
                                                  remove_stale=ranks.rank == 0) for fs in specs}
            pending = _pending(manifest.entries, indices, cfg.retry_failed, summary)
            ranks.barrier()      # every rank has read the index before any rank writes to it
            mine = ranks.slice(pending)
            log.info("%d videos to extract (%d on this rank), %d already done or failed before",
                     len(pending), len(mine), summary.skipped)
            summary.setup_seconds = time.perf_counter() - started
            done = {name: index.done_videos() for name, index in indices.items()}
            Extraction(mine, runner, indices, done, ranks.rank, summary, out, cfg.shard_videos,
                       cfg.progress).run(_decoded(mine, cfg, runner))
            del runner      # the models go back before the heap is (pipeline.core.memory: the shutdown's peak)
            ranks.barrier()      # every rank's shards are in the index
            if ranks.rank == 0:
                _judge_completeness(indices, manifest.entries)
                if not cfg.manifest:         # the videos given, as a manifest (labels and splits to fill in)
                    write_manifest([_row(e) for e in manifest.entries], out / "videos.csv")
    finally:
        ranks.close()
    summary.seconds = time.perf_counter() - started
    return summary


def _runner(cfg: ExtractConfig, specs: list[bb.FeatureSet], weights: dict, device, out: Path) -> FeatureRunner:
    """The backbones, at the batch size given, else the one the cache was extracted with, else the device's
    (pipeline.batching)."""
    batch = cfg.batch_size or recorded(out, [fs.name for fs in specs])
    runner = FeatureRunner(specs, weights, device, batch or CPU_BATCH, *cfg.numerics(device), cfg.preprocess)
    if cfg.canvas is not None:
        if cfg.canvas < runner.canvas:
            raise SettingsError(f"--canvas {cfg.canvas} is smaller than the {runner.canvas} px these sets need")
        runner.canvas = cfg.canvas
    if batch is None and device.type == "cuda":
        runner.batch_size = measured_gpu_batch(runner)
    return runner


def _row(entry: VideoEntry) -> dict:
    return {"video_id": entry.video_id, "path": str(entry.path), "labels": list(entry.labels), "split": entry.split}


def _attrs(fs: bb.FeatureSet, weights: str, cfg: ExtractConfig, runner: FeatureRunner) -> dict:
    # a checkpoint file is recorded by its sha256 (what the features are) and its path (where it was:
    # c2f predict finds it there, and says where to look when it is gone)
    where = {"weights_file": str(Path(weights).resolve())} if weights not in ("imagenet", "random") else {}
    return shard_attrs(fs.name, fs.backbone.name, fs.input_size, fs.output, bb.weights_tag(weights),
                       runner.gflops[fs.name], fs.feature_dim, cfg.sampling.attrs(), fs.grid, fs.patch_size,
                       preprocess=cfg.preprocess, canvas=runner.canvas, seek=cfg.seek, precision=runner.precision,
                       channels_last=int(runner.channels_last), batch_size=runner.batch_size, **where)


def _pending(entries: list[VideoEntry], indices: dict[str, FeatureIndex], retry_failed: bool,
             summary: ExtractSummary) -> list[VideoEntry]:
    """The manifest's videos not yet in every set (nor failed before, unless retrying)."""
    done = {name: index.done_videos() for name, index in indices.items()}
    failed_before = set().union(*(index.failed for index in indices.values()))
    pending = []
    for entry in entries:
        extracted = all(entry.video_id in ids for ids in done.values())
        if extracted or (entry.video_id in failed_before and not retry_failed):
            summary.skipped += 1
            summary.in_cache += extracted
        else:
            pending.append(entry)
    for index in indices.values():
        index.complete = index.complete and not pending
    return pending


def _decoded(entries: list[VideoEntry], cfg: ExtractConfig, runner: FeatureRunner) -> DataLoader:
    """Chunks of decoded samples, from worker processes when cfg.workers > 0 (overlapping compute)."""
    dataset = DecodedVideos(entries, cfg.sampling, runner.canvas, runner.clip_frames, runner.batch_size, cfg.seek,
                            cfg.video_timeout, runner.clip_stride)
    return DataLoader(dataset, batch_size=None, num_workers=cfg.workers, pin_memory=runner.device.type == "cuda",
                      prefetch_factor=4 if cfg.workers else None)


def _judge_completeness(indices: dict[str, FeatureIndex], entries: list[VideoEntry]) -> None:
    for index in indices.values():
        index.save()      # re-read the merged index, then judge completeness on it
        finished_ids = index.done_videos() | set(index.failed)
        index.complete = all(e.video_id in finished_ids for e in entries)
        index.save()
