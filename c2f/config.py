"""Settings of one phase-two run, each written once: the settings every method shares are here;
each method's own settings are a small dataclass beside its head (c2f.heads), registered with the
method. The command line's options are generated from both (pipeline.core.options.click_options and
merged_click_options, in c2f.cli).

A run's settings as one flat mapping ({"method": "liteeval", "gamma": 0.1, ...}) is what config.json
stores, what `--config FILE` reads and what the report matches rows against:
`TrainConfig.from_dict(flat)` and `to_dict()` convert."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from typing import Any

from pipeline.core.devices import DEVICE_HELP
from pipeline.core.errors import SettingsError
from pipeline.core.manifest import SPLITS
from pipeline.core.options import option, validate

from .heads import method as method_record
from .heads import methods
from .methods import Method

# fixed parts of the single-stage heads' schedule (c2f.training.schedule), named in the settings' help
MIN_EPOCHS = 10          # the length set by --steps is never shorter
WARMUP_SHARE = 0.1       # of the steps, warming the rate up to --lr
RATE_WIDTH = 64          # --lr is the peak rate of a weight reading this many inputs or fewer
# a calibration part must tell points apart: on 100 videos the standard error of a top-1 is at most 5 points
MIN_CALIBRATION_VIDEOS = 100


def _method_names() -> list[str]:
    return list(methods())


@dataclass
class TrainConfig:
    method: str = option(help="The head to train.", choices=_method_names)
    manifest: str = option(help="Manifest CSV.")
    cache: str = option(help="Feature cache folder (c2f extract).")
    out: str = option(help="Run directory.")
    train_split: str = option("train", "Split to train on.", choices=SPLITS)
    eval_split: str = option("val", "Split to evaluate on.", choices=SPLITS)
    # single-stage heads: one schedule set before training (c2f.training.schedule), its length counted in
    # optimisation steps by default: a few hundred videos need many epochs, many videos few; no search
    # (the papers' 30 epochs at lr 1e-4 and batch 128 assume 10^4-10^5 videos)
    epochs: int | None = option(None, "Training epochs (single-stage heads). Default: as many as --steps "
                                      f"optimisation steps take, and at least {MIN_EPOCHS}.", minimum=1, kind=int)
    steps: int = option(300, "Optimisation steps (batches) to train for when --epochs is not given "
                             "(single-stage heads).", minimum=1)
    lr: float = option(1e-2, f"AdamW's peak learning rate (single-stage heads), warmed up over the first "
                             f"{WARMUP_SHARE:.0%} of the steps, then annealed to nearly zero along a cosine; a layer "
                             f"of more than {RATE_WIDTH} inputs peaks at lr x sqrt({RATE_WIDTH} / inputs) (unless "
                             f"the method's record turns this off: docs/commands/train-head.md).", above=0)
    optimizer: str = option("adamw", "Single-stage heads: `adamw` (AdamW, one cycle, the width-scaled rate: c2f's "
                                     "own); the papers' optimisers, every weight at --lr with an L2 weight decay: "
                                     "`adam` (the rate divided by 10 at --rate-steps: LiteEval's released code), `sgd` "
                                     "(momentum 0.9, a constant rate: AR-Net's released code) or `sgd-nesterov` "
                                     "(Nesterov momentum 0.9, the rate divided by 10 at --rate-steps: Listen to Look's "
                                     "released code).", choices=("adamw", "adam", "sgd", "sgd-nesterov"))
    rate_steps: tuple[float, float] = option((0.4, 0.8), "--optimizer adam or sgd-nesterov: the shares of the steps at "
                                                         "which the rate is divided by 10 (LiteEval: epochs 40 and 80 "
                                                         "of 100).", minimum=0, maximum=1)
    batch_size: int = option(32, "Videos per batch.", minimum=1)
    grad_clip: float = option(5.0, "Gradient norm clip (0: none).", minimum=0, cli=False)
    seed: int = option(0)
    calibration_share: float = option(
        0.0, "Share of the training videos held out of training as a calibration part: the operating points "
             "(curve.csv's choice for --gflops-budget, early exit) are chosen on it. 0: chosen on the training videos. "
             f"It must hold at least {MIN_CALIBRATION_VIDEOS} videos. The eval split never chooses.",
        minimum=0, maximum=0.5, variant=True)
    exit_budget: float | None = option(
        None, "Sample-wise early exit (the heads that step through frames): a video stops once its running prediction "
              "is confident enough, the threshold solved on the training videos so that the head costs this share "
              "of its GFLOPs without early exit (e.g. 0.7). Default: off.", above=0, maximum=1, kind=float,
        variant=True)
    curve: bool = option(True, "Write RUN/curve.csv: the head at every target of its thresholds (and online budgets), "
                               "each solved on the training videos and evaluated on the eval split.")
    device: str = option("auto", DEVICE_HELP)
    overwrite: bool = option(False, "Replace the run directory if it holds a finished run.")
    progress: bool = option(True, "Show progress bars.")
    # the method's own settings: its Settings dataclass (a dict of its fields is accepted and converted)
    method_settings: Any = option(None, cli=False)

    def __post_init__(self):
        self.rate_steps = tuple(self.rate_steps)        # a list from JSON
        validate(self)
        self.method_settings = self.record.make_settings(self.method_settings)
        self.feature_sets()             # each role names as many sets as it may

    @property
    def record(self) -> Method:
        """The method's registered record (c2f.methods)."""
        return method_record(self.method)

    @classmethod
    def from_dict(cls, data: dict, strict: bool = False) -> "TrainConfig":
        """From one flat mapping of shared and method settings. strict (flags, a config file): a key no
        method knows is an error and another method's setting a warning; otherwise both are ignored
        (an older c2f's config.json held every method's settings)."""
        shared = {f.name for f in fields(cls)} - {"method_settings"}
        if "method" not in data:
            raise SettingsError("the settings name no method", "give --method, or `method:` in the config file")
        record = method_record(data["method"])
        own = {k: v for k, v in data.items() if k not in shared}
        known = {name for m in methods().values() for name in m.setting_names()}
        if strict and set(own) - known:
            raise SettingsError(f"unknown settings: {', '.join(sorted(set(own) - known))}",
                                f"see `c2f train-head --help` for the settings of --method {record.name}")
        if not strict:
            own = {k: v for k, v in own.items() if k in record.setting_names()}
        return cls(**{k: v for k, v in data.items() if k in shared}, method_settings=record.make_settings(own))

    @classmethod
    def of(cls, **flat) -> "TrainConfig":
        """TrainConfig.of(method="lstm", frames=8, ...): shared and method settings as keywords."""
        return cls.from_dict(flat, strict=True)

    def to_dict(self) -> dict:
        """Every setting, flat: the shared ones, then the method's (JSON-ready but for tuples)."""
        shared = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "method_settings"}
        return shared | dataclasses.asdict(self.method_settings)

    def feature_sets(self) -> dict[str, str]:
        """Data role -> feature set, for the roles the method reads (`fine.0`, `fine.1`, ... where a role
        names several sets: c2f.methods.Role)."""
        return self.record.data_roles(self.method_settings)

    def stage_schedule(self) -> tuple[list[int], list[float]]:
        if self.record.staged:
            return list(self.method_settings.stage_epochs), list(self.method_settings.stage_lrs)
        return [self.epochs or 0], [self.lr]

    def setting(self, name: str, default=None):
        """A method setting by name, or `default` when the method has no such setting."""
        return getattr(self.method_settings, name, default)


def variant_keys() -> list[str]:
    """Every setting that makes a run another variant of its method (the report's rows), shared or the methods'."""
    shared = [f.name for f in fields(TrainConfig) if f.metadata.get("variant")]
    own = [name for m in methods().values() for name in m.variant_keys()]
    return list(dict.fromkeys(shared + own))


def defaults_of(method: str) -> dict:
    """The defaults of a method's run: the shared settings' and the method's own."""
    shared = {f.name: f.default for f in fields(TrainConfig)
              if f.default is not dataclasses.MISSING and f.name != "method_settings"}
    return shared | method_record(method).defaults()
