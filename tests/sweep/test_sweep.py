"""End-to-end sweeps on a tiny random-weight toy model: the CLI run and report, resume after a kill, baselines equal
text_to_video, and 8 fake CPU devices give the same results as 1 (in a subprocess)."""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest

from ieadapt_jax import text_to_video
from ieadapt_jax.sweep import report, run_sweep
from ieadapt_jax.sweep.__main__ import build_parser, definition_from_args, main
from ieadapt_jax.sweep.store import read_rows
from ieadapt_jax.toy import model as toy_model

RUN_ARGS = ["--prompts", "toy:2", "--seeds", "0", "--targets", "each:spatial", "entropy:top:50:temporal",
            "--modes", "I", "U", "--frames", "8", "--height", "16", "--width", "16", "--steps", "2", "--chunk", "4",
            "--metrics", "ssim", "psnr", "temporal_consistency", "motion", "toy_structure", "toy_dynamics",
            "--no-progress"]
TOTAL = 2 * (1 + 4 * 2 + 2)  # prompts x (baseline + 4 spatial sites x 2 modes + entropy group x 2 modes)


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory):
    """A toy snapshot of the tiny architecture with random weights."""
    unet, text_encoder = toy_model.build_models("tiny", seed=0)
    return toy_model.save_toy(tmp_path_factory.mktemp("toy") / "model", unet, text_encoder, dtype=np.float32)


@pytest.fixture(scope="module")
def swept(snapshot, tmp_path_factory):
    """An uninterrupted sweep through the command line (run + report)."""
    out = tmp_path_factory.mktemp("sweep") / "out"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("IEADAPT_JAX_CACHE", str(tmp_path_factory.mktemp("cache")))
        assert main(["run", "--out", str(out), "--model", str(snapshot), *RUN_ARGS]) == 0
    return out


def test_cli_sweep_writes_results_tables_plots_and_summary(swept):
    frames = report.tables(swept)
    res = frames["results"]
    assert len(res) == TOTAL and list(res["index"]) == list(range(TOTAL))
    base = res[res["mode"] == "A"]
    assert len(base) == 2 and (base["ssim"] == 1.0).all() and np.isinf(base["psnr"]).all()
    assert (base["motion_shift"] == 0.0).all() and (base["toy_mask_iou"] == 1.0).all()
    perturbed = res[res["mode"] != "A"]
    assert (perturbed["ssim"] < 1.0).all() and np.isfinite(perturbed["psnr"]).all()  # every perturbation changes the video
    single = perturbed[perturbed["target_type"] == "site"]
    assert set(single["kind"]) == {"spatial_self"} and sorted(single["layer"].unique()) == [0, 1, 2, 3]
    assert single["baseline_entropy"].between(0.0, 1.0).all()

    # entropy:top:50:temporal perturbs the temporal sites of highest entropy in that prompt's own baseline.
    rec = frames["records"]
    rows = {r["key"]: r for r in read_rows(swept)}
    for p in range(2):
        temporal = rec[(rec["mode"] == "A") & (rec["prompt_index"] == p) & (rec["kind"] == "temporal")]
        top = temporal.sort_values(["entropy", "position"], ascending=[False, True]).head(round(len(temporal) / 2))
        assert sorted(rows[f"p{p:04d}/s0/entropy:top:50:temporal/I"]["sites"]) == sorted(top["site"])
    assert set(rec["kind"]) == {"spatial_self", "temporal"} and len(rec) == TOTAL * rec["site"].nunique()
    assert (rec["energy_uniform"] <= rec["energy_identity"] + 1e-6).all() and rec["entropy"].between(0, 1).all()
    by_step = frames["records_by_step"]
    assert set(by_step["mode"]) == {"A"} and sorted(by_step["step"].unique()) == [0, 1]

    folder = swept / report.REPORT_DIR
    for name in ("results", "records", "records_by_step"):
        pd.testing.assert_frame_equal(pd.read_parquet(folder / f"{name}.parquet"), frames[name])
        assert len(pd.read_csv(folder / f"{name}.csv")) == len(frames[name])
    summary = (folder / "summary.md").read_text()
    for plot in ("site_shifts.png", "entropy_energy.png", "boxplots.png", "groups.png", "video_grid.png", "video_grid.gif"):
        assert (folder / "plots" / plot).stat().st_size > 1000 and f"plots/{plot}" in summary
    assert "## The paper's observations on this sweep" in summary and "| §3.3: temporal maps replaced by U" in summary
    kept = res[res["video"] != ""]
    assert set(kept["prompt_index"]) == {0} and len(kept) == TOTAL // 2  # --keep-videos 1: every video of prompt 0


def test_resume_after_a_kill_gives_the_same_table(swept, snapshot, tmp_path):
    args = build_parser().parse_args(["run", "--out", "unused", "--model", str(snapshot), *RUN_ARGS])
    components = toy_model.load_toy(snapshot, cache=False)
    definition = definition_from_args(args, components)
    kwargs = dict(metrics=args.metrics, chunk=4, progress=False, log=lambda _: None)
    out = tmp_path / "out"
    first = run_sweep(components, definition, out, stop_after=2, **kwargs)  # the baselines' chunk and one more
    assert first.stopped and first.done_now == 2 + 4
    with open(out / "results.jsonl", "ab") as f:
        f.write(b'{"key": "p0001/s0/site:')  # killed while writing the next chunk
    second = run_sweep(components, definition, out, **kwargs)
    assert (second.done_before, second.done_now, second.stopped) == (6, TOTAL - 6, False)
    assert run_sweep(components, definition, out, **kwargs).done_now == 0  # nothing left to do
    for name in ("results", "records", "records_by_step"):
        pd.testing.assert_frame_equal(report.tables(out)[name], report.tables(swept)[name], check_exact=True)
    with pytest.raises(Exception, match="describes another sweep"):
        run_sweep(components, definition_from_args(build_parser().parse_args(
            ["run", "--out", "x", *RUN_ARGS[:-1], "--steps", "3"]), components), out, **kwargs)


