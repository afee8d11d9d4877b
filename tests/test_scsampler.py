"""SCSampler: the cheap feature of every sampled frame, the expensive one on the K the sampler ranks
highest and nothing else, charged as read; K moves along its curve; the learned sampler beats K
frames chosen at random."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from c2f.config import TrainConfig
from c2f.data import Batch, load_videos, segment_positions
from c2f.demo.synthetic import liteeval_cache
from c2f.rundir import load_run
from c2f.training import train_head
from pipeline.core.manifest import read_manifest

COARSE, FINE = ("mobilenet_v2@112", 16), ("resnet50@224", 32)


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    """Sparse evidence: 1-2 of 16 frames hold the class in the expensive feature, marked in the cheap one."""
    return liteeval_cache(tmp_path_factory.mktemp("scsampler"), num_train=240, num_val=160, num_classes=4,
                          frames=(16, 16), informative=(1, 2), coarse=COARSE, fine=FINE, evidence=4.0)


def train(task, out, **settings):
    cfg = TrainConfig.of(method="scsampler", manifest=str(task.manifest), cache=str(task.cache), out=str(out),
                         coarse=COARSE[0], fine=FINE[0], progress=False, **({"curve": False} | settings))
    return train_head(cfg)


def test_it_reads_the_k_best_frames_and_is_charged_for_them(task, tmp_path):
    metrics = train(task, tmp_path / "run", top_k=3, epochs=3, curve=True)
    cfg, head, _ = load_run(tmp_path / "run")
    head.eval()
    videos = load_videos(read_manifest(task.manifest, check_paths=False), "val", task.cache, cfg.feature_sets())
    batch = Batch(videos, torch.arange(8))
    out = head(batch)
    positions = segment_positions(batch.lengths, 16)
    best = head.sampler(videos.features["coarse"][(batch.starts[:, None] + positions).flatten()].float())
    best = best.view(8, 16, -1).max(-1).values.topk(3, dim=1).indices
    expected = torch.zeros_like(batch.reads["fine"])
    expected[torch.arange(8)[:, None], positions.gather(1, best)] = True
    assert torch.equal(batch.reads["fine"], expected)                    # the K highest-scoring frames, no other
    assert torch.equal(batch.reads["coarse"].sum(1), torch.full((8,), 16))
    c = head.costs
    charged = out.head_gmacs.double() + batch.read_gflops()
    coarse_cost, fine_cost = (videos.sets[role].gflops_per_frame for role in ("coarse", "fine"))   # the cache's
    assert charged.numpy() == pytest.approx(16 * (coarse_cost + c["sampler"]) + 3 * (fine_cost + c["classifier"]))
    decisions = pd.read_csv(tmp_path / "run" / "decisions.csv")
    assert (decisions.groupby("video_id").fine.sum() == 3).all() and metrics["fine_mean"] == 3
    curve = pd.read_csv(tmp_path / "run" / "curve.csv")
    assert curve.knob.unique().tolist() == ["frames_read"] and curve.target.tolist() == [1, 2, 4, 6, 8, 10, 12, 16]
    assert np.all(np.diff(curve.gflops_mean) > 0) and curve.fine_rate.tolist()[-1] == pytest.approx(1.0)


def test_the_learned_sampler_beats_k_frames_at_random(task, tmp_path):
    learned = [train(task, tmp_path / f"learned{s}", top_k=2, seed=s)["top1"] for s in (0, 1)]
    chosen_at_random = [train(task, tmp_path / f"random{s}", top_k=2, seed=s, sampler="random")["top1"] for s in (0, 1)]
    assert np.mean(learned) > np.mean(chosen_at_random) + 0.1, (learned, chosen_at_random)
