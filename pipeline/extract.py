"""Phase one: decode each video once and run every requested frozen backbone on its frames.

Layout of the work:
- DataLoader workers decode videos (pipeline.decode) and hand over chunks of sampled
  squares; decoding overlaps compute.
- The main process queues frames across videos and runs each backbone on fixed-size
  batches (the tail is zero-padded). A frame's feature is then a function of the frame
  alone: the same whatever its neighbours in the batch, so a resumed or re-sliced run
  gives bit-identical features to an uninterrupted one.
- Finished videos go into shards (pipeline.shards): complete shards are renamed into place
  and index.json is updated atomically; a rerun skips every video already in a complete
  shard. Failed videos go to CACHE/errors.csv and the run goes on.
- Under torchrun every rank reads the same index, takes an interleaved share of the videos
  still to do (so a rerun with another number of ranks resumes), writes its own
  shard-RRRR-* files and merges them into the one index.json (pipeline.ranks, .shards).
"""
from __future__ import annotations

import logging
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, IterableDataset, get_worker_info
from tqdm import tqdm

from . import backbones as bb
from .decode import DecodeError, Sampling, decode_samples
from .manifest import VideoEntry, read_manifest
from .ranks import Ranks
from .shards import CacheLock, FeatureIndex, VideoFeatures, append_errors

log = logging.getLogger(__name__)


@dataclass
class ExtractConfig:
    manifest: str
    out: str
    backbones: list[str]
    fps: float | None = 1.0
    num_frames: int | None = None
    weights: list[str] = field(default_factory=lambda: ["imagenet"])   # VALUE or SET=VALUE
    batch_size: int = 32
    workers: int = 1
    device: str = "auto"
    shard_videos: int = 64
    retry_failed: bool = False
    progress: bool = True


@dataclass
class ExtractSummary:
    rank: int = 0
    world: int = 1
    done: int = 0           # extracted in this run
    skipped: int = 0        # already in the cache (or failed before, without --retry-failed)
    failed: int = 0         # failed in this run, see errors.csv
    frames: int = 0
    seconds: float = 0.0
    setup_seconds: float = 0.0  # building the models (and counting their FLOPs), opening the indices

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.seconds if self.seconds else 0.0

    def line(self) -> str:
        prefix = f"rank {self.rank}/{self.world}: " if self.world > 1 else ""
        return (f"{prefix}done {self.done}, skipped {self.skipped}, failed {self.failed}; "
                f"{self.frames} frames in {self.seconds:.1f}s ({self.frames_per_second:.1f} frames/s)")


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def weights_for(specs: list[bb.FeatureSet], weights: list[str]) -> dict[str, str]:
    """`--weights VALUE` applies to every set; `--weights SET=VALUE` to one set."""
    default, per_set = "imagenet", {}
    for item in weights:
        name, sep, value = item.rpartition("=")
        if sep:
            per_set[bb.parse_spec(name).name] = value
        else:
            default = item
    unknown = set(per_set) - {fs.name for fs in specs}
    if unknown:
        raise ValueError(f"--weights names feature sets that are not extracted: {', '.join(sorted(unknown))}")
    return {fs.name: per_set.get(fs.name, default) for fs in specs}


# ------------------------------------------------------------------ decoding side

@dataclass
class Chunk:
    """Up to `chunk_frames` consecutive samples of one video, or its failure."""
    position: int                          # index of the video in the pending list
    timestamps: np.ndarray | None = None   # [n] float32
    images: torch.Tensor | None = None     # [n, S, S, 3] uint8
    clips: torch.Tensor | None = None      # [n, F, S, S, 3] uint8
    last: bool = False
    error: str | None = None

    def split(self, frames: int) -> tuple["Chunk", "Chunk"]:
        """The first `frames` samples (never the video's last chunk) and the rest."""
        def part(rows, last):
            return Chunk(self.position, self.timestamps[rows], self.images[rows],
                         None if self.clips is None else self.clips[rows], last)
        return part(slice(0, frames), False), part(slice(frames, None), self.last)

    def pin_memory(self) -> "Chunk":
        """Called by the DataLoader (pin_memory=True) so host-to-GPU copies can be asynchronous."""
        if self.images is not None:
            self.images = self.images.pin_memory()
        if self.clips is not None:
            self.clips = self.clips.pin_memory()
        return self


