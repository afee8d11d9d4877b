"""One rank's extraction loop: decoded chunks come in, the queue hands whole batches to the backbones,
finished videos are written to a shard (or errors.csv) every `shard_videos` videos; a video that
cannot be written costs only itself, a full disk stops the run."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .cache import FeatureIndex, VideoFeatures, append_errors
from .core.files import disk_full, error_line
from .core.manifest import VideoEntry
from .frames import Chunk, FrameQueue
from .runner import FeatureRunner

log = logging.getLogger(__name__)


@dataclass
class ExtractSummary:
    rank: int = 0
    world: int = 1
    done: int = 0           # extracted in this run
    skipped: int = 0        # already in the cache (or failed before, without --retry-failed)
    in_cache: int = 0       # of those, extracted by an earlier run
    failed: int = 0         # failed in this run, see errors.csv
    frames: int = 0
    seconds: float = 0.0
    setup_seconds: float = 0.0  # building the models (and counting their FLOPs), opening the indices
    batch_size: int = 0         # frames per backbone call (chosen per device when not given)

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.seconds if self.seconds else 0.0

    def line(self) -> str:
        prefix = f"rank {self.rank}/{self.world}: " if self.world > 1 else ""
        return (f"{prefix}done {self.done}, skipped {self.skipped}, failed {self.failed}; "
                f"{self.frames} frames in {self.seconds:.1f}s ({self.frames_per_second:.1f} frames/s, batch "
                f"{self.batch_size})")



@dataclass
class _Video:
    entry: VideoEntry
    timestamps: list = field(default_factory=list)
    features: dict = field(default_factory=dict)     # set -> list of arrays
    queued: int = 0                                  # frames waiting in the queue
    error: str | None = None


class Extraction:
    """One rank's loop over its pending videos: decoded chunks come in, the queue hands whole
    batches to the backbones, finished videos are written to a shard (or errors.csv) every
    `shard_videos` videos, and the progress bar and the summary count them."""

    def __init__(self, pending: list[VideoEntry], runner: FeatureRunner, indices: dict[str, FeatureIndex],
                 done: dict[str, set], rank: int, summary: ExtractSummary, out: Path, shard_videos: int,
                 progress: bool):
        self.pending, self.runner, self.indices, self.done = pending, runner, indices, done
        self.rank, self.summary, self.out, self.shard_videos = rank, summary, Path(out), shard_videos
        self.batch_size = runner.batch_size
        self.queue = FrameQueue(self.batch_size)
        self.videos: dict[int, _Video] = {}
        self.finished: list[_Video] = []
        self.bar = tqdm(total=len(pending), unit="video", disable=not progress, dynamic_ncols=True)
        self.started = time.perf_counter()

    def run(self, chunks) -> None:
        for chunk in chunks:
            self.receive(chunk)
        self.compute(final=True)
        for position in list(self.videos):      # decoded but never finished: only if a worker died
            self.videos[position].error = self.videos[position].error or "decoding stopped before the end"
            self.finish(position)
        self.flush()            # saves every index, merged with the other ranks'
        self.bar.close()

    def receive(self, chunk: Chunk) -> None:
        state = self.videos.setdefault(chunk.position, _Video(self.pending[chunk.position]))
        if chunk.error is not None or (chunk.last and not state.timestamps and not len(chunk) and not state.queued):
            state.error = chunk.error or "no frames sampled"
            log.warning("%s: %s (%s)", state.entry.video_id, state.error, state.entry.path)
            self.queue.drop(chunk.position)
            self.finish(chunk.position)
            return
        state.queued += len(chunk)
        self.queue.push(chunk)
        if self.queue.frames >= self.batch_size:
            self.compute()

    def compute(self, final: bool = False) -> None:
        """Run the backbones on the queue's whole batches and hand each video its features."""
        taken = self.queue.take(final)
        with_frames = [c for c in taken if len(c)]
        if with_frames:
            clips = self.runner.stage("clips", [c.clips for c in with_frames]) if self.runner.clip_frames else None
            features = self.runner(self.runner.stage("images", [c.images for c in with_frames]), clips)
            row = 0
            for chunk in with_frames:
                state = self.videos[chunk.position]
                for name, array in features.items():
                    state.features.setdefault(name, []).append(array[row:row + len(chunk)])
                state.timestamps.append(chunk.timestamps)
                state.queued -= len(chunk)
                row += len(chunk)
        for chunk in taken:
            state = self.videos[chunk.position]
            if chunk.last and state.queued == 0 and state.error is None:
                self.finish(chunk.position)

    def finish(self, position: int) -> None:
        state = self.videos.pop(position)
        self.finished.append(state)
        if state.error is None:
            self.summary.done += 1
            self.summary.frames += sum(len(t) for t in state.timestamps)
        else:
            self.summary.failed += 1
        self.bar.update(1)
        rate = self.summary.frames / (time.perf_counter() - self.started)
        self.bar.set_postfix(frames=self.summary.frames, fps=f"{rate:.1f}", failed=self.summary.failed, refresh=False)
        if len(self.finished) >= self.shard_videos:
            self.flush()

    def flush(self) -> None:
        """Write the finished videos: a shard per feature set, failures to errors.csv, the indices."""
        for name, index in self.indices.items():
            todo = [v for v in self.finished if v.error is None and v.entry.video_id not in self.done[name]]
            if todo:
                self._write(index, name, todo)
        good = [v for v in self.finished if v.error is None]
        bad = [v for v in self.finished if v.error is not None]
        append_errors(self.out, [(v.entry.video_id, str(v.entry.path), v.error) for v in bad])
        for index in self.indices.values():
            index.failed.update({v.entry.video_id: v.error for v in bad})
            for v in good:
                index.failed.pop(v.entry.video_id, None)
            index.save()
        self.finished = []

    def _write(self, index: FeatureIndex, name: str, videos: list[_Video]) -> None:
        """One shard of the videos; if it cannot be written (for another reason than a full disk, which
        stops the run), one shard per video, so that a video that cannot be written costs only itself."""
        def features(v: _Video) -> VideoFeatures:
            return VideoFeatures(v.entry.video_id, np.concatenate(v.timestamps), np.concatenate(v.features[name]))
        try:
            index.write_shard(self.rank, [features(v) for v in videos])
            return
        except Exception as err:  # noqa: BLE001 - isolate the video at fault, below
            if disk_full(err):
                raise
            if len(videos) == 1:
                self._unwritable(videos[0], err)
                return
            log.warning("%s: a shard of %d videos could not be written (%s); writing them one by one", name,
                        len(videos), error_line(err))
        for video in videos:
            try:
                index.write_shard(self.rank, [features(video)])
            except Exception as err:  # noqa: BLE001 - this one video's fault; it goes to errors.csv
                if disk_full(err):
                    raise
                self._unwritable(video, err)

    def _unwritable(self, video: _Video, err: BaseException) -> None:
        video.error = f"could not be written ({error_line(err)})"
        self.summary.done, self.summary.failed = self.summary.done - 1, self.summary.failed + 1
