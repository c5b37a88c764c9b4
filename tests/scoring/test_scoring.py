"""ieadapt_jax.scoring and ieadapt_jax.image_resize: exact reference preprocessing, each metric against
its reference computed with the PyTorch models (random weights) and the reference formulas, the
weights-folder layout, the registry, and the sweep plug-ins."""
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import PIL.Image
import pytest
import torch
import transformers
from ieadapt_jax.models.resize import resize_like_pil, resize_like_torch
from support.metric_models import random_videos, save_tiny_clip, save_tiny_dino
from support.reference_packages import reference_modules

from ieadapt_jax import scoring
from ieadapt_jax.cli import score
from ieadapt_jax.sweep.weighted_metrics import register_sweep_metrics

ATOL = 1e-4
PIL_FILTERS = {"bicubic": PIL.Image.BICUBIC, "bilinear": PIL.Image.BILINEAR}


# ------------------------------------------------------------------------------------------ resizing


@pytest.mark.parametrize("src, dst", [
    ((512, 512), (224, 224)), ((480, 640), (224, 298)), ((31, 29), (17, 40)), ((64, 20), (10, 19)),
    ((33, 35), (50, 20)), ((12, 9), (40, 30)),
])
def test_resize_like_pil_is_bit_exact(src, dst):
    image = np.random.default_rng(sum(src)).integers(0, 256, (*src, 3), dtype=np.uint8)
    for name, flag in PIL_FILTERS.items():
        expected = np.asarray(PIL.Image.fromarray(image).resize(dst[::-1], flag))
        np.testing.assert_array_equal(jax.jit(resize_like_pil, static_argnums=(1, 2))(image, dst, name), expected)


def test_resize_like_torch_matches_torchvision():
    frames = np.random.default_rng(0).integers(0, 256, (2, 96, 160, 3), dtype=np.uint8)
    size = (56, 93)
    with reference_modules() as ref:
        tf = ref.torchvision.transforms.functional
        modes = ref.torchvision.transforms.InterpolationMode
        tensor = torch.from_numpy(frames).permute(0, 3, 1, 2)
        expected = {
            mode: tf.resize(tensor, list(size), interpolation=getattr(modes, mode.upper()), antialias=False)
            .permute(0, 2, 3, 1).numpy()
            for mode in ("bilinear", "bicubic")
        }
    resize = jax.jit(resize_like_torch, static_argnums=(1, 2))
    for mode, want in expected.items():
        ours = np.asarray(resize(frames, size, mode))
        # uint8 rounding: a value within float32 summation-order error (~1e-4) of k + 0.5 may round the
        # other way than torch's fused multiply-adds; allow a handful of one-level differences.
        diff = np.abs(ours.astype(int) - want)
        assert diff.max() <= 1 and (diff > 0).mean() < 1e-3, (mode, diff.max(), (diff > 0).sum())
        with torch.no_grad():
            floats = torch.nn.functional.interpolate(tensor.float(), size=size, mode=mode, align_corners=False)
        np.testing.assert_allclose(
            resize(frames.astype(np.float32), size, mode), floats.permute(0, 2, 3, 1).numpy(), atol=1e-3
        )


