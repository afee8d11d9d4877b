"""Phase two's training: `c2f train-head` (run.py) on the cache's videos (inputs.py), the head built,
resumed and trained (fit.py) by the trainer's loop (loop.py) with one schedule of optimiser, rate
and length set before training (schedule.py), and `c2f evaluate-online` (online.py).

May import: c2f's shared modules (config, data, evaluate, heads, methods, rundir) and pipeline's
kernel and cache; never c2f.predict or c2f.report."""
from .run import train_head

__all__ = ["train_head"]
