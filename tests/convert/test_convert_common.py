"""convert.readers, convert.fill, convert.cache: folder and file reading, the strict converter, and the conversion cache."""
import json
import os

import ieadapt_jax.convert.cache as convert_cache
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
import torch
from flax import nnx
from ieadapt_jax.convert import (
    ConversionError,
    cached_load,
    fill_module,
    read_folder,
    read_state_dict_file,
)
from safetensors.numpy import save_file


class Tiny(nnx.Module):
    """Named like the torch module below: blocks.0 Linear, blocks.1 Conv, norm, embed, conv3d."""

    def __init__(self, dtype=jnp.float32, *, rngs: nnx.Rngs):
        kw = dict(param_dtype=dtype, rngs=rngs)
        self.blocks = nnx.List([nnx.Linear(3, 5, **kw), nnx.Conv(2, 4, (3, 3), padding="VALID", **kw)])
        self.norm = nnx.GroupNorm(4, num_groups=2, **kw)
        self.embed = nnx.Embed(7, 4, **kw)
        self.conv3d = nnx.Conv(2, 3, (2, 3, 3), padding="VALID", **kw)
        self.proj = nnx.Linear(4, 6, **kw)  # filled from a 1x1 conv weight


def _torch_tiny():
    torch.manual_seed(0)
    m = torch.nn.Module()
    m.blocks = torch.nn.ModuleList([torch.nn.Linear(3, 5), torch.nn.Conv2d(2, 4, 3)])
    m.norm = torch.nn.GroupNorm(2, 4)
    m.embed = torch.nn.Embedding(7, 4)
    m.conv3d = torch.nn.Conv3d(2, 3, (2, 3, 3))
    m.proj = torch.nn.Conv2d(4, 6, 1)
    return m


def _state(m):
    return {k: v.detach().numpy().copy() for k, v in m.state_dict().items()}


def _params(module):
    return {k: np.asarray(v.get_value()).copy() for k, v in nnx.to_flat_state(nnx.state(module, nnx.Param))}


def _save_folder(path, tensors, name="model.safetensors"):
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps({"dim": 4}))
    save_file(tensors, path / name)