class DecodedVideos(IterableDataset):
    """Worker w decodes videos w, w + W, w + 2W, ... and streams their samples in chunks."""

    def __init__(self, entries: list[VideoEntry], sampling: Sampling, canvas: int, clip_frames: int,
                 chunk_frames: int):
        self.entries, self.sampling, self.canvas = entries, sampling, canvas
        self.clip_frames, self.chunk_frames = clip_frames, chunk_frames

    def __iter__(self):
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        for position in range(worker, len(self.entries), workers):
            yield from self._video(position)

    def _video(self, position: int):
        entry = self.entries[position]
        samples = []
        try:
            for sample in decode_samples(entry.path, self.sampling, self.canvas,
                                         clip_frames=self.clip_frames, clip_stride=bb.CLIP_STRIDE):
                samples.append(sample)
                if len(samples) == self.chunk_frames:
                    yield self._chunk(position, samples, last=False)
                    samples = []
            yield self._chunk(position, samples, last=True)
        except DecodeError as err:
            yield Chunk(position, error=str(err))
        except Exception as err:  # noqa: BLE001 - one bad file must never stop the run
            yield Chunk(position, error=f"{err.__class__.__name__}: {err}".splitlines()[0])

    def _chunk(self, position, samples, last) -> Chunk:
        if not samples:
            return Chunk(position, np.zeros(0, np.float32), last=last)
        images = torch.from_numpy(np.stack([s.image for s in samples]))
        clips = torch.from_numpy(np.stack([s.clip for s in samples])) if self.clip_frames else None
        return Chunk(position, np.array([s.timestamp for s in samples], np.float32), images, clips, last)


# ------------------------------------------------------------------ compute side

def normalise(x: torch.Tensor, fs: bb.FeatureSet) -> torch.Tensor:
    """[n, 3, ...] in [0, 1] -> the backbone's normalised input."""
    shape = (1, 3) + (1,) * (x.dim() - 2)
    mean = torch.tensor(fs.backbone.mean, device=x.device).view(shape)
    std = torch.tensor(fs.backbone.std, device=x.device).view(shape)
    return (x - mean) / std


def frames_for(images: torch.Tensor, fs: bb.FeatureSet) -> torch.Tensor:
    """Decoded squares [n, S, S, 3] uint8 -> the set's normalised input [n, 3, size, size].
    Smaller inputs are resized from the square (antialiased), so every set sees the same view;
    `c2f finetune-backbone` prepares its frames with this too."""
    x = images.permute(0, 3, 1, 2).float().div_(255)
    if fs.input_size != x.shape[-1]:
        x = F.interpolate(x, size=fs.input_size, mode="bilinear", antialias=True, align_corners=False)
    return normalise(x, fs)