# ------------------------------------------------------------------------------------------ metrics vs references


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A weights folder in the documented layout with tiny random models, and the torch references."""
    root = tmp_path_factory.mktemp("weights")
    clip, tok = save_tiny_clip(root / "clip", projection_dim=24)
    torch.manual_seed(2)
    head = torch.nn.Linear(24, 1)
    (root / "aesthetic").mkdir()
    torch.save(head.state_dict(), root / "aesthetic" / "sa_0_4_vit_l_14_linear.pth")
    dino = save_tiny_dino(root / "dino", kind="vit", image_size=224, patch_size=16)
    (root / "lpips").mkdir()
    torch.manual_seed(3)
    convs = {0: (64, 3, 11), 3: (192, 64, 5), 6: (384, 192, 3), 8: (256, 384, 3), 10: (256, 256, 3)}
    trunk = {f"features.{i}.weight": torch.randn(o, c, k, k) * 0.05 for i, (o, c, k) in convs.items()}
    trunk |= {f"features.{i}.bias": torch.randn(o) * 0.05 for i, (o, _, _) in convs.items()}
    torch.save(trunk, root / "lpips" / "alexnet-owt-7be5be79.pth")
    torch.save({f"lin{k}.model.1.weight": torch.rand(1, c, 1, 1) for k, c in enumerate((64, 192, 384, 256, 256))}, root / "lpips" / "alex.pth")
    weights = scoring.load_metric_weights(root, cache=False)
    return dict(root=root, clip=clip, tok=tok, head=head, dino=dino, weights=weights)


def _clip_features(clip, tok, frames, prompts):
    """Unit image [M, P] and text [N, P] features as transformers computes them (torchmetrics / diffusers)."""
    pixels = transformers.CLIPImageProcessorPil()(list(frames), return_tensors="pt")["pixel_values"]
    tokens = tok(prompts, padding="max_length", max_length=77, truncation=True, return_tensors="pt")
    with torch.no_grad():
        image, text = clip.get_image_features(pixels), clip.get_text_features(**tokens)
    image, text = (x if isinstance(x, torch.Tensor) else x.pooler_output for x in (image, text))
    return (image / image.norm(dim=-1, keepdim=True)).numpy(), (text / text.norm(dim=-1, keepdim=True)).numpy()


def test_clip_score_and_directional_similarity(folder):
    w, clip, tok = folder["weights"], folder["clip"], folder["tok"]
    edited, source = random_videos((2, 3, 80, 120, 3), seed=1), random_videos((2, 3, 80, 120, 3), seed=2)
    targets, sources = ["a cat", "a dog"], ["a dog", "a cat!"]
    image, text = _clip_features(clip, tok, edited.reshape(6, 80, 120, 3), targets)
    source_image, source_text = _clip_features(clip, tok, source.reshape(6, 80, 120, 3), sources)
    image, source_image = image.reshape(2, 3, -1), source_image.reshape(2, 3, -1)
    # torchmetrics CLIPScore of each frame: max(100 * cos, 0); mean over frames
    expected = np.maximum(100 * np.einsum("nfp,np->nf", image, text), 0).mean(1)
    np.testing.assert_allclose(scoring.clip_score(w.clip, w.tokenizer, edited, targets, batch_size=4), expected, atol=ATOL)
    # diffusers' DirectionalSimilarity: F.cosine_similarity(img_2 - img_1, text_2 - text_1), per frame
    with torch.no_grad():
        direction = torch.nn.functional.cosine_similarity(
            torch.from_numpy(image - source_image), torch.from_numpy(text - source_text)[:, None], dim=-1
        ).numpy()
    ours = scoring.clip_directional_similarity(w.clip, w.tokenizer, edited, source, targets, sources, batch_size=4)
    np.testing.assert_allclose(ours, direction.mean(1), atol=ATOL)
    same = scoring.clip_directional_similarity(w.clip, w.tokenizer, edited, edited, targets, sources, batch_size=4)
    np.testing.assert_allclose(same, 0.0, atol=1e-6)  # no image change: zero direction, cosine 0 as in torch


def _vbench_subject_consistency(dino, ref, videos):
    """VBench's subject_consistency loop (dino_transform on uint8 tensors; DINO hub position
    interpolation), with the transformers ViTModel holding the DINO weights."""
    t = ref.torchvision.transforms
    transform = t.Compose([
        t.Resize(size=224, antialias=False), t.Lambda(lambda x: x.float().div(255.0)),
        t.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    ])

    def hub_positions(embeddings, height, width):  # facebookresearch/dino interpolate_pos_encoding
        table = dino.embeddings.position_embeddings
        n = table.shape[1] - 1
        side = int(math.sqrt(n))
        h0, w0 = height // 16 + 0.1, width // 16 + 0.1
        grid = table[:, 1:].reshape(1, side, side, -1).permute(0, 3, 1, 2)
        grid = torch.nn.functional.interpolate(grid, scale_factor=(h0 / math.sqrt(n), w0 / math.sqrt(n)), mode="bicubic")
        return torch.cat([table[:, :1], grid.permute(0, 2, 3, 1).reshape(1, -1, table.shape[-1])], dim=1)

    dino.embeddings.interpolate_pos_encoding = hub_positions
    scores = []
    for video in videos:
        images = transform(torch.from_numpy(video).permute(0, 3, 1, 2))
        total, first, former = 0.0, None, None
        for i in range(len(images)):
            with torch.no_grad():
                features = dino(images[i].unsqueeze(0), interpolate_pos_encoding=True).last_hidden_state[:, 0]
            features = torch.nn.functional.normalize(features, dim=-1, p=2)
            if i == 0:
                first = features
            else:
                sim_pre = max(0.0, torch.nn.functional.cosine_similarity(former, features).item())
                sim_fir = max(0.0, torch.nn.functional.cosine_similarity(first, features).item())
                total += (sim_pre + sim_fir) / 2
            former = features
        scores.append(total / (len(images) - 1))
    del dino.embeddings.interpolate_pos_encoding
    return np.array(scores)


def test_subject_consistency_matches_vbench(folder):
    videos = random_videos((2, 4, 60, 100, 3), seed=3)  # 224 x 373 after VBench's resize: interpolated positions
    with reference_modules() as ref:
        expected = _vbench_subject_consistency(folder["dino"], ref, videos)
    ours = scoring.subject_consistency(folder["weights"].dino, videos, batch_size=4)
    np.testing.assert_allclose(ours, expected, atol=ATOL)


# ------------------------------------------------------------------------------------------ folder, registry, plug-ins


def test_weights_folder_and_registry(folder):
    w = folder["weights"]
    assert w.available == ("clip_score", "clip_directional_similarity", "aesthetic_score", "subject_consistency", "lpips")
    assert len(w.messages) == 1 and w.messages[0].startswith("lpips_vgg skipped: no lpips/vgg.pth")
    videos, references = random_videos((2, 3, 64, 64, 3), seed=4), random_videos((2, 3, 64, 64, 3), seed=5)
    result = scoring.compute_metrics(
        w, videos=videos, references=references, prompts=["a cat", "a dog"], reference_prompts="a dog", batch_size=4
    )
    assert sorted(result.scores) == sorted(w.available) and result.messages == [w.messages[0]]
    assert all(v.shape == (2,) and np.isfinite(v).all() for v in result.scores.values())
    # the aesthetic head is the torch Linear on the unit CLIP embedding, averaged over frames
    image, _ = _clip_features(folder["clip"], folder["tok"], videos.reshape(6, 64, 64, 3), ["a cat"])
    with torch.no_grad():
        expected = folder["head"](torch.from_numpy(image))[:, 0].reshape(2, 3).mean(1).numpy()
    np.testing.assert_allclose(result.scores["aesthetic_score"], expected, atol=ATOL)
    np.testing.assert_allclose(
        result.scores["lpips"], scoring.lpips_distance(w.lpips["alex"], videos, references, batch_size=2), atol=1e-6
    )
    alone = scoring.compute_metrics(w, videos=videos, names=["lpips", "subject_consistency", "clip_score"])
    assert list(alone.scores) == ["subject_consistency"]
    assert alone.messages == ["lpips skipped: it needs references", "clip_score skipped: it needs prompts"]
    with pytest.raises(scoring.MetricError, match="unknown metric"):
        scoring.compute_metrics(w, videos=videos, names=["fid"])


def test_weights_folder_messages_and_errors(tmp_path):
    empty = scoring.load_metric_weights(tmp_path)
    assert empty.available == ()
    assert [m.split(" skipped")[0] for m in empty.messages] == [
        "clip_score, clip_directional_similarity, aesthetic_score", "aesthetic_score", "subject_consistency", "lpips", "lpips_vgg",
    ]
    with pytest.raises(scoring.MetricError, match="does not exist"):
        scoring.load_metric_weights(tmp_path / "missing")
    save_tiny_clip(tmp_path / "clip", projection_dim=16, tokenizer=False)
    (tmp_path / "aesthetic").mkdir()
    torch.save(torch.nn.Linear(24, 1).state_dict(), tmp_path / "aesthetic" / "head.pth")
    (tmp_path / "lpips").mkdir()
    torch.save({}, tmp_path / "lpips" / "vgg.pth")
    w = scoring.load_metric_weights(tmp_path, cache=False)
    assert w.available == ()
    assert any("no tokenizer files" in m for m in w.messages)
    assert any("takes 24-d CLIP embeddings" in m and "gives 16-d" in m for m in w.messages)
    assert any(m.startswith("lpips_vgg skipped") and "vgg16*.pth" in m for m in w.messages)
    torch.save(torch.nn.Linear(24, 1).state_dict(), tmp_path / "aesthetic" / "other.safetensors")
    with pytest.raises(scoring.MetricError, match="ambiguous weights"):
        scoring.load_metric_weights(tmp_path, cache=False)


def test_input_errors(folder):
    w = folder["weights"]
    video = random_videos((1, 2, 32, 32, 3))
    with pytest.raises(scoring.MetricError, match=r"uint8 RGB videos \[N, F, H, W, 3\]"):
        scoring.subject_consistency(w.dino, video[0])
    with pytest.raises(scoring.MetricError, match=r"uint8 RGB videos"):
        scoring.subject_consistency(w.dino, video.astype(np.float32))
    with pytest.raises(scoring.MetricError, match=">= 2 frames"):
        scoring.subject_consistency(w.dino, video[:, :1])
    with pytest.raises(scoring.MetricError, match="must match videos"):
        scoring.lpips_distance(w.lpips["alex"], video, video[:, :, :16])
    with pytest.raises(scoring.MetricError, match="one string or 1 strings"):
        scoring.clip_score(w.clip, w.tokenizer, video, ["a", "b"])
    with pytest.raises(scoring.MetricError, match="batch_size"):
        scoring.clip_image_embeddings(w.clip, video, batch_size=0)


def test_sweep_plugins(folder, monkeypatch, tmp_path):
    from ieadapt_jax.sweep import metrics as sweep

    monkeypatch.setenv("IEADAPT_JAX_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(sweep, "METRICS", dict(sweep.METRICS))  # keep the global registry as it was
    registered = register_sweep_metrics(folder["root"], log=lambda message: None)
    names = ("clip_score", "aesthetic_score", "subject_consistency", "lpips")
    assert all(n in sweep.METRICS for n in names) and "lpips_vgg" not in sweep.METRICS
    chosen = [sweep.METRICS[n] for n in names]
    prompts = ["a dog", "a cat"]
    states = sweep.setup_metrics(chosen, None, prompts)
    videos, baselines = random_videos((2, 3, 64, 64, 3), seed=6), random_videos((2, 3, 64, 64, 3), seed=7)
    measured = jax.jit(lambda s, v, b, i: jax.lax.map(lambda a: sweep.measure(chosen, s, *a), (v, b, i)))(
        states, jnp.asarray(videos), jnp.asarray(baselines), jnp.asarray([1, 0], jnp.int32)
    )
    direct = scoring.compute_metrics(
        registered, videos=videos, references=baselines, prompts=["a cat", "a dog"], names=names, batch_size=4
    ).scores
    for name in names:
        np.testing.assert_allclose(measured[name], direct[name], atol=ATOL)


def _frame_folder(path, video):
    path.mkdir()
    for i, frame in enumerate(video):
        PIL.Image.fromarray(frame).save(path / f"{i:03d}.png")
    return str(path)


def test_command_line(folder, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("IEADAPT_JAX_CACHE", str(tmp_path / "cache"))  # the CLI caches converted CLIP / DINO
    videos, references = random_videos((2, 3, 48, 64, 3), seed=8), random_videos((2, 3, 48, 64, 3), seed=9)
    paths = [_frame_folder(tmp_path / f"v{i}", v) for i, v in enumerate(videos)]
    refs = [_frame_folder(tmp_path / f"r{i}", v) for i, v in enumerate(references)]
    argv = ["--metrics-weights", str(folder["root"]), "--video", *paths, "--reference", *refs,
            "--prompt", "a cat", "--reference-prompt", "a dog", "a cat!", "--batch-size", "4", "--json", str(tmp_path / "s.json")]
    assert score.main(argv) == 0
    out = capsys.readouterr()
    assert "lpips_vgg skipped" in out.err
    table = json.loads((tmp_path / "s.json").read_text())
    direct = scoring.compute_metrics(
        folder["weights"], videos=videos, references=references, prompts="a cat", reference_prompts=["a dog", "a cat!"], batch_size=4
    ).scores
    for name, values in direct.items():
        np.testing.assert_allclose([table[p][name] for p in paths], values, atol=1e-6)
    assert f"{paths[0]}\tclip_score\t" in out.out
    assert score.main(["--metrics-weights", str(tmp_path / "none"), "--video", paths[0]]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert score.main(["--metrics-weights", str(folder["root"]), "--video", *paths, "--reference", refs[0]]) == 2
    assert "--reference takes one value per --video (2), got 1" in capsys.readouterr().err
