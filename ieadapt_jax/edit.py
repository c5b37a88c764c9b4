"""``python -m ieadapt_jax.edit``: the edit command (:mod:`ieadapt_jax.cli.edit`)."""
from .cli.edit import (
    DEFAULT_STEPS,
    OUTPUTS,
    REAL_VIDEO_GUIDANCE,
    TOY_SOURCE,
    TOY_TARGET,
    entry,
    main,
)

__all__ = ["DEFAULT_STEPS", "OUTPUTS", "REAL_VIDEO_GUIDANCE", "TOY_SOURCE", "TOY_TARGET", "main"]

if __name__ == "__main__":
    entry()
