"""`c2f extract` end to end: the cache schema, bad inputs, resume after SIGKILL, locking."""
import json
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from c2f.cli import main
from conftest import REPO, cache_lock_held_elsewhere, make_audio_only, make_video, write_manifest
from pipeline.extract import ExtractConfig, extract
from pipeline.cache import read_feature_set


def run(manifest, out, backbones, **kw):
    kw.setdefault("weights", ["random"])
    kw.setdefault("workers", 0)
    kw.setdefault("progress", False)
    return extract(ExtractConfig(str(manifest), str(out), backbones, **kw))


def read_cache_independently(folder):
    """What an outside reader sees, with h5py only, following the cache contract."""
    index = json.loads((folder / "index.json").read_text())
    videos = {}
    for shard in index["shards"]:
        with h5py.File(folder / shard["file"], "r") as h5:
            attrs = dict(h5.attrs)
            ids = [v.decode() if isinstance(v, bytes) else v for v in h5["video_ids"][:]]
            offsets, timestamps, features = h5["offsets"][:], h5["timestamps"][:], h5["features"][:]
            assert h5py.check_string_dtype(h5["video_ids"].dtype).encoding == "utf-8"
            assert offsets.dtype == np.int64 and offsets[0] == 0 and offsets[-1] == len(timestamps) == len(features)
            assert len(offsets) == len(ids) + 1 and (np.diff(offsets) > 0).all()
            assert timestamps.dtype == np.float32 and features.dtype == np.float16
        for i, video_id in enumerate(ids):
            videos[video_id] = (timestamps[offsets[i]:offsets[i + 1]], features[offsets[i]:offsets[i + 1]], attrs)
    return index, videos


@pytest.fixture(scope="module")
def shared_cache(shared_videos, tmp_path_factory):
    """The issue's acceptance run: ../shared/videos with the coarse, fine and grid sets."""
    tmp = tmp_path_factory.mktemp("shared")
    manifest = write_manifest(tmp / "m.csv", [(v.stem, str(v), "x", "train") for v in shared_videos])
    summary = run(manifest, tmp / "cache", ["mobilenet_v2@112", "resnet101@224", "resnet50@224-grid7x128"],
                  workers=1, batch_size=8)
    return tmp / "cache", summary, shared_videos


def test_shared_videos_cache_follows_the_schema(shared_cache):
    import av
    cache, summary, videos = shared_cache
    assert (summary.done, summary.failed) == (len(videos), 0)
    expected = {"mobilenet_v2@112": ((1280,), 112, 0, 0, 0.0822),
                "resnet101@224": ((2048,), 224, 0, 0, 7.801),
                "resnet50@224-grid7x128": ((49, 2048), 224, 7, 128, 1.337)}
    timestamps = {}
    for name, (shape, size, grid, patch, gmacs) in expected.items():
        index, cached = read_cache_independently(cache / name)
        assert index["schema_version"] == 1 and index["complete"] and sorted(cached) == sorted(v.stem for v in videos)
        assert not list((cache / name).glob("*.tmp"))
        for video in videos:
            ts, feats, attrs = cached[video.stem]
            assert feats.shape == (len(ts),) + shape and np.isfinite(feats.astype(np.float32)).all()
            assert attrs["schema_version"] == 1 and attrs["feature_set"] == name and attrs["input_size"] == size
            assert attrs["grid"] == grid and attrs["patch_size"] == patch and attrs["weights"] == "random"
            assert attrs["fps"] == 1.0 and attrs["feature_dim"] == shape[-1]
            assert attrs["gflops_per_frame"] == pytest.approx(gmacs, rel=0.01)
            assert attrs["backbone"] == name.split("@")[0]
            with av.open(str(video)) as container:
                duration = container.streams.video[0].duration * container.streams.video[0].time_base
            # 1 fps: one frame per started second, timestamps increasing from 0
            assert ts[0] == 0.0 and (np.diff(ts) > 0).all() and len(ts) == int(np.ceil(float(duration) - 1e-9))
            timestamps.setdefault(video.stem, []).append(ts)
    for stem, per_set in timestamps.items():       # one decode: identical timestamps in every set
        assert all(np.array_equal(per_set[0], other) for other in per_set[1:])


def test_rerun_skips_what_is_done(shared_cache, tmp_path):
    cache, _, videos = shared_cache
    manifest = write_manifest(tmp_path / "m.csv", [(v.stem, str(v), "x", "train") for v in videos])
    summary = run(manifest, cache, ["mobilenet_v2@112", "resnet101@224", "resnet50@224-grid7x128"])
    assert (summary.done, summary.skipped, summary.frames) == (0, len(videos), 0)


