"""The cache schema (version 1), written down once: the shard attributes, a shard's layout (its
ids, offsets, timestamps and where its features are), and index.json's layout.

    CACHE/FEATURE_SET/index.json            the set's attributes, complete shards, failed videos
    CACHE/FEATURE_SET/shard-RRRR-NNNNN.h5   video_ids, offsets, timestamps, features (+ attributes)
"""
from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from ..core.errors import CacheError
from ..core.files import error_line

SCHEMA_VERSION = 1
KINDS = ("pooled", "map", "grid", "clip")
# attributes caches written before they existed lack; what those caches did
LEGACY_ATTRS = {"preprocess": "full", "seek": "exact"}
UNRECORDED_BEFORE = ("canvas", "precision", "channels_last")       # unknown for an older cache: not compared
# where the set's features came from, not what they are: never compared (a checkpoint moved elsewhere
# and given again by its new path is the same weights: its sha256 is the `weights` attribute; the
# batch size changes the last bits of a feature, not what it is)
PROVENANCE = ("weights_file", "batch_size")


def attr(attrs: dict, key: str):
    """A shard attribute, with its legacy meaning where an older cache lacks it."""
    return attrs.get(key, LEGACY_ATTRS.get(key))


class IndexDamaged(CacheError):
    """An index.json that cannot be read as the cache contract lays it out; the shards can rebuild it."""


SHARD_NAME = re.compile(r"shard-(\d{4})-(\d{5})\.h5")
REPAIR = "rerun the c2f extract command that made the cache: it re-extracts broken or missing shards"


def shard_attrs(feature_set: str, backbone: str, input_size: int, output: str, weights: str, gflops: float,
                feature_dim: int, sampling: dict, grid: int = 0, patch_size: int = 0, **extra) -> dict:
    """The attributes every shard of a set carries (and index.json repeats): the contract's list (docs/contracts/cache.md),
    `output` (the kind: pooled, map, grid or clip) and any further provenance in `extra`."""
    if output not in KINDS:
        raise ValueError(f"output must be one of {KINDS}, not {output!r}")
    return {"schema_version": SCHEMA_VERSION, "feature_set": feature_set, "backbone": backbone,
            "input_size": int(input_size), "grid": int(grid), "patch_size": int(patch_size), "weights": weights,
            "gflops_per_frame": round(float(gflops), 6), "feature_dim": int(feature_dim), "output": output,
            **sampling, **extra}


@dataclass
class VideoFeatures:
    video_id: str
    timestamps: np.ndarray      # [T] float32
    features: np.ndarray        # [T, ...] float16


@dataclass
class Located:
    """Where one video's frames are: its shard, first row, and timestamps."""
    shard: str
    start: int
    timestamps: np.ndarray


@dataclass
class ShardLayout:
    """One shard's ids, offsets and timestamps, and where its features are (read with one open)."""
    video_ids: list[str]
    offsets: np.ndarray
    timestamps: np.ndarray
    features_shape: tuple[int, ...]
    byte_offset: int | None         # of a contiguous float16 `features` dataset; None if chunked or another dtype
    attrs: dict = field(default_factory=dict)

    @classmethod
    def read(cls, path: Path) -> "ShardLayout":
        with h5py.File(path, "r") as h5:
            dataset = h5["features"]
            contiguous = dataset.chunks is None and dataset.dtype == np.float16
            attrs = {k: v.item() if hasattr(v, "item") else v for k, v in h5.attrs.items()}
            return cls(list(h5["video_ids"].asstr()[:]), h5["offsets"][:], h5["timestamps"][:],
                       tuple(int(s) for s in dataset.shape), dataset.id.get_offset() if contiguous else None, attrs)

    def features(self, path: Path):
        """The whole `features` dataset, as a memory map when it is contiguous (no copy)."""
        if self.byte_offset is not None:
            if path.stat().st_size < self.byte_offset + 2 * int(np.prod(self.features_shape)):
                raise OSError(f"{path} is shorter than its features (truncated)")
            return np.memmap(path, dtype=np.float16, mode="r", offset=self.byte_offset, shape=self.features_shape)
        with h5py.File(path, "r") as h5:
            return h5["features"][:].astype(np.float16)

    def problem(self, listed: dict, attrs: dict) -> str | None:
        """What disagrees with the index's entry for this shard and the set's attributes, or None."""
        frames = listed["num_frames"]
        if self.video_ids != list(listed["videos"]):
            return "its video ids are not index.json's"
        if len(self.offsets) != len(self.video_ids) + 1 or self.offsets[0] != 0 or (np.diff(self.offsets) < 0).any():
            return "its offsets are not increasing from 0, one per video"
        if not int(self.offsets[-1]) == len(self.timestamps) == self.features_shape[0] == frames:
            return f"it holds {self.features_shape[0]} frames where index.json lists {frames}"
        return attrs_difference(self.attrs, attrs)


