"""AdaFrame: its reward and returns, the utility threshold solved on a recorded pass, the global memory's
counted cost, an evaluation that reads only the frames it visits and charges exactly those, the
utility's stop (and early exit, and an online budget) reading nothing after it, and its curve."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from c2f.blocks.memory import GlobalMemory, positional_encoding
from c2f.config import TrainConfig
from c2f.data import Batch, load_videos
from c2f.demo.synthetic import liteeval_cache
from c2f.evaluate import run_head
from c2f.heads import HeadDims
from c2f.heads.adaframe import AdaFrameHead, AdaFrameSettings, margins, returns, steps_at, threshold_for_steps
from c2f.rundir import load_run
from c2f.training import train_head
from pipeline.core.manifest import read_manifest

ROLES = {"coarse": "mobilenet_v2@112", "fine": "resnet101@224"}


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return liteeval_cache(tmp_path_factory.mktemp("adaframe"), num_train=40, num_val=20, num_classes=3, frames=(6, 12),
                          coarse=("mobilenet_v2@112", 8), fine=("resnet101@224", 12))


def _videos(cache, split="val"):
    return load_videos(read_manifest(cache.manifest, check_paths=False), split, cache.cache, ROLES)


def _moving_head(settings=AdaFrameSettings(frames=6, memory_frames=4, max_steps=4, fine_hidden=8)) -> AdaFrameHead:
    """An untrained head whose locations differ from step to step and video to video."""
    torch.manual_seed(0)
    head = AdaFrameHead(HeadDims(num_classes=3, fine_dim=12, coarse_dim=8), settings)
    torch.nn.init.normal_(head.locator.weight, std=3.0)
    return head.eval()


def test_the_reward_is_the_gain_over_the_best_margin_before():
    # true class 0; margins -0.3, 0.3, 0.1: the second step gains 0.6 over the best before, the third nothing
    probs = torch.tensor([[[0.2, 0.5, 0.3], [0.6, 0.3, 0.1], [0.5, 0.4, 0.1]]])
    targets = torch.tensor([[1.0, 0.0, 0.0]])
    assert margins(probs.log(), targets)[0].tolist() == pytest.approx([-0.3, 0.3, 0.1])
    # each location is credited with the discounted rewards of the steps after it
    assert returns(margins(probs.log(), targets), 0.9)[0].tolist() == pytest.approx([0.6, 0.0])
    rising = torch.tensor([[0.0, 0.1, 0.3]])
    assert returns(rising, 0.5)[0].tolist() == pytest.approx([0.1 + 0.5 * 0.2, 0.2])


def test_the_utility_threshold_is_the_highest_that_takes_enough_steps():
    utilities = np.array([[0.5, 0.1, 0.4], [0.2, 0.3, 0.05]])          # after steps 1-3 of 4
    assert steps_at(utilities, 0.1).tolist() == [2, 3] and steps_at(utilities, -math.inf).tolist() == [4, 4]
    assert threshold_for_steps(utilities, 2.5) == 0.1
    assert threshold_for_steps(utilities, 1.0) == 0.5
    assert threshold_for_steps(utilities, 4.0) == -math.inf


def test_the_memory_reads_by_attention_and_its_cost_is_counted():
    encoding = positional_encoding(3, 4)
    assert encoding[0].tolist() == [0.0, 1.0, 0.0, 1.0] and encoding[2, 0] == pytest.approx(math.sin(2.0))
    memory = GlobalMemory(query_size=5, dim=4, entries=3)
    entries = memory.encode(torch.randn(2, 3, 4))
    context, weights = memory(entries, torch.randn(2, 5))
    torch.testing.assert_close(weights.sum(1), torch.ones(2))
    torch.testing.assert_close(context, (weights[:, :, None] * entries).sum(1))
    head = AdaFrameHead(HeadDims(num_classes=10, fine_dim=2048, coarse_dim=1280), AdaFrameSettings(fine_hidden=512))
    # the query's linear map, the scores and the weighted sum of the 16 entries
    assert head.costs["memory"] == pytest.approx((512 * 1280 + 2 * 16 * 1280) / 1e9)
    assert head.costs["step"] == pytest.approx(4 * 512 * (2048 + 1280 + 512) / 1e9)


def test_evaluation_reads_only_the_frames_it_visits_and_charges_them(cache):
    videos = _videos(cache)
    head = _moving_head()
    result = run_head(head, videos)
    fine = result.per_video("fine")
    assert (fine >= 1).all() and (fine <= 4).all() and (fine > 1).any()
    assert (result.per_video("coarse") <= 4).all()
    steps = torch.full((len(videos),), 4.0)
    per_video = head._cost(steps).double().numpy()
    coarse_cost, fine_cost = (videos.sets[role].gflops_per_frame for role in ("coarse", "fine"))   # the cache's
    assert result.gflops == pytest.approx(fine * fine_cost + result.per_video("coarse") * coarse_cost + per_video)
    # garbage in every fine feature the evaluation did not read changes nothing
    unread = torch.from_numpy(result.reads["fine"] == 0)
    videos.features["fine"] = videos.features["fine"].clone()
    videos.features["fine"][unread] = torch.finfo(torch.float16).max
    again = run_head(head, videos)
    np.testing.assert_array_equal(again.scores, result.scores)


def test_the_utility_stop_early_exit_and_a_budget_read_nothing_after_the_stop(cache):
    videos = _videos(cache)
    head = _moving_head()
    full = run_head(head, videos)
    for knob, value, budget in (("utility_threshold", math.inf, None), ("exit_threshold", 0.0, None),
                                ("utility_threshold", -math.inf, 2)):
        getattr(head, knob).fill_(value)
        stopped = run_head(head, videos, fine_budget=budget)
        visited = 2 if budget else 1
        assert (stopped.per_video("fine") <= visited).all()
        assert (stopped.gflops < full.gflops).all()
        getattr(head, knob).fill_(-math.inf if knob == "utility_threshold" else math.inf)
    # the threshold solved for a share of the steps on these videos gives that share
    batches = [Batch(videos, torch.arange(len(videos)))]
    half, whole = head.utility_thresholds_for(batches, [0.5, 1.0])
    assert whole == -math.inf
    head.utility_threshold.fill_(half)
    assert head._forward_eval(batches[0], None).head_gmacs.mean() >= float(head._cost(torch.tensor(2.0))) - 1e-12


def test_a_run_solves_its_threshold_and_draws_its_curve(cache, tmp_path):
    metrics = train_head(TrainConfig.of(method="adaframe", manifest=str(cache.manifest), cache=str(cache.cache),
                                        out=str(tmp_path / "run"), frames=6, memory_frames=4, max_steps=4,
                                        stop_share=0.5, fine_hidden=8, epochs=2, batch_size=16, progress=False))
    assert metrics["train_mean_steps"] >= 2.0 and np.isfinite(metrics["utility_threshold"])
    _, head, _ = load_run(tmp_path / "run")
    assert float(head.utility_threshold) == pytest.approx(metrics["utility_threshold"])
    curve = pd.read_csv(tmp_path / "run" / "curve.csv")
    assert set(curve.knob) == {"utility", "exit", "budget"}
    utility = curve[curve.knob == "utility"].sort_values("target")
    assert utility.value.is_monotonic_decreasing and utility.gflops_mean.is_monotonic_increasing
    assert utility.gflops_mean.iloc[-1] > utility.gflops_mean.iloc[0]

