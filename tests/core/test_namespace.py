"""One import namespace: a working directory with its own models/ and convert/ packages (common in research
code) cannot shadow ieadapt_jax.models and ieadapt_jax.convert."""
from __future__ import annotations

import subprocess
import sys

import pytest

FORWARD = """
import jax, jax.numpy as jnp, numpy as np
import ieadapt_jax as ia
from ieadapt_jax.convert import ConversionError
components = ia.tiny_animatediff()
forward, state = ia.make_forward(components.unet, record="self")
latents = jax.random.normal(jax.random.PRNGKey(0), (1, 2, 8, 8, 4))
text = jnp.zeros((1, 77, components.text_encoder.config.hidden_size))
eps, record = forward(state, latents, jnp.asarray([500]), text)
assert np.isfinite(np.asarray(eps)).all() and record.entropy.shape[1] == 1
print("forward ok", ia.models.__name__ if hasattr(ia, "models") else "", ConversionError.__module__)
"""


@pytest.fixture
def foreign_cwd(tmp_path):
    """A folder holding a user's own models/ and convert/ packages, each raising ImportError when imported."""
    for name in ("models", "convert"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text(f"raise ImportError('the user\\'s own {name} package')\n")
    return tmp_path


def _run(args, cwd):
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_the_foreign_packages_really_raise(foreign_cwd):
    done = _run(["-c", "import models"], foreign_cwd)
    assert done.returncode != 0 and "the user's own models package" in done.stderr


def test_import_and_a_tiny_forward_work_beside_foreign_packages(foreign_cwd):
    done = _run(["-c", FORWARD], foreign_cwd)
    assert done.returncode == 0, done.stderr
    assert "forward ok" in done.stdout and "ieadapt_jax.convert" in done.stdout


def test_the_edit_command_line_works_beside_foreign_packages(foreign_cwd):
    done = _run(["-m", "ieadapt_jax.edit", "--help"], foreign_cwd)
    assert done.returncode == 0, done.stderr
    assert "--source" in done.stdout and not done.stderr.strip()
