"""Where the time of one full-size AnimateDiff UNet forward goes on this GPU (a profile, not a benchmark).

    python benchmarks/probes/unet_profile.py --out /tmp/unet_profile.json [--backend auto cudnn]

SD1.5 UNet + MotionAdapter v1-5-3 (``--tiny``: unet_gpu's tiny model) with random bf16 weights (drawn on the
host: no diffusers needed), batch 2 (CFG) x 16 frames x 64x64 latents, the plain forward. For each attention backend named, the compiled forward
is timed (median of 5 after 2 warm-ups) and one call is traced with ``jax.profiler``; the device's kernel time
is summed per HLO instruction, and each instruction is mapped through the compiled HLO's metadata to the
Python line that emitted it (``models/...py:N``) and to a coarse kind (convolution, matmul, attention, other
fusion). Printed and written as JSON: totals per kind, the 40 most expensive source lines, the 40 most
expensive instructions.
"""
from __future__ import annotations

import argparse
import collections
import glob
import os
import re
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from common import median_seconds, write_json  # noqa: E402
from ieadapt_jax.models import UNetMotionConfig, UNetMotionModel  # noqa: E402
from unet_gpu import FULL, TINY  # noqa: E402

from ieadapt_jax.core import make_forward
from ieadapt_jax.tiny import random_init  # noqa: E402

_INSTRUCTION = re.compile(r"^\s*(?:ROOT\s+)?%?([\w.\-]+)\s*=.*?metadata=\{([^}]*)\}")
_FIELD = re.compile(r'(\w+)=(?:"([^"]*)"|(\S+))')
_TABLES = ("FileNames", "FunctionNames", "FileLocations", "StackFrames")


def _fields(text: str) -> dict[str, str]:
    return {k: a or b for k, a, b in _FIELD.findall(text)}


def hlo_metadata(hlo_text: str) -> dict[str, dict]:
    """Instruction name -> op_name, custom_call_target and ``where``: the innermost repository frames
    (``file:line function``, innermost first) of the Python stack that emitted it, from the module's
    FileNames / FunctionNames / FileLocations / StackFrames tables."""
    tables = {t: {} for t in _TABLES}
    table = None
    out = {}
    for line in hlo_text.splitlines():
        stripped = line.strip()
        if stripped in _TABLES:
            table = stripped
            continue
        if table and re.match(r"^\d+ ", stripped):
            key, rest = stripped.split(" ", 1)
            tables[table][key] = rest.strip('"') if table in ("FileNames", "FunctionNames") else _fields(rest)
            continue
        if stripped == "":
            table = None
        m = _INSTRUCTION.match(line)
        if m:
            out[m.group(1)] = dict(_fields(m.group(2)))
            target = re.search(r'custom_call_target="([^"]+)"', line)
            out[m.group(1)]["custom_call_target"] = target.group(1) if target else ""

    def where(frame_id: str | None) -> list[str]:
        seen, frames = set(), []
        while frame_id and frame_id not in seen and frame_id in tables["StackFrames"]:
            seen.add(frame_id)
            frame = tables["StackFrames"][frame_id]
            loc = tables["FileLocations"].get(frame.get("file_location_id", ""), {})
            path = tables["FileNames"].get(loc.get("file_name_id", ""), "?")
            if any(part in path for part in ("/models/", "/ieadapt_jax/")):
                short = path[path.rfind("/models/") + 1:] if "/models/" in path else path[path.rfind("/ieadapt_jax/") + 1:]
                frames.append(f"{short}:{loc.get('line', '?')} {tables['FunctionNames'].get(loc.get('function_name_id', ''), '?')}")
            frame_id = frame.get("parent_frame_id")
        return frames[:3]

    for meta in out.values():
        meta["where"] = where(meta.get("stack_frame_id"))
    return out


def kind_of(name: str, meta: dict) -> str:
    """A coarse kind of one kernel, from its instruction name, custom-call target and op_name."""
    target = meta.get("custom_call_target", "")
    op = meta.get("op_name", "")
    # library kernels appear under their own names: cuDNN's flash attention ("..._sdpa_..._flash_...") and
    # cuBLAS's GEMMs ("nvjet_...", "sm90_xmma_gemm_...", "cutlass_...")
    if "fmha" in target or "fmha" in name or "sdpa" in name or "dot_product_attention" in op:
        return "attention (cuDNN)"
    if "conv" in target or "cudnn-conv" in name or "convolution" in name:  # not "convert"
        return "convolution"
    if any(tag in name for tag in ("gemm", "dot", "nvjet", "cutlass")) or "gemm" in target or "cublas" in target:
        return "matmul"
    if "transpose" in name or "copy" in name:
        return "transpose/copy"
    if "reduce" in name or "norm" in op:
        return "reduction/norm fusion"
    return "other fusion"


def random_model_and_inputs(spec: dict, dtype=jnp.bfloat16) -> tuple[UNetMotionModel, tuple]:
    """The UNet of ``spec`` (unet_gpu's FULL or TINY) with random weights (seed 0) and random forward inputs
    (sample [B, F, s, s, C], timesteps [B] at 500, text [B, L, D]) in ``dtype``."""
    cfg = UNetMotionConfig.from_unet2d(spec["unet"], spec["adapter"])
    model = random_init(UNetMotionModel.abstract(cfg, dtype=dtype), 0)
    rng = np.random.default_rng(0)
    b, f, s = spec["batch"], spec["frames"], spec["size"]
    sample = jnp.asarray(rng.standard_normal((b, f, s, s, cfg.in_channels)), dtype)
    timesteps = jnp.full((b,), 500, jnp.int32)
    text = jnp.asarray(rng.standard_normal((b, *spec["text"])), dtype)
    return model, (sample, timesteps, text)


