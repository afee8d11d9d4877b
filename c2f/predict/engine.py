"""`c2f predict`'s engine: a trained head on raw videos, the expensive network run only where the
head decides.

`Predictor.from_run(RUN)` rebuilds, from RUN/config.json and the cache attributes recorded there,
the phase-one pipeline the head was trained on: the same feature sets, sampling, seek mode,
preprocessing (one decoded square, each set's crop: pipeline.decode, FeatureSet.prepare, the
functions `c2f extract` uses), precision and weights (their sha256 checked against the cache's).
`predict(paths)` decodes the videos and hands the head a batch whose features are *computed when
the head reads them* (`ComputedFeatures`): LiteEval's coarse CNN runs on every frame it steps
through and its fine CNN only on the frames whose gate fired, across the videos of the batch;
AdaFocus's glance CNN runs on its sampled frames and the local CNN only on the one chosen patch of
each kept frame; the baselines compute what they read. The head's code is the same as in
evaluation on the cache (c2f.evaluate.run_head), so its decisions are the cache's up to the
float16 rounding of features computed in other batches.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from pipeline import backbones as bb
from pipeline.cache import attr
from pipeline.core.devices import resolve_device
from pipeline.core.errors import PredictError
from pipeline.core.files import sha256_of
from pipeline.decode import Sampling, decode_samples
from pipeline.runner import FeatureRunner

from ..data import VideoSet
from ..evaluate import EvalResult, decision_rows, run_head
from ..rundir import RunDir


@dataclass
class SetInfo:
    """What Batch and the FLOP accounting need of a feature set (c2f.data.FeatureSetInfo; the cache's
    FeatureIndex is the other kind)."""
    name: str
    attrs: dict
    kind: str
    gflops_per_frame: float


@dataclass
class Timer:
    seconds: dict[str, float] = field(default_factory=lambda: {"decode": 0.0, "cheap_cnn": 0.0,
                                                               "expensive_cnn": 0.0, "head": 0.0})


class ComputedFeatures:
    """A feature set of a batch of decoded videos, computed on demand (a c2f.data.FeatureSource, indexed
    like the cache's packed features: [rows] or, for a patch grid, [rows, candidates]). Each frame (each
    patch) is computed at most once, in one call per read, and counted in `computed` (per row)."""

    def __init__(self, fs: bb.FeatureSet, runner: FeatureRunner, squares: torch.Tensor, timer: Timer, stage: str):
        self.fs, self.runner, self.squares, self.timer, self.stage = fs, runner, squares, timer, stage
        self.shape = (len(squares), *fs.feature_shape)
        self.dtype = torch.float16
        self.cache: dict[tuple[int, int], torch.Tensor] = {}
        self.computed = np.zeros(len(squares), dtype=np.int64)

    def __len__(self) -> int:
        return self.shape[0]

    @torch.no_grad()
    def __getitem__(self, key) -> torch.Tensor:
        rows, candidates = key if isinstance(key, tuple) else (key, None)
        if candidates is None and self.fs.output == "grid":
            raise ValueError("a whole patch grid is never computed in prediction: read one candidate per frame")
        rows = [int(r) for r in torch.as_tensor(rows).reshape(-1)]
        picks = [-1] * len(rows) if candidates is None else [int(c) for c in torch.as_tensor(candidates).reshape(-1)]
        keys = list(zip(rows, picks))
        missing = list(dict.fromkeys(k for k in keys if k not in self.cache))
        if missing:
            started = time.perf_counter()
            frames = torch.tensor([r for r, _ in missing])
            x = self.fs.prepare(self.squares[frames], self.runner.preprocess)
            if self.fs.output == "grid":
                x = self.fs.cut_patches(x, torch.tensor([c for _, c in missing]))
            features = self.runner.run(self.fs, x, padded=False).to(torch.float16).cpu()
            for k, feature in zip(missing, features):
                self.cache[k] = feature
            np.add.at(self.computed, frames.numpy(), 1)
            self.timer.seconds[self.stage] += time.perf_counter() - started
        return torch.stack([self.cache[k] for k in keys]) if keys else torch.zeros(0, *self.shape[1:])


@dataclass
class Decoded:
    """One video's sampled frames, or why it could not be decoded."""
    video_id: str
    path: str
    timestamps: np.ndarray | None = None
    squares: torch.Tensor | None = None       # [T, Q, Q, 3] uint8
    seconds: float = 0.0
    error: str | None = None


@dataclass
class BatchResult:
    videos: list[Decoded]
    result: EvalResult
    executed_gflops: np.ndarray            # [V]: what ran, counted per frame / patch, plus the head's steps
    seconds: np.ndarray                    # [V]: its decode plus its share of the batch's compute


def _sampling(attrs: dict) -> Sampling:
    return Sampling(num_frames=int(attrs["num_frames"])) if "num_frames" in attrs else Sampling(fps=float(attrs["fps"]))


