"""benchmarks/probes/unet_variants.py --tiny: the formulations it times on GPU compute the same forward as our code
(so its timings compare like with like) and every run lands in the results file."""
import json
import os
import subprocess
import sys
from pathlib import Path
import pytest

pytestmark = pytest.mark.slow  # trains, or runs whole toy generations or scripts in subprocesses

ROOT = Path(__file__).resolve().parents[2]


def test_variants_compute_the_same_forward_and_append_runs(tmp_path):
    out = tmp_path / "variants.json"
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(ROOT)}
    command = [sys.executable, str(ROOT / "benchmarks" / "probes" / "unet_variants.py"), "--tiny", "--out", str(out)]
    for variants in (["base", "short", "split", "f32"], ["base"]):
        done = subprocess.run(command + ["--variants", *variants], env=env, cwd=ROOT, capture_output=True, text=True,
                              timeout=600)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    runs = json.loads(out.read_text())["runs"]
    assert [list(r["variants"]) for r in runs] == [["base", "short", "split", "f32"], ["base"]]
    first = runs[0]["variants"]
    assert all(first[v]["ms"] > 0 for v in first)
    # fp32 on CPU: the broadcast-product attention differs from the einsum one by float rounding only
    assert first["short"]["max_abs_vs_first"] < 1e-4, first
    assert first["split"]["max_abs_vs_first"] < 1e-4 and first["f32"]["max_abs_vs_first"] < 1e-4, first
