"""``python -m ieadapt_jax.edit``: outputs and report on a tiny toy snapshot and a tiny AnimateDiff with a real
video; every user mistake exits 2 with a clear message and leaves --out as it was."""
import json

import diffusers
import numpy as np
import pytest
from PIL import Image
from support.tiny_diffusers import animatediff_parts

from ieadapt_jax.edit import OUTPUTS, main
from ieadapt_jax.outputs import MARKER
from ieadapt_jax.toy.model import build_models, save_toy
from ieadapt_jax.video_io import read_video, write_video

FAST = ["--steps", "2", "--quiet"]
SMALL = ["--frames", "4", "--height", "16", "--width", "16"]


@pytest.fixture(scope="module")
def toy_snapshot(tmp_path_factory):
    unet, text_encoder = build_models("tiny")
    return save_toy(tmp_path_factory.mktemp("toy") / "snapshot", unet, text_encoder)


def leftovers(folder):
    """Temporary or earlier-output folders the CLI left next to its --out."""
    return sorted(p.name for p in folder.iterdir() if ".tmp-" in p.name or ".old-" in p.name)


def test_toy_edit_writes_every_output_and_the_report(toy_snapshot, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["--pretrained", str(toy_snapshot), "--out", str(out), *FAST, *SMALL]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted((*OUTPUTS, MARKER))  # the marker: this edit made out
    report = json.loads((out / "report.json").read_text())
    assert report["config"]["method"] == "ieadapt" and report["config"]["ratio"] == 0.5
    chosen = report["chosen_sites"]
    assert len(chosen) == 9 and all(isinstance(site["entropy"], float) for site in chosen)  # half of 18 self sites
    assert max(s["entropy"] for s in chosen) <= min(s["entropy"] for s in report["entropy"] if s not in chosen)
    toy = report["metrics"]["toy"]
    assert toy["kind"] == "colour" and {"success", "kept", "mask_iou", "centroid_error"} <= set(toy)
    assert set(report["timings"]) >= {"profile", "sample", "decode", "cli_total"}
    assert read_video(out / "edited.mp4").shape == (4, 16, 16, 3)
    assert read_video(out / "side_by_side.gif").shape[0] == 4
    (out / "source.mp4").write_bytes(b"old")
    (tmp_path / "no-weights").mkdir()
    assert main(["--pretrained", str(toy_snapshot), "--out", str(out), "--seed", "1", "--metrics-weights",
                 str(tmp_path / "no-weights"), *FAST, *SMALL]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["config"]["seed"] == 1
    assert report["metrics"]["weighted"] == {} and any("clip_score" in m for m in report["metrics"]["weighted_skipped"])
    assert (out / "source.mp4").stat().st_size > 3 and leftovers(tmp_path) == []


@pytest.mark.parametrize("argv, message", [
    (["--ratio", "0"], r"--ratio must be in (0, 1]"),
    (["--method", "masactrl"], "invalid choice: 'masactrl'"),
    (["--model", "animatediff"], "needs --source and --target"),
    (["--video", "{tmp}/missing.mp4"], "missing.mp4: no such file"),
    (["--window", "3:1"], "must satisfy 0 <= start < stop"),
    (["--mask", "{tmp}/mask.png", "--mask-words", "red"], "not both"),
    (["--target", "a large purple circle moving right on a white background"], "unknown word 'purple'"),
    (["--method", "p2p", "--target", "a large blue circle bouncing on a white background"], "prompts must align"),
    (["--window", "1:9"], "must satisfy 0 <= start < stop <= 2"),
    (["--sites", "mid_block.attn9"], "unknown site 'mid_block.attn9'"),
    (["--mask-words", "square"], "mask word 'square' is not in the source prompt"),
    (["--video", "{tmp}/notes.txt"], "notes.txt: unsupported"),
])
def test_mistakes_exit_2_and_write_nothing(toy_snapshot, tmp_path, capsys, argv, message):
    (tmp_path / "notes.txt").write_text("not a video")
    out = tmp_path / "out"
    argv = [a.format(tmp=tmp_path) for a in argv]
    with pytest.raises(SystemExit) as stop:
        raise SystemExit(main(["--pretrained", str(toy_snapshot), "--out", str(out), *FAST, *SMALL, *argv]))
    assert stop.value.code == 2
    assert message in capsys.readouterr().err
    assert not out.exists() and leftovers(tmp_path) == []


def test_out_must_be_a_new_empty_or_earlier_output_folder(toy_snapshot, tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("x")
    for out, message in ((tmp_path / "file", "is a file"), (tmp_path / "mine", "not an earlier edit's output")):
        assert main(["--pretrained", str(toy_snapshot), "--out", str(out), *FAST]) == 2
        assert message in capsys.readouterr().err
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "x"
    assert main(["--model", "animatediff", "--source", "a cat", "--target", "a dog", "--out", str(tmp_path / "o")]) == 2
    assert "needs --pretrained DIR" in capsys.readouterr().err


def test_animatediff_real_video_with_a_mask(tmp_path, monkeypatch):
    """A tiny random SD snapshot + motion adapter: VAE encode, DDIM inversion, driven source, mask blending, PSNRs."""
    monkeypatch.setenv("IEADAPT_JAX_CACHE", str(tmp_path / "cache"))
    parts = animatediff_parts()
    parts["scheduler"] = diffusers.PNDMScheduler(beta_schedule="scaled_linear", skip_prk_steps=True, steps_offset=1)  # SD1.5's
    diffusers.StableDiffusionPipeline(**{k: v for k, v in parts.items() if k != "motion_adapter"}, safety_checker=None,
                                      feature_extractor=None, requires_safety_checker=False).save_pretrained(
        tmp_path / "snapshot")
    parts["motion_adapter"].save_pretrained(tmp_path / "adapter")
    frames = np.random.default_rng(0).integers(0, 256, (4, 16, 16, 3), dtype=np.uint8)
    write_video(tmp_path / "clip.gif", frames)
    mask = np.zeros((16, 16), np.uint8)
    mask[:, 8:] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    out = tmp_path / "out"
    argv = ["--model", "animatediff", "--pretrained", str(tmp_path / "snapshot"), "--motion-adapter",
            str(tmp_path / "adapter"), "--video", str(tmp_path / "clip.gif"),
            "--mask", str(tmp_path / "mask.png"), "--source", "a cat", "--target", "a dog", "--frames", "4",
            "--height", "16", "--width", "16", *FAST]
    assert main(argv + ["--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["config"]["real_video"] and report["config"]["drive_source"] and report["config"]["mask"] == "given"
    assert "PNDMScheduler" in report["config"]["scheduler"] and report["config"]["clip_sample"] is False
    metrics = report["metrics"]
    assert 0 < metrics["vae_psnr"] < 100 and metrics["reconstruction_psnr"] == metrics["vae_psnr"]  # source = VAE(x0)
    assert read_video(out / "side_by_side.gif").shape[0] == 4
    with pytest.raises(SystemExit) as stop:
        raise SystemExit(main(argv + ["--out", str(tmp_path / "bad"), "--height", "18"]))
    assert stop.value.code == 2 and not (tmp_path / "bad").exists()
