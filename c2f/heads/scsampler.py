"""SCSampler (Korbar, Tran, Torresani, ICCV 2019), in the image version AdaFocus and AR-Net compare
with: a cheap sampler scores each of T evenly spaced frames on its own (its highest class logit on
the cheap feature), the expensive feature is read on the K highest-scoring frames only, and the
video's logits are the mean of the expensive classifier's logits on those K.

Trained in one stage on a feature cache (the backbones are frozen): the expensive classifier per
frame, with the video's labels, on every sampled frame (as UNIFORM: it never sees which frames the
sampler will pick, so it cannot lean on them), and the sampler either as a classifier of the whole
video (`ce`: cross-entropy on the mean of its frame logits, as AR-Net's reimplementation trains it)
or by the paper's saliency ranking loss (`ranking`: for every pair of frames of a video, the sampler's
score of the labels must order them as the expensive classifier's probability of the labels does).
K, the frames read, is the knob of its operating curve. Evaluation reads the cheap feature of the T
frames and the expensive one of the K chosen; nothing else.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from pipeline.core.options import option

from ..blocks.head import Head, HeadDims, HeadOutput, Knob, soft_targets
from ..data import Batch, segment_positions
from ..methods import COARSE, Method, Preset, Role, Settings, register

SAMPLER_LOSSES = ("ce", "ranking")
SAMPLERS = ("learned", "random")
K_TARGETS = (1, 2, 4, 6, 8, 10, 12, 16)     # the operating curve's frames read


@dataclass
class SCSamplerSettings(Settings):
    frames: int = option(16, "evenly spaced frames the sampler scores per video (the papers' T)", minimum=1,
                         variant=True)
    top_k: int = option(10, "frames whose expensive feature is read: the sampler's K best (the papers: 10 of 16)",
                        minimum=1, variant=True)
    sampler: str = option("learned", "which K frames are read: the learned sampler's best, or K of the T at random "
                                     "(the baseline the sampler must beat; it reads no cheap feature)",
                          choices=SAMPLERS, variant=True)
    # ranking: where the cheap feature shows where to look but not what (the synthetic task), `ce` learns nothing
    # the random sampler does not (docs/methods/scsampler.md)
    sampler_loss: str = option("ranking", "how the sampler learns: `ranking` orders every pair of a video's frames as "
                                          "the expensive classifier's probability of the labels does (the paper's "
                                          "saliency ranking loss); `ce` classifies the video from the mean of its frame "
                                          "logits (AR-Net's reimplementation without --sal_rank_loss)",
                               choices=SAMPLER_LOSSES, variant=True)
    # both are linear classifiers trained on frames of which most show nothing of the label: as UNIFORM,
    # a strong decay keeps them from memorising those frames
    weight_decay: float = option(10.0, "AdamW's decoupled weight decay (each step shrinks every weight by the rate "
                                       "times this)", minimum=0)


class SCSamplerHead(Head):
    video_loss = False          # its losses are per frame (the classifier) and the sampler's own

    def __init__(self, dims: HeadDims, settings: SCSamplerSettings = SCSamplerSettings()):
        super().__init__(dims)
        self.frames, self.sampler_kind, self.sampler_loss = settings.frames, settings.sampler, settings.sampler_loss
        self.sampler = nn.Linear(dims.coarse_dim, dims.num_classes)
        self.classifier = nn.Linear(dims.fine_dim, dims.num_classes)
        self.register_buffer("top_k", torch.tensor(float(settings.top_k)))      # a buffer: the curve's knob

    @property
    def reads(self) -> int:
        """K, the frames whose expensive feature a video reads (at most the frames scored)."""
        return max(1, min(int(self.top_k), self.frames))

    def forward(self, batch: Batch, fine_budget: int | None = None) -> HeadOutput:
        positions = segment_positions(batch.lengths, self.frames, random=self.training)
        learned = self.sampler_kind == "learned"
        scores = self.sampler(batch.read_frames("coarse", positions)) if learned else None       # [B, T, C]
        if self.training:
            return self._dense(batch, positions, scores)
        saliency = scores.max(-1).values if learned else torch.rand(positions.shape, device=batch.mask.device)
        chosen = saliency.topk(self.reads, dim=1).indices                                        # the K most salient
        logits = self.classifier(batch.read_frames("fine", positions.gather(1, chosen.cpu()))).mean(1)
        c = self.costs
        head = (self.frames * c["sampler"] if learned else 0.0) + self.reads * c["classifier"]
        return HeadOutput(logits, torch.full((len(batch),), head, device=logits.device))

    def _dense(self, batch: Batch, positions: torch.Tensor, scores: torch.Tensor) -> HeadOutput:
        """Training: the classifier on every sampled frame and the sampler's loss (the logits: the classifier's
        mean over the frames, for the logs)."""
        frame_logits = self.classifier(batch.read_frames("fine", positions))      # [B, T, C]
        target = soft_targets(batch.targets)
        frame_ce = F.cross_entropy(frame_logits.flatten(0, 1), target[:, None, :].expand_as(frame_logits).flatten(0, 1))
        out = HeadOutput(frame_logits.mean(1), torch.zeros(len(batch), device=frame_logits.device))
        out.extra_loss = {"frame_ce": frame_ce}
        if scores is not None:
            out.extra_loss["sampler"] = self._sampler_loss(scores, frame_logits, batch.targets)
        return out

    def _sampler_loss(self, scores: torch.Tensor, frame_logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if self.sampler_loss == "ce":
            return F.cross_entropy(scores.mean(1), soft_targets(targets))
        is_label = (targets > 0)[:, None, :]
        score = scores.masked_fill(~is_label, float("-inf")).logsumexp(-1)                      # [B, T]
        saliency = (frame_logits.detach().softmax(-1) * is_label).sum(-1)                       # [B, T]
        first, second = torch.triu_indices(self.frames, self.frames, offset=1)
        order = torch.sign(saliency[:, first] - saliency[:, second])
        ranked = order != 0                                                     # ties say nothing
        if not ranked.any():
            return scores.sum() * 0.0
        return F.margin_ranking_loss(score[:, first][ranked], score[:, second][ranked], order[ranked])

    def knobs(self) -> list[Knob]:
        return [Knob("frames_read", "top_k", K_TARGETS, "frames whose expensive feature is read (K)",
                     lambda batches, targets: [float(k) for k in targets])]

    def summary(self) -> dict:
        return {"top_k": self.reads}

    def cost_probes(self):
        return {"sampler": (self.sampler, (torch.zeros(1, self.dims.coarse_dim),)),
                "classifier": (self.classifier, (torch.zeros(1, self.dims.fine_dim),))}


# The published rows (AdaFocus Table 1 and Table 2, from AR-Net's reimplementation) read ResNet-50 on the
# K = 10 best of 16 frames, the sampler a MobileNetV2 on the lowest resolution of AR-Net's --reso_list (84 px)
_PAPER = {"method": "scsampler", "coarse": "mobilenet_v2@84", "fine": "resnet50@224", "frames": 16, "top_k": 10,
          "sampler_loss": "ranking", "optimizer": "sgd", "lr": 1e-3, "weight_decay": 1e-4, "batch_size": 48,
          "epochs": 50}
_SOURCE = ("SCSampler (Korbar et al. 2019) in the image version of AR-Net's reimplementation (Meng et al. 2020, whose "
           "numbers AdaFocus Tables 1-2 copy): 16 frames, the top 10 read by ResNet-50, a MobileNetV2 sampler on 84 px "
           "frames (released code: --top_k 10, --real_scsampler, --sal_rank_loss, --reso_list 224 168 112 84). The "
           "optimiser is the released main_base.py's defaults, which no script overrides for SCSampler: SGD with "
           "momentum 0.9 at 1e-3, L2 1e-4, 50 epochs (its rate steps lie past them), batch 48")
PRESETS = {f"scsampler-{dataset}": Preset(_PAPER, _SOURCE) for dataset in ("activitynet", "fcvid", "minikinetics")}
register(Method("scsampler", SCSamplerHead, SCSamplerSettings,
                {"coarse": COARSE, "fine": Role("fine", "pooled", "resnet50@224",
                                                help="expensive feature set, read on the K frames chosen")},
                budgeted=False, summary="SCSampler: a cheap sampler scores every frame; the expensive feature on the "
                                        "K best", presets=PRESETS))