def test_map_and_snippet_sets(tmp_path):
    video = make_video(tmp_path / "a.mp4", num_frames=20, fps=10)
    manifest = write_manifest(tmp_path / "m.csv", [("a", str(video), "x", "train")])
    run(manifest, tmp_path / "c", ["mobilenet_v2@224-map", "slowfast_r50"], num_frames=1, fps=None, batch_size=8)
    maps = read_feature_set(tmp_path / "c" / "mobilenet_v2@224-map")["a"]
    clips = read_feature_set(tmp_path / "c" / "slowfast_r50")["a"]
    assert maps.features.shape == (1, 1280, 7, 7) and clips.features.shape == (1, 2304)
    assert np.array_equal(maps.timestamps, clips.timestamps)
    with h5py.File(next((tmp_path / "c" / "slowfast_r50").glob("shard-*.h5")), "r") as h5:
        assert h5.attrs["num_frames"] == 1 and h5.attrs["input_size"] == 256


def test_bad_inputs_are_listed_and_the_run_goes_on(tmp_path):
    good = [make_video(tmp_path / f"good{i}.mp4", num_frames=20) for i in range(2)]
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "garbage.mp4").write_bytes(np.random.default_rng(1).bytes(4000))
    make_audio_only(tmp_path / "audio.m4a")
    full = make_video(tmp_path / "full.mp4", num_frames=100, faststart=True).read_bytes()
    (tmp_path / "truncated.mp4").write_bytes(full[: len(full) // 2])
    corrupt = bytearray(full)
    middle = corrupt.find(b"mdat") + (len(corrupt) - corrupt.find(b"mdat")) // 2
    corrupt[middle:middle + 3000] = np.random.default_rng(2).bytes(3000)
    (tmp_path / "corrupt.mp4").write_bytes(bytes(corrupt))
    rows = [("good0", str(good[0]), "x", "train"), ("missing", str(tmp_path / "nope.mp4"), "x", "train"),
            ("empty", str(tmp_path / "empty.mp4"), "x", "train"), ("garbage", str(tmp_path / "garbage.mp4"), "x", "train"),
            ("audio", str(tmp_path / "audio.m4a"), "x", "train"), ("truncated", str(tmp_path / "truncated.mp4"), "x", "train"),
            ("corrupt", str(tmp_path / "corrupt.mp4"), "x", "val"), ("good1", str(good[1]), "x", "val")]
    manifest = write_manifest(tmp_path / "m.csv", rows)
    summary = run(manifest, tmp_path / "c", ["mobilenet_v2@112"], workers=1, shard_videos=2)
    assert (summary.done, summary.failed) == (2, 6)
    errors = (tmp_path / "c" / "errors.csv").read_text().splitlines()
    assert errors[0] == "video_id,path,reason"
    reasons = {line.split(",")[0]: line.split(",", 2)[2] for line in errors[1:]}
    assert sorted(reasons) == ["audio", "corrupt", "empty", "garbage", "missing", "truncated"]
    assert reasons["missing"] == "file not found" and reasons["audio"] == "no video stream"
    assert "truncated" in reasons["truncated"] and "decode error" in reasons["corrupt"]
    assert sorted(read_feature_set(tmp_path / "c" / "mobilenet_v2@112")) == ["good0", "good1"]
    # a rerun does not try the failed ones again (unless asked) and appends nothing
    again = run(manifest, tmp_path / "c", ["mobilenet_v2@112"])
    assert (again.done, again.failed, again.skipped) == (0, 0, 8)
    assert (tmp_path / "c" / "errors.csv").read_text().splitlines() == errors


def test_cli_exit_status_and_summary(tmp_path):
    from click.testing import CliRunner
    from c2f.cli import main
    (tmp_path / "garbage.mp4").write_bytes(b"not a video")
    manifest = write_manifest(tmp_path / "m.csv", [("g", str(tmp_path / "garbage.mp4"), "x", "train")])
    args = ["extract", "--manifest", str(manifest), "--out", str(tmp_path / "c"), "--backbone", "mobilenet_v2@112",
            "--weights", "random", "--workers", "0", "--no-progress"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1 and "done 0, skipped 0, failed 1" in result.output
    result = CliRunner().invoke(main, args[:5] + ["--backbone", "vgg@224"])
    assert result.exit_code == 2 and "unknown backbone 'vgg'" in result.output


def test_second_run_on_the_same_cache_refuses(tmp_path):
    video = make_video(tmp_path / "a.mp4", num_frames=10)
    manifest = write_manifest(tmp_path / "m.csv", [("a", str(video), "x", "train")])
    with cache_lock_held_elsewhere(tmp_path / "c"):
        with pytest.raises(RuntimeError, match="in use by another extraction"):
            run(manifest, tmp_path / "c", ["mobilenet_v2@112"])
        assert not (tmp_path / "c" / "mobilenet_v2@112").exists()
    assert run(manifest, tmp_path / "c", ["mobilenet_v2@112"]).done == 1     # free once the holder is gone


def test_sigkill_then_resume_equals_an_uninterrupted_run(tmp_path):
    rows = []
    for i in range(8):
        video = make_video(tmp_path / f"v{i}.mp4", num_frames=40 + 7 * i, fps=10)
        rows.append((f"v{i}", str(video), "x", "train"))
    manifest = write_manifest(tmp_path / "m.csv", rows)
    sets = ["mobilenet_v2@112", "resnet18@224-grid3x96"]
    command = [sys.executable, "-c", "from c2f.cli import main; main()", "extract", "--manifest", str(manifest),
               "--backbone", sets[0], "--backbone", sets[1], "--fps", "3", "--weights", "random",
               "--workers", "1", "--batch-size", "8", "--shard-videos", "1", "--no-progress"]
    interrupted = tmp_path / "interrupted"
    kills = 0
    for _ in range(4):        # kill after each new shard until the run gets through on its own
        process = subprocess.Popen(command + ["--out", str(interrupted)], cwd=REPO,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        index = interrupted / sets[1] / "index.json"
        before = len(json.loads(index.read_text())["shards"]) if index.exists() else 0
        deadline = time.time() + 120
        while process.poll() is None and time.time() < deadline:
            if index.exists() and len(json.loads(index.read_text())["shards"]) > before:
                time.sleep(0.3 * kills)            # land somewhere else in the next shard each time
                process.send_signal(signal.SIGKILL)
                kills += 1
                break
            time.sleep(0.02)
        process.wait()
        if process.returncode == 0:
            break
    assert kills >= 2
    finished = subprocess.run(command + ["--out", str(interrupted)], cwd=REPO, capture_output=True, text=True)
    assert finished.returncode == 0, finished.stderr
    clean = run(manifest, tmp_path / "clean", sets, fps=3, batch_size=8, workers=1)
    assert clean.done == 8
    for name in sets:
        resumed, reference = read_feature_set(interrupted / name), read_feature_set(tmp_path / "clean" / name)
        assert sorted(resumed) == sorted(reference) == sorted(f"v{i}" for i in range(8))
        for video_id, ref in reference.items():
            assert np.array_equal(resumed[video_id].timestamps, ref.timestamps)
            assert np.array_equal(resumed[video_id].features, ref.features)
        assert not list((interrupted / name).glob("*.tmp"))
        index = json.loads((interrupted / name / "index.json").read_text())
        listed = [v for s in index["shards"] for v in s["videos"]]
        assert len(listed) == len(set(listed)) == 8 and index["complete"]


def test_features_do_not_depend_on_the_other_videos_in_the_batch(tmp_path):
    """A video alone or among others (so in other batch positions, a padded tail or not)."""
    rows = [(f"v{i}", str(make_video(tmp_path / f"v{i}.mp4", num_frames=60 + 7 * i)), "x", "train") for i in range(3)]
    run(write_manifest(tmp_path / "all.csv", rows), tmp_path / "all", ["mobilenet_v2@112"], fps=4, batch_size=8)
    run(write_manifest(tmp_path / "one.csv", rows[2:]), tmp_path / "one", ["mobilenet_v2@112"], fps=4, batch_size=8)
    together = read_feature_set(tmp_path / "all" / "mobilenet_v2@112")["v2"].features
    alone = read_feature_set(tmp_path / "one" / "mobilenet_v2@112")["v2"].features
    assert np.array_equal(together, alone)


def extract_cli(manifest, out, sets, *options):
    """`c2f extract` as typed, in this process."""
    args = ["extract", "--manifest", manifest, "--out", out, *[a for s in sets for a in ("--backbone", s)],
            "--weights", "random", "--workers", "0", "--no-progress", *options]
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.reshape(-1, a.shape[-1]).astype(float), b.reshape(-1, b.shape[-1]).astype(float)
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def test_precision_bf16_through_c2f_extract_stays_close_to_fp32(tmp_path):
    """`c2f extract --precision bf16` against `--precision fp32` on the same videos, the same memory format
    (channels_last, the GPU path's): the shards say which arithmetic made them; bf16's features differ
    from fp32's (its autocast ran) but stay close: per frame (patch) a cosine of at least 0.95 and 0.99
    on average (random weights, whose calibrated BN statistics are fragile; tests/test_real_weights.py
    holds the ImageNet weights to 0.975 and compares their ImageNet classes)."""
    rows = [(f"v{i}", str(make_video(tmp_path / f"v{i}.mp4", num_frames=30 + 10 * i, fps=10, width=128, height=96)),
             "x", "train") for i in range(3)]
    manifest = write_manifest(tmp_path / "m.csv", rows)
    sets = ["mobilenet_v2@112", "resnet18@224-grid2x96"]
    for precision in ("fp32", "bf16"):
        extract_cli(manifest, tmp_path / precision, sets, "--num-frames", "4", "--precision", precision,
                    "--channels-last")
    for name in sets:
        exact, rough = (np.concatenate([v.features for _, v in sorted(read_feature_set(tmp_path / p / name).items())])
                        for p in ("fp32", "bf16"))
        assert rough.dtype == np.float16 and rough.shape == exact.shape and len(exact) == 12
        assert not np.array_equal(rough, exact)
        cosine = cosine_rows(exact, rough)
        assert cosine.min() >= 0.95 and cosine.mean() >= 0.99, (name, cosine.min(), cosine.mean())
        for precision in ("fp32", "bf16"):
            index = json.loads((tmp_path / precision / name / "index.json").read_text())
            assert (index["attrs"]["precision"], index["attrs"]["channels_last"]) == (precision, 1)
            with h5py.File(next((tmp_path / precision / name).glob("shard-*.h5")), "r") as h5:
                assert h5.attrs["precision"] == precision
        assert {k: index["attrs"][k] for k in ("preprocess", "seek", "canvas")} == \
            {"preprocess": "eval", "seek": "exact", "canvas": 256}


def test_the_allocator_keeps_freed_memory_only_while_the_models_run(tmp_path, monkeypatch):
    """pipeline.core.memory: set before the models are built, the heap would also keep the checkpoints'
    tensors, freed once loaded (about one checkpoint for the whole run); left set, with the models alive,
    to the interpreter's shutdown, the process grew past its peak. Extraction on the CPU opens the scope
    after building the models and closes it once they are gone (prediction opens it once its Predictor
    is built: c2f.predict.job)."""
    import contextlib
    import weakref
    import pipeline.extract as extraction
    events, runners = [], []
    built = extraction.FeatureRunner

    def runner(*args, **kwargs):
        made = built(*args, **kwargs)
        runners.append(weakref.ref(made))
        events.append("models built")
        return made

    @contextlib.contextmanager
    def kept():
        events.append("heap keeps")
        yield True
        events.append("heap handed back, models " + ("gone" if runners[0]() is None else "alive"))

    monkeypatch.setattr(extraction, "FeatureRunner", runner)
    monkeypatch.setattr(extraction, "freed_memory_kept", kept)
    video = make_video(tmp_path / "a.mp4", num_frames=8)
    manifest = write_manifest(tmp_path / "m.csv", [("a", video, "x", "train")])
    run(manifest, tmp_path / "cache", ["resnet18@112"])
    assert events == ["models built", "heap keeps", "heap handed back, models gone"]


def test_the_allocator_scope_restores_glibcs_thresholds_and_trims(monkeypatch):
    """Nested scopes (the demo runs commands in one process) set the thresholds once and undo them once,
    at the outermost exit, with a trim."""
    from pipeline.core import memory
    calls = []

    class Libc:
        def mallopt(self, parameter, value):
            calls.append(("mallopt", parameter, value))
            return 1

        def malloc_trim(self, pad):
            calls.append(("trim", pad))
            return 1

    monkeypatch.setattr(memory, "_libc", Libc)
    with memory.freed_memory_kept() as outer, memory.freed_memory_kept() as inner:
        assert outer and inner
        assert calls == [("mallopt", memory.M_MMAP_THRESHOLD, memory.MMAP_THRESHOLD_MAX),
                         ("mallopt", memory.M_TRIM_THRESHOLD, 2**31 - 1)]
    assert calls[2:] == [("mallopt", memory.M_MMAP_THRESHOLD, memory.DEFAULT_THRESHOLD),
                         ("mallopt", memory.M_TRIM_THRESHOLD, memory.DEFAULT_THRESHOLD), ("trim", 0)]
    monkeypatch.setattr(memory, "_libc", lambda: None)           # not glibc: nothing set, nothing undone
    with memory.freed_memory_kept() as kept:
        assert kept is False
