"""Deployment: a trained head on raw videos, the expensive network run only where the head decides.
`engine` (Predictor: a run's phase-one pipeline rebuilt, features computed where the head reads them),
`job` (`c2f predict`: its settings, decoding workers, torchrun ranks, resume), `outputs` (its output
folder), `strips` (--visualize).

May import: c2f's shared modules (data, evaluate, heads, rundir) and phase one's public functions
only: decoding (pipeline.decode), the backbones and their runner, the kernel (pipeline.core)."""
from .engine import Predictor
from .job import PredictConfig, predict_videos

__all__ = ["Predictor", "PredictConfig", "predict_videos"]
