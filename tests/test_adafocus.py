"""AdaFocus / AdaFocus+ on cached glance maps and patch grids: FLOPs, honest reads, run files, bad input."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from c2f.config import TrainConfig
from c2f.data import load_videos
from c2f.evaluate import run_head
from c2f.heads import HeadDims
from c2f.heads.adafocus import expected
from c2f.heads.adafocus import AdaFocusHead, AdaFocusSettings
from c2f.demo.synthetic import adafocus_cache
from c2f.rundir import load_run
from c2f.training import train_head
from c2f.cli import main
from pipeline.backbones import gflops_per_frame, parse_spec
from pipeline.core.manifest import read_manifest

from conftest import training_killed_when


@pytest.fixture(scope="module")
def small_grid_cache(tmp_path_factory):
    return adafocus_cache(tmp_path_factory.mktemp("grid"), num_train=32, num_val=16, num_classes=3,
                          frames=(8, 12), channels=4, dim=8)


def small_config(cache, out, method="adafocus", **overrides) -> TrainConfig:
    settings = dict(method=method, manifest=str(cache.manifest), cache=str(cache.cache), out=str(out), frames=8,
                    adafocus_hidden=16, stage_epochs=(1, 1, 1), stage_lrs=(0.05, 1e-3, 5e-3), batch_size=16,
                    progress=False)
    return TrainConfig.of(**(settings | overrides))


def test_paper_setting_costs_26_6_gflops():
    """AdaFocus at 128 px, 16 frames, 7x7 candidates, glance MobileNetV2 at 224, GRU 1024, 200 classes:
    glance + patch + policy + classifier per frame, all counted from modules: ~26.6 GFLOPs (paper)."""
    glance = gflops_per_frame(parse_spec("mobilenet_v2@224-map"))
    patch = gflops_per_frame(parse_spec("resnet50@224-grid7x128"))
    head = AdaFocusHead(HeadDims(200, 2048, 1280, (1280, 7, 7), 49, (128 / 224) ** 2), AdaFocusSettings(frames=16))
    c = head.costs
    total = 16 * (glance + patch + c["patch_policy_step"] + c["classifier_step"]) + c["classifier"]
    assert total == pytest.approx(26.6, rel=0.01)


def test_eval_reads_one_patch_per_kept_frame_and_charges_it(small_grid_cache, tmp_path):
    run = tmp_path / "plus"
    metrics = train_head(small_config(small_grid_cache, run, "adafocus_plus", keep_ratio=0.5))
    _, head, classes = load_run(run)
    videos = load_videos(read_manifest(small_grid_cache.manifest, check_paths=False), "val",
                         small_grid_cache.cache, {"coarse": "mobilenet_v2@224-map", "fine": "resnet50@224-grid7x128"},
                         classes)
    first = run_head(head, videos)
    # garbage in every candidate that was not read changes nothing
    read = torch.zeros(videos.features["fine"].shape[:2], dtype=torch.bool)
    frames = np.flatnonzero(first.patches >= 0)
    read[frames, first.patches[frames]] = True
    videos.features["fine"][~read] = torch.randn(int((~read).sum()), 8).half() * 100
    second = run_head(head, videos)
    np.testing.assert_array_equal(first.scores, second.scores)
    assert (first.reads["fine"] <= 1).all()                      # at most one patch a frame
    c = head.costs
    # distinct glance frames read (a short video repeats frames), and the head's 8 steps, each computed
    glances = first.per_video("coarse")
    glance, patch = (videos.sets[role].gflops_per_frame for role in ("coarse", "fine"))     # the cache's prices
    expected = (glances * glance + 8 * (c["classifier_step"] + c["patch_policy_step"] + c["keep_policy_step"])
                + first.fine_count() * patch + c["classifier"])
    np.testing.assert_allclose(first.gflops, expected, rtol=1e-6)
    decisions = pd.read_csv(run / "decisions.csv")
    assert list(decisions.columns) == ["video_id", "t", "fine", "patch"]
    assert ((decisions.patch >= 0) == (decisions.fine == 1)).all()
    assert metrics["fine_mean"] == pytest.approx(decisions.fine.sum() / decisions.video_id.nunique())


@pytest.mark.parametrize("overrides", [dict(policy="random"), dict(policy="central"), dict(policy="gaussian"),
                                       dict(reward="confidence", stage2="ppo"), dict(reward="increments", stage2="ppo"),
                                       dict(reuse=False), dict(stage2="ppo"), dict(stage2="expected-ascent"),
                                       dict(reuse=False, stage2="ppo")])
def test_variants_train_and_write_runs(small_grid_cache, tmp_path, overrides):
    metrics = train_head(small_config(small_grid_cache, tmp_path / "run", **overrides))
    assert metrics["fine_mean"] == 8 and np.isfinite(metrics["gflops_mean"])
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert ("patch_policy_step" in config["head_costs_gmacs"]) == (overrides.get("policy", "learned") == "learned")


def test_label_log_odds_and_candidate_advantages():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 0.0, 0.0]])
    targets = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]])      # single label, two labels
    p = logits.softmax(-1)
    expected_odds = torch.stack([(p[0, 0] / (1 - p[0, 0])).log(), ((p[1, 1] + p[1, 2]) / p[1, 0]).log()])
    torch.testing.assert_close(expected.label_log_odds(logits, targets), expected_odds)
    sure = torch.tensor([[40.0, 0.0], [30.0, 0.0]])
    assert torch.equal(sure.softmax(-1)[:, 0], torch.ones(2))      # the probability cannot tell them apart
    odds = expected.label_log_odds(sure, torch.tensor([[1.0, 0.0]]))
    assert odds[0] > odds[1] > 29                                  # the log-odds still can
    scores = torch.randn(4, 5, 9) * 3 + 7
    advantages = expected.candidate_advantages(scores)
    torch.testing.assert_close(advantages.mean(-1), torch.zeros(4, 5), atol=1e-5, rtol=0)
    assert advantages.std() == pytest.approx(1.0, rel=1e-4)
    assert torch.equal(advantages.argmax(-1), scores.argmax(-1))


def test_expected_objectives_push_the_policy_towards_the_best_candidate():
    """`expected` fits the policy to softmax(A / T) by cross-entropy: its gradient on the logits is
    pi - target, so even a candidate the policy has all but ruled out is pulled up when it is the best;
    `expected-ascent` has the exact gradient of sum pi A, which vanishes there."""
    logits = torch.tensor([[[8.0, 0.0, 0.0]]], requires_grad=True)      # pi(best) ~ 3e-4
    advantages = torch.tensor([[[-1.0, 2.0, -1.0]]])
    expected.policy_loss(logits, advantages, "expected").backward()
    target = (advantages / expected.TEMPERATURE).softmax(-1)
    torch.testing.assert_close(logits.grad, logits.detach().softmax(-1) - target)
    assert logits.grad[0, 0, 1] < -0.5
    logits.grad = None
    expected.policy_loss(logits, advantages, "expected-ascent").backward()
    assert -1e-2 < float(logits.grad[0, 0, 1]) < 0


def test_expected_stage_two_trains_only_the_policy_on_every_candidate(small_grid_cache, tmp_path):
    """Stage II with the default objective: every candidate of the sampled frames is read (training
    is offline on the cache); the loss reaches the patch policy and not the frozen classifier."""
    from c2f.data import Batch
    from c2f.training.inputs import head_dims
    cfg = small_config(small_grid_cache, tmp_path / "run")
    videos = load_videos(read_manifest(small_grid_cache.manifest, check_paths=False), "train", small_grid_cache.cache,
                         cfg.feature_sets())
    head = AdaFocusHead(head_dims(videos, videos.classes), AdaFocusSettings(frames=8, adafocus_hidden=16))
    head.set_stage("II")
    batch = Batch(videos, torch.arange(8))
    before = {k: v.clone() for k, v in head.state_dict().items()}
    optimizer = torch.optim.Adam(head.patch_policy.parameters(), lr=1e-2)
    for loss, logs in head.losses(batch):
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert 0 <= logs["sampled_best"] <= 1
    assert (batch.reads["fine"].sum(-1) % 49 == 0).all() and batch.reads["fine"].any()     # whole grids
    assert all(p.grad is None for p in [*head.classifier.parameters(), *head.classifier_cell.parameters()])
    assert not torch.equal(before["patch_policy.actor.weight"], head.state_dict()["patch_policy.actor.weight"])


def test_central_policy_reads_the_centre(small_grid_cache, tmp_path):
    train_head(small_config(small_grid_cache, tmp_path / "run", policy="central"))
    decisions = pd.read_csv(tmp_path / "run" / "decisions.csv")
    assert set(decisions.patch[decisions.patch >= 0]) == {24}


def test_online_first_k_frames(small_grid_cache, tmp_path):
    from c2f.training.online import evaluate_online
    train_head(small_config(small_grid_cache, tmp_path / "run"))
    rows = pd.DataFrame(evaluate_online(tmp_path / "run", [1, 4, 8], progress=False))
    assert rows.fine_mean.tolist() == [1, 4, 8]
    assert rows.gflops_mean.is_monotonic_increasing


def _cli(cache, out, *extra):
    return CliRunner().invoke(main, ["train-head", "--method", "adafocus", "--manifest", str(cache.manifest),
                                     "--cache", str(cache.cache), "--out", str(out), "--adafocus-hidden", "8",
                                     "--stage-epochs", "1,1,1", "--frames", "8", "--no-progress", *extra])


def test_bad_adafocus_inputs(small_grid_cache, tmp_path):
    result = _cli(small_grid_cache, tmp_path / "a", "--focus", "mobilenet_v2@224-map")
    assert result.exit_code == 2 and "needs a grid feature set for --focus" in result.output
    result = _cli(small_grid_cache, tmp_path / "b", "--glance", "resnet50@224-grid7x128")
    assert result.exit_code == 2 and "needs a map feature set for --glance" in result.output
    result = _cli(small_grid_cache, tmp_path / "c", "--stage-epochs", "1,1")
    assert result.exit_code == 2 and "three comma-separated values" in result.output


def test_fewer_frames_than_segments_is_a_documented_fallback(small_grid_cache, tmp_path, caplog):
    result = _cli(small_grid_cache, tmp_path / "run", "--frames", "16")
    assert result.exit_code == 0, result.output
    assert "fewer cached frames than --frames 16" in caplog.text


def test_large_sets_are_read_lazily_from_the_shards_with_the_same_results(small_grid_cache, tmp_path, monkeypatch):
    """A set over the memory limit is memory-mapped from its shards: training and evaluation give
    exactly what the in-memory path gives."""
    import c2f.data
    from c2f.data import ShardFeatures
    in_memory = train_head(small_config(small_grid_cache, tmp_path / "memory", "adafocus_plus"))
    monkeypatch.setattr(c2f.data, "IN_MEMORY_BYTES", 0)
    lazy = train_head(small_config(small_grid_cache, tmp_path / "lazy", "adafocus_plus"))
    timings = {"seconds": lazy["seconds"], "head_seconds_per_video": lazy["head_seconds_per_video"],
               "training": in_memory["training"] | {"seconds": lazy["training"]["seconds"]}}
    assert lazy == in_memory | timings
    videos = load_videos(read_manifest(small_grid_cache.manifest, check_paths=False), "val", small_grid_cache.cache,
                         {"coarse": "mobilenet_v2@224-map", "fine": "resnet50@224-grid7x128"})
    assert isinstance(videos.features["fine"], ShardFeatures) and isinstance(videos.features["coarse"], ShardFeatures)
    a = torch.load(tmp_path / "memory" / "head.pt", weights_only=True)
    b = torch.load(tmp_path / "lazy" / "head.pt", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_crash_between_stages_resumes_at_the_next_one(small_grid_cache, tmp_path, caplog):
    """Killed as stage II starts (its checkpoint holds stage I's optimiser), the rerun resumes there and
    ends with the head an uninterrupted run gives."""
    train_head(small_config(small_grid_cache, tmp_path / "straight"))
    cfg = small_config(small_grid_cache, tmp_path / "killed")
    with training_killed_when(lambda progress: progress.stage == 1), pytest.raises(KeyboardInterrupt):
        train_head(cfg)
    with caplog.at_level("WARNING"):
        train_head(cfg)
    assert "resuming" in caplog.text and "starts over" not in caplog.text
    a = torch.load(tmp_path / "straight" / "head.pt", weights_only=True)
    b = torch.load(tmp_path / "killed" / "head.pt", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)
