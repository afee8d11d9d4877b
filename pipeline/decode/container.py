"""Opening a video safely and indexing its packets: a path that is not a regular file is refused
before it is opened (a FIFO or a device could block forever), the main video stream is chosen, and
a demux pass that reads no pixels gives every frame's time and the keyframes. Each video has a time
limit (`Deadline`), checked at every packet and frame."""
from __future__ import annotations

import logging
import os
import stat
from dataclasses import dataclass
from fractions import Fraction
from time import monotonic

import av
import numpy as np

log = logging.getLogger(__name__)

# A stream holding fewer frames than its header declares, or whose decoding stops before
# this fraction of it, is truncated (the last frame or two of some encodes never decode:
# past this fraction the last decoded frame stands in).
COMPLETE_ENOUGH = 0.95


class DecodeError(RuntimeError):
    """A video that cannot be decoded; the message is the one-line reason for errors.csv."""


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


FILE_KINDS = {stat.S_IFDIR: "a directory", stat.S_IFIFO: "a named pipe (FIFO)", stat.S_IFCHR: "a character device",
               stat.S_IFBLK: "a block device", stat.S_IFSOCK: "a socket"}


def open_video(path) -> av.container.InputContainer:
    """The container, refused up front unless `path` is a regular file: reading a FIFO or a device
    could block forever."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise DecodeError("file not found") from None
    except OSError as err:
        raise DecodeError(f"cannot be read ({err.strerror or err.__class__.__name__})") from None
    if not stat.S_ISREG(mode):
        raise DecodeError(f"not a regular file: {FILE_KINDS.get(stat.S_IFMT(mode), 'a special file')}")
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
    (a second stream is a thumbnail or a preview more often than not), FFmpeg's best on a tie.
    DecodeError when no video stream has a decoder: PyAV gives a stream whose codec FFmpeg does not
    know (a damaged header's codec tag, say) no codec context, and so no frame size."""
    decodable = [s for s in container.streams.video if s.codec_context is not None]
    if not decodable:
        raise DecodeError("video stream of an unknown codec (no decoder for it: a damaged header?)")
    best = container.streams.best("video")
    streams = [s for s in decodable if not s.disposition & av.stream.Disposition.attached_pic]
    area = lambda s: (s.codec_context.width or 0) * (s.codec_context.height or 0)  # noqa: E731
    return max(streams or decodable, key=lambda s: (area(s), s is best))


def stream_rate(stream) -> float:
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
        rate = stream_rate(stream)
        log.warning("%s: %s; timed by frame order at %g fps", container.name, "no timestamps" if len(pts) < packets
                    else f"all {packets} frames carry the same timestamp", rate)
        order = [i / rate for i in range(packets)]
        return PacketIndex(order, [order[k] for k in key_order] or [0.0], Fraction(0), rate)
    pts.sort()
    keys.sort()
    base, tb = pts[0], stream.time_base
    return PacketIndex([float((p - base) * tb) for p in pts], [float((k - base) * tb) for k in keys], base * tb)

