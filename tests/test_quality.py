"""LiteEval's quality bar (issue 3) on a synthetic cache with a known answer."""
from __future__ import annotations

import numpy as np
import pandas as pd

from c2f.config import TrainConfig
from c2f.synthetic import liteeval_cache
from c2f.train import train_head


def test_liteeval_matches_lstm_reading_few_fine_features(tmp_path):
    """Class evidence sits only in the fine features of the 1-3 frames per video that the coarse
    features mark. LiteEval, with the paper's gamma and lambda, must match the LSTM over every
    fine feature within 3 points of top-1 while reading the fine feature on at most 40% of
    frames, and read it far more often on the marked frames."""
    syn = liteeval_cache(tmp_path, num_train=600, num_val=300, evidence=5.0)
    common = dict(manifest=str(syn.manifest), cache=str(syn.cache), epochs=15, lr=3e-3, batch_size=32,
                  coarse_hidden=16, fine_hidden=64, frames=24, progress=False)
    lstm = train_head(TrainConfig(method="lstm", out=str(tmp_path / "lstm"), **common))
    lite = train_head(TrainConfig(method="liteeval", out=str(tmp_path / "liteeval"), **common))   # gamma 0.05, lam 2
    decisions = pd.read_csv(tmp_path / "liteeval" / "decisions.csv")
    informative = np.concatenate([syn.informative[v] for v in decisions.video_id.unique()])
    fired = decisions.fine.to_numpy().astype(bool)
    print(f"lstm top1 {lstm['top1']:.3f}; liteeval top1 {lite['top1']:.3f}, fine rate {fired.mean():.3f}, "
          f"on marked frames {fired[informative].mean():.3f}, elsewhere {fired[~informative].mean():.3f}, "
          f"GFLOPs {lite['gflops_mean']:.1f} vs {lstm['gflops_mean']:.1f}")
    assert lite["top1"] >= lstm["top1"] - 0.03
    assert fired.mean() <= 0.40
    assert fired[informative].mean() >= 3 * fired[~informative].mean()
    assert fired[informative].mean() >= 0.5
    assert lite["gflops_mean"] < 0.5 * lstm["gflops_mean"]
