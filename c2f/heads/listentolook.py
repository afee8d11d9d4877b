"""Listen to Look (Gao et al., CVPR 2020) in its image-based version, as AdaFocus compares with it: with
no audio, the preview is the cheap image feature and the IMGAUD2VID distillation does not apply.

A video's `frames` evenly spaced frames are the candidates. Their cheap features are read first and
become the attention's keys (c2f.blocks.attention). An LSTM starts from the mean cheap feature; at
each of `picks` steps its state queries the keys of the frames not picked yet, the top-scoring frame
is picked and its expensive feature read, and [cheap, expensive] of that frame is the LSTM's next
input. The video is classified by one linear layer on the mean of the expensive features picked.

Training computes densely, as the authors' code: each step reads the attention-weighted average of
every candidate's features (so the choice gets a gradient), the arg-max frame is still excluded from
later steps, and the loss is the cross-entropy of the classifier on the mean of those averages.
Evaluation reads the expensive feature of the picked frames alone, never one frame twice.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from pipeline.core.options import option

from ..blocks.attention import FrameAttention, mark_picked, weighted_average
from ..blocks.exits import EarlyExit
from ..blocks.head import Head, HeadDims, HeadOutput, Knob
from ..blocks.rnn import Cell, FineRNN
from ..data import Batch, segment_positions
from ..methods import COARSE, FINE, Method, Preset, register

PICK_TARGETS = (1, 2, 4, 6, 8, 10, 12, 16)      # the operating curve's counts of frames picked


@dataclass
class ListenToLookSettings(FineRNN):
    frames: int = option(16, "evenly spaced candidate frames (one a segment) whose cheap features the attention "
                             "searches", minimum=1, variant=True)
    picks: int = option(10, "frames picked, one an LSTM step, each read at the fine scale (the paper's 10 steps)",
                        minimum=1, variant=True)
    attention_dim: int = option(512, "size of the attention's keys and queries (the authors' code: 512)", minimum=1)


class ListenToLookHead(EarlyExit, Head):

    def __init__(self, dims: HeadDims, settings: ListenToLookSettings = ListenToLookSettings()):
        super().__init__(dims)
        s = settings
        self.frames = s.frames
        self.input_dim = dims.coarse_dim + dims.fine_dim
        self.cell = Cell(s.rnn, self.input_dim, s.fine_hidden)
        self.attention = FrameAttention(dims.coarse_dim, s.fine_hidden, s.attention_dim)
        self.classifier = nn.Linear(dims.fine_dim, dims.num_classes)
        # the knob of the operating curve: a count, kept as a float like every knob's buffer
        self.register_buffer("picks", torch.tensor(float(s.picks)))

    def forward(self, batch: Batch, fine_budget: int | None = None) -> HeadOutput:
        positions = segment_positions(batch.lengths, self.frames, random=self.training)
        coarse = batch.read_frames("coarse", positions)          # the preview: every candidate's cheap feature
        keys = self.attention.keys(coarse)
        picks = int(self.picks) if fine_budget is None else min(int(self.picks), fine_budget)
        start = torch.cat([coarse.mean(1), coarse.new_zeros(len(batch), self.dims.fine_dim)], dim=1)
        if self.training:
            return self._soft(batch, positions, coarse, keys, start, picks)
        return self._hard(batch, positions, coarse, keys, start, picks)

    def _soft(self, batch: Batch, positions, coarse, keys, start, picks: int) -> HeadOutput:
        """Training: each step reads the attention-weighted average of every candidate's features."""
        fine = batch.read_frames("fine", positions)
        where = positions.to(fine.device)
        B = len(batch)
        state, x = self.cell.initial_state(B, fine.device), start
        taken = torch.zeros_like(where, dtype=torch.bool)
        total, count, peaks = fine.new_zeros(B, fine.shape[-1]), fine.new_zeros(B), []
        for _ in range(picks):
            live = ~taken.all(1)                # a short video may run out of frames
            if not live.any():
                break
            state = self.cell(x, state)
            allowed = ~taken | ~live[:, None]   # a row with nothing left attends anywhere, and counts nothing
            weights = self.attention.scores(self.cell.hidden(state), keys, allowed).softmax(1)
            taken = mark_picked(taken, where, weights.argmax(1))
            read = weighted_average(weights, fine)
            total, count = total + live[:, None] * read, count + live
            x = torch.cat([weighted_average(weights, coarse), read], dim=1)
            peaks.append(weights.max(1).values[live].mean())
        out = HeadOutput(self.classifier(total / count.clamp(min=1)[:, None]), self._cost(count.detach()))
        out.logs["attention_peak"] = float(torch.stack(peaks).mean().detach()) if peaks else 0.0
        return out

    @torch.no_grad()
    def _hard(self, batch: Batch, positions, coarse, keys, start, picks: int) -> HeadOutput:
        """Evaluation: each step reads the expensive feature of the top-scoring frame not read yet; with
        early exit, a video stops once the classifier on the mean so far is sure."""
        device, B = coarse.device, len(batch)
        where = positions.to(device)
        state, x = self.cell.initial_state(B, device), start.clone()
        taken = torch.zeros_like(where, dtype=torch.bool)
        total, count = coarse.new_zeros(B, self.dims.fine_dim), coarse.new_zeros(B)
        active = torch.ones(B, dtype=torch.bool, device=device)
        for _ in range(picks):
            rows = (active & ~taken.all(1)).nonzero(as_tuple=True)[0]
            if not len(rows):
                break
            state[rows] = self.cell(x[rows], state[rows])
            pick = self.attention.scores(self.cell.hidden(state[rows]), keys[rows], ~taken[rows]).argmax(1)
            fine = batch.read("fine", rows, positions[rows.cpu(), pick.cpu()])
            taken[rows] = mark_picked(taken[rows], where[rows], pick)
            total[rows] += fine
            count[rows] += 1
            x[rows] = torch.cat([coarse[rows, pick], fine], dim=1)
            if self.exits:
                running = self.classifier(total[rows] / count[rows, None])
                active[rows[self.stops(batch, rows, running, self._cost(count[rows], count[rows]))]] = False
        logits = self.classifier(total / count.clamp(min=1)[:, None])
        return HeadOutput(logits, self._cost(count, count if self.exits else None))

    def _cost(self, picks: torch.Tensor, checks: torch.Tensor | None = None) -> torch.Tensor:
        """The keys of every candidate, an LSTM step and a query over the keys per pick, and the classifier:
        once, or at every pick checked for an early exit."""
        c = self.costs
        classified = checks if checks is not None else 1
        return (self.frames * c["key"] + picks * (c["step"] + c["attend"]) + classified * c["classifier"]).float()

    def knobs(self) -> list[Knob]:
        count = Knob("picks", "picks", PICK_TARGETS, "frames picked (each read at the fine scale)",
                     lambda batches, targets: [float(t) for t in targets])
        return [count] + super().knobs()

    def cost_probes(self):
        Dc, H = self.dims.coarse_dim, self.cell.hidden_size
        return {"key": (self.attention.key, (torch.zeros(1, Dc),)),
                "step": (self.cell, (torch.zeros(1, self.input_dim), self.cell.initial_state(1))),
                "attend": (self.attention, (torch.zeros(1, H), torch.zeros(1, self.frames, self.attention.dim))),
                "classifier": (self.classifier, (torch.zeros(1, self.dims.fine_dim),))}


