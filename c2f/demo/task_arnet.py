"""AR-Net's synthetic task: frames whose class evidence is visible at every resolution, frames where
only the high resolution shows it, and frames with none, the cheap feature telling which is which.

Three fine sets stand in for the paper's backbones at their resolutions and are priced like them
(named resnet50@224, resnet34@168 and resnet18@112, they cost those networks' counted GMACs:
c2f.demo.synthetic.write_sets); the coarse set is priced like mobilenet_v2@112. Every video has
`frames` frames: on `hard` of them the class prototype is in the first (high-resolution) set only, on `easy` of them in all
three, on the rest in none. The coarse feature carries one marker direction on hard frames and
another on easy ones (where to look and how closely, not the class). A policy that reads the high
resolution on hard frames, the low one on easy frames and skips the rest sees every frame with
evidence at about a third of the GFLOPs of the high resolution on every frame.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .synthetic import SyntheticCache, write_manifest, write_sets

FINE_SETS = ("resnet50@224", "resnet34@168", "resnet18@112")
COARSE_SET = "mobilenet_v2@112"
NONE, EASY, HARD = 0, 1, 2          # what a frame shows (SyntheticCache.informative)


def _unit(rng, dim: int, norm: float) -> np.ndarray:
    vector = rng.normal(size=dim)
    return vector * norm / np.linalg.norm(vector)


def arnet_cache(root: Path, num_train: int = 400, num_val: int = 400, num_classes: int = 5, frames: int = 16,
                hard: int = 4, easy: int = 4, dim: int = 32, coarse_dim: int = 16, evidence: float = 1.5,
                marker: float = 3.0, seed: int = 0) -> SyntheticCache:
    """The cache (a coarse set and FINE_SETS, every feature N(0, I) plus the evidence and markers above)
    and its manifest; `informative` holds each frame's kind (NONE, EASY, HARD) per video."""
    rng = np.random.default_rng(seed)
    prototypes = np.stack([_unit(rng, dim, evidence) for _ in range(num_classes)])
    markers = {EASY: _unit(rng, coarse_dim, marker), HARD: _unit(rng, coarse_dim, marker)}
    rows, videos, stamps, kinds = [], {}, {}, {}
    for i in range(num_train + num_val):
        video_id, label = f"vid{i:05d}", int(rng.integers(num_classes))
        kind = np.full(frames, NONE)
        kind[rng.choice(frames, size=hard + easy, replace=False)] = [HARD] * hard + [EASY] * easy
        coarse = rng.normal(size=(frames, coarse_dim))
        fine = rng.normal(size=(len(FINE_SETS), frames, dim))
        for k in (EASY, HARD):
            coarse[kind == k] += markers[k]
        fine[0, kind != NONE] += prototypes[label]          # the high resolution shows every frame's evidence
        fine[1:, kind == EASY] += prototypes[label]         # the lower ones only the easy frames'
        videos[video_id] = {COARSE_SET: coarse.astype(np.float16)} | {
            name: fine[k].astype(np.float16) for k, name in enumerate(FINE_SETS)}
        stamps[video_id] = np.arange(frames, dtype=np.float32)
        kinds[video_id] = kind
        rows.append((video_id, f"class{label}", "train" if i < num_train else "val"))
    root.mkdir(parents=True, exist_ok=True)
    write_sets(root / "cache", {COARSE_SET: coarse_dim} | {name: dim for name in FINE_SETS}, videos, stamps)
    return SyntheticCache(write_manifest(root / "manifest.csv", rows), root / "cache", kinds)


def read_shares(decisions, kinds: dict[str, np.ndarray]) -> dict[str, float]:
    """From a run's decisions.csv (a DataFrame with video_id, t, fine_set) on an arnet_cache: the share of
    hard frames read at the high resolution (fine_set 0), the same share over the other frames, and the
    share of the easy frames read at some resolution."""
    kind = np.array([kinds[v][t] for v, t in zip(decisions.video_id, decisions.t)])
    high = decisions.fine_set.to_numpy() == 0
    return {"high_on_hard": float(high[kind == HARD].mean()), "high_on_others": float(high[kind != HARD].mean()),
            "read_on_easy": float((decisions.fine_set.to_numpy()[kind == EASY] >= 0).mean())}
