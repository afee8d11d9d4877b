"""Sample-wise early exit, operating curves and predicting at a chosen point: what early exit costs is
what the trace says, nothing after a video's exit is read (nor decoded in prediction), a run's
curve.csv covers its knobs, and `c2f predict --gflops-budget / --threshold` runs the point chosen."""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from c2f.config import TrainConfig
from c2f.data import load_videos
from c2f.demo.synthetic import adafocus_cache, liteeval_cache
from c2f.evaluate import run_head
from c2f.predict import PredictConfig, Predictor, job, lazy, predict_videos
from c2f.predict.engine import Timer
from c2f.rundir import load_run
from c2f.training import train_head
from c2f.training.operating import calibration_batches
from conftest import assert_exit_reads_less, checked_exit_trace, make_video, write_manifest
from pipeline.core.errors import PredictError
from pipeline.core.manifest import read_manifest
from pipeline.decode import read_samples
from pipeline.extract import ExtractConfig, extract

LITEEVAL_SETS = {"coarse": "mobilenet_v2@112", "fine": "resnet101@224"}
ADAFOCUS_SETS = {"coarse": "mobilenet_v2@224-map", "fine": "resnet50@224-grid4x128"}


@pytest.fixture(scope="module")
def caches(tmp_path_factory):
    root = tmp_path_factory.mktemp("exit")
    lite = liteeval_cache(root / "lite", num_train=48, num_val=24, num_classes=3, frames=(6, 12),
                          coarse=("mobilenet_v2@112", 8), fine=("resnet101@224", 12))
    focus = adafocus_cache(root / "focus", num_train=32, num_val=16, num_classes=3, frames=(8, 12), grid=4,
                           channels=4, dim=8)
    return lite, focus


def _train(cache, out, method, **overrides):
    settings = dict(method=method, manifest=str(cache.manifest), cache=str(cache.cache), out=str(out),
                    progress=False, device="cpu")
    if method.startswith("adafocus"):
        settings |= dict(glance=ADAFOCUS_SETS["coarse"], focus=ADAFOCUS_SETS["fine"], frames=6, stage_epochs=(2, 2, 1))
    else:
        settings |= dict(coarse=LITEEVAL_SETS["coarse"], fine=LITEEVAL_SETS["fine"], frames=6, coarse_hidden=4,
                         fine_hidden=8, epochs=3, lr=1e-2, batch_size=16)
    return train_head(TrainConfig.of(**(settings | overrides)))


def _videos(cache, method, split):
    sets = ADAFOCUS_SETS if method.startswith("adafocus") else LITEEVAL_SETS
    roles = ("coarse", "fine") if method not in ("uniform", "lstm") else ("fine",)
    return load_videos(read_manifest(cache.manifest, check_paths=False), split, cache.cache,
                       {role: sets[role] for role in roles})


@pytest.mark.parametrize("method", ["uniform", "lstm", "liteeval", "adafocus_plus"])
def test_the_trace_tells_what_early_exit_costs_and_nothing_after_the_exit_is_read(caches, tmp_path, method):
    cache = caches[1] if method.startswith("adafocus") else caches[0]
    _train(cache, tmp_path / "run", method, curve=False)
    _, head, _ = load_run(tmp_path / "run")
    train = _videos(cache, method, "train")
    batches = calibration_batches(train)
    without = head.mean_gflops(batches)
    confidence, cost = checked_exit_trace(head, batches, [0.1, 0.5, 0.9])
    assert confidence.shape[0] == len(train)
    low, high = head.exit_thresholds_for(batches, [0.5, 0.9])
    assert low <= high
    head.exit_threshold.fill_(low)
    assert head.mean_gflops(batches) >= 0.5 * without - 1e-6
    # on the cache: a video that stops reads nothing after its exit, and costs less than it would
    head.exit_threshold.fill_(float(np.quantile(confidence[np.isfinite(confidence)], 0.3)))
    assert_exit_reads_less(head, train)


