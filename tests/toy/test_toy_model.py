"""Toy model: device captions, training runs and resumes bit-identically, export -> load round trip, eval, CLI."""
import dataclasses
import functools
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from ieadapt_jax import text_to_video
from ieadapt_jax.toy import model as toy_model
from ieadapt_jax.toy import train as toy_train
from ieadapt_jax.toy import training_data
from ieadapt_jax.toy import world
from ieadapt_jax.toy.__main__ import main

pytestmark = pytest.mark.slow  # trains, or runs whole toy generations or scripts in subprocesses

# The shipped model's recipe (v-prediction at zero terminal SNR) on the tiny architecture.
TINY = toy_train.TrainConfig(arch="tiny", steps=4, batch=1, precision="fp32", warmup=1, checkpoint_every=4,
                             log_every=1, prediction="v_prediction", zero_terminal_snr=True)


def flat_params(tree) -> dict:
    """path -> numpy array of every parameter in an nnx module or State."""
    state = nnx.state(tree, nnx.Param) if isinstance(tree, nnx.Module) else tree
    return {path: np.asarray(v.get_value()) for path, v in nnx.to_flat_state(state)}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """An uninterrupted 4-step tiny run (its folder) and a snapshot exported from it."""
    out = tmp_path_factory.mktemp("run")
    result = toy_train.train(TINY, out, progress=False)
    assert result.step == 4 and result.stopped == "done"
    toy_train.export(out, out / "model")
    return out


def test_caption_ids_on_device_equal_the_host_tokenizer():
    attrs = world.train_attributes(jax.random.key(3), 64, two_object_fraction=0.5)
    ids = jax.jit(training_data.caption_ids)(attrs)
    np.testing.assert_array_equal(ids, world.encode(world.caption(attrs)))


def test_training_runs_and_logs(run):
    lines = [json.loads(line) for line in (run / toy_train.LOSS_LOG).read_text().splitlines()]
    assert [r["step"] for r in lines] == [1, 2, 3, 4]
    assert all(np.isfinite(r["loss"]) for r in lines)
    assert (run / toy_train.LOSS_PLOT).is_file()
    assert json.loads((run / toy_train.RUN_CONFIG).read_text())["arch"] == "tiny"


def test_resume_is_bit_identical_to_an_uninterrupted_run(run, tmp_path):
    first = toy_train.train(TINY, tmp_path, stop_after=1, progress=False)
    assert (first.step, first.stopped) == (1, "stop_after")
    assert toy_train.train(None, tmp_path, progress=False).step == 4
    resumed = toy_train.restore_state(tmp_path, TINY)
    straight = toy_train.restore_state(run, TINY)
    for a, b in zip(jax.tree.leaves(resumed), jax.tree.leaves(straight)):
        np.testing.assert_array_equal(a, b)
    assert (tmp_path / toy_train.LOSS_LOG).read_text().count("\n") == 4
    with pytest.raises(toy_train.TrainError, match="other settings"):
        toy_train.train(dataclasses.replace(TINY, lr=1.0), tmp_path, progress=False)


def test_ema_follows_the_parameters_with_the_warmed_up_decay(tmp_path):
    toy_train.train(TINY, tmp_path, stop_after=1, progress=False)
    one = toy_train.restore_state(tmp_path, TINY)
    toy_train.train(None, tmp_path, stop_after=1, progress=False)
    two = toy_train.restore_state(tmp_path, TINY)
    decay = float(toy_train.ema_decay(TINY, one.step))
    assert decay == pytest.approx(2 / 11)
    for e1, p2, e2 in zip(jax.tree.leaves(one.ema), jax.tree.leaves(two.params), jax.tree.leaves(two.ema)):
        np.testing.assert_allclose(e2, e1 + (1 - decay) * (p2 - e1), rtol=1e-6, atol=1e-7)
    assert any(not np.array_equal(p, e) for p, e in zip(jax.tree.leaves(two.params), jax.tree.leaves(two.ema)))


