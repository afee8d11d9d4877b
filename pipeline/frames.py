"""Decoded frames on their way to the backbones: chunks of one video's samples, the DataLoader
dataset that decodes them in worker processes, and the queue that batches them across videos."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from .decode import DecodeError, Sampling, decode_samples
from .core.manifest import VideoEntry


@dataclass
class Chunk:
    """Up to `chunk_frames` consecutive samples of one video, or its failure."""
    position: int                          # index of the video in the pending list
    timestamps: np.ndarray | None = None   # [n] float32
    images: torch.Tensor | None = None     # [n, S, S, 3] uint8
    clips: torch.Tensor | None = None      # [n, F, S, S, 3] uint8
    last: bool = False
    error: str | None = None

    def __len__(self) -> int:
        return 0 if self.timestamps is None else len(self.timestamps)

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
                 chunk_frames: int, seek: str = "exact", timeout: float | None = None, clip_stride: int = 1):
        self.entries, self.sampling, self.canvas = entries, sampling, canvas
        self.clip_frames, self.chunk_frames, self.seek, self.timeout = clip_frames, chunk_frames, seek, timeout
        self.clip_stride = clip_stride

    def __iter__(self):
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        for position in range(worker, len(self.entries), workers):
            yield from self._video(position)

    def _video(self, position: int):
        entry = self.entries[position]
        samples = []
        try:
            for sample in decode_samples(entry.path, self.sampling, self.canvas, clip_frames=self.clip_frames,
                                         clip_stride=self.clip_stride, seek=self.seek, timeout=self.timeout):
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


class FrameQueue:
    """Decoded chunks waiting for the backbones, across videos, in arrival order.

    The backbones run on whole batches only: every call is padded to `batch_size` rows (which
    makes a frame's feature independent of its neighbours in the batch), so a partial batch
    would be paid in full. `take()` pops the largest whole number of batches, splitting a chunk
    at the boundary; `take(final=True)` pops everything (the end of the run)."""

    def __init__(self, batch_size: int):
        self.batch_size = batch_size
        self.chunks: list[Chunk] = []

    @property
    def frames(self) -> int:
        return sum(len(c) for c in self.chunks)

    def push(self, chunk: Chunk) -> None:
        self.chunks.append(chunk)

    def drop(self, position: int) -> None:
        """Forget a video's queued frames (it failed: computing them would be for nothing)."""
        self.chunks = [c for c in self.chunks if c.position != position]

    def take(self, final: bool = False) -> list[Chunk]:
        queued = self.frames
        wanted = queued if final else queued - queued % self.batch_size
        taken, count = [], 0
        # an empty chunk at the head (a video's end marker) costs nothing: it goes along
        while self.chunks and (count < wanted or not len(self.chunks[0])):
            chunk = self.chunks.pop(0)
            if count + len(chunk) > wanted:
                chunk, rest = chunk.split(wanted - count)
                self.chunks.insert(0, rest)
            taken.append(chunk)
            count += len(chunk)
        return taken
