"""UNIFORM and UNIFORM+CF (LiteEval Table 1): a linear classifier per frame on `frames` evenly
spaced frames, trained per frame; the video's score is the mean of the frames' softmax.
UNIFORM+CF also classifies the coarse feature and averages the two frame scores."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from pipeline.core.options import option

from ..data import Batch, uniform_positions
from ..methods import COARSE, FINE, Method, Preset, register
from ..blocks.head import EvenFrames, Head, HeadDims, HeadOutput, soft_targets
from ..blocks.exits import EarlyExit, running_steps


@dataclass
class FrameClassifierSettings(EvenFrames):
    # every frame is trained with the video's label, most of them showing nothing of it: a weak decay lets
    # the classifier memorise those frames (each training video's look), which no other video shares
    weight_decay: float = option(10.0, "AdamW's decoupled weight decay (each step shrinks every weight by the rate "
                                       "times this)", minimum=0)


class UniformHead(EarlyExit, Head):
    video_loss = False

    def __init__(self, dims: HeadDims, settings: EvenFrames = EvenFrames(), combine: bool = False):
        super().__init__(dims)
        self.frames, self.combine = settings.frames, combine
        self.fine_classifier = nn.Linear(dims.fine_dim, dims.num_classes)
        self.coarse_classifier = nn.Linear(dims.coarse_dim, dims.num_classes) if combine else None

    def frame_probs(self, batch: Batch, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-frame class probabilities [B, F, C] at `positions`, and the frame logits' CE terms' input."""
        logits = [self.fine_classifier(batch.read_frames("fine", positions))]
        if self.combine:
            logits.append(self.coarse_classifier(batch.read_frames("coarse", positions)))
        probs = torch.stack([l.softmax(-1) for l in logits]).mean(0)
        return probs, logits

    def forward(self, batch: Batch, fine_budget: int | None = None) -> HeadOutput:
        positions = uniform_positions(batch.lengths, self.frames)
        per_frame = self.costs["fine_classifier"] + (self.costs["coarse_classifier"] if self.combine else 0.0)
        if self.exits:
            mean, seen = self._exiting(batch, positions, per_frame)
            return HeadOutput(mean.clamp(min=1e-12).log(), seen * per_frame)
        probs, frame_logits = self.frame_probs(batch, positions)
        video_logits = probs.mean(1).clamp(min=1e-12).log()      # softmax of this is the mean score
        extra = {}
        if self.training:
            target = soft_targets(batch.targets)[:, None, :].expand(-1, self.frames, -1)
            extra["frame_ce"] = sum(F.cross_entropy(l.flatten(0, 1), target.flatten(0, 1)) for l in frame_logits)
        head = torch.full((len(batch),), self.frames * per_frame, device=video_logits.device)
        return HeadOutput(video_logits, head, extra)

    def _exiting(self, batch: Batch, positions: torch.Tensor, per_frame: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Frame after frame in time order, a video stopping once its mean score is confident: the mean
        scores [B, C] and the frames each video read [B]."""
        device = batch.mask.device
        total = torch.zeros(len(batch), self.dims.num_classes, device=device)
        seen = torch.zeros(len(batch), device=device)
        active = torch.ones(len(batch), dtype=torch.bool, device=device)
        for rows, frames in running_steps(active, positions):
            probs = self.fine_classifier(batch.read("fine", rows, frames)).softmax(-1)
            if self.combine:
                probs = (probs + self.coarse_classifier(batch.read("coarse", rows, frames)).softmax(-1)) / 2
            total[rows] += probs
            seen[rows] += 1
            sure = self.stops(batch, rows, (total[rows] / seen[rows, None]).log(), seen[rows] * per_frame)
            active[rows[sure]] = False
        return total / seen[:, None], seen

    def cost_probes(self):
        probes = {"fine_classifier": (self.fine_classifier, (torch.zeros(1, self.dims.fine_dim),))}
        if self.combine:
            probes["coarse_classifier"] = (self.coarse_classifier, (torch.zeros(1, self.dims.coarse_dim),))
        return probes


_PAPER = {"method": "uniform", "fine": "resnet101@224", "frames": 25, "optimizer": "adam", "lr": 1e-4,
          "batch_size": 128, "weight_decay": 1e-4, "epochs": 100}
_SOURCE = ("LiteEval Sec. 4.1 (UNIFORM: 25 evenly spaced frames, ResNet-101); its optimiser is not stated: LiteEval's "
           "(Adam at 1e-4, L2 1e-4, the rate / 10 at epochs 40 and 80)")
register(Method("uniform", lambda dims, s: UniformHead(dims, s, combine=False), FrameClassifierSettings,
                {"fine": FINE}, budgeted=False,
                summary="a linear classifier per frame on evenly spaced frames; the mean softmax",
                presets={"uniform-activitynet": Preset(_PAPER, _SOURCE)}))
register(Method("uniform_cf", lambda dims, s: UniformHead(dims, s, combine=True), FrameClassifierSettings,
                {"coarse": COARSE, "fine": FINE}, budgeted=False,
                summary="UNIFORM+CF: coarse and fine classifiers per frame, scores averaged"))
