"""Counted multiply-adds (the papers' GFLOPs): torch's FlopCounterMode on the real modules,
2 FLOPs per multiply-add, never typed-in constants. Backbones and heads are counted with it."""
from __future__ import annotations


def count_gmacs(fn, *args) -> float:
    """Multiply-accumulates (10^9) of fn(*args), counted by FlopCounterMode (2 FLOPs per MAC)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        fn(*args)
    return counter.get_total_flops() / 2 / 1e9
