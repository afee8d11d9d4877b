"""Sampling: the sample times of a video (`fps` or `num_frames`), the frames that serve them in each
seek mode, and whether decoding straight through is cheaper than seeking to each sample."""
from __future__ import annotations

import bisect
import logging
import math
from dataclasses import dataclass

import numpy as np

from .container import PacketIndex

log = logging.getLogger(__name__)

# Seeking costs a flush and a demuxer reposition; count it as this many decoded frames.
SEEK_OVERHEAD_FRAMES = 4


SEEK_MODES = ("exact", "nonref", "keyframe")


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


def pick(times: list[float], target: float) -> int:
    """Index of the first frame at or after `target` (the last one if none)."""
    return min(bisect.bisect_left(times, target - 1e-6), len(times) - 1)


def wanted_times(index: PacketIndex, targets: list[float], seek: str) -> list[float]:
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
    return [index.times[pick(index.times, t)] for t in targets]


def sample_targets(sampling: Sampling, index: PacketIndex, path) -> list[float]:
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


def linear_is_cheaper(index: PacketIndex, wanted: list[float], decoded: list[float]) -> bool:
    """Frames decoded going straight through vs seeking to each wanted frame's keyframe; `decoded`
    are the times of the frames the decoder decodes (every frame, or the keyframes alone)."""
    linear_cost = bisect.bisect_left(decoded, max(wanted) - 1e-6) + 1
    seek_cost = 0
    for time in sorted(set(wanted)):
        key = index.keyframes[max(0, bisect.bisect_right(index.keyframes, time + 1e-6) - 1)]
        seek_cost += bisect.bisect_left(decoded, time - 1e-6) - bisect.bisect_left(decoded, key - 1e-6)
        seek_cost += 1 + SEEK_OVERHEAD_FRAMES
    return linear_cost <= seek_cost

