"""The edit command never destroys a user's files and fails before computing: output folders that hold other
files, unwritable places, a full disk, out-of-memory, masks of the wrong size, empty prompts; Ctrl-C (a real
SIGINT to a subprocess) and the installed entry point."""
import json
import os
import signal
import subprocess
import sys
import time
from collections import namedtuple

import jax
import numpy as np
import pytest
from PIL import Image

import ieadapt_jax.cli.edit as edit_cli
from ieadapt_jax import outputs
from ieadapt_jax.edit import main
from ieadapt_jax.outputs import MARKER
from ieadapt_jax.toy.model import build_models, save_toy
from ieadapt_jax.video_io import write_video

FAST = ["--steps", "2", "--quiet", "--frames", "4", "--height", "16", "--width", "16"]


@pytest.fixture(scope="module")
def toy_snapshot(tmp_path_factory):
    unet, text_encoder = build_models("tiny")
    return save_toy(tmp_path_factory.mktemp("toy") / "snapshot", unet, text_encoder)


@pytest.fixture
def no_compute(monkeypatch):
    """Fail the test if the edit itself runs (the faults below must be found before computing)."""
    def refuse(*args, **kwargs):
        raise AssertionError("the edit ran although the request was refused")

    monkeypatch.setattr(edit_cli, "edit", refuse)


def run(capsys, snapshot, *argv):
    code = main(["--pretrained", str(snapshot), *FAST, *map(str, argv)])
    return code, capsys.readouterr().err


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if ".tmp-" in p.name or ".old-" in p.name)


def test_a_project_folder_with_a_report_json_is_refused_and_kept(toy_snapshot, tmp_path, capsys, no_compute):
    project = tmp_path / "project"
    (project / "src").mkdir(parents=True)
    (project / "src" / "main.py").write_text("print('mine')\n")
    (project / "report.json").write_text("{}")
    code, err = run(capsys, toy_snapshot, "--out", project)
    assert code == 2 and f"error: --out {project} is not an earlier edit's output" in err and "src/main.py" in err
    code, err = run(capsys, toy_snapshot, "--out", project, "--overwrite")  # report.json is the user's file
    assert code == 2 and "report.json would replace files the edit command did not write" in err
    assert (project / "src" / "main.py").read_text() == "print('mine')\n" and (project / "report.json").read_text() == "{}"
    assert leftovers(tmp_path) == []


def test_an_earlier_output_with_the_users_notes_is_refused_then_overwrite_keeps_the_notes(toy_snapshot, tmp_path, capsys):
    out = tmp_path / "out"
    assert run(capsys, toy_snapshot, "--out", out)[0] == 0
    first = json.loads((out / MARKER).read_text())
    assert first["command"] == "edit" and "report.json" in first["files"]
    (out / "notes.txt").write_text("my notes")
    code, err = run(capsys, toy_snapshot, "--out", out, "--seed", "1")
    assert code == 2 and "also holds files the command did not write (notes.txt)" in err
    assert json.loads((out / "report.json").read_text())["config"]["seed"] == 0
    assert run(capsys, toy_snapshot, "--out", out, "--seed", "1", "--overwrite")[0] == 0
    assert (out / "notes.txt").read_text() == "my notes"
    assert json.loads((out / "report.json").read_text())["config"]["seed"] == 1
    assert "notes.txt" not in json.loads((out / MARKER).read_text())["files"]  # still the user's, not ours
    assert leftovers(tmp_path) == []


def test_an_unwritable_place_fails_before_computing(toy_snapshot, tmp_path, capsys, monkeypatch, no_compute):
    """Tests run as root, where chmod does not stop writes: the read-only filesystem is simulated at mkdir."""
    real_mkdir = os.mkdir

    def read_only(path, *args, **kwargs):
        if str(path).startswith(str(tmp_path / "ro")):
            raise OSError(30, "Read-only file system", str(path))
        return real_mkdir(path, *args, **kwargs)

    (tmp_path / "ro").mkdir()
    monkeypatch.setattr(outputs.os, "mkdir", read_only)
    code, err = run(capsys, toy_snapshot, "--out", tmp_path / "ro" / "out")
    assert code == 2 and f"--out {tmp_path / 'ro' / 'out'}: cannot write in {tmp_path / 'ro'} (Read-only file system)" in err
    code, err = run(capsys, toy_snapshot, "--out", tmp_path / "missing" / "out")
    assert code == 2 and "its parent folder" in err and "does not exist" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ro"] and not any((tmp_path / "ro").iterdir())


