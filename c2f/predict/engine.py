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
each kept frame; the baselines compute what they read. A clip set (SlowFast) reads a snippet around
each sample: the snippets of the samples read, and only those, are decoded and run (LazySnippets).
The head's code is the same as in evaluation on the cache (c2f.evaluate.run_head), so its decisions
are the cache's up to the float16 rounding of features computed in other batches.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from pipeline import backbones as bb
from pipeline.cache import attr
from pipeline.core.errors import PredictError
from pipeline.core.files import error_line
from pipeline.decode import SamplePlan, plan_samples, read_samples
from pipeline.runner import FeatureRunner

from ..data import VideoSet
from ..evaluate import EvalResult, run_head
from ..methods import role_of
from ..rundir import RunDir
from .lazy import LazySnippets, LazySquares, snippet_features
from .operating import apply_point, apply_thresholds, parse_thresholds, point_within
from .prediction import Prediction, predictions_of
from .rebuild import rebuild, require_attributes, sampling_of


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
    """Seconds by stage: decoding, the cheap and the expensive CNNs, the head (everything else of a
    batch), and writing the outputs (`c2f predict`)."""
    seconds: dict[str, float] = field(default_factory=lambda: {"decode": 0.0, "cheap_cnn": 0.0,
                                                               "expensive_cnn": 0.0, "head": 0.0, "output": 0.0})


class ComputedFeatures:
    """A feature set of a batch of decoded videos, computed on demand (a c2f.data.FeatureSource, indexed
    like the cache's packed features: [rows] or, for a patch grid, [rows, candidates]). Each frame (each
    patch, each snippet) is computed at most once, in one call per read, and counted in `computed` (per row).
    A clip set's snippets come from `snippets` (LazySnippets, the same rows), decoded as they are read."""

    def __init__(self, fs: bb.FeatureSet, runner: FeatureRunner, squares: torch.Tensor, timer: Timer, stage: str,
                 snippets: LazySnippets | None = None):
        self.fs, self.runner, self.squares, self.timer, self.stage = fs, runner, squares, timer, stage
        self.snippets = snippets
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
            if self.fs.output == "clip":
                missing.sort()                      # each video's snippets in time order: decoded forward
            frames = torch.tensor([r for r, _ in missing])
            # squares decoded lazily are timed as decoding (LazySquares), snippets too (LazySnippets): not here
            squares = None if self.fs.output == "clip" else self.squares[frames]
            started, decoding = time.perf_counter(), 0.0
            if self.fs.output == "clip":
                features, decoding = snippet_features(self.fs, self.runner, self.snippets, frames)
            else:
                x = self.fs.prepare(squares, self.runner.preprocess)
                if self.fs.output == "grid":
                    x = self.fs.cut_patches(x, torch.tensor([c for _, c in missing]))
                features = self.runner.run(self.fs, x, padded=False).to(torch.float16).cpu()
            for k, feature in zip(missing, features):
                self.cache[k] = feature
            np.add.at(self.computed, frames.numpy(), 1)
            self.timer.seconds[self.stage] += time.perf_counter() - started - decoding
        return torch.stack([self.cache[k] for k in keys]) if keys else torch.zeros(0, *self.shape[1:])


@dataclass
class Decoded:
    """One video's sampled frames, or why it could not be decoded."""
    video_id: str
    path: str
    timestamps: np.ndarray | None = None
    squares: torch.Tensor | None = None       # [T, Q, Q, 3] uint8 (lazily decoded: the frames decoded)
    seconds: float = 0.0
    error: str | None = None
    plan: SamplePlan | None = None            # lazily decoded, or a clip run: snippets (squares) decoded as read
    frames_decoded: int | None = None


@dataclass
class BatchResult:
    videos: list[Decoded]
    result: EvalResult
    executed_gflops: np.ndarray            # [V]: what ran, counted per frame / patch, plus the head's steps
    seconds: np.ndarray                    # [V]: its decode plus its share of the batch's compute
    failed: list[Decoded] = field(default_factory=list)     # lazily decoded videos that failed part-way