def test_fill_module_layouts_match_torch():
    tm = _torch_tiny()
    ours = Tiny(rngs=nnx.Rngs(0))
    fill_module(ours, _state(tm))
    x = np.random.default_rng(0).standard_normal((2, 8, 8, 2)).astype(np.float32)
    with torch.no_grad():
        ref = tm.blocks[1](torch.as_tensor(x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).numpy()
        ref_lin = tm.blocks[0](torch.ones(1, 3)).numpy()
        ref_3d = tm.conv3d(torch.ones(1, 2, 4, 5, 5)).permute(0, 2, 3, 4, 1).numpy()
        ref_proj = tm.proj(torch.ones(1, 4, 1, 1))[:, :, 0, 0].numpy()
    np.testing.assert_allclose(ours.blocks[1](jnp.asarray(x)), ref, atol=1e-5)
    np.testing.assert_allclose(ours.blocks[0](jnp.ones((1, 3))), ref_lin, atol=1e-6)
    np.testing.assert_allclose(ours.conv3d(jnp.ones((1, 4, 5, 5, 2))), ref_3d, atol=1e-5)
    np.testing.assert_allclose(ours.proj(jnp.ones((1, 4))), ref_proj, atol=1e-6)
    np.testing.assert_array_equal(ours.norm.scale[...], tm.norm.weight.detach().numpy())
    np.testing.assert_array_equal(ours.embed.embedding[...], tm.embed.weight.detach().numpy())


def test_fill_module_casts_to_param_dtype_and_fills_abstract_modules():
    model = nnx.eval_shape(lambda: Tiny(jnp.bfloat16, rngs=nnx.Rngs(0)))
    fill_module(model, _state(_torch_tiny()))
    assert model.blocks[1].kernel[...].dtype == jnp.bfloat16
    assert isinstance(model.blocks[1].kernel[...], jnp.ndarray)


@pytest.mark.parametrize(
    "break_it, pattern",
    [
        (lambda t: t.pop("blocks.0.bias"), r"(?s)no source key in w\.safetensors.*blocks\.0\.bias"),
        (lambda t: t.update({"blocks.7.weight": np.zeros(3, np.float32)}), r"blocks\.7\.weight \(from w\.safetensors\)"),
        (lambda t: t.update({"norm.running_mean": np.zeros(4, np.float32)}), r"norm\.running_mean \(from w\.safetensors\)"),
        (
            lambda t: t.update({"blocks.1.weight": np.zeros((4, 2, 5, 5), np.float32)}),
            r"'blocks\.1\.weight' \(from w\.safetensors\): source shape \(4, 2, 5, 5\) \(as \(5, 5, 2, 4\) in our layout\) "
            r"!= parameter shape \(3, 3, 2, 4\)",
        ),
        (lambda t: t.update({"norm.bias": np.zeros(4, np.int64)}), r"'norm\.bias' \(from w\.safetensors\): dtype int64"),
    ],
    ids=["missing", "extra", "buffer", "shape", "dtype"],
)
def test_fill_module_errors_name_key_and_file_and_leave_module_unchanged(break_it, pattern):
    tensors = _state(_torch_tiny())
    break_it(tensors)
    model = Tiny(rngs=nnx.Rngs(1))
    before = _params(model)
    with pytest.raises(ConversionError, match=pattern):
        fill_module(model, tensors, sources={k: "w.safetensors" for k in tensors}, what="Tiny")
    after = _params(model)
    assert all(np.array_equal(before[k], after[k]) for k in before)


def test_fill_module_skip_and_rename():
    tensors = {"model." + k: v for k, v in _state(_torch_tiny()).items()}
    tensors["model.embed.position_ids"] = np.arange(7)
    tensors["model.head.weight"] = np.zeros(1, np.float32)
    model = Tiny(rngs=nnx.Rngs(0))
    fill_module(
        model,
        tensors,
        skip=("position_ids",),
        rename=lambda k: None if k.startswith("model.head.") else k.removeprefix("model."),
    )
    np.testing.assert_array_equal(model.blocks[0].bias[...], tensors["model.blocks.0.bias"])


def test_read_folder_single_file_and_errors(tmp_path):
    tensors = _state(_torch_tiny())
    _save_folder(tmp_path / "m", tensors, "diffusion_pytorch_model.safetensors")
    ckpt = read_folder(tmp_path / "m")
    assert ckpt.config == {"dim": 4} and set(ckpt.tensors) == set(tensors)
    assert set(ckpt.sources.values()) == {str(tmp_path / "m" / "diffusion_pytorch_model.safetensors")}

    with pytest.raises(ConversionError, match="does not exist"):
        read_folder(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConversionError, match="no config.json"):
        read_folder(tmp_path / "empty")
    (tmp_path / "empty" / "config.json").write_text("{}")
    with pytest.raises(ConversionError, match="no weight file"):
        read_folder(tmp_path / "empty")
    (tmp_path / "empty" / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all!")
    with pytest.raises(ConversionError, match=r"cannot read .*model\.safetensors"):
        read_folder(tmp_path / "empty")


def test_read_folder_sharded_index(tmp_path):
    tensors = _state(_torch_tiny())
    keys = sorted(tensors)
    shards = {"model-00001-of-00002.safetensors": keys[:4], "model-00002-of-00002.safetensors": keys[4:]}
    folder = tmp_path / "sharded"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    for name, ks in shards.items():
        save_file({k: tensors[k] for k in ks}, folder / name)
    weight_map = {k: name for name, ks in shards.items() for k in ks}
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    ckpt = read_folder(folder)
    assert len(ckpt.files) == 2 and ckpt.sources[keys[-1]].endswith("00002-of-00002.safetensors")
    model = Tiny(rngs=nnx.Rngs(0))
    fill_module(model, ckpt.tensors, sources=ckpt.sources)

    weight_map[keys[0]] = "model-00002-of-00002.safetensors"  # the index disagrees with the shards
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    with pytest.raises(ConversionError, match=r"shard .*00001-of-00002.safetensors does not match its index"):
        read_folder(folder)


def test_read_state_dict_file_formats(tmp_path):
    tm = _torch_tiny()
    tensors = _state(tm)
    torch.save({"state_dict": tm.state_dict(), "global_step": 3}, tmp_path / "wrapped.ckpt")
    torch.save(tm.state_dict(), tmp_path / "plain.pth")
    for name in ("wrapped.ckpt", "plain.pth"):
        loaded = read_state_dict_file(tmp_path / name)
        assert set(loaded) == set(tensors)
        np.testing.assert_array_equal(loaded["blocks.1.weight"], tensors["blocks.1.weight"])
    (tmp_path / "pickled").mkdir()
    (tmp_path / "pickled" / "config.json").write_text("{}")
    torch.save(tm.state_dict(), tmp_path / "pickled" / "diffusion_pytorch_model.bin")
    assert set(read_folder(tmp_path / "pickled").tensors) == set(tensors)

    bf16 = torch.arange(6, dtype=torch.bfloat16).reshape(2, 3)
    torch.save({"w": bf16}, tmp_path / "bf16.pt")
    from safetensors.torch import save_file as torch_save_file

    torch_save_file({"w": bf16, "f": torch.ones(2)}, tmp_path / "bf16.safetensors")
    for name in ("bf16.pt", "bf16.safetensors"):
        w = read_state_dict_file(tmp_path / name)["w"]
        assert w.dtype == ml_dtypes.bfloat16
        np.testing.assert_array_equal(w.astype(np.float32), np.arange(6).reshape(2, 3))


class _Payload:
    def __reduce__(self):
        return (os.system, ("echo pwned > pwned.txt",))


def test_pickles_that_would_run_code_are_refused(tmp_path):
    torch.save({"w": torch.ones(1), "evil": _Payload()}, tmp_path / "evil.ckpt")
    with pytest.raises(ConversionError, match=r"evil\.ckpt.*weights_only"):
        read_state_dict_file(tmp_path / "evil.ckpt")
    assert not (tmp_path / "pwned.txt").exists()
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(ConversionError, match="unknown weight format"):
        read_state_dict_file(tmp_path / "notes.txt")


def test_missing_torch_is_explained(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_torch(name, *args, **kwargs):
        if name == "torch":
            raise ImportError("No module named 'torch'")
        return real_import(name, *args, **kwargs)

    torch.save({"w": torch.ones(1)}, tmp_path / "m.ckpt")
    monkeypatch.setattr(builtins, "__import__", no_torch)
    with pytest.raises(ConversionError, match=r"m\.ckpt is a pickled PyTorch checkpoint; reading it needs torch"):
        read_state_dict_file(tmp_path / "m.ckpt")


def _cache_setup(tmp_path):
    tensors = _state(_torch_tiny())
    _save_folder(tmp_path / "src", tensors)
    calls = []

    def convert(module):
        calls.append(1)
        ckpt = read_folder(tmp_path / "src")
        fill_module(module, ckpt.tensors, sources=ckpt.sources)

    return [str(tmp_path / "src" / "model.safetensors")], convert, calls


def test_cache_hit_skips_conversion(tmp_path, monkeypatch):
    monkeypatch.setenv("IEADAPT_JAX_CACHE", str(tmp_path / "cache"))
    files, convert, calls = _cache_setup(tmp_path)
    first = Tiny(rngs=nnx.Rngs(0))
    assert cached_load(first, files, convert) is False
    second = nnx.eval_shape(lambda: Tiny(rngs=nnx.Rngs(5)))
    assert cached_load(second, files, convert) is True
    assert len(calls) == 1
    a, b = _params(first), _params(second)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [convert_cache.cache_key(first, files)]

    # another dtype or changed bytes (same size, same path) are different entries
    assert cached_load(Tiny(jnp.bfloat16, rngs=nnx.Rngs(0)), files, convert) is False
    tensors = read_state_dict_file(files[0])
    tensors["norm.bias"] = tensors["norm.bias"] + 1
    save_file(tensors, files[0])
    changed = Tiny(rngs=nnx.Rngs(0))
    assert cached_load(changed, files, convert) is False
    np.testing.assert_array_equal(changed.norm.bias[...], tensors["norm.bias"])
    assert len(calls) == 3


def test_cache_survives_a_crash_mid_write(tmp_path, monkeypatch):
    files, convert, calls = _cache_setup(tmp_path)
    cache = tmp_path / "cache"

    def killed(*args, **kwargs):
        raise KeyboardInterrupt("killed while the entry was being moved into place")

    with monkeypatch.context() as m:
        m.setattr(convert_cache.os, "rename", killed)
        with pytest.raises(KeyboardInterrupt):
            cached_load(Tiny(rngs=nnx.Rngs(0)), files, convert, cache_dir=cache)
    assert list(cache.iterdir()) == []  # no partial entry, no temporary folder

    # a writer killed hard leaves only a temporary folder, which is never read as an entry
    key = convert_cache.cache_key(Tiny(rngs=nnx.Rngs(0)), files)
    (cache / f".tmp-{key}-crashed" / "state").mkdir(parents=True)
    (cache / key).mkdir()  # and an entry folder without meta.json is not an entry
    assert cached_load(Tiny(rngs=nnx.Rngs(0)), files, convert, cache_dir=cache) is False
    restored = Tiny(rngs=nnx.Rngs(3))
    assert cached_load(restored, files, convert, cache_dir=cache) is True
    assert len(calls) == 2
    np.testing.assert_array_equal(restored.blocks[0].bias[...], read_state_dict_file(files[0])["blocks.0.bias"])


def test_unwritable_cache_only_warns(tmp_path):
    files, convert, calls = _cache_setup(tmp_path)
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    with pytest.warns(UserWarning, match="could not write the conversion cache"):
        assert cached_load(Tiny(rngs=nnx.Rngs(0)), files, convert, cache_dir=blocker / "cache") is False
    assert len(calls) == 1
