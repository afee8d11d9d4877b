"""Phase two on bad input: a clear one-line message and exit status 2, or a warning and the run goes on."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from c2f.cli import main
from c2f.demo.synthetic import write_manifest, write_sets

COARSE, FINE = "mobilenet_v2@112", "resnet101@224"


def make_cache(root, videos: dict[str, tuple[str, str, int]], fine_stamps_shift: dict[str, float] = None,
               nan_in: tuple[str, ...] = (), sets=(COARSE, FINE)):
    """videos: id -> (label, split, frames)."""
    rng = np.random.default_rng(0)
    features, stamps = {}, {}
    for vid, (_, _, frames) in videos.items():
        features[vid] = {COARSE: rng.normal(size=(frames, 4)).astype(np.float16),
                         FINE: rng.normal(size=(frames, 6)).astype(np.float16)}
        if vid in nan_in:
            features[vid][FINE][0, 0] = np.nan
        stamps[vid] = np.arange(frames, dtype=np.float32)
    dims = {COARSE: 4, FINE: 6}
    write_sets(root / "cache", {s: dims[s] for s in sets if s != FINE or not fine_stamps_shift}, features, stamps)
    if fine_stamps_shift:
        shifted = {v: stamps[v] + fine_stamps_shift.get(v, 0.0) for v in videos}
        write_sets(root / "cache", {FINE: dims[FINE]}, features, shifted)
    return write_manifest(root / "manifest.csv", [(v, label, split) for v, (label, split, _) in videos.items()])


def basic_videos(n=12):
    return {f"v{i}": (f"c{i % 2}", "train" if i < 8 else "val", 3 + i % 4) for i in range(n)}


def train(root, manifest, *extra, method="liteeval"):
    args = ["train-head", "--method", method, "--manifest", str(manifest), "--cache", str(root / "cache"),
            "--out", str(root / "run"), "--epochs", "1", "--coarse-hidden", "4", "--fine-hidden", "8",
            "--no-progress", *extra]
    return CliRunner().invoke(main, args)


def one_line_error(result, *fragments):
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = [l for l in result.output.splitlines() if l.startswith("c2f: error:")]
    assert len(lines) == 1, result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_missing_feature_set(tmp_path):
    manifest = make_cache(tmp_path, basic_videos(), sets=(COARSE,))
    one_line_error(train(tmp_path, manifest), "no feature set 'resnet101@224'", "c2f extract")


def test_videos_absent_from_the_cache_are_listed_skipped_and_counted(tmp_path, caplog):
    manifest = make_cache(tmp_path, basic_videos())
    with open(manifest, "a") as handle:
        handle.write("ghost1,videos/g1.mp4,c0,val\nghost2,videos/g2.mp4,c1,train\n")
    result = train(tmp_path, manifest)
    assert result.exit_code == 0, result.output
    assert "ghost1: not in the cache" in caplog.text
    skipped = pd.read_csv(tmp_path / "run" / "skipped.csv")
    assert sorted(skipped.video_id) == ["ghost1", "ghost2"] and set(skipped.split) == {"train", "val"}
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["skipped_videos"] == 1 and metrics["num_videos"] == 4 and metrics["train_videos"] == 8


def test_class_without_training_videos_is_a_warning(tmp_path, caplog):
    videos = basic_videos() | {"lonely": ("c9", "val", 4)}
    result = train(tmp_path, make_cache(tmp_path, videos))
    assert result.exit_code == 0, result.output
    assert "no training video" in caplog.text and "c9" in caplog.text


@pytest.mark.parametrize("lazy", [False, True])
def test_nan_features_skip_the_video(tmp_path, caplog, monkeypatch, lazy):
    if lazy:                # read from the shards (memory-mapped), as sets too large for memory are
        import c2f.data
        monkeypatch.setattr(c2f.data, "IN_MEMORY_BYTES", 0)
    result = train(tmp_path, make_cache(tmp_path, basic_videos(), nan_in=("v9",)))
    assert result.exit_code == 0, result.output
    assert "v9: non-finite values" in caplog.text
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["num_videos"] == 3


def test_mismatched_timestamps_are_refused(tmp_path):
    manifest = make_cache(tmp_path, basic_videos(), fine_stamps_shift={"v2": 0.5})
    one_line_error(train(tmp_path, manifest), "different timestamps", "v2")


def test_existing_run_needs_overwrite(tmp_path):
    manifest = make_cache(tmp_path, basic_videos())
    assert train(tmp_path, manifest).exit_code == 0
    one_line_error(train(tmp_path, manifest, "--lr", "0.01"), "already holds a finished run", "--overwrite")
    assert train(tmp_path, manifest, "--lr", "0.01", "--overwrite").exit_code == 0
    saved = json.loads((tmp_path / "run" / "config.json").read_text())["settings"]
    assert saved["lr"] == 0.01


def test_a_map_is_not_a_pooled_feature(tmp_path):
    from c2f.demo.synthetic import _attrs
    from pipeline.cache import FeatureIndex, VideoFeatures
    manifest = make_cache(tmp_path, basic_videos())
    index = FeatureIndex.open(tmp_path / "cache" / "mobilenet_v2@224-map", _attrs("mobilenet_v2@224-map", 2))
    index.write_shard(0, [VideoFeatures(f"v{i}", np.arange(3 + i % 4, dtype=np.float32),
                                        np.zeros((3 + i % 4, 2, 7, 7), np.float16)) for i in range(12)])
    index.save()
    one_line_error(train(tmp_path, manifest, "--fine", "mobilenet_v2@224-map"), "needs a pooled feature set for --fine")


@pytest.mark.parametrize("method,args,fragment", [("uniform", ["--frames", "0"], "--frames"),
                                                  ("liteeval", ["--lr", "0"], "--lr must be > 0"),
                                                  ("liteeval", ["--coarse-hidden", "16", "--fine-hidden", "8"],
                                                   "--coarse-hidden")])
def test_bad_options(tmp_path, method, args, fragment):
    one_line_error(train(tmp_path, make_cache(tmp_path, basic_videos()), *args, method=method), fragment)


def test_evaluate_online_on_a_run_without_budgets(tmp_path):
    manifest = make_cache(tmp_path, basic_videos())
    assert train(tmp_path, manifest, method="lstm").exit_code == 0
    result = CliRunner().invoke(main, ["evaluate-online", "--run", str(tmp_path / "run"), "--budget", "2"])
    one_line_error(result, "lstm run")


def test_sets_decoded_differently_are_warned_about(tmp_path, caplog):
    from c2f.demo.synthetic import _attrs
    videos = basic_videos()
    rng = np.random.default_rng(0)
    features = {v: {COARSE: rng.normal(size=(n, 4)).astype(np.float16), FINE: rng.normal(size=(n, 6)).astype(np.float16)}
                for v, (_, _, n) in videos.items()}
    stamps = {v: np.arange(n, dtype=np.float32) for v, (_, _, n) in videos.items()}
    write_sets(tmp_path / "cache", {COARSE: _attrs(COARSE, 4) | {"seek": "keyframe"},
                                    FINE: _attrs(FINE, 6)}, features, stamps)
    manifest = write_manifest(tmp_path / "manifest.csv", [(v, label, split) for v, (label, split, _) in videos.items()])
    with caplog.at_level("WARNING"):
        assert train(tmp_path, manifest).exit_code == 0
    assert "decoded differently (seek: mobilenet_v2@112 keyframe, resnet101@224 exact)" in caplog.text


def test_a_shard_of_another_set_is_named_as_such(tmp_path):
    """A shard of another feature set among a set's shards: `cache verify` names it (unlisted, or listed),
    `cache reindex` keeps the folder's own set (even when the stray shard sorts first) and sets it aside,
    and train-head names the shard and the set it holds instead of failing to broadcast shapes."""
    import shutil
    manifest = make_cache(tmp_path, basic_videos())
    cache, fine = tmp_path / "cache", tmp_path / "cache" / FINE
    shutil.copy(cache / COARSE / "shard-0000-00000.h5", fine / "shard-0000-00007.h5")      # unlisted
    verify = CliRunner().invoke(main, ["cache", "verify", str(cache)])
    assert verify.exit_code == 1 and "shard-0000-00007.h5: not listed in index.json (it holds another feature set" \
        in verify.output and f"feature_set '{COARSE}' where the set has '{FINE}'" in verify.output
    index = json.loads((fine / "index.json").read_text())            # listed too: phase two reads it
    index["shards"].append(index["shards"][0] | {"file": "shard-0000-00007.h5"})
    (fine / "index.json").write_text(json.dumps(index))
    one_line_error(train(tmp_path, manifest), "shard-0000-00007.h5", "it holds another feature set")
    (fine / "shard-0000-00000.h5").rename(fine / "shard-0000-00009.h5")                   # the stray one sorts first
    shutil.copy(cache / COARSE / "shard-0000-00000.h5", fine / "shard-0000-00000.h5")
    (fine / "shard-0000-00007.h5").unlink()
    (fine / "index.json").write_text("{}")
    assert CliRunner().invoke(main, ["cache", "reindex", str(cache)]).exit_code == 0
    rebuilt = json.loads((fine / "index.json").read_text())
    assert rebuilt["attrs"]["feature_set"] == FINE and [s["file"] for s in rebuilt["shards"]] == ["shard-0000-00009.h5"]
    assert (fine / "shard-0000-00000.h5.broken").exists()
    assert train(tmp_path, manifest, "--overwrite").exit_code == 0