def test_v_weighting_is_the_v_prediction_loss():
    """At a fixed x_t, |v̂ − v|² computed from ε̂ equals the "v" weight times |ε̂ − ε|²."""
    from ieadapt_jax.schedulers import make_schedule

    schedule = make_schedule(toy_model.SCHEDULER_CONFIG, 1)
    t = jnp.array([0, 500, 999])
    x0, eps, eps_hat = jax.random.normal(jax.random.key(0), (3, 3, 7))
    a = schedule.alphas_cumprod[t][:, None]
    x_t = jnp.sqrt(a) * x0 + jnp.sqrt(1 - a) * eps
    x0_hat = (x_t - jnp.sqrt(1 - a) * eps_hat) / jnp.sqrt(a)
    v_error = (jnp.sqrt(a) * eps_hat - jnp.sqrt(1 - a) * x0_hat) - (jnp.sqrt(a) * eps - jnp.sqrt(1 - a) * x0)
    v_config = dataclasses.replace(TINY, prediction="epsilon", zero_terminal_snr=False, loss_weighting="v")
    weights = toy_train.loss_weights(v_config, schedule, t)
    np.testing.assert_allclose(jnp.mean(v_error ** 2, -1), weights * jnp.mean((eps_hat - eps) ** 2, -1), rtol=1e-4)
    assert float(weights[2]) > 200 and float(weights[0]) == pytest.approx(1.0, abs=1e-3)
    np.testing.assert_array_equal(toy_train.loss_weights(TINY, schedule, t), 1.0)
    with pytest.raises(toy_train.TrainError, match="loss weighting"):
        dataclasses.replace(TINY, loss_weighting="snr")


def test_v_prediction_target_and_zero_terminal_snr_schedule():
    """v = √ᾱ·ε − √(1−ᾱ)·x0 (−x0 at ᾱ_999 = 0 under zero terminal SNR); ε is the target otherwise; bad combinations fail."""
    from ieadapt_jax.schedulers import make_schedule

    schedule = make_schedule(toy_model.scheduler_config("v_prediction", True), 1)
    assert float(schedule.alphas_cumprod[999]) == 0.0 and float(schedule.alphas_cumprod[0]) > 0.99
    sd = make_schedule(toy_model.SCHEDULER_CONFIG, 1)
    assert float(sd.alphas_cumprod[999]) > 0.004  # SD's own schedule leaves signal at t = 999
    x0, eps = jax.random.normal(jax.random.key(0), (2, 3, 2, 4, 4, 3))
    t = jnp.array([0, 500, 999])
    v = training_data.training_target("v_prediction", schedule, x0, eps, t)
    a = schedule.alphas_cumprod[t].reshape(3, 1, 1, 1, 1)
    np.testing.assert_allclose(v, jnp.sqrt(a) * eps - jnp.sqrt(1 - a) * x0, rtol=1e-6)
    np.testing.assert_allclose(v[2], -x0[2], rtol=1e-6)
    np.testing.assert_array_equal(training_data.training_target("epsilon", schedule, x0, eps, t), eps)
    with pytest.raises(toy_train.TrainError, match="v_prediction"):
        dataclasses.replace(TINY, prediction="epsilon")
    with pytest.raises(toy_train.TrainError, match="already is the v loss"):
        dataclasses.replace(TINY, prediction="v_prediction", loss_weighting="v")
    with pytest.raises(toy_train.TrainError, match="prediction"):
        dataclasses.replace(TINY, prediction="x0")


def test_a_v_prediction_zero_snr_run_exports_its_scheduler_and_samples(run):
    """The (v-prediction, zero-SNR) run's snapshot says so in its scheduler config and the pipeline samples it."""
    components = toy_model.load_toy(run / "model", cache=False)
    assert components.scheduler_config["prediction_type"] == "v_prediction"
    assert components.scheduler_config["rescale_betas_zero_snr"] is True
    video = text_to_video(components, "a large blue square moving left on a black background", num_frames=16,
                          height=32, width=32, num_inference_steps=3, progress=False).video
    assert video.shape == (16, 32, 32, 3) and video.std() > 0


def test_pyramid_noise_has_unit_variance_and_low_frequency_power():
    shape = (8, 4, 32, 32, 3)
    white = training_data.training_noise("white", jax.random.key(1), shape)
    pyramid = training_data.training_noise("pyramid", jax.random.key(1), shape)
    assert float(jnp.std(pyramid)) == pytest.approx(1.0, abs=0.02)
    assert float(jnp.std(white)) == pytest.approx(1.0, abs=0.02)

    def block_mean_std(x):  # std of 8x8 block means: the power at low spatial frequencies
        return float(jnp.std(x.reshape(8, 4, 4, 8, 4, 8, 3).mean(axis=(3, 5))))

    assert block_mean_std(white) == pytest.approx(1 / 8, rel=0.1)
    assert block_mean_std(pyramid) > 3 * block_mean_std(white)
    frames = pyramid.reshape(8, 4, -1)
    assert abs(float(jnp.corrcoef(frames[:, 0].ravel(), frames[:, 1].ravel())[0, 1])) < 0.05  # frames independent
    with pytest.raises(toy_train.TrainError, match="noise"):
        dataclasses.replace(TINY, noise="pink")
    with pytest.raises(toy_train.TrainError, match="min_timestep"):
        dataclasses.replace(TINY, min_timestep=1000)


