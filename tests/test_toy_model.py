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
from ieadapt_jax.toy import world
from ieadapt_jax.toy.__main__ import main

TINY = toy_train.TrainConfig(arch="tiny", steps=4, batch=1, precision="fp32", warmup=1, checkpoint_every=4,
                             log_every=1)


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
    ids = jax.jit(toy_train.caption_ids)(attrs)
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


def test_export_load_round_trip_is_exact(run, tmp_path):
    state = toy_train.restore_state(run, TINY)
    models = toy_model.abstract_models("tiny")
    nnx.update(models, jax.tree.map(lambda p: p.astype(jnp.bfloat16).astype(jnp.float32), state.params))
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
        main([a.format(tmp=tmp_path) for a in argv])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
