"""The feature cache (DESIGN.md, schema version 1): one module owns its writer, its index and
its reader, so phase one, phase two and the tools agree on what is on disk.

    CACHE/FEATURE_SET/index.json            the set's attributes, complete shards, failed videos
    CACHE/FEATURE_SET/shard-RRRR-NNNNN.h5   video_ids, offsets, timestamps, features (+ attributes)

Writing: a shard is written under `NAME.tmp`, flushed and renamed when complete; index.json is
rewritten through a temporary file and os.replace, so a reader (or a resumed run) only ever sees
complete shards and a consistent index. Several ranks (torchrun) share one index.json: each save
merges the rank's shards into what is on disk, under a lock.

Reading: `FeatureIndex.load` parses index.json once into a typed description (attributes, kind,
shards, failures); `locate` opens each wanted shard once for its ids, offsets and timestamps and
the byte offset of its contiguous `features` dataset, from which features are then read (whole
into memory, or lazily through a memory map: `ShardFeatures`).
"""
from __future__ import annotations

import csv
import fcntl
import json
import logging
import os
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import h5py
import numpy as np
import torch

from .files import (DiskFullError, append_csv, atomic_write, atomic_write_text, disk_full, error_line, locked,
                    require_space)

log = logging.getLogger(__name__)
SCHEMA_VERSION = 1
KINDS = ("pooled", "map", "grid", "clip")
# attributes caches written before they existed lack; what those caches did
LEGACY_ATTRS = {"preprocess": "full", "seek": "exact"}
UNRECORDED_BEFORE = ("canvas", "precision", "channels_last")       # unknown for an older cache: not compared


def attr(attrs: dict, key: str):
    """A shard attribute, with its legacy meaning where an older cache lacks it."""
    return attrs.get(key, LEGACY_ATTRS.get(key))


class CacheError(ValueError):
    """A cache that cannot be used as asked; the message says what to do."""


class IndexDamaged(CacheError):
    """An index.json that cannot be read as DESIGN.md lays it out; the shards can rebuild it."""


SHARD_NAME = re.compile(r"shard-(\d{4})-(\d{5})\.h5")
REPAIR = "rerun the c2f extract command that made the cache: it re-extracts broken or missing shards"


