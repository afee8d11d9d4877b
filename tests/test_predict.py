"""`c2f predict` on bad input, crashes and ranks: one-line refusals for runs it cannot rebuild or
weights that are not the cache's, errors.csv for bad videos, resume after a crash, torchrun parts."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torchvision
from click.testing import CliRunner

from c2f.config import TrainConfig
from c2f.predict import Predictor
from c2f.predict import PredictConfig, predict_videos
from c2f.demo.synthetic import liteeval_cache
from c2f.training import train_head
from c2f.cli import main
from conftest import REPO, make_video, write_manifest
from pipeline.extract import ExtractConfig, extract

COARSE, FINE = "mobilenet_v2@112", "resnet18@224"


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    """Six small videos, the fine set extracted with weights from a file, a liteeval run on them."""
    tmp = tmp_path_factory.mktemp("predict")
    rows = [(f"v{i}", str(make_video(tmp / f"v{i}.mp4", num_frames=15 + 5 * i, fps=10)), f"c{i % 2}",
             "train" if i < 4 else "val") for i in range(6)]
    manifest = write_manifest(tmp / "m.csv", rows)
    torch.manual_seed(0)
    weights = tmp / "fine.pt"
    torch.save(torchvision.models.resnet18().state_dict(), weights)
    extract(ExtractConfig(str(manifest), str(tmp / "cache"), [COARSE, FINE], num_frames=3,
                          weights=["random", f"{FINE}={weights}"], workers=0, progress=False))
    train_head(TrainConfig.of(method="liteeval", manifest=str(manifest), cache=str(tmp / "cache"), out=str(tmp / "run"),
                              coarse=COARSE, fine=FINE, coarse_hidden=4, fine_hidden=8, epochs=1, gamma=0.5,
                              progress=False))
    return tmp, manifest, weights


def predict_cli(*args):
    result = CliRunner().invoke(main, ["predict", "--no-progress", *map(str, args)])
    lines = [line for line in result.output.splitlines() if line.startswith("c2f: error:")]
    return result, lines


def test_weights_must_be_the_caches(small_run, tmp_path):
    """The checkpoint extraction read is found where it was (its sha256 checked); gone, the one line names
    where it was; another file is refused unless allowed, and noted."""
    tmp, manifest, weights = small_run
    result, _ = predict_cli("--run", tmp / "run", "--out", tmp_path / "found", tmp / "v4.mp4")
    assert result.exit_code == 0, result.output
    moved = tmp_path / "moved.pt"
    weights.rename(moved)
    try:
        result, errors = predict_cli("--run", tmp / "run", "--out", tmp_path / "a", tmp / "v4.mp4")
        assert result.exit_code == 2 and len(errors) == 1 and f"--weights {FINE}=PATH" in errors[0]
        assert f"extraction read {weights}, which is not there now" in errors[0]
        assert predict_cli("--run", tmp / "run", "--out", tmp_path / "a", "--weights", moved, tmp / "v4.mp4")[0].exit_code == 0
    finally:
        moved.rename(weights)
    other = tmp_path / "other.pt"
    torch.save(torchvision.models.resnet18().state_dict(), other)
    result, errors = predict_cli("--run", tmp / "run", "--out", tmp_path / "b", "--weights", other, tmp / "v4.mp4")
    assert result.exit_code == 2 and len(errors) == 1 and "--allow-other-weights" in errors[0]
    result, _ = predict_cli("--run", tmp / "run", "--out", tmp_path / "c", "--weights", f"{FINE}={other}",
                            "--allow-other-weights", tmp / "v4.mp4")
    assert result.exit_code == 0, result.output
    assert "instead of the cache's" in json.loads((tmp_path / "c" / "summary.json").read_text())[
        "weights_other_than_the_cache"][0]
    result, errors = predict_cli("--run", tmp / "run", "--out", tmp_path / "d", "--weights", tmp_path / "nope.pt",
                                 tmp / "v4.mp4")
    assert result.exit_code == 2 and "weights file not found" in errors[0]


def test_runs_it_cannot_rebuild_are_refused_in_one_line(small_run, tmp_path):
    tmp, manifest, weights = small_run
    synthetic = liteeval_cache(tmp_path / "syn", num_train=8, num_val=4, coarse=(COARSE, 8),
                               fine=(FINE, 8))
    train_head(TrainConfig.of(method="uniform", manifest=str(synthetic.manifest), cache=str(synthetic.cache),
                              out=str(tmp_path / "syn_run"), fine=FINE, epochs=1, progress=False))
    result, errors = predict_cli("--run", tmp_path / "syn_run", "--out", tmp_path / "o", tmp / "v4.mp4")
    assert result.exit_code == 2 and len(errors) == 1 and "another tool" in errors[0]
    old = tmp_path / "old_run"
    old.mkdir()
    for name in ("head.pt", "config.json"):
        (old / name).write_bytes((tmp / "run" / name).read_bytes())
    config = json.loads((old / "config.json").read_text())
    config["feature_sets"] = {role: {"name": s["name"], "frame_shape": s["frame_shape"]}
                              for role, s in config["feature_sets"].items()}
    (old / "config.json").write_text(json.dumps(config))
    result, errors = predict_cli("--run", old, "--out", tmp_path / "o2", tmp / "v4.mp4")
    assert result.exit_code == 2 and len(errors) == 1 and "older c2f" in errors[0]
    result, errors = predict_cli("--run", tmp_path / "missing", "--out", tmp_path / "o3", tmp / "v4.mp4")
    assert result.exit_code == 2 and len(errors) == 1 and "not a finished run" in errors[0]


def test_bad_videos_go_to_errors_csv_and_a_crash_resumes(small_run, tmp_path, monkeypatch):
    tmp, manifest, weights = small_run
    (tmp_path / "garbage.mp4").write_bytes(os.urandom(3000))
    videos = [tmp / f"v{i}.mp4" for i in range(6)] + [tmp_path / "garbage.mp4", tmp_path / "absent.mp4"]
    settings = dict(weights=[str(weights)], batch_size=2, progress=False)
    clean = predict_videos(PredictConfig(str(tmp / "run"), str(tmp_path / "clean"), [str(v) for v in videos], **settings))
    assert (clean["videos"], clean["errors"]) == (6, 2)
    errors = pd.read_csv(tmp_path / "clean" / "errors.csv")
    assert dict(zip(errors.video_id, errors.reason))["absent"] == "file not found"
    original, calls = Predictor.run_batch, {"n": 0}

    def crash_on_the_second_batch(self, batch, timer):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return original(self, batch, timer)

    monkeypatch.setattr(Predictor, "run_batch", crash_on_the_second_batch)
    with pytest.raises(KeyboardInterrupt):
        predict_videos(PredictConfig(str(tmp / "run"), str(tmp_path / "crashed"), [str(v) for v in videos], **settings))
    monkeypatch.setattr(Predictor, "run_batch", original)
    resumed = predict_videos(PredictConfig(str(tmp / "run"), str(tmp_path / "crashed"), [str(v) for v in videos],
                                           **settings))
    assert resumed["videos"] == 6
    for name in ("decisions.csv", "errors.csv"):
        assert (tmp_path / "crashed" / name).read_text() == (tmp_path / "clean" / name).read_text()
    columns = ["video_id", "pred", "top5", "fine_count", "gflops", "frames"]
    assert pd.read_csv(tmp_path / "crashed" / "predictions.csv")[columns].equals(
        pd.read_csv(tmp_path / "clean" / "predictions.csv")[columns])


BIN = Path(sys.executable).parent


@pytest.mark.skipif(not (BIN / "torchrun").exists(), reason="torchrun is installed by `make test`")
def test_two_ranks_share_the_videos_and_merge_their_parts(small_run, tmp_path):
    tmp, manifest, weights = small_run
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [str(BIN / "c2f"), "predict", "--run-dir", str(tmp / "run"), "--manifest", str(manifest), "--weights",
               str(weights), "--no-progress"]
    single = subprocess.run(command + ["--out", str(tmp_path / "single")], cwd=REPO, env=env, capture_output=True,
                            text=True, timeout=300)
    assert single.returncode == 0, single.stderr
    ranked = subprocess.run([str(BIN / "torchrun"), "--standalone", "--nproc-per-node=2", "--no-python", *command,
                             "--out", str(tmp_path / "ranked")], cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=300)
    assert ranked.returncode == 0, ranked.stderr
    for name in ("predictions.csv", "decisions.csv"):
        ours, theirs = (pd.read_csv(tmp_path / run / name) for run in ("ranked", "single"))
        assert ours.drop(columns="seconds", errors="ignore").equals(theirs.drop(columns="seconds", errors="ignore"))
    assert not list((tmp_path / "ranked" / "parts").glob("*"))


def test_two_heads_never_mix_in_one_output_folder(small_run, tmp_path):
    """Predicting with another run (or budget) into a folder that holds predictions is refused in one
    line; --overwrite replaces them; the same prediction again resumes (skips what is done); a video id
    at another path is predicted again; when no video could be decoded the exit status is 1."""
    tmp, manifest, weights = small_run
    other = tmp_path / "uniform_run"
    train_head(TrainConfig.of(method="uniform", manifest=str(manifest), cache=str(tmp / "cache"), out=str(other),
                              coarse=COARSE, fine=FINE, frames=3, epochs=1, progress=False))
    out, video = tmp_path / "P", tmp / "v4.mp4"
    assert predict_cli("--run", tmp / "run", "--out", out, video)[0].exit_code == 0
    result, errors = predict_cli("--run", other, "--out", out, video)
    assert result.exit_code == 2 and len(errors) == 1 and "holds predictions made with other" in errors[0]
    assert "head_sha256" in errors[0] and "--overwrite" in errors[0]
    result, errors = predict_cli("--run", tmp / "run", "--out", out, "--budget", "1", video)
    assert result.exit_code == 2 and "budget" in errors[0]
    assert predict_cli("--run", other, "--out", out, "--overwrite", video)[0].exit_code == 0
    made_with = json.loads((out / "prediction.json").read_text())
    assert made_with["method"] == "uniform" and made_with["run"] == str(other.resolve())
    assert "patch" not in pd.read_csv(out / "decisions.csv").columns
    shutil.copy(tmp / "v5.mp4", tmp_path / "v4.mp4")                     # the same id, another file
    result, _ = predict_cli("--run", other, "--out", out, video, tmp / "v5.mp4")
    assert result.exit_code == 0 and "2 videos" in result.output
    predicted = pd.read_csv(out / "predictions.csv")
    assert predicted.path.tolist() == [str(video), str(tmp / "v5.mp4")]
    result, _ = predict_cli("--run", other, "--out", out, tmp_path / "v4.mp4", tmp / "v5.mp4")
    assert result.exit_code == 0
    predicted = pd.read_csv(out / "predictions.csv")
    assert predicted.set_index("video_id").loc["v4", "path"] == str(tmp_path / "v4.mp4")
    assert pd.read_csv(out / "decisions.csv").groupby("video_id").t.count().to_dict() == {"v4": 3, "v5": 3}
    (tmp_path / "junk.mp4").write_bytes(b"not a video")
    result, _ = predict_cli("--run", other, "--out", tmp_path / "none", tmp_path / "junk.mp4")
    assert result.exit_code == 1 and "0 videos (1 failed" in result.output


def test_the_python_api_is_typed(small_run):
    """Predictor.predict gives a Prediction: the label, a probability vector over the classes, fine reads,
    GFLOPs, seconds and the decisions as a DataFrame with timestamps; predict_many keeps the order and
    puts an error where a video cannot be decoded."""
    from pipeline.core.errors import PredictError
    tmp, manifest, weights = small_run
    predictor = Predictor.from_run(tmp / "run")
    one = predictor.predict(tmp / "v4.mp4")
    assert one.label in predictor.classes and one.probabilities.shape == (2,)
    assert one.probabilities.sum() == pytest.approx(1.0, abs=1e-5) and one.top(1)[0][0] == one.label
    assert list(one.decisions.columns) == ["t", "timestamp", "fine", "patch"] and one.frames == 3
    assert one.fine_reads == int(one.decisions.fine.sum()) and one.gflops > 0 and one.seconds > 0
    many = predictor.predict_many([tmp / "v5.mp4", tmp / "absent.mp4", tmp / "v4.mp4"], batch_size=2)
    assert isinstance(many[1], PredictError) and [m.video_id for m in (many[0], many[2])] == ["v5", "v4"]
    assert np.allclose(many[2].probabilities, one.probabilities, atol=1e-4)


def test_network_calls_take_at_most_the_devices_rows(small_run, monkeypatch):
    """pipeline.batching.PREDICT_CALL_ROWS_CPU: on the CPU a call runs at most 16 rows (a 224 px network's
    activations then stay in the allocator's heap), unless the caller gives its own."""
    from pipeline.batching import PREDICT_CALL_ROWS_CPU
    tmp, manifest, weights = small_run
    assert Predictor.from_run(tmp / "run", device="cpu").runner.batch_size == PREDICT_CALL_ROWS_CPU == 16
    assert Predictor.from_run(tmp / "run", device="cpu", batch_size=5).runner.batch_size == 5
    predictor = Predictor.from_run(tmp / "run", device="cpu", batch_size=2)
    rows = []
    for fs in predictor.sets.values():
        module = predictor.runner.modules[fs.name]
        monkeypatch.setattr(module, "forward", lambda x, forward=module.forward: rows.append(len(x)) or forward(x))
    predictor.predict_many([tmp / "v4.mp4", tmp / "v5.mp4"], batch_size=2)
    assert rows and max(rows) <= 2
