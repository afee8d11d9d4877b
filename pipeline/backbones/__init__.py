"""Frozen backbones of phase one, like timm's model registry: `weights` (the published
checkpoints, random, or a file), `registry` (the backbones and the feature-set spec grammar, with
each set's preprocessing), `flops` (counted multiply-adds) and `frozen` (the frozen module a set
runs). Each imports only those listed before it."""
from .flops import PAPER_GFLOPS, flops_table, full_model_gmacs, gflops_per_frame
from .frozen import FeatureNet, build
from .registry import (CLIP_STRIDE, CLIP_WINDOW, PREPROCESS, REGISTRY, SPEC_RE, Backbone, FeatureSet, canvas_for,
                       parse_spec, parse_weights_option)
from .weights import build_full, check_weights, hub_checkpoint_dir, load_checkpoint, weights_tag

__all__ = ["PAPER_GFLOPS", "flops_table", "full_model_gmacs", "gflops_per_frame", "FeatureNet", "build",
           "CLIP_STRIDE", "CLIP_WINDOW", "PREPROCESS", "REGISTRY", "SPEC_RE", "Backbone", "FeatureSet", "canvas_for",
           "parse_spec", "build_full", "check_weights", "hub_checkpoint_dir", "load_checkpoint",
           "parse_weights_option", "weights_tag"]
