"""A tiny `c2f demo` for the bench scripts' --smoke modes (a module, not a bench: the tests skip
names that start with an underscore)."""
from __future__ import annotations

import os
from pathlib import Path

# A folder holding one tiny demo that every bench's --smoke reads instead of writing its own: the
# suite (tests/test_bench.py) sets it, so that the demo is trained once, not once a bench.
SHARED_DEMO = "C2F_BENCH_SMOKE_DEMO"
FINISHED = "smoke_demo.finished"       # written last: a folder without it is built (again)


def smoke_demo(root: Path) -> tuple[Path, Path]:
    """A demo of a few videos with random weights: the same commands as `c2f demo`, smaller. Written
    under `root`, or read from $C2F_BENCH_SMOKE_DEMO (written there first if it is not finished)."""
    root = Path(os.environ.get(SHARED_DEMO) or root)
    if not (root / FINISHED).exists():
        build_smoke_demo(root)
        (root / FINISHED).touch()
    return root / "out", root / "data"


def build_smoke_demo(root: Path) -> None:
    from click.testing import CliRunner

    from c2f.demo.steps import DemoSizes, demo_steps
    from c2f.cli import main
    sizes = DemoSizes(train_videos=6, val_videos=4, frames=4, finetune_epochs=1,
                      adafocus_stage_epochs="1,1,1", budgets=(1,), predict_videos=1)
    for step in demo_steps(str(root / "data"), str(root / "out"), sizes):
        if step[0] in ("report", "evaluate-online", "predict"):
            continue
        step = ["random" if a == "imagenet" else a for a in step]        # no weights needed for a smoke run
        result = CliRunner().invoke(main, step)
        assert result.exit_code == 0, (step, result.output)
