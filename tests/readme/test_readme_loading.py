"""The "Loading AnimateDiff" example (docs/models.md) runs on a tiny random-weight snapshot.

The example (a ```py block: it needs a real checkpoint) is run with three substitutions that fit the
tiny model: the snapshot path, the latent size 64 -> 8, and the spatial layer index 15 -> 3.
"""
import diffusers
from support.readme_examples import run_example
from support.tiny_diffusers import animatediff_parts


def test_readme_loading_example_runs_on_a_tiny_snapshot(tmp_path, monkeypatch):
    diffusers.AnimateDiffPipeline(**animatediff_parts()).save_pretrained(tmp_path / "snapshot")
    monkeypatch.setenv("IEADAPT_JAX_CACHE", str(tmp_path / "cache"))
    substitutions = {
        '"path/to/animatediff-snapshot"': repr(str(tmp_path / "snapshot")),
        "(1, 16, 64, 64, 4)": "(1, 16, 8, 8, 4)",
        "index=[15]": "index=[3]",
    }
    scope = run_example(("load_animatediff",), substitutions, "loading example")
    assert scope["eps"].shape == (2, 16, 8, 8, 4)
    assert scope["rec"].entropy.shape == (len(scope["table"].select(kind="self")), 2)
    assert scope["frames"].shape == (16, 16, 16, 3)
