"""AR-Net: the policy's skips, a fine set read only where chosen and charged exactly, decisions.csv's
fine_set, early exit, the quality bar in miniature (the high resolution on the frames that need it,
better than one resolution at the same GFLOPs), the presets, and `c2f predict` on raw video with two
fine sets extracted in one pass."""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from c2f.blocks.gumbel import AnnealedGumbel
from c2f.config import TrainConfig
from c2f.data import load_videos
from c2f.demo.task_arnet import FINE_SETS, arnet_cache, read_shares
from c2f.evaluate import run_head
from c2f.heads.arnet import PRESETS
from c2f.predict import PredictConfig, Predictor, predict_videos
from c2f.predict import engine
from c2f.rundir import load_run
from c2f.training import train_head
from c2f.training.operating import calibration_batches
from conftest import assert_exit_reads_less, checked_exit_trace, make_video, write_manifest
from pipeline.core.manifest import read_manifest
from pipeline.extract import ExtractConfig, extract


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The tensors here are small: one thread is as fast alone, and far faster on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    return arnet_cache(tmp_path_factory.mktemp("arnet"), num_train=300, num_val=150)


def _train(task, out, method="arnet", **overrides):
    settings = dict(method=method, manifest=str(task.manifest), cache=str(task.cache), out=str(out), epochs=20,
                    batch_size=32, progress=False, device="cpu")
    if method == "arnet":
        settings |= dict(policy_hidden=64)
    else:                   # the baselines' curves are not looked at
        settings |= dict(curve=False)
    return train_head(TrainConfig.of(**(settings | overrides)))