def test_a_run_keeps_its_curve_and_its_exit_budget(caches, tmp_path):
    lite, _ = caches
    plain = _train(lite, tmp_path / "plain", "liteeval", gamma=0.3)
    curve = pd.read_csv(tmp_path / "plain" / "curve.csv")
    assert list(curve.columns) == ["knob", "target", "value", "fine_rate", "frames_seen", "gflops_mean", "top1", "mAP",
                                   "calibration_gflops", "calibration_top1", "calibration_mAP"]
    assert set(curve.knob) == {"gate", "exit", "budget"}
    gate = curve[curve.knob == "gate"].sort_values("target")
    assert gate.fine_rate.is_monotonic_increasing and gate.gflops_mean.is_monotonic_increasing
    exiting = _train(lite, tmp_path / "exit", "liteeval", gamma=0.3, exit_budget=0.5)
    assert exiting["gflops_mean"] < plain["gflops_mean"]
    assert 0 < exiting["training"]["exit_threshold"] <= 1
    _, head, _ = load_run(tmp_path / "exit")
    assert float(head.exit_threshold) == pytest.approx(exiting["training"]["exit_threshold"])
    # a head saved before early exit existed loads, and never exits
    state = torch.load(tmp_path / "plain" / "head.pt", weights_only=True)
    state.pop("exit_threshold")
    _, old, _ = load_run(tmp_path / "plain")
    old.load_state_dict(state)
    assert not torch.isfinite(old.exit_threshold) and not old.exits


@pytest.fixture(scope="module")
def video_run(tmp_path_factory):
    """Six small real videos, eight samples each, a liteeval run on them (random CNN weights)."""
    tmp = tmp_path_factory.mktemp("exit_predict")
    rows = [(f"v{i}", str(make_video(tmp / f"v{i}.mp4", num_frames=40, fps=10)), f"c{i % 2}",
             "train" if i < 4 else "val") for i in range(6)]
    manifest = write_manifest(tmp / "m.csv", rows)
    extract(ExtractConfig(str(manifest), str(tmp / "cache"), ["mobilenet_v2@112", "resnet18@224"], num_frames=8,
                          weights=["random"], workers=0, progress=False))
    train_head(TrainConfig.of(method="liteeval", manifest=str(manifest), cache=str(tmp / "cache"), out=str(tmp / "run"),
                              coarse="mobilenet_v2@112", fine="resnet18@224", coarse_hidden=4, fine_hidden=8, epochs=1,
                              gamma=0.5, progress=False, device="cpu"))
    return tmp, [r[1] for r in rows[4:]]


def test_predict_stops_decoding_at_the_exit(video_run, tmp_path):
    tmp, videos = video_run
    everything = predict_videos(PredictConfig(run=str(tmp / "run"), out=str(tmp_path / "all"), videos=videos,
                                              progress=False, workers=0))
    assert everything["frames_decoded"] == everything["frames"] == 16
    # any prediction is sure enough at threshold 0: each video stops after its first frame
    first = predict_videos(PredictConfig(run=str(tmp / "run"), out=str(tmp_path / "first"), videos=videos,
                                         threshold=["exit=0"], progress=False, workers=0))
    assert first["frames_decoded"] == 2 and first["frames"] == 16
    assert first["gflops_executed_mean"] < everything["gflops_executed_mean"]
    decisions = pd.read_csv(tmp_path / "first" / "decisions.csv")
    assert decisions[decisions.t > 0].fine.sum() == 0
    assert json.loads((tmp_path / "first" / "prediction.json").read_text())["operating_point"]["thresholds"] == {"exit": 0.0}
    # the same threshold on the cache and on raw video: the same frames read
    predictor = Predictor.from_run(tmp / "run", device="cpu", thresholds=["exit=0.5"])
    cached = run_head(predictor.head, _cached_val(tmp))
    raw = predictor.predict_many(videos)
    assert [p.frames_decoded for p in raw] == list(cached.frames_seen())


def _cached_val(tmp):
    return load_videos(read_manifest(tmp / "m.csv", check_paths=False), "val", tmp / "cache",
                       {"coarse": "mobilenet_v2@112", "fine": "resnet18@224"})


