"""Every bench/ script runs (its --smoke mode: seconds, not a measurement), so the README's numbers come
from code that works."""
import os
import subprocess
import sys

import pytest

from conftest import REPO, SHARED_VIDEOS

SCRIPTS = sorted(p.name for p in (REPO / "bench").glob("*.py") if not p.name.startswith("_"))


@pytest.fixture(scope="module")
def smoke_demo_folder(tmp_path_factory):
    """One tiny demo for every bench whose --smoke reads one (bench/_demo.py), written by the first."""
    return tmp_path_factory.mktemp("smoke_demo")


@pytest.mark.parametrize("script", SCRIPTS)
def test_bench_script_smoke(script, tmp_path, smoke_demo_folder):
    if script in ("extract.py",) and not SHARED_VIDEOS.is_dir():
        pytest.skip(f"{script} measures on {SHARED_VIDEOS}, absent here")
    environment = os.environ | {"C2F_BENCH_SMOKE_DEMO": str(smoke_demo_folder)}
    done = subprocess.run([sys.executable, str(REPO / "bench" / script), "--smoke"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=600, env=environment)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert "Traceback" not in done.stderr


def test_gpu_sh_smoke(tmp_path, smoke_demo_folder):
    """bench/gpu.sh --device cpu: every step of the GPU measurement runs at small sizes (the CUDA tests
    skip without CUDA), each writes its figures, and the summary has every section's table."""
    results = tmp_path / "results"
    environment = os.environ | {"PYTHON": sys.executable, "C2F_GPU_WORK": str(tmp_path / "work"),
                                "C2F_BENCH_SMOKE_DEMO": str(smoke_demo_folder)}
    done = subprocess.run(["bash", str(REPO / "bench" / "gpu.sh"), str(results), "--device", "cpu"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=1200, env=environment)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    steps = [line.split("\t")[:2] for line in (results / "steps.tsv").read_text().splitlines()]
    assert steps == [[name, "0"] for name in ("env", "tests", "extract_formats", "extract_e2e", "demo", "predict",
                                              "phase_two")], done.stdout[-3000:]
    for name in ("extract_formats", "extract_e2e", "predict", "phase_two"):
        assert (results / f"{name}.json").exists() and (results / f"{name}.csv").exists(), name
    summary = (results / "summary.md").read_text()
    assert "No figures" not in summary and "Could not summarise" not in summary and "0 failed, 0 errors" in summary
    assert "| uniform |" in summary and "| resnet18@64 | bf16, channels_last |" in summary
