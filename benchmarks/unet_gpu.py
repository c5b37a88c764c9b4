"""AnimateDiff motion UNet on GPU: parity with diffusers (fp32, bf16) and speed/memory of one forward.

Run from the repository root on a GPU machine:

    python benchmarks/unet_gpu.py --out benchmarks/results/unet_gpu.json

What it does (issue 3, deliverable 4):

1. builds the full-size SD1.5 UNet2DConditionModel + MotionAdapter v1-5-3 configs (reference §1) in diffusers
   with random weights, ``save_pretrained`` to a temporary folder, and loads them with our converter;
2. compares outputs at batch 2 x 16 frames x 64x64 latents (text 77 x 768) against diffusers fp32 (TF32 off):
   ours in fp32 (matmul precision "highest") and ours in bf16, plus diffusers fp16 for scale;
3. times one forward at batch 2: diffusers fp16 with SDPA (median after warm-up, ``torch.cuda.synchronize``,
   peak ``torch.cuda.max_memory_allocated``), then, after freeing torch's GPU memory, ours in bf16 (jit,
   ``block_until_ready``, median; peak ``peak_bytes_in_use``) without and with recording entropy + energy at
   all 56 self-attention sites.

JAX's peak counter cannot be reset, so the fp32 parity runs first in a process of its own (its convolution
autotuning may pick large workspaces) and the bf16 runs go in increasing memory order (plain, then
recording); each compiled executable's temporary memory is reported as well. The loader runs
without its orbax cache here (no multi-GB cache entries in the temporary folder).
``--tiny`` runs the tiny fixture (reference §6) on any platform as a smoke test of the script.
"""
from __future__ import annotations

import os

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import argparse  # noqa: E402
import datetime  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import errors, median_seconds, write_json  # noqa: E402

SD15_UNET = dict(
    act_fn="silu", attention_head_dim=8, block_out_channels=(320, 640, 1280, 1280), cross_attention_dim=768,
    down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",), downsample_padding=1, flip_sin_to_cos=True,
    freq_shift=0, in_channels=4, layers_per_block=2, mid_block_scale_factor=1, norm_eps=1e-5, norm_num_groups=32,
    out_channels=4, sample_size=64, up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
)
ADAPTER_V153 = dict(
    block_out_channels=(320, 640, 1280, 1280), motion_layers_per_block=2, motion_max_seq_length=32,
    motion_mid_block_layers_per_block=1, motion_norm_num_groups=32, motion_num_attention_heads=8,
    motion_transformer_layers_per_block=1, motion_transformer_layers_per_mid_block=1, use_motion_mid_block=False,
)
FULL = dict(unet=SD15_UNET, adapter=ADAPTER_V153, batch=2, frames=16, size=64, text=(77, 768))
TINY = dict(
    unet=dict(block_out_channels=(32, 32, 64, 64), down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
              up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3, layers_per_block=2, norm_num_groups=8,
              cross_attention_dim=32, attention_head_dim=2, sample_size=16),
    adapter=dict(block_out_channels=(32, 32, 64, 64), motion_layers_per_block=2, motion_num_attention_heads=2,
                 motion_norm_num_groups=8, use_motion_mid_block=False),
    batch=2, frames=8, size=16, text=(8, 32),
)
# Issue 3 targets, against diffusers' fp16 forward on the same card.
TARGETS = dict(plain_vs_diffusers=0.8, record_vs_plain=1.3, record_peak_gb=8.0)


def jax_peak_bytes() -> int | None:
    stats = jax.devices()[0].memory_stats()
    return None if stats is None else int(stats.get("peak_bytes_in_use", 0))


def save_diffusers_models(spec: dict, folder: str, seed: int):
    """Random-weight UNet2DConditionModel + MotionAdapter saved with save_pretrained; returns them (fp32, CPU)."""
    import torch
    from diffusers import MotionAdapter, UNet2DConditionModel

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(**spec["unet"]).eval()
    adapter = MotionAdapter(**spec["adapter"]).eval()
    unet.save_pretrained(os.path.join(folder, "unet"))
    adapter.save_pretrained(os.path.join(folder, "adapter"))
    return unet, adapter


