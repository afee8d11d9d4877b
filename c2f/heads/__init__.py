"""Phase-two heads, one file per method, behind `Head` (base.py). `build_head` maps a
method name (as written on the command line) to its head."""
from __future__ import annotations

from ..config import TrainConfig
from .adafocus import AdaFocusHead
from .base import Head, HeadDims, HeadOutput
from .fastforward import FastForwardHead
from .frameglimpse import FrameGlimpseHead
from .liteeval import LiteEvalHead
from .lstm import LSTMHead
from .uniform import UniformHead


def _liteeval(dims: HeadDims, cfg: TrainConfig, gate_training: str) -> Head:
    return LiteEvalHead(dims, cfg.rnn, cfg.coarse_hidden, cfg.fine_hidden, cfg.sync, cfg.gamma, cfg.lam,
                        cfg.tau_start, cfg.tau_end, gate_training)


def _adafocus(dims: HeadDims, cfg: TrainConfig, plus: bool) -> Head:
    return AdaFocusHead(dims, cfg.frames, cfg.policy, cfg.reward, cfg.reuse, plus, cfg.keep_ratio, cfg.eta,
                        cfg.adafocus_hidden, cfg.ppo_epochs)


METHODS = {
    "uniform": lambda d, c: UniformHead(d, c.frames, combine=False),
    "uniform_cf": lambda d, c: UniformHead(d, c.frames, combine=True),
    "lstm": lambda d, c: LSTMHead(d, c.frames, combine=False, hidden=c.fine_hidden, rnn=c.rnn),
    "lstm_cf": lambda d, c: LSTMHead(d, c.frames, combine=True, hidden=c.fine_hidden, rnn=c.rnn),
    "liteeval": lambda d, c: _liteeval(d, c, "gumbel"),
    "liteeval_rl": lambda d, c: _liteeval(d, c, "reinforce"),
    "frameglimpse": lambda d, c: FrameGlimpseHead(d, c.glimpses, c.fine_hidden, c.rnn),
    "fastforward": lambda d, c: FastForwardHead(d, c.fine_hidden, c.rnn, c.step_penalty),
    "adafocus": lambda d, c: _adafocus(d, c, plus=False),
    "adafocus_plus": lambda d, c: _adafocus(d, c, plus=True),
}
# the feature roles each method reads (decides which sets are loaded)
METHOD_ROLES = {"uniform": ("fine",), "lstm": ("fine",), "frameglimpse": ("fine",), "fastforward": ("fine",),
                "uniform_cf": ("coarse", "fine"), "lstm_cf": ("coarse", "fine"),
                "liteeval": ("coarse", "fine"), "liteeval_rl": ("coarse", "fine"),
                "adafocus": ("coarse", "fine"), "adafocus_plus": ("coarse", "fine")}
# the shape each role's feature set must have per frame: pooled (D,), map (C, H, W), grid (G*G, D)
METHOD_SHAPES = {"adafocus": {"coarse": "map", "fine": "grid"}, "adafocus_plus": {"coarse": "map", "fine": "grid"}}


def build_head(cfg: TrainConfig, dims: HeadDims) -> Head:
    if cfg.method not in METHODS:
        raise ValueError(f"unknown method {cfg.method!r}; choose one of {', '.join(METHODS)}")
    return METHODS[cfg.method](dims, cfg)


__all__ = ["Head", "HeadDims", "HeadOutput", "METHODS", "METHOD_ROLES", "METHOD_SHAPES", "build_head"]