def test_init_from_a_snapshot_starts_from_its_weights(run, tmp_path):
    config = dataclasses.replace(TINY, init_from=str(run / "model"), steps=1)
    state = toy_train.init_state(config)
    snapshot = toy_model.load_toy(run / "model", cache=False)
    expected = flat_params(nnx.List([snapshot.unet, snapshot.text_encoder]))
    assert flat_params(state.params).keys() == expected.keys()
    for key, value in flat_params(state.params).items():
        np.testing.assert_array_equal(value, expected[key], err_msg=str(key))
    assert toy_train.train(config, tmp_path / "fine", progress=False).step == 1
    with pytest.raises(toy_train.TrainError, match="--init-from .*not a toy-model snapshot"):
        toy_train.init_state(dataclasses.replace(TINY, init_from=str(tmp_path)))
    with pytest.raises(toy_train.TrainError, match="--init-from .* arch 'toy'"):
        toy_train.init_state(dataclasses.replace(TINY, arch="toy", init_from=str(run / "model")))


def test_fresh_text_encoder_keeps_the_snapshot_unet_and_draws_the_encoder_from_the_seed(run):
    config = dataclasses.replace(TINY, init_from=str(run / "model"), fresh_text_encoder=True, seed=7)
    params = flat_params(toy_train.initial_params(config))
    snapshot = toy_model.load_toy(run / "model", cache=False)
    seeded = flat_params(toy_model.build_models("tiny", seed=7))
    unet = {(0,) + k: v for k, v in flat_params(snapshot.unet).items()}
    text_keys = [k for k in params if k[0] == 1]
    assert params.keys() == seeded.keys() and text_keys
    for key, value in params.items():
        np.testing.assert_array_equal(value, unet[key] if key[0] == 0 else seeded[key], err_msg=str(key))
    old_text = {(1,) + k: v for k, v in flat_params(snapshot.text_encoder).items()}
    assert any(not np.array_equal(params[k], old_text[k]) for k in text_keys)
    with pytest.raises(toy_train.TrainError, match="give init_from"):
        dataclasses.replace(TINY, fresh_text_encoder=True)


def test_training_may_start_from_a_snapshot_of_another_world_version(run, tmp_path):
    import shutil

    old = tmp_path / "old"
    shutil.copytree(run / "model", old)
    info = json.loads((old / toy_model.TOY_INFO).read_text())
    (old / toy_model.TOY_INFO).write_text(json.dumps({**info, "world_version": "toyworld-0"}))
    with pytest.raises(toy_model.ToySnapshotError, match="toyworld-0"):
        toy_model.load_toy(old, cache=False)
    params = flat_params(toy_train.initial_params(dataclasses.replace(TINY, init_from=str(old))))
    expected = flat_params(toy_train.initial_params(dataclasses.replace(TINY, init_from=str(run / "model"))))
    for key, value in expected.items():
        np.testing.assert_array_equal(params[key], value, err_msg=str(key))
    (old / toy_model.TOY_INFO).write_text(json.dumps({**info, "vocab": info["vocab"][:-1]}))
    with pytest.raises(toy_train.TrainError, match="--init-from"):
        toy_train.initial_params(dataclasses.replace(TINY, init_from=str(old)))


DATA_PARALLEL = """
import json, sys, jax, numpy as np
from ieadapt_jax.toy import train as toy_train
config = toy_train.TrainConfig(arch="tiny", steps=2, batch=2, precision="fp32", warmup=1, log_every=1)
states = []
for devices, out in ((1, sys.argv[1]), (2, sys.argv[2])):
    toy_train.train(config, out, progress=False, devices=devices)
    states.append(toy_train.restore_state(out, config))
# Parameters and their average agree to float summation order. Adam turns a gradient that is roundoff
# (~1e-10, e.g. a bias before a GroupNorm) into a step of up to lr * |g| / eps ~ 1e-5 of either sign, so
# atol is 5e-5: 10x below lr, the size of any real disagreement. Adam's moments are left out for that reason.
for a, b in zip(jax.tree.leaves((states[0].params, states[0].ema)), jax.tree.leaves((states[1].params, states[1].ema))):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=5e-5)
logs = [[json.loads(line)["loss"] for line in open(f"{out}/loss.jsonl")] for out in sys.argv[1:]]
np.testing.assert_allclose(logs[0], logs[1], rtol=1e-5)
try:
    toy_train.data_mesh(2, 3)
except toy_train.TrainError as e:
    assert "does not split evenly" in str(e)
else:
    raise AssertionError("batch 3 over 2 devices was accepted")
print("same")
"""


