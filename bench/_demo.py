"""A tiny `c2f demo` for the bench scripts' --smoke modes (a module, not a bench: the tests skip
names that start with an underscore)."""
from __future__ import annotations

from pathlib import Path


def smoke_demo(root: Path) -> tuple[Path, Path]:
    """A demo of a few videos with random weights: the same commands as `c2f demo`, smaller."""
    from click.testing import CliRunner

    from c2f.demo.steps import DemoSizes, demo_steps
    from cli import main
    sizes = DemoSizes(train_videos=6, val_videos=4, frames=4, finetune_epochs=1,
                      adafocus_stage_epochs="1,1,1", budgets=(1,), predict_videos=1)
    for step in demo_steps(str(root / "data"), str(root / "out"), sizes):
        if step[0] in ("report", "evaluate-online", "predict"):
            continue
        step = ["random" if a == "imagenet" else a for a in step]        # no weights needed for a smoke run
        result = CliRunner().invoke(main, step)
        assert result.exit_code == 0, (step, result.output)
    return root / "out", root / "data"
