"""Shared test setup.

Being the top conftest.py, this file puts tests/ on sys.path (pytest's default import mode), so every test
folder imports the helpers in tests/support/. It also points JAX's persistent compilation cache at one folder
shared by the xdist workers and the subprocesses the tests start (README blocks, CLI and benchmark scripts),
so a program compiled in one process (the shipped toy model's sampling loop, say) is compiled once; and it
marks every test of a module that imports torch as ``parity`` (it compares against a PyTorch reference).
"""
import os
import tempfile

import pytest

os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(tempfile.gettempdir(), "ieadapt-jax-test-xla-cache"))


def pytest_collection_modifyitems(items):
    """Mark the tests of modules that use torch as ``parity``."""
    for item in items:
        module = getattr(item, "module", None)
        if module is not None and "torch" in vars(module):
            item.add_marker(pytest.mark.parity)
