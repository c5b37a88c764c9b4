"""Other ways to write the UNet's memory-bound parts, timed on this GPU (a record of what was tried, not a benchmark).

    python benchmarks/probes/unet_variants.py --out R.json --variants base short split f32 tanh
    XLA_FLAGS=--xla_gpu_triton_gemm_any=true python benchmarks/probes/unet_variants.py --out R.json

The full-size AnimateDiff UNet forward (SD1.5 + MotionAdapter v1-5-3, random bf16 weights, batch 2 (CFG) x 16
frames x 64x64, unet_profile's setting) is compiled and timed (median of 7 after 2 warm-ups) once per variant.
A variant swaps one of our functions for another formulation of the same math, for this process only:

- ``short``: the materialising attention backend for key lengths up to 32 (the 16x16 temporal maps) as
  broadcast-multiply-and-sum instead of two einsums, so that XLA needs no transposes around batched dots;
- ``split``: the GEGLU projection as two GEMMs (hidden, gate) instead of one GEMM and a split;
- ``f32``: the GEGLU gate product in float32;
- ``tanh``: the GEGLU with tanh-approximated GELU (diffusers uses the exact erf GELU: not a candidate, it
  shows how much of the gate's time is the erf);
- ``+`` joins variants (``short+split``); ``base`` is the code as it is.

XLA flags are process-wide, so each flag setting is its own run of this script; the runs append to ``--out``
(one entry per run, with its ``XLA_FLAGS``). Each variant reports its largest gap to the first variant of the
run. ``--profile V`` also traces variant V with ``unet_profile.profile``.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.dirname(__file__))
import ieadapt_jax.models.layers as layers  # noqa: E402
import unet_profile  # noqa: E402
from common import median_seconds, write_json  # noqa: E402
from unet_gpu import FULL, TINY  # noqa: E402

import ieadapt_jax.core.attention as attention  # noqa: E402
from ieadapt_jax.core import make_forward  # noqa: E402

ORIGINAL = dict(reference=attention.reference_backend, geglu=layers.GEGLU.__call__)
SHORT_KEYS = 32


def short_reference(q, k, v, bias, causal, scale, want_entropy):
    """``attention.reference_backend`` with the map as [B, Nq, Nk, H] from broadcast products (key lengths <= 32)."""
    if k.shape[1] > SHORT_KEYS:
        return ORIGINAL["reference"](q, k, v, bias, causal, scale, want_entropy)
    f32 = jnp.float32
    logits = jnp.sum(q.astype(f32)[:, :, None] * k.astype(f32)[:, None], axis=-1) * scale  # [B, Nq, Nk, H]
    if bias is not None:
        logits = logits + bias.astype(f32).transpose(0, 2, 3, 1)  # [B|1, Nq|1, Nk|1, H|1]
    if causal:
        nq, nk = logits.shape[1:3]
        visible = (jnp.arange(nk)[None, :] <= jnp.arange(nq)[:, None])[None, :, :, None]
        logits = jnp.where(visible, logits, -jnp.inf)
    p = jax.nn.softmax(logits, axis=2)
    attn = jnp.sum(p[..., None] * v.astype(f32)[:, None], axis=2)  # [B, Nq, H, Dv]
    if not want_entropy:
        return attn, None
    plogp = jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0)
    return attn, attention.normalise_entropy(-jnp.sum(plogp, axis=2), q.shape[1], k.shape[1], causal)


def geglu_split(self, x):
    """GEGLU with the hidden and gate halves of ``proj`` as two GEMMs."""
    kernel, bias = self.proj.kernel[...], self.proj.bias[...]
    n = kernel.shape[1] // 2
    x = x.astype(kernel.dtype)
    return (x @ kernel[:, :n] + bias[:n]) * jax.nn.gelu(x @ kernel[:, n:] + bias[n:], approximate=False)


def geglu_f32(self, x):
    """GEGLU with the gate product in float32."""
    hidden, gate = jnp.split(self.proj(x), 2, axis=-1)
    f32 = jnp.float32
    return (hidden.astype(f32) * jax.nn.gelu(gate.astype(f32), approximate=False)).astype(hidden.dtype)


def geglu_tanh(self, x):
    """GEGLU with tanh-approximated GELU (different numbers from diffusers)."""
    hidden, gate = jnp.split(self.proj(x), 2, axis=-1)
    return hidden * jax.nn.gelu(gate, approximate=True)


VARIANTS = dict(short=("reference", short_reference), split=("geglu", geglu_split), f32=("geglu", geglu_f32),
                tanh=("geglu", geglu_tanh))


def apply(variant: str) -> None:
    """Restore our functions, then swap in the parts of ``variant``."""
    attention.reference_backend = ORIGINAL["reference"]
    layers.GEGLU.__call__ = ORIGINAL["geglu"]
    for part in variant.split("+"):
        if part == "base":
            continue
        if part not in VARIANTS:
            raise SystemExit(f"unknown variant part {part!r}; choose from base, {', '.join(VARIANTS)}")
        slot, fn = VARIANTS[part]
        if slot == "reference":
            attention.reference_backend = fn
        else:
            layers.GEGLU.__call__ = fn


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="JSON file; this run is appended to its runs")
    parser.add_argument("--variants", nargs="+", default=["base"])
    parser.add_argument("--profile", help="also trace this variant with unet_profile")
    parser.add_argument("--tiny", action="store_true", help="unet_gpu's tiny model (a smoke test on any platform)")
    args = parser.parse_args(argv)
    dtype = jnp.bfloat16 if jax.default_backend() == "gpu" else jnp.float32
    model, inputs = unet_profile.random_model_and_inputs(TINY if args.tiny else FULL, dtype)
    sample, timesteps, text = inputs
    run = dict(date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
               command=" ".join([os.path.basename(sys.executable)] + sys.argv),
               xla_flags=os.environ.get("XLA_FLAGS", ""), device=jax.devices()[0].device_kind, jax=jax.__version__,
               variants={})
    if os.path.exists(args.out):
        with open(args.out) as fh:
            result = json.load(fh)
    else:
        result = dict(probe="full-size AnimateDiff UNet forward (batch 2 x 16 frames x 64x64, bf16) under other "
                      "formulations", runs=[])
    result["runs"].append(run)
    first = None
    for variant in args.variants:
        apply(variant)
        forward, state = make_forward(model)
        start = time.perf_counter()
        compiled = forward.lower(state, sample, timesteps, text).compile()
        compile_s = time.perf_counter() - start
        out = np.asarray(compiled(state, sample, timesteps, text)[0].astype(jnp.float32))
        first = out if first is None else first
        seconds = median_seconds(lambda: jax.block_until_ready(compiled(state, sample, timesteps, text)), 2, 7)
        run["variants"][variant] = dict(ms=seconds * 1e3, compile_seconds=compile_s,
                                        max_abs_vs_first=float(np.abs(out - first).max()))
        print(f"{variant:14s} {seconds * 1e3:8.2f} ms  (compile {compile_s:.0f} s, "
              f"max |diff| vs {args.variants[0]} {run['variants'][variant]['max_abs_vs_first']:.3g})", flush=True)
        write_json(args.out, result)
    if args.profile:
        apply(args.profile)
        entry = unet_profile.profile(model, inputs, "auto", 2, 5)
        run["profile"] = dict(variant=args.profile, **entry)
        print(f"profile {args.profile}: {entry['seconds'] * 1e3:.1f} ms, {entry['by_kind_ms']}", flush=True)
        write_json(args.out, result)
    apply("base")
    return result


if __name__ == "__main__":
    main()