def run_diffusers(unet, adapter, inputs, device: str, warmup: int, repeats: int) -> tuple[dict, np.ndarray]:
    """diffusers: fp32 reference output (TF32 off), then fp16 (CUDA) timing and peak memory."""
    import torch
    from diffusers import UNetMotionModel

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    model = UNetMotionModel.from_unet2d(unet, adapter).eval().to(device)
    del unet, adapter
    sample, timesteps, text = inputs
    frames = sample.shape[1]
    # diffusers layout: sample [B, C, F, H, W], text repeated per frame [B*F, L, D].
    t_sample = torch.from_numpy(sample.transpose(0, 4, 1, 2, 3).copy()).to(device)
    t_steps = torch.from_numpy(timesteps).to(device)
    t_text = torch.from_numpy(text).repeat_interleave(frames, 0).to(device)
    with torch.no_grad():
        reference = model(t_sample, t_steps, t_text).sample.float().cpu().numpy().transpose(0, 2, 3, 4, 1)
        timed_dtype = torch.float16 if device == "cuda" else torch.float32
        model = model.to(timed_dtype)
        half_inputs = (t_sample.to(timed_dtype), t_steps, t_text.to(timed_dtype))
        half = model(*half_inputs).sample.float().cpu().numpy().transpose(0, 2, 3, 4, 1)

        def step():
            model(*half_inputs)
            if device == "cuda":
                torch.cuda.synchronize()

        if device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        seconds = median_seconds(step, warmup, repeats)
        peak = int(torch.cuda.max_memory_allocated()) if device == "cuda" else None
    result = dict(dtype=str(timed_dtype).replace("torch.", ""), attention="SDPA (AttnProcessor2_0)", seconds=seconds,
                  peak_bytes=peak, error_vs_fp32=errors(half, reference))
    del model, t_sample, t_text, half_inputs
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()
    return result, reference


def run_ours(folder: str, inputs, reference: np.ndarray, warmup: int, repeats: int) -> dict:
    """Ours: bf16 plain and recording timings, in that order, so the second peak is honest."""
    from ieadapt_jax.convert.animatediff import load_unet_motion

    from ieadapt_jax.core import make_forward

    unet_dir, adapter_dir = os.path.join(folder, "unet"), os.path.join(folder, "adapter")
    sample, timesteps, text = (jnp.asarray(x) for x in inputs)
    out = {}

    start = time.perf_counter()
    model = load_unet_motion(unet_dir, adapter_dir, dtype=jnp.bfloat16, cache=False)
    out["load_seconds_bf16"] = time.perf_counter() - start
    self_sites = model.site_table.select(kind="self")
    for label, record in (("plain_bf16", False), ("record_self_bf16", "self")):
        forward, state = make_forward(model, record=record)
        compiled = forward.lower(state, sample, timesteps, text).compile()
        memory = compiled.memory_analysis()

        def step():
            jax.block_until_ready(compiled(state, sample, timesteps, text))

        seconds = median_seconds(step, warmup, repeats)
        prediction, records = compiled(state, sample, timesteps, text)
        entry = dict(seconds=seconds, peak_bytes_in_use=jax_peak_bytes(),
                     compiled_temp_bytes=None if memory is None else int(memory.temp_size_in_bytes),
                     error_vs_diffusers_fp32=errors(np.asarray(prediction.astype(jnp.float32)), reference))
        if records is not None:
            entropy = np.asarray(records.entropy)
            entry.update(recorded_sites=int(entropy.shape[0]), fields=list(records._fields),
                         entropy_min=float(entropy.min()), entropy_max=float(entropy.max()),
                         energy_ratio_finite=bool(np.isfinite(np.asarray(records.energy_ratio)).all()))
            assert entropy.shape[0] == len(self_sites)
        out[label] = entry
        del compiled, state
    return out


def parity_fp32(folder: str) -> dict:
    """Ours in fp32 on the inputs saved in ``folder`` vs diffusers' fp32 output there.

    Runs in its own process (see ``main``). Matmul precision "highest" (no TF32, like the reference) is
    tried first; if XLA cannot fit that program on the device, "high" (3-pass bf16, about fp32 accuracy)
    is used instead, and the result says which one ran.
    """
    from ieadapt_jax.convert.animatediff import load_unet_motion

    from ieadapt_jax.core import make_forward

    saved = np.load(os.path.join(folder, "parity_inputs.npz"))
    model = load_unet_motion(os.path.join(folder, "unet"), os.path.join(folder, "adapter"), dtype=jnp.float32, cache=False)
    forward, state = make_forward(model)
    args = (state, jnp.asarray(saved["sample"]), jnp.asarray(saved["timesteps"]), jnp.asarray(saved["text"]))
    failures = {}
    for precision in ("highest", "high"):
        try:
            with jax.default_matmul_precision(precision):
                compiled = forward.lower(*args).compile()
                prediction = np.asarray(compiled(*args)[0])
        except jax.errors.JaxRuntimeError as e:
            failures[precision] = str(e).splitlines()[0][:300]
            continue
        memory = compiled.memory_analysis()
        result = errors(prediction, saved["reference"])
        result.update(matmul_precision=precision, failed_precisions=failures,
                      compiled_temp_bytes=None if memory is None else int(memory.temp_size_in_bytes))
        return result
    raise RuntimeError(f"fp32 parity did not fit the device at any precision: {failures}")


