"""``python -m ieadapt_jax.scoring``: the ``score`` command (:mod:`ieadapt_jax.cli.score`)."""
import sys

from ..cli.score import main

if __name__ == "__main__":
    sys.exit(main())
