"""``python -m ieadapt_jax.toy``: the toy command (:mod:`ieadapt_jax.cli.toy`)."""
from ..cli.toy import entry, main

__all__ = ["main"]

if __name__ == "__main__":
    entry()