_PAPER = {"method": "listentolook", "coarse": "mobilenet_v2@112", "fine": "resnet101@224", "frames": 16, "picks": 10,
          "rnn": "lstm", "fine_hidden": 1024, "attention_dim": 512, "optimizer": "sgd-nesterov", "lr": 0.01,
          "weight_decay": 1e-4, "rate_steps": (0.6, 0.8), "epochs": 25, "batch_size": 256, "grad_clip": 0.0}
_SOURCE = ("The authors' released code (facebookresearch/Listen-to-Look: README's training command, opts.py, "
           "audioPreview_model.py): 10 steps (episode_length), LSTM 1024, keys and queries 512, the mean feature as "
           "the start, no frame picked twice, cross-entropy on the classifier of the mean of the picks alone; SGD "
           "with Nesterov momentum 0.9 at 0.01, L2 1e-4, batch 256, 25 epochs, the rate / 10 at epochs 15 and 20, no "
           "warm-up, no gradient clip. Its README trains the image-audio model; the image-based version's settings "
           "are stated neither there nor in the single-modality folder, which takes the same flags. 16 frames "
           "and the backbones (MobileNetV2 preview, ResNet-101) are AdaFocus Table 1's row")
register(Method("listentolook", ListenToLookHead, ListenToLookSettings, {"coarse": COARSE, "fine": FINE},
                budgeted=True, summary="Listen to Look (image): an LSTM's attention over the cheap features picks "
                                       "the frames read at the fine scale",
                presets={"listentolook-activitynet": Preset(_PAPER, _SOURCE)}))
