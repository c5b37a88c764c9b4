"""Perturbation-sweep throughput on GPU (issue 7, deliverable 6): videos per minute at the paper's AnimateDiff setting.

Run from the repository root on a GPU machine:

    python benchmarks/sweep_gpu.py --out benchmarks/results/sweep_gpu.json                  # one card
    python benchmarks/sweep_gpu.py --part multi --out benchmarks/results/sweep_gpu_multi.json  # 2+ cards

Setting (supplementary §7.1): SD1.5 UNet + MotionAdapter v1-5-3 with random full-size weights (built in diffusers,
saved in fp16, loaded by our converter), 16 frames at 512x512, 25 Euler steps, CFG 9.0, seed 42; each video
replaces the attention maps of one self-attention site by I or U in both CFG rows at every step, and is decoded
by the VAE. Three ways to generate the same kind of sweep, on the same card (``--part single``):

1. **diffusers**: ``AnimateDiffPipeline`` fp16 (SDPA), the perturbed site's attention processor swapped for one
   that returns I·V or U·V (:class:`PerturbedAttnProcessor`) before each video, one video per pipeline call;
2. **ours, loop**: ``ieadapt_jax.sweep.run_sweep`` (bf16) with one configuration per forward (``chunk=1``);
3. **ours, batched**: ``run_sweep`` with ``--chunk`` configurations vmapped per forward (default 10, which the
   default 80 perturbed videos fill exactly on 1 or 2 devices; ``auto`` sizes it to the free device memory).
   The first run (2026-11-27) used 32 videos in chunks of 10, so 8 of its 40 computed slots were padding;
   ``padded_slots`` now reports that.

Each part compiles its sweeps once per chunk shape (about a minute each at full size on an H100), so run the
parts as separate commands to stay within a 10-minute limit. ``--part multi`` runs the batched sweep on 1 device
and on all local devices with the same per-device chunk and compares throughput and results (every metric and
record of every video). Both runs are in one process, so the second compilation reuses the first one's
autotuning results (XLA caches them per device model and kernel) and picks the same kernels. An earlier
version switched autotuning off instead (``--xla_gpu_autotune_level=0``, leaving cuDNN and cuBLAS on untuned
defaults); neither of its two runs finished within 9 minutes (the cause was not isolated), while this version
takes about 5. ``--part all`` does both. Each phase prints a timestamped line, and the JSON is rewritten after
every phase, so a run cut short still says how far it got.

Ours is timed without compilation: each sweep first runs its baseline chunk (which compiles the chunk
functions, cached for the process), then the timed resume generates, measures and appends every perturbed
video (SSIM/PSNR/temporal metrics on device included; records per ``--record``). diffusers is timed per
video after one warm-up video. Our videos start from the same noise as diffusers' (``jax.random.normal``
of the seed, passed as ``latents``), so the mean absolute difference of the videos of each configuration is
reported as a check that both perturb the same thing. ``--tiny`` runs a tiny random model on any platform
(diffusers in fp32 on CPU) as a smoke test of the script.
"""
from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import datetime  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from common import write_json  # noqa: E402
from pipeline_gpu import FULL as PIPELINE_FULL  # noqa: E402
from pipeline_gpu import TINY_SPEC, build_snapshot, jax_peak_bytes  # noqa: E402

# 4 prompts x 10 sites x (I, U) = 80 perturbed videos: whole chunks of 10 per device on 1 or 2 devices (the last
# chunk of a sweep is padded with repeats, which a short benchmark would otherwise charge to the batched sweep).
FULL = dict(PIPELINE_FULL, sites=10, prompts=4, chunk="10", loop_sites=2, guidance=9.0, seed=42)
# Smaller than pipeline_gpu's tiny model (two UNet levels, one layer each) so the smoke test compiles fast.
TINY = dict(
    TINY_SPEC,
    unet=dict(block_out_channels=(16, 32), down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
              up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), layers_per_block=1, norm_num_groups=8,
              cross_attention_dim=32, attention_head_dim=2, sample_size=8),
    adapter=dict(block_out_channels=(16, 32), motion_layers_per_block=1, motion_num_attention_heads=2,
                 motion_norm_num_groups=8, use_motion_mid_block=False),
    frames=4, size=16, steps=2, sites=2, prompts=2, chunk="auto", loop_sites=2, guidance=9.0, seed=42,
)
PROMPTS = ("a panda playing on a swing set", "a cat wearing sunglasses at a pool",
           "a storm trooper vacuuming the beach", "turtle swimming in ocean")
