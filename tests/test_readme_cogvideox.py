"""The README's "Loading CogVideoX" example runs on a tiny random-weight snapshot.

The example (a ```py block: it needs a real checkpoint) is run with substitutions that fit the tiny model of
test_cogvideox_pipeline: the snapshot path, the video and latent sizes, the step count, the layer index, the prompt.
"""
import pathlib
import re

import diffusers

from test_cogvideox_pipeline import tiny_cogvideox_parts

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def test_readme_cogvideox_example_runs_on_a_tiny_snapshot(tmp_path, monkeypatch):
    (block,) = [b for b in re.findall(r"```py\n(.*?)```", README.read_text(), flags=re.S) if "load_cogvideox" in b and "text_to_video" in b]
    diffusers.CogVideoXPipeline(**tiny_cogvideox_parts()).save_pretrained(tmp_path / "snapshot")
    monkeypatch.setenv("IEADAPT_JAX_CACHE", str(tmp_path / "cache"))
    substitutions = {
        '"path/to/cogvideox-5b-snapshot"': repr(str(tmp_path / "snapshot")),
        "num_frames=49, height=480, width=720, num_inference_steps=50": "num_frames=9, height=32, width=32, num_inference_steps=2",
        "(1, 13, 60, 90, 16)": "(1, 3, 8, 8, 4)",
        "index=[7]": "index=[1]",
        '"a panda playing a guitar"': '"a cat runs"',  # the tiny tokenizer's 8 tokens
    }
    for old, new in substitutions.items():
        assert old in block, old
        block = block.replace(old, new)
    scope: dict = {}
    exec(compile(block, "README.md CogVideoX example", "exec"), scope)
    assert scope["result"].video.shape == (9, 32, 32, 3)
    assert scope["result"].records.entropy.shape == (2, 2, 4)
    assert scope["rec"].entropy.shape == (2, 2)
    assert scope["frames"].shape == (9, 32, 32, 3)
