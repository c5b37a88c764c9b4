"""``python -m ieadapt_jax.edit``: the edit command (:mod:`ieadapt_jax.cli.edit`)."""
from .cli.edit import OUTPUTS, entry, main

__all__ = ["OUTPUTS", "main"]

if __name__ == "__main__":
    entry()
