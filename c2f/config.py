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
    # baselines
    frames: int = 25                 # UNIFORM / LSTM: evenly spaced frames per video
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
    # optimisation
    epochs: int = 30
    lr: float = 1e-4
    batch_size: int = 128
    weight_decay: float = 0.0
    grad_clip: float = 5.0
    seed: int = 0
    device: str = "cpu"
    overwrite: bool = False
    progress: bool = True

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})
