"""Reading a cache: a folder's feature sets by name (each index parsed once), and their features
packed into one float16 array or read lazily through each shard's memory map (`ShardFeatures`)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..core.errors import CacheError
from .index import FeatureIndex
from .schema import IndexDamaged, Located, ShardLayout


class Cache:
    """A cache folder; each feature set's index is parsed once, when first asked for."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self._sets: dict[str, FeatureIndex] = {}

    def sets(self) -> list[str]:
        """The names of the feature sets in the folder (those with an index.json)."""
        return sorted(p.parent.name for p in self.folder.glob("*/index.json"))

    def feature_set(self, name: str) -> FeatureIndex:
        """One set's index, read once; CacheError (with the command that makes it) when it is not there."""
        if name not in self._sets:
            if not (self.folder / name / "index.json").exists():
                present = self.sets()
                raise CacheError(f"{self.folder} has no feature set {name!r} (present: {', '.join(present) or 'none'}); "
                                 f"extract it with: c2f extract --backbone {name} --out {self.folder} ...")
            try:
                index = FeatureIndex.load(self.folder / name)
            except IndexDamaged as err:
                raise CacheError(f"{err}; rebuild it from its shards with: c2f cache reindex {self.folder}") from None
            if not index.shards:
                raise CacheError(f"{index.folder} holds no complete shard yet")
            self._sets[name] = index
        return self._sets[name]


def open_cache(folder: str | Path) -> Cache:
    """A cache folder for reading (`c2f extract --out FOLDER`); CacheError when it is not one."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CacheError(f"{folder} is not a folder", "give the --out of a c2f extract")
    return Cache(folder)


def read_packed(index: FeatureIndex, layouts: dict[str, ShardLayout], located: list[Located],
                offsets: np.ndarray) -> np.ndarray:
    """The features of the located videos, packed in their order into one preallocated float16
    array (no second copy: rows are copied from each shard's memory map)."""
    out = np.empty((int(offsets[-1]), *index.frame_shape), dtype=np.float16)
    by_shard: dict[str, list[int]] = {}
    for i, where in enumerate(located):
        by_shard.setdefault(where.shard, []).append(i)
    for shard, members in by_shard.items():
        source = layouts[shard].features(index.folder / shard)
        for i in members:
            start = located[i].start
            out[offsets[i]:offsets[i + 1]] = source[start:start + int(offsets[i + 1] - offsets[i])]
    return out


def finite_rows(features, block: int = 4096) -> np.ndarray:
    """True for the rows whose every value is finite (in blocks of rows: no full-size temporary)."""
    finite = np.empty(len(features), dtype=bool)
    for start in range(0, len(features), block):
        chunk = np.asarray(features[start:start + block])
        finite[start:start + block] = np.isfinite(chunk.reshape(len(chunk), -1)).all(1)
    return finite


class ShardFeatures:
    """A feature set read lazily from its shards, for sets too large for memory (a patch grid is
    ~3 MB a video): each shard's contiguous `features` dataset is a memory map, and a batch reads
    only the rows, and for a grid only the candidates, it asks for. Indexed like the packed
    in-memory tensor: [rows] or [rows, candidates]."""

    def __init__(self, index: FeatureIndex, layouts: dict[str, ShardLayout], located: list[Located],
                 offsets: np.ndarray):
        self.shape = (int(offsets[-1]), *index.frame_shape)
        self.dtype = np.float16
        files = sorted({where.shard for where in located})
        for name in files:
            if layouts[name].byte_offset is None:
                raise CacheError(f"{index.folder / name}: features are not one contiguous float16 dataset, "
                                 "so they cannot be read lazily; rewrite the cache with c2f extract")
        self.maps = [layouts[name].features(index.folder / name) for name in files]
        number = {name: i for i, name in enumerate(files)}
        self.video_shard = np.array([number[where.shard] for where in located], dtype=np.int64)
        self.video_start = np.array([where.start for where in located], dtype=np.int64)
        self.offsets = offsets

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key):
        import torch     # here: `c2f cache verify` reads no features and need not import torch
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
        finite = [finite_rows(m) for m in self.maps]
        lengths = np.diff(self.offsets)
        return np.array([finite[s][a:a + n].all() for s, a, n in zip(self.video_shard, self.video_start, lengths)],
                        dtype=bool)


