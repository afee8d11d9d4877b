"""`c2f finetune-backbone`: weights that phase one loads, a resume after a crash, clear errors."""
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import pipeline.finetune as finetune_module
from c2f.cli import main
from pipeline import backbones as bb
from c2f.demo.videos import DemoVideoConfig, write_demo_videos
from pipeline.finetune import FinetuneConfig, finetune


@pytest.fixture(scope="module")
def demo_manifest(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    return write_demo_videos(DemoVideoConfig(out=str(out), train_videos=5, val_videos=3, progress=False))


def small(manifest, out, **kw):
    # resnet18 at 64 px keeps the test fast; the demo fine-tunes at 224
    return FinetuneConfig(str(manifest), "resnet18@64", str(out), num_frames=3, epochs=2, batch_size=4,
                          progress=False, **kw)


def test_weights_load_into_phase_one_and_change_its_features(demo_manifest, tmp_path):
    record = finetune(small(demo_manifest, tmp_path / "new" / "ft.pt"))
    assert record["train_frames"] == 15 and len(record["history"]) == 2
    assert 0 <= record["val_frame_accuracy"] <= 1 and 0 <= record["val_video_accuracy"] <= 1
    assert json.loads((tmp_path / "new" / "ft.pt.json").read_text())["classes"] == record["classes"]
    assert not (tmp_path / "new" / "ft.pt.partial").exists()
    state = torch.load(tmp_path / "new" / "ft.pt", weights_only=True)
    assert not any(key.startswith("fc.") for key in state)          # the ImageNet head is not saved
    fs = bb.parse_spec("resnet18@64")
    tuned, untouched = bb.build(fs, str(tmp_path / "new" / "ft.pt")), bb.build(fs, "random")
    x = torch.rand(2, 3, 64, 64)
    assert not torch.allclose(tuned(x), untouched(x))
    assert torch.equal(tuned.trunk[0].weight, state["conv1.weight"])


def test_a_crash_resumes_from_the_last_epoch(demo_manifest, tmp_path, monkeypatch):
    whole = finetune(small(demo_manifest, tmp_path / "whole.pt"))
    real_tqdm = finetune_module.tqdm

    def crash_in_epoch_two(*args, **kw):
        if kw.get("desc") == "epoch 2/2":
            raise KeyboardInterrupt
        return real_tqdm(*args, **kw)
    monkeypatch.setattr(finetune_module, "tqdm", crash_in_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        finetune(small(demo_manifest, tmp_path / "resumed.pt"))
    assert (tmp_path / "resumed.pt.partial").exists() and not (tmp_path / "resumed.pt").exists()
    monkeypatch.setattr(finetune_module, "tqdm", real_tqdm)
    resumed = finetune(small(demo_manifest, tmp_path / "resumed.pt"))
    assert resumed["history"] == whole["history"]
    a, b = torch.load(tmp_path / "whole.pt", weights_only=True), torch.load(tmp_path / "resumed.pt", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_max_pooling_trains_on_whole_videos(demo_manifest, tmp_path):
    record = finetune(small(demo_manifest, tmp_path / "mil.pt", pooling="max"))
    assert np.isfinite(record["history"][-1]["loss"])


def test_cli_errors_are_one_line(demo_manifest, tmp_path):
    runner = CliRunner()
    base = ["finetune-backbone", "--manifest", str(demo_manifest), "--out", str(tmp_path / "x.pt")]
    grid = runner.invoke(main, base + ["--backbone", "resnet18@224-grid3x96"])
    assert grid.exit_code == 2 and "fine-tune the plain backbone" in grid.output
    missing = runner.invoke(main, base + ["--backbone", "resnet18@64", "--init", str(tmp_path / "nope.pt")])
    assert missing.exit_code == 2 and "weights file not found" in missing.output
    nothing = runner.invoke(main, base + ["--backbone", "resnet18@64", "--split", "test"])
    assert nothing.exit_code == 2 and "no 'test' videos" in nothing.output