def rebuild_set(name: str, attrs: dict) -> bb.FeatureSet:
    """The registered feature set behind a cached one, refused when the cache's attributes do not
    describe it (a cache made by another tool, or a synthetic one)."""
    try:
        fs = bb.parse_spec(name)
    except ValueError as err:
        raise PredictError(f"cannot rebuild feature set {name!r} ({err}); was the cache made by another tool?") from None
    recorded = {k: attrs.get(k) for k in ("backbone", "input_size", "output", "grid", "patch_size")}
    expected = {"backbone": fs.backbone.name, "input_size": fs.input_size, "output": fs.output, "grid": fs.grid,
                "patch_size": fs.patch_size}
    if recorded != expected:
        raise PredictError(f"feature set {name}: the cache records {recorded}, the registry builds {expected}; "
                           "was the cache made by another tool?")
    if fs.output == "clip":
        raise PredictError(f"{name}: snippet sets (SlowFast) are not predicted from raw videos yet; only frame sets")
    return fs


def resolve_weights(recorded: dict[str, str], given: list[str], allow_other: bool) -> tuple[dict[str, str], list[str]]:
    """Each set's weights, and notes on those that differ from what the cache recorded.

    `given` as for `c2f extract`: SET=VALUE for one set, or bare values: a bare PATH serves every
    set that recorded its sha256 (else, as another file, the sets that recorded a file);
    imagenet / random serve the sets that recorded nothing else usable. A set recorded with
    imagenet or random needs nothing given."""
    bare, explicit = bb.parse_weights_option(given)
    unknown = set(explicit) - set(recorded)
    if unknown:
        raise PredictError(f"--weights names feature sets this run does not use: {', '.join(sorted(unknown))}")
    for value in list(explicit.values()) + bare:
        bb.check_weights(value)
    hashes = {value: sha256_of(value) for value in bare if value not in ("imagenet", "random")}
    chosen, notes = {}, []
    for name, tag in recorded.items():
        by_hash = [value for value, digest in hashes.items() if digest == tag]
        words = [value for value in bare if value in ("imagenet", "random")]
        files = list(hashes) if tag not in ("imagenet", "random") else []
        value = explicit.get(name) or (by_hash[0] if by_hash else None) or \
            (tag if tag in ("imagenet", "random") else None) or (files[0] if files else None) or \
            (words[0] if words else None)
        if value is None:
            raise PredictError(f"{name} was extracted with the weights whose sha256 is {tag[:16]}...: "
                               f"pass that file with --weights {name}=PATH")
        used = bb.weights_tag(value)
        if used != tag:
            if not allow_other:
                raise PredictError(f"{name}: the weights given ({value}, {used[:16]}) are not the cache's "
                                   f"({tag[:16]}); pass the same file, or --allow-other-weights")
            notes.append(f"{name}: {value} ({used[:16]}) instead of the cache's {tag[:16]}")
        chosen[name] = value
    return chosen, notes