def test_gflops_budget_picks_the_best_point_within_it_on_the_training_videos_alone(video_run, tmp_path):
    """The point is the best within the budget on the videos its thresholds were solved on (here the
    training videos: metrics.json says so); the eval split's figures never move the choice."""
    tmp, videos = video_run
    run = tmp_path / "run"
    shutil.copytree(tmp / "run", run)
    curve = pd.read_csv(run / "curve.csv")
    assert json.loads((run / "metrics.json").read_text())["calibration"]["chosen_on"] == "train"
    budget = float(curve.calibration_gflops.median())
    point = Predictor.from_run(run, device="cpu", gflops_budget=budget).operating_point
    assert point["chosen_on"] == "train" and point["point"]["calibration_gflops"] <= budget
    within = curve[curve.calibration_gflops <= budget]
    assert point["point"]["calibration_top1"] >= within.calibration_top1.max()
    # the eval split says another point is far better and cheaper: the choice does not move
    others = curve.index[(curve.knob != point["point"]["knob"]) | (curve.target != point["point"]["target"])]
    curve.loc[others, ["top1", "gflops_mean"]] = [1.0, 0.0]
    curve.to_csv(run / "curve.csv", index=False)
    again = Predictor.from_run(run, device="cpu", gflops_budget=budget).operating_point["point"]
    assert (again["knob"], again["target"]) == (point["point"]["knob"], point["point"]["target"])
    with pytest.raises(PredictError, match="costs at most"):
        Predictor.from_run(run, device="cpu", gflops_budget=1e-9)
    with pytest.raises(PredictError, match="no knob 'keep'"):
        Predictor.from_run(run, device="cpu", thresholds=["keep=0.5"])


# settings that make each method read at most 3 fine features a video of the 8 sampled
RAW_VIDEO_METHODS = {"adaframe": dict(frames=6, memory_frames=4, max_steps=3, fine_hidden=8),
                     "scsampler": dict(frames=8, top_k=3)}


@pytest.mark.parametrize("method", sorted(RAW_VIDEO_METHODS))
def test_a_baseline_predicts_on_raw_video_what_it_read_on_the_cache(video_run, tmp_path, method):
    """AdaFrame (the frames its policy visits) and SCSampler (the K frames its sampler ranks highest) on raw
    video: the expensive CNN runs where the head reads, the decisions, classes and GFLOPs are those of the
    run's evaluation on the cache."""
    tmp, videos = video_run
    run = tmp_path / "run"
    train_head(TrainConfig.of(method=method, manifest=str(tmp / "m.csv"), cache=str(tmp / "cache"), out=str(run),
                              coarse="mobilenet_v2@112", fine="resnet18@224", epochs=1, curve=False, progress=False,
                              device="cpu", **RAW_VIDEO_METHODS[method]))
    summary = predict_videos(PredictConfig(run=str(run), out=str(tmp_path / "raw"), videos=videos, progress=False,
                                           workers=0))
    ours, theirs = (pd.read_csv(folder / "decisions.csv") for folder in (tmp_path / "raw", run))
    assert len(ours) == len(theirs) == 16 and (ours.fine.values == theirs.fine.values).all()
    ours, theirs = (pd.read_csv(f / "predictions.csv").set_index("video_id") for f in (tmp_path / "raw", run))
    assert (ours.pred == theirs.pred.loc[ours.index]).all() and ours.fine_count.max() <= 3
    assert ours.gflops.values == pytest.approx(theirs.gflops.loc[ours.index].values, rel=0.01)
    assert summary["fine_mean"] == pytest.approx(ours.fine_count.mean())


