"""Decoding on demand, for heads that stop early (sample-wise early exit, an online budget): a video's
samples are planned from its packet index (how many, at which times) before any pixel is decoded,
and decoded only as far as the head reads them, so the frames after a video's exit are never decoded.
"""
from __future__ import annotations

import time

import numpy as np
import torch

from pipeline.core.files import error_line
from pipeline.decode import SamplePlan, read_samples


class LazySquares:
    """The sampled squares of a batch of planned videos, packed like `torch.cat` of their squares
    ([N, Q, Q, 3] uint8, indexed by rows): each video is decoded forward as far as its furthest row
    asked for. A video that fails part-way is noted in `errors` and gives black squares from there."""

    def __init__(self, plans: list[SamplePlan], canvas: int, timer=None):
        self.plans, self.canvas, self.timer = plans, canvas, timer
        self.offsets = np.concatenate([[0], np.cumsum([p.count for p in plans])]).astype(np.int64)
        self.decoded: list[list[np.ndarray]] = [[] for _ in plans]
        self.readers = [None] * len(plans)
        self.errors: dict[int, str] = {}
        self.seconds = np.zeros(len(plans))          # decoding time per video

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getitem__(self, rows) -> torch.Tensor:
        rows = torch.as_tensor(rows).reshape(-1).numpy()
        videos = np.searchsorted(self.offsets, rows, side="right") - 1
        for video in np.unique(videos):
            self._decode_up_to(int(video), int((rows[videos == video] - self.offsets[video]).max()))
        black = np.zeros((self.canvas, self.canvas, 3), dtype=np.uint8)
        squares = [self._square(int(v), int(r - self.offsets[v]), black) for v, r in zip(videos, rows)]
        return torch.from_numpy(np.stack(squares)) if squares else torch.zeros(0, self.canvas, self.canvas, 3,
                                                                              dtype=torch.uint8)

    def _square(self, video: int, position: int, black: np.ndarray) -> np.ndarray:
        frames = self.decoded[video]
        return frames[position] if position < len(frames) else black

    def _decode_up_to(self, video: int, position: int) -> None:
        if video in self.errors or len(self.decoded[video]) > position:
            return
        started = time.perf_counter()
        try:
            if self.readers[video] is None:
                self.readers[video] = read_samples(self.plans[video], self.canvas)
            while len(self.decoded[video]) <= position:
                self.decoded[video].append(next(self.readers[video]).image)
        except StopIteration:
            self.errors[video] = f"the video gave {len(self.decoded[video])} of its {self.plans[video].count} samples"
        except Exception as err:  # noqa: BLE001 - one bad file must never stop the batch
            self.errors[video] = error_line(err)
        finally:
            spent = time.perf_counter() - started
            self.seconds[video] += spent
            if self.timer is not None:
                self.timer.seconds["decode"] += spent

    def decoded_count(self, video: int) -> int:
        return len(self.decoded[video])

    def squares_of(self, video: int) -> torch.Tensor:
        """The squares of a video decoded so far ([k, Q, Q, 3])."""
        frames = self.decoded[video]
        return torch.from_numpy(np.stack(frames)) if frames else torch.zeros(0, self.canvas, self.canvas, 3,
                                                                             dtype=torch.uint8)

    def close(self) -> None:
        """Close the decoders left part-way (their containers)."""
        for reader in self.readers:
            if reader is not None:
                reader.close()
