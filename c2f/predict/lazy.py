"""Decoding on demand, for heads that stop early (sample-wise early exit, an online budget): a video's
samples are planned from its packet index (how many, at which times) before any pixel is decoded,
and decoded only as far as the head reads them, so the frames after a video's exit are never decoded.
Snippets (a clip set's input) are always decoded on demand, one per sample read (`LazySnippets`).
"""
from __future__ import annotations

import time

import numpy as np
import torch

from pipeline.core.files import error_line
from pipeline.decode import SamplePlan, SnippetReader, read_samples


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


class LazySnippets:
    """The snippets of a batch of planned videos ([n, F, Q, Q, 3] uint8, indexed by rows as LazySquares):
    each decoded when it is read (pipeline.decode.SnippetReader: forward, one window of squares held per
    video). A video that fails is noted in `errors` and gives black snippets."""

    def __init__(self, plans: list[SamplePlan], canvas: int, clip_frames: int, clip_stride: int, timer=None):
        self.canvas, self.clip_frames, self.timer = canvas, clip_frames, timer
        self.offsets = np.concatenate([[0], np.cumsum([p.count for p in plans])]).astype(np.int64)
        self.readers = [SnippetReader(p, canvas, clip_frames, clip_stride) for p in plans]
        self.errors: dict[int, str] = {}
        self.seconds = np.zeros(len(plans))          # decoding time per video
        self.read = np.zeros(int(self.offsets[-1]), dtype=np.int64)     # snippets cut, per row

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getitem__(self, rows) -> torch.Tensor:
        rows = torch.as_tensor(rows).reshape(-1).numpy()
        videos = np.searchsorted(self.offsets, rows, side="right") - 1
        out = np.zeros((len(rows), self.clip_frames, self.canvas, self.canvas, 3), dtype=np.uint8)
        for k in np.argsort(rows, kind="stable"):      # forward in each video
            video = int(videos[k])
            if video in self.errors:
                continue
            started = time.perf_counter()
            try:
                out[k] = self.readers[video].snippet(int(rows[k] - self.offsets[video]))
                self.read[rows[k]] += 1
            except Exception as err:  # noqa: BLE001 - one bad file must never stop the batch
                self.errors[video] = error_line(err)
            finally:
                spent = time.perf_counter() - started
                self.seconds[video] += spent
                if self.timer is not None:
                    self.timer.seconds["decode"] += spent
        return torch.from_numpy(out)

    def close(self) -> None:
        """Close the decoders left part-way."""
        for reader in self.readers:
            reader.close()


def snippet_features(fs, runner, snippets: LazySnippets, rows: torch.Tensor) -> tuple[torch.Tensor, float]:
    """A clip set's features of `rows` (float16), and the seconds spent decoding their snippets: decoded,
    prepared as at extraction (FeatureSet.prepare_clips) and run one network call at a time, so that
    only one call's snippets are held."""
    step, parts, decoding = runner.batch_for(fs), [], 0.0
    for start in range(0, len(rows), step):
        began = time.perf_counter()
        clips = snippets[rows[start:start + step]]
        decoding += time.perf_counter() - began
        parts.append(runner.run(fs, fs.prepare_clips(clips, runner.preprocess), padded=False).to(torch.float16).cpu())
    return torch.cat(parts), decoding
