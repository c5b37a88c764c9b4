"""benchmarks/cogvideox_gpu.py --tiny: the GPU benchmark's whole flow on CPU (fresh fp32-parity and 2-device
sharded processes included), so the script the lead runs on the GPU cannot rot unnoticed."""
import importlib.util
import json
from pathlib import Path

import numpy as np

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "cogvideox_gpu.py"


def test_tiny_benchmark_runs_with_parity_recording_and_sharding(tmp_path):
    spec = importlib.util.spec_from_file_location("cogvideox_gpu", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "result.json"
    bench.main(["--tiny", "--sharded", "2", "--warmup", "0", "--repeats", "1", "--out", str(out)])
    result = json.loads(out.read_text())
    assert result["parity"]["fp32"]["max_abs"] < 1e-4 and result["parity"]["fp32"]["matmul_precision"] == "highest"
    assert result["parity"]["bf16"]["relative"] < 0.05
    recording = result["ours"]["record_joint_bf16"]
    assert recording["recorded_sites"] == 2 and recording["energy_ratio_finite"]
    sharded = result["sharded"]
    assert sharded["devices"] == ["cpu:0", "cpu:1"]
    assert max(sharded["param_bytes_per_device"]) < sharded["param_bytes_total"]  # the parameters really are split
    assert sharded["error_vs_one_device_bf16"]["relative"] < 0.05
    assert np.isfinite([result["diffusers"]["seconds"], result["ours"]["plain_bf16"]["seconds"], sharded["seconds"]]).all()
