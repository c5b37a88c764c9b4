"""CogVideoX-5B transformer on GPU: parity with diffusers and speed/memory of one forward (issue 8, item 5).

Run from the repository root on a GPU machine (add ``--sharded 2`` on a two-GPU machine):

    python benchmarks/cogvideox_gpu.py --out benchmarks/results/cogvideox_gpu.json

What it does:

1. builds the full-size ``CogVideoXTransformer3DModel`` (5B config, reference §1) in diffusers with random
   weights rounded to bf16, ``save_pretrained`` in bf16 (two safetensors shards), so the fp32 reference and
   every run below use exactly the same weight values; our converter loads that folder;
2. diffusers (TF32 off): the fp32 output at batch 2 × 13 latent frames × 60×90 (49 frames of 480×720;
   17 550 video + 226 text tokens), with the pipeline's RoPE tables, then bf16 with SDPA: output, median
   forward time (``torch.cuda.synchronize``) and peak ``max_memory_allocated``;
3. ours in fp32 (matmul precision "highest", chunked attention) in a fresh process: error vs the diffusers
   fp32 output;
4. ours in bf16 (jit, cuDNN attention, ``block_until_ready``, median; peak ``peak_bytes_in_use``) without and
   then with recording entropy + energy at all 42 joint sites; error vs diffusers fp32; each compiled
   executable's temporary memory, checked against the size of one layer's full attention map;
5. with ``--sharded N``: in a fresh process, the bf16 parameters sharded over N devices with
   ``jax.sharding`` (attention q/k/v and the first feed-forward layer column-wise, their output layers
   row-wise, the rest replicated), the same step jitted over the mesh: time, per-device peak and parameter
   bytes, and the difference to the one-device bf16 output.

JAX's peak counter cannot be reset, so the fp32 parity and the sharded run have processes of their own, and
the one-device runs go in increasing memory order (plain, then recording). ``--tiny`` runs a tiny model on
any platform as a smoke test of the script (with ``--sharded 2`` on CPU it fakes two host devices).
"""
from __future__ import annotations

import os

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import argparse  # noqa: E402
import datetime  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import re  # noqa: E402
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

COGVIDEOX_5B = dict(
    num_attention_heads=48, attention_head_dim=64, in_channels=16, out_channels=16, flip_sin_to_cos=True, freq_shift=0,
    time_embed_dim=512, text_embed_dim=4096, num_layers=42, attention_bias=True, sample_width=90, sample_height=60,
    sample_frames=49, patch_size=2, temporal_compression_ratio=4, max_text_seq_length=226,
    activation_fn="gelu-approximate", timestep_activation_fn="silu", norm_elementwise_affine=True, norm_eps=1e-5,
    spatial_interpolation_scale=1.875, temporal_interpolation_scale=1.0, use_rotary_positional_embeddings=True,
)
FULL = dict(config=COGVIDEOX_5B, batch=2, frames=13, latent=(60, 90), text=226)
TINY = dict(
    config=dict(COGVIDEOX_5B, num_attention_heads=2, attention_head_dim=16, in_channels=4, out_channels=4,
                time_embed_dim=8, text_embed_dim=16, num_layers=2, sample_width=8, sample_height=8, max_text_seq_length=8),
    batch=2, frames=3, latent=(8, 6), text=8,
)
# Issue 8 targets (diffusers 0.42.1 on one H100, bf16 SDPA: 1.83 s per forward, 22.3 GB peak).
TARGETS = dict(plain_vs_diffusers=0.9, record_vs_plain=1.5)
# Megatron-style split for --sharded: these kernels column-wise (outputs), these row-wise (inputs).
COLUMN = re.compile(r"(attn1\.to_[qkv]|ff\.net\.0\.proj)\.(kernel|bias)$")
ROW = re.compile(r"(attn1\.to_out\.0|ff\.net\.2)\.kernel$")


