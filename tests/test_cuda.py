"""The CUDA path, against the CPU: what `c2f extract`, `c2f train-head` and `c2f predict` do differently
on a GPU (bf16 autocast, channels_last, pinned staging buffers, the batch size fitted to the free
memory, heads, batches and policies' rollouts on the device).

Marked `cuda`: they skip where there is no CUDA device (tests/conftest.py); `bench/gpu.sh` runs them on
a lent GPU. `C2F_CUDA_TESTS_DEVICE=cpu` runs the same tests on the CPU (in bf16 where the GPU would be),
to check the tests themselves where no GPU is.
"""
from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest
import torch

from c2f.config import TrainConfig
from c2f.data import load_videos
from c2f.demo.synthetic import adafocus_cache, liteeval_cache
from c2f.evaluate import decision_rows, run_head
from c2f.predict import PredictConfig, predict_videos
from c2f.rundir import load_run
from c2f.training import train_head
from conftest import blocks_image, make_video, write_manifest
from pipeline import backbones as bb
from pipeline.batching import GPU_BATCH_MAX, measured_gpu_batch
from pipeline.cache import read_feature_set
from pipeline.core.manifest import read_manifest
from pipeline.extract import ExtractConfig, extract
from pipeline.runner import FeatureRunner

DEVICE = os.environ.get("C2F_CUDA_TESTS_DEVICE", "cuda")
pytestmark = pytest.mark.cuda

COARSE, FINE, GLANCE, FOCUS = "mobilenet_v2@112", "resnet18@112", "mobilenet_v2@112-map", "resnet18@112-grid3x48"


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """Eight small H.264 videos (four train, four val) of two classes, and their manifest; every frame
    different (random colour blocks), so that a feature of the wrong frame shows."""
    tmp = tmp_path_factory.mktemp("cuda_videos")
    rows = [(f"v{i}", str(make_video(tmp / f"v{i}.mp4", num_frames=20 + 4 * i, fps=10, width=160, height=120,
                                     image_of=lambda k, w, h, i=i: blocks_image(1000 * i + k, w, h))),
             f"c{i % 2}", "train" if i < 4 else "val") for i in range(8)]
    return tmp, write_manifest(tmp / "manifest.csv", rows)


def extracted(manifest, out, device: str, precision: str, workers: int):
    return extract(ExtractConfig(str(manifest), str(out), [COARSE, FINE, GLANCE, FOCUS], num_frames=4,
                                 weights=["random"], device=device, precision=precision, workers=workers,
                                 progress=False))


@pytest.fixture(scope="module")
def gpu_cache(videos):
    """The videos extracted on the device as `c2f extract` does by default there (bf16, channels_last,
    decoding workers with pinned chunks, the batch size fitted to the device's memory)."""
    tmp, manifest = videos
    summary = extracted(manifest, tmp / "gpu_cache", DEVICE, "bf16", workers=1)
    assert summary.done == 8 and summary.failed == 0
    return tmp / "gpu_cache"