class Predictor:
    """A trained head with the phase-one pipeline it was trained on."""

    def __init__(self, run: Path, head, cfg, classes: list[str], sets: dict[str, bb.FeatureSet],
                 attrs: dict[str, dict], runner: FeatureRunner, budget: int | None, notes: list[str]):
        self.run, self.head, self.cfg, self.classes = run, head, cfg, classes
        self.sets, self.attrs, self.runner, self.budget, self.notes = sets, attrs, runner, budget, notes
        first = next(iter(attrs.values()))
        self.sampling, self.seek = _sampling(first), attr(first, "seek")
        self.video_timeout: float | None = None        # seconds one video may take to decode

    @classmethod
    def from_run(cls, run: str | Path, weights: list[str] = (), device: str = "auto", allow_other_weights: bool = False,
                 budget: int | None = None, batch_size: int = 32) -> "Predictor":
        run = Path(run)
        folder = RunDir(run)
        folder.require_finished()
        saved = folder.config()
        if "feature_sets" not in saved or not all("attrs" in s for s in saved["feature_sets"].values()):
            raise PredictError(f"{run}/config.json has no feature-set attributes (a run from an older c2f): "
                               "train it again with this c2f")
        cfg, head, classes = folder.load()
        if budget is not None and not cfg.record.budgeted:
            raise PredictError(f"{cfg.method} has no online budget; --budget applies to the budgeted methods")
        attrs = {role: s["attrs"] for role, s in saved["feature_sets"].items()}
        sets = {role: rebuild_set(s["name"], s["attrs"]) for role, s in saved["feature_sets"].items()}
        for key in ("fps", "num_frames", "seek", "preprocess", "canvas", "precision"):
            values = {str(a.get(key)) for a in attrs.values()}
            if len(values) > 1:
                raise PredictError(f"the run's feature sets were extracted with different {key} ({', '.join(values)}): "
                                   "predict rebuilds one decoding for all of them")
        chosen, notes = resolve_weights({s.name: attrs[r]["weights"] for r, s in sets.items()}, list(weights),
                                        allow_other_weights)
        first = next(iter(attrs.values()))
        preprocess = attr(first, "preprocess")
        runner = FeatureRunner(list({s.name: s for s in sets.values()}.values()), chosen, resolve_device(device),
                               batch_size, first.get("precision", "fp32"), bool(first.get("channels_last", 1)),
                               preprocess)
        # the decoded square's side as extraction had it (a run of more sets may have had a larger one)
        runner.canvas = int(first.get("canvas", runner.canvas))
        return cls(run, head.to(runner.device), cfg, classes, sets, attrs, runner, budget, notes)

    # ------------------------------------------------------------------ running

    def decode(self, video_id: str, path: str | Path) -> Decoded:
        """The video's sampled squares, as phase one decoded them for the cache."""
        started = time.perf_counter()
        try:
            samples = list(decode_samples(path, self.sampling, self.runner.canvas, seek=self.seek,
                                          timeout=self.video_timeout))
        except Exception as err:  # noqa: BLE001 - one bad file must never stop the run
            reason = str(err).splitlines()[0] if str(err).strip() else err.__class__.__name__
            return Decoded(video_id, str(path), error=reason, seconds=time.perf_counter() - started)
        if not samples:
            return Decoded(video_id, str(path), error="no frames sampled", seconds=time.perf_counter() - started)
        squares = torch.from_numpy(np.stack([s.image for s in samples]))
        stamps = np.array([s.timestamp for s in samples], dtype=np.float32)
        return Decoded(video_id, str(path), stamps, squares, time.perf_counter() - started)

    def predict(self, path: str | Path, video_id: str | None = None) -> dict:
        """One video (for a notebook): its top-5, fine reads, GFLOPs executed, seconds and decisions."""
        decoded = self.decode(video_id or Path(path).stem, path)
        if decoded.error:
            raise PredictError(f"{path}: {decoded.error}")
        predictions, decisions = self.rows(self.run_batch([decoded], Timer()))
        return predictions[0] | {"decisions": decisions}

    def run_batch(self, videos: list[Decoded], timer: Timer) -> BatchResult:
        """The head over decoded videos, their features computed where it reads them."""
        offsets = np.zeros(len(videos) + 1, dtype=np.int64)
        offsets[1:] = np.cumsum([len(v.timestamps) for v in videos])
        squares = torch.cat([v.squares for v in videos])
        features, infos = {}, {}
        for role, fs in self.sets.items():
            stage = "expensive_cnn" if role == "fine" else "cheap_cnn"
            features[role] = ComputedFeatures(fs, self.runner, squares, timer, stage)
            infos[role] = SetInfo(fs.name, self.attrs[role], fs.output, float(self.attrs[role]["gflops_per_frame"]))
        video_set = VideoSet([v.video_id for v in videos], torch.zeros(len(videos), len(self.classes)),
                             torch.from_numpy(offsets), np.concatenate([v.timestamps for v in videos]), features,
                             infos, self.classes)
        cnn_before = timer.seconds["cheap_cnn"] + timer.seconds["expensive_cnn"]
        started = time.perf_counter()
        result = run_head(self.head, video_set, batch_size=len(videos), device=str(self.runner.device),
                          fine_budget=self.budget)
        compute = time.perf_counter() - started
        cnn = timer.seconds["cheap_cnn"] + timer.seconds["expensive_cnn"] - cnn_before
        timer.seconds["head"] += compute - cnn
        timer.seconds["decode"] += sum(v.seconds for v in videos)
        ran = sum(np.add.reduceat(f.computed, offsets[:-1]) * infos[r].gflops_per_frame for r, f in features.items())
        executed = ran + (result.gflops - self._read_gflops(result, infos))     # + the head's own steps
        share = executed / executed.sum() if executed.sum() > 0 else np.full(len(videos), 1 / len(videos))
        seconds = np.array([v.seconds for v in videos]) + compute * share
        return BatchResult(videos, result, executed, seconds)

    @staticmethod
    def _read_gflops(result: EvalResult, infos: dict[str, SetInfo]) -> np.ndarray:
        """The feature part of the evaluation's GFLOPs (reads x cost), to leave the head's own steps."""
        return sum(result.per_video(role) * info.gflops_per_frame for role, info in infos.items())

    def rows(self, batch: BatchResult) -> tuple[list[dict], list[tuple]]:
        """predictions.csv rows (top-5 with probabilities) and decisions.csv rows of a batch."""
        result, predictions = batch.result, []
        fine = result.fine_count()
        for i, video in enumerate(batch.videos):
            top = np.argsort(-result.scores[i])[:5]
            predictions.append({"video_id": video.video_id, "pred": self.classes[top[0]],
                                "prob": f"{result.scores[i, top[0]]:.4f}",
                                "top5": "|".join(f"{self.classes[k]}:{result.scores[i, k]:.4f}" for k in top),
                                "fine_count": int(fine[i]), "gflops": f"{batch.executed_gflops[i]:.4f}",
                                "seconds": f"{batch.seconds[i]:.4f}", "frames": len(video.timestamps)})
        return predictions, list(decision_rows(result))
