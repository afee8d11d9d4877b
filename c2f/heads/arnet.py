"""AR-Net (Meng et al., ECCV 2020): a policy chooses, for each of `frames` evenly spaced frames, which
backbone reads it (several backbones at several resolutions: the fine sets, most expensive first), or
the policy's own prediction, or to skip that frame and the next ones (1, 2 or 4 in all).

The policy is an LSTM over the cheap (coarse) feature of each frame it visits, with a linear layer
to the actions; a skipped frame is not visited (its cheap feature is not read, the LSTM not
stepped). Each resolution has its own classifier on its feature (the backbone's fc layer), the
policy's own prediction is a classifier on the LSTM's hidden state, and the video's logits are the
mean of the logits chosen. Training is dense (every feature read): first (`warmup`) each
resolution's classifier alone, as the paper fine-tunes each backbone at its size before the joint
training; then hard Gumbel-softmax decisions at an exponentially annealed temperature and the
paper's loss: accuracy_weight x cross-entropy + efficiency_weight x (the GFLOPs of the backbones
chosen per frame, from each set's counted GMACs, + usage_weight x how far the actions' shares are
from equal). Evaluation is sparse: the arg-max decision, a fine set read only where it is chosen.
Sample-wise early exit (EarlyExit) may stop a video once the mean of its chosen logits is confident.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from pipeline.core.errors import SettingsError
from pipeline.core.options import option

from ..data import Batch, segment_positions
from ..methods import COARSE, Method, Preset, Role, register
from ..blocks.exits import EarlyExit
from ..blocks.gumbel import AnnealedGumbel, GumbelSchedule
from ..blocks.head import Head, HeadDims, HeadOutput, Stage, soft_targets
from ..blocks.rnn import Cell

FINE_SETS = Role("fine", "pooled", "resnet50@224,resnet34@168,resnet18@112", many=True,
                 help="the backbones at their resolutions, comma-separated, most expensive first (a decision "
                      "reads one of them at a frame)")


@dataclass
class ARNetSettings(GumbelSchedule):
    frames: int = option(16, "evenly spaced frames the policy steps through", minimum=1, variant=True)
    policy_hidden: int = option(512, "the policy's LSTM size", minimum=1, variant=True)
    skips: str = option("1,2,4", "the skip actions, comma-separated: how many frames each skips, the current one "
                                 "included ('': none)", variant=True)
    policy_prediction: bool = option(True, "the policy's own prediction is an action (--no-policy-prediction: "
                                           "it is not)", variant=True)
    accuracy_weight: float = option(0.95, "weight of the cross-entropy of the video's logits", minimum=0)
    # the paper's 0.05 leaves the high resolution on the easy frames too under c2f's default training
    # (docs/methods/arnet.md: measured on the synthetic AR-Net task)
    efficiency_weight: float = option(0.2, "weight of the efficiency terms (GFLOPs and usage; the paper: 0.05)",
                                      minimum=0, variant=True)
    usage_weight: float = option(3.0, "weight of the usage term (the actions' shares kept equal) within the "
                                      "efficiency terms", minimum=0)
    warmup: float = option(0.3, "share of the epochs that train each resolution's classifier alone (cross-entropy "
                                "of the mean of its logits over the frames) before the policy and the joint loss",
                           minimum=0, maximum=1)
    weight_decay: float = option(1.0, "AdamW's decoupled weight decay (each step shrinks every weight by the rate "
                                      "times this); an L2 penalty under --optimizer adam / sgd", minimum=0)


    def __post_init__(self):
        super().__post_init__()
        if not all(part.strip().isdigit() and int(part) >= 1 for part in self.skips.split(",") if part.strip()):
            raise SettingsError(f"--skips {self.skips!r}: give whole numbers of frames >= 1, comma-separated")

    @property
    def skip_lengths(self) -> list[int]:
        return [int(part) for part in self.skips.split(",") if part.strip()]


class ARNetHead(EarlyExit, Head):
    video_loss = False          # the paper's weighted loss: training_loss

    def __init__(self, dims: HeadDims, settings: ARNetSettings = ARNetSettings()):
        super().__init__(dims)
        s = settings
        self.frames, self.roles = s.frames, dims.fine_roles()
        self.weights = (s.accuracy_weight, s.efficiency_weight, s.usage_weight)
        self.warmup, self.warming = s.warmup, False
        self.cell = Cell("lstm", dims.coarse_dim, s.policy_hidden)
        self.classifiers = nn.ModuleList(nn.Linear(dims.shapes[role][-1], dims.num_classes) for role in self.roles)
        self.lite = nn.Linear(s.policy_hidden, dims.num_classes) if s.policy_prediction else None
        self.predicting = len(self.roles) + (1 if self.lite is not None else 0)     # actions that give logits
        self.policy = nn.Linear(s.policy_hidden, self.predicting + len(s.skip_lengths))
        self.gumbel = AnnealedGumbel(s.tau_start, s.tau_decay)
        self.epochs = 1
        # frames each action leaves behind (the current one included; 1 for the predicting actions)
        self.register_buffer("advance", torch.tensor([1] * self.predicting + s.skip_lengths), persistent=False)
        # the GFLOPs term's price of each action: the backbone's counted GMACs, nothing for the rest
        self.register_buffer("action_gflops", torch.tensor([dims.gflops.get(role, 0.0) for role in self.roles]
                                                           + [0.0] * (len(self.advance) - len(self.roles))),
                             persistent=False)

    # ------------------------------------------------------------------ training

    def training_stages(self, epochs: list[int], lrs: list[float]) -> list[Stage]:
        self.epochs = epochs[0]         # the temperature falls per epoch
        return super().training_stages(epochs, lrs)

    def set_progress(self, fraction: float) -> None:
        epoch, warmup = round(fraction * max(0, self.epochs - 1)), round(self.warmup * self.epochs)
        self.warming = epoch < warmup
        self.gumbel.set_epoch(max(0, epoch - warmup))       # the joint training's epochs

    def forward(self, batch: Batch, fine_budget: int | None = None) -> HeadOutput:
        return self._forward_dense(batch) if self.training else self._forward_sparse(batch)

    def _decisions(self, coarse: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Every step's decision [B, T, A] (a skipped frame repeats the decision that skipped it), the
        LSTM's hidden state [B, T, H] and whether the policy visited the frame [B, T]."""
        projected = self.cell.project(coarse).unbind(1)
        B, T = coarse.shape[:2]
        state = self.cell.initial_state(B, coarse.device)
        left = torch.zeros(B, dtype=torch.long, device=coarse.device)      # frames still to skip
        decision, decisions, hiddens, visits = None, [], [], []
        for t in range(T):
            visited = left == 0
            new_state = self.cell.step(projected[t], state)
            sample = self.gumbel.decide(self.policy(self.cell.hidden(new_state)), sample=True)
            decision = sample if decision is None else torch.where(visited[:, None], sample, decision)
            state = torch.where(visited[:, None], new_state, state)
            left = torch.where(visited, self.advance[decision.argmax(1)], left) - 1
            decisions.append(decision)
            hiddens.append(self.cell.hidden(state))
            visits.append(visited)
        return torch.stack(decisions, 1), torch.stack(hiddens, 1), torch.stack(visits, 1)

    def _forward_dense(self, batch: Batch) -> HeadOutput:
        positions = segment_positions(batch.lengths, self.frames, random=True)
        own = [classifier(batch.read_frames(role, positions)) for role, classifier in zip(self.roles, self.classifiers)]
        if self.warming:            # each resolution's classifier alone, as a backbone fine-tuned at its size
            target = soft_targets(batch.targets)
            losses = {f"warmup{k}": F.cross_entropy(l.mean(1), target) for k, l in enumerate(own)}
            return HeadOutput(own[0].mean(1), torch.zeros(len(batch), dtype=torch.float64, device=own[0].device), losses)
        decisions, hidden, visited = self._decisions(batch.read_frames("coarse", positions))
        logits = torch.stack(own + ([self.lite(hidden)] if self.lite is not None else []), 2)     # [B, T, P, C]
        chosen = decisions[..., :self.predicting]
        video = (chosen[..., None] * logits).sum((1, 2)) / chosen.sum((1, 2)).clamp(min=1)[:, None]
        _, efficiency, usage = self.weights
        shares = decisions.sum((0, 1)) / decisions.sum()
        extra = {"gflops": efficiency * (decisions.mean((0, 1)) * self.action_gflops).sum(),
                 "usage": efficiency * usage * (shares - shares.mean()).norm()}
        out = HeadOutput(video, self._cost(visited.sum(1), chosen.sum(1)), extra)
        shares = decisions.detach().mean((0, 1))
        out.logs = {"tau": self.gumbel.tau, "backbone_gflops": float((shares * self.action_gflops).sum() * self.frames)}
        return out

    def training_loss(self, out: HeadOutput, targets: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        loss, logs = super().training_loss(out, targets)
        if self.warming:
            return loss, logs
        classification = F.cross_entropy(out.logits, soft_targets(targets))
        return loss + self.weights[0] * classification, logs | {"ce": float(classification.detach())}

    # ------------------------------------------------------------------ evaluation

    def _cost(self, visits: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor:
        """[B] the head's own GMACs: an LSTM step and the policy at each visited frame, each chosen classifier."""
        c = self.costs
        per_action = torch.tensor([c[f"classifier{k}"] for k in range(len(self.roles))]
                                  + ([c["lite"]] if self.lite is not None else []), device=chosen.device,
                                  dtype=torch.float64)
        return (visits.double() * (c["step"] + c["policy"]) + (chosen.double() * per_action).sum(-1)).detach()

    @torch.no_grad()
    def _forward_sparse(self, batch: Batch) -> HeadOutput:
        positions = segment_positions(batch.lengths, self.frames).to(batch.mask.device)
        B, device = len(batch), batch.mask.device
        state = self.cell.initial_state(B, device)
        left = torch.zeros(B, dtype=torch.long, device=device)
        total = torch.zeros(B, self.dims.num_classes, device=device)
        visits = torch.zeros(B, device=device)
        chosen = torch.zeros(B, self.predicting, device=device)
        active = torch.ones(B, dtype=torch.bool, device=device)
        for t in range(positions.shape[1]):
            rows = (active & (left == 0)).nonzero(as_tuple=True)[0]
            left = (left - 1).clamp(min=0)
            if not len(rows):
                continue
            frames = positions[rows, t]
            state[rows] = self.cell(batch.read("coarse", rows, frames), state[rows])
            action = self.policy(self.cell.hidden(state[rows])).argmax(1)
            visits[rows] += 1
            left[rows] = self.advance[action] - 1
            predicted = self._predict(batch, rows, frames, action, self.cell.hidden(state[rows]), total, chosen)
            if self.exits and len(predicted):
                spent = self._cost(visits[predicted], chosen[predicted])
                active[predicted[self.stops(batch, predicted, self._mean(total, chosen, predicted), spent)]] = False
        if self.exits and active.any():         # every video's last cost in the trace (c2f.blocks.exits)
            last = active.nonzero(as_tuple=True)[0]
            self.stops(batch, last, self._mean(total, chosen, last), self._cost(visits[last], chosen[last]))
        return HeadOutput(self._mean(total, chosen, torch.arange(B, device=device)), self._cost(visits, chosen))

    def _predict(self, batch: Batch, rows, frames, action, hidden, total, chosen) -> torch.Tensor:
        """Add the chosen logits of the visited rows (reading a fine set only where it was chosen) to
        `total` and count them in `chosen`; returns the rows that gave logits."""
        for a in range(self.predicting):
            picked = action == a
            if not picked.any():
                continue
            if a < len(self.roles):
                logits = self.classifiers[a](batch.read(self.roles[a], rows[picked], frames[picked]))
            else:
                logits = self.lite(hidden[picked])
            total[rows[picked]] += logits
            chosen[rows[picked], a] += 1
        return rows[action < self.predicting]

    @staticmethod
    def _mean(total: torch.Tensor, chosen: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        return total[rows] / chosen[rows].sum(1, keepdim=True).clamp(min=1)

    def cost_probes(self):
        hidden = torch.zeros(1, self.cell.hidden_size)
        probes = {"step": (self.cell, (torch.zeros(1, self.dims.coarse_dim), self.cell.initial_state(1))),
                  "policy": (self.policy, (hidden,))}
        probes |= {f"classifier{k}": (classifier, (torch.zeros(1, classifier.in_features),))
                   for k, classifier in enumerate(self.classifiers)}
        if self.lite is not None:
            probes["lite"] = (self.lite, (hidden,))
        return probes


# The released code's ActivityNet scripts (scripts_train.sh, opts.py, main_base.py); see _SOURCE
_PAPER = {"method": "arnet", "coarse": "mobilenet_v2@84", "fine": "resnet50@224,resnet34@168,resnet18@112",
          "frames": 16, "policy_hidden": 512, "skips": "1,2,4", "policy_prediction": True, "accuracy_weight": 0.95,
          "efficiency_weight": 0.05, "usage_weight": 3.0, "tau_start": 5.0, "tau_decay": 0.045, "warmup": 1 / 6,
          "optimizer": "sgd", "lr": 1e-3, "weight_decay": 1e-4, "batch_size": 48, "epochs": 60, "grad_clip": 20.0}
_SOURCE = ("AR-Net's released code (mengyuest/AR-Net): scripts_train.sh, the joint training of Table 1's AR-Net "
           "(ResNet) on ActivityNet: 16 frames, the policy's MobileNetV2 at 84 px (--policy_input_offset 3 of "
           "--reso_list 224 168 112 84), ResNet-50 / 34 / 18 at 224 / 168 / 112, skips 1 2 4, the policy's own "
           "prediction as an action, accuracy 0.95 and efficiency 0.05, the usage (uniform) loss 3.0, the GFLOPs "
           "loss, temperature 5 decayed by exp(-0.045) an epoch (opts.py), SGD with momentum 0.9 at 1e-3, L2 1e-4, "
           "50 epochs at a constant rate (the default rate steps at epochs 50 and 100 fall after the run), batch 48, "
           "gradient clip 20; the LSTM's 512 units are opts.py's default. The scripts give ActivityNet's settings "
           "only: FCVID and Mini-Kinetics use the same (their own are stated in neither the scripts nor the "
           "rest of the released code). The scripts' first step (each backbone and its fc fine-tuned alone at "
           "its resolution, 10 epochs) is here the warm-up of each resolution's classifier on the frozen cached "
           "features: 10 of 60 epochs, at the joint training's rate")
PRESETS = {f"arnet-{name}": Preset(_PAPER, _SOURCE) for name in ("activitynet", "fcvid", "minikinetics")}
register(Method("arnet", ARNetHead, ARNetSettings, {"coarse": COARSE, "fine": FINE_SETS}, budgeted=False,
                summary="AR-Net: a policy picks a resolution (backbone), its own prediction, or a skip per frame",
                presets=PRESETS))