MODES = ("I", "U")
# Issue 7 targets: batched sweep >= 2x diffusers' videos per minute; 2 GPUs >= 1.8x one GPU.
TARGETS = dict(batched_vs_diffusers=2.0, multi_vs_one=1.8)


class PerturbedAttnProcessor:
    """A diffusers attention processor whose map is replaced: out = i·V + u·mean_k(V) (I: i=1; U: u=1), then the
    output projection, residual and rescale exactly as ``AttnProcessor2_0`` does. Self-attention only."""

    def __init__(self, identity: float, uniform: float):
        self.identity, self.uniform = identity, uniform

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, *args, **kwargs):
        if encoder_hidden_states is not None:
            raise ValueError("PerturbedAttnProcessor replaces self-attention maps only")
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            batch, channel, height, width = hidden_states.shape
            hidden_states = hidden_states.view(batch, channel, height * width).transpose(1, 2)  # [B, HW, C]
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        value = attn.to_v(hidden_states)  # [B, N, heads * head_dim]: A = I gives V, A = U the mean over keys
        out = self.identity * value + self.uniform * value.mean(dim=1, keepdim=True)
        out = attn.to_out[1](attn.to_out[0](out))
        if input_ndim == 4:
            out = out.transpose(-1, -2).reshape(batch, channel, height, width)
        if attn.residual_connection:
            out = out + residual
        return out / attn.rescale_output_factor


