"""Phase two's training: `c2f train-head` (run.py) on the cache's videos (inputs.py), the trainer's
loop and optimisers (loop.py), early stopping on a held-out part (stopping.py), the learning rate
and length chosen by default (fit.py), and `c2f evaluate-online` (online.py).

May import: c2f's shared modules (config, data, evaluate, heads, methods, rundir) and pipeline's
kernel and cache; never c2f.predict or c2f.report."""
from .run import train_head

__all__ = ["train_head"]
