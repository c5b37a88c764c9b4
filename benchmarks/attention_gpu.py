"""GPU benchmark of the attention core: plain cuDNN attention vs every rewiring mode vs recording.

Run on a GPU machine from the repository root:

    python benchmarks/attention_gpu.py --out benchmarks/results/attention_gpu.json

Shapes (bf16): AnimateDiff spatial self-attention (B=32 = 2 rows × 16 frames, N=4096, H=8, D=40) and
CogVideoX joint attention (B=2, N=17776, H=48, D=64). For each: plain ``jax.nn.dot_product_attention``
(cuDNN) as the baseline, ``attend`` without rewiring, with each rewiring mode, and recording
entropy + energy; the compiled temporary memory of each; and the recorded entropy checked against the
chunked fp32 path. ``--tiny`` runs small shapes on any platform (a smoke test of the script).
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from common import write_json

from ieadapt_jax import SiteRewiring, attend, mode_mix
from ieadapt_jax.core import cudnn

FULL_SHAPES = {
    "animatediff_spatial": dict(rows=2, per_row=16, N=4096, H=8, D=40),
    "cogvideox_joint": dict(rows=2, per_row=1, N=17776, H=48, D=64),
}
TINY_SHAPES = {
    "tiny_self": dict(rows=2, per_row=2, N=256, H=2, D=16),
}


def rewiring(rows: int, mode: str) -> SiteRewiring | None:
    """The benchmarked modes; perturbations/injections touch the second half of the rows."""
    own = np.arange(rows, dtype=np.int32)
    src = own.copy()
    src[rows // 2 :] = own[: rows - rows // 2]
    mix = np.tile(np.float32([1, 0, 0]), (rows, 1))
    q_from, k_from, v_from = own, own, own
    if mode == "noop":
        pass
    elif mode in ("I", "U", "alpha"):
        mix[rows // 2 :] = mode_mix(0.5 if mode == "alpha" else mode)
    elif mode == "inject_qk":
        q_from, k_from = src, src
    elif mode == "inject_kv":
        k_from, v_from = src, src
    elif mode == "inject_v":
        v_from = src
    else:
        raise ValueError(mode)
    return SiteRewiring(*(jnp.asarray(x) for x in (q_from, k_from, v_from, mix)))


def time_fn(fn, args, iters: int, repeats: int) -> float:
    """Median seconds per call of a jitted fn (``iters`` back-to-back calls per sample)."""
    jax.block_until_ready(fn(*args))
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(iters):
            out = fn(*args)
        jax.block_until_ready(out)
        samples.append((time.perf_counter() - t0) / iters)
    return statistics.median(samples)


def temp_bytes(fn, args) -> int | None:
    analysis = fn.lower(*args).compile().memory_analysis()
    return None if analysis is None else int(analysis.temp_size_in_bytes)


def run_shape(name: str, shape: dict, backend: str, iters: int, repeats: int) -> dict:
    rows, per_row, N, H, D = (shape[k] for k in ("rows", "per_row", "N", "H", "D"))
    B = rows * per_row
    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    q, k, v = (jax.random.normal(kk, (B, N, H, D), jnp.bfloat16) for kk in keys)
    map_bytes = B * H * N * N * 2
    result = {"shape": dict(shape, B=B), "full_map_bytes_bf16": map_bytes, "cases": {}}

    def record_case(label, fn, args):
        t = time_fn(fn, args, iters, repeats)
        result["cases"][label] = {"ms": t * 1e3, "temp_bytes": temp_bytes(fn, args)}
        print(f"{name:22s} {label:26s} {t * 1e3:9.3f} ms", flush=True)

    if backend == "cudnn":
        plain = jax.jit(lambda q, k, v: jax.nn.dot_product_attention(q, k, v, implementation="cudnn"))
        record_case("plain_cudnn (baseline)", plain, (q, k, v))
    attend_plain = jax.jit(lambda q, k, v: attend(q, k, v, backend=backend)[0])
    record_case("attend", attend_plain, (q, k, v))
    for mode in ("noop", "I", "U", "alpha", "inject_qk", "inject_kv", "inject_v"):
        rw = rewiring(rows, mode)
        fn = jax.jit(lambda q, k, v, rw: attend(q, k, v, rw, backend=backend)[0])
        record_case(f"mode {mode}", fn, (q, k, v, rw))
    rec_fn = jax.jit(lambda q, k, v: attend(q, k, v, record=True, rows=rows, backend=backend))
    record_case("record entropy+energy", rec_fn, (q, k, v))
    rec_rw = jax.jit(lambda q, k, v, rw: attend(q, k, v, rw, record=True, backend=backend))
    record_case("record + inject_qk", rec_rw, (q, k, v, rewiring(rows, "inject_qk")))

    base = result["cases"].get("plain_cudnn (baseline)", result["cases"]["attend"])["ms"]
    for case in result["cases"].values():
        case["x_plain"] = case["ms"] / base

    # accuracy of the recorded entropy against the chunked path in fp32 on the same (bf16-rounded) inputs
    _, rec = rec_fn(q, k, v)
    ref_fn = jax.jit(
        lambda q, k, v: attend(
            q.astype(jnp.float32), k.astype(jnp.float32), v.astype(jnp.float32), record=True, rows=rows, backend="chunked"
        )[1]
    )
    ref = ref_fn(q, k, v)
    result["record_vs_chunked_fp32"] = {
        f: float(jnp.max(jnp.abs(getattr(rec, f) - getattr(ref, f)))) for f in ("entropy", "energy", "energy_ratio")
    }
    result["entropy"] = np.asarray(rec.entropy).tolist()
    print(f"{name}: record vs chunked fp32 max abs diff {result['record_vs_chunked_fp32']}", flush=True)
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="where to write the JSON results")
    parser.add_argument("--tiny", action="store_true", help="small shapes on any platform (smoke test)")
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)

    on_gpu = jax.default_backend() == "gpu"
    if not on_gpu and not args.tiny:
        print("no GPU: run with --tiny for a smoke test", file=sys.stderr)
        return 2
    backend = "cudnn" if on_gpu else "chunked"
    shapes = TINY_SHAPES if args.tiny else FULL_SHAPES
    device = jax.devices()[0]
    results = {
        "benchmark": "attention core",
        "device": getattr(device, "device_kind", str(device)),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([os.path.basename(sys.executable)] + sys.argv),
        "jax": jax.__version__,
        "python": platform.python_version(),
        "backend": backend,
        "dtype": "bfloat16",
        "shapes": {},
    }
    if on_gpu:
        results["cudnn_entropy_single_pass"] = cudnn.wide_values_supported(64, 128)
        print(f"cuDNN entropy in a single pass (head dim 64, value head dim 128): "
              f"{results['cudnn_entropy_single_pass']}")
    for name, shape in shapes.items():
        results["shapes"][name] = run_shape(name, shape, backend, args.iters, args.repeats)
    write_json(args.out, results)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
