"""HDF5 shards and index.json of one feature set (DESIGN.md, schema version 1).

A shard is written under `NAME.tmp` and renamed when complete; index.json is rewritten
through a temporary file and os.replace, so a reader (or a resumed run) only ever sees
complete shards and a consistent index. Several ranks (torchrun) share one index.json:
each save merges the rank's shards into what is on disk, under a lock.
"""
from __future__ import annotations

import csv
import fcntl
import json
import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

SCHEMA_VERSION = 1


def atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


@contextmanager
def locked(path: Path):
    """Hold an exclusive POSIX lock on `path` (waiting for it): ranks take turns."""
    with open(path, "a+") as handle:
        fcntl.lockf(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.lockf(handle, fcntl.LOCK_UN)


@dataclass
class VideoFeatures:
    video_id: str
    timestamps: np.ndarray      # [T] float32
    features: np.ndarray        # [T, ...] float16


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

    @classmethod
    def open(cls, folder: Path, attrs: dict, remove_stale: bool = True) -> "FeatureIndex":
        """Load the index, or start one. Refuses a folder made with other settings.

        `remove_stale`: delete the temporary shards a crash left. Only the process holding the
        cache lock may, before any rank of its run starts writing.
        """
        folder.mkdir(parents=True, exist_ok=True)
        if remove_stale:
            for stale in folder.glob("shard-*.h5.tmp"):
                stale.unlink()
        path = folder / "index.json"
        if not path.exists():
            return cls(folder, attrs)
        data = json.loads(path.read_text(encoding="utf-8"))
        differing = {k: (data["attrs"].get(k), v) for k, v in attrs.items() if data["attrs"].get(k) != v}
        if differing:
            changes = ", ".join(f"{k}: cache has {old!r}, asked {new!r}" for k, (old, new) in differing.items())
            raise ValueError(f"{folder} was extracted with other settings ({changes}); use another --out")
        # only shards whose file exists count: a shard renamed into place whose index update was
        # lost is redone, never half-trusted
        shards = [s for s in data["shards"] if (folder / s["file"]).exists()]
        return cls(folder, data["attrs"], shards, data.get("failed", {}), data.get("complete", False))

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
                on_disk = json.loads(self.path.read_text(encoding="utf-8"))
                shards = {s["file"]: s for s in on_disk["shards"] if (self.folder / s["file"]).exists()}
                failed = {**on_disk.get("failed", {}), **self.failed}
            else:
                shards, failed = {}, dict(self.failed)
            shards.update({s["file"]: s for s in self.shards})
            self.shards = sorted(shards.values(), key=lambda s: (s["rank"], s["number"]))
            done = self.done_videos()
            self.failed = {video: why for video, why in failed.items() if video not in done}
            self._write()

    def _write(self) -> None:
        payload = {"schema_version": SCHEMA_VERSION, "feature_set": self.attrs["feature_set"], "attrs": self.attrs,
                   "complete": self.complete, "num_videos": sum(len(s["videos"]) for s in self.shards),
                   "num_frames": sum(s["num_frames"] for s in self.shards), "shards": self.shards,
                   "failed": self.failed}
        atomic_write_text(self.path, json.dumps(payload, indent=1))

    def write_shard(self, rank: int, videos: list[VideoFeatures]) -> dict:
        """Write one complete shard (tmp name, then rename) and record it in the index."""
        number = self.next_shard_number(rank)
        name = f"shard-{rank:04d}-{number:05d}.h5"
        final, tmp = self.folder / name, self.folder / (name + ".tmp")
        offsets = np.zeros(len(videos) + 1, dtype=np.int64)
        offsets[1:] = np.cumsum([len(v.timestamps) for v in videos])
        with h5py.File(tmp, "w") as h5:
            h5.create_dataset("video_ids", data=[v.video_id for v in videos], dtype=h5py.string_dtype("utf-8"))
            h5.create_dataset("offsets", data=offsets)
            h5.create_dataset("timestamps", data=np.concatenate([v.timestamps for v in videos]).astype(np.float32))
            h5.create_dataset("features", data=np.concatenate([v.features for v in videos]).astype(np.float16))
            for key, value in self.attrs.items():
                h5.attrs[key] = value
        os.replace(tmp, final)
        entry = {"file": name, "rank": rank, "number": number, "videos": [v.video_id for v in videos],
                 "num_frames": int(offsets[-1])}
        self.shards.append(entry)
        return entry


class CacheLock:
    """An exclusive lock on a cache folder: a second run on the same folder refuses at once.

    A POSIX record lock (lockf), not flock: it belongs to this process alone, so forked
    DataLoader workers, which outlive a SIGKILLed parent by a few seconds, do not hold it
    and a rerun right after a crash is not refused.
    """

    def __init__(self, folder: Path, name: str = ".lock"):
        self.path = Path(folder) / name
        self.handle = None

    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.handle = open(self.path, "a+")
        try:
            fcntl.lockf(self.handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self.handle.close()
            raise RuntimeError(f"{self.path.parent} is in use by another extraction (lock {self.path}); "
                               "wait for it to finish or use another --out") from None
        return self

    def __exit__(self, *exc):
        fcntl.lockf(self.handle, fcntl.LOCK_UN)
        self.handle.close()


def append_errors(cache: Path, rows: list[tuple[str, str, str]]) -> None:
    """CACHE/errors.csv: video_id, path, reason (one line per failed video)."""
    if not rows:
        return
    path = Path(cache) / "errors.csv"
    with locked(Path(cache) / ".errors.lock"), open(path, "a", newline="", encoding="utf-8") as handle:
        new = handle.tell() == 0
        writer = csv.writer(handle)
        if new:
            writer.writerow(["video_id", "path", "reason"])
        writer.writerows(rows)
        handle.flush()
        os.fsync(handle.fileno())


def read_feature_set(folder: Path) -> dict[str, VideoFeatures]:
    """Every video of a feature set, from its index (for tests and small caches)."""
    index = json.loads((Path(folder) / "index.json").read_text(encoding="utf-8"))
    out = {}
    for shard in index["shards"]:
        with h5py.File(Path(folder) / shard["file"], "r") as h5:
            ids = h5["video_ids"].asstr()[:]
            offsets = h5["offsets"][:]
            timestamps = h5["timestamps"][:]
            features = h5["features"][:]
        for i, video_id in enumerate(ids):
            rows = slice(offsets[i], offsets[i + 1])
            out[video_id] = VideoFeatures(video_id, timestamps[rows], features[rows])
    return out
