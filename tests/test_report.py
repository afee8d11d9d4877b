"""`c2f report`: tables from run directories, missing rows, refusals, figures; the papers' baseline GFLOPs."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from c2f.config import TrainConfig
from c2f.training.online import evaluate_online
from c2f.report import paper_baselines, write_report
from c2f.demo.synthetic import liteeval_cache
from c2f.training import train_head
from c2f.cli import main


def test_paper_baselines_reproduce_the_papers_gflops():
    """UNIFORM 195.5, UNIFORM+CF 197.5, DPN-10 183.4, SlowFast-10 657.1, AdaFocus 26.6: counted from modules."""
    for row in paper_baselines():
        assert row["gflops_counted"] == pytest.approx(row["gflops_paper"], rel=0.01), row


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    syn = liteeval_cache(root / "data", num_train=48, num_val=24, num_classes=3, frames=(3, 9),
                         coarse=("mobilenet_v2@112", 8), fine=("resnet101@224", 12))
    common = dict(manifest=str(syn.manifest), cache=str(syn.cache), frames=5, coarse_hidden=4, fine_hidden=8,
                  epochs=2, lr=1e-2, batch_size=16, progress=False)
    for name, extra in [("uniform", {"method": "uniform"}), ("lstm", {"method": "lstm"}),
                        ("liteeval", {"method": "liteeval"}), ("gamma01", {"method": "liteeval", "gamma": 0.1}),
                        ("nosync", {"method": "liteeval", "sync": False})]:
        train_head(TrainConfig.of(out=str(root / "runs" / name), **(common | extra)))
    evaluate_online(root / "runs" / "liteeval", [1, 2], uniform_run=root / "runs" / "uniform", progress=False)
    return root


def test_report_writes_the_tables_the_runs_fill(runs, tmp_path):
    summary = write_report(runs / "runs", tmp_path, count_paper_settings=False)
    assert summary["runs"] == 5 and not summary["refused"]
    table1 = pd.read_csv(tmp_path / "liteeval_table1.csv")
    assert table1.row.tolist() == ["UNIFORM", "LSTM", "LITEEVAL"]
    liteeval = json.loads((runs / "runs" / "liteeval" / "metrics.json").read_text())
    assert table1.set_index("row").loc["LITEEVAL", "GFLOPs"] == pytest.approx(liteeval["gflops_mean"], abs=0.01)
    assert pd.read_csv(tmp_path / "liteeval_table7.csv").row.tolist() == ["LiteEval, gamma 0.1", "LiteEval, gamma 0.05"]
    assert pd.read_csv(tmp_path / "liteeval_table8.csv").row.tolist() == ["LiteEval w/o. sync", "LiteEval"]
    assert table1.method.tolist() == ["uniform", "lstm", "liteeval"]
    missing = (tmp_path / "missing.txt").read_text()
    assert "liteeval_table1 / UNIFORM+CF: c2f train-head --method uniform_cf" in missing
    outs = {line.split("--out ")[-1].split()[0]: line.split(": ", 1)[1] for line in missing.splitlines()}
    commands = {}
    for out, command in outs.items():        # one folder per run to make, a new one, absolute
        assert commands.setdefault(out, command) == command and Path(out).is_absolute() and not Path(out).exists()
    assert str(runs / "runs" / "uniform_cf") in outs and str(runs / "runs" / "liteeval-rnn_gru") in outs
    assert str(runs / "runs" / "frameglimpse") in outs and str(runs / "runs" / "frameglimpse-2") not in outs
    every = pd.read_csv(tmp_path / "runs.csv")
    assert sorted(every.run) == ["gamma01", "liteeval", "lstm", "nosync", "uniform"]
    assert every.set_index("run").loc["nosync", "settings"] == \
        "epochs=2; batch_size=16; fine_hidden=8; coarse_hidden=4; sync=False"
    flops = pd.read_csv(tmp_path / "flops.csv")
    assert set(flops.feature_set) == {"mobilenet_v2@112", "resnet101@224"} and (flops.used_by_runs == "yes").all()
    assert "--rnn gru" in missing and "--no-reuse" in missing
    for figure in ("accuracy_vs_gflops.png", "online.png", "fine_usage_per_class.png", "curves/liteeval.png",
                   "curves/gamma01.png"):
        assert (tmp_path / figure).stat().st_size > 1000
    text = (tmp_path / "report.md").read_text()
    assert "LiteEval Table 1" in text and "![online.png](online.png)" in text


def test_a_table_mixing_caches_is_refused(runs, tmp_path):
    mixed = tmp_path / "runs"
    shutil.copytree(runs / "runs", mixed)
    config_path = mixed / "lstm" / "config.json"
    config = json.loads(config_path.read_text())
    config["settings"]["cache"] = str(tmp_path / "another_cache")
    config_path.write_text(json.dumps(config))
    summary = write_report(mixed, tmp_path / "report", count_paper_settings=False)
    assert any(r.startswith("liteeval_table1: refused") for r in summary["refused"])
    assert not (tmp_path / "report" / "liteeval_table1.csv").exists()
    assert (tmp_path / "report" / "liteeval_table7.csv").exists()         # its runs share one cache


def test_report_cli_without_runs(tmp_path):
    (tmp_path / "empty").mkdir()
    result = CliRunner().invoke(main, ["report", "--runs", str(tmp_path / "empty"), "--out", str(tmp_path / "r")])
    assert result.exit_code == 2 and "no finished run" in result.output


def test_synthetic_cache_command(tmp_path):
    args = ["synthetic-cache", "--kind", "adafocus", "--out", str(tmp_path / "s"), "--train-videos", "4",
            "--val-videos", "2"]
    first = CliRunner().invoke(main, args)
    assert first.exit_code == 0, first.output
    assert (tmp_path / "s" / "cache" / "resnet50@224-grid5x128" / "index.json").exists()
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 2 and "--overwrite" in again.output
    assert CliRunner().invoke(main, args + ["--overwrite"]).exit_code == 0


def test_missing_txt_lines_run_as_they_are_and_fill_adafocus_table_1(tmp_path):
    """On a cache of real (tiny) videos, missing.txt's lines for AdaFocus Table 1 run in a shell as they
    are: SCSampler's on the cache's sets, AR-Net's after extracting its backbone at the default's other
    resolutions (the cache's sampling and decoded square); the report then fills those rows, each with
    the backbones its run read."""
    from conftest import make_video, write_manifest
    from pipeline.extract import ExtractConfig, extract
    rows = [(f"v{i}", str(make_video(tmp_path / f"v{i}.mp4", num_frames=30, fps=10)), f"c{i % 2}",
             "train" if i < 4 else "val") for i in range(6)]
    manifest = write_manifest(tmp_path / "m.csv", rows)
    extract(ExtractConfig(str(manifest), str(tmp_path / "cache"), ["mobilenet_v2@112", "resnet18@224"], num_frames=6,
                          weights=["random"], workers=0, progress=False))
    train_head(TrainConfig.of(method="liteeval", manifest=str(manifest), cache=str(tmp_path / "cache"),
                              out=str(tmp_path / "runs" / "liteeval"), coarse="mobilenet_v2@112", fine="resnet18@224",
                              coarse_hidden=4, fine_hidden=8, epochs=1, curve=False, progress=False))
    write_report(tmp_path / "runs", tmp_path / "report", count_paper_settings=False)
    lines = (tmp_path / "report" / "missing.txt").read_text().splitlines()
    wanted = {row: next(line.split(": ", 1)[1] for line in lines if line.startswith(f"adafocus_table1 / {row}: "))
              for row in ("SCSampler", "AR-Net")}
    assert "c2f extract" in wanted["AR-Net"] and "--canvas 256" in wanted["AR-Net"]
    shim = tmp_path / "bin" / "c2f"          # `c2f` as the installed console script would run it
    shim.parent.mkdir()
    shim.write_text(f"#!/bin/sh\nexec {sys.executable} -m c2f \"$@\"\n")
    shim.chmod(0o755)
    environment = os.environ | {"PATH": f"{shim.parent}:{os.environ['PATH']}"}
    for row, line in wanted.items():
        done = subprocess.run(["bash", "-c", line + " --no-progress --steps 10 --no-curve"], env=environment,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, (row, done.stderr[-2000:])
    write_report(tmp_path / "runs", tmp_path / "report", count_paper_settings=False)
    table = pd.read_csv(tmp_path / "report" / "adafocus_table1.csv").set_index("row")
    assert table.loc["SCSampler", "backbones"] == "mobilenet_v2@112 + resnet18@224"
    assert table.loc["AR-Net", "backbones"] == "mobilenet_v2@112 + resnet18@224 + resnet18@168 + resnet18@112"
    assert table.loc["AR-Net", "published with"] == "MobileNetV2 + ResNet-50/34/18"