def correlations(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation of every row of a (a frame, or a frame's patch) with every row of b."""
    def standard(x):
        x = x.reshape(len(x), -1).astype(np.float64)
        x = x - x.mean(1, keepdims=True)
        return x / np.linalg.norm(x, axis=1, keepdims=True)
    return standard(a) @ standard(b).T


def test_extraction_on_the_gpu_matches_the_cpu(videos, gpu_cache):
    """Every set's features from the device in bf16 are the CPU's fp32 features up to bf16's rounding
    (a correlation of at least 0.85, median 0.95: bf16 against fp32 on the CPU gave at least 0.938 for
    these random-weight networks, and features of other frames at most 0.72), and each frame's (each
    patch's) features are nearest to its own CPU features: no frame's features went to another."""
    tmp, manifest = videos
    extracted(manifest, tmp / "cpu_cache", "cpu", "fp32", workers=0)
    for name in (COARSE, FINE, GLANCE, FOCUS):
        on_gpu, on_cpu = read_feature_set(gpu_cache / name), read_feature_set(tmp / "cpu_cache" / name)
        assert sorted(on_gpu) == sorted(on_cpu) == [f"v{i}" for i in range(8)]
        for video_id, ours in on_gpu.items():
            np.testing.assert_array_equal(ours.timestamps, on_cpu[video_id].timestamps)
            assert ours.features.shape == on_cpu[video_id].features.shape
        rows = (lambda f: f.reshape(len(f), -1)) if name == GLANCE else (lambda f: f.reshape(-1, f.shape[-1]))
        r = correlations(np.concatenate([rows(on_gpu[v].features) for v in sorted(on_gpu)]),
                         np.concatenate([rows(on_cpu[v].features) for v in sorted(on_gpu)]))
        same = np.diag(r)
        assert np.median(same) > 0.95 and same.min() > 0.85, (name, np.median(same), same.min())
        assert (r.argmax(1) == np.arange(len(r))).all(), name
    attrs = json.loads((gpu_cache / FINE / "index.json").read_text())["attrs"]
    assert attrs["precision"] == "bf16" and attrs["channels_last"] == 1
    batch = attrs["batch_size"]             # fitted to the GPU's free memory: a power of two up to 256
    assert 1 <= batch <= GPU_BATCH_MAX and batch & (batch - 1) == 0


def test_the_runner_stages_in_pinned_memory_and_pads_every_call():
    """On CUDA the decoded squares are staged in pinned memory (asynchronous copies); a frame's feature
    does not depend on the frames beside it in its call (every call is padded to the batch size), so
    a resumed extraction is bit-identical on the device too; the batch fitted to the device's memory."""
    spec = bb.parse_spec(FINE)
    runner = FeatureRunner([spec], {spec.name: "random"}, torch.device(DEVICE), 4, "bf16", True)
    torch.manual_seed(0)
    parts = [torch.randint(0, 256, (n, runner.canvas, runner.canvas, 3), dtype=torch.uint8) for n in (3, 2)]
    staged = runner.stage("images", parts)
    assert staged.is_pinned() == (torch.device(DEVICE).type == "cuda")
    assert torch.equal(staged, torch.cat(parts))
    whole = runner(staged.clone(), None)[spec.name]
    apart = np.concatenate([runner(part, None)[spec.name] for part in parts])
    assert whole.shape == (5, spec.feature_dim) and np.isfinite(whole).all()
    np.testing.assert_array_equal(whole, apart)
    if torch.device(DEVICE).type == "cuda":
        batch = measured_gpu_batch(runner)
        assert 1 <= batch <= GPU_BATCH_MAX and batch & (batch - 1) == 0


def synthetic_run(tmp_path, method: str, overrides: dict) -> tuple:
    """A tiny synthetic cache for `method` and its TrainConfig on the device."""
    if method == "liteeval":
        data = liteeval_cache(tmp_path / "data", num_train=48, num_val=24, num_classes=3, frames=(6, 10))
        settings = dict(coarse="mobilenet_v2@112", fine="resnet101@224", coarse_hidden=8, fine_hidden=16, epochs=2)
    else:
        data = adafocus_cache(tmp_path / "data", num_train=32, num_val=16, num_classes=3, frames=(8, 12),
                              channels=4, dim=8)
        settings = dict(frames=8, adafocus_hidden=16, stage_epochs=(1, 1, 1), stage_lrs=(0.05, 1e-3, 5e-3))
    cfg = TrainConfig.of(method=method, manifest=str(data.manifest), cache=str(data.cache), out=str(tmp_path / "run"),
                         batch_size=16, device=DEVICE, progress=False, **(settings | overrides))
    return data, cfg


@pytest.mark.parametrize("method, overrides", [("liteeval", {}), ("adafocus", {}), ("adafocus", {"stage2": "ppo"}),
                                               ("adafocus_plus", {"keep_ratio": 0.5})],
                         ids=["liteeval", "adafocus", "adafocus-ppo", "adafocus_plus"])
def test_train_head_on_the_gpu(tmp_path, method, overrides):
    """Training and evaluation on the device (every stage: AdaFocus's rollouts, PPO, the keep threshold);
    the saved head loads on a CPU-only machine and gives there the classes and decisions the run wrote."""
    data, cfg = synthetic_run(tmp_path, method, overrides)
    metrics = train_head(cfg)
    assert np.isfinite(metrics["top1"])
    _, head, classes = load_run(cfg.out, "cpu")
    assert all(p.device.type == "cpu" for p in head.parameters())
    evaluation = load_videos(read_manifest(data.manifest, check_paths=False), "val", data.cache, cfg.feature_sets(),
                             classes)
    result = run_head(head, evaluation, device="cpu")
    theirs = pd.read_csv(tmp_path / "run" / "decisions.csv")
    ours = pd.DataFrame(list(decision_rows(result)), columns=theirs.columns)
    assert len(ours) == len(theirs)
    assert (ours.iloc[:, 2:].to_numpy() == theirs.iloc[:, 2:].to_numpy()).all(1).mean() >= 0.95
    predicted = pd.read_csv(tmp_path / "run" / "predictions.csv").set_index("video_id").pred
    ours_pred = [classes[k] for k in result.scores.argmax(1)]
    assert np.mean(np.array(ours_pred) == predicted.loc[list(result.video_ids)].to_numpy()) >= 0.95


@pytest.mark.parametrize("method", ["liteeval", "adafocus"])
def test_predict_on_the_gpu_gives_the_caches_decisions(videos, gpu_cache, tmp_path, method):
    """A head trained on the device on a cache extracted on the device: `c2f predict` there, on the raw
    videos, makes the decisions and predicts the classes the run wrote from the cache."""
    tmp, manifest = videos
    sets = dict(coarse=COARSE, fine=FINE) if method == "liteeval" else dict(glance=GLANCE, focus=FOCUS)
    settings = dict(coarse_hidden=8, fine_hidden=16, epochs=2, gamma=0.5) if method == "liteeval" else \
        dict(frames=4, adafocus_hidden=16, stage_epochs=(1, 1, 1))
    train_head(TrainConfig.of(method=method, manifest=str(manifest), cache=str(gpu_cache), out=str(tmp_path / "run"),
                              device=DEVICE, progress=False, **sets, **settings))
    summary = predict_videos(PredictConfig(str(tmp_path / "run"), str(tmp_path / "predicted"), manifest=str(manifest),
                                           split="val", device=DEVICE, workers=0, progress=False))
    assert summary["videos"] == 4 and summary["errors"] == 0
    ours, theirs = (pd.read_csv(folder / "decisions.csv") for folder in (tmp_path / "predicted", tmp_path / "run"))
    assert len(ours) == len(theirs) == 16
    assert (ours.fine.values == theirs.fine.values).mean() >= 0.9
    if method == "adafocus":
        assert (ours.patch.values == theirs.patch.values).mean() >= 0.9
    ours, theirs = (pd.read_csv(folder / "predictions.csv").set_index("video_id")
                    for folder in (tmp_path / "predicted", tmp_path / "run"))
    # a head this small and briefly trained scores its two classes nearly alike: one video's class may
    # turn on the bf16 rounding of features computed in other batches than the cache's
    assert (ours.pred == theirs.pred.loc[ours.index]).mean() >= 0.75
