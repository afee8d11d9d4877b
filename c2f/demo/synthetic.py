"""Synthetic feature caches with a known answer, written through the real cache schema.

Used by the tests (the quality bars of the issues) and by bench/. The features are not
from any network, but each set is named after a real one and costs what that one costs: its GFLOPs
a frame (a patch for a grid set) are counted from the real module (pipeline.backbones, counted once
and kept on disk), never typed in (docs/contracts/flops.md).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.backbones import gflops_per_frame, parse_spec
from pipeline.core import manifest as pipeline_manifest
from pipeline.cache import FeatureIndex, VideoFeatures, shard_attrs


@dataclass
class SyntheticCache:
    manifest: Path
    cache: Path
    informative: dict[str, np.ndarray]      # video_id -> bool per frame: the frame holds class evidence


def _attrs(name: str, dim: int, fps: float = 1.0) -> dict:
    """A synthetic set's attributes: those of the real set it is named after (input size, kind, grid,
    counted GFLOPs), with its own feature dimension."""
    fs = parse_spec(name)
    return shard_attrs(name, "synthetic", fs.input_size, fs.output, "synthetic", gflops_per_frame(fs), dim,
                       {"fps": fps}, fs.grid, fs.patch_size)


def write_sets(cache: Path, sets: dict[str, int | dict], videos: dict[str, dict[str, np.ndarray]],
               timestamps: dict[str, np.ndarray], shard_videos: int = 256) -> None:
    """Write feature sets {name: feature dim, or attrs} for videos {video_id: {name: [T, ...]}}."""
    for name, spec in sets.items():
        attrs = spec if isinstance(spec, dict) else _attrs(name, spec)
        index = FeatureIndex.open(Path(cache) / name, attrs)
        ids = list(videos)
        for start in range(0, len(ids), shard_videos):
            chunk = ids[start:start + shard_videos]
            index.write_shard(0, [VideoFeatures(v, timestamps[v], videos[v][name]) for v in chunk])
        index.complete = True
        index.save()


def write_manifest(path: Path, rows: list[tuple[str, str, str]]) -> Path:
    """rows: (video_id, label, split); paths point nowhere (phase two never opens videos)."""
    return pipeline_manifest.write_manifest(
        [{"video_id": v, "path": f"videos/{v}.mp4", "labels": label, "split": split} for v, label, split in rows], path)


def _class_prototypes_and_marker(rng, num_classes: int, dim: int, evidence: float, marker_dim: int,
                                 marker: float) -> tuple[np.ndarray, np.ndarray]:
    """A random direction of norm `evidence` per class (what a class looks like in the expensive
    feature), and one of norm `marker` (where to look, in the cheap one)."""
    prototypes = rng.normal(size=(num_classes, dim))
    prototypes *= evidence / np.linalg.norm(prototypes, axis=1, keepdims=True)
    marker_vector = rng.normal(size=marker_dim)
    return prototypes, marker_vector * marker / np.linalg.norm(marker_vector)


def liteeval_cache(root: Path, num_train: int = 400, num_val: int = 200, num_classes: int = 5,
                   frames: tuple[int, int] = (12, 24), informative: tuple[int, int] = (1, 3),
                   coarse: tuple[str, int] = ("mobilenet_v2@112", 32), fine: tuple[str, int] = ("resnet101@224", 64),
                   evidence: float = 3.0, marker: float = 3.0, seed: int = 0) -> SyntheticCache:
    """Class evidence only in the fine features of a few frames, which the coarse features mark.

    Every frame: coarse ~ N(0, I), fine ~ N(0, I). On 1-3 informative frames per video the
    coarse feature also carries a fixed marker direction (saying "look here", not the class)
    and the fine feature a class prototype. A model that reads every fine feature can classify;
    one that reads only coarse features cannot beat chance; one that reads the fine feature
    where the marker is can match the first at a fraction of the fine reads. coarse, fine: (the set
    named, feature dimension).
    """
    rng = np.random.default_rng(seed)
    (c_name, c_dim), (f_name, f_dim) = coarse, fine
    prototypes, marker_direction = _class_prototypes_and_marker(rng, num_classes, f_dim, evidence, c_dim, marker)
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
    write_sets(cache, {c_name: c_dim, f_name: f_dim}, videos, stamps)
    return SyntheticCache(write_manifest(root / "manifest.csv", rows), cache, where)


def adafocus_cache(root: Path, num_train: int = 300, num_val: int = 150, num_classes: int = 5,
                   frames: tuple[int, int] = (16, 24), grid: int = 7, channels: int = 8, dim: int = 16,
                   patch_size: int = 128, evidence: float = 4.0, marker: float = 3.0, drift: float = 0.25, seed: int = 0):
    """The class is visible only in the candidate patch holding an object that drifts slowly
    across the frame; the glance map shows where the object is (not what it is).

    Glance map [C, G, G] ~ N(0, 1) plus a marker vector in the object's cell; patch grid
    [G*G, D] ~ N(0, 1) plus the class prototype in the object's candidate. The object starts
    in a random cell and drifts `drift` cells a frame in a random direction, bouncing off the
    edges, so a fixed patch (central policy) sees it on few frames, random patches on ~1/G^2
    of them, and a policy that reads the glance map on every frame.
    Returns a SyntheticCache whose `informative` holds, per video, the object's candidate per frame.
    """
    rng = np.random.default_rng(seed)
    glance_name, focus_name = "mobilenet_v2@224-map", f"resnet50@224-grid{grid}x{patch_size}"
    prototypes, marker_vector = _class_prototypes_and_marker(rng, num_classes, dim, evidence, channels, marker)
    rows, videos, stamps, where = [], {}, {}, {}
    for i in range(num_train + num_val):
        video_id, label = f"vid{i:05d}", int(rng.integers(num_classes))
        T = int(rng.integers(frames[0], frames[1] + 1))
        # continuous position in [-0.5, G - 0.5): every cell equally likely (rounding a position in
        # [0, G - 1] would make the edge cells half as likely as the centre)
        position = rng.uniform(-0.5, grid - 0.5, size=2)
        angle = rng.uniform(0, 2 * np.pi)
        velocity = drift * np.array([np.cos(angle), np.sin(angle)])
        cells = np.zeros(T, dtype=np.int64)
        glance = rng.normal(size=(T, channels, grid, grid))
        focus = rng.normal(size=(T, grid * grid, dim))
        for t in range(T):
            r, c = np.clip(np.floor(position + 0.5), 0, grid - 1).astype(int)
            cells[t] = r * grid + c
            glance[t, :, r, c] += marker_vector
            focus[t, cells[t]] += prototypes[label]
            position = position + velocity
            for axis in range(2):               # bounce off the edges
                if not -0.5 <= position[axis] < grid - 0.5:
                    velocity[axis] = -velocity[axis]
                    position[axis] = np.clip(position[axis], -0.5, grid - 0.5 - 1e-6)
        videos[video_id] = {glance_name: glance.astype(np.float16), focus_name: focus.astype(np.float16)}
        stamps[video_id] = np.arange(T, dtype=np.float32)
        where[video_id] = cells
        rows.append((video_id, f"class{label}", "train" if i < num_train else "val"))
    root.mkdir(parents=True, exist_ok=True)
    cache = root / "cache"
    write_sets(cache, {glance_name: channels, focus_name: dim}, videos, stamps)
    return SyntheticCache(write_manifest(root / "manifest.csv", rows), cache, where)


def object_hits(video_ids, steps, patches, cache: SyntheticCache) -> dict[str, float]:
    """For an AdaFocus run on an adafocus_cache: the share of the read patches (rows of decisions.csv
    with patch >= 0: their video_id, t and patch) that are the object's candidate, over every read
    frame and over the late ones (the second half of each video's reads, where Eq. 7 had stopped
    paying once the classifier was sure)."""
    video_ids, steps, patches = np.asarray(video_ids), np.asarray(steps), np.asarray(patches)
    read = patches >= 0
    video_ids, steps, patches = video_ids[read], steps[read], patches[read]
    hit = np.array([cache.informative[v][t] == p for v, t, p in zip(video_ids, steps, patches)])
    rank, reads = np.zeros(len(hit), dtype=np.int64), {}
    for i, v in enumerate(video_ids):          # the read's position among its video's reads
        rank[i] = reads.get(v, 0)
        reads[v] = rank[i] + 1
    late = rank >= np.array([reads[v] for v in video_ids]) / 2
    return {"all": float(hit.mean()), "late": float(hit[late].mean())}


def write_synthetic_cache(kind: str, out: str | Path, train_videos: int, val_videos: int, seed: int = 0,
                          overwrite: bool = False) -> tuple[SyntheticCache, str]:
    """`c2f synthetic-cache`: a liteeval or adafocus cache with a known answer in `out`; returns it and
    the names of its feature sets. A non-empty `out` is replaced only with `overwrite`."""
    import shutil
    folder = Path(out)
    if folder.exists() and any(folder.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{folder} is not empty; give --overwrite to replace it")
        shutil.rmtree(folder)
    if kind == "liteeval":
        made = liteeval_cache(folder, num_train=train_videos, num_val=val_videos, evidence=5.0, seed=seed)
        return made, "mobilenet_v2@112, resnet101@224"
    made = adafocus_cache(folder, num_train=train_videos, num_val=val_videos, grid=5, marker=5.0, evidence=5.0,
                          seed=seed)
    return made, "mobilenet_v2@224-map, resnet50@224-grid5x128"
