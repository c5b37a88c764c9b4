"""The "Loading CogVideoX" (docs/models.md) and "Editing with CogVideoX" (docs/editing.md) examples run on a tiny
random-weight snapshot.

The example (a ```py block: it needs a real checkpoint) is run with substitutions that fit the tiny model of
test_cogvideox_pipeline: the snapshot path, the video and latent sizes, the step count, the layer index, the prompt.
"""
import diffusers
import numpy as np
from support.readme_examples import run_example
from support.tiny_diffusers import tiny_cogvideox_parts

from ieadapt_jax.video_io import write_video


def test_readme_cogvideox_example_runs_on_a_tiny_snapshot(tmp_path, monkeypatch):
    diffusers.CogVideoXPipeline(**tiny_cogvideox_parts()).save_pretrained(tmp_path / "snapshot")
    monkeypatch.setenv("IEADAPT_JAX_CACHE", str(tmp_path / "cache"))
    substitutions = {
        '"path/to/cogvideox-5b-snapshot"': repr(str(tmp_path / "snapshot")),
        "num_frames=49, height=480, width=720, num_inference_steps=50": "num_frames=9, height=32, width=32, num_inference_steps=2",
        "(1, 13, 60, 90, 16)": "(1, 3, 8, 8, 4)",
        "index=[7]": "index=[1]",
        '"a panda playing a guitar"': '"a cat runs"',  # the tiny tokenizer's 8 tokens
    }
    scope = run_example(("load_cogvideox", "text_to_video"), substitutions, "CogVideoX example")
    assert scope["result"].video.shape == (9, 32, 32, 3)
    assert scope["result"].records.entropy.shape == (2, 2, 4)
    assert scope["rec"].entropy.shape == (2, 2)
    assert scope["frames"].shape == (9, 32, 32, 3)


def test_readme_cogvideox_editing_example_runs_on_a_tiny_snapshot(tmp_path, monkeypatch):
    diffusers.CogVideoXPipeline(**tiny_cogvideox_parts()).save_pretrained(tmp_path / "snapshot")
    monkeypatch.setenv("IEADAPT_JAX_CACHE", str(tmp_path / "cache"))

    write_video(tmp_path / "dog.mp4", np.random.default_rng(0).integers(0, 256, (9, 32, 32, 3), np.uint8), fps=8)
    substitutions = {
        '"path/to/cogvideox-2b-snapshot"': repr(str(tmp_path / "snapshot")),
        "num_frames=49, height=480, width=720, num_inference_steps=25": "num_frames=9, height=32, width=32, num_inference_steps=2",
        "num_frames=49, size=(480, 720)": "num_frames=9, size=(32, 32)",
        "num_inference_steps=25)": "num_inference_steps=2)",
        '"a dog running on the grass", "a cat running on the grass"': '"a dog runs", "a cat runs"',
        '"dog.mp4"': repr(str(tmp_path / "dog.mp4")),
        '"/tmp/ieadapt_dog2cat.gif"': repr(str(tmp_path / "dog2cat.gif")),
    }
    scope = run_example(("load_cogvideox", "editing import edit"), substitutions, "CogVideoX editing example")
    assert scope["result"].edited_video.shape == (9, 32, 32, 3)
    assert len(scope["result"].sites) == 1  # the lower half of the tiny model's 2 joint layers
    assert scope["real"].metrics["reconstruction_psnr"] == scope["real"].metrics["vae_psnr"]
    assert (tmp_path / "dog2cat.gif").stat().st_size > 0