def test_baseline_is_text_to_video_of_the_same_prompt_and_seed(swept, snapshot):
    components = toy_model.load_toy(snapshot, cache=False)
    prompt = json.loads((swept / "sweep.json").read_text())["definition"]["prompts"][1]
    video = text_to_video(components, prompt, num_frames=8, height=16, width=16, num_inference_steps=2,
                          guidance_scale=toy_model.read_toy_info(snapshot)["default_guidance_scale"], seed=0,
                          progress=False).video  # the sweep's default scale for a toy snapshot: the snapshot's own
    baseline = np.load(swept / "baselines" / "p0001_s0.npy")
    assert baseline.shape == video.shape == (8, 16, 16, 3)
    assert np.abs(baseline.astype(int) - video.astype(int)).max() <= 1  # uint8 rounding of float-rounding gaps


EIGHT_DEVICES = textwrap.dedent("""
    import json, sys
    import jax, numpy as np
    from ieadapt_jax.sweep import SweepDefinition, run_sweep, toy_prompts
    from ieadapt_jax.sweep.store import read_rows
    from ieadapt_jax.toy import model as toy_model
    assert len(jax.devices()) == 8, jax.devices()
    components = toy_model.load_toy(sys.argv[1], cache=False)
    definition = SweepDefinition(prompts=toy_prompts(2), seeds=(0,), targets=("site:mid_block.attentions.0.transformer_blocks.0.attn1",
                                 "kind:temporal"), modes=("I", "U"), num_frames=8, height=16, width=16,
                                 num_inference_steps=2, guidance_scale=5.0)
    runs = {}
    for devices in (1, 8):
        out = f"{sys.argv[2]}/d{devices}"
        result = run_sweep(components, definition, out, metrics=["ssim", "motion"], chunk=1, devices=devices,
                           progress=False, log=lambda _: None)
        assert result.devices == devices and result.done_now == 2 + 8, result
        runs[devices] = ({r["key"]: r for r in read_rows(out)}, out)
    (one, out1), (eight, out8) = runs[1], runs[8]
    assert one.keys() == eight.keys()
    for key in one:
        assert one[key]["metrics"] == eight[key]["metrics"], key
        assert one[key]["records"] == eight[key]["records"], key
    for p in range(2):
        a, b = (np.load(f"{o}/baselines/p{p:04d}_s0.npy") for o in (out1, out8))
        assert (a == b).all()
    print("EQUAL", len(one))
""")


def test_eight_fake_cpu_devices_give_the_same_results_as_one(snapshot, tmp_path):
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8", "JAX_PLATFORMS": "cpu"}
    done = subprocess.run([sys.executable, "-c", EIGHT_DEVICES, str(snapshot), str(tmp_path)], env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "EQUAL 10" in done.stdout


def test_cli_help_teaches_the_feature_and_sites_lists_the_model(snapshot, capsys, monkeypatch, tmp_path):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    for needle in ("entropy:top:PCT", "blocks[:KIND]", "regex:PATTERN", "--modes", "α·I + (1−α)·U", "resum",
                   "--coordinator", "--metrics-weights", "register_metric", "site_shifts.png", "--chunk"):
        assert needle in text, needle
    monkeypatch.setenv("IEADAPT_JAX_CACHE", str(tmp_path / "cache"))
    assert main(["sites", "--model", str(snapshot)]) == 0
    listing = capsys.readouterr().out
    assert "temporal" in listing and "  1  temporal     layer   1  down_blocks.0.motion_modules.0.transformer_blocks.0.attn2" in listing
    assert main(["run", "--out", str(tmp_path / "x"), "--model", str(snapshot), "--targets", "nope"]) == 2
    assert "unknown target 'nope'" in capsys.readouterr().err


def test_cogvideox_sweep_baseline_is_its_text_to_video(tmp_path, monkeypatch, capsys):
    import diffusers
    from support.tiny_diffusers import tiny_cogvideox_parts

    import ieadapt_jax as ia

    root = tmp_path / "cogvideox"
    diffusers.CogVideoXPipeline(**tiny_cogvideox_parts()).save_pretrained(root)
    (tmp_path / "prompts.txt").write_text("a cat runs\n")
    monkeypatch.setenv("IEADAPT_JAX_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "out"
    assert main(["run", "--out", str(out), "--model", str(root), "--prompts", str(tmp_path / "prompts.txt"),
                 "--frames", "9", "--height", "32", "--width", "32", "--steps", "2", "--chunk", "2", "--no-progress",
                 "--no-report", "--metrics", "ssim", "motion"]) == 0
    rows = read_rows(out)
    assert [r["target"] for r in rows] == ["baseline"] + ["site:transformer_blocks.0.attn1"] * 2 + \
        ["site:transformer_blocks.1.attn1"] * 2  # joint sites, modes I and U
    assert all(r["metrics"]["ssim"] < 1.0 for r in rows[1:]) and len(rows[0]["records"]["entropy"]) == 2
    video = ia.text_to_video(ia.load_cogvideox(root, cache=False), "a cat runs", num_frames=9, height=32, width=32,
                             num_inference_steps=2, guidance_scale=6.0, seed=42, progress=False).video
    np.testing.assert_array_equal(np.load(out / "baselines" / "p0000_s42.npy"), video)
