"""``python -m ieadapt_jax.edit``: the edit command (:mod:`ieadapt_jax.cli.edit`)."""
import sys

from .cli.edit import OUTPUTS, main

__all__ = ["OUTPUTS", "main"]

if __name__ == "__main__":
    sys.exit(main())
