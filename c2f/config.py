"""Settings of one phase-two run. A run's config.json is this dataclass (plus provenance):
`TrainConfig(**json["settings"])` reruns it."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields


@dataclass
class TrainConfig:
    method: str
    manifest: str
    cache: str
    out: str
    coarse: str = "mobilenet_v2@112"
    fine: str = "resnet101@224"
    train_split: str = "train"
    eval_split: str = "val"
    glance: str = "mobilenet_v2@224-map"      # AdaFocus: the glance map ...
    focus: str = "resnet50@224-grid7x128"      # ... and the patch grid
    # baselines
    frames: int | None = None        # UNIFORM / LSTM: evenly spaced frames (25); AdaFocus: segments (16)
    glimpses: int = 4                # FRAMEGLIMPSE: frames it looks at
    step_penalty: float = 0.01       # FASTFORWARD: reward cost of each frame read
    # LiteEval
    rnn: str = "lstm"
    coarse_hidden: int = 64          # ActivityNet sizes; FCVID: 512 / 2048
    fine_hidden: int = 512
    gamma: float = 0.05
    lam: float = 2.0
    sync: bool = True
    tau_start: float = 5.0
    tau_end: float = 0.5
    # AdaFocus
    policy: str = "learned"          # learned | random | central | gaussian (Table 5)
    reward: str = "adafocus"         # adafocus (Eq. 7) | confidence | increments (Table 5)
    reuse: bool = True               # the glance feature also feeds the classifier (Table 4)
    keep_ratio: float = 0.5          # AdaFocus+: fraction of frames given a patch
    eta: float = 0.1                 # AdaFocus+: weight of the patch-cost term of the keep reward (Eq. 10)
    adafocus_hidden: int = 1024      # GRU size of the classifier and the policies
    ppo_epochs: int = 2              # PPO updates per rollout
    # the paper's appendix (ActivityNet / FCVID), stages I, II, III; SGD for I and III, Adam for II
    stage_epochs: tuple[int, int, int] = (50, 50, 10)
    stage_lrs: tuple[float, float, float] = (0.05, 3e-4, 5e-3)
    # optimisation (single-stage heads)
    epochs: int = 30
    lr: float = 1e-4
    batch_size: int = 128
    weight_decay: float = 0.0
    grad_clip: float = 5.0
    seed: int = 0
    device: str = "cpu"
    overwrite: bool = False
    progress: bool = True

    def __post_init__(self):
        if self.frames is None:
            self.frames = 16 if self.method.startswith("adafocus") else 25
        self.stage_epochs, self.stage_lrs = tuple(self.stage_epochs), tuple(self.stage_lrs)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def feature_sets(self) -> dict[str, str]:
        """Role -> feature set: the cheap one read for every frame, the expensive one where used."""
        if self.method.startswith("adafocus"):
            return {"coarse": self.glance, "fine": self.focus}
        return {"coarse": self.coarse, "fine": self.fine}

    def stage_schedule(self) -> tuple[list[int], list[float]]:
        if self.method.startswith("adafocus"):
            return list(self.stage_epochs), list(self.stage_lrs)
        return [self.epochs], [self.lr]
