"""cuDNN recording attention under vmap on this GPU: the path a recording sweep takes with stacked configurations.

    python benchmarks/probes/cudnn_vmap.py --out benchmarks/results/cudnn_vmap_gpu.json

For SD1.5's head dims (40, 80) and CogVideoX's (64), vmaps ``attend(backend="cudnn", record=True)`` over 3
configurations of [2, 1024, 4, D] bf16 and compares output and entropy with the chunked backend (fp32 math).
Also reports whether cuDNN took the one-pass recording (values widened to Dv + D channels) for each head dim.
Before ``_cudnn_with_lse`` folded vmapped axes into its batch, JAX's batching rule for the cuDNN primitive
reshaped the widened values with the key's head dim and every such call failed ("cannot reshape array").
"""
import argparse
import datetime
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

from ieadapt_jax import attend
from ieadapt_jax.core import cudnn

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from common import write_json  # noqa: E402


def check(head_dim: int) -> dict:
    """Largest gaps between vmapped cuDNN and chunked recording attention at one head dim."""
    q, k, v = jax.random.normal(jax.random.PRNGKey(head_dim), (3, 3, 2, 1024, 4, head_dim)).astype(jnp.bfloat16)

    def run(backend):
        return jax.jit(jax.vmap(lambda q, k, v: attend(q, k, v, backend=backend, record=True)))(q, k, v)

    (out, rec), (want, want_rec) = run("cudnn"), run("chunked")
    return dict(
        one_pass=cudnn.wide_values_supported(head_dim, 2 * head_dim),
        out_max_abs=float(jnp.abs(out.astype(jnp.float32) - want.astype(jnp.float32)).max()),
        entropy_max_abs=float(jnp.abs(rec.entropy - want_rec.entropy).max()),
        energy_max_rel=float((jnp.abs(rec.energy - want_rec.energy) / jnp.abs(want_rec.energy)).max()),
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    if jax.default_backend() != "gpu":
        raise SystemExit("this probe needs a GPU (cuDNN)")
    results = dict(probe="vmapped cuDNN recording attention vs chunked", device=jax.devices()[0].device_kind,
                   jax=jax.__version__, date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                   command=" ".join([os.path.basename(sys.executable)] + sys.argv), head_dims={})
    for head_dim in (40, 64, 80):
        results["head_dims"][str(head_dim)] = check(head_dim)
        print(head_dim, results["head_dims"][str(head_dim)], flush=True)
    write_json(args.out, results)
    return 0 if all(np.isfinite(list(r.values())).all() for r in results["head_dims"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