def device_peaks(devices) -> list[int | None]:
    """peak_bytes_in_use of each device (None where the platform keeps no statistics)."""
    return [None if d.memory_stats() is None else int(d.memory_stats().get("peak_bytes_in_use", 0)) for d in devices]


def make_inputs(spec: dict, seed: int):
    """(sample [B, F, H, W, C] ours, timesteps [B], text [B, L, D]) float32 / int64."""
    rng = np.random.default_rng(seed)
    cfg, (h, w) = spec["config"], spec["latent"]
    b = spec["batch"]
    return (rng.standard_normal((b, spec["frames"], h, w, cfg["in_channels"])).astype(np.float32),
            np.asarray([999, 500][:b], np.int64),
            rng.standard_normal((b, spec["text"], cfg["text_embed_dim"])).astype(np.float32))


def build_and_save(spec: dict, folder: str, seed: int, device: str):
    """A random diffusers transformer with bf16-representable weights, saved in bf16; returned in fp32 on ``device``."""
    import torch
    from diffusers import CogVideoXTransformer3DModel

    torch.manual_seed(seed)
    with torch.device(device):
        model = CogVideoXTransformer3DModel(**spec["config"]).eval()
    model = model.to(torch.bfloat16)
    model.save_pretrained(os.path.join(folder, "transformer"))
    return model.to(torch.float32)


