"""`make demo` at a smaller size: demo videos -> fine-tune -> extract -> four heads -> online -> report."""
import json

import pandas as pd
from click.testing import CliRunner

from c2f.demo import FINE, FOCUS, DemoSizes, demo_steps
from cli import main
from pipeline.backbones import weights_tag


def test_the_demo_pipeline_end_to_end(tmp_path):
    sizes = DemoSizes(train_videos=10, val_videos=5, frames=4, finetune_epochs=1, head_epochs=2,
                      adafocus_stage_epochs="1,1,1", budgets=(1,))
    data, out = tmp_path / "data", tmp_path / "out"
    runner = CliRunner()
    for step in demo_steps(str(data), str(out), sizes):
        result = runner.invoke(main, step)
        assert result.exit_code == 0, (step, result.output)

    weights = out / f"{FINE.replace('@', '_')}_demo.pt"
    for name in (FINE, FOCUS):        # phase one used the fine-tuned weights for both ResNet-18 sets
        index = json.loads((out / "cache" / name / "index.json").read_text())
        assert index["complete"] and index["num_videos"] == 15 and index["num_frames"] == 60
        assert index["attrs"]["weights"] == weights_tag(str(weights))
    for method in ("uniform", "lstm", "liteeval", "adafocus"):
        metrics = json.loads((out / "runs" / method / "metrics.json").read_text())
        assert metrics["num_videos"] == 5 and 0 <= metrics["top1"] <= 1 and metrics["gflops_mean"] > 0
    assert len(pd.read_csv(out / "runs" / "liteeval" / "online.csv")) >= 1
    report = (out / "report" / "report.md").read_text()
    assert "uniform" in report.lower() and (out / "report" / "flops.csv").exists()