class Predictor:
    """A trained head with the phase-one pipeline it was trained on."""

    def __init__(self, run: Path, head, cfg, classes: list[str], sets: dict[str, bb.FeatureSet],
                 attrs: dict[str, dict], runner: FeatureRunner, budget: int | None, notes: list[str]):
        self.run, self.head, self.cfg, self.classes = run, head, cfg, classes
        self.sets, self.attrs, self.runner, self.budget, self.notes = sets, attrs, runner, budget, notes
        first = next(iter(attrs.values()))
        self.sampling, self.seek = sampling_of(first), attr(first, "seek")
        self.video_timeout: float | None = None        # seconds one video may take to decode
        self.weights: dict[str, str] = {}              # set -> the weights used (imagenet, random or a sha256)
        self.operating_point: dict = {}                # what from_run set the head at (--gflops-budget, --threshold)

    @classmethod
    def from_run(cls, run: str | Path, weights: list[str] = (), device: str = "auto", allow_other_weights: bool = False,
                 budget: int | None = None, batch_size: int | None = None, gflops_budget: float | None = None,
                 thresholds: list[str] = ()) -> "Predictor":
        """The run's head with its phase-one pipeline rebuilt (c2f.predict.rebuild); `weights` as for
        `c2f extract` (needed only where the cache's checkpoint is not where extraction read it). The
        head runs as trained, or at the best point of its curve within `gflops_budget`, or with the
        `thresholds` given (KNOB=VALUE; c2f.predict.operating). `batch_size`: rows a network call
        (default: the device's, pipeline.batching)."""
        folder = RunDir(run)
        folder.require_finished()
        try:
            require_attributes(folder.config())
        except PredictError as err:
            raise PredictError(f"{folder.path}/{err}", err.hint) from None
        cfg, head, classes = folder.load()
        point = point_within(folder, gflops_budget) if gflops_budget is not None else None
        if point is not None:
            budget = apply_point(head, point) or budget
        chosen = parse_thresholds(list(thresholds), head)
        apply_thresholds(head, chosen)
        if budget is not None and not cfg.record.budgeted:
            raise PredictError(f"{cfg.method} has no online budget; --budget applies to the budgeted methods")
        try:
            sets, attrs, runner, used, notes = rebuild(folder.config(), weights, device, allow_other_weights, batch_size)
        except PredictError as err:
            raise PredictError(f"{folder.path}: {err}", err.hint) from None
        predictor = cls(folder.path, head.to(runner.device), cfg, classes, sets, attrs, runner, budget, notes)
        predictor.weights = used
        predictor.operating_point = {"gflops_budget": gflops_budget, "point": point, "thresholds": chosen,
                                     "chosen_on": None if point is None else point["chosen_on"]}
        return predictor

    # ------------------------------------------------------------------ running

    @property
    def lazy(self) -> bool:
        """Whether videos may stop early (early exit, a budget): then they are decoded as the head reads."""
        return self.budget is not None or (self.head.can_exit and bool(torch.isfinite(self.head.exit_threshold)))

    def decode(self, video_id: str, path: str | Path) -> Decoded:
        """The video's sampled squares, as phase one decoded them for the cache (lazily: its sample plan)."""
        started = time.perf_counter()
        if self.lazy:
            try:
                plan = plan_samples(path, self.sampling, self.seek, self.video_timeout)
            except Exception as err:  # noqa: BLE001 - one bad file must never stop the run
                return Decoded(video_id, str(path), error=error_line(err), seconds=time.perf_counter() - started)
            if not plan.count:
                return Decoded(video_id, str(path), error="no frames sampled", seconds=time.perf_counter() - started)
            return Decoded(video_id, str(path), np.array(plan.wanted, dtype=np.float32), None,
                           time.perf_counter() - started, plan=plan)
        try:
            plan = plan_samples(path, self.sampling, self.seek, self.video_timeout)
            samples = list(read_samples(plan, self.runner.canvas))
        except Exception as err:  # noqa: BLE001 - one bad file must never stop the run
            return Decoded(video_id, str(path), error=error_line(err), seconds=time.perf_counter() - started)
        if not samples:
            return Decoded(video_id, str(path), error="no frames sampled", seconds=time.perf_counter() - started)
        squares = torch.from_numpy(np.stack([s.image for s in samples]))
        stamps = np.array([s.timestamp for s in samples], dtype=np.float32)
        return Decoded(video_id, str(path), stamps, squares, time.perf_counter() - started,
                       plan=plan if self.runner.clip_frames else None)       # a clip run: its snippets, as read

    def predict(self, path: str | Path, video_id: str | None = None) -> Prediction:
        """One video (in a notebook): PredictError when it cannot be decoded."""
        decoded = self.decode(video_id or Path(path).stem, path)
        if decoded.error:
            raise PredictError(f"{path}: {decoded.error}")
        batch = self.run_batch([decoded], Timer())
        if batch.failed:
            raise PredictError(f"{path}: {batch.failed[0].error}")
        return self.predictions(batch)[0]

    def predict_many(self, paths: list[str | Path], batch_size: int = 16) -> list[Prediction | PredictError]:
        """Many videos, the CNNs run across each batch of them; in the order given, a PredictError in
        place of a video that cannot be decoded."""
        out: list[Prediction | PredictError] = []
        for start in range(0, len(paths), batch_size):
            decoded = [self.decode(Path(p).stem, p) for p in paths[start:start + batch_size]]
            good = [d for d in decoded if d.error is None]
            done = iter(self.predictions(self.run_batch(good, Timer())) if good else [])   # sets .error where it fails
            out += [next(done) if d.error is None else PredictError(f"{d.path}: {d.error}") for d in decoded]
        return out

    def predictions(self, batch: "BatchResult") -> list[Prediction]:
        return predictions_of(batch, self.classes)

    def run_batch(self, videos: list[Decoded], timer: Timer) -> BatchResult:
        """The head over decoded videos, their features computed where it reads them. Adds to `timer`
        this call's seconds (decoding done here, each CNN, the head): they add up to the call's."""
        started = time.perf_counter()
        offsets = np.zeros(len(videos) + 1, dtype=np.int64)
        offsets[1:] = np.cumsum([len(v.timestamps) for v in videos])
        lazy = videos[0].squares is None
        squares = LazySquares([v.plan for v in videos], self.runner.canvas, timer) if lazy else \
            torch.cat([v.squares for v in videos])
        snippets = LazySnippets([v.plan for v in videos], self.runner.canvas, self.runner.clip_frames,
                                self.runner.clip_stride, timer) if self.runner.clip_frames else None
        on_demand = [d for d in (squares if lazy else None, snippets) if d is not None]   # decoded as the head reads
        features, infos = {}, {}
        for role, fs in self.sets.items():
            stage = "expensive_cnn" if role_of(role) == "fine" else "cheap_cnn"
            features[role] = ComputedFeatures(fs, self.runner, squares, timer, stage, snippets)
            infos[role] = SetInfo(fs.name, self.attrs[role], fs.output, float(self.attrs[role]["gflops_per_frame"]))
        video_set = VideoSet([v.video_id for v in videos], torch.zeros(len(videos), len(self.classes)),
                             torch.from_numpy(offsets), np.concatenate([v.timestamps for v in videos]), features,
                             infos, self.classes)
        cnn_before = timer.seconds["cheap_cnn"] + timer.seconds["expensive_cnn"]
        result = run_head(self.head, video_set, batch_size=len(videos), device=str(self.runner.device),
                          fine_budget=self.budget)
        for decoder in on_demand:
            decoder.close()
            for i, video in enumerate(videos):
                video.seconds += decoder.seconds[i]
        if lazy:
            for i, video in enumerate(videos):
                video.squares, video.frames_decoded = squares.squares_of(i), squares.decoded_count(i)
        # the stages are disjoint spans of this call: decoding as the head reads (LazySquares, LazySnippets),
        # the CNNs (ComputedFeatures), and the rest, the head's own (so each is >= 0 and they add up to the call)
        decoded = sum(decoder.seconds.sum() for decoder in on_demand)
        cnn = timer.seconds["cheap_cnn"] + timer.seconds["expensive_cnn"] - cnn_before
        compute = time.perf_counter() - started - decoded
        timer.seconds["head"] += compute - cnn
        ran = sum(np.add.reduceat(f.computed, offsets[:-1]) * infos[r].gflops_per_frame for r, f in features.items())
        executed = ran + (result.gflops - self._read_gflops(result, infos))     # + the head's own steps
        share = executed / executed.sum() if executed.sum() > 0 else np.full(len(videos), 1 / len(videos))
        seconds = np.array([v.seconds for v in videos]) + compute * share
        errors = {i: error for d in reversed(on_demand) for i, error in d.errors.items()}
        if not errors:
            return BatchResult(videos, result, executed, seconds)
        failed = sorted(errors)
        for i in failed:
            videos[i].error = errors[i]
        keep = [i for i in range(len(videos)) if i not in errors]
        return BatchResult([videos[i] for i in keep], result.subset(keep), executed[keep], seconds[keep],
                           [videos[i] for i in failed])

    @staticmethod
    def _read_gflops(result: EvalResult, infos: dict[str, SetInfo]) -> np.ndarray:
        """The feature part of the evaluation's GFLOPs (reads x cost), to leave the head's own steps."""
        return sum(result.per_video(role) * info.gflops_per_frame for role, info in infos.items())
