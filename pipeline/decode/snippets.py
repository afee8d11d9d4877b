"""Snippets decoded one sample at a time, for prediction: the expensive clip network reads the snippet
of only some samples (those a head chooses), so only those are cut, each as `read_samples(plan, canvas,
clip_frames, clip_stride)` gives it at extraction.

A snippet needs every frame around its sample, so a video is decoded straight through, forward, only
as far as the snippets asked for reach; of the frames decoded, only those near a sample asked for are
turned into squares (where the packet index places that sample's frame), and at most one snippet
window of squares is held."""
from __future__ import annotations

import bisect

import av
import numpy as np

from .container import COMPLETE_ENOUGH, Deadline, DecodeError, open_video, video_stream
from .reader import SamplePlan, decoded_frames, to_square


class SnippetReader:
    """One planned video's snippets, decoded forward as they are asked for (`snippet(i)`).

    Sample i's snippet is the frames centre - half + k * stride (k < clip_frames, half = clip_frames *
    stride // 2), clamped to the video's frames, where centre is the first frame at or after the
    sample's time: reader._linear's snippet. A snippet whose frames are no longer held (a sample
    earlier than the window of those read), or were not kept (a packet index that misplaced a frame),
    is read by a new pass from the start of the video; the last resort keeps every frame of the window
    behind the furthest frame decoded (any one snippet fits in it)."""

    def __init__(self, plan: SamplePlan, canvas: int, clip_frames: int, clip_stride: int):
        if plan.seek != "exact":
            raise ValueError("snippets (SlowFast) need every frame: use --seek exact")
        self.plan, self.canvas, self.clip_frames, self.clip_stride = plan, canvas, clip_frames, clip_stride
        self.half = clip_frames * clip_stride // 2
        self.window = max(1, clip_frames * clip_stride)
        self.container, self.frames, self.passes, self.served = None, None, 0, 0

    def _start(self, keep_all: bool) -> None:
        """A new pass from the first frame (a fresh demuxer, as read_samples opens)."""
        self.close()
        self.container = open_video(self.plan.path)
        self.frames = decoded_frames(self.container, video_stream(self.container), self.plan.index,
                                     Deadline(self.plan.deadline.seconds))
        self.keep_all, self.passes, self.served = keep_all, self.passes + 1, 0
        self.squares: dict[int, np.ndarray] = {}      # position -> square, within the last `window` frames
        self.position, self.time, self.last, self.ended = -1, 0.0, None, False
        self.centres: list[int] = []                  # the frame of samples 0, 1, ... reached so far

    def _advance(self, keep_from: int) -> None:
        """Decode one more frame; a square of it from position keep_from on (or always, keep_all)."""
        try:
            self.time, frame = next(self.frames)
        except StopIteration:
            self.ended = True
            return
        except av.error.FFmpegError as err:
            raise DecodeError(f"decode error ({err.strerror or err.__class__.__name__})") from None
        self.position, self.last = self.position + 1, frame
        wanted = self.plan.wanted
        while len(self.centres) < len(wanted) and self.time >= wanted[len(self.centres)] - 1e-6:
            self.centres.append(self.position)
        if self.keep_all or self.position >= keep_from:
            self.squares[self.position] = to_square(frame, self.canvas)
        self.squares.pop(self.position - self.window, None)    # no snippet read from now on reaches it

    def _snippet(self, i: int) -> np.ndarray | None:
        """Sample i's snippet in this pass; None when a frame it reads was not kept."""
        hint = bisect.bisect_left(self.plan.index.times, self.plan.wanted[i] - 1e-6)
        keep_from = hint - self.half
        while len(self.centres) <= i and not self.ended:
            self._advance(keep_from)
        if len(self.centres) <= i:           # the stream ended first: the last frame stands in, as at extraction
            if self.position < 0:
                raise DecodeError("no frame could be decoded")
            if self.time < COMPLETE_ENOUGH * self.plan.index.times[-1]:
                raise DecodeError(f"stream ended at {self.time:.2f}s of {self.plan.index.times[-1]:.2f}s (truncated?)")
        centre = self.centres[i] if len(self.centres) > i else self.position
        rows = [centre - self.half + k * self.clip_stride for k in range(self.clip_frames)]
        while self.position < rows[-1] and not self.ended:
            self._advance(keep_from)
        if self.ended and self.position not in self.squares:
            self.squares[self.position] = to_square(self.last, self.canvas)
        rows = [min(max(r, 0), self.position) for r in rows]
        if any(r not in self.squares for r in rows):
            return None
        return np.stack([self.squares[r] for r in rows])

    def snippet(self, i: int) -> np.ndarray:
        """Sample i's snippet [clip_frames, canvas, canvas, 3] uint8; DecodeError when the video fails."""
        if not 0 <= i < self.plan.count:
            raise IndexError(f"sample {i} of a video of {self.plan.count}")
        if self.frames is None:
            self._start(keep_all=False)
        found = self._snippet(i)
        if found is None and self.served:       # an earlier sample than this pass holds: a new pass
            self._start(keep_all=False)
            found = self._snippet(i)
        if found is None:                       # the packet index misplaced a frame: keep every frame
            self._start(keep_all=True)
            found = self._snippet(i)
        if found is None:
            raise RuntimeError(f"sample {i}'s snippet could not be cut from a full pass")
        self.served += 1
        return found

    def close(self) -> None:
        if self.container is not None:
            self.container.close()
        self.container, self.frames = None, None