def test_data_parallel_training_over_two_devices_matches_one(tmp_path):
    import os
    import subprocess
    import sys

    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2", "JAX_PLATFORMS": "cpu"}
    done = subprocess.run([sys.executable, "-c", DATA_PARALLEL, str(tmp_path / "one"), str(tmp_path / "two")],
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().endswith("same")


def test_export_load_round_trip_is_exact(run, tmp_path):
    state = toy_train.restore_state(run, TINY)
    models = toy_model.abstract_models("tiny")
    nnx.update(models, jax.tree.map(lambda p: p.astype(jnp.bfloat16).astype(jnp.float32), state.ema))
    components = toy_model.load_toy(run / "model", cache=False)
    expected = flat_params(models)
    loaded = {**{(0,) + k: v for k, v in flat_params(components.unet).items()},
              **{(1,) + k: v for k, v in flat_params(components.text_encoder).items()}}
    assert loaded.keys() == expected.keys()
    for key, value in expected.items():
        np.testing.assert_array_equal(loaded[key], value, err_msg=str(key))
    graphdef, state = nnx.split(models)
    ours = denoise(graphdef, state)
    theirs = denoise(graphdef, nnx.state(nnx.List([components.unet, components.text_encoder])))
    np.testing.assert_array_equal(ours, theirs)


@functools.partial(jax.jit, static_argnums=0)
def denoise(graphdef, state):
    """The UNet's ε for a fixed noisy video and caption."""
    unet, text_encoder = nnx.merge(graphdef, state)
    ids = jnp.asarray(world.encode(["a small red circle moving left on a white background"]))
    x = jax.random.normal(jax.random.key(0), (1, world.FRAMES, world.HEIGHT, world.WIDTH, 3))
    return unet(x, jnp.array([500]), text_encoder.prompt_embeds(ids))[0]


def test_snapshot_keys_and_shapes_are_diffusers_and_transformers(run):
    diffusers = pytest.importorskip("diffusers")
    transformers = pytest.importorskip("transformers")
    from safetensors.numpy import load_file

    snapshot = run / "model"
    unet = diffusers.UNetMotionModel.from_config(json.loads((snapshot / "unet" / "config.json").read_text()))
    text = transformers.CLIPTextModel(transformers.CLIPTextConfig.from_pretrained(snapshot / "text_encoder"))
    for folder, file, module in (("unet", "diffusion_pytorch_model.safetensors", unet),
                                 ("text_encoder", "model.safetensors", text)):
        ours = {k: tuple(v.shape) for k, v in load_file(snapshot / folder / file).items()}
        theirs = {k: tuple(v.shape) for k, v in module.state_dict().items() if not k.endswith("position_ids")}
        assert ours == theirs


def test_toy_components_run_the_text_to_video_pipeline(run):
    components = toy_model.load_toy(run / "model", cache=False)
    result = text_to_video(components, "a large blue square bouncing on a black background", num_frames=16,
                           height=32, width=32, num_inference_steps=2, progress=False)
    assert result.video.shape == (16, 32, 32, 3) and result.video.dtype == np.uint8
    with pytest.raises(world.VocabularyError, match="purple"):
        text_to_video(components, "a purple circle", height=32, width=32, num_inference_steps=2, progress=False)


def test_eval_writes_the_report(run, tmp_path, capsys):
    main(["eval", "--model", str(run / "model"), "--out", str(tmp_path), "--num", "4", "--steps", "2", "--batch", "1",
          "--quiet"])
    report = json.loads((tmp_path / "eval.json").read_text())
    assert set(report["accuracy"]) == {"colour", "shape", "motion", "size"}
    assert set(report["passed"]) == set(report["bars"]) == {"colour", "shape", "motion"}
    assert report["num"] == 4 and len(report["videos"]) == 4
    assert (tmp_path / "samples.gif").stat().st_size > 0
    assert "accuracy" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["train", "--steps", "2"], "--out"),
    (["fly"], "invalid choice"),
    (["eval", "--model", "{tmp}"], "not a toy-model snapshot"),
    (["export", "--out", "{tmp}"], "not a training run folder"),
])
def test_cli_errors_exit_2(argv, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        raise SystemExit(main([a.format(tmp=tmp_path) for a in argv]))
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
