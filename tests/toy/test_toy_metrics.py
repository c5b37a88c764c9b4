"""Toy metrics: attributes recovered from ground-truth generator videos; IoU, centroids, background, flicker."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ieadapt_jax.toy import metrics, world

N_VIDEOS = 320  # half training, half held-out combinations
ACCURACY_BAR = 0.99


@pytest.fixture(scope="module")
def ground_truth():
    """(attrs, float videos [N, F, H, W, 3]) of single-object videos over both sides of the split."""
    half = N_VIDEOS // 2
    train = world.train_attributes(jax.random.key(100), half)
    heldout = world.heldout_attributes(jax.random.key(101), half)
    attrs = jax.tree.map(lambda a, b: jnp.concatenate([a, b]), train, heldout)
    return attrs, world.render_batch(attrs, jax.random.key(102))


def one_video(shape="circle", colour="red", size="large", motion="right", background="white", seed=0):
    """float32 [F, H, W, 3]: one single-object toy video."""
    return world.render(world.one_object(shape, colour, size, motion, background), jax.random.key(seed))


def test_metrics_recover_ground_truth_attributes(ground_truth):
    attrs, videos = ground_truth
    predicted = jax.jit(metrics.classify)(videos)
    accuracy = {}
    for name in ("shape", "colour", "size", "motion"):
        truth = np.asarray(getattr(attrs, name)[:, 0])
        accuracy[name] = float(np.mean(np.asarray(getattr(predicted, name)) == truth))
    print(f"toy metrics on {N_VIDEOS} generator videos: "
          + ", ".join(f"{k} {v:.2%}" for k, v in accuracy.items()))
    assert all(v >= ACCURACY_BAR for v in accuracy.values()), accuracy
    assert bool(np.asarray(predicted.present).all())
    from_bytes = jax.jit(metrics.classify)(world.to_uint8(videos[:64]))
    for got, want in zip(from_bytes, predicted):
        np.testing.assert_array_equal(got, want[:64])


def test_batch_axes_are_free_and_mismatched_videos_are_an_error(ground_truth):
    _, videos = ground_truth
    grid = videos[:6].reshape(2, 3, *videos.shape[1:])  # [2, 3, F, H, W, 3]
    np.testing.assert_array_equal(metrics.object_colour(grid).reshape(-1), metrics.object_colour(videos[:6]))
    assert metrics.centroid_trajectory(grid).shape == (2, 3, world.FRAMES, 2)
    assert metrics.object_mask(videos[0]).shape == (world.FRAMES, world.HEIGHT, world.WIDTH)
    with pytest.raises(ValueError, match=r"mask_iou needs RGB videos .* of one shape"):
        metrics.mask_iou(videos[0], videos[0, :8])


def test_mask_and_background_estimates_match_the_render():
    video = one_video(background="black and gray", motion="down-right")
    tones = np.where(np.arange(world.WIDTH) < world.WIDTH // 2, 0.0, 0.5)
    np.testing.assert_allclose(metrics.background(video)[..., 0], np.broadcast_to(tones, (32, 32)))
    coverage = np.clip((np.asarray(video[..., 0]) - tones) / (world.COLOUR_RGB[0, 0] - tones), 0, 1)
    alpha = np.asarray(metrics.object_alpha(video))
    clear = coverage >= 0.2  # fainter edge pixels are below the NOISE contrast on the gray half
    np.testing.assert_allclose(alpha[clear], coverage[clear], atol=0.02)
    assert np.all(alpha[~clear] <= 0.2)
    np.testing.assert_array_equal(metrics.object_mask(video), alpha >= 0.5)


def test_iou_and_centroid_error_of_a_video_with_itself_and_a_shifted_copy():
    video = one_video()
    shifted = jnp.roll(video, 3, axis=2)  # object (and plain background) 3 px to the right
    assert float(metrics.mask_iou(video, video)) == 1.0
    assert float(metrics.centroid_error(video, video)) == 0.0
    assert 0.3 < float(metrics.mask_iou(video, shifted)) < 0.9
    assert float(metrics.centroid_error(video, shifted)) == pytest.approx(3.0, abs=1e-3)
    other = one_video(seed=1, motion="left")
    assert float(metrics.mask_iou(video, other)) < float(metrics.mask_iou(video, shifted))


def test_centroid_trajectory_follows_the_drawn_path():
    for motion, travel in (("right", (world.TRAVEL, 0.0)), ("up-left", (-world.TRAVEL, -world.TRAVEL))):
        trajectory = np.asarray(metrics.centroid_trajectory(one_video(shape="square", motion=motion)))
        np.testing.assert_allclose(trajectory[-1] - trajectory[0], travel, atol=1e-3)
    bounce = np.asarray(metrics.centroid_trajectory(one_video(motion="bouncing")))[:, 1]
    assert bounce.max() - bounce.min() == pytest.approx(world.BOUNCE_HEIGHT, abs=0.3)


def test_an_empty_video_has_no_object():
    empty = jnp.broadcast_to(jnp.float32(0.5), (world.FRAMES, world.HEIGHT, world.WIDTH, 3))
    assert not bool(metrics.object_mask(empty).any())
    assert bool(jnp.isnan(metrics.centroid_trajectory(empty)).all())
    assert float(metrics.mask_iou(empty, empty)) == 1.0
    assert bool(jnp.isnan(metrics.centroid_error(empty, one_video())))
    assert int(metrics.motion_direction(empty)) == world.STATIC
    assert not bool(metrics.classify(empty).present) and bool(metrics.classify(one_video()).present)


def test_a_vanished_object_reads_as_wrong_not_as_a_small_red_one():
    """An empty video's readers fall back to hue 0° (red) and the smallest size; the sweep's attribute checks
    must still count it as wrong for a small red caption, and its hue shift is undefined."""
    from ieadapt_jax.sweep import metrics as sweep_metrics

    caption = "a small red circle moving right on a white background"
    empty = jnp.broadcast_to(jnp.float32(0.5), (world.FRAMES, world.HEIGHT, world.WIDTH, 3))
    drawn = one_video(size="small")
    assert int(metrics.object_colour(empty)) == world.COLOURS.index("red")  # the fallback the check must not trust
    state = sweep_metrics._toy_setup(None, [caption])
    assert {k: float(v) for k, v in sweep_metrics._toy_attributes(state, drawn, None, 0).items()} == {
        "toy_shape_ok": 1.0, "toy_colour_ok": 1.0, "toy_size_ok": 1.0, "toy_motion_ok": 1.0}
    assert all(float(v) == 0.0 for v in sweep_metrics._toy_attributes(state, empty, None, 0).values())
    structure = sweep_metrics._toy_structure(None, empty, drawn, 0)
    assert np.isnan(float(structure["toy_hue_shift"])) and np.isnan(float(structure["toy_centroid_error"]))
    assert float(sweep_metrics._toy_structure(None, drawn, drawn, 0)["toy_hue_shift"]) == 0.0

    from ieadapt_jax.editing.toy_scores import score_edit

    green = one_video(colour="green", size="small")
    scores = score_edit(world.to_uint8(green), world.to_uint8(empty), caption.replace("red", "green"), caption)
    assert scores["kind"] == "colour" and not scores["success"] and not scores["kept"]
    assert score_edit(world.to_uint8(green), world.to_uint8(drawn), caption.replace("red", "green"), caption)["success"]


def test_background_preservation_on_constructed_cases():
    video = one_video(background="white")
    moved = one_video(background="white", seed=5, shape="diamond", motion="up")
    assert float(metrics.background_mae(video, video)) == 0.0
    assert float(metrics.background_psnr(video, video)) == np.inf
    assert float(metrics.background_mae(video, moved)) < 1e-3  # objects differ, background is the same
    gray = one_video(background="gray")
    assert float(metrics.background_mae(video, gray)) == pytest.approx(0.5, abs=1e-3)
    assert float(metrics.background_psnr(video, gray)) == pytest.approx(10 * np.log10(4.0), abs=0.05)
    half_gray = one_video(background="white and gray")
    assert 0.2 < float(metrics.background_mae(video, half_gray)) < 0.3  # half of the pixels are 0.5 off


def test_temporal_flicker_on_constructed_cases():
    video = one_video(background="gray", motion="down")
    assert float(metrics.temporal_flicker(video)) < 1e-4  # the object moves, the background does not
    pulse = 0.1 * (jnp.arange(world.FRAMES) % 2)[:, None, None, None]  # every other frame 0.1 brighter
    assert float(metrics.temporal_flicker(video + pulse)) == pytest.approx(0.1, abs=2e-3)
    noise = 0.02 * jax.random.normal(jax.random.key(3), video.shape)
    assert 0.01 < float(metrics.temporal_flicker(video + noise)) < 0.05
