"""Runs a researcher can trust and repeat: config.json is a valid --config that repeats the run bit for
bit, the papers' presets, settings files, log.csv for every stage, and a run folder that never blocks."""
from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from c2f.config import TrainConfig
from c2f.demo.synthetic import adafocus_cache, liteeval_cache
from c2f.heads import HeadDims, build_head
from c2f.training.presets import PRESETS
from c2f.training.schedule import make_optimizer, planned_epochs, width_scaled
from c2f.cli import main


@pytest.fixture(scope="module")
def caches(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    lite = liteeval_cache(root / "lite", num_train=40, num_val=16, num_classes=3, frames=(3, 8),
                          coarse=("mobilenet_v2@112", 8), fine=("resnet101@224", 12))
    grid = adafocus_cache(root / "grid", num_train=24, num_val=8, num_classes=3, frames=(6, 8), grid=3, channels=4,
                          dim=8)
    return lite, grid


def train(*args):
    result = CliRunner().invoke(main, ["train-head", "--no-progress", *map(str, args)])
    return result


def test_config_json_repeats_the_run_bit_for_bit(caches, tmp_path):
    lite, _ = caches
    first = train("--method", "liteeval", "--manifest", lite.manifest, "--cache", lite.cache, "--out", tmp_path / "a",
                  "--coarse-hidden", "4", "--fine-hidden", "8", "--gamma", "0.2", "--epochs", "3", "--lr", "0.01")
    assert first.exit_code == 0, first.output
    config = json.loads((tmp_path / "a" / "config.json").read_text())
    assert config["settings"]["manifest"] == str(lite.manifest.resolve()) and "progress" not in config["settings"]
    assert config["provenance"]["c2f"] and config["provenance"]["torch"] == torch.__version__
    assert "train-head" in config["provenance"]["command"]
    again = train("--config", tmp_path / "a" / "config.json", "--out", tmp_path / "b")
    assert again.exit_code == 0, again.output
    metrics = [json.loads((tmp_path / run / "metrics.json").read_text()) for run in ("a", "b")]
    for key in ("top1", "mAP", "gflops_mean", "fine_mean", "gate_threshold"):
        assert metrics[0][key] == metrics[1][key], key
    heads = [torch.load(tmp_path / run / "head.pt", weights_only=True) for run in ("a", "b")]
    assert all(torch.equal(heads[0][k], heads[1][k]) for k in heads[0])


def test_settings_come_from_defaults_preset_file_then_flags(caches, tmp_path):
    lite, _ = caches
    (tmp_path / "s.yaml").write_text(f"method: liteeval\nmanifest: {lite.manifest}\ncache: {lite.cache}\n"
                                     "gamma: 0.3\ncoarse_hidden: 4\nfine_hidden: 8\nepochs: 1\n")
    result = train("--preset", "liteeval-activitynet", "--config", tmp_path / "s.yaml", "--gamma", "0.25",
                   "--out", tmp_path / "r")
    assert result.exit_code == 0, result.output
    settings = json.loads((tmp_path / "r" / "config.json").read_text())["settings"]
    assert (settings["gamma"], settings["coarse_hidden"], settings["batch_size"], settings["lr"]) == (0.25, 4, 128, 1e-4)
    (tmp_path / "bad.yaml").write_text("method: liteeval\ngama: 0.3\n")
    result = train("--config", tmp_path / "bad.yaml", "--manifest", lite.manifest, "--cache", lite.cache,
                   "--out", tmp_path / "x")
    assert result.exit_code == 2 and "unknown settings: gama" in result.output
    (tmp_path / "broken.yaml").write_text("method: [liteeval\n")
    assert "not valid YAML" in train("--config", tmp_path / "broken.yaml").output


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_trains_with_the_papers_optimiser_exactly(name):
    """A preset is a valid run whose optimiser groups are the paper's: its rate on every weight (no width
    scaling), its optimiser and its weight decay, as metrics.json's `training` records them."""
    cfg = TrainConfig.from_dict(PRESETS[name].settings | {"manifest": "m", "cache": "c", "out": "o"}, strict=True)
    assert cfg.method == PRESETS[name].settings["method"] and PRESETS[name].source
    sets = {role: (1280, 7, 7) if "map" in spec else (2048,) for role, spec in cfg.feature_sets().items()}
    if cfg.record.role_of_kind("grid"):
        sets["fine"] = (49, 2048)
    attrs = {role: {"grid": 7, "patch_size": 128, "input_size": 224, "gflops_per_frame": 1.0} if len(shape) == 2
             else {"gflops_per_frame": 1.0} for role, shape in sets.items()}
    head = build_head(cfg, HeadDims.of(sets, attrs, 200))
    stages = head.training_stages(planned_epochs(cfg, 1000)[0], cfg.stage_schedule()[1])
    for stage, rate in zip(stages, cfg.stage_schedule()[1] if cfg.record.staged else [cfg.lr]):
        optimizer, _ = make_optimizer(stage, cfg, 10)
        assert [group["lr"] for group in optimizer.param_groups] == [rate] * len(optimizer.param_groups)
        assert sum(len(g["params"]) for g in optimizer.param_groups) == len(stage.parameters)
        assert all(g["weight_decay"] == cfg.setting("weight_decay") for g in optimizer.param_groups)
        assert not isinstance(optimizer, torch.optim.AdamW) and not width_scaled(stage, cfg)


def test_the_default_optimiser_scales_wide_layers_and_says_so(caches, tmp_path):
    lite, _ = caches
    common = ("--method", "lstm", "--manifest", lite.manifest, "--cache", lite.cache, "--fine-hidden", "8",
              "--epochs", "1")
    assert train(*common, "--out", tmp_path / "default").exit_code == 0
    assert train(*common, "--optimizer", "adam", "--out", tmp_path / "paper").exit_code == 0
    trained = [json.loads((tmp_path / run / "metrics.json").read_text())["training"] for run in ("default", "paper")]
    assert trained[0]["width_scaled_rate"] is True and trained[1]["width_scaled_rate"] is False
    assert "AdamW" in trained[0]["schedule"] and trained[1]["schedule"].startswith("Adam, L2")


def test_a_calibration_part_is_held_out_of_training_and_chooses(caches, tmp_path):
    """--calibration-share: those training videos are not trained on, the points are solved and chosen on
    them (metrics.json, curve.csv's calibration columns), and a share too small to decide is refused."""
    lite, _ = caches
    common = ("--method", "lstm", "--manifest", lite.manifest, "--cache", lite.cache, "--fine-hidden", "8",
              "--epochs", "1")
    refused = train(*common, "--calibration-share", "0.5", "--out", tmp_path / "small")
    assert refused.exit_code == 2 and "at least 100" in refused.output
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("c2f.training.inputs.MIN_CALIBRATION_VIDEOS", 10)
        assert train(*common, "--calibration-share", "0.25", "--out", tmp_path / "held").exit_code == 0
    metrics = json.loads((tmp_path / "held" / "metrics.json").read_text())
    assert metrics["calibration"]["chosen_on"] == "calibration" and metrics["calibration"]["videos"] == 10
    assert metrics["train_videos"] == 30
    curve = pd.read_csv(tmp_path / "held" / "curve.csv")
    assert {"calibration_top1", "calibration_gflops", "top1", "gflops_mean"} <= set(curve.columns)


def test_calibration_videos_are_counted_once_their_features_are_loaded(caches, tmp_path):
    """The rule's minimum holds for the calibration videos that have features, not for the manifest's
    ids: a manifest whose held-out part is mostly videos missing from the cache is refused."""
    lite, _ = caches
    rows = pd.read_csv(lite.manifest)
    missing = rows[rows.split == "train"].iloc[[0] * 400].assign(video_id=[f"absent_{i:03d}" for i in range(400)])
    manifest = tmp_path / "manifest.csv"
    pd.concat([rows, missing]).to_csv(manifest, index=False)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("c2f.training.inputs.MIN_CALIBRATION_VIDEOS", 10)
        refused = train("--method", "lstm", "--manifest", manifest, "--cache", lite.cache, "--fine-hidden", "8",
                        "--epochs", "1", "--calibration-share", "0.1", "--out", tmp_path / "run")
    assert refused.exit_code == 2 and "calibration videos have features" in refused.output


def test_log_csv_has_a_row_per_epoch_of_every_stage(caches, tmp_path):
    lite, grid = caches
    assert train("--method", "adafocus", "--manifest", grid.manifest, "--cache", grid.cache, "--out", tmp_path / "ada",
                 "--focus", "resnet50@224-grid3x128", "--frames", "4", "--adafocus-hidden", "8",
                 "--stage-epochs", "2,1,1").exit_code == 0
    log = pd.read_csv(tmp_path / "ada" / "log.csv")
    assert log.stage.tolist() == ["I", "I", "II", "III"] and log.epoch.tolist() == [1, 2, 1, 1]
    assert (log.lr > 0).all() and (log.seconds >= 0).all()
    assert list((tmp_path / "ada" / "tensorboard").glob("events.out.tfevents.*"))        # the test extra has it
    assert train("--method", "lstm", "--manifest", lite.manifest, "--cache", lite.cache, "--out", tmp_path / "lstm",
                 "--fine-hidden", "8", "--steps", "20").exit_code == 0
    log = pd.read_csv(tmp_path / "lstm" / "log.csv")
    assert log.epoch.tolist() == list(range(1, 11)) and log.train_loss.notna().all()     # at least 10 epochs


def test_a_run_folder_never_blocks_a_rerun(caches, tmp_path):
    """A failed start leaves nothing behind; an unfinished run of other settings (with the half-written
    file a kill leaves) is replaced; a finished one is refused without --overwrite."""
    lite, _ = caches
    common = ["--method", "lstm", "--manifest", lite.manifest, "--cache", lite.cache, "--out", tmp_path / "r",
              "--fine-hidden", "8", "--epochs", "1"]
    if not torch.cuda.is_available():
        failed = train(*common, "--device", "cuda")
        assert failed.exit_code == 2 and "no CUDA device" in failed.output and "Traceback" not in failed.output
        assert not (tmp_path / "r").exists()
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "config.json").write_text(json.dumps({"settings": {"method": "uniform"}}))
    (tmp_path / "r" / "checkpoint.pt").write_bytes(b"from another run")
    (tmp_path / "r" / "checkpoint.pt.tmp").write_bytes(b"killed while writing")
    assert train(*common).exit_code == 0 and not (tmp_path / "r" / "checkpoint.pt.tmp").exists()
    assert train(*common).exit_code == 2
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine")
    refused = train(*common[:-4], "--out", tmp_path / "mine", "--epochs", "1")
    assert refused.exit_code == 2 and "not a c2f run's" in refused.output and (tmp_path / "mine" / "notes.txt").exists()
