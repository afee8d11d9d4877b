"""Phase two's view of the cache: feature sets by role, videos by split, batches by length.

Phase two knows phase one only through the cache schema (DESIGN.md): index.json and the
HDF5 shards of each feature set. Features stay in memory as float16, packed frame after
frame (`offsets`), and a batch is gathered by index: one gather per role, padded only to
the longest video of the batch, never to a global maximum.

Every read of a feature goes through `Batch.read*`, which records which frames of which
videos were touched. FLOP accounting charges exactly those reads, so a head cannot use
a fine feature without paying for it.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import torch

from pipeline.manifest import Manifest

log = logging.getLogger(__name__)


class CacheError(ValueError):
    """A cache that cannot be used as asked; the message says what to do."""


@dataclass
class FeatureSetInfo:
    name: str
    folder: Path
    attrs: dict
    frame_shape: tuple[int, ...]        # per frame: (D,), (G*G, D) or (C, H, W)
    gflops_per_frame: float             # for a grid: per patch
    complete: bool


def feature_set_info(cache: str | Path, name: str) -> FeatureSetInfo:
    folder = Path(cache) / name
    index_path = folder / "index.json"
    if not index_path.exists():
        present = sorted(p.parent.name for p in Path(cache).glob("*/index.json"))
        raise CacheError(f"{cache} has no feature set {name!r} (present: {', '.join(present) or 'none'}); "
                         f"extract it with: c2f extract --backbone {name} --out {cache} ...")
    index = json.loads(index_path.read_text(encoding="utf-8"))
    if index.get("schema_version") != 1:
        raise CacheError(f"{index_path}: schema version {index.get('schema_version')!r}, this c2f reads 1")
    if not index["shards"]:
        raise CacheError(f"{folder} holds no complete shard yet")
    attrs = index["attrs"]
    with h5py.File(folder / index["shards"][0]["file"], "r") as h5:
        frame_shape = tuple(int(s) for s in h5["features"].shape[1:])
    return FeatureSetInfo(name, folder, attrs, frame_shape, float(attrs["gflops_per_frame"]),
                          bool(index.get("complete")))


@dataclass
class VideoSet:
    """The videos of one split, with their features for each role ('coarse', 'fine', ...)."""
    video_ids: list[str]
    targets: torch.Tensor               # [V, C] float32 multi-hot
    offsets: torch.Tensor               # [V + 1] int64: frames of video i are rows offsets[i]:offsets[i+1]
    timestamps: np.ndarray              # [N] float32
    features: dict[str, torch.Tensor]   # role -> [N, ...] float16
    sets: dict[str, FeatureSetInfo]     # role -> feature set
    classes: list[str]
    skipped: dict[str, str] = field(default_factory=dict)   # video_id -> why it is not here

    @property
    def lengths(self) -> torch.Tensor:
        return self.offsets[1:] - self.offsets[:-1]

    def __len__(self) -> int:
        return len(self.video_ids)


def _read_set(info: FeatureSetInfo, wanted: set[str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """video_id -> (timestamps, features) for the wanted videos present in the set."""
    index = json.loads((info.folder / "index.json").read_text(encoding="utf-8"))
    out = {}
    for shard in index["shards"]:
        if wanted.isdisjoint(shard["videos"]):
            continue
        with h5py.File(info.folder / shard["file"], "r") as h5:
            ids = h5["video_ids"].asstr()[:]
            offsets = h5["offsets"][:]
            timestamps = h5["timestamps"][:]
            features = h5["features"]
            for i, video_id in enumerate(ids):
                if video_id in wanted:
                    rows = slice(int(offsets[i]), int(offsets[i + 1]))
                    out[video_id] = (timestamps[rows], features[rows])
    return out


def load_videos(manifest: Manifest, split: str, cache: str | Path, roles: dict[str, str],
                classes: list[str] | None = None) -> VideoSet:
    """Load a split's videos for each role (e.g. {'coarse': 'mobilenet_v2@112', 'fine': ...}).

    Videos absent from a feature set, or with non-finite features, are skipped and listed
    in `skipped`; sets whose timestamps disagree for a video are an error (they were not
    extracted with the same sampling, so pairing them frame by frame would be wrong).
    """
    entries = manifest.split(split)
    classes = classes if classes is not None else manifest.classes()
    sets = {role: feature_set_info(cache, name) for role, name in roles.items()}
    wanted = {e.video_id for e in entries}
    per_role = {role: _read_set(info, wanted) for role, info in sets.items()}
    failed = {}
    for info in sets.values():
        index = json.loads((info.folder / "index.json").read_text(encoding="utf-8"))
        failed.update({v: f"extraction failed: {why}" for v, why in index.get("failed", {}).items() if v in wanted})

    skipped: dict[str, str] = {}
    mismatched: list[str] = []
    kept, stamps, arrays = [], [], {role: [] for role in roles}
    for entry in entries:
        vid = entry.video_id
        missing = [sets[r].name for r in roles if vid not in per_role[r]]
        if missing:
            skipped[vid] = failed.get(vid, f"not in the cache ({', '.join(missing)})")
            continue
        first_role = next(iter(roles))
        times = per_role[first_role][vid][0]
        if any(len(per_role[r][vid][0]) != len(times) or not np.allclose(per_role[r][vid][0], times, atol=1e-4)
               for r in roles):
            mismatched.append(vid)
            continue
        if len(times) == 0:
            skipped[vid] = "no frames"
            continue
        if not all(np.isfinite(per_role[r][vid][1]).all() for r in roles):
            skipped[vid] = "non-finite values (NaN or inf) in its features"
            continue
        kept.append(entry)
        stamps.append(times)
        for role in roles:
            arrays[role].append(per_role[role][vid][1])
    if mismatched:
        names = " and ".join(f"{r} {sets[r].name}" for r in roles)
        raise CacheError(f"{names} have different timestamps for {len(mismatched)} {split} videos "
                         f"(first: {', '.join(mismatched[:5])}); extract them in one pass with the same sampling")

    class_index = {name: i for i, name in enumerate(classes)}
    targets = torch.zeros(len(kept), len(classes))
    for row, entry in enumerate(kept):
        for label in entry.labels:
            targets[row, class_index[label]] = 1.0
    lengths = [len(t) for t in stamps]
    offsets = torch.zeros(len(kept) + 1, dtype=torch.int64)
    offsets[1:] = torch.cumsum(torch.tensor(lengths, dtype=torch.int64), 0)
    features = {}
    for role, info in sets.items():
        if arrays[role]:
            features[role] = torch.from_numpy(np.concatenate(arrays[role]).astype(np.float16, copy=False))
        else:
            features[role] = torch.zeros((0, *info.frame_shape), dtype=torch.float16)
    return VideoSet([e.video_id for e in kept], targets, offsets,
                    np.concatenate(stamps) if stamps else np.zeros(0, np.float32), features, sets, classes, skipped)


class Batch:
    """A batch of videos; every feature read is recorded in `reads[role]` ([B, T_max] bool)."""

    def __init__(self, videos: VideoSet, index: torch.Tensor, device: str | torch.device = "cpu"):
        self.videos, self.index, self.device = videos, index, torch.device(device)
        self.starts = videos.offsets[index]
        self.lengths = videos.offsets[index + 1] - self.starts
        self.max_length = int(self.lengths.max())
        positions = torch.arange(self.max_length)
        self.mask = (positions[None, :] < self.lengths[:, None]).to(self.device)           # [B, T]
        self.targets = videos.targets[index].to(self.device)
        self.reads = {role: torch.zeros(len(index), self.max_length, dtype=torch.bool) for role in videos.features}

    def __len__(self) -> int:
        return len(self.index)

    def _gather(self, role: str, rows: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        rows, positions = rows.cpu(), positions.cpu()
        if role not in self.videos.features:
            raise KeyError(f"this head reads {role!r} features, which were not loaded")
        if bool((positions >= self.lengths[rows]).any()) or bool((positions < 0).any()):
            raise IndexError("read past the end of a video")
        self.reads[role][rows, positions] = True
        return self.videos.features[role][self.starts[rows] + positions].to(self.device).float()

    def read(self, role: str, rows: torch.Tensor, positions: torch.Tensor | int) -> torch.Tensor:
        """Features of frame positions[k] of video rows[k]: [k, ...]."""
        if isinstance(positions, int):
            positions = torch.full_like(rows, positions)
        return self._gather(role, rows, positions)

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


def uniform_positions(lengths: torch.Tensor, frames: int) -> torch.Tensor:
    """The centres of `frames` equal segments of each video: [B, frames] (repeats when a video is shorter)."""
    centres = (torch.arange(frames, dtype=torch.float64) + 0.5) / frames
    return torch.minimum((centres[None, :] * lengths[:, None]).long(), lengths[:, None] - 1)


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
