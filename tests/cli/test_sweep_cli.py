"""The sweep command's faults: each is one ``error:`` line, exit 2, found before the sweep folder is created (so the
corrected rerun is not refused), and nothing of the user's is touched."""
import json

import numpy as np
import pytest

from ieadapt_jax.cli.sweep import main
from ieadapt_jax.toy import model as toy_model

SMALL = ["--frames", "4", "--height", "16", "--width", "16", "--steps", "2", "--seeds", "0", "--targets",
         "kind:spatial", "--modes", "I", "--metrics", "ssim", "--no-progress", "--no-report"]


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory):
    unet, text_encoder = toy_model.build_models("tiny", seed=0)
    return toy_model.save_toy(tmp_path_factory.mktemp("toy") / "model", unet, text_encoder, dtype=np.float32)


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("IEADAPT_JAX_CACHE", str(tmp_path / "cache"))


def error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err, err
    return err


def test_no_subcommand_prints_help_and_exits_2(capsys):
    assert main([]) == 2
    assert "usage:" in capsys.readouterr().err


def test_steps_0_and_a_bad_window_are_refused_before_the_folder_exists(snapshot, tmp_path, capsys):
    out = tmp_path / "out"
    base = ["run", "--out", str(out), "--model", str(snapshot), "--prompts", "toy:1", *SMALL]
    assert main(base + ["--steps", "0"]) == 2 and "--steps must be at least 1, got 0" in error(capsys)
    assert main(base + ["--window", "1:5"]) == 2 and "--window START:STOP (1, 5) must satisfy" in error(capsys)
    assert main(base + ["--window", "5"]) == 2 and "expected START:STOP" in error(capsys)
    assert not out.exists()


def test_a_prompt_with_an_unknown_word_is_refused_before_the_folder_exists_and_the_rerun_works(snapshot, tmp_path, capsys):
    out, prompts = tmp_path / "out", tmp_path / "prompts.txt"
    prompts.write_text("a large purple circle moving right on a white background\n")
    argv = ["run", "--out", str(out), "--model", str(snapshot), "--prompts", str(prompts), *SMALL]
    assert main(argv) == 2 and "unknown word 'purple'" in error(capsys)
    assert not out.exists()
    prompts.write_text("a large red circle moving right on a white background\n")
    assert main(argv) == 0
    assert (out / "sweep.json").is_file()


def test_a_folder_that_is_not_a_sweep_is_refused_before_loading_and_kept(tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert main(["run", "--out", str(out), "--model", str(tmp_path / "no-model"), *SMALL]) == 2
    assert "no-model: no such file or folder" in error(capsys)
    assert main(["run", "--out", str(out), "--model", "tiny", *SMALL]) == 2
    assert f"--out {out} is not empty and holds no sweep.json" in error(capsys)
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


def test_a_model_folder_that_fails_conversion_is_one_error_line(tmp_path, capsys):
    model = tmp_path / "broken"
    (model / "unet").mkdir(parents=True)
    (model / "model_index.json").write_text(json.dumps({"_class_name": "AnimateDiffPipeline"}))
    (model / "unet" / "config.json").write_text("{not json")
    out = tmp_path / "out"
    assert main(["run", "--out", str(out), "--model", str(model), *SMALL]) == 2
    err = error(capsys)
    assert len(err.strip().splitlines()) == 1 and "broken" in err
    assert not out.exists()


def test_report_of_a_sweep_without_results_and_of_a_damaged_sweep_json(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "sweep.json").write_text(json.dumps({"format": "ieadapt-sweep-1", "definition": {}}))
    assert main(["report", str(empty)]) == 2
    assert "holds no results yet" in error(capsys)
    assert sorted(p.name for p in empty.iterdir()) == ["sweep.json"]  # no tables written
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    (damaged / "sweep.json").write_text('{"format": "ieadapt-sweep-1", "defin')
    assert main(["report", str(damaged)]) == 2
    assert f"cannot parse {damaged / 'sweep.json'}" in error(capsys)


def test_sites_takes_float16_and_numbers_sites_from_0(capsys):
    assert main(["sites", "--model", "tiny", "--dtype", "float16"]) == 0
    first = capsys.readouterr().out.splitlines()[0].split()
    assert first[:4] == ["0", "spatial_self", "layer", "0"]
