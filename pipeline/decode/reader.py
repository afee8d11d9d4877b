"""Decoding with PyAV: sample frame times, pick frames, resize and centre-crop once.

Sampling: `fps` gives targets k / fps for k = 0, 1, ... inside the video (at least one
target, so a video shorter than one interval still gives a frame); `num_frames` gives N
targets at the centres of N equal segments. For each target, the first frame whose
timestamp is >= the target is taken (the last frame if none).
Timestamps come from each frame's pts, so variable frame rate is handled, and are seconds
from the stream's first frame.

Each picked frame is converted to RGB, resized as torchvision's evaluation transforms resize
(short side to `canvas` px, antialiased bilinear, torchvision's own kernel), centre-cropped to
canvas x canvas, and rotated as its display matrix says. Every feature set takes its own central
crop of this same square (backbones.featureset: docs/contracts/cache.md, "Preprocessing"), resized to its input;
patches are cut from that.

The decoder streams: it yields samples as it goes and holds at most one snippet window.
Whether it decodes linearly or seeks to each target is chosen per video from the packet
index (a demux pass that reads no pixels): the cheaper in frames decoded wins.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Iterator

import av
import numpy as np
import torch
from torchvision.transforms.v2.functional import resize

from .container import (COMPLETE_ENOUGH, Deadline, DecodeError, PacketIndex, index_packets, open_video,
                        video_stream)
from .sampling import SEEK_MODES, Sampling, linear_is_cheaper, sample_targets, wanted_times

# the default --video-timeout: seconds one video may take to decode, past which it is skipped
VIDEO_TIMEOUT = 1800.0

@dataclass
class Sample:
    timestamp: float
    image: np.ndarray                  # [canvas, canvas, 3] uint8, RGB
    clip: np.ndarray | None = None     # [clip_frames, canvas, canvas, 3] uint8, when asked for


# Beyond this aspect ratio the frame's central square is cut before resizing (a 8192 x 2 frame
# would otherwise be resized to 256 x 1,048,576 for the sake of its central 256 x 256).
MAX_ASPECT_BEFORE_CROP = 4


def to_square(frame: av.VideoFrame, canvas: int) -> np.ndarray:
    """The frame as torchvision's evaluation transform resizes it (RGB, then the short side to
    `canvas` with its antialiased bilinear kernel), its central canvas x canvas square (offsets
    rounded as torchvision's center_crop), then the display rotation."""
    rgb = torch.from_numpy(frame.to_ndarray(format="rgb24")).permute(2, 0, 1)
    h, w = rgb.shape[1:]
    if max(h, w) > MAX_ASPECT_BEFORE_CROP * min(h, w):
        side = min(h, w)
        top, left = (h - side) // 2, (w - side) // 2
        rgb = rgb[:, top:top + side, left:left + side]
    resized = resize(rgb, [canvas], antialias=True)
    h, w = resized.shape[1:]
    top, left = int(round((h - canvas) / 2)), int(round((w - canvas) / 2))
    square = resized[:, top:top + canvas, left:left + canvas].permute(1, 2, 0).numpy()
    quarter_turns = round((getattr(frame, "rotation", 0) or 0) / 90) % 4
    if quarter_turns:   # display matrix angle is counter-clockwise, as np.rot90
        square = np.rot90(square, quarter_turns)
    return np.ascontiguousarray(square)


@dataclass
class SamplePlan:
    """What a video's decoding will take, learnt from its packet index before any pixel is decoded:
    how many samples (`count`), and the frame times that serve them."""
    path: str
    index: PacketIndex
    wanted: list[float]
    seek: str
    deadline: Deadline

    @property
    def count(self) -> int:
        return len(self.wanted)


def plan_samples(path, sampling: Sampling, seek: str = "exact", timeout: float | None = None) -> SamplePlan:
    """One video's sample plan (a demux pass, no decoding); DecodeError when it cannot be read.
    timeout: seconds for the whole video, this pass and the decoding together."""
    if seek not in SEEK_MODES:
        raise ValueError(f"seek must be one of {SEEK_MODES}, not {seek!r}")
    deadline = Deadline(timeout)
    container = open_video(path)
    try:
        index = index_packets(container, video_stream(container), deadline)
    finally:
        container.close()
    return SamplePlan(str(path), index, wanted_times(index, sample_targets(sampling, index, path), seek), seek, deadline)


def read_samples(plan: SamplePlan, canvas: int, clip_frames: int = 0, clip_stride: int = 1,
                 force_linear: bool = False) -> Iterator[Sample]:
    """Yield a planned video's samples in time order, decoding only as far as they are asked for (a
    consumer that stops early decodes nothing past its last sample)."""
    if clip_frames and plan.seek != "exact":
        raise ValueError("snippets (SlowFast) need every frame: use --seek exact")
    index, wanted, deadline = plan.index, plan.wanted, plan.deadline
    container = open_video(plan.path)      # a fresh demuxer: rewinding after the index pass is not portable
    try:
        stream = video_stream(container)
        if plan.seek != "exact":
            stream.codec_context.skip_frame = "NONKEY" if plan.seek == "keyframe" else "NONREF"
        decoded_times = index.keyframes if plan.seek == "keyframe" else index.times
        linear = clip_frames or force_linear or index.rate is not None or linear_is_cheaper(index, wanted, decoded_times)
        if linear and plan.seek == "nonref":
            yield from _linear_nearest(container, stream, index, wanted, canvas, deadline)
        elif linear:
            yield from _linear(container, stream, index, wanted, canvas, clip_frames, clip_stride, deadline)
        else:
            yield from _seeking(container, stream, index, wanted, canvas, plan.seek == "nonref", deadline)
    except av.error.FFmpegError as err:
        raise DecodeError(f"decode error ({err.strerror or err.__class__.__name__})") from None
    finally:
        container.close()


def decode_samples(path, sampling: Sampling, canvas: int, clip_frames: int = 0, clip_stride: int = 1,
                   force_linear: bool = False, seek: str = "exact", timeout: float | None = None) -> Iterator[Sample]:
    """Yield the sampled frames of one video in time order (plan_samples, then read_samples).

    clip_frames > 0 also gives each sample a snippet of `clip_frames` frames taken every
    `clip_stride` frames around it (edges repeat the first/last frame); snippets need a
    linear, exact decode. seek (SEEK_MODES): exact decodes every frame up to each target;
    nonref lets the decoder skip non-reference frames and takes the nearest decoded frame;
    keyframe decodes keyframes only and takes the nearest keyframe. A sample's timestamp is the
    time of the frame actually taken. timeout: seconds for the whole video (DecodeError after).
    """
    if clip_frames and seek != "exact":
        raise ValueError("snippets (SlowFast) need every frame: use --seek exact")
    yield from read_samples(plan_samples(path, sampling, seek, timeout), canvas, clip_frames, clip_stride, force_linear)


def decoded_frames(container, stream, index: PacketIndex, deadline: Deadline):
    """Decoded frames with their time in seconds from the first frame (by order at index.rate for
    a stream without usable timestamps)."""
    for position, frame in enumerate(container.decode(stream)):
        deadline.check()
        if index.rate is not None:
            yield position / index.rate, frame
        elif frame.pts is not None:
            yield float(frame.pts * stream.time_base - index.start), frame


def _linear(container, stream, index, wanted, canvas, clip_frames, clip_stride, deadline):
    half = (clip_frames * clip_stride) // 2
    window: deque[np.ndarray] = deque(maxlen=max(1, clip_frames * clip_stride))   # recent squares
    pending: deque[tuple[int, float, np.ndarray]] = deque()    # samples waiting for their snippet
    next_wanted, position, time, square = 0, -1, 0.0, None
    for position, (time, frame) in enumerate(decoded_frames(container, stream, index, deadline)):
        due = next_wanted < len(wanted) and time >= wanted[next_wanted] - 1e-6
        if due or clip_frames:
            square = to_square(frame, canvas)
        if clip_frames:
            window.append(square)
        while next_wanted < len(wanted) and time >= wanted[next_wanted] - 1e-6:
            if clip_frames:
                pending.append((position, time, square))
            else:
                yield Sample(time, square)
            next_wanted += 1
        while pending and position >= pending[0][0] + half - 1:
            yield _with_clip(pending.popleft(), window, position, clip_frames, clip_stride, half)
        if next_wanted == len(wanted) and not pending:
            return
    if position < 0:
        raise DecodeError("no frame could be decoded")
    if next_wanted < len(wanted):
        if time < COMPLETE_ENOUGH * index.times[-1]:
            raise DecodeError(f"stream ended at {time:.2f}s of {index.times[-1]:.2f}s (truncated?)")
        if square is None:
            square = to_square(frame, canvas)
        while next_wanted < len(wanted):
            if clip_frames:
                pending.append((position, time, square))
            else:
                yield Sample(time, square)
            next_wanted += 1
    while pending:
        yield _with_clip(pending.popleft(), window, position, clip_frames, clip_stride, half)


def _with_clip(item, window, last_position, clip_frames, clip_stride, half) -> Sample:
    """Snippet frames centre - half, ..., centre + half - stride, clamped to the decoded ones."""
    centre, time, square = item
    first_in_window = last_position - len(window) + 1
    rows = []
    for k in range(clip_frames):
        position = min(max(centre - half + k * clip_stride, 0), last_position)
        rows.append(window[max(0, position - first_in_window)])
    return Sample(time, square, np.stack(rows))


def _linear_nearest(container, stream, index, targets, canvas, deadline):
    """nonref: for each target the decoded frame nearest to it (non-reference frames are skipped by
    the decoder, so the frame at the target may not exist)."""
    previous, squares, k, time = None, {}, 0, 0.0

    def square(item):
        if item[0] not in squares:
            squares.clear()               # targets come in order: an earlier frame is never chosen again
            squares[item[0]] = to_square(item[1], canvas)
        return squares[item[0]]

    for time, frame in decoded_frames(container, stream, index, deadline):
        while k < len(targets) and time >= targets[k] - 1e-6:
            chosen = previous if previous and targets[k] - previous[0] < time - targets[k] else (time, frame)
            yield Sample(chosen[0], square(chosen))
            k += 1
        if k == len(targets):
            return
        previous = (time, frame)
    if previous is None:
        raise DecodeError("no frame could be decoded")
    if time < COMPLETE_ENOUGH * index.times[-1]:
        raise DecodeError(f"stream ended at {time:.2f}s of {index.times[-1]:.2f}s (truncated?)")
    for _ in range(k, len(targets)):
        yield Sample(previous[0], square(previous))


def _seeking(container, stream, index, wanted, canvas, nearest: bool, deadline):
    """Seek to each target's keyframe and decode up to it; `nearest` (nonref) takes the nearer of
    the frames just before and at or after the target."""
    tb = stream.time_base
    for target in sorted(set(wanted)):
        container.seek(int(round((target + float(index.start)) / tb)), stream=stream, backward=True, any_frame=False)
        chosen, previous = None, None
        for time, frame in decoded_frames(container, stream, index, deadline):
            if time >= target - 1e-6:
                near_previous = nearest and previous is not None and target - previous[0] < time - target
                chosen = previous if near_previous else (time, frame)
                break
            previous = (time, frame)
        chosen = chosen or (previous if nearest else None)
        if chosen is None:
            raise DecodeError(f"could not decode the frame at {target:.3f}s")
        square = to_square(chosen[1], canvas)
        for _ in range(wanted.count(target)):
            yield Sample(chosen[0], square)

