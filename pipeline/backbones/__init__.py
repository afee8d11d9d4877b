"""Frozen backbones of phase one, like timm's model registry: `registry` (the backbones and the
feature-set spec grammar, with each set's preprocessing), `weights` (loading weights and
building the frozen module) and `flops` (counted multiply-adds)."""
from .flops import PAPER_GFLOPS, count_gmacs, flops_table, gflops_per_frame
from .registry import (CLIP_STRIDE, CLIP_WINDOW, PREPROCESS, REGISTRY, SPEC_RE, Backbone, FeatureSet, canvas_for,
                       parse_spec)
from .weights import (FeatureNet, WeightsError, build, build_full, check_weights, hub_checkpoint_dir, load_checkpoint,
                      weights_tag)

__all__ = ["PAPER_GFLOPS", "count_gmacs", "flops_table", "gflops_per_frame", "CLIP_STRIDE", "CLIP_WINDOW",
           "PREPROCESS", "REGISTRY", "SPEC_RE", "canvas_for", "Backbone", "FeatureSet", "parse_spec", "FeatureNet", "WeightsError", "build",
           "build_full", "check_weights", "hub_checkpoint_dir", "load_checkpoint", "weights_tag"]