@pytest.fixture(scope="module")
def trained(task, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "arnet"
    return out, _train(task, out)


def _videos(task, cfg, split):
    return load_videos(read_manifest(task.manifest, check_paths=False), split, task.cache, cfg.feature_sets())


def test_hard_gumbel_decisions_and_the_annealed_temperature():
    gumbel = AnnealedGumbel(5.0, 0.045)
    gumbel.set_epoch(10)
    assert gumbel.tau == pytest.approx(5.0 * math.exp(-0.45))
    logits = torch.tensor([[0.0, 3.0, -1.0]] * 2000, requires_grad=True)
    sample = gumbel.decide(logits, sample=True)
    assert ((sample == 0) | (sample == 1)).all() and (sample.sum(1) == 1).all()
    assert 0.7 < sample[:, 1].mean() < 0.95                  # softmax(logits)[1] = 0.94: a sample, not the arg-max
    (sample[:, 1].sum()).backward()
    assert logits.grad.abs().sum() > 0                       # straight-through: the tempered softmax's gradient
    assert gumbel.decide(logits, sample=False)[:, 1].all()


def test_a_skip_leaves_the_frames_it_skips_unread(task, trained):
    """A policy that always skips 4 visits frames 0, 4, 8, 12: nothing else is read, not even the cheap feature."""
    cfg, head, _ = load_run(trained[0])
    with torch.no_grad():
        head.policy.weight.zero_()
        head.policy.bias.fill_(-10.0)
        head.policy.bias[-1] = 10.0                          # the last action: skip 4
    result = run_head(head, _videos(task, cfg, "val"))
    visited = result.reads["coarse"].reshape(len(result.video_ids), -1)
    assert (visited.sum(1) == 4).all() and visited[:, ::4].all()
    assert result.fine_reads().sum() == 0 and (result.scores == result.scores[0, 0]).all()     # no logits at all


def test_evaluation_reads_one_fine_set_where_chosen_and_charges_exactly_that(task, trained):
    cfg, head, _ = load_run(trained[0])
    videos = _videos(task, cfg, "val")
    first = run_head(head, videos)
    read = {role: torch.from_numpy(first.reads[role] > 0) for role in first.fine_roles()}
    assert sum(r.int() for r in read.values()).max() == 1
    for role, features in videos.features.items():
        if role.startswith("fine"):          # garbage in every unread feature changes nothing
            features[~read[role]] = torch.randn(int((~read[role]).sum()), features.shape[1]).half() * 100
    second = run_head(head, videos)
    np.testing.assert_array_equal(first.scores, second.scores)
    c, prices = head.costs, {role: info.gflops_per_frame for role, info in videos.sets.items()}
    visits = first.per_video("coarse")
    expected = visits * (prices["coarse"] + c["step"] + c["policy"]) + sum(
        first.per_video(f"fine.{k}") * (prices[f"fine.{k}"] + c[f"classifier{k}"]) for k in range(3))
    lite = (first.gflops - expected) / c["lite"]             # the rest: the policy's own predictions
    np.testing.assert_allclose(lite, np.round(lite), atol=1e-6)
    assert (np.round(lite) >= 0).all() and (np.round(lite) + first.fine_count() <= visits).all()


def test_decisions_name_the_fine_set_read_and_the_quality_bar_holds(task, trained, tmp_path):
    """The high resolution on the frames whose evidence needs it, and a higher top-1 than the high
    resolution alone on evenly spaced frames at as many GFLOPs, or the low resolution on every frame."""
    out, metrics = trained
    decisions = pd.read_csv(out / "decisions.csv")
    assert list(decisions.columns) == ["video_id", "t", "fine", "fine_set"]
    assert ((decisions.fine_set >= 0) == (decisions.fine == 1)).all() and decisions.fine_set.max() <= 2
    shares = read_shares(decisions, task.informative)
    assert shares["high_on_hard"] > 2 * shares["high_on_others"] and shares["read_on_easy"] > 0.5
    config = json.loads((out / "config.json").read_text())
    price = config["feature_sets"]["fine.0"]["attrs"]["gflops_per_frame"]
    frames = math.ceil(metrics["gflops_mean"] / price)
    high = _train(task, tmp_path / "high", "uniform", fine=FINE_SETS[0], frames=frames)
    low = _train(task, tmp_path / "low", "uniform", fine=FINE_SETS[2], frames=16)
    assert high["gflops_mean"] >= metrics["gflops_mean"]
    assert metrics["top1"] > max(high["top1"], low["top1"])


def test_early_exit_costs_what_its_trace_says_and_reads_nothing_after(task, trained):
    out, _ = trained
    cfg, head, _ = load_run(out)
    train = _videos(task, cfg, "train")
    batches = calibration_batches(train)
    checked_exit_trace(head, batches, [0.2, 0.6])
    assert_exit_reads_less(head, train)
    curve = pd.read_csv(out / "curve.csv")
    assert set(curve.knob) == {"exit"} and curve.gflops_mean.max() > curve.gflops_mean.min()


def test_the_presets_are_the_papers_and_valid():
    for name, preset in PRESETS.items():
        cfg = TrainConfig.from_dict(preset.settings | {"manifest": "m", "cache": "c", "out": "o"}, strict=True)
        assert cfg.feature_sets() == {"coarse": "mobilenet_v2@84", "fine.0": "resnet50@224",
                                      "fine.1": "resnet34@168", "fine.2": "resnet18@112"}, name
        assert cfg.optimizer == "sgd" and cfg.method_settings.skip_lengths == [1, 2, 4] and cfg.grad_clip == 20


def _splitting_policy(head, videos) -> dict:
    """The head's weights with a policy that reads one of the two resolutions at every frame: the first
    where the LSTM's state projects above a threshold, the second elsewhere, the threshold in the widest
    gap between the middle half of the frames' projections (features computed again may differ by a
    float16 rounding; no frame is near it)."""
    coarse = videos.features["coarse"].float().reshape(len(videos), -1, videos.features["coarse"].shape[1])
    state, projections = head.cell.initial_state(len(videos)), []
    direction = torch.randn(head.cell.hidden_size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        for t in range(coarse.shape[1]):
            state = head.cell(coarse[:, t], state)
            projections.append(head.cell.hidden(state) @ direction)
    ordered = torch.cat(projections).sort().values
    middle = ordered[len(ordered) // 4: 3 * len(ordered) // 4 + 1]
    gap = int((middle[1:] - middle[:-1]).argmax())
    weights = head.state_dict()
    weights["policy.weight"] = torch.zeros_like(weights["policy.weight"])
    weights["policy.weight"][0] = direction
    weights["policy.bias"] = torch.full_like(weights["policy.bias"], -1e4)
    weights["policy.bias"][:2] = torch.tensor([-float(middle[gap] + middle[gap + 1]) / 2, 0.0])
    return weights


def test_predict_on_raw_video_runs_each_backbone_only_where_chosen(tmp_path, monkeypatch):
    """Two fine sets extracted in one pass (random weights); c2f predict makes the cache's decisions, runs
    each backbone only on the frames the policy chose for it, and executes the GFLOPs it charges."""
    rows = [(f"v{i}", str(make_video(tmp_path / f"v{i}.mp4", num_frames=30, fps=10)), f"c{i % 2}",
             "train" if i < 2 else "val") for i in range(4)]
    manifest = write_manifest(tmp_path / "m.csv", rows)
    sets = ["mobilenet_v2@112", "resnet18@224", "resnet18@112"]
    extract(ExtractConfig(str(manifest), str(tmp_path / "cache"), sets, num_frames=8, weights=["random"],
                          workers=0, progress=False))
    run = tmp_path / "run"
    train_head(TrainConfig.of(method="arnet", manifest=str(manifest), cache=str(tmp_path / "cache"), out=str(run),
                              fine="resnet18@224,resnet18@112", frames=8, policy_hidden=8, epochs=2, progress=False,
                              device="cpu"))
    cfg, head, _ = load_run(run)
    videos = load_videos(read_manifest(manifest, check_paths=False), "val", tmp_path / "cache", cfg.feature_sets())
    torch.save(_splitting_policy(head, videos), run / "head.pt")
    cached = run_head(load_run(run)[1], videos)
    made = []

    class Recorded(engine.ComputedFeatures):
        def __init__(self, *args):
            super().__init__(*args)
            made.append(self)
    monkeypatch.setattr(engine, "ComputedFeatures", Recorded)
    summary = predict_videos(PredictConfig(run=str(run), out=str(tmp_path / "out"), videos=[r[1] for r in rows[2:]],
                                           progress=False, workers=0, visualize=True))
    assert len(list((tmp_path / "out" / "strips").glob("*.png"))) == 2
    raw = pd.read_csv(tmp_path / "out" / "decisions.csv")
    assert list(raw.columns) == ["video_id", "t", "fine", "fine_set"] and summary["videos"] == 2
    np.testing.assert_array_equal(raw.fine_set, cached.fine_set())      # the videos in the manifest's order
    assert set(raw.fine_set) == {0, 1}                                   # both resolutions in use
    by_set = {f.fs.name: f.computed for f in made}
    for k, name in enumerate(sets[1:]):                      # each backbone ran once on each frame chosen for it
        assert (by_set[name] == (raw.fine_set == k).to_numpy()).all(), name
    executed = pd.read_csv(tmp_path / "out" / "predictions.csv").gflops
    np.testing.assert_allclose(executed, cached.gflops, rtol=0.01)
    one = Predictor.from_run(run, device="cpu").predict(rows[2][1])          # the Python API says the same
    assert one.decisions.fine_set.tolist() == raw.fine_set[raw.video_id == "v2"].tolist()
