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
import os
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
    features: dict[str, "torch.Tensor | ShardFeatures"]   # role -> [N, ...] float16, packed
    sets: dict[str, FeatureSetInfo]     # role -> feature set
    classes: list[str]
    skipped: dict[str, str] = field(default_factory=dict)   # video_id -> why it is not here

    @property
    def lengths(self) -> torch.Tensor:
        return self.offsets[1:] - self.offsets[:-1]

    def __len__(self) -> int:
        return len(self.video_ids)


@dataclass
class _Located:
    shard: str
    start: int
    timestamps: np.ndarray


def _locate(info: FeatureSetInfo, wanted: set[str]) -> dict[str, _Located]:
    """Where each wanted video's frames are (shard, first row) and their timestamps; no features read."""
    index = json.loads((info.folder / "index.json").read_text(encoding="utf-8"))
    out = {}
    for shard in index["shards"]:
        if wanted.isdisjoint(shard["videos"]):
            continue
        with h5py.File(info.folder / shard["file"], "r") as h5:
            ids, offsets, timestamps = h5["video_ids"].asstr()[:], h5["offsets"][:], h5["timestamps"][:]
        for i, video_id in enumerate(ids):
            if video_id in wanted:
                out[video_id] = _Located(shard["file"], int(offsets[i]), timestamps[offsets[i]:offsets[i + 1]])
    return out


def _read_features(info: FeatureSetInfo, located: list[_Located], offsets: np.ndarray) -> np.ndarray:
    """The features of the located videos, packed in their order into one preallocated array
    (no second copy: a shard is read whole when most of it is wanted, else video by video)."""
    out = np.empty((int(offsets[-1]), *info.frame_shape), dtype=np.float16)
    by_shard: dict[str, list[int]] = {}
    for i, loc in enumerate(located):
        by_shard.setdefault(loc.shard, []).append(i)
    for shard, members in by_shard.items():
        with h5py.File(info.folder / shard, "r") as h5:
            dataset = h5["features"]
            wanted_rows = sum(int(offsets[i + 1] - offsets[i]) for i in members)
            whole = dataset[:] if wanted_rows * 2 >= len(dataset) else None
            for i in members:
                rows = slice(located[i].start, located[i].start + int(offsets[i + 1] - offsets[i]))
                out[offsets[i]:offsets[i + 1]] = whole[rows] if whole is not None else dataset[rows]
    return out


def _finite_rows(features, block: int = 4096) -> np.ndarray:
    """True for the rows whose every value is finite (in blocks of rows: no full-size temporary)."""
    finite = np.empty(len(features), dtype=bool)
    for start in range(0, len(features), block):
        chunk = np.asarray(features[start:start + block])
        finite[start:start + block] = np.isfinite(chunk.reshape(len(chunk), -1)).all(1)
    return finite


def _finite_per_video(features: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """True for the videos whose every value is finite."""
    if len(offsets) < 2:                # no video (every video has at least one frame)
        return np.ones(0, dtype=bool)
    return np.logical_and.reduceat(_finite_rows(features), offsets[:-1])


class ShardFeatures:
    """A feature set read lazily from its shards, for sets too large for memory (a patch grid is
    ~3 MB a video). Each shard's `features` dataset is contiguous (DESIGN.md's writer), so it is an
    np.memmap; a batch reads only the rows, and for a grid only the candidates, it asks for.
    Indexed like the packed in-memory tensor: [rows] or [rows, candidates]."""

    def __init__(self, info: FeatureSetInfo, located: list[_Located], offsets: np.ndarray):
        self.shape = (int(offsets[-1]), *info.frame_shape)
        files = sorted({loc.shard for loc in located})
        self.maps = []
        for name in files:
            with h5py.File(info.folder / name, "r") as h5:
                dataset = h5["features"]
                byte_offset = dataset.id.get_offset()
                if byte_offset is None or dataset.chunks is not None or dataset.dtype != np.float16:
                    raise CacheError(f"{info.folder / name}: features are not one contiguous float16 dataset, "
                                     "so they cannot be read lazily; rewrite the cache with c2f extract")
                self.maps.append(np.memmap(info.folder / name, dtype=np.float16, mode="r", offset=byte_offset,
                                           shape=dataset.shape))
        number = {name: i for i, name in enumerate(files)}
        self.video_shard = np.array([number[loc.shard] for loc in located], dtype=np.int64)
        self.video_start = np.array([loc.start for loc in located], dtype=np.int64)
        self.offsets = offsets

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key) -> torch.Tensor:
        rows, candidates = key if isinstance(key, tuple) else (key, None)
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        video = np.searchsorted(self.offsets, rows, side="right") - 1
        shard_rows = self.video_start[video] + rows - self.offsets[video]
        shard = self.video_shard[video]
        frame_shape = self.shape[2:] if candidates is not None else self.shape[1:]
        out = np.empty((len(rows), *frame_shape), dtype=np.float16)
        if candidates is not None:
            candidates = np.asarray(candidates, dtype=np.int64).reshape(-1)
        for s in np.unique(shard):
            pick = np.flatnonzero(shard == s)
            order = pick[np.argsort(shard_rows[pick], kind="stable")]     # ascending reads within a shard
            source = self.maps[s]
            out[order] = source[shard_rows[order]] if candidates is None else source[shard_rows[order], candidates[order]]
        return torch.from_numpy(out)

    def finite_per_video(self) -> np.ndarray:
        finite_rows = [_finite_rows(m) for m in self.maps]
        lengths = np.diff(self.offsets)
        return np.array([finite_rows[s][a:a + n].all() for s, a, n in zip(self.video_shard, self.video_start, lengths)],
                        dtype=bool)


