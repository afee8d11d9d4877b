"""The structure the code relies on: the extraction queue's whole-batch rule, options written once
(click options and validation from the dataclass), one registered record per method, and the
layering (nothing under pipeline/ or c2f/ imports the command line)."""
from __future__ import annotations

import ast
import dataclasses

import click
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from c2f import methods as registry
from c2f.config import TrainConfig
from conftest import REPO
from pipeline.frames import Chunk, FrameQueue
from pipeline.core.options import click_options, option, to_args, validate


def chunk(position: int, frames: int, last: bool = False) -> Chunk:
    return Chunk(position, np.arange(frames, dtype=np.float32) + 100 * position,
                 torch.zeros(frames, 2, 2, 3, dtype=torch.uint8), None, last)


def test_queue_hands_out_whole_batches_and_splits_at_the_boundary():
    queue = FrameQueue(batch_size=4)
    for c in (chunk(0, 5), chunk(0, 0, last=True), chunk(1, 7), chunk(2, 3, last=True)):
        queue.push(c)
    taken = queue.take()
    assert sum(len(c) for c in taken) == 12                      # 15 queued: three whole batches
    assert [(c.position, len(c), c.last) for c in taken] == [(0, 5, False), (0, 0, True), (1, 7, False)]
    assert queue.frames == 3 and queue.take() == []               # 3 < 4: nothing whole to compute
    queue.push(chunk(1, 2, last=True))                            # 5: one batch, split inside video 1's chunk
    first = queue.take()
    assert [(c.position, len(c), c.last) for c in first] == [(2, 3, True), (1, 1, False)]
    assert first[1].timestamps.tolist() == [100.0]
    rest = queue.take(final=True)
    assert [(c.position, len(c), c.last) for c in rest] == [(1, 1, True)] and queue.frames == 0


def test_queue_drops_a_failed_videos_frames():
    queue = FrameQueue(batch_size=4)
    queue.push(chunk(0, 3))
    queue.push(chunk(1, 2))
    queue.drop(0)
    assert queue.frames == 2 and queue.take(final=True)[0].position == 1


@dataclasses.dataclass
class Settings:
    name: str = option(help="A required name.")
    size: int = option(3, "A size.", minimum=1)
    rate: float = option(0.5, "A rate.", above=0, maximum=1)
    mode: str = option("a", "A mode.", choices=("a", "b"))
    pair: tuple[int, int] = option((1, 2), "Two numbers.")
    items: list[str] = option(["x"], "Repeatable.", flag="--item")
    loud: bool = option(False, "A flag.")
    keep: bool = option(True, "On by default.")

    def __post_init__(self):
        self.pair = tuple(self.pair)
        validate(self)


@click.command()
@click_options(Settings)
def settings_command(**options):
    click.echo(repr(Settings(**options)))


def test_options_are_written_once_in_the_dataclass():
    result = CliRunner().invoke(settings_command, ["--name", "n", "--size", "4", "--mode", "b", "--pair", "3,4",
                                                   "--item", "p", "--item", "q", "--loud", "--no-keep"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == repr(Settings("n", 4, 0.5, "b", (3, 4), ["p", "q"], True, False))
    defaults = CliRunner().invoke(settings_command, ["--name", "n"])
    assert defaults.output.strip() == repr(Settings("n"))
    assert CliRunner().invoke(settings_command, []).exit_code == 2                  # --name is required
    assert "two comma-separated values" in CliRunner().invoke(settings_command, ["--name", "n", "--pair", "1"]).output
    with pytest.raises(ValueError, match=r"--size must be >= 1"):
        Settings("n", size=0)
    with pytest.raises(ValueError, match=r"--rate must be a finite number"):
        Settings("n", rate=float("nan"))
    with pytest.raises(ValueError, match=r"--mode must be one of a, b"):
        Settings("n", mode="c")
    assert to_args(Settings, {"size": 4, "pair": (3, 4), "items": ["p"], "keep": False, "loud": False}) == \
        ["--size", "4", "--pair", "3,4", "--item", "p", "--no-keep"]


def test_train_config_round_trips_through_its_generated_flags():
    """Every setting, shared or the method's, written as flags and parsed back gives the same config."""
    from cli import main
    command = main.get_command(None, "train-head")
    for cfg in (TrainConfig.of(method="liteeval", manifest="m.csv", cache="c", out="o", gamma=0.1, sync=False),
                TrainConfig.of(method="adafocus", manifest="m.csv", cache="c", out="o", stage_epochs=(1, 2, 3),
                               frames=7, reuse=False, stage_lrs=(0.1, 0.2, 0.3))):
        settings = cfg.to_dict()
        args = to_args([TrainConfig, cfg.record.settings], {k: v for k, v in settings.items() if k != "grad_clip"})
        parsed = {k: v for k, v in command.make_context("train-head", args).params.items() if v is not None}
        assert TrainConfig.from_dict(parsed, strict=True) == cfg


def test_a_registered_method_is_known_everywhere():
    """A new method is one record: its settings dataclass reaches the config, the flags and variant keys."""
    from c2f.config import variant_keys
    from c2f.heads import method, methods
    from c2f.heads.uniform import UniformHead

    @dataclasses.dataclass
    class ProbeSettings(registry.Settings):
        frames: int = option(3, "evenly spaced frames read per video", minimum=1, variant=True)
        probe_depth: int = option(2, "how deep it probes", minimum=1, variant=True)

    record = registry.Method("probe_only", UniformHead, ProbeSettings, {"fine": registry.Role("focus", "grid")},
                             budgeted=True)
    registry.register(record)
    try:
        assert "probe_only" in methods() and method("probe_only") is record
        cfg = TrainConfig.of(method="probe_only", manifest="m", cache="c", out="o", probe_depth=5)
        assert cfg.method_settings == ProbeSettings(3, 5) and cfg.feature_sets() == {"fine": "resnet50@224-grid7x128"}
        assert "probe_depth" in variant_keys() and cfg.to_dict()["probe_depth"] == 5
        with pytest.raises(ValueError, match="registered twice"):
            registry.register(record)
    finally:
        registry.unregister("probe_only")
    with pytest.raises(ValueError, match="unknown method .probe_only."):
        TrainConfig.of(method="probe_only", manifest="m", cache="c", out="o")


def _python_files():
    return [REPO / "cli.py"] + sorted((REPO / "pipeline").rglob("*.py")) + sorted((REPO / "c2f").rglob("*.py"))


def test_nothing_under_pipeline_or_c2f_imports_the_command_line():
    for path in _python_files()[1:]:
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert "cli" not in names, f"{path} imports cli"


def test_no_function_is_longer_than_60_lines():
    for path in _python_files():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                assert length <= 60, f"{path.relative_to(REPO)}:{node.lineno} {node.name} has {length} lines"
