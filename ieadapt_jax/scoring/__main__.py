"""``python -m ieadapt_jax.scoring``: the ``score`` command (:mod:`ieadapt_jax.cli.score`)."""
from ..cli.score import entry

if __name__ == "__main__":
    entry()