def pick_sites(table, count: int) -> list[str]:
    """``count`` self-attention sites spread evenly over the network: half spatial, half temporal, first and last
    of each kind included, in forward order of kind (spatial first)."""

    def spread(pool: list[int], n: int) -> list[int]:
        return [pool[i] for i in dict.fromkeys(np.linspace(0, len(pool) - 1, n).round().astype(int))] if n else []

    spatial = spread(table.select(kind="spatial_self"), count - count // 2)
    temporal = spread(table.select(kind="temporal"), count // 2)
    return [table[s].name for s in spatial + temporal]


def definition(spec: dict, prompts_file: str, site_names: list[str], prompts: int, record: str):
    """The sweep of ``prompts`` prompts x the given sites x (I, U) at the benchmark's setting."""
    from ieadapt_jax.sweep import SweepDefinition, load_prompts

    return SweepDefinition(
        prompts=load_prompts(prompts_file, prompts), seeds=(spec["seed"],), targets=tuple(f"site:{n}" for n in site_names),
        modes=MODES, num_frames=spec["frames"], height=spec["size"], width=spec["size"],
        num_inference_steps=spec["steps"], guidance_scale=spec["guidance"], scheduler="euler", record=record)


def timed_sweep(components, sweep_definition, out: str, *, chunk, devices: int | None, metrics, backend: str) -> dict:
    """Run the baseline chunk (compiles), then time the resume that generates every perturbed video."""
    from ieadapt_jax.sweep import run_sweep

    options = dict(devices=devices, metrics=metrics, backend=backend, progress=False, log=print)
    start = time.perf_counter()
    warm = run_sweep(components, sweep_definition, out, chunk=chunk, stop_after=1, **options)
    first_chunk = time.perf_counter() - start
    start = time.perf_counter()
    result = run_sweep(components, sweep_definition, out, chunk=warm.chunk, **options)
    seconds = time.perf_counter() - start
    per_chunk = result.chunk * result.devices
    padded = -(-result.done_now // per_chunk) * per_chunk - result.done_now  # repeats filling the last chunk
    return dict(videos=result.done_now, seconds=seconds, videos_per_minute=60.0 * result.done_now / seconds,
                chunk_per_device=result.chunk, devices=result.devices, padded_slots=padded,
                first_chunk_seconds_with_compile=first_chunk, peak_bytes_in_use=jax_peak_bytes())


def run_diffusers(pipe, spec: dict, site_names: list[str], prompt: str, noise: np.ndarray, device: str) -> dict:
    """One video per configuration (baseline, then each site x mode) with the site's processor swapped."""
    import diffusers
    import torch
    from diffusers.models.attention_processor import AttnProcessor2_0

    from ieadapt_jax.sweep.engine import thumbnail

    dtype = torch.float16 if device == "cuda" else torch.float32
    pipe.scheduler = diffusers.EulerDiscreteScheduler.from_config(pipe.scheduler.config)
    pipe = pipe.to(device, dtype)
    pipe.set_progress_bar_config(disable=True)
    latents = torch.from_numpy(noise.transpose(3, 0, 1, 2)[None].copy()).to(device, dtype)  # [1, C, F, h, w]
    processors = list(pipe.unet.attn_processors)
    configs = [("baseline", "A")] + [(name, mode) for name in site_names for mode in MODES]
    times, videos = [], {}
    for target, mode in [configs[0]] + configs:  # the first call is a warm-up
        swapped = {k: AttnProcessor2_0() for k in processors}
        if mode != "A":
            swapped[f"{target}.processor"] = PerturbedAttnProcessor(*((1.0, 0.0) if mode == "I" else (0.0, 1.0)))
        pipe.unet.set_attn_processor(swapped)
        start = time.perf_counter()
        with torch.no_grad():
            video = pipe(prompt, num_frames=spec["frames"], height=spec["size"], width=spec["size"],
                         num_inference_steps=spec["steps"], guidance_scale=spec["guidance"], latents=latents,
                         output_type="np").frames[0]
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
        videos[(target, mode)] = thumbnail(np.round(np.asarray(video) * 255).astype(np.uint8))
    peak = int(torch.cuda.max_memory_allocated()) if device == "cuda" else None
    pipe.to("cpu")
    del latents
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()
    per_video = statistics.median(times[1:])
    return dict(dtype=str(dtype).replace("torch.", ""), videos=len(times) - 1, seconds_per_video=per_video,
                all_seconds=times[1:], videos_per_minute=60.0 / per_video, peak_bytes=peak), videos


def video_agreement(out: str, theirs: dict) -> dict:
    """Mean |ours - diffusers| (values in [0, 1]) of the kept videos of prompt 0, per configuration."""
    from ieadapt_jax.sweep.store import read_rows

    gaps = {}
    for row in read_rows(out):
        if row["video"] and row["prompt_index"] == 0:
            key = (row["target"].removeprefix("site:"), row["mode"])
            if key in theirs:
                ours = np.load(os.path.join(out, row["video"])).astype(np.float64)
                gaps[f"{key[0]}/{key[1]}"] = float(np.abs(ours - theirs[key]).mean() / 255.0)
    return gaps


def same_results(out_a: str, out_b: str) -> dict:
    """How many videos have bit-identical metrics and records in two sweep folders, and the largest gap."""
    from ieadapt_jax.sweep.store import read_rows

    a = {r["key"]: r for r in read_rows(out_a)}
    b = {r["key"]: r for r in read_rows(out_b)}
    identical, gap = 0, 0.0
    for key in a:
        values_a = [*a[key]["metrics"].values(), *np.ravel(list(a[key].get("records", {}).values()))]
        values_b = [*b[key]["metrics"].values(), *np.ravel(list(b[key].get("records", {}).values()))]
        fa, fb = np.asarray(values_a, np.float64), np.asarray(values_b, np.float64)
        finite = np.isfinite(fa) & np.isfinite(fb)
        same = bool(np.array_equal(fa, fb, equal_nan=True))
        identical += same
        if finite.any():
            gap = max(gap, float(np.abs(fa[finite] - fb[finite]).max()))
    return dict(videos=len(a), same_keys=a.keys() == b.keys(), bit_identical=identical, max_abs_difference=gap)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="where to write the JSON results")
    parser.add_argument("--part", choices=("single", "multi", "all"), default="single",
                        help="single: diffusers vs ours loop vs ours batched on one card; multi: 1 vs all devices")
    parser.add_argument("--tiny", action="store_true", help="tiny model on any platform (a smoke test)")
    parser.add_argument("--chunk", default=None, help="configurations per device per chunk of the batched sweep "
                        "(default: 10, which the default sweep fills exactly; tiny: auto)")
    parser.add_argument("--backend", choices=("auto", "chunked", "cudnn", "reference"), default="auto",
                        help="our attention backend (auto: cuDNN for bf16 on GPU)")
    parser.add_argument("--record", choices=("none", "self"), default="none",
                        help="record entropy/energy in our sweeps (none: the same work as diffusers')")
    parser.add_argument("--prompts", type=int, help="prompts of the batched sweep (default: 4; tiny: 2)")
    parser.add_argument("--sites", type=int, help="sites of the batched sweep, half spatial, half temporal (default: 10)")
    parser.add_argument("--work", help="keep the snapshot and sweep folders here (default: a temporary folder)")
    args = parser.parse_args(argv)

    import diffusers
    import flax
    import torch

    from ieadapt_jax.loading import load_animatediff

    spec = dict(TINY if args.tiny else FULL)
    args.chunk = args.chunk or spec["chunk"]
    spec.update({k: v for k, v in (("prompts", args.prompts), ("sites", args.sites)) if v is not None})
    if not 1 <= spec["prompts"] <= len(PROMPTS) or spec["sites"] < 2:
        raise SystemExit(f"--prompts must be in 1..{len(PROMPTS)} and --sites at least 2")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    work = args.work or tempfile.mkdtemp(prefix="sweep_gpu_")
    os.makedirs(work, exist_ok=True)
    metrics = ["ssim", "psnr", "temporal_consistency", "flicker", "motion"]
    result = dict(
        benchmark="perturbation sweep throughput, AnimateDiff (SD1.5 + MotionAdapter v1-5-3, random weights), "
        f"{spec['frames']} frames {spec['size']}x{spec['size']}, {spec['steps']} Euler steps, CFG {spec['guidance']}, "
        "one self-attention site per video replaced by I or U, VAE decode included" + (" [tiny smoke test]" if args.tiny else ""),
        date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        command=" ".join([os.path.basename(sys.executable)] + sys.argv),
        device=dict(jax=str(jax.devices()[0].device_kind), jax_platform=jax.default_backend(),
                    jax_devices=len(jax.devices()),
                    torch=torch.cuda.get_device_name() if device == "cuda" else platform.processor() or "cpu"),
        versions=dict(python=platform.python_version(), jax=jax.__version__, flax=flax.__version__,
                      torch=torch.__version__, diffusers=diffusers.__version__, numpy=np.__version__),
        xla_flags=os.environ.get("XLA_FLAGS", ""), backend=args.backend, record=args.record, metrics=metrics, targets=TARGETS,
    )
    t0 = time.perf_counter()

    def phase(done: str) -> None:
        """Print a timestamped progress line and rewrite the JSON with what is measured so far."""
        print(f"[{time.perf_counter() - t0:7.1f} s] {done}", flush=True)
        write_json(args.out, result)

    try:
        snapshot = os.path.join(work, "snapshot")
        start = time.perf_counter()
        pipe = build_snapshot(spec, snapshot, spec["seed"])
        result["build_seconds"] = time.perf_counter() - start
        phase("built the diffusers snapshot")
        prompts_file = os.path.join(work, "prompts.txt")
        with open(prompts_file, "w") as fh:
            fh.write("\n".join(PROMPTS) + "\n")
        dtype = jnp.bfloat16 if jax.default_backend() != "cpu" else jnp.float32
        components = load_animatediff(snapshot, dtype=dtype, cache=False)
        phase("loaded it through our converter")
        table = components.unet.site_table
        names = pick_sites(table, spec["sites"])
        loop_names = [names[0], names[-1]][:spec["loop_sites"]]  # the first spatial and the last temporal site
        big = definition(spec, prompts_file, names, spec["prompts"], args.record)
        small = definition(spec, prompts_file, loop_names, 1, args.record)
        result["sweeps"] = dict(batched=dict(prompts=spec["prompts"], sites=names, modes=MODES),
                                loop_and_diffusers=dict(prompts=1, sites=loop_names, modes=MODES))

        if args.part in ("single", "all"):
            shape = (spec["frames"], *(2 * [spec["size"] // components.vae.config.downscale]), 4)
            noise = np.asarray(jax.random.normal(jax.random.PRNGKey(spec["seed"]), shape, jnp.float32))
            theirs, their_videos = run_diffusers(pipe, spec, loop_names, small.prompts[0], noise, device)
            del pipe
            result["single"] = dict(diffusers=theirs)
            phase(f"diffusers: {theirs['videos_per_minute']:.2f} videos/min")
            loop = timed_sweep(components, small, os.path.join(work, "loop"), chunk=1, devices=1, metrics=metrics,
                               backend=args.backend)
            result["single"]["ours_loop"] = loop
            phase(f"ours, loop: {loop['videos_per_minute']:.2f} videos/min")
            batched = timed_sweep(components, big, os.path.join(work, "batched1"), chunk=args.chunk, devices=1,
                                  metrics=metrics, backend=args.backend)
            gaps = video_agreement(os.path.join(work, "loop"), their_videos)
            result["single"] = dict(
                diffusers=theirs, ours_loop=loop, ours_batched=batched, video_mean_abs_diff_ours_vs_diffusers=gaps,
                ratios=dict(batched_vs_diffusers=batched["videos_per_minute"] / theirs["videos_per_minute"],
                            loop_vs_diffusers=loop["videos_per_minute"] / theirs["videos_per_minute"],
                            batched_vs_loop=batched["videos_per_minute"] / loop["videos_per_minute"]))
            phase(f"ours, batched: {batched['videos_per_minute']:.2f} videos/min")
        if args.part in ("multi", "all"):
            if len(jax.local_devices()) < 2:
                raise SystemExit(f"--part {args.part} needs 2 or more local devices; this machine has "
                                 f"{len(jax.local_devices())}")
            one_out = os.path.join(work, "batched1")
            if "single" not in result:
                one = timed_sweep(components, big, one_out, chunk=args.chunk, devices=1, metrics=metrics,
                                  backend=args.backend)
                result["multi"] = dict(one_device=one)
                phase(f"ours, batched, 1 device: {one['videos_per_minute']:.2f} videos/min")
            else:
                one = result["single"]["ours_batched"]
            many = timed_sweep(components, big, os.path.join(work, "batchedN"), chunk=one["chunk_per_device"],
                               devices=None, metrics=metrics, backend=args.backend)
            result["multi"] = dict(one_device=one, all_devices=many,
                                   ratio=many["videos_per_minute"] / one["videos_per_minute"],
                                   results=same_results(one_out, os.path.join(work, "batchedN")))
        result["site_kinds"] = {n: table[table.index(n)].kind for n in names}
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)

    phase("done")
    print(json.dumps({part: result[part].get("ratios", result[part].get("ratio")) for part in ("single", "multi")
                      if part in result}, indent=2))
    return result


if __name__ == "__main__":
    main()
