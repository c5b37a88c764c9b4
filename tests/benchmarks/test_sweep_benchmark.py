"""benchmarks/sweep_gpu.py --tiny: the GPU sweep benchmark's smoke mode on CPU, with 2 fake devices for its multi-device
part. It also checks that a sweep's I and U videos equal diffusers' with the site's attention processor swapped."""
import json
import os
import subprocess
import sys
from pathlib import Path
import pytest

pytestmark = pytest.mark.slow  # trains, or runs whole toy generations or scripts in subprocesses

ROOT = Path(__file__).resolve().parents[2]


def test_sweep_benchmark_tiny_smoke_run(tmp_path):
    out = tmp_path / "sweep_gpu.json"
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2", "JAX_PLATFORMS": "cpu",
           "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "sweep_gpu.py"), "--tiny", "--part", "all",
                           "--chunk", "2", "--out", str(out)], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(out.read_text())
    single, multi = result["single"], result["multi"]
    assert single["diffusers"]["videos"] == 1 + 2 * 2 and single["ours_loop"]["videos"] == 2 * 2
    assert single["ours_batched"]["videos"] == 2 * 2 * 2 and single["ours_batched"]["chunk_per_device"] == 2
    assert sorted(result["site_kinds"].values()) == ["spatial_self", "temporal"]
    gaps = single["video_mean_abs_diff_ours_vs_diffusers"]
    assert len(gaps) == 5 and max(gaps.values()) < 1e-4, gaps  # baseline + 2 sites x (I, U); fp32 on CPU
    assert multi["all_devices"]["devices"] == 2
    assert multi["results"] == {"videos": 2 + 8, "same_keys": True, "bit_identical": 10, "max_abs_difference": 0.0}