class FeatureRunner:
    """The frozen modules of all feature sets, fed from one canvas-sized square per frame."""

    def __init__(self, specs: list[bb.FeatureSet], weights: dict[str, str], device: torch.device, batch_size: int):
        self.specs, self.device, self.batch_size = specs, device, batch_size
        self.canvas = max(fs.input_size for fs in specs)
        self.clip_frames = bb.CLIP_WINDOW // bb.CLIP_STRIDE if any(fs.output == "clip" for fs in specs) else 0
        self.modules, self.gflops = {}, {}
        for fs in specs:
            module = bb.build(fs, weights[fs.name])
            self.gflops[fs.name] = module.gflops_per_frame   # counted on the CPU, batch 1
            module = module.to(device)
            if device.type == "cuda" and fs.output != "clip":
                module = module.to(memory_format=torch.channels_last)
            self.modules[fs.name] = module
        self.grid_index = {fs.name: self._grid_index(fs) for fs in specs if fs.output == "grid"}

    def _grid_index(self, fs: bb.FeatureSet) -> torch.Tensor:
        origins = torch.tensor(fs.patch_origins())
        return (origins[:, None] + torch.arange(fs.patch_size)[None, :]).to(self.device)   # [G, P]

    def _run_fixed(self, module, x: torch.Tensor, batch: int) -> torch.Tensor:
        """Forward in batches of exactly `batch` rows (zero-padded tail): batch-size-invariant results."""
        outputs = []
        for start in range(0, len(x), batch):
            part = x[start:start + batch]
            rows = len(part)
            if rows < batch:
                part = torch.cat([part, part.new_zeros((batch - rows,) + part.shape[1:])])
            # One memory format for every batch: convolution kernels (and so the last bits of
            # the results) differ between formats, and a padded tail would otherwise differ.
            channels_last = self.device.type == "cuda" and part.dim() == 4
            part = part.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
            if self.device.type == "cuda":
                with torch.autocast("cuda", dtype=torch.bfloat16):
                    out = module(part)
            else:
                out = module(part)
            outputs.append(out[:rows].float())
        return torch.cat(outputs)

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, clips: torch.Tensor | None) -> dict[str, np.ndarray]:
        """images [n, S, S, 3] uint8 -> {set: features [n, ...] float16}."""
        images = images.to(self.device, non_blocking=True)
        out = {}
        for fs in self.specs:
            if fs.output == "clip":
                x = clips.to(self.device, non_blocking=True).permute(0, 4, 1, 2, 3).float().div_(255)
                if fs.input_size != self.canvas:
                    n, c, t = x.shape[:3]
                    x = F.interpolate(x.transpose(1, 2).reshape(n * t, c, self.canvas, self.canvas),
                                      size=fs.input_size, mode="bilinear", antialias=True, align_corners=False)
                    x = x.reshape(n, t, c, fs.input_size, fs.input_size).transpose(1, 2)
                feats = self._run_fixed(self.modules[fs.name], normalise(x, fs), max(1, self.batch_size // 8))
            else:
                x = frames_for(images, fs)
                if fs.output == "grid":
                    index = self.grid_index[fs.name]
                    n, g, p = len(x), fs.grid, fs.patch_size
                    # one gather cuts every candidate: [n, 3, G, P, G, P] -> [n*G*G, 3, P, P], row-major
                    patches = x[:, :, index][..., index].permute(0, 2, 4, 1, 3, 5).reshape(n * g * g, 3, p, p)
                    feats = self._run_fixed(self.modules[fs.name], patches, self.batch_size).view(n, g * g, -1)
                else:
                    feats = self._run_fixed(self.modules[fs.name], x, self.batch_size)
            out[fs.name] = feats.to(torch.float16).cpu().numpy()
        return out


@dataclass
class _Video:
    entry: VideoEntry
    timestamps: list = field(default_factory=list)
    features: dict = field(default_factory=dict)     # set -> list of arrays
    queued: int = 0                                  # frames waiting in the queue
    error: str | None = None


def shard_attrs(fs: bb.FeatureSet, weights_tag: str, sampling: Sampling, gflops: float) -> dict:
    attrs = {"schema_version": 1, "feature_set": fs.name, "backbone": fs.backbone.name,
             "input_size": fs.input_size, "grid": fs.grid, "patch_size": fs.patch_size,
             "weights": weights_tag, "gflops_per_frame": round(gflops, 6),
             "feature_dim": fs.backbone.map_channels if fs.output == "map" else fs.backbone.feature_dim,
             "output": fs.output}
    attrs.update(sampling.attrs())
    return attrs


def extract(cfg: ExtractConfig) -> ExtractSummary:
    """Run phase one (one rank of it under torchrun); returns this rank's summary (see `c2f extract`)."""
    started = time.perf_counter()
    sampling = Sampling(num_frames=cfg.num_frames) if cfg.num_frames else Sampling(fps=cfg.fps)
    specs = list({fs.name: fs for fs in map(bb.parse_spec, cfg.backbones)}.values())
    weights = weights_for(specs, cfg.weights)
    manifest = read_manifest(cfg.manifest)
    out = Path(cfg.out)
    ranks, device = Ranks.start(resolve_device(cfg.device))
    summary = ExtractSummary(rank=ranks.rank, world=ranks.world)
    try:
        with ExitStack() as stack:
            _lock_for_the_whole_run(stack, out, ranks)
            tags = {fs.name: bb.weights_tag(weights[fs.name]) for fs in specs}
            runner = FeatureRunner(specs, weights, device, cfg.batch_size)
            indices = {fs.name: FeatureIndex.open(out / fs.name,
                                                  shard_attrs(fs, tags[fs.name], sampling, runner.gflops[fs.name]),
                                                  remove_stale=ranks.rank == 0)
                       for fs in specs}
            done = {name: index.done_videos() for name, index in indices.items()}
            failed_before = set().union(*(index.failed for index in indices.values()))
            pending = []
            for entry in manifest.entries:
                if all(entry.video_id in done[name] for name in done) or \
                        (entry.video_id in failed_before and not cfg.retry_failed):
                    summary.skipped += 1
                else:
                    pending.append(entry)
            for index in indices.values():
                index.complete = index.complete and not pending
            ranks.barrier()      # every rank has read the index before any rank writes to it
            mine = ranks.slice(pending)
            log.info("%d videos to extract (%d on this rank), %d already done or failed before",
                     len(pending), len(mine), summary.skipped)
            summary.setup_seconds = time.perf_counter() - started
            _extract_pending(mine, cfg, sampling, runner, indices, done, ranks.rank, out, summary)
            ranks.barrier()      # every rank's shards are in the index
            if ranks.rank == 0:
                for index in indices.values():
                    index.save()      # re-read the merged index, then judge completeness on it
                    finished_ids = index.done_videos() | set(index.failed)
                    index.complete = all(e.video_id in finished_ids for e in manifest.entries)
                    index.save()
    finally:
        ranks.close()
    summary.seconds = time.perf_counter() - started
    return summary


def _lock_for_the_whole_run(stack: ExitStack, out: Path, ranks: Ranks) -> None:
    """Rank 0 holds the cache lock for the run; if it cannot, every rank refuses together."""
    refusal = None
    if ranks.rank == 0:
        try:
            stack.enter_context(CacheLock(out))
        except RuntimeError as err:
            refusal = err
    if not ranks.all_true(refusal is None):
        raise refusal or RuntimeError(f"{out} is in use by another extraction (rank 0 could not lock it)")


def _extract_pending(pending, cfg, sampling, runner, indices, done, rank, out, summary):
    dataset = DecodedVideos(pending, sampling, runner.canvas, runner.clip_frames, cfg.batch_size)
    loader = DataLoader(dataset, batch_size=None, num_workers=cfg.workers,
                        pin_memory=runner.device.type == "cuda", prefetch_factor=4 if cfg.workers else None)
    videos: dict[int, _Video] = {}
    queue: list[tuple[int, Chunk]] = []          # chunks whose frames are not computed yet
    queued_frames = 0
    finished: list[_Video] = []
    bar = tqdm(total=len(pending), unit="video", disable=not cfg.progress, dynamic_ncols=True)
    t0 = time.perf_counter()

    def compute_queue(final: bool = False):
        """Compute whole batches of queued frames (every backbone call is padded to --batch-size
        rows, so a partial batch would be paid in full); the rest waits, unless this is the end."""
        nonlocal queue, queued_frames
        if not queue:
            return
        take = queued_frames if final else queued_frames - queued_frames % cfg.batch_size
        computed, rest, count = [], [], 0
        for position, chunk in queue:
            n = len(chunk.timestamps)
            if count + n <= take and not rest:
                computed.append((position, chunk))
                count += n
            elif count < take:
                first, second = chunk.split(take - count)
                computed.append((position, first))
                rest.append((position, second))
                count = take
            else:
                rest.append((position, chunk))
        chunks = [c for _, c in computed if len(c.timestamps)]
        if chunks:
            images = torch.cat([c.images for c in chunks])
            clips = torch.cat([c.clips for c in chunks]) if runner.clip_frames else None
            feats = runner(images, clips)
            row = 0
            for chunk in chunks:
                n = len(chunk.timestamps)
                state = videos[chunk.position]
                for name, array in feats.items():
                    state.features.setdefault(name, []).append(array[row:row + n])
                state.timestamps.append(chunk.timestamps)
                state.queued -= n
                row += n
        for position, chunk in computed:
            state = videos[position]
            if chunk.last and state.queued == 0 and state.error is None:
                finish(position)
        queue, queued_frames = rest, sum(len(c.timestamps) for _, c in rest)

    def finish(position):
        state = videos.pop(position)
        finished.append(state)
        if state.error is None:
            summary.done += 1
            summary.frames += sum(len(t) for t in state.timestamps)
        else:
            summary.failed += 1
        bar.update(1)
        bar.set_postfix(frames=summary.frames, fps=f"{summary.frames / (time.perf_counter() - t0):.1f}",
                        failed=summary.failed, refresh=False)
        if len(finished) >= cfg.shard_videos:
            flush()

    def flush():
        nonlocal finished
        good = [v for v in finished if v.error is None]
        bad = [v for v in finished if v.error is not None]
        for name, index in indices.items():
            todo = [v for v in good if v.entry.video_id not in done[name]]
            if todo:
                index.write_shard(rank, [VideoFeatures(v.entry.video_id, np.concatenate(v.timestamps),
                                                       np.concatenate(v.features[name])) for v in todo])
        append_errors(out, [(v.entry.video_id, str(v.entry.path), v.error) for v in bad])
        for index in indices.values():
            index.failed.update({v.entry.video_id: v.error for v in bad})
            for v in good:
                index.failed.pop(v.entry.video_id, None)
            index.save()
        finished = []

    for chunk in loader:
        state = videos.setdefault(chunk.position, _Video(pending[chunk.position]))
        if chunk.error is not None:
            state.error = chunk.error
            log.warning("%s: %s (%s)", state.entry.video_id, chunk.error, state.entry.path)
            if state.queued:       # its queued frames are computed for nothing: drop them now
                queue[:] = [(p, c) for p, c in queue if p != chunk.position]
                queued_frames = sum(len(c.timestamps) for _, c in queue)
            finish(chunk.position)
            continue
        if chunk.last and not state.timestamps and not len(chunk.timestamps) and not state.queued:
            state.error = "no frames sampled"
            finish(chunk.position)
            continue
        state.queued += len(chunk.timestamps)
        queue.append((chunk.position, chunk))
        queued_frames += len(chunk.timestamps)
        if queued_frames >= cfg.batch_size:
            compute_queue()
    compute_queue(final=True)
    for position in list(videos):      # decoded but never finished: cannot happen unless a worker died
        videos[position].error = videos[position].error or "decoding stopped before the end"
        finish(position)
    flush()            # saves every index, merged with the other ranks'
    bar.close()