def rotary(spec: dict, device: str):
    """The RoPE tables as diffusers' CogVideoXPipeline computes them for this latent grid."""
    from diffusers.models.embeddings import get_3d_rotary_pos_embed
    from diffusers.pipelines.cogvideo.pipeline_cogvideox import (
        get_resize_crop_region_for_grid,
    )

    cfg, p = spec["config"], spec["config"]["patch_size"]
    grid = (spec["latent"][0] // p, spec["latent"][1] // p)
    crops = get_resize_crop_region_for_grid(grid, cfg["sample_width"] // p, cfg["sample_height"] // p)
    return get_3d_rotary_pos_embed(cfg["attention_head_dim"], crops, grid, spec["frames"], device=device)


def run_diffusers(model, spec: dict, inputs, device: str, warmup: int, repeats: int) -> tuple[dict, np.ndarray]:
    """diffusers: fp32 reference output (TF32 off), then bf16 (SDPA) output, timing and peak memory."""
    import torch

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    sample, timesteps, text = inputs
    # diffusers layout: [B, F, C, H, W]
    t_sample = torch.from_numpy(sample.transpose(0, 1, 4, 2, 3).copy()).to(device)
    t_steps = torch.from_numpy(timesteps).to(device)
    t_text = torch.from_numpy(text).to(device)
    rope = rotary(spec, device)

    def forward(dtype):
        return model(t_sample.to(dtype), t_text.to(dtype), t_steps, image_rotary_emb=rope).sample

    with torch.no_grad():
        start = time.perf_counter()
        reference = forward(torch.float32).float().cpu().numpy().transpose(0, 1, 3, 4, 2)  # [B, F, H, W, C]
        fp32_seconds = time.perf_counter() - start
        model.to(torch.bfloat16)
        half = forward(torch.bfloat16).float().cpu().numpy().transpose(0, 1, 3, 4, 2)

        def step():
            forward(torch.bfloat16)
            if device == "cuda":
                torch.cuda.synchronize()

        if device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        seconds = median_seconds(step, warmup, repeats)
        peak = int(torch.cuda.max_memory_allocated()) if device == "cuda" else None
    result = dict(dtype="bfloat16", attention="SDPA (CogVideoXAttnProcessor2_0)", seconds=seconds, peak_bytes=peak,
                  fp32_forward_seconds=fp32_seconds, error_vs_fp32=errors(half, reference))
    return result, reference


def load_ours(folder: str, dtype):
    from ieadapt_jax.convert.cogvideox import load_cogvideox_transformer

    return load_cogvideox_transformer(os.path.join(folder, "transformer"), dtype=dtype, cache=False)


def saved_inputs(folder: str):
    saved = np.load(os.path.join(folder, "inputs.npz"))
    return saved, (jnp.asarray(saved["sample"]), jnp.asarray(saved["timesteps"]), jnp.asarray(saved["text"]))


def parity_fp32(folder: str) -> dict:
    """Ours in fp32 on the saved inputs vs diffusers' fp32 output (its own process; see ``main``).

    Matmul precision "highest" (no TF32, like the reference) first; if XLA cannot fit that program,
    "high" (3-pass bf16, about fp32 accuracy) instead, and the result says which one ran.
    """
    from ieadapt_jax.core import make_forward

    saved, inputs = saved_inputs(folder)
    forward, state = make_forward(load_ours(folder, jnp.float32))
    failures = {}
    for precision in ("highest", "high"):
        try:
            with jax.default_matmul_precision(precision):
                compiled = forward.lower(state, *inputs).compile()
                prediction = np.asarray(compiled(state, *inputs)[0])
        except jax.errors.JaxRuntimeError as e:
            failures[precision] = str(e).splitlines()[0][:300]
            continue
        memory = compiled.memory_analysis()
        result = errors(prediction, saved["reference"])
        result.update(matmul_precision=precision, failed_precisions=failures,
                      compiled_temp_bytes=None if memory is None else int(memory.temp_size_in_bytes))
        return result
    raise RuntimeError(f"fp32 parity did not fit the device at any precision: {failures}")


def run_ours(folder: str, spec: dict, reference: np.ndarray, warmup: int, repeats: int) -> dict:
    """Ours in bf16: plain, then recording entropy + energy at every joint site, in that order (honest peaks)."""
    from ieadapt_jax.core import make_forward

    _, inputs = saved_inputs(folder)
    start = time.perf_counter()
    model = load_ours(folder, jnp.bfloat16)
    out = dict(load_seconds=time.perf_counter() - start)
    cfg = spec["config"]
    tokens = spec["text"] + spec["frames"] * (spec["latent"][0] // cfg["patch_size"]) * (spec["latent"][1] // cfg["patch_size"])
    map_bytes_bf16 = spec["batch"] * cfg["num_attention_heads"] * tokens * tokens * 2
    out["one_layer_map_bytes_bf16"] = map_bytes_bf16
    for label, record in (("plain_bf16", False), ("record_joint_bf16", "joint")):
        forward, state = make_forward(model, record=record)
        start = time.perf_counter()
        compiled = forward.lower(state, *inputs).compile()
        compile_seconds = time.perf_counter() - start
        memory = compiled.memory_analysis()

        def step():
            jax.block_until_ready(compiled(state, *inputs))

        seconds = median_seconds(step, warmup, repeats)
        prediction, records = compiled(state, *inputs)
        prediction = np.asarray(prediction.astype(jnp.float32))
        temp = None if memory is None else int(memory.temp_size_in_bytes)
        entry = dict(seconds=seconds, compile_seconds=compile_seconds, peak_bytes_in_use=device_peaks(jax.devices()[:1])[0],
                     compiled_temp_bytes=temp, no_full_map=None if temp is None else temp < map_bytes_bf16,
                     error_vs_diffusers_fp32=errors(prediction, reference))
        if records is None:
            np.save(os.path.join(folder, "ours_bf16.npy"), prediction)
        else:
            entropy = np.asarray(records.entropy)
            entry.update(recorded_sites=int(entropy.shape[0]), fields=list(records._fields),
                         entropy_min=float(entropy.min()), entropy_max=float(entropy.max()),
                         energy_ratio_finite=bool(np.isfinite(np.asarray(records.energy_ratio)).all()))
            assert entropy.shape[0] == cfg["num_layers"]
        out[label] = entry
    return out


def shard_state(state, mesh):
    """The model state with COLUMN kernels/biases split on their output axis, ROW kernels on their input axis."""
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    def sharding(path, x):
        name = ".".join(str(k.key) for k in path if hasattr(k, "key"))
        if COLUMN.search(name):
            spec = P(None, "model") if x.ndim == 2 else P("model")
        elif ROW.search(name):
            spec = P("model", None)
        else:
            spec = P()
        return NamedSharding(mesh, spec)

    return jax.device_put(state, jax.tree_util.tree_map_with_path(sharding, state))


def run_sharded(folder: str, count: int, warmup: int, repeats: int) -> dict:
    """The bf16 forward with parameters sharded over ``count`` devices (its own process; see ``main``)."""
    from jax.sharding import Mesh

    from ieadapt_jax.core import make_forward

    devices = jax.devices()[:count]
    if len(devices) < count:
        raise RuntimeError(f"--sharded {count} needs {count} devices, this process sees {len(jax.devices())}")
    _, inputs = saved_inputs(folder)
    with jax.default_device(jax.local_devices(backend="cpu")[0]):  # whole parameters only on the host
        model = load_ours(folder, jnp.bfloat16)
    _, host_state = make_forward(model)
    state = shard_state(host_state, Mesh(np.asarray(devices), ("model",)))
    del host_state
    gc.collect()
    per_device = [0] * count
    for leaf in jax.tree_util.tree_leaves(state):
        for shard in leaf.addressable_shards:
            per_device[devices.index(shard.device)] += shard.data.nbytes
    failures = {}
    for backend in ("auto", "chunked"):  # auto is cuDNN on GPU; chunked if cuDNN's kernel cannot be partitioned
        forward, _ = make_forward(model, backend=backend)
        start = time.perf_counter()
        try:
            compiled = forward.lower(state, *inputs).compile()
        except (jax.errors.JaxRuntimeError, NotImplementedError, ValueError) as e:
            failures[backend] = f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"
            continue
        break
    else:
        raise RuntimeError(f"the sharded forward did not compile with any attention backend: {failures}")
    compile_seconds = time.perf_counter() - start
    memory = compiled.memory_analysis()

    def step():
        jax.block_until_ready(compiled(state, *inputs))

    seconds = median_seconds(step, warmup, repeats)
    prediction = np.asarray(compiled(state, *inputs)[0].astype(jnp.float32))
    single = np.load(os.path.join(folder, "ours_bf16.npy"))
    total = sum(leaf.nbytes for leaf in jax.tree_util.tree_leaves(state))
    return dict(devices=[str(d) for d in devices], attention_backend=backend, failed_backends=failures,
                seconds=seconds, compile_seconds=compile_seconds,
                compiled_temp_bytes_per_device=None if memory is None else int(memory.temp_size_in_bytes),
                param_bytes_per_device=per_device, param_bytes_total=int(total),
                peak_bytes_in_use_per_device=device_peaks(devices), error_vs_one_device_bf16=errors(prediction, single))


def run_subprocess(flag: str, folder: str, args, env: dict) -> dict:
    """Run this script with an internal ``flag`` in a fresh process; return the JSON it writes."""
    result_path = os.path.join(folder, f"{flag.strip('-')}.json")
    command = [sys.executable, os.path.abspath(__file__), flag, folder, "--out", result_path,
               "--warmup", str(args.warmup), "--repeats", str(args.repeats), "--sharded", str(args.sharded)]
    subprocess.run(command, check=True, env=dict(os.environ, **env))
    with open(result_path) as fh:
        return json.load(fh)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="where to write the JSON results")
    parser.add_argument("--tiny", action="store_true", help="tiny model on any platform (a smoke test)")
    parser.add_argument("--sharded", type=int, default=0, help="also run with parameters sharded over this many devices")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", help="keep the saved checkpoint in this folder instead of a temporary one")
    parser.add_argument("--parity-fp32-in", help=argparse.SUPPRESS)  # internal: the fp32 parity process
    parser.add_argument("--sharded-in", help=argparse.SUPPRESS)  # internal: the sharded process
    args = parser.parse_args(argv)
    if args.parity_fp32_in or args.sharded_in:
        if args.parity_fp32_in:
            result = parity_fp32(args.parity_fp32_in)
        else:
            result = run_sharded(args.sharded_in, args.sharded, args.warmup, args.repeats)
        write_json(args.out, result)
        return result

    import diffusers
    import flax
    import torch

    spec = TINY if args.tiny else FULL
    device = "cuda" if torch.cuda.is_available() else "cpu"
    folder = args.keep or tempfile.mkdtemp(prefix="cogvideox_gpu_")
    os.makedirs(folder, exist_ok=True)
    inputs = make_inputs(spec, args.seed)
    try:
        start = time.perf_counter()
        model = build_and_save(spec, folder, args.seed, device)
        build_seconds = time.perf_counter() - start
        diffusers_result, reference = run_diffusers(model, spec, inputs, device, args.warmup, args.repeats)
        del model
        gc.collect()
        if device == "cuda":
            torch.cuda.empty_cache()
        sample, timesteps, text = inputs
        np.savez(os.path.join(folder, "inputs.npz"), sample=sample, timesteps=timesteps, text=text, reference=reference)
        # fp32 without TF32 needs more than JAX's default 75% of the device; that process is its only JAX user.
        parity = run_subprocess("--parity-fp32-in", folder, args, {"XLA_PYTHON_CLIENT_MEM_FRACTION": "0.95"})
        ours = run_ours(folder, spec, reference, args.warmup, args.repeats)
        sharded = None
        if args.sharded:
            env = {"XLA_PYTHON_CLIENT_MEM_FRACTION": "0.95"}
            if jax.default_backend() == "cpu":
                env["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={args.sharded}"
            sharded = run_subprocess("--sharded-in", folder, args, env)
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)

    plain, recording = ours["plain_bf16"], ours["record_joint_bf16"]
    b, f, (h, w) = spec["batch"], spec["frames"], spec["latent"]
    result = dict(
        benchmark="CogVideoX-5B CogVideoXTransformer3DModel forward (random weights)" + (" [tiny smoke test]" if args.tiny else ""),
        date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        command=" ".join([os.path.basename(sys.executable)] + sys.argv),
        device=dict(jax=str(jax.devices()[0].device_kind), jax_platform=jax.default_backend(), jax_devices=jax.device_count(),
                    torch=torch.cuda.get_device_name() if device == "cuda" else platform.processor() or "cpu"),
        versions=dict(python=platform.python_version(), jax=jax.__version__, flax=flax.__version__,
                      torch=torch.__version__, diffusers=diffusers.__version__, numpy=np.__version__),
        shapes=dict(batch=b, latent_frames=f, latent=[h, w], text=spec["text"], layers=spec["config"]["num_layers"]),
        setup_seconds=dict(diffusers_build_and_save=build_seconds, ours_load_bf16=ours["load_seconds"]),
        diffusers=diffusers_result,
        ours=dict(plain_bf16=plain, record_joint_bf16=recording, one_layer_map_bytes_bf16=ours["one_layer_map_bytes_bf16"]),
        sharded=sharded,
        parity=dict(fp32=parity, bf16=plain["error_vs_diffusers_fp32"], diffusers_bf16=diffusers_result["error_vs_fp32"]),
        ratios=dict(plain_vs_diffusers=plain["seconds"] / diffusers_result["seconds"],
                    record_vs_plain=recording["seconds"] / plain["seconds"]),
        targets=TARGETS,
    )
    write_json(args.out, result)
    summary = dict(parity=result["parity"], ratios=result["ratios"], diffusers_s=diffusers_result["seconds"],
                   diffusers_peak=diffusers_result["peak_bytes"], ours_s=plain["seconds"], ours_peak=plain["peak_bytes_in_use"],
                   record_s=recording["seconds"], record_peak=recording["peak_bytes_in_use"],
                   record_no_full_map=recording["no_full_map"],
                   sharded=None if sharded is None else {k: sharded[k] for k in ("seconds", "param_bytes_per_device",
                                                                                  "peak_bytes_in_use_per_device")})
    print(json.dumps(summary, indent=2))
    return result


if __name__ == "__main__":
    main()