def profile(model: UNetMotionModel, inputs: tuple, backend: str, warmup: int, repeats: int) -> dict:
    """Time and trace the compiled plain forward of ``model`` on ``inputs`` (:func:`random_model_and_inputs`)
    with one attention backend."""
    forward, state = make_forward(model, backend=backend)
    sample, timesteps, text = inputs
    start = time.perf_counter()
    compiled = forward.lower(state, sample, timesteps, text).compile()
    compile_s = time.perf_counter() - start
    meta = hlo_metadata(compiled.as_text())
    # kernel names spell the instruction's dots as underscores ("loop_fusion_12" for "loop_fusion.12")
    meta.update({name.replace(".", "_"): m for name, m in list(meta.items())})

    def step():
        jax.block_until_ready(compiled(state, sample, timesteps, text))

    seconds = median_seconds(step, warmup, repeats)
    folder = tempfile.mkdtemp()
    jax.profiler.start_trace(folder)
    step()
    jax.profiler.stop_trace()
    path = glob.glob(os.path.join(folder, "**", "*.xplane.pb"), recursive=True)[0]
    data = jax.profiler.ProfileData.from_file(path)
    per_op = collections.Counter()
    calls = collections.Counter()
    lines_seen = []
    stat_samples = []
    for plane in data.planes:
        if not plane.name.startswith(("/device:GPU", "/host:CPU")):
            continue
        has_ops_line = any(line.name == "XLA Ops" for line in plane.lines)
        for line in plane.lines:
            lines_seen.append(f"{plane.name}:{line.name}")
            # GPU kernels: the device plane's "XLA Ops" line, or its stream lines where there is none (jax 0.11);
            # CPU thunks: the XLA thread pools' lines
            gpu_line = line.name == "XLA Ops" if has_ops_line else line.name.startswith("Stream")
            on_gpu = plane.name.startswith("/device:GPU") and gpu_line
            if not on_gpu and not (plane.name == "/host:CPU" and line.name.startswith("tf_XLA")):
                continue
            for event in line.events:
                stats = dict(event.stats)
                if len(stat_samples) < 3:
                    stat_samples.append({"event": event.name, **{k: str(v) for k, v in stats.items()}})  # stats may hold a 'name'
                # kernels inside a CUDA graph carry hlo_op "command_buffer_N"; their own names are the
                # fusions' instruction names, which the HLO metadata knows
                hlo_op = str(stats.get("hlo_op", event.name))
                name = event.name if hlo_op.startswith("command_buffer") or event.name in meta else hlo_op
                per_op[name] += event.duration_ns
                calls[name] += 1
    total_ns = sum(per_op.values())
    by_kind = collections.Counter()
    by_line = collections.Counter()
    for name, ns in per_op.items():
        m = meta.get(name, {})
        by_kind[kind_of(name, m)] += ns
        by_line[" <- ".join(m.get("where", [])[:2]) or "?"] += ns
    top_ops = [dict(op=n, ms=ns / 1e6, calls=calls[n], kind=kind_of(n, meta.get(n, {})),
                    op_name=meta.get(n, {}).get("op_name", "")[-160:],
                    where=meta.get(n, {}).get("where", []))
               for n, ns in per_op.most_common(40)]
    return dict(
        backend=backend, seconds=seconds, compile_seconds=compile_s,
        kernel_ms_total=total_ns / 1e6, kernels=sum(calls.values()),
        by_kind_ms={k: v / 1e6 for k, v in by_kind.most_common()},
        by_source_line_ms={k: v / 1e6 for k, v in by_line.most_common(40)},
        top_ops=top_ops, profiler_lines=sorted(set(lines_seen))[:20], event_stat_samples=stat_samples,
    )


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--backend", nargs="+", default=["auto"])
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--tiny", action="store_true", help="unet_gpu's tiny model (a smoke test on any platform)")
    args = parser.parse_args(argv)
    result = dict(device=jax.devices()[0].device_kind, jax=jax.__version__, xla_flags=os.environ.get("XLA_FLAGS", ""),
                  profiles=[])
    model, inputs = random_model_and_inputs(TINY if args.tiny else FULL)
    for backend in args.backend:
        entry = profile(model, inputs, backend, args.warmup, args.repeats)
        result["profiles"].append(entry)
        print("event stats:", entry["event_stat_samples"], flush=True)
        print(f"== backend {backend}: {entry['seconds'] * 1e3:.1f} ms per forward, kernels {entry['kernel_ms_total']:.1f} ms "
              f"({entry['kernels']} launches), compile {entry['compile_seconds']:.0f} s", flush=True)
        for k, v in entry["by_kind_ms"].items():
            print(f"   {k:28s} {v:8.2f} ms")
        for k, v in list(entry["by_source_line_ms"].items())[:25]:
            print(f"   {v:8.2f} ms  {k}")
        write_json(args.out, result)
    return result


if __name__ == "__main__":
    main()
