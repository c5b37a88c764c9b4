"""Compiled temporary memory of the chunked attention backend and the fp32 UNet forward on this device.

    python benchmarks/probes/chunked_memory.py

Prints the XLA flags in force and, for the AnimateDiff spatial shape in fp32, the temp bytes of the
chunked backend (plain and recording) and of a full-size fp32 UNet forward (abstract weights, compile only)
at the matmul precision named by PROBE_PRECISION (default, high, highest).
"""
import os
import sys
import time

import jax
import jax.numpy as jnp

from ieadapt_jax import attend

print("XLA_FLAGS", os.environ.get("XLA_FLAGS", ""), jax.devices(), flush=True)
spec = jax.ShapeDtypeStruct((32, 4096, 8, 40), jnp.float32)
for record in (False, True):
    fn = jax.jit(lambda q, k, v: attend(q, k, v, record=record, rows=2, backend="chunked"))
    ma = fn.lower(spec, spec, spec).compile().memory_analysis()
    print(f"chunked fp32 record={record}: temp {ma.temp_size_in_bytes / 2**30:.2f} GiB", flush=True)

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from ieadapt_jax.models import UNetMotionConfig, UNetMotionModel  # noqa: E402
from unet_gpu import ADAPTER_V153, SD15_UNET  # noqa: E402

from ieadapt_jax.core import make_forward

cfg = UNetMotionConfig.from_unet2d(SD15_UNET, ADAPTER_V153)
precision = os.environ.get("PROBE_PRECISION", "default")
with jax.default_matmul_precision(None if precision == "default" else precision):
    model = UNetMotionModel.abstract(cfg, dtype=jnp.float32)
    forward, state = make_forward(model)
    s = jax.ShapeDtypeStruct((2, 16, 64, 64, 4), jnp.float32)
    t = jax.ShapeDtypeStruct((2,), jnp.int32)
    e = jax.ShapeDtypeStruct((2, 77, 768), jnp.float32)
    t0 = time.time()
    ma = forward.lower(state, s, t, e).compile().memory_analysis()
    print(f"unet float32, matmul precision {precision}: temp {ma.temp_size_in_bytes / 2**30:.2f} GiB (compile {time.time() - t0:.0f} s)", flush=True)