def test_listentolook_predicts_the_caches_decisions_on_raw_video(video_run, tmp_path):
    """Listen to Look on the same videos: the expensive CNN runs on the frames the attention picks alone, with
    and without early exit, making the decisions of the run's evaluation on the cache at the GFLOPs it charged."""
    tmp, videos = video_run
    run = tmp_path / "run"
    train_head(TrainConfig.of(method="listentolook", manifest=str(tmp / "m.csv"), cache=str(tmp / "cache"), out=str(run),
                              fine="resnet18@224", frames=8, picks=3, fine_hidden=8, attention_dim=8, epochs=1,
                              progress=False, device="cpu", curve=False))
    summary = predict_videos(PredictConfig(run=str(run), out=str(tmp_path / "raw"), videos=videos, progress=False,
                                           workers=0))
    ours, theirs = (pd.read_csv(folder / "decisions.csv") for folder in (tmp_path / "raw", run))
    assert len(ours) == len(theirs) == 16 and (ours.fine.values == theirs.fine.values).all()
    ours, theirs = (pd.read_csv(f / "predictions.csv").set_index("video_id") for f in (tmp_path / "raw", run))
    assert (ours.pred == theirs.pred.loc[ours.index]).all() and (ours.fine_count == 3).all()
    assert ours.gflops.values == pytest.approx(theirs.gflops.loc[ours.index].values, rel=0.01)
    assert summary["fine_mean"] == 3
    predictor = Predictor.from_run(run, device="cpu", thresholds=["exit=0"])     # sure after the first pick
    cached = run_head(predictor.head, _cached_val(tmp))
    raw = predictor.predict_many(videos)
    assert [p.fine_reads for p in raw] == list(cached.fine_count()) == [1, 1]
    assert [p.gflops for p in raw] == pytest.approx(list(cached.gflops), rel=0.01)


SLOW_DECODE = 0.02          # seconds a frame, so that decoding is most of a batch's time


def _slow_decoding(plan, canvas):
    samples = read_samples(plan, canvas)
    try:
        for sample in samples:
            time.sleep(SLOW_DECODE)
            yield sample
    finally:
        samples.close()


def test_predict_seconds_are_stages_of_the_time_measured(video_run, tmp_path, monkeypatch):
    """With early exit and an online budget (videos decoded as the head reads them, here slowly), every
    stage's seconds are >= 0 and they add up to the time measured around them: one batch's
    (Predictor.run_batch), and `c2f predict`'s loop over the videos; decoding counts as decoding, once."""
    tmp, videos = video_run
    monkeypatch.setattr(lazy, "read_samples", _slow_decoding)
    predictor = Predictor.from_run(tmp / "run", device="cpu", budget=1, thresholds=["exit=0.9"])
    decoded = [predictor.decode(Path(v).stem, v) for v in videos]
    planning = sum(v.seconds for v in decoded)
    timer = Timer()
    started = time.perf_counter()
    batch = predictor.run_batch(decoded, timer)
    wall = time.perf_counter() - started
    assert min(timer.seconds.values()) >= 0 and min(batch.seconds) >= 0
    assert sum(timer.seconds.values()) == pytest.approx(wall, abs=2e-3)
    assert timer.seconds["decode"] >= SLOW_DECODE * sum(v.frames_decoded for v in batch.videos)
    assert timer.seconds["cheap_cnn"] < wall - timer.seconds["decode"]
    assert sum(batch.seconds) == pytest.approx(planning + wall, abs=2e-3)      # each video: its decoding + a share
    # the whole command: its loop's wall time, split by stage in summary.json (rounded to ms)
    measured, share = [], job._predict_share

    def timed(*args):
        started = time.perf_counter()
        timer = share(*args)
        measured.append(time.perf_counter() - started)
        return timer
    monkeypatch.setattr(job, "_predict_share", timed)
    summary = predict_videos(PredictConfig(run=str(tmp / "run"), out=str(tmp_path / "out"), videos=videos, budget=1,
                                           threshold=["exit=0.9"], progress=False, workers=0))
    assert min(summary["seconds"].values()) >= 0
    assert sum(summary["seconds"].values()) == pytest.approx(measured[0], abs=5e-3)
    assert summary["seconds"]["decode"] >= SLOW_DECODE * summary["frames_decoded"]
    assert (pd.read_csv(tmp_path / "out" / "predictions.csv").seconds >= 0).all()
