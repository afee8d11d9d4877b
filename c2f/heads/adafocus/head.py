"""AdaFocus and AdaFocus+ (Wang et al. 2021) on cached glance maps and patch grids.

Per sampled frame: the glance map (MobileNetV2's 1280x7x7, read for every frame) feeds a
recurrent policy that picks one of the G*G candidate patches; only that patch's ResNet-50
feature is read from the grid. A GRU classifier reads [pooled glance, patch feature]
([patch feature] with --no-reuse). AdaFocus+ adds a second policy that decides whether to
read a patch at all; a skipped frame feeds zeros and costs no patch.

Training (the paper's appendix), with the CNNs frozen as the cache implies: stage I trains the
classifier on random patches; stage II trains the policies with PPO (c2f.blocks.ppo) with the
classifier frozen; stage III fine-tunes the
classifier with the learned policy. Fixed policies (random, central, gaussian) skip the
patch policy's stage II.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.distributions import Bernoulli, Categorical

from pipeline.core.options import option

from ...blocks import ppo
from ...blocks.exits import EarlyExit
from ...blocks.head import Head, HeadDims, HeadOutput, Knob, Stage, soft_targets
from ...blocks.policy import GlancePolicy
from ...blocks.rnn import Cell
from ...data import Batch, segment_positions
from ...methods import Method, Preset, Role, Settings, register
from . import expected
from .rollouts import StageTwoRollouts
from .steps import SteppedInference

POLICIES = ("learned", "random", "central", "gaussian")
REWARDS = ("adafocus", "confidence", "increments")
STAGE2 = (*expected.OBJECTIVES, "ppo")
GAUSSIAN_STD = 0.25          # of the grid's width, per axis: "a Gaussian centred on the frame"
KEEP_RATIOS = (0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 1.0)     # AdaFocus+'s operating curve's targets


@dataclass
class AdaFocusSettings(Settings):
    frames: int = option(16, "segments, one frame read in each", minimum=1, variant=True)
    policy: str = option("learned", "patch policy (Table 5)", choices=POLICIES, variant=True)
    reward: str = option("adafocus", "PPO's stage-II reward: Eq. 7, or Table 5's variants", choices=REWARDS,
                         variant=True)
    stage2: str = option("expected", "stage II, the patch policy's objective: `expected` fits it to the best policy "
                                     "for every candidate's reward (the cache holds them all), `expected-ascent` "
                                     "ascends the expected reward, `ppo` is the paper's PPO on sampled patches "
                                     "(Eq. 7 and --reward apply to it alone)", choices=STAGE2, variant=True)
    reuse: bool = option(True, "the glance feature also feeds the classifier (--no-reuse: Table 4)", variant=True)
    adafocus_hidden: int = option(1024, "GRU size of the classifier and the policies", minimum=1)
    ppo_epochs: int = option(2, "updates per batch in stage II", minimum=1)
    # stages I, II, III; SGD for I and III, Adam for II. The paper's appendix (ActivityNet, FCVID: 10^4 videos)
    # trains 50, 50, 10 epochs at 0.05, 3e-4, 5e-3 (--preset adafocus-activitynet); a few hundred videos make
    # few steps an epoch, and train best at three times those rates with a longer stage III
    # (docs/measurements/training-defaults.md)
    stage_epochs: tuple[int, int, int] = option((50, 50, 20), "epochs of stages I, II, III", minimum=0)
    stage_lrs: tuple[float, float, float] = option((0.15, 9e-4, 0.015), "learning rates of stages I (SGD), II (Adam), "
                                                                       "III (SGD)", above=0, what="learning rates")
    weight_decay: float = option(0.0, "L2 penalty of every stage (the paper: 1e-4)", minimum=0)

    def __post_init__(self):
        self.stage_epochs, self.stage_lrs = tuple(self.stage_epochs), tuple(self.stage_lrs)
        super().__post_init__()


@dataclass
class AdaFocusPlusSettings(AdaFocusSettings):
    keep_ratio: float = option(0.5, "fraction of frames given a patch", above=0, maximum=1, variant=True)
    eta: float = option(0.1, "weight of the patch cost in the keep reward (Eq. 10)", minimum=0)


class AdaFocusHead(StageTwoRollouts, SteppedInference, EarlyExit, Head):
    video_loss = False                   # Eq. 5: cross-entropy averaged over every step

    def __init__(self, dims: HeadDims, settings: AdaFocusSettings = AdaFocusSettings()):
        super().__init__(dims)
        s, plus = settings, isinstance(settings, AdaFocusPlusSettings)
        channels, map_h, map_w = dims.coarse_shape
        self.frames, self.policy_kind, self.reward_kind = s.frames, s.policy, s.reward
        self.reuse, self.plus, self.ppo_epochs, self.stage2 = s.reuse, plus, s.ppo_epochs, s.stage2
        self.keep_ratio, self.eta = (s.keep_ratio, s.eta) if plus else (1.0, 0.0)
        self.candidates = dims.candidates
        self.grid = int(round(self.candidates ** 0.5))
        self.input_dim = dims.fine_dim + (channels if s.reuse else 0)
        hidden = s.adafocus_hidden
        self.classifier_cell = Cell("gru", self.input_dim, hidden)
        self.classifier = nn.Linear(hidden, dims.num_classes)
        self.patch_policy = GlancePolicy(channels, map_h * map_w, hidden, self.candidates) if s.policy == "learned" else None
        self.keep_policy = GlancePolicy(channels, map_h * map_w, hidden, 1) if plus else None
        if plus:    # start by keeping most frames (p = 0.88): it explores before the patch policy is any good
            nn.init.constant_(self.keep_policy.actor.bias, 2.0)
        self.register_buffer("keep_threshold", torch.tensor(0.5))
        self.stage = "III"

    # ------------------------------------------------------------------ stages

    def training_stages(self, epochs: list[int], lrs: list[float]) -> list[Stage]:
        classifier = list(self.classifier_cell.parameters()) + list(self.classifier.parameters())
        policies = [p for m in (self.patch_policy, self.keep_policy) if m is not None for p in m.parameters()]
        stages = [Stage("I", epochs[0], lrs[0], "sgd", classifier)]
        if policies:
            stages.append(Stage("II", epochs[1], lrs[1], "adam", policies))
        stages.append(Stage("III", epochs[2], lrs[2], "sgd", classifier))
        return [s for s in stages if s.epochs > 0]

    def set_stage(self, name: str) -> None:
        self.stage = name

    # ------------------------------------------------------------------ decisions

    def _fixed_patches(self, shape: tuple[int, int], kind: str, device) -> torch.Tensor:
        G = self.grid
        if kind == "random":
            return torch.randint(self.candidates, shape, device=device)
        if kind == "central":
            return torch.full(shape, (G // 2) * G + G // 2, device=device)
        ij = (torch.randn(*shape, 2, device=device) * GAUSSIAN_STD * G + (G - 1) / 2).round().clamp(0, G - 1).long()
        return ij[..., 0] * G + ij[..., 1]

    def choose_patches(self, glance: torch.Tensor, sample: bool) -> torch.Tensor:
        B, T = glance.shape[:2]
        if self.patch_policy is None:
            return self._fixed_patches((B, T), self.policy_kind, glance.device)
        if self.stage == "I" and self.training:
            return self._fixed_patches((B, T), "random", glance.device)
        logits, _ = self.patch_policy(glance)
        return Categorical(logits=logits).sample() if sample else logits.argmax(-1)

    def choose_keep(self, glance: torch.Tensor, sample: bool) -> torch.Tensor:
        if self.keep_policy is None or (self.stage == "I" and self.training):
            return torch.ones(glance.shape[:2], dtype=torch.bool, device=glance.device)
        keep_logit = self.keep_policy(glance)[0][..., 0]
        return Bernoulli(logits=keep_logit).sample().bool() if sample else torch.sigmoid(keep_logit) > self.keep_threshold

    def _focus(self, batch: Batch, positions: torch.Tensor, patches: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """The chosen patch's feature where the frame is kept, zeros where it is skipped: [B, F, D]."""
        out = torch.zeros(*positions.shape, self.dims.fine_dim, device=keep.device)
        rows, steps = keep.nonzero(as_tuple=True)
        if len(rows):
            out[rows, steps] = batch.read("fine", rows.cpu(), positions[rows.cpu(), steps.cpu()], patches[rows, steps])
        return out

    def _inputs(self, glance: torch.Tensor, focus: torch.Tensor) -> torch.Tensor:
        return torch.cat([glance.mean((-2, -1)), focus], dim=-1) if self.reuse else focus

    # ------------------------------------------------------------------ forward

    def forward(self, batch: Batch, fine_budget: int | None = None) -> HeadOutput:
        """fine_budget k (online): predict after the first k of the sampled frames."""
        steps = self.frames if fine_budget is None else min(self.frames, fine_budget)
        positions = segment_positions(batch.lengths, self.frames, random=self.training)[:, :steps]
        if self.exits:
            return self._exiting(batch, positions)
        glance = batch.read_frames("coarse", positions)
        with torch.no_grad():
            patches = self.choose_patches(glance, sample=False)
            keep = self.choose_keep(glance, sample=False)
        inputs = self._inputs(glance, self._focus(batch, positions, patches, keep))
        state, states = self.classifier_cell.initial_state(len(batch), inputs.device), []
        for projected in self.classifier_cell.project(inputs).unbind(1):
            state = self.classifier_cell.step(projected, state)
            states.append(state)
        out = HeadOutput(self.classifier(self.classifier_cell.hidden(state)), self._cost(steps, keep))
        if self.training:       # Eq. 5: the prediction of every step is trained
            step_logits = self.classifier(self.classifier_cell.hidden(torch.stack(states, 1)))
            target = soft_targets(batch.targets)[:, None, :].expand_as(step_logits)
            out.extra_loss["ce_steps"] = F.cross_entropy(step_logits.flatten(0, 1), target.flatten(0, 1))
        return out

    def _cost(self, steps, keep: torch.Tensor, classified=1) -> torch.Tensor:
        """Per step the classifier's and the policies' steps; the final classifier once, or at every step
        checked for an early exit. `steps`: one number, or one per video."""
        c = self.costs
        per_step = c["classifier_step"] + c.get("patch_policy_step", 0.0) + c.get("keep_policy_step", 0.0)
        return torch.zeros(len(keep), device=keep.device) + steps * per_step + classified * c["classifier"]

    def cost_probes(self):
        C, H, W = self.dims.coarse_shape
        hidden = self.classifier_cell.hidden_size
        probes = {"classifier_step": (self.classifier_cell, (torch.zeros(1, self.input_dim),
                                                                 self.classifier_cell.initial_state(1))),
                  "classifier": (self.classifier, (torch.zeros(1, hidden),))}
        for name, policy in (("patch_policy_step", self.patch_policy), ("keep_policy_step", self.keep_policy)):
            if policy is not None:
                probes[name] = (policy.step_probe, (torch.zeros(1, C, H, W), policy.cell.initial_state(1)))
        return probes

    # ------------------------------------------------------------------ stage II: the losses

    def _ppo_losses(self, batch: Batch):
        """The paper's stage II: one rollout, then `ppo_epochs` PPO losses on it."""
        positions = segment_positions(batch.lengths, self.frames, random=True)
        glance = batch.read_frames("coarse", positions)
        patches, keep, patch_rewards, keep_rewards = self._rollout(batch, positions, glance)
        rollouts = []
        if self.patch_policy is not None:
            # Eq. 7 is computed on every frame, kept or not (the rollout runs the classifier with the
            # chosen patch anyway), so a keep policy that skips much early on does not starve this one
            rollouts.append(ppo.Rollout.of(self.patch_policy, glance, patches, patch_rewards, bernoulli=False))
        if self.keep_policy is not None:
            rollouts.append(ppo.Rollout.of(self.keep_policy, glance, keep, keep_rewards, bernoulli=True))
        logs = {"patch_reward": float(patch_rewards.mean())}
        if self.keep_policy is not None:
            logs["keep_rate"] = float(keep.float().mean())
        for _ in range(self.ppo_epochs):
            loss = sum(rollout.loss() for rollout in rollouts)
            yield loss, logs | {"ppo": float(loss.detach())}

    def _expected_losses(self, batch: Batch):
        """Stage II on every candidate's reward (expected.py), `ppo_epochs` updates on one batch's
        rewards; AdaFocus+'s keep policy keeps PPO on Eq. 10, added to the same updates."""
        positions = segment_positions(batch.lengths, self.frames, random=True)
        glance = batch.read_frames("coarse", positions)
        patches, keep, scores, keep_rewards = self._candidate_rollout(batch, positions, glance)
        advantages = expected.candidate_advantages(scores)
        keep_rollout = (ppo.Rollout.of(self.keep_policy, glance, keep, keep_rewards, bernoulli=True)
                        if self.keep_policy is not None else None)
        # how often the sampled patch was the step's best candidate: the policy's progress
        logs = {"sampled_best": float((scores.argmax(-1) == patches).float().mean())}
        if keep_rollout is not None:
            logs["keep_rate"] = float(keep.float().mean())
        for _ in range(self.ppo_epochs):
            loss = expected.policy_loss(self.patch_policy(glance)[0], advantages, self.stage2)
            if keep_rollout is not None:
                loss = loss + keep_rollout.loss()
            yield loss, logs | {"policy_loss": float(loss.detach())}

    def losses(self, batch: Batch):
        """Stages I and III: the classifier's loss. Stage II: the policies' losses, by `stage2`
        (PPO for the keep policy alone when the patch policy is fixed)."""
        if self.stage != "II":
            yield from super().losses(batch)
        elif self.stage2 in expected.OBJECTIVES and self.patch_policy is not None:
            yield from self._expected_losses(batch)
        else:
            yield from self._ppo_losses(batch)

    # ------------------------------------------------------------------ AdaFocus+: the keep threshold

    @torch.no_grad()
    def keep_thresholds_for(self, batches, ratios) -> list[float]:
        """For each ratio, the keep threshold at which that share of the batches' sampled frames is kept."""
        was_training = self.training
        self.eval()
        probabilities = []
        for batch in batches:
            positions = segment_positions(batch.lengths, self.frames)
            glance = batch.read_frames("coarse", positions)
            probabilities.append(torch.sigmoid(self.keep_policy(glance)[0][..., 0]).flatten())
        self.train(was_training)
        return torch.quantile(torch.cat(probabilities).cpu(), 1 - torch.tensor(ratios, dtype=torch.float)).tolist()

    @torch.no_grad()
    def after_stage(self, name: str, batches) -> None:
        """After stage II, solve the keep threshold on the training set so that `keep_ratio` of its
        frames are kept (stage III then trains with the frames the test will keep)."""
        if self.keep_policy is not None and name == "II":
            self.keep_threshold.fill_(self.keep_thresholds_for(batches, [self.keep_ratio])[0])

    def knobs(self) -> list[Knob]:
        keep = [Knob("keep", "keep_threshold", KEEP_RATIOS, "share of the training frames given a patch",
                     self.keep_thresholds_for)] if self.keep_policy is not None else []
        return keep + super().knobs()


