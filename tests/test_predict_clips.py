"""`c2f predict` on runs whose fine set is a clip set (a snippet around each sample: SlowFast,
torchvision's video models): the clip network runs only on the snippets the head reads, each cut and
prepared as at extraction, so the features, decisions and GFLOPs are the cache's."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from c2f.config import TrainConfig
from c2f.data import load_videos
from c2f.evaluate import run_head
from c2f.predict import Predictor
from c2f.predict.lazy import LazySnippets
from c2f.training import train_head
from conftest import make_video, write_manifest
from pipeline.core.manifest import read_manifest
from pipeline.extract import ExtractConfig, extract

# r3d_18 at 16 px: a real torchvision video network (16-frame snippets, every 2nd frame), cheap on a CPU
COARSE, CLIP = "mobilenet_v2@112", "r3d_18@16"


@pytest.fixture(scope="module")
def clip_run(tmp_path_factory):
    """Four small videos, the coarse and the clip set extracted in one pass, a liteeval run on them."""
    tmp = tmp_path_factory.mktemp("clips")
    rows = [(f"v{i}", str(make_video(tmp / f"v{i}.mp4", num_frames=30 + 7 * i, fps=10)), f"c{i % 2}",
             "train" if i < 2 else "val") for i in range(4)]
    manifest = write_manifest(tmp / "m.csv", rows)
    extract(ExtractConfig(str(manifest), str(tmp / "cache"), [COARSE, CLIP], num_frames=4, weights=["random"],
                          batch_size=32, workers=0, progress=False))
    train_head(TrainConfig.of(method="liteeval", manifest=str(manifest), cache=str(tmp / "cache"), out=str(tmp / "run"),
                              coarse=COARSE, fine=CLIP, coarse_hidden=4, fine_hidden=8, epochs=2, gamma=0.5,
                              curve=False, progress=False, device="cpu"))
    cached = load_videos(read_manifest(manifest, check_paths=False), "val", tmp / "cache",
                         {"coarse": COARSE, "fine": CLIP})
    return tmp, [r[1] for r in rows[2:]], cached


def _rows_through(module: torch.nn.Module) -> list[int]:
    """A list that counts the inputs `module` runs on (a forward hook)."""
    seen: list[int] = []
    module.register_forward_hook(lambda m, args, out: seen.append(len(args[0])))
    return seen


@pytest.mark.parametrize("budget", [None, 1])
def test_a_clip_run_predicts_on_raw_video_what_it_read_on_the_cache(clip_run, budget):
    """Eager (every sample decoded, snippets cut as read) and lazy (--budget 1: a video stops at its first
    snippet): the decisions and GFLOPs of the evaluation on the cache, the clip network on the snippets
    read and nothing else."""
    tmp, videos, cached = clip_run
    predictor = Predictor.from_run(tmp / "run", device="cpu", budget=budget)
    ran = _rows_through(predictor.runner.modules[CLIP])
    predicted = predictor.predict_many(videos)
    expected = run_head(predictor.head, cached, fine_budget=budget)
    ours = np.concatenate([p.decisions.fine.values for p in predicted])
    assert len(ours) == len(expected.fine_reads()) and (ours == expected.fine_reads()).mean() >= 0.99
    assert 0 < ours.sum() < len(expected.fine_reads())          # the gate chose: some snippets, not all
    assert sum(ran) == ours.sum() == sum(p.fine_reads for p in predicted)
    assert [p.gflops for p in predicted] == pytest.approx(expected.gflops.tolist(), rel=0.01)
    assert np.stack([p.probabilities for p in predicted]) == pytest.approx(expected.scores, abs=2e-3)
    if budget:
        assert [p.frames_decoded for p in predicted] == list(expected.frames_seen())


def test_snippets_are_prepared_as_at_extraction(clip_run):
    """Every snippet of a video, decoded on demand and run: the cache's features up to float16 rounding."""
    tmp, videos, cached = clip_run
    predictor = Predictor.from_run(tmp / "run", device="cpu")
    decoded = predictor.decode("v2", videos[0])
    runner, fs = predictor.runner, predictor.sets["fine"]
    snippets = LazySnippets([decoded.plan], runner.canvas, runner.clip_frames, runner.clip_stride)
    ours = runner.run(fs, fs.prepare_clips(snippets[range(len(snippets))], runner.preprocess)).to(torch.float16)
    snippets.close()
    theirs = cached.features["fine"][: int(cached.offsets[1])]
    assert snippets.read.tolist() == [1] * 4 and cached.video_ids[0] == "v2"
    assert ours.float().numpy() == pytest.approx(theirs.float().numpy(), rel=1e-2, abs=1e-3)