def run_parity_fp32_process(folder: str, inputs, reference: np.ndarray) -> dict:
    """Save inputs and reference, run :func:`parity_fp32` in a fresh process, return its errors."""
    sample, timesteps, text = inputs
    np.savez(os.path.join(folder, "parity_inputs.npz"), sample=sample, timesteps=timesteps, text=text, reference=reference)
    result_path = os.path.join(folder, "parity_fp32.json")
    # fp32 without TF32: XLA's conv autotuner picks algorithms whose workspaces need ~56 GiB on an H100,
    # more than JAX's default 75% memory fraction; this process is the device's only JAX user.
    env = dict(os.environ, XLA_PYTHON_CLIENT_MEM_FRACTION="0.95")
    command = [sys.executable, os.path.abspath(__file__), "--parity-fp32-in", folder, "--out", result_path]
    subprocess.run(command, check=True, env=env)
    with open(result_path) as fh:
        return json.load(fh)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="where to write the JSON results")
    parser.add_argument("--tiny", action="store_true", help="tiny fixture on any platform (a smoke test)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", help="keep the saved checkpoints in this folder instead of a temporary one")
    parser.add_argument("--parity-fp32-in", help=argparse.SUPPRESS)  # internal: the fp32 parity process
    args = parser.parse_args(argv)
    if args.parity_fp32_in:
        result = parity_fp32(args.parity_fp32_in)
        write_json(args.out, result)
        return result

    import diffusers
    import flax
    import torch

    spec = TINY if args.tiny else FULL
    device = "cuda" if torch.cuda.is_available() else "cpu"
    folder = args.keep or tempfile.mkdtemp(prefix="unet_gpu_")
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    b, f, s = spec["batch"], spec["frames"], spec["size"]
    inputs = (rng.standard_normal((b, f, s, s, 4)).astype(np.float32),  # ours: [B, F, H, W, C]
              np.asarray([999, 500][:b], np.int64),
              rng.standard_normal((b,) + spec["text"]).astype(np.float32))
    try:
        start = time.perf_counter()
        unet, adapter = save_diffusers_models(spec, folder, args.seed)
        build_seconds = time.perf_counter() - start
        diffusers_result, reference = run_diffusers(unet, adapter, inputs, device, args.warmup, args.repeats)
        del unet, adapter
        gc.collect()
        parity = run_parity_fp32_process(folder, inputs, reference)
        ours = run_ours(folder, inputs, reference, args.warmup, args.repeats)
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)

    plain, recording = ours["plain_bf16"], ours["record_self_bf16"]
    result = dict(
        benchmark="AnimateDiff UNetMotionModel forward (SD1.5 + MotionAdapter v1-5-3, random weights)"
        + (" [tiny smoke test]" if args.tiny else ""),
        date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        command=" ".join([os.path.basename(sys.executable)] + sys.argv),
        device=dict(jax=str(jax.devices()[0].device_kind), jax_platform=jax.default_backend(),
                    torch=torch.cuda.get_device_name() if device == "cuda" else platform.processor() or "cpu"),
        versions=dict(python=platform.python_version(), jax=jax.__version__, flax=flax.__version__,
                      torch=torch.__version__, diffusers=diffusers.__version__, numpy=np.__version__),
        shapes=dict(batch=b, frames=f, latent=[s, s], text=list(spec["text"])),
        setup_seconds=dict(diffusers_build_and_save=build_seconds, ours_load_bf16=ours["load_seconds_bf16"]),
        diffusers=diffusers_result,
        ours=dict(plain_bf16=plain, record_self_bf16=recording),
        parity=dict(fp32=parity, bf16=plain["error_vs_diffusers_fp32"],
                    diffusers_fp16=diffusers_result["error_vs_fp32"]),
        ratios=dict(plain_vs_diffusers=plain["seconds"] / diffusers_result["seconds"],
                    record_vs_plain=recording["seconds"] / plain["seconds"]),
        targets=TARGETS,
    )
    write_json(args.out, result)
    print(json.dumps(dict(parity=result["parity"], ratios=result["ratios"],
                          diffusers_s=diffusers_result["seconds"], ours_s=plain["seconds"],
                          record_s=recording["seconds"], record_peak=recording["peak_bytes_in_use"]), indent=2))
    return result


if __name__ == "__main__":
    main()