# coarse: the glance map, read for every frame; fine: the patch grid, one candidate read per frame
_ROLES = {"coarse": Role("glance", "map", "mobilenet_v2@224-map", help="glance map set, read for every sampled frame"),
          "fine": Role("focus", "grid", "resnet50@224-grid7x128", help="patch grid set, one candidate read per kept frame")}
_PAPER = {"method": "adafocus", "glance": "mobilenet_v2@224-map", "focus": "resnet50@224-grid7x128", "frames": 16,
          "adafocus_hidden": 1024, "policy": "learned", "stage2": "ppo", "reward": "adafocus", "ppo_epochs": 1,
          "stage_epochs": [50, 50, 10], "stage_lrs": [0.05, 3e-4, 5e-3], "batch_size": 64, "weight_decay": 1e-4}
_SOURCE = ("AdaFocus Sec. 4.1 and Appendix B (16 frames, GRU 1024, 7 x 7 candidates of 128 px; SGD with Nesterov "
           "momentum and cosine annealing, batch 64, L2 1e-4; stages of 50, 50 and 10 epochs; classifier rates 0.05 in "
           "stage I and 5e-3 in stage III for ActivityNet and FCVID) and the authors' code (models/ppo.py: Adam at "
           "3e-4, one PPO update per rollout). The CNNs stay frozen on a feature cache")
PRESETS = {"adafocus-activitynet": Preset(_PAPER, _SOURCE), "adafocus-fcvid": Preset(_PAPER, _SOURCE),
           "adafocus-minikinetics": Preset(_PAPER | {"stage_lrs": [0.05, 3e-4, 5e-4]},
                                           _SOURCE + "; stage III at 5e-4 for Mini-Kinetics (Appendix B)")}
register(Method("adafocus", AdaFocusHead, AdaFocusSettings, _ROLES, budgeted=True, stages=("I", "II", "III"),
                summary="AdaFocus: a policy picks one patch per frame for the expensive CNN", presets=PRESETS))
register(Method("adafocus_plus", AdaFocusHead, AdaFocusPlusSettings, _ROLES, budgeted=True, stages=("I", "II", "III"),
                summary="AdaFocus+: also decides whether a frame gets a patch at all"))
