"""Synthetic feature caches with a known answer, written through the real cache schema.

Used by the tests (the quality bars of the issues) and by bench/. The features are not
from any network; each set is priced like the backbone it stands in for (`gflops`).
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.shards import FeatureIndex, VideoFeatures


@dataclass
class SyntheticCache:
    manifest: Path
    cache: Path
    informative: dict[str, np.ndarray]      # video_id -> bool per frame: the frame holds class evidence


def _attrs(name: str, dim: int, gflops: float, fps: float) -> dict:
    return {"schema_version": 1, "feature_set": name, "backbone": "synthetic", "input_size": 0, "grid": 0,
            "patch_size": 0, "weights": "synthetic", "fps": fps, "gflops_per_frame": gflops, "feature_dim": dim,
            "output": "pooled"}


def write_sets(cache: Path, sets: dict[str, tuple[int, float]], videos: dict[str, dict[str, np.ndarray]],
               timestamps: dict[str, np.ndarray], shard_videos: int = 256) -> None:
    """Write feature sets {name: (dim, gflops)} for videos {video_id: {name: [T, D]}}."""
    for name, (dim, gflops) in sets.items():
        index = FeatureIndex.open(Path(cache) / name, _attrs(name, dim, gflops, 1.0))
        ids = list(videos)
        for start in range(0, len(ids), shard_videos):
            chunk = ids[start:start + shard_videos]
            index.write_shard(0, [VideoFeatures(v, timestamps[v], videos[v][name]) for v in chunk])
        index.complete = True
        index.save()


def write_manifest(path: Path, rows: list[tuple[str, str, str]]) -> Path:
    """rows: (video_id, label, split); paths point nowhere (phase two never opens videos)."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["video_id", "path", "labels", "split"])
        writer.writerows((v, f"videos/{v}.mp4", label, split) for v, label, split in rows)
    return path


def liteeval_cache(root: Path, num_train: int = 400, num_val: int = 200, num_classes: int = 5,
                   frames: tuple[int, int] = (12, 24), informative: tuple[int, int] = (1, 3),
                   coarse: tuple[str, int, float] = ("mobilenet_v2@112", 32, 0.0822),
                   fine: tuple[str, int, float] = ("resnet101@224", 64, 7.8014),
                   evidence: float = 3.0, marker: float = 3.0, seed: int = 0) -> SyntheticCache:
    """Class evidence only in the fine features of a few frames, which the coarse features mark.

    Every frame: coarse ~ N(0, I), fine ~ N(0, I). On 1-3 informative frames per video the
    coarse feature also carries a fixed marker direction (saying "look here", not the class)
    and the fine feature a class prototype. A model that reads every fine feature can classify;
    one that reads only coarse features cannot beat chance; one that reads the fine feature
    where the marker is can match the first at a fraction of the fine reads.
    """
    rng = np.random.default_rng(seed)
    (c_name, c_dim, c_gflops), (f_name, f_dim, f_gflops) = coarse, fine
    prototypes = rng.normal(size=(num_classes, f_dim))
    prototypes *= evidence / np.linalg.norm(prototypes, axis=1, keepdims=True)
    marker_direction = rng.normal(size=c_dim)
    marker_direction *= marker / np.linalg.norm(marker_direction)
    rows, videos, stamps, where = [], {}, {}, {}
    for i in range(num_train + num_val):
        video_id, label = f"vid{i:05d}", int(rng.integers(num_classes))
        T = int(rng.integers(frames[0], frames[1] + 1))
        marked = np.zeros(T, dtype=bool)
        marked[rng.choice(T, size=int(rng.integers(informative[0], informative[1] + 1)), replace=False)] = True
        c = rng.normal(size=(T, c_dim))
        f = rng.normal(size=(T, f_dim))
        c[marked] += marker_direction
        f[marked] += prototypes[label]
        videos[video_id] = {c_name: c.astype(np.float16), f_name: f.astype(np.float16)}
        stamps[video_id] = np.arange(T, dtype=np.float32)
        where[video_id] = marked
        rows.append((video_id, f"class{label}", "train" if i < num_train else "val"))
    root.mkdir(parents=True, exist_ok=True)
    cache = root / "cache"
    write_sets(cache, {c_name: (c_dim, c_gflops), f_name: (f_dim, f_gflops)}, videos, stamps)
    return SyntheticCache(write_manifest(root / "manifest.csv", rows), cache, where)