def shard_attrs(feature_set: str, backbone: str, input_size: int, output: str, weights: str, gflops: float,
                feature_dim: int, sampling: dict, grid: int = 0, patch_size: int = 0, **extra) -> dict:
    """The attributes every shard of a set carries (and index.json repeats): DESIGN.md's list,
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
        differing = sorted(k for k in set(attrs) | set(self.attrs) if str(attrs.get(k)) != str(self.attrs.get(k)))
        return f"its attributes differ from the set's ({', '.join(differing)})" if differing else None


def _open_shard(path: Path) -> tuple[ShardLayout | None, str | None]:
    """(the shard's layout, None), or (None, why it cannot be used: missing, or what HDF5 says)."""
    if not path.exists():
        return None, "is missing"
    try:
        layout = ShardLayout.read(path)
        layout.features(path)
    except Exception as err:  # noqa: BLE001 - whatever HDF5 says of a damaged file
        return None, f"cannot be read ({error_line(err)})"
    return layout, None


def _shard_problem(folder: Path, listed: dict, attrs: dict) -> str | None:
    """The cheap check of one listed shard: it exists, opens, and agrees with the index; or what is wrong."""
    layout, why = _open_shard(folder / listed["file"])
    return why or layout.problem(listed, attrs)


@dataclass
class FeatureIndex:
    """CACHE/FEATURE_SET/index.json: the attributes, the complete shards, the failed videos."""
    folder: Path
    attrs: dict
    shards: list[dict] = field(default_factory=list)   # {"file", "rank", "number", "videos", "num_frames"}
    failed: dict[str, str] = field(default_factory=dict)
    complete: bool = False

    @property
    def path(self) -> Path:
        return self.folder / "index.json"

    @property
    def name(self) -> str:
        return self.attrs.get("feature_set", self.folder.name)

    @property
    def gflops_per_frame(self) -> float:
        """Counted GMACs per frame (for a grid: per patch)."""
        return float(self.attrs["gflops_per_frame"])

    @cached_property
    def frame_shape(self) -> tuple[int, ...]:
        """Per frame: (D,), (G*G, D), (C, H, W); from the first shard, read once."""
        if not self.shards:
            raise CacheError(f"{self.folder} holds no complete shard yet")
        with h5py.File(self.folder / self.shards[0]["file"], "r") as h5:
            return tuple(int(s) for s in h5["features"].shape[1:])

    @property
    def kind(self) -> str:
        """pooled, map, grid or clip: phase one's `output` attribute; for caches written without
        it, a grid > 0 is a grid and a per-frame shape of rank 3 a map."""
        if self.attrs.get("output") in KINDS:
            return self.attrs["output"]
        if self.attrs.get("grid"):
            return "grid"
        return {1: "pooled", 3: "map"}.get(len(self.frame_shape), "other")

    # -------------------------------------------------------------- opening

    @classmethod
    def load(cls, folder: str | Path) -> "FeatureIndex":
        """Read an existing set's index.json (to read the set)."""
        folder = Path(folder)
        data = _read_index_json(folder / "index.json")
        return cls(folder, data["attrs"], list(data["shards"]), dict(data.get("failed", {})),
                   bool(data.get("complete", False)))

    @classmethod
    def open(cls, folder: Path, attrs: dict, remove_stale: bool = True) -> "FeatureIndex":
        """Load the index to extract into, or start one. Refuses a folder made with other settings.

        `remove_stale`: delete the temporary shards a crash left. Only the process holding the
        cache lock may, before any rank of its run starts writing.
        """
        folder.mkdir(parents=True, exist_ok=True)
        if remove_stale:
            for stale in folder.glob("shard-*.h5.tmp"):
                stale.unlink()
        if not (folder / "index.json").exists() and not any(folder.glob("shard-*.h5")):
            return cls(folder, attrs)
        try:
            found = cls.load(folder)
        except (IndexDamaged, FileNotFoundError) as err:
            log.warning("%s; rebuilding it from the shards", err)
            found = cls.rebuild(folder)
        differing = {k: (attr(found.attrs, k), v) for k, v in attrs.items()
                     if attr(found.attrs, k) != v and not (k in UNRECORDED_BEFORE and k not in found.attrs)}
        if differing:
            changes = ", ".join(f"{k}: cache has {old!r}, asked {new!r}" for k, (old, new) in differing.items())
            raise ValueError(f"{folder} was extracted with other settings ({changes}); use another --out")
        # new shards take the cache's own attributes (an older cache's, without the newer keys, stay
        # alike across its shards); only shards that pass the cheap check count: a missing, truncated
        # or mislisted shard is set aside and its videos are extracted again, never half-trusted
        found.shards = [s for s in found.shards if found._keep(s)]
        return found

    def _keep(self, listed: dict) -> bool:
        problem = _shard_problem(self.folder, listed, self.attrs)
        if problem is None:
            return True
        log.warning("%s: %s; its %d videos will be extracted again", self.folder / listed["file"], problem,
                    len(listed["videos"]))
        if (self.folder / listed["file"]).exists():
            _set_aside(self.folder / listed["file"])
        return False

    @classmethod
    def rebuild(cls, folder: Path) -> "FeatureIndex":
        """index.json from the shards alone, which carry every attribute (DESIGN.md); a damaged index is
        kept aside as index.json.damaged, unreadable shards as *.broken. The failed videos come back
        from the cache's errors.csv; `complete` is left to the next extraction to judge."""
        folder = Path(folder)
        if (folder / "index.json").exists():
            _set_aside(folder / "index.json", ".damaged")
        shards, attrs = [], None
        for path in sorted(folder.glob("shard-*.h5")):
            match = SHARD_NAME.fullmatch(path.name)
            if not match:
                continue
            layout, why = _open_shard(path)
            if why:
                log.warning("%s %s: set aside", path, why)
                _set_aside(path)
                continue
            listed = {"file": path.name, "rank": int(match[1]), "number": int(match[2]), "videos": layout.video_ids,
                      "num_frames": int(layout.offsets[-1]) if len(layout.offsets) else 0}
            attrs = layout.attrs if attrs is None else attrs
            problem = layout.problem(listed, attrs)
            if problem:
                log.warning("%s: %s: set aside", path, problem)
                _set_aside(path)
                continue
            shards.append(listed)
        if attrs is None:
            raise CacheError(f"{folder}: no readable shard to rebuild index.json from; extract the set again")
        index = cls(folder, attrs, shards, _failed_from_errors_csv(folder.parent, {v for s in shards for v in s["videos"]}))
        index.save()
        return index

    def verify(self) -> list[str]:
        """Every problem of the set: shards that are missing, unreadable or disagree with index.json
        (ids, offsets, frame counts, attributes), and videos listed twice."""
        problems = [f"{s['file']}: {p}" for s in self.shards if (p := _shard_problem(self.folder, s, self.attrs))]
        counts = Counter(v for s in self.shards for v in s["videos"])
        twice = sorted(v for v, n in counts.items() if n > 1)
        return problems + ([f"videos listed in more than one shard: {', '.join(twice[:5])}"] if twice else [])

    # -------------------------------------------------------------- writing

    def done_videos(self) -> set[str]:
        return {v for s in self.shards for v in s["videos"]}

    def next_shard_number(self, rank: int) -> int:
        numbers = [s["number"] for s in self.shards if s["rank"] == rank]
        taken = {int(p.name.split("-")[2].split(".")[0]) for p in self.folder.glob(f"shard-{rank:04d}-*.h5*")}
        return max(numbers + list(taken) + [-1]) + 1

    def save(self) -> None:
        """Merge this process's shards and failures into index.json (other ranks write theirs too)."""
        with locked(self.folder / ".index.lock"):
            if self.path.exists():
                on_disk = _read_index_json(self.path)
                shards = {s["file"]: s for s in on_disk["shards"] if (self.folder / s["file"]).exists()}
                failed = {**on_disk.get("failed", {}), **self.failed}
            else:
                shards, failed = {}, dict(self.failed)
            shards.update({s["file"]: s for s in self.shards})
            self.shards = sorted(shards.values(), key=lambda s: (s["rank"], s["number"]))
            done = self.done_videos()
            self.failed = {video: why for video, why in failed.items() if video not in done}
            payload = {"schema_version": SCHEMA_VERSION, "feature_set": self.attrs["feature_set"],
                       "attrs": self.attrs, "complete": self.complete,
                       "num_videos": sum(len(s["videos"]) for s in self.shards),
                       "num_frames": sum(s["num_frames"] for s in self.shards), "shards": self.shards,
                       "failed": self.failed}
            atomic_write_text(self.path, json.dumps(payload, indent=1))

    def write_shard(self, rank: int, videos: list[VideoFeatures]) -> dict:
        """Write one complete shard (tmp name, flushed, then renamed) and record it in the index."""
        number = self.next_shard_number(rank)
        name = f"shard-{rank:04d}-{number:05d}.h5"
        offsets = np.zeros(len(videos) + 1, dtype=np.int64)
        offsets[1:] = np.cumsum([len(v.timestamps) for v in videos])

        features = np.concatenate([v.features for v in videos]).astype(np.float16)
        require_space(self.folder, features.nbytes + 16 * int(offsets[-1]) + 256 * len(videos), f"shard {name}")

        def write(tmp: Path) -> None:
            h5 = h5py.File(tmp, "w")
            try:
                h5.create_dataset("video_ids", data=[v.video_id for v in videos], dtype=h5py.string_dtype("utf-8"))
                h5.create_dataset("offsets", data=offsets)
                h5.create_dataset("timestamps", data=np.concatenate([v.timestamps for v in videos]).astype(np.float32))
                h5.create_dataset("features", data=features)
                for key, value in self.attrs.items():
                    h5.attrs[key] = value
                h5.flush()
            finally:
                h5.close()
            # h5py can swallow an error on close: read the file back before it may take its name
            layout = ShardLayout.read(tmp)
            if layout.video_ids != [v.video_id for v in videos] or layout.features_shape != features.shape:
                raise OSError(f"{tmp} did not read back as written")

        try:
            atomic_write(self.folder / name, write)
        except OSError as err:
            if disk_full(err):
                raise DiskFullError(f"{self.folder}: the disk is full ({err.strerror or err}); nothing half-written "
                                    "was kept: free some space and run the same command again: it resumes") from None
            raise
        entry = {"file": name, "rank": rank, "number": number, "videos": [v.video_id for v in videos],
                 "num_frames": int(offsets[-1])}
        self.shards.append(entry)
        return entry

    # -------------------------------------------------------------- reading

    def locate(self, wanted: set[str]) -> tuple[dict[str, Located], dict[str, ShardLayout]]:
        """Where each wanted video's frames are, and the layout of the shards holding them
        (each shard opened once; no features read)."""
        found, layouts = {}, {}
        for shard in self.shards:
            if wanted.isdisjoint(shard["videos"]):
                continue
            layout = layouts[shard["file"]] = self._layout(shard["file"])
            for i, video_id in enumerate(layout.video_ids):
                if video_id in wanted:
                    start, stop = int(layout.offsets[i]), int(layout.offsets[i + 1])
                    found[video_id] = Located(shard["file"], start, layout.timestamps[start:stop])
        return found, layouts

    def _layout(self, name: str) -> ShardLayout:
        """A listed shard's layout; a missing or damaged one is a CacheError naming it and the repair."""
        path = self.folder / name
        layout, why = _open_shard(path)
        if why:
            raise CacheError(f"{path} {why}; {REPAIR} (c2f cache verify {self.folder.parent} lists them)")
        return layout

    def read_all(self) -> dict[str, VideoFeatures]:
        """Every video of the set (for tests and small caches)."""
        located, layouts = self.locate(self.done_videos())
        features = {name: layout.features(self.folder / name) for name, layout in layouts.items()}
        return {video_id: VideoFeatures(video_id, where.timestamps,
                                        np.array(features[where.shard][where.start:where.start + len(where.timestamps)]))
                for video_id, where in located.items()}


def read_feature_set(folder: str | Path) -> dict[str, VideoFeatures]:
    """Every video of the feature set in `folder`."""
    return FeatureIndex.load(folder).read_all()


def _read_index_json(path: Path) -> dict:
    """index.json's content, checked against DESIGN.md's layout; the errors name the file."""
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
        raise IndexDamaged(f"{path} does not follow DESIGN.md's index.json layout (schema_version 1, attrs, shards "
                           "with file, rank, number, videos, num_frames)")
    return data


def _set_aside(path: Path, suffix: str = ".broken") -> None:
    """Keep a damaged file for a look, out of the way of readers and writers."""
    aside = path.with_name(path.name + suffix)
    if aside.exists():
        aside = path.with_name(f"{path.name}{suffix}-{int(time.time())}")
    os.replace(path, aside)


def _failed_from_errors_csv(cache: Path, done: set[str]) -> dict[str, str]:
    errors = cache / "errors.csv"
    if not errors.exists():
        return {}
    with open(errors, newline="", encoding="utf-8", errors="replace") as handle:
        return {row[0]: row[2] for row in csv.reader(handle) if len(row) == 3 and row[0] not in done
                and row != ["video_id", "path", "reason"]}


class Cache:
    """A cache folder; each feature set's index is parsed once, when first asked for."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self._sets: dict[str, FeatureIndex] = {}

    def feature_set(self, name: str) -> FeatureIndex:
        if name not in self._sets:
            if not (self.folder / name / "index.json").exists():
                present = sorted(p.parent.name for p in self.folder.glob("*/index.json"))
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


# ------------------------------------------------------------------ reading features

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
        finite = [finite_rows(m) for m in self.maps]
        lengths = np.diff(self.offsets)
        return np.array([finite[s][a:a + n].all() for s, a, n in zip(self.video_shard, self.video_start, lengths)],
                        dtype=bool)


# ------------------------------------------------------------------ locks and errors.csv

class CacheLock:
    """An exclusive lock on a cache folder: a second run on the same folder refuses at once.

    A POSIX record lock (lockf), not flock: it belongs to this process alone, so forked
    DataLoader workers, which outlive a SIGKILLed parent by a few seconds, do not hold it
    and a rerun right after a crash is not refused.
    """

    def __init__(self, folder: Path, name: str = ".lock", what: str = "extraction"):
        self.path, self.what = Path(folder) / name, what
        self.handle = None

    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.handle = open(self.path, "a+")
        try:
            fcntl.lockf(self.handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self.handle.close()
            raise RuntimeError(f"{self.path.parent} is in use by another {self.what} (lock {self.path}); "
                               "wait for it to finish or use another --out") from None
        return self

    def __exit__(self, *exc):
        fcntl.lockf(self.handle, fcntl.LOCK_UN)
        self.handle.close()


def append_errors(cache: Path, rows: list[tuple[str, str, str]]) -> None:
    """CACHE/errors.csv: video_id, path, reason (one line per failed video)."""
    if not rows:
        return
    with locked(Path(cache) / ".errors.lock"):
        append_csv(Path(cache) / "errors.csv", ["video_id", "path", "reason"], rows)


# ------------------------------------------------------------------ `c2f cache verify | reindex`

def feature_set_folders(cache: Path) -> list[Path]:
    """The feature sets of a cache: folders holding an index.json or shards."""
    return sorted(p for p in Path(cache).iterdir() if p.is_dir() and
                  ((p / "index.json").exists() or any(p.glob("shard-*.h5"))))


def verify_cache(cache: Path) -> dict[str, list[str]]:
    """Set name -> its problems (empty when sound): index.json readable and as DESIGN.md lays it out,
    every shard opening and agreeing with it (ids, offsets, frame counts, attributes)."""
    report = {}
    for folder in feature_set_folders(cache):
        try:
            report[folder.name] = FeatureIndex.load(folder).verify()
        except (CacheError, FileNotFoundError) as err:
            report[folder.name] = [f"{err}; c2f cache reindex {cache} rebuilds it from the shards"]
    return report


def reindex_cache(cache: Path) -> dict[str, FeatureIndex]:
    """Rebuild every set's index.json from its shards (the old one kept aside), under the cache lock."""
    with CacheLock(Path(cache), what="c2f run"):
        return {folder.name: FeatureIndex.rebuild(folder) for folder in feature_set_folders(cache)}
