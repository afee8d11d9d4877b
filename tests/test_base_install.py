"""A plain `pip install .` (no extras: no timm, no pytorchvideo, no tensorboard) runs the whole pipeline
from the command line: extract, train-head, report, predict and a bare `c2f flops`, with no traceback;
the report and `c2f flops` leave out, with one warning each, the papers' sets whose library is absent.

The environment is built without downloading anything: a venv (no pip) whose site folder holds links to
every package of this test run's environment except the extras' (their metadata too), this tree's c2f
on its path, and the `c2f` command pip would write from setup.cfg's entry point. For that environment
the extras are simply not installed: `import timm` fails as it would, and importlib finds no metadata."""
from __future__ import annotations

import configparser
import os
import re
import subprocess
import sys
import sysconfig
from pathlib import Path

import pandas as pd
import pytest
import torch

from conftest import REPO, make_video, write_manifest

COARSE, FINE = "mobilenet_v2@112", "resnet18@64"


def extras() -> list[str]:
    """The packages setup.cfg's extras add (its `all`), by name."""
    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg")
    return [re.split(r"[<>=!~\[ ]", line.strip())[0] for line in
            config["options.extras_require"]["all"].strip().splitlines()]


def entry_point() -> tuple[str, str]:
    """The module and function of the `c2f` console script setup.cfg declares."""
    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg")
    scripts = (line.partition("=") for line in config["options.entry_points"]["console_scripts"].strip().splitlines())
    target = next(target for name, _, target in scripts if name.strip() == "c2f")
    module, _, function = target.strip().partition(":")
    return module, function


def base_install(root: Path) -> Path:
    """A venv holding what `pip install .` installs and nothing of the extras; returns its `c2f` command."""
    left_out = tuple(name.lower() for name in extras())
    site = Path(torch.__file__).parents[1]
    packages = root / "site-packages"
    packages.mkdir(parents=True)
    for entry in site.iterdir():
        name = entry.name.lower()
        if name.startswith(left_out) or name.startswith(("__editable__", "c2f-")) or name == "__pycache__":
            continue            # an extra (tensorboard_data_server is tensorboard's own), or the editable c2f
        (packages / entry.name).symlink_to(entry)
    env = root / "env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True)
    own = Path(sysconfig.get_path("purelib", vars={"base": str(env), "platbase": str(env)}))
    # this tree's c2f first, then the packages (their own .pth files processed, as in a site folder)
    (own / "base_install.pth").write_text(f"{REPO}\nimport site; site.addsitedir({str(packages)!r})\n")
    module, function = entry_point()
    command = env / "bin" / "c2f"
    command.write_text(f"#!{env / 'bin' / 'python'}\nimport sys\nfrom {module} import {function}\n"
                       f"if __name__ == '__main__':\n    sys.exit({function}())\n")
    command.chmod(0o755)
    return command


def c2f(command: Path, *args, cwd: Path) -> subprocess.CompletedProcess:
    """One `c2f` command line in the base install: it must succeed with no traceback."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([str(command), *map(str, args)], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=600)
    assert done.returncode == 0 and "Traceback" not in done.stderr, (args[0], done.stdout[-2000:], done.stderr[-4000:])
    return done


def left_out_lines(stderr: str) -> dict[str, str]:
    """The warning line naming each paper set left out."""
    return {spec: line for line in stderr.splitlines() for spec in ("dpn107@224", "slowfast_r50")
            if line.startswith("WARNING") and spec in line}


@pytest.fixture(scope="module")
def command(tmp_path_factory) -> Path:
    return base_install(tmp_path_factory.mktemp("base_install"))


def test_the_environment_lacks_the_extras(command):
    probe = ("import importlib.metadata as m, importlib.util as u, c2f\n"
             f"print(c2f.__file__)\nfor name in {extras()!r}:\n"
             "    assert u.find_spec(name) is None, name\n"
             "    try: m.version(name)\n"
             "    except m.PackageNotFoundError: print('absent', name)\n")
    done = subprocess.run([str(command.parent / "python"), "-c", probe], capture_output=True, text=True,
                          env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert Path(lines[0]).resolve().is_relative_to(REPO.resolve())
    assert lines[1:] == [f"absent {name}" for name in extras()] and set(extras()) >= {"timm", "pytorchvideo",
                                                                                       "tensorboard"}


def test_extract_train_report_predict_and_flops_without_the_extras(command, tmp_path):
    rows = [(f"v{i}", str(make_video(tmp_path / "videos" / f"v{i}.mp4", num_frames=12 + 4 * i, fps=10)),
             f"c{i % 2}", "train" if i < 4 else "val") for i in range(6)]
    manifest = write_manifest(tmp_path / "m.csv", rows)
    c2f(command, "extract", "--manifest", manifest, "--out", "cache", "--backbone", COARSE, "--backbone", FINE,
        "--weights", "random", "--num-frames", "4", "--workers", "0", "--no-progress", cwd=tmp_path)
    c2f(command, "train-head", "--method", "liteeval", "--manifest", manifest, "--cache", "cache",
        "--out", "runs/liteeval", "--coarse", COARSE, "--fine", FINE, "--coarse-hidden", "4", "--fine-hidden", "8",
        "--gamma", "0.5", "--epochs", "2", "--lr", "0.01", "--no-curve", "--no-progress", cwd=tmp_path)
    assert (tmp_path / "runs" / "liteeval" / "metrics.json").exists()
    report = c2f(command, "report", "--runs", "runs", "--out", "report", cwd=tmp_path)
    said = left_out_lines(report.stderr)
    assert "pip install 'c2f[timm]'" in said["dpn107@224"] and "pip install 'c2f[slowfast]'" in said["slowfast_r50"]
    flops = pd.read_csv(tmp_path / "report" / "flops.csv").set_index("feature_set")
    assert flops.loc[["dpn107@224", "slowfast_r50"], "gflops_counted"].isna().all()
    assert "c2f[timm]" in flops.loc["dpn107@224", "left_out"] and "c2f[slowfast]" in flops.loc["slowfast_r50", "left_out"]
    assert flops.loc[COARSE, "gflops_counted"] > 0 and flops.loc["resnet101@224", "gflops_counted"] > 0
    assert flops.loc[FINE, "used_by_runs"] == "yes"
    baselines = pd.read_csv(tmp_path / "report" / "paper_baselines.csv").set_index("baseline")
    assert baselines.loc[["DPN-10", "SlowFast-10"], "gflops_counted"].isna().all()
    assert baselines.loc["UNIFORM (ResNet-101, 25 frames)", "gflops_counted"] == pytest.approx(195.5, rel=0.01)
    text = (tmp_path / "report" / "report.md").read_text()
    assert "## Left out (library not installed)" in text and "- dpn107@224:" in text and "- slowfast_r50:" in text
    assert (tmp_path / "report" / "runs.csv").exists() and (tmp_path / "report" / "liteeval_table1.csv").exists()
    predicted = c2f(command, "predict", "--run", "runs/liteeval", "--out", "predicted", "--no-progress",
                    tmp_path / "videos" / "v4.mp4", tmp_path / "videos" / "v5.mp4", cwd=tmp_path)
    assert len(pd.read_csv(tmp_path / "predicted" / "predictions.csv")) == 2, predicted.stdout
    table = c2f(command, "flops", cwd=tmp_path)
    said = left_out_lines(table.stderr)
    assert "pip install 'c2f[timm]'" in said["dpn107@224"] and "pip install 'c2f[slowfast]'" in said["slowfast_r50"]
    assert re.search(rf"^{re.escape(COARSE)}\s", table.stdout, re.M) and "dpn107" not in table.stdout
