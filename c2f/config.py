"""Settings of one phase-two run, each written once: its default, help, choices and bounds are
here, and the command line is generated from them. A run's config.json holds this dataclass
(plus provenance): `TrainConfig.from_dict(json["settings"])` reruns it."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from pipeline.manifest import SPLITS
from pipeline.options import option, validate

from .methods import method as method_record
from .methods import methods


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
    epochs: int = option(30, "Training epochs (single-stage heads).", minimum=1)
    lr: float = option(1e-4, "Adam's learning rate (single-stage heads).", above=0, what="learning rates")
    batch_size: int = option(128, "Videos per batch.", minimum=1)
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
        return [self.epochs], [self.lr]
