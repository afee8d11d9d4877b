"""Listen to Look (image-based): evaluation reads the expensive feature of the picked frames alone (never
twice) and is charged for exactly that plus its counted steps, training reads densely, the number of
picks is the curve's knob, early exit reads nothing after the exit, the quality bar in miniature, the
paper's optimiser. (`c2f predict` on raw video: tests/test_early_exit.py, on its videos.)"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from c2f.config import TrainConfig
from c2f.data import Batch, load_videos, segment_positions
from c2f.demo.synthetic import liteeval_cache
from c2f.evaluate import run_head
from c2f.heads import HeadDims
from c2f.heads.listentolook import ListenToLookHead, ListenToLookSettings
from c2f.rundir import load_run
from c2f.training import train_head
from c2f.training.operating import calibration_batches
from c2f.training.presets import preset
from c2f.training.schedule import make_optimizer
from pipeline.backbones import gflops_per_frame, parse_spec
from pipeline.core.manifest import read_manifest

from conftest import checked_exit_trace

SETS = {"coarse": "mobilenet_v2@112", "fine": "resnet101@224"}


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """Videos of 4-12 frames (shorter than 8 candidates: repeated positions), 3 classes."""
    return liteeval_cache(tmp_path_factory.mktemp("ltl"), num_train=48, num_val=24, num_classes=3, frames=(4, 12),
                          coarse=(SETS["coarse"], 8), fine=(SETS["fine"], 12))


def _videos(cache, split="val"):
    return load_videos(read_manifest(cache.manifest, check_paths=False), split, cache.cache, SETS)


def _head(picks=3, frames=8) -> ListenToLookHead:
    torch.manual_seed(0)
    return ListenToLookHead(HeadDims(3, 12, 8), ListenToLookSettings(frames=frames, picks=picks, fine_hidden=16,
                                                                    attention_dim=8))


def _train(cache, out, **overrides):
    settings = dict(method="listentolook", manifest=str(cache.manifest), cache=str(cache.cache), out=str(out),
                    frames=8, picks=3, fine_hidden=16, attention_dim=8, epochs=3, batch_size=16, progress=False,
                    device="cpu")
    return train_head(TrainConfig.of(**(settings | overrides)))


def test_evaluation_reads_the_picked_frames_once_and_is_charged_for_them(cache):
    """The coarse feature of every candidate, the fine feature of `picks` distinct frames (fewer where a
    video has fewer frames): garbage in every unread fine feature changes nothing, and the GFLOPs are the
    reads times the sets' GFLOPs plus the head's counted steps."""
    videos, head = _videos(cache), _head(picks=6)
    first = run_head(head, videos)
    candidates = [set(segment_positions(torch.tensor([n]), 8)[0].tolist()) for n in videos.lengths.tolist()]
    coarse, fine = first.per_video("coarse"), first.fine_count()
    assert coarse.tolist() == [len(c) for c in candidates]
    assert fine.tolist() == [min(6, len(c)) for c in candidates] and (fine < 6).any()
    read = first.reads["fine"] > 0
    assert ((first.reads["coarse"] > 0) | ~read).all()          # a fine read only at a candidate
    videos.features["fine"][torch.from_numpy(~read)] = torch.randn(int((~read).sum()), 12).half() * 100
    second = run_head(head, videos)
    np.testing.assert_array_equal(first.scores, second.scores)
    np.testing.assert_array_equal(first.reads["fine"], second.reads["fine"])
    c = head.costs
    own = 8 * c["key"] + fine * (c["step"] + c["attend"]) + c["classifier"]
    coarse_cost, fine_cost = (videos.sets[role].gflops_per_frame for role in ("coarse", "fine"))   # the cache's
    np.testing.assert_allclose(first.gflops, coarse * coarse_cost + fine * fine_cost + own, rtol=1e-6)


def test_costs_are_counted_from_the_modules_and_training_reads_densely(cache):
    head, H, A = _head(), 16, 8
    c = head.costs
    assert c["step"] == pytest.approx(4 * H * (8 + 12 + H) / 1e9)
    assert c["attend"] == pytest.approx((H * H + H * A + 8 * A) / 1e9)     # the query MLP, 8 dot products
    assert c["key"] == pytest.approx(8 * A / 1e9) and c["classifier"] == pytest.approx(12 * 3 / 1e9)
    videos = _videos(cache, "train")
    batch = Batch(videos, torch.arange(len(videos)))
    head.train()
    out = head(batch)
    assert torch.equal(batch.reads["fine"], batch.reads["coarse"])     # every candidate's fine feature
    out.logits.sum().backward()
    assert head.attention.key[0].weight.grad.abs().sum() > 0           # the choice gets a gradient


@pytest.fixture(scope="module")
def trained(cache, tmp_path_factory):
    """A run of 4 picks of 8 candidates, with its curve."""
    run = tmp_path_factory.mktemp("ltl_run") / "run"
    _train(cache, run, picks=4)
    return run


def test_the_number_of_picks_is_the_curves_knob(trained):
    curve = pd.read_csv(trained / "curve.csv")
    assert set(curve.knob) == {"picks", "exit", "budget"}
    picks = curve[curve.knob == "picks"].sort_values("target")
    assert picks.value.tolist() == [1, 2, 4, 6, 8, 10, 12, 16]
    assert picks.gflops_mean.is_monotonic_increasing and picks.fine_rate.is_monotonic_increasing
    fine_cost = gflops_per_frame(parse_spec(SETS["fine"]))
    assert picks.gflops_mean.iloc[2] > picks.gflops_mean.iloc[0] + 3 * fine_cost     # 4 picks read 3 more frames
    assert picks.top1.nunique() > 1


def test_early_exit_costs_what_the_trace_says_and_reads_nothing_after_the_exit(cache, trained):
    _, head, _ = load_run(trained)
    train = _videos(cache, "train")
    batches = calibration_batches(train)
    checked_exit_trace(head, batches, [0.2, 0.6])
    exiting = run_head(head, train)
    head.exit_threshold.fill_(float("inf"))
    full = run_head(head, train)
    stopped, everything = exiting.reads["fine"] > 0, full.reads["fine"] > 0
    assert (stopped <= everything).all()           # the picks before the exit are those without it
    fewer = exiting.fine_count() < full.fine_count()
    assert fewer.any() and (exiting.gflops[fewer] < full.gflops[fewer]).all()


def test_it_beats_uniform_frames_where_few_frames_hold_the_class(tmp_path):
    """The quality bar in miniature: the class only in the fine feature of 1-2 frames of 12-16, which the
    cheap feature marks; two picks beat two (and three) evenly spaced frames."""
    syn = liteeval_cache(tmp_path, num_train=120, num_val=90, num_classes=3, frames=(12, 16), informative=(1, 2),
                         coarse=(SETS["coarse"], 8), fine=(SETS["fine"], 12), evidence=5.0)
    common = dict(manifest=str(syn.manifest), cache=str(syn.cache), progress=False, curve=False, device="cpu",
                  epochs=12)
    ours = train_head(TrainConfig.of(method="listentolook", out=str(tmp_path / "ltl"), picks=2, fine_hidden=16,
                                     attention_dim=16, **common))
    uniform = [train_head(TrainConfig.of(method="uniform", out=str(tmp_path / f"u{k}"), frames=k, **common))
               for k in (2, 3)]
    print(f"listentolook {ours['top1']:.3f} at {ours['gflops_mean']:.2f} GFLOPs; uniform "
          + ", ".join(f"{u['top1']:.3f} at {u['gflops_mean']:.2f}" for u in uniform))
    assert ours["gflops_mean"] < uniform[1]["gflops_mean"]
    assert ours["top1"] >= max(u["top1"] for u in uniform) + 0.2


def test_the_papers_optimiser():
    """--preset listentolook-activitynet: SGD with Nesterov momentum 0.9, L2 1e-4, the rate / 10 at epochs 15
    and 20 of 25 (the authors' README command)."""
    cfg = TrainConfig.of(**(preset("listentolook-activitynet") | dict(manifest="m", cache="c", out="o")))
    head = ListenToLookHead(HeadDims(5, 12, 8), cfg.method_settings)
    stage = head.training_stages([25], [cfg.lr])[0]
    optimizer, schedule = make_optimizer(stage, cfg, batches_per_epoch=4)
    group = optimizer.param_groups[0]
    assert isinstance(optimizer, torch.optim.SGD) and group["nesterov"] and group["momentum"] == 0.9
    assert group["weight_decay"] == 1e-4 and group["lr"] == 0.01 and cfg.grad_clip == 0
    assert sorted(schedule.milestones) == [60, 80]
