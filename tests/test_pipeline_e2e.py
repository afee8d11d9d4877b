"""Phase one feeds phase two: real mp4 files -> c2f extract -> c2f train-head -> evaluate-online."""
from __future__ import annotations

import json

import pandas as pd
from click.testing import CliRunner

from c2f.cli import main
from conftest import make_video, write_manifest


def test_extract_then_train_liteeval_on_the_real_cache(tmp_path):
    rows = []
    for i in range(8):
        path = make_video(tmp_path / "videos" / f"v{i}.mp4", num_frames=20 + 5 * i, fps=10)
        rows.append((f"v{i}", str(path), f"c{i % 2}", "train" if i < 6 else "val"))
    manifest = write_manifest(tmp_path / "manifest.csv", rows)
    runner = CliRunner()
    extracted = runner.invoke(main, ["extract", "--manifest", str(manifest), "--out", str(tmp_path / "cache"),
                                     "--backbone", "mobilenet_v2@112", "--backbone", "mobilenet_v2@224",
                                     "--weights", "random", "--fps", "2", "--workers", "0", "--batch-size", "8",
                                     "--no-progress"])
    assert extracted.exit_code == 0, extracted.output
    trained = runner.invoke(main, ["train-head", "--method", "liteeval", "--manifest", str(manifest),
                                   "--cache", str(tmp_path / "cache"), "--out", str(tmp_path / "run"),
                                   "--fine", "mobilenet_v2@224", "--coarse-hidden", "8", "--fine-hidden", "16",
                                   "--gamma", "0.5", "--epochs", "3", "--lr", "0.01", "--no-progress"])
    assert trained.exit_code == 0, trained.output
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    coarse_cost = config["feature_sets"]["coarse"]["attrs"]["gflops_per_frame"]
    fine_cost = config["feature_sets"]["fine"]["attrs"]["gflops_per_frame"]
    assert 0.08 < coarse_cost < 0.085 and 0.29 < fine_cost < 0.31         # counted by phase one
    predictions = pd.read_csv(tmp_path / "run" / "predictions.csv")
    frames = pd.read_csv(tmp_path / "run" / "decisions.csv").groupby("video_id").size()
    assert metrics["num_videos"] == 2 and sorted(frames.tolist()) == [10, 11]  # 5.0 and 5.5 s at 2 fps
    costs = config["head_costs_gmacs"]
    for _, row in predictions.iterrows():
        T = frames[row.video_id]
        expected = (T * (coarse_cost + costs["coarse_step"] + costs["gate"])
                    + row.fine_count * (fine_cost + costs["fine_step"]) + costs["classifier"])
        assert abs(row.gflops - expected) < 1e-3
    online = runner.invoke(main, ["evaluate-online", "--run", str(tmp_path / "run"), "--budget", "1",
                                  "--no-progress"])
    assert online.exit_code == 0, online.output
    assert pd.read_csv(tmp_path / "run" / "online.csv").fine_mean.max() <= 1
