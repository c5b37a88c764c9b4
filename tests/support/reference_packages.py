"""Independent PyTorch references that cannot be installed beside our CPU torch build: torchvision's
pure-Python model and transform sources and the ``lpips`` package.

PyPI's torchvision wheels do not import next to the local torch 2.13.0 CPU build (their compiled ops
fail to register: ``operator torchvision::nms does not exist``), and lpips requires torchvision. Both
wheels are fetched with ``pip download --no-deps`` (from PyPI or the machine's configured index) into a
cache folder, only their Python sources are extracted, and :func:`reference_modules` imports them with
a ``torchvision`` package object that skips ``torchvision/__init__.py`` (the part that loads the
compiled ops). ``torchvision.models.alexnet`` / ``vgg16``, ``torchvision.transforms`` and
``lpips.LPIPS`` are then the real upstream code. The modules are removed from ``sys.modules`` again
on exit so no other test sees a half-imported torchvision. A test is skipped (with pip's message) when
the wheels cannot be fetched.
"""
from __future__ import annotations

import contextlib
import subprocess
import sys
import tempfile
import types
import zipfile
from pathlib import Path

import pytest

TORCHVISION = ("torchvision", "0.28.0")
LPIPS = ("lpips", "0.1.4")
CACHE = Path(tempfile.gettempdir()) / "ieadapt_jax_reference_sources"


def _sources() -> Path:
    """The folder holding torchvision/ and lpips/ sources, downloading and extracting them once."""
    root = CACHE / f"{TORCHVISION[1]}-{LPIPS[1]}"
    if (root / "done").is_file():
        return root
    wheels = CACHE / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-d", str(wheels)]
    cmd += [f"{name}=={version}" for name, version in (TORCHVISION, LPIPS)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if done.returncode:
        pytest.skip(f"cannot fetch the torchvision/lpips reference sources with pip: {done.stderr.strip()[-400:]}")
    root.mkdir(parents=True, exist_ok=True)
    for name, version in (TORCHVISION, LPIPS):
        (wheel,) = wheels.glob(f"{name}-{version}-*.whl")
        with zipfile.ZipFile(wheel) as archive:
            for member in archive.namelist():
                if member.startswith(f"{name}/") and (member.endswith(".py") or member.endswith(".pth")):
                    archive.extract(member, root)
    (root / "done").write_text("ok")
    return root


def _owned(name: str) -> bool:
    return any(name == top or name.startswith(top + ".") for top in ("torchvision", "lpips"))


@contextlib.contextmanager
def reference_modules():
    """Yield a namespace with ``torchvision`` (models + transforms) and ``lpips`` imported from the
    upstream sources; everything they added to ``sys.modules`` is removed afterwards."""
    root = _sources()
    saved = {name: module for name, module in sys.modules.items() if _owned(name)}
    for name in saved:
        del sys.modules[name]
    torchvision = types.ModuleType("torchvision")
    torchvision.__path__ = [str(root / "torchvision")]
    torchvision.__version__ = TORCHVISION[1]
    sys.modules["torchvision"] = torchvision
    sys.path.insert(0, str(root))
    try:
        import lpips
        import torchvision.models
        import torchvision.transforms

        yield types.SimpleNamespace(torchvision=torchvision, lpips=lpips, lpips_weights=root / "lpips" / "weights" / "v0.1")
    finally:
        sys.path.remove(str(root))
        for name in [n for n in sys.modules if _owned(n)]:
            del sys.modules[name]
        sys.modules.update(saved)