def test_a_full_disk_fails_before_computing(toy_snapshot, tmp_path, capsys, monkeypatch, no_compute):
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(outputs.shutil, "disk_usage", lambda path: usage(1 << 30, (1 << 30) - 4096, 4096))
    code, err = run(capsys, toy_snapshot, "--out", tmp_path / "out")
    assert code == 2 and "MiB free in" in err and "free some space" in err
    assert list(tmp_path.iterdir()) == []


def test_out_of_memory_is_a_clear_error_and_leaves_nothing(toy_snapshot, tmp_path, capsys, monkeypatch):
    def exhausted(*args, **kwargs):
        raise jax.errors.JaxRuntimeError("RESOURCE_EXHAUSTED: Out of memory while trying to allocate 81.2GiB.")

    monkeypatch.setattr(edit_cli, "edit", exhausted)
    code, err = main(["--pretrained", str(toy_snapshot), "--quiet", "--height", "4096", "--width", "4096",
                      "--out", str(tmp_path / "out")]), capsys.readouterr().err
    assert code == 2 and "error: out of memory (RESOURCE_EXHAUSTED" in err
    assert "smaller --height/--width/--frames" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_a_mask_of_another_size_is_refused(toy_snapshot, tmp_path, capsys, no_compute):
    Image.fromarray(np.full((20, 24), 255, np.uint8)).save(tmp_path / "mask.png")
    code, err = run(capsys, toy_snapshot, "--mask", tmp_path / "mask.png", "--out", tmp_path / "out")
    assert code == 2 and "mask.png: the mask is 20x24 (height x width) but must be 16x16" in err
    write_video(tmp_path / "clip.gif", np.zeros((4, 40, 40, 3), np.uint8))
    code, err = run(capsys, toy_snapshot, "--video", tmp_path / "clip.gif", "--mask", tmp_path / "mask.png",
                    "--out", tmp_path / "out")
    assert code == 2 and "must be 40x40 or 16x16" in err and not (tmp_path / "out").exists()


@pytest.mark.parametrize("option", ["--source", "--target"])
def test_empty_prompts_are_refused(toy_snapshot, tmp_path, capsys, no_compute, option):
    code, err = run(capsys, toy_snapshot, option, "  ", "--out", tmp_path / "out")
    assert code == 2 and f"error: {option} is empty" in err and not (tmp_path / "out").exists()


def test_ctrl_c_stops_removes_the_temporary_folder_and_exits_130(toy_snapshot, tmp_path):
    """A real SIGINT while the sampling loop runs (1000 steps, so the run lasts): exit 130 within seconds,
    'interrupted', no traceback, no --out and no temporary folder."""
    out, log = tmp_path / "out", tmp_path / "stderr.txt"
    command = [sys.executable, "-m", "ieadapt_jax.edit", "--pretrained", str(toy_snapshot), "--out", str(out),
               "--steps", "1000", "--frames", "8", "--height", "32", "--width", "32"]
    with open(log, "w") as stderr:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr, text=True, cwd=tmp_path)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and "compiling the sampling loop" not in log.read_text():
            assert process.poll() is None, log.read_text()[-2000:]
            time.sleep(0.2)
        time.sleep(4)  # compiled, and into the steps
        assert process.poll() is None, "the run ended before it could be interrupted"
        sent = time.monotonic()
        process.send_signal(signal.SIGINT)
        process.wait(timeout=60)
    text = log.read_text()
    assert process.returncode == 130, text[-2000:]
    assert time.monotonic() - sent < 15
    assert "interrupted" in text and "Traceback" not in text
    assert not out.exists() and leftovers(tmp_path) == []


def test_the_entry_point_runs_and_a_missing_subcommand_exits_2(tmp_path):
    bin_dir = os.path.dirname(sys.executable)
    edit = os.path.join(bin_dir, "ieadapt-edit")
    if not os.path.exists(edit):
        pytest.skip("the package is not installed with its entry points (pip install -e .)")
    done = subprocess.run([edit, "--help"], capture_output=True, text=True, cwd=tmp_path, check=False)
    assert done.returncode == 0 and "--window START:STOP" in done.stdout and "--overwrite" in done.stdout
    assert "PyTorch was not found" not in done.stderr
    done = subprocess.run([os.path.join(bin_dir, "ieadapt-sweep")], capture_output=True, text=True, cwd=tmp_path,
                          check=False)
    assert done.returncode == 2 and "usage:" in done.stderr
