"""The shipped toy model: pinned file digests, deterministic generation, captioned colour and shape."""
import shutil

import numpy as np
import pytest

from ieadapt_jax.toy import default, metrics, world
from ieadapt_jax.toy.evaluate import generate
from ieadapt_jax.toy.model import ToySnapshotError, read_toy_info

pytestmark = pytest.mark.slow  # trains, or runs whole toy generations or scripts in subprocesses

# Held-out (shape, colour, motion) combinations and training ones, on plain and two-tone backgrounds.
CAPTIONS = [
    "a large red circle moving right on a white background",
    "a small blue square moving down on a black background",
    "a large green triangle moving left on a gray background",
    "a large yellow diamond standing still on a black and white background",
]


@pytest.fixture(scope="module")
def components():
    return default.load_default()


@pytest.fixture(scope="module")
def videos(components):
    """uint8 [4, 16, 32, 32, 3] from the shipped model with its own guidance scale, 25 DDIM steps (the
    evaluation's setting), seed 0."""
    scale = read_toy_info(default.DEFAULT_MODEL)["default_guidance_scale"]
    return generate(components, CAPTIONS, num_inference_steps=25, guidance_scale=scale, seed=0, progress=False)


def test_shipped_files_match_the_pinned_digests(tmp_path):
    default.verify_default()
    assert default.digests() == default.SHIPPED_SHA256
    copy = tmp_path / "shipped"
    shutil.copytree(default.DEFAULT_MODEL, copy)
    weights = copy / "unet" / "diffusion_pytorch_model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    with pytest.raises(ToySnapshotError, match="diffusion_pytorch_model.safetensors has SHA-256"):
        default.verify_default(copy)
    (copy / "extra.txt").write_text("x")
    with pytest.raises(ToySnapshotError, match="extra.txt is not part of the pinned snapshot"):
        default.verify_default(copy)
    (copy / "extra.txt").unlink()
    (copy / "toy.json").unlink()
    with pytest.raises(ToySnapshotError, match="toy.json is missing"):
        default.verify_default(copy)


def test_shipped_snapshot_is_a_toy_world_snapshot_within_budget():
    info = read_toy_info(default.DEFAULT_MODEL)
    assert info["world_version"] == world.WORLD_VERSION
    size = sum(p.stat().st_size for p in default.DEFAULT_MODEL.rglob("*") if p.is_file())
    assert size <= 16 * 2**20


def test_generation_is_deterministic_from_the_seed(components):
    def one(seed):
        return generate(components, CAPTIONS[:1], num_inference_steps=4, guidance_scale=1.5, seed=seed,
                        progress=False)[0]

    first = one(0)
    np.testing.assert_array_equal(one(0), first)
    assert np.abs(one(1).astype(int) - first.astype(int)).mean() > 1.0


def test_generated_videos_have_the_captioned_colour_and_shape(videos):
    predicted = metrics.classify(videos)
    for i, text in enumerate(CAPTIONS):
        attrs = world.parse(text)
        assert world.COLOURS[int(predicted.colour[i])] == world.COLOURS[int(attrs.colour[0])], text
        assert world.SHAPES[int(predicted.shape[i])] == world.SHAPES[int(attrs.shape[0])], text
