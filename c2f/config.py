"""Settings of one phase-two run, each written once: its default, help, choices and bounds are
here, and the command line is generated from them. A run's config.json holds this dataclass
(plus provenance): `TrainConfig.from_dict(json["settings"])` reruns it."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from pipeline.manifest import SPLITS
from pipeline.options import option, validate

from .methods import method as method_record
from .methods import methods


LR_CANDIDATES = (1e-3, 3e-3, 1e-2)     # Adam's rates tried on the held-out part when --lr is not given
DEFAULT_LR = LR_CANDIDATES[0]          # ... and the rate of a fixed length (--epochs) without --lr


def _method_names() -> list[str]:
    return list(methods())


@dataclass
class TrainConfig:
    method: str = option(help="The head to train.", choices=_method_names)
    manifest: str = option(help="Manifest CSV.")
    cache: str = option(help="Feature cache folder (c2f extract).")
    out: str = option(help="Run directory.")
    coarse: str = option("mobilenet_v2@112", "Coarse feature set.")
    fine: str = option("resnet101@224", "Fine feature set.")
    train_split: str = option("train", "Split to train on.", choices=SPLITS)
    eval_split: str = option("val", "Split to evaluate on.", choices=SPLITS)
    glance: str = option("mobilenet_v2@224-map", "AdaFocus: glance map set.")
    focus: str = option("resnet50@224-grid7x128", "AdaFocus: patch grid set.")
    # baselines
    frames: int | None = option(None, "UNIFORM / LSTM: evenly spaced frames (default 25); AdaFocus: segments "
                                      "(default 16).", minimum=1, kind=int)
    glimpses: int = option(4, "FRAMEGLIMPSE: frames looked at.", minimum=1)
    step_penalty: float = option(0.01, "FASTFORWARD: reward cost per frame read.", minimum=0)
    # LiteEval
    rnn: str = option("lstm", "Recurrent cell of LiteEval and the RNN baselines.", choices=("lstm", "gru", "sru"))
    coarse_hidden: int = option(64, "LiteEval: coarse RNN size (ActivityNet 64; FCVID 512).", minimum=1)
    fine_hidden: int = option(512, "Fine RNN size, also of the LSTM baselines (ActivityNet 512; FCVID 2048).",
                              minimum=1)
    gamma: float = option(0.05, "LiteEval: target fraction of fine reads.", minimum=0, maximum=1)
    lam: float = option(2.0, "LiteEval: weight of the fire-rate penalty.", minimum=0)
    sync: bool = option(True, "LiteEval: sync the fine RNN with the coarse one (--no-sync: do not).")
    tau_start: float = option(5.0, "Gumbel-softmax temperature, first epoch.", above=0)
    tau_end: float = option(0.5, "... and last epoch (exponential annealing).", above=0)
    calibrate_gate: bool = option(True, "LiteEval: after training, set the gate's threshold on the training videos "
                                        "so that --gamma of their frames read the fine feature at test time "
                                        "(--no-calibrate-gate: the gate's arg-max, as the paper).")
    # AdaFocus
    policy: str = option("learned", "AdaFocus patch policy (Table 5).",
                         choices=("learned", "random", "central", "gaussian"))
    reward: str = option("adafocus", "AdaFocus stage-II reward: Eq. 7, or Table 5's variants.",
                         choices=("adafocus", "confidence", "increments"))
    stage2: str = option("expected", "AdaFocus stage II, the patch policy's objective: `expected` fits it to the "
                                     "best policy for every candidate's reward (the cache holds them all), "
                                     "`expected-ascent` ascends the expected reward, `ppo` is the paper's PPO on "
                                     "sampled patches (Eq. 7 and --reward apply to it alone).",
                         choices=("expected", "expected-ascent", "ppo"))
    reuse: bool = option(True, "AdaFocus: the glance feature also feeds the classifier (--no-reuse: Table 4).")
    keep_ratio: float = option(0.5, "AdaFocus+: fraction of frames given a patch.", above=0, maximum=1)
    eta: float = option(0.1, "AdaFocus+: weight of the patch cost in the keep reward (Eq. 10).", minimum=0)
    adafocus_hidden: int = option(1024, "AdaFocus: GRU size of the classifier and the policies.", minimum=1)
    ppo_epochs: int = option(2, "AdaFocus: PPO updates per rollout.", minimum=1)
    # the paper's appendix (ActivityNet / FCVID), stages I, II, III; SGD for I and III, Adam for II
    stage_epochs: tuple[int, int, int] = option((50, 50, 10), "AdaFocus: epochs of stages I, II, III.", minimum=0)
    stage_lrs: tuple[float, float, float] = option((0.05, 3e-4, 5e-3), "AdaFocus: learning rates of stages I (SGD), "
                                                                       "II (Adam), III (SGD).", above=0,
                                                     what="learning rates")
    # optimisation (single-stage heads)
    # single-stage heads: by default trained until a held-out part of the training split stops improving
    # (whatever the dataset size; the papers' 30 epochs at lr 1e-4 and batch 128 assume 10^4-10^5 videos)
    epochs: int | None = option(None, "Fixed training epochs (single-stage heads); default: until the held-out "
                                      "part stops improving (--holdout, --patience, --max-steps), then again on "
                                      "the whole training split for the best epochs.", minimum=1, kind=int)
    holdout: float = option(0.1, "Fraction of the training videos held out to choose the learning rate and the "
                                 "number of epochs.", minimum=0, maximum=0.5)
    patience: int = option(10, "Epochs without a better held-out score (errors, then loss) before stopping.",
                           minimum=1)
    max_steps: int = option(4000, "Most optimisation steps when the length is automatic.", minimum=1)
    lr: float | None = option(None, "Adam's learning rate (single-stage heads; halved when the held-out loss "
                                    "stalls). Default: the best of " + ", ".join(map(str, LR_CANDIDATES)) +
                              f" on the held-out part ({DEFAULT_LR} with --epochs).", above=0, kind=float,
                              what="learning rates")
    batch_size: int = option(32, "Videos per batch.", minimum=1)
    weight_decay: float = option(0.0, minimum=0)
    grad_clip: float = option(5.0, "Gradient norm clip (0: none).", minimum=0, cli=False)
    seed: int = option(0)
    device: str = option("cpu", "cpu, cuda, cuda:1, ...")
    overwrite: bool = option(False, "Replace the run directory if it holds a run.")
    progress: bool = option(True, "Show progress bars.")

    def __post_init__(self):
        self.stage_epochs, self.stage_lrs = tuple(self.stage_epochs), tuple(self.stage_lrs)
        validate(self)
        if self.frames is None:
            self.frames = self.record.frames

    @property
    def record(self):
        """The method's registered record (c2f.methods)."""
        return method_record(self.method)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def feature_sets(self) -> dict[str, str]:
        """Role -> feature set, for the roles the method reads."""
        return {role: getattr(self, r.option) for role, r in self.record.roles.items()}

    def stage_schedule(self) -> tuple[list[int], list[float]]:
        if self.record.staged:
            return list(self.stage_epochs), list(self.stage_lrs)
        return [self.epochs or 0], [self.lr or DEFAULT_LR]