IN_MEMORY_BYTES = int(float(os.environ.get("C2F_IN_MEMORY_GB", "4")) * 2**30)


def load_videos(manifest: Manifest, split: str, cache: str | Path, roles: dict[str, str],
                classes: list[str] | None = None, in_memory_bytes: int | None = None) -> VideoSet:
    """Load a split's videos for each role (e.g. {'coarse': 'mobilenet_v2@112', 'fine': ...}).

    A feature set of up to `in_memory_bytes` (env C2F_IN_MEMORY_GB, default 4) for the split
    is read into memory; a larger one (patch grids) is read lazily from its shards.

    Videos absent from a feature set, or with non-finite features, are skipped and listed
    in `skipped`; sets whose timestamps disagree for a video are an error (they were not
    extracted with the same sampling, so pairing them frame by frame would be wrong).
    """
    entries = manifest.split(split)
    classes = classes if classes is not None else manifest.classes()
    in_memory_bytes = IN_MEMORY_BYTES if in_memory_bytes is None else in_memory_bytes
    sets = {role: feature_set_info(cache, name) for role, name in roles.items()}
    wanted = {e.video_id for e in entries}
    located = {role: _locate(info, wanted) for role, info in sets.items()}
    failed = {}
    for info in sets.values():
        index = json.loads((info.folder / "index.json").read_text(encoding="utf-8"))
        failed.update({v: f"extraction failed: {why}" for v, why in index.get("failed", {}).items() if v in wanted})

    skipped: dict[str, str] = {}
    mismatched: list[str] = []
    kept = []
    first_role = next(iter(roles))
    for entry in entries:
        vid = entry.video_id
        missing = [sets[r].name for r in roles if vid not in located[r]]
        if missing:
            skipped[vid] = failed.get(vid, f"not in the cache ({', '.join(missing)})")
            continue
        times = located[first_role][vid].timestamps
        if any(len(located[r][vid].timestamps) != len(times)
               or not np.allclose(located[r][vid].timestamps, times, atol=1e-4) for r in roles):
            mismatched.append(vid)
        elif len(times) == 0:
            skipped[vid] = "no frames"
        else:
            kept.append(entry)
    if mismatched:
        names = " and ".join(f"{r} {sets[r].name}" for r in roles)
        raise CacheError(f"{names} have different timestamps for {len(mismatched)} {split} videos "
                         f"(first: {', '.join(mismatched[:5])}); extract them in one pass with the same sampling")

    def read(kept_entries):
        offsets = np.zeros(len(kept_entries) + 1, dtype=np.int64)
        offsets[1:] = np.cumsum([len(located[first_role][e.video_id].timestamps) for e in kept_entries])
        features = {}
        for role, info in sets.items():
            where = [located[role][e.video_id] for e in kept_entries]
            size = int(offsets[-1]) * int(np.prod(info.frame_shape)) * 2
            features[role] = (ShardFeatures(info, where, offsets) if size > in_memory_bytes
                              else torch.from_numpy(_read_features(info, where, offsets)))
        return offsets, features

    offsets, features = read(kept)
    finite = np.logical_and.reduce([f.finite_per_video() if isinstance(f, ShardFeatures)
                                    else _finite_per_video(f.numpy(), offsets) for f in features.values()])
    if not finite.all():                # rare: drop those videos and read again
        for entry in np.array(kept, dtype=object)[~finite]:
            skipped[entry.video_id] = "non-finite values (NaN or inf) in its features"
        kept = [e for e, ok in zip(kept, finite) if ok]
        offsets, features = read(kept)

    class_index = {name: i for i, name in enumerate(classes)}
    targets = torch.zeros(len(kept), len(classes))
    for row, entry in enumerate(kept):
        for label in entry.labels:
            targets[row, class_index[label]] = 1.0
    timestamps = (np.concatenate([located[first_role][e.video_id].timestamps for e in kept]) if kept
                  else np.zeros(0, np.float32))
    return VideoSet([e.video_id for e in kept], targets, torch.from_numpy(offsets), timestamps, features, sets,
                    classes, skipped)


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
        self.reads = {}
        for role, features in videos.features.items():
            per_frame = (features.shape[1],) if videos.sets[role].attrs.get("grid") else ()
            self.reads[role] = torch.zeros(len(index), self.max_length, *per_frame, dtype=torch.bool)

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
