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
