"""A feature set's index.json as an object: opened to extract into (resumed, refused when made with
other settings, damaged shards set aside), rebuilt from the shards, verified, written shard by
shard, and read.

Writing: a shard is written under `NAME.tmp`, flushed and renamed when complete; index.json is
rewritten through a temporary file and os.replace, so a reader (or a resumed run) only ever sees
complete shards and a consistent index. Several ranks (torchrun) share one index.json: each save
merges the rank's shards into what is on disk, under a lock."""
from __future__ import annotations

import csv
import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import h5py
import numpy as np

from ..core.errors import CacheError, DiskFullError
from ..core.files import atomic_write, atomic_write_text, disk_full, locked, require_space
from .schema import (KINDS, PROVENANCE, REPAIR, SCHEMA_VERSION, SHARD_NAME, UNRECORDED_BEFORE, IndexDamaged, Located,
                     ShardLayout, VideoFeatures, attr, attrs_difference, open_shard, read_index_json, set_aside,
                     shard_problem)

log = logging.getLogger(__name__)


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
        data = read_index_json(folder / "index.json")
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
        differing = {k: (attr(found.attrs, k), v) for k, v in attrs.items() if attr(found.attrs, k) != v
                     and k not in PROVENANCE and not (k in UNRECORDED_BEFORE and k not in found.attrs)}
        if differing:
            changes = ", ".join(f"{k}: cache has {old!r}, asked {new!r}" for k, (old, new) in differing.items())
            raise CacheError(f"{folder} was extracted with other settings ({changes}); use another --out")
        # new shards take the cache's own attributes (an older cache's, without the newer keys, stay
        # alike across its shards); only shards that pass the cheap check count: a missing, truncated
        # or mislisted shard is set aside and its videos are extracted again, never half-trusted
        found.shards = [s for s in found.shards if found._keep(s)]
        return found

    def _keep(self, listed: dict) -> bool:
        problem = shard_problem(self.folder, listed, self.attrs)
        if problem is None:
            return True
        log.warning("%s: %s; its %d videos will be extracted again", self.folder / listed["file"], problem,
                    len(listed["videos"]))
        if (self.folder / listed["file"]).exists():
            set_aside(self.folder / listed["file"])
        return False

    @classmethod
    def rebuild(cls, folder: Path) -> "FeatureIndex":
        """index.json from the shards alone, which carry every attribute; a damaged index is kept aside
        as index.json.damaged, unreadable shards and shards of another set as *.broken. The set's
        attributes are those of the shards naming this folder's set (else the most common). The failed
        videos come back from the cache's errors.csv; `complete` is left to the next extraction."""
        folder = Path(folder)
        if (folder / "index.json").exists():
            set_aside(folder / "index.json", ".damaged")
        readable = []
        for path in sorted(folder.glob("shard-*.h5")):
            match = SHARD_NAME.fullmatch(path.name)
            layout, why = open_shard(path) if match else (None, None)
            if why:
                log.warning("%s %s: set aside", path, why)
                set_aside(path)
            elif match:
                readable.append((path, match, layout))
        if not readable:
            raise CacheError(f"{folder}: no readable shard to rebuild index.json from; extract the set again")
        attrs = _the_sets_attrs(folder.name, [layout.attrs for _, _, layout in readable])
        shards = []
        for path, match, layout in readable:
            listed = {"file": path.name, "rank": int(match[1]), "number": int(match[2]), "videos": layout.video_ids,
                      "num_frames": int(layout.offsets[-1]) if len(layout.offsets) else 0}
            problem = layout.problem(listed, attrs)
            if problem:
                log.warning("%s: %s: set aside", path, problem)
                set_aside(path)
            else:
                shards.append(listed)
        index = cls(folder, attrs, shards, failed_from_errors_csv(folder.parent, {v for s in shards for v in s["videos"]}))
        index.save()
        return index

    def verify(self) -> list[str]:
        """Every problem of the set: shards that are missing, unreadable or disagree with index.json
        (ids, offsets, frame counts, attributes: a shard of another set is named as such), shard files
        index.json does not list, and videos listed twice."""
        problems = [f"{s['file']}: {p}" for s in self.shards if (p := shard_problem(self.folder, s, self.attrs))]
        listed = {s["file"] for s in self.shards}
        for path in sorted(self.folder.glob("shard-*.h5")):
            if path.name not in listed:
                layout, why = open_shard(path)
                holds = why or (attrs_difference(layout.attrs, self.attrs) or "its attributes are the set's")
                problems.append(f"{path.name}: not listed in index.json ({holds})")
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
                on_disk = read_index_json(self.path)
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
        """A listed shard's layout; a missing or damaged one, or one that disagrees with the index (another
        set's shard among this set's), is a CacheError naming it and the repair."""
        path = self.folder / name
        layout, why = open_shard(path)
        listed = next(s for s in self.shards if s["file"] == name)
        why = why or layout.problem(listed, self.attrs)
        if why:
            raise CacheError(f"{path}: {why}", f"{REPAIR} (c2f cache verify {self.folder.parent} lists such shards)")
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


def failed_from_errors_csv(cache: Path, done: set[str]) -> dict[str, str]:
    errors = cache / "errors.csv"
    if not errors.exists():
        return {}
    with open(errors, newline="", encoding="utf-8", errors="replace") as handle:
        return {row[0]: row[2] for row in csv.reader(handle) if len(row) == 3 and row[0] not in done
                and row != ["video_id", "path", "reason"]}




def _the_sets_attrs(name: str, found: list[dict]) -> dict:
    """The attributes of the set a folder holds, from its shards': those naming the folder's set (a
    shard of another set left there is the odd one out), else the most common."""
    own = [attrs for attrs in found if attrs.get("feature_set") == name] or found
    keyed = Counter(json.dumps({k: str(v) for k, v in attrs.items() if k not in PROVENANCE}, sort_keys=True)
                    for attrs in own)
    most = keyed.most_common(1)[0][0]
    return next(a for a in own if json.dumps({k: str(v) for k, v in a.items() if k not in PROVENANCE},
                                             sort_keys=True) == most)
