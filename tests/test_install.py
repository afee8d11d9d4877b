"""`pip install .` into an environment that already holds a torch (no Makefile): the torch stays as it
was, and the installed `c2f` answers --version and extracts a video."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import torch

import c2f
from conftest import REPO, make_video


def run(*args, **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=600, **kwargs)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return done


def test_pip_install_keeps_the_environments_torch(tmp_path):
    env = tmp_path / "env"
    run(sys.executable, "-m", "venv", env)
    python, site = env / "bin" / "python", Path(sysconfig.get_path("purelib", vars={"base": str(env)}))
    # the environment holds a torch before c2f comes (a GPU image's, a conda one): here, this test run's
    # packages, made visible to it by a .pth file, as another site folder would be
    existing = Path(torch.__file__).parents[1]
    (site / "existing_packages.pth").write_text(str(existing) + "\n")
    torch_before = run(python, "-c", "import torch; print(torch.__version__, torch.__file__)").stdout
    # as a user would, from a copy of the sources (pip builds in the tree it is given): pip may fetch
    # what the build needs (setuptools), and must find every requirement satisfied, a torch above all
    source = tmp_path / "c2f-source"
    source.mkdir()
    for name in ("setup.cfg", "pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(REPO / name, source / name)
    for package in ("c2f", "pipeline"):
        shutil.copytree(REPO / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    run(python, "-m", "pip", "install", "--quiet", source)
    assert run(python, "-c", "import torch; print(torch.__version__, torch.__file__)").stdout == torch_before
    assert not list(site.glob("torch-*.dist-info")), "pip installed a torch of its own"
    assert run(env / "bin" / "c2f", "--version").stdout.strip() == f"c2f, version {c2f.__version__}"
    # the command line is inside the package: no top-level module (a `cli` would clash with any other)
    bare = {**os.environ, "PYTHONPATH": ""}
    installed = run(python, "-c", "import importlib.metadata as m; print(*m.files('c2f'), sep='\\n')",
                    env=bare).stdout.split()
    assert "c2f/cli.py" in installed and not [f for f in installed if "/" not in f and f.endswith(".py")]
    assert run(python, "-m", "c2f", "--version", cwd=tmp_path, env=bare).stdout.strip() == f"c2f, version {c2f.__version__}"
    video = make_video(tmp_path / "clip.mp4", num_frames=10)
    extracted = run(env / "bin" / "c2f", "extract", video, "--out", tmp_path / "cache", "--backbone", "resnet18@64",
                    "--weights", "random", "--num-frames", "2", "--no-progress", cwd=tmp_path,
                    env={**os.environ, "PYTHONPATH": ""})
    assert "done 1, skipped 0, failed 0" in extracted.stdout
    assert (tmp_path / "cache" / "resnet18@64" / "index.json").exists()