def attrs_difference(shard: dict, expected: dict) -> str | None:
    """What a shard's attributes say that the set's do not, named: another feature set first (a shard
    of another set left in this folder), then each differing attribute with both values."""
    differing = sorted(k for k in set(expected) | set(shard)
                       if k not in PROVENANCE and str(expected.get(k)) != str(shard.get(k)))
    if not differing:
        return None
    values = ", ".join(f"{k} {shard.get(k)!r} where the set has {expected.get(k)!r}" for k in differing[:4])
    more = f" and {len(differing) - 4} more" if len(differing) > 4 else ""
    if "feature_set" in differing:
        return f"it holds another feature set ({values}{more})"
    return f"its attributes differ from the set's ({values}{more})"


def open_shard(path: Path) -> tuple[ShardLayout | None, str | None]:
    """(the shard's layout, None), or (None, why it cannot be used: missing, or what HDF5 says)."""
    if not path.exists():
        return None, "is missing"
    try:
        layout = ShardLayout.read(path)
        layout.features(path)
    except Exception as err:  # noqa: BLE001 - whatever HDF5 says of a damaged file
        return None, f"cannot be read ({error_line(err)})"
    return layout, None


def shard_problem(folder: Path, listed: dict, attrs: dict) -> str | None:
    """The cheap check of one listed shard: it exists, opens, and agrees with the index; or what is wrong."""
    layout, why = open_shard(folder / listed["file"])
    return why or layout.problem(listed, attrs)


def read_index_json(path: Path) -> dict:
    """index.json's content, checked against the contract's layout; the errors name the file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} not found") from None
    except (UnicodeDecodeError, ValueError) as err:
        raise IndexDamaged(f"{path} is damaged ({err.__class__.__name__}: {error_line(err)})") from None
    version = data.get("schema_version") if isinstance(data, dict) else None
    if isinstance(version, int) and version != SCHEMA_VERSION:
        raise CacheError(f"{path}: schema version {version}, this c2f reads {SCHEMA_VERSION}")
    shards = data.get("shards") if isinstance(data, dict) else None
    if version != SCHEMA_VERSION or not isinstance(data.get("attrs"), dict) or not isinstance(shards, list) \
            or not isinstance(data.get("failed", {}), dict) \
            or not all(isinstance(s, dict) and {"file", "rank", "number", "videos", "num_frames"} <= set(s)
                       and SHARD_NAME.fullmatch(str(s["file"])) for s in shards):
        raise IndexDamaged(f"{path} does not follow the index.json layout (schema_version 1, attrs, shards "
                           "with file, rank, number, videos, num_frames)")
    return data


def set_aside(path: Path, suffix: str = ".broken") -> None:
    """Keep a damaged file for a look, out of the way of readers and writers."""
    aside = path.with_name(path.name + suffix)
    if aside.exists():
        aside = path.with_name(f"{path.name}{suffix}-{int(time.time())}")
    os.replace(path, aside)


