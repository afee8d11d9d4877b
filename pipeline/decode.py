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
crop of this same square (backbones.registry: DESIGN.md's "Preprocessing"), resized to its input;
patches are cut from that.

The decoder streams: it yields samples as it goes and holds at most one snippet window.
Whether it decodes linearly or seeks to each target is chosen per video from the packet
index (a demux pass that reads no pixels): the cheaper in frames decoded wins.
"""
from __future__ import annotations

import bisect
import logging
import math
import os
import stat
from collections import deque
from dataclasses import dataclass
from fractions import Fraction
from time import monotonic
from typing import Iterator

import av
import numpy as np
import torch
from torchvision.transforms.v2.functional import resize

log = logging.getLogger(__name__)

# A stream holding fewer frames than its header declares, or whose decoding stops before
# this fraction of it, is truncated (the last frame or two of some encodes never decode:
# past this fraction the last decoded frame stands in).
COMPLETE_ENOUGH = 0.95
# Seeking costs a flush and a demuxer reposition; count it as this many decoded frames.
SEEK_OVERHEAD_FRAMES = 4


class DecodeError(RuntimeError):
    """A video that cannot be decoded; the message is the one-line reason for errors.csv."""


@dataclass(frozen=True)
class Sampling:
    fps: float | None = None
    num_frames: int | None = None

    def __post_init__(self):
        if (self.fps is None) == (self.num_frames is None):
            raise ValueError("give exactly one of fps and num_frames")
        if self.fps is not None and not self.fps > 0:
            raise ValueError("fps must be > 0")
        if self.num_frames is not None and self.num_frames < 1:
            raise ValueError("num_frames must be >= 1")

    def targets(self, duration: float) -> list[float]:
        if self.num_frames is not None:
            return [(k + 0.5) * duration / self.num_frames for k in range(self.num_frames)]
        count = max(1, math.ceil(duration * self.fps - 1e-9))
        return [k / self.fps for k in range(count)]

    def attrs(self) -> dict:
        return {"fps": float(self.fps)} if self.fps is not None else {"num_frames": int(self.num_frames)}


@dataclass
class Sample:
    timestamp: float
    image: np.ndarray                  # [canvas, canvas, 3] uint8, RGB
    clip: np.ndarray | None = None     # [clip_frames, canvas, canvas, 3] uint8, when asked for


@dataclass
class PacketIndex:
    times: list[float]        # presentation times of all frames, sorted, seconds from the first
    keyframes: list[float]    # presentation times of keyframes, sorted
    start: Fraction           # stream time of the first frame (in seconds)
    rate: float | None = None   # set when the stream carries no usable timestamps: times are frame order / rate

    @property
    def duration(self) -> float:
        """Up to the end of the last frame (its time plus the median frame interval)."""
        if len(self.times) < 2:
            return 0.0 if not self.times else 1e-3
        step = float(np.median(np.diff(self.times)))
        return self.times[-1] + step


class Deadline:
    """A video's time limit (--video-timeout), checked at every packet and frame."""

    def __init__(self, seconds: float | None):
        self.seconds = seconds
        self.end = None if seconds is None else monotonic() + seconds

    def check(self) -> None:
        if self.end is not None and monotonic() > self.end:
            raise DecodeError(f"took longer than the video time limit ({self.seconds:g} s, --video-timeout)")


_FILE_KINDS = {stat.S_IFDIR: "a directory", stat.S_IFIFO: "a named pipe (FIFO)", stat.S_IFCHR: "a character device",
               stat.S_IFBLK: "a block device", stat.S_IFSOCK: "a socket"}


def _open(path) -> av.container.InputContainer:
    """The container, refused up front unless `path` is a regular file: reading a FIFO or a device
    could block forever."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise DecodeError("file not found") from None
    except OSError as err:
        raise DecodeError(f"cannot be read ({err.strerror or err.__class__.__name__})") from None
    if not stat.S_ISREG(mode):
        raise DecodeError(f"not a regular file: {_FILE_KINDS.get(stat.S_IFMT(mode), 'a special file')}")
    try:
        container = av.open(str(path), metadata_errors="ignore")
    except av.error.FFmpegError as err:
        raise DecodeError(f"not a readable video ({err.strerror or err.__class__.__name__})") from None
    except OSError as err:
        raise DecodeError(f"cannot be read ({err.strerror or err.__class__.__name__})") from None
    if not container.streams.video:
        container.close()
        raise DecodeError("no video stream")
    return container


def video_stream(container):
    """The container's main video stream: not an attached picture (a cover), the largest picture
    (a second stream is a thumbnail or a preview more often than not), FFmpeg's best on a tie."""
    best = container.streams.best("video")
    streams = [s for s in container.streams.video if not s.disposition & av.stream.Disposition.attached_pic]
    area = lambda s: (s.codec_context.width or 0) * (s.codec_context.height or 0)  # noqa: E731
    return max(streams or container.streams.video, key=lambda s: (area(s), s is best))


def _stream_rate(stream) -> float:
    rate = stream.guessed_rate or stream.average_rate or stream.base_rate
    return float(rate) if rate and float(rate) > 0 else 25.0


def index_packets(container, stream, deadline: Deadline) -> PacketIndex:
    """Demux (no decoding) to learn every frame's time and the keyframes. A stream without
    timestamps (raw Annex-B H.264), or whose frames all carry the same one, is timed by frame order
    at its rate (warned)."""
    pts, keys, key_order, packets = [], [], [], 0
    try:
        for packet in container.demux(stream):
            deadline.check()
            if packet.size == 0:
                continue
            if packet.is_keyframe:
                key_order.append(packets)
                if packet.pts is not None:
                    keys.append(packet.pts)
            if packet.pts is not None:
                pts.append(packet.pts)
            packets += 1
    except av.error.FFmpegError as err:
        raise DecodeError(f"demux error after {packets} packets ({err.strerror or err.__class__.__name__})") from None
    if not packets:
        raise DecodeError("video stream has no frames")
    declared = stream.frames or 0
    if declared and packets < COMPLETE_ENOUGH * declared:
        raise DecodeError(f"truncated: {packets} of {declared} frames present")
    if len(pts) < packets or (len(pts) > 1 and min(pts) == max(pts)):
        rate = _stream_rate(stream)
        log.warning("%s: %s; timed by frame order at %g fps", container.name, "no timestamps" if len(pts) < packets
                    else f"all {packets} frames carry the same timestamp", rate)
        order = [i / rate for i in range(packets)]
        return PacketIndex(order, [order[k] for k in key_order] or [0.0], Fraction(0), rate)
    pts.sort()
    keys.sort()
    base, tb = pts[0], stream.time_base
    return PacketIndex([float((p - base) * tb) for p in pts], [float((k - base) * tb) for k in keys], base * tb)


def _pick(times: list[float], target: float) -> int:
    """Index of the first frame at or after `target` (the last one if none)."""
    return min(bisect.bisect_left(times, target - 1e-6), len(times) - 1)


# Beyond this aspect ratio the frame's central square is cut before resizing (a 8192 x 2 frame
# would otherwise be resized to 256 x 1,048,576 for the sake of its central 256 x 256).
MAX_ASPECT_BEFORE_CROP = 4


def _to_square(frame: av.VideoFrame, canvas: int) -> np.ndarray:
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


SEEK_MODES = ("exact", "nonref", "keyframe")


def _wanted(index: PacketIndex, targets: list[float], seek: str) -> list[float]:
    """The frame times to take: exact, the first frame at or after each target; keyframe, the
    nearest keyframe; nonref, the targets themselves (the nearest decoded frame is chosen while
    decoding, since which frames are references shows only then)."""
    if seek == "keyframe":
        keys = index.keyframes
        nearest = [min(keys[max(0, i - 1):i + 1], key=lambda k: abs(k - t))
                   for t, i in ((t, bisect.bisect_left(keys, t)) for t in targets)]
        return nearest
    if seek == "nonref":
        return list(targets)
    return [index.times[_pick(index.times, t)] for t in targets]


def _targets(sampling: Sampling, index: PacketIndex, path) -> list[float]:
    """The sample times; bounded by the frames the stream holds: when its timestamps claim far more
    time than its frames fill (a jump of an hour between two frames, a flipped 10^9 s), each frame
    that a target falls on is sampled once instead of once per target (warned)."""
    if sampling.num_frames is not None:
        return sampling.targets(index.duration)
    count = max(1, math.ceil(index.duration * sampling.fps - 1e-9))
    if count <= 2 * len(index.times) + 16:
        return sampling.targets(index.duration)
    times = np.asarray(index.times)
    reached = np.floor(times * sampling.fps + 1e-9)            # the last target at or before each frame
    hit = np.concatenate([[True], reached[1:] > reached[:-1]])
    log.warning("%s: its timestamps span %.0f s for %d frames (%d samples at %g fps); each frame a sample "
                "time falls on is taken once (%d)", path, index.duration, len(times), count, sampling.fps, hit.sum())
    return times[hit].tolist()


def decode_samples(path, sampling: Sampling, canvas: int, clip_frames: int = 0, clip_stride: int = 1,
                   force_linear: bool = False, seek: str = "exact", timeout: float | None = None) -> Iterator[Sample]:
    """Yield the sampled frames of one video in time order.

    clip_frames > 0 also gives each sample a snippet of `clip_frames` frames taken every
    `clip_stride` frames around it (edges repeat the first/last frame); snippets need a
    linear, exact decode. seek (SEEK_MODES): exact decodes every frame up to each target;
    nonref lets the decoder skip non-reference frames and takes the nearest decoded frame;
    keyframe decodes keyframes only and takes the nearest keyframe. A sample's timestamp is the
    time of the frame actually taken. timeout: seconds for the whole video (DecodeError after).
    """
    if seek not in SEEK_MODES:
        raise ValueError(f"seek must be one of {SEEK_MODES}, not {seek!r}")
    if clip_frames and seek != "exact":
        raise ValueError("snippets (SlowFast) need every frame: use --seek exact")
    deadline = Deadline(timeout)
    container = _open(path)
    try:
        index = index_packets(container, video_stream(container), deadline)
    finally:
        container.close()
    wanted = _wanted(index, _targets(sampling, index, path), seek)
    container = _open(path)      # a fresh demuxer: rewinding after the index pass is not portable
    try:
        stream = video_stream(container)
        if seek != "exact":
            stream.codec_context.skip_frame = "NONKEY" if seek == "keyframe" else "NONREF"
        decoded_times = index.keyframes if seek == "keyframe" else index.times
        linear = clip_frames or force_linear or index.rate is not None or _linear_is_cheaper(index, wanted, decoded_times)
        if linear and seek == "nonref":
            yield from _linear_nearest(container, stream, index, wanted, canvas, deadline)
        elif linear:
            yield from _linear(container, stream, index, wanted, canvas, clip_frames, clip_stride, deadline)
        else:
            yield from _seeking(container, stream, index, wanted, canvas, seek == "nonref", deadline)
    except av.error.FFmpegError as err:
        raise DecodeError(f"decode error ({err.strerror or err.__class__.__name__})") from None
    finally:
        container.close()


def _linear_is_cheaper(index: PacketIndex, wanted: list[float], decoded: list[float]) -> bool:
    """Frames decoded going straight through vs seeking to each wanted frame's keyframe; `decoded`
    are the times of the frames the decoder decodes (every frame, or the keyframes alone)."""
    linear_cost = bisect.bisect_left(decoded, max(wanted) - 1e-6) + 1
    seek_cost = 0
    for time in sorted(set(wanted)):
        key = index.keyframes[max(0, bisect.bisect_right(index.keyframes, time + 1e-6) - 1)]
        seek_cost += bisect.bisect_left(decoded, time - 1e-6) - bisect.bisect_left(decoded, key - 1e-6)
        seek_cost += 1 + SEEK_OVERHEAD_FRAMES
    return linear_cost <= seek_cost


def _frames(container, stream, index: PacketIndex, deadline: Deadline):
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
    for position, (time, frame) in enumerate(_frames(container, stream, index, deadline)):
        due = next_wanted < len(wanted) and time >= wanted[next_wanted] - 1e-6
        if due or clip_frames:
            square = _to_square(frame, canvas)
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
            square = _to_square(frame, canvas)
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
            squares[item[0]] = _to_square(item[1], canvas)
        return squares[item[0]]

    for time, frame in _frames(container, stream, index, deadline):
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
        for time, frame in _frames(container, stream, index, deadline):
            if time >= target - 1e-6:
                near_previous = nearest and previous is not None and target - previous[0] < time - target
                chosen = previous if near_previous else (time, frame)
                break
            previous = (time, frame)
        chosen = chosen or (previous if nearest else None)
        if chosen is None:
            raise DecodeError(f"could not decode the frame at {target:.3f}s")
        square = _to_square(chosen[1], canvas)
        for _ in range(wanted.count(target)):
            yield Sample(chosen[0], square)
