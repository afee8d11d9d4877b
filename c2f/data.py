"""Phase two's view of features: feature sets by role, videos by split, batches by length.

Phase two knows phase one only through the cache schema, read by pipeline.cache. Features stay
in memory as float16, packed frame after frame (`offsets`), and a batch is gathered by index: one
gather per role, padded only to the longest video of the batch, never to a global maximum.

What a role's features are is a `FeatureSource`: the packed in-memory tensor, the cache's
memory-mapped `ShardFeatures`, or prediction's `ComputedFeatures` (computed on raw video when a
head reads them) all index the same way; what a set is, its `FeatureSetInfo`.

Every read of a feature goes through `Batch.read*`, which records which frames of which
videos were touched. FLOP accounting charges exactly those reads, so a head cannot use
a fine feature without paying for it.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import torch

from pipeline.cache import Cache, CacheError, FeatureIndex, ShardFeatures, finite_rows, read_packed
from pipeline.core.manifest import Manifest

log = logging.getLogger(__name__)


@runtime_checkable
class FeatureSource(Protocol):
    """One role's features of a set of videos, packed frame after frame: `source[rows]` gives the
    features of those rows ([k, ...] float), `source[rows, candidates]` one candidate patch of each
    row of a patch grid ([k, D]). `shape` is [frames, per-frame shape...]. A torch tensor is one."""
    shape: tuple
    dtype: object

    def __len__(self) -> int: ...

    def __getitem__(self, key) -> torch.Tensor: ...


class FeatureSetInfo(Protocol):
    """What a batch and the FLOP accounting need of a feature set (pipeline.cache.FeatureIndex is one)."""
    name: str
    attrs: dict
    kind: str                       # pooled, map, grid (or clip)
    gflops_per_frame: float         # counted GMACs per frame; for a grid, per patch


@dataclass
class VideoSet:
    """The videos of one split, with their features for each role ('coarse', 'fine', ...)."""
    video_ids: list[str]
    targets: torch.Tensor               # [V, C] float32 multi-hot
    offsets: torch.Tensor               # [V + 1] int64: frames of video i are rows offsets[i]:offsets[i+1]
    timestamps: np.ndarray              # [N] float32
    features: dict[str, FeatureSource]  # role -> [N, ...] float16, packed
    sets: dict[str, FeatureSetInfo]     # role -> feature set
    classes: list[str]
    skipped: dict[str, str] = field(default_factory=dict)   # video_id -> why it is not here

    @property
    def lengths(self) -> torch.Tensor:
        return self.offsets[1:] - self.offsets[:-1]

    def __len__(self) -> int:
        return len(self.video_ids)


IN_MEMORY_BYTES = int(float(os.environ.get("C2F_IN_MEMORY_GB", "4")) * 2**30)


def _finite_per_video(features, offsets: np.ndarray) -> np.ndarray:
    """True for the videos whose every value is finite."""
    if isinstance(features, ShardFeatures):
        return features.finite_per_video()
    if len(offsets) < 2:                # no video (every video has at least one frame)
        return np.ones(0, dtype=bool)
    return np.logical_and.reduceat(finite_rows(features.numpy()), offsets[:-1])


def _pair_videos(entries, sets: dict[str, FeatureIndex], located: dict, split: str) -> tuple[list, dict[str, str]]:
    """The entries present in every role's set with the same timestamps, and why the others are left out.
    Sets whose timestamps disagree for a video are an error (they were not extracted with the same
    sampling, so pairing them frame by frame would be wrong)."""
    failed = {v: f"extraction failed: {why}" for info in sets.values() for v, why in info.failed.items()}
    first_role = next(iter(sets))
    kept, skipped, mismatched = [], {}, []
    for entry in entries:
        vid = entry.video_id
        missing = [info.name for role, info in sets.items() if vid not in located[role]]
        if missing:
            skipped[vid] = failed.get(vid, f"not in the cache ({', '.join(missing)})")
            continue
        times = located[first_role][vid].timestamps
        if any(len(located[r][vid].timestamps) != len(times)
               or not np.allclose(located[r][vid].timestamps, times, atol=1e-4) for r in sets):
            mismatched.append(vid)
        elif len(times) == 0:
            skipped[vid] = "no frames"
        else:
            kept.append(entry)
    if mismatched:
        names = " and ".join(f"{r} {info.name}" for r, info in sets.items())
        raise CacheError(f"{names} have different timestamps for {len(mismatched)} {split} videos "
                         f"(first: {', '.join(mismatched[:5])}); extract them in one pass with the same sampling")
    return kept, skipped


def load_videos(manifest: Manifest, split: str, cache: "str | Path | Cache", roles: dict[str, str],
                classes: list[str] | None = None, in_memory_bytes: int | None = None,
                only: set[str] | None = None) -> VideoSet:
    """Load a split's videos (those of `only`, when given) for each role (e.g. {'coarse':
    'mobilenet_v2@112', 'fine': ...}).

    A feature set of up to `in_memory_bytes` (env C2F_IN_MEMORY_GB, default 4) for the split
    is read into memory; a larger one (patch grids) is read lazily from its shards. Videos absent
    from a feature set, or with non-finite features, are skipped and listed in `skipped`.
    """
    entries = [e for e in manifest.split(split) if only is None or e.video_id in only]
    classes = classes if classes is not None else manifest.classes()
    in_memory_bytes = IN_MEMORY_BYTES if in_memory_bytes is None else in_memory_bytes
    cache = cache if isinstance(cache, Cache) else Cache(cache)
    sets = {role: cache.feature_set(name) for role, name in roles.items()}
    wanted = {e.video_id for e in entries}
    found = {role: info.locate(wanted) for role, info in sets.items()}
    located = {role: where for role, (where, _) in found.items()}
    kept, skipped = _pair_videos(entries, sets, located, split)

    def read(kept_entries):
        offsets = np.zeros(len(kept_entries) + 1, dtype=np.int64)
        offsets[1:] = np.cumsum([len(located[next(iter(sets))][e.video_id].timestamps) for e in kept_entries])
        features = {}
        for role, info in sets.items():
            where, layouts = [located[role][e.video_id] for e in kept_entries], found[role][1]
            size = int(offsets[-1]) * int(np.prod(info.frame_shape)) * 2
            features[role] = (ShardFeatures(info, layouts, where, offsets) if size > in_memory_bytes
                              else torch.from_numpy(read_packed(info, layouts, where, offsets)))
        return offsets, features

    offsets, features = read(kept)
    finite = np.logical_and.reduce([_finite_per_video(f, offsets) for f in features.values()])
    if not finite.all():                # rare: drop those videos and read again
        for entry in np.array(kept, dtype=object)[~finite]:
            skipped[entry.video_id] = "non-finite values (NaN or inf) in its features"
        kept = [e for e, ok in zip(kept, finite) if ok]
        offsets, features = read(kept)
    return VideoSet([e.video_id for e in kept], _targets(kept, classes), torch.from_numpy(offsets),
                    _timestamps(kept, located[next(iter(sets))]), features, sets, classes, skipped)


def _targets(entries, classes: list[str]) -> torch.Tensor:
    class_index = {name: i for i, name in enumerate(classes)}
    targets = torch.zeros(len(entries), len(classes))
    for row, entry in enumerate(entries):
        for label in entry.labels:
            targets[row, class_index[label]] = 1.0
    return targets


def _timestamps(entries, located: dict) -> np.ndarray:
    if not entries:
        return np.zeros(0, np.float32)
    return np.concatenate([located[e.video_id].timestamps for e in entries])


class Batch:
    """A batch of videos. Every feature read is recorded in `reads[role]`: [B, T_max] bool, or for a
    patch grid [B, T_max, G*G] bool (one entry per candidate patch), so that the FLOPs charge each
    distinct frame (or patch) read once, and nothing that was not read."""

    def __init__(self, videos: VideoSet, index: torch.Tensor, device: str | torch.device = "cpu"):
        self.videos, self.index, self.device = videos, index, torch.device(device)
        self.starts = videos.offsets[index]
        self.lengths = videos.offsets[index + 1] - self.starts
        self.max_length = int(self.lengths.max())
        positions = torch.arange(self.max_length)
        self.mask = (positions[None, :] < self.lengths[:, None]).to(self.device)           # [B, T]
        self.targets = videos.targets[index].to(self.device)
        self.clear_reads()

    def clear_reads(self) -> None:
        """Forget the reads so far (a batch evaluated again, at another setting)."""
        self.reads = {}
        for role, features in self.videos.features.items():
            per_frame = (features.shape[1],) if self.videos.sets[role].kind == "grid" else ()
            self.reads[role] = torch.zeros(len(self.index), self.max_length, *per_frame, dtype=torch.bool)

    def __len__(self) -> int:
        return len(self.index)

    def read_gflops(self) -> torch.Tensor:
        """[B] float64: the GFLOPs of every feature (or patch) read so far, each distinct one once."""
        return sum(read.flatten(1).sum(1).double() * self.videos.sets[role].gflops_per_frame
                   for role, read in self.reads.items())

    def is_grid(self, role: str) -> bool:
        return self.reads[role].dim() == 3

    def _gather(self, role: str, rows: torch.Tensor, positions: torch.Tensor,
                candidates: torch.Tensor | None = None) -> torch.Tensor:
        rows, positions = rows.cpu(), positions.cpu()
        if role not in self.videos.features:
            raise KeyError(f"this head reads {role!r} features, which were not loaded")
        if bool((positions >= self.lengths[rows]).any()) or bool((positions < 0).any()):
            raise IndexError("read past the end of a video")
        frames = self.starts[rows] + positions
        if candidates is not None:          # one candidate patch per frame, nothing else of the grid
            candidates = candidates.cpu()
            self.reads[role][rows, positions, candidates] = True
            return self.videos.features[role][frames, candidates].to(self.device).float()
        self.reads[role][rows, positions] = True      # a whole grid read marks every candidate
        return self.videos.features[role][frames].to(self.device).float()

    def read(self, role: str, rows: torch.Tensor, positions: torch.Tensor | int,
             candidates: torch.Tensor | None = None) -> torch.Tensor:
        """Features of frame positions[k] of video rows[k] (of its candidate patch candidates[k]): [k, ...]."""
        if isinstance(positions, int):
            positions = torch.full_like(rows, positions)
        return self._gather(role, rows, positions, candidates)

    def read_frames(self, role: str, positions: torch.Tensor) -> torch.Tensor:
        """Features at positions [B, F] (every entry inside its video): [B, F, ...]."""
        B, F = positions.shape
        rows = torch.arange(B).repeat_interleave(F)
        return self._gather(role, rows, positions.reshape(-1).cpu()).reshape(B, F, *self.videos.features[role].shape[1:])

    def read_all(self, role: str) -> torch.Tensor:
        """Every frame, zero-padded to the longest video of the batch: [B, T_max, ...]."""
        mask = self.mask.cpu()
        rows, positions = mask.nonzero(as_tuple=True)
        out = torch.zeros(len(self), self.max_length, *self.videos.features[role].shape[1:], device=self.device)
        out[rows.to(self.device), positions.to(self.device)] = self._gather(role, rows, positions)
        return out


def segment_positions(lengths: torch.Tensor, frames: int, random: bool = False) -> torch.Tensor:
    """One frame in each of `frames` equal segments of each video: [B, frames]. The segment's
    centre, or (random=True, training) a uniformly random offset in it. A video with fewer
    frames than segments repeats frames."""
    offsets = torch.rand(len(lengths), frames, dtype=torch.float64) if random else torch.full((1, frames), 0.5,
                                                                                             dtype=torch.float64)
    where = (torch.arange(frames, dtype=torch.float64)[None, :] + offsets) / frames
    return torch.minimum((where * lengths[:, None]).long(), lengths[:, None] - 1)


def uniform_positions(lengths: torch.Tensor, frames: int) -> torch.Tensor:
    """The centres of `frames` equal segments of each video: [B, frames] (repeats when a video is shorter)."""
    return segment_positions(lengths, frames, random=False)


def length_batches(lengths: torch.Tensor, batch_size: int, shuffle: bool,
                   generator: torch.Generator | None = None) -> list[torch.Tensor]:
    """Batches of videos of similar length (less padding), in random order when shuffling."""
    if shuffle:
        order = torch.randperm(len(lengths), generator=generator)
        order = order[torch.argsort(lengths[order], stable=True)]
    else:
        order = torch.argsort(lengths, stable=True)
    batches = list(order.split(batch_size))
    if shuffle:
        batches = [batches[i] for i in torch.randperm(len(batches), generator=generator)]
    return batches
