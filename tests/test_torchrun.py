"""`torchrun ... c2f extract`: ranks take disjoint shares, the index merges them, and the
merged cache equals a single-process run (also when resuming with another number of ranks)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, cache_lock_held_elsewhere, make_video, write_manifest
from pipeline.cache import read_feature_set

BIN = Path(sys.executable).parent
SETS = ["mobilenet_v2@112", "resnet18@224-grid2x96"]
pytestmark = pytest.mark.skipif(not (BIN / "torchrun").exists() or not (BIN / "c2f").exists(),
                                reason="torchrun and the c2f console script are installed by `make test`")


def extract_command(manifest, out):
    command = [str(BIN / "c2f"), "extract", "--manifest", str(manifest), "--out", str(out), "--fps", "3",
               "--weights", "random", "--batch-size", "8", "--shard-videos", "1", "--no-progress"]
    for name in SETS:
        command += ["--backbone", name]
    return command


def run(command):
    # torchrun gives each rank one thread; CPU kernels may round differently with another
    # thread count, so the single-process runs compared with it use one thread too
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def torchrun(ranks, command):
    return run([str(BIN / "torchrun"), "--standalone", f"--nproc-per-node={ranks}", "--no-python"] + command)


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("videos")
    rows = [(f"v{i}", str(make_video(tmp / f"v{i}.mp4", num_frames=20 + 9 * i, fps=10)), "x", "train")
            for i in range(6)]
    return write_manifest(tmp / "all.csv", rows), write_manifest(tmp / "first3.csv", rows[:3])


def test_two_ranks_resume_a_single_process_run_and_equal_a_clean_one(videos, tmp_path):
    everything, first_three = videos
    reference = run(extract_command(everything, tmp_path / "single"))
    assert reference.returncode == 0, reference.stderr
    partial = run(extract_command(first_three, tmp_path / "ranked"))   # one rank did half the work ...
    assert partial.returncode == 0, partial.stderr
    ranked = torchrun(2, extract_command(everything, tmp_path / "ranked"))   # ... two ranks finish it
    assert ranked.returncode == 0, ranked.stderr
    assert "rank 0/2: done 2, skipped 3" in ranked.stdout and "rank 1/2: done 1, skipped 3" in ranked.stdout
    for name in SETS:
        index = json.loads((tmp_path / "ranked" / name / "index.json").read_text())
        listed = [v for shard in index["shards"] for v in shard["videos"]]
        assert sorted(listed) == [f"v{i}" for i in range(6)] and index["complete"]
        assert {shard["file"][:10] for shard in index["shards"]} == {"shard-0000", "shard-0001"}
        merged, single = read_feature_set(tmp_path / "ranked" / name), read_feature_set(tmp_path / "single" / name)
        assert sorted(merged) == sorted(single)
        for video_id, expected in single.items():
            assert np.array_equal(merged[video_id].timestamps, expected.timestamps)
            assert np.array_equal(merged[video_id].features, expected.features)
    again = torchrun(2, extract_command(everything, tmp_path / "ranked"))      # nothing left to do
    assert again.returncode == 0 and "done 0, skipped 6" in again.stdout


def test_every_rank_refuses_a_cache_in_use(videos, tmp_path):
    everything, _ = videos
    with cache_lock_held_elsewhere(tmp_path / "c"):
        refused = torchrun(2, extract_command(everything, tmp_path / "c"))
    assert refused.returncode != 0
    assert refused.stderr.count("in use by another extraction") >= 2     # both ranks say so, neither hangs
    assert not any((tmp_path / "c" / name).exists() for name in SETS)
