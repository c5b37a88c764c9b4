"""``python -m ieadapt_jax.sweep``: the sweep command (:mod:`ieadapt_jax.cli.sweep`)."""
from ..cli.sweep import build_parser, definition_from_args, entry, main

__all__ = ["build_parser", "definition_from_args", "main"]

if __name__ == "__main__":
    entry()
