"""Frozen backbones of phase one, like timm's model registry. Each module imports only those listed
before it: `weights` (fetching and loading weights), `backbone` (what a backbone is), `builders` (the
networks, built by torchvision, timm or pytorchvideo), `catalog` (any torchvision or timm model by
name), `featureset` (a backbone at an input size, and how a frame is prepared for it), `registry` (the
presets and the spec grammar), `flops` (counted multiply-adds, kept on disk) and `frozen` (the frozen
module a set runs)."""
from .backbone import Backbone
from .featureset import PREPROCESS, FeatureSet, canvas_for
from .flops import PAPER_GFLOPS, counted_sets, flops_table, full_model_gmacs, gflops_per_frame, warn_left_out
from .frozen import FeatureNet, build
from .registry import REGISTRY, SPEC_RE, backbone, parse_spec, parse_weights_option
from .weights import build_full, check_weights, fetch, hub_checkpoint_dir, load_checkpoint, offline, weights_tag

__all__ = ["Backbone", "PREPROCESS", "FeatureSet", "canvas_for", "PAPER_GFLOPS", "counted_sets", "flops_table",
           "full_model_gmacs", "gflops_per_frame", "warn_left_out", "FeatureNet", "build", "REGISTRY", "SPEC_RE",
           "backbone", "parse_spec", "parse_weights_option", "build_full", "check_weights", "fetch",
           "hub_checkpoint_dir", "load_checkpoint", "offline", "weights_tag"]
