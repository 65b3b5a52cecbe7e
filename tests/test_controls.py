"""The studies' new instruments of training: ISBI 2012 cross-validation folds, one training
image per seed, the uniform membrane reweighting that controls for the weight map, and the
paper's augmentation in full (rotation and grey values) or its elastic step in the
albumentations pipeline."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from unet_core import weights
from unet_core.augment import (
    AUGMENTATIONS,
    PaperAugmentation,
    WithPaperElastic,
    make_augmentation,
    rotation_context,
)
from unet_core.data.splits import isbi_folds, load_data
from unet_core.weights import balanced_class_weights, weight_map
from unet_train import recipe
from unet_train.config import TrainConfig
from unet_train.recipe import (
    augmentation_options,
    build_model,
    build_sampler,
    class_reweighting,
    instance_labels,
    loss_weight_maps,
)


# -- folds ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(("n", "folds", "gap"), [(30, 5, 2), (30, 5, 0), (30, 3, 1), (10, 3, 1),
                                                 (7, 2, 2)])
def test_folds_test_every_slice_once_and_keep_a_gap(n, folds, gap) -> None:  # noqa: ANN001
    tested = []
    for fold in range(folds):
        rest, test = isbi_folds(n, folds, fold, gap)
        assert test == list(range(test[0], test[-1] + 1))  # consecutive
        assert not set(rest) & set(test)
        assert min(abs(r - t) for r in rest for t in test) > gap
        assert len(rest) + len(test) == n - sum(
            1 for i in range(n) if i not in rest and i not in test)
        tested += test
    assert sorted(tested) == list(range(n))
    sizes = [len(isbi_folds(n, folds, f, gap)[1]) for f in range(folds)]
    assert max(sizes) - min(sizes) <= 1


def test_the_paper_folds_of_30_slices() -> None:
    assert isbi_folds(30, 5, 2, 2) == ([*range(10), *range(20, 30)], list(range(12, 18)))
    assert isbi_folds(30, 5, 0, 2)[0] == list(range(8, 30))


@pytest.mark.parametrize(("folds", "fold", "gap"), [(1, 0, 0), (5, 5, 0), (31, 0, 0), (5, -1, 0),
                                                    (2, 0, 9)])
def test_impossible_folds_are_refused(folds, fold, gap) -> None:  # noqa: ANN001
    with pytest.raises(ValueError):
        isbi_folds(30, folds, fold, gap) if gap < 9 else isbi_folds(10, folds, fold, gap)


def test_a_fold_splits_the_data_set(small_data_root) -> None:
    cfg = TrainConfig.from_profile("smoke", dataset="isbi2012", cv_folds=3, cv_fold=1,
                                   isbi_gap=1, val_images=1)
    data = load_data(cfg, small_data_root)
    names = [e.name for e in data.test]
    rest, test = isbi_folds(10, 3, 1, 1)
    assert [int(n) for n in names] == test
    assert [int(e.name) for e in data.train + data.val] == rest
    assert [int(e.name) for e in data.val] == [rest[-1]]


@pytest.mark.parametrize(("changes", "message"), [
    ({"cv_folds": 5, "cv_fold": 5}, "cv_fold must be in 0 .. cv_folds - 1"),
    ({"cv_folds": 1}, "cv_folds 0 (off) or >= 2"),
    ({"dataset": "drive", "cv_folds": 5}, "cv_folds is for ISBI 2012"),
    ({"train_start": 2}, "train_start needs train_images"),
    ({"loss": "weighted_ce", "class_reweight_w0": 10.0}, "needs loss='weighted_ce' and w0=0"),
    ({"class_reweight_w0": 10.0, "w0": 0.0}, "needs loss='weighted_ce' and w0=0"),
])
def test_bad_combinations_are_one_clear_error(changes, message) -> None:  # noqa: ANN001
    values = {"dataset": "isbi2012", **changes}
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        TrainConfig.from_profile("cpu", **values)


def test_the_new_fields_at_their_defaults_keep_every_key() -> None:
    cfg = TrainConfig.from_profile("cpu", dataset="isbi2012")
    assert cfg.key() == TrainConfig.from_dict({k: v for k, v in cfg.to_dict().items() if k not in (
        "train_start", "cv_folds", "cv_fold", "class_reweight_w0")}).key()
    assert TrainConfig.from_profile("cpu", dataset="isbi2012", cv_folds=5).key() != cfg.key()


def test_train_start_picks_the_image_of_a_seed(small_data_root) -> None:
    names = [e.name for e in load_data(TrainConfig.from_profile("smoke"), small_data_root).train]
    for start in range(len(names)):
        cfg = TrainConfig.from_profile("smoke", train_images=1, train_start=start)
        assert [e.name for e in load_data(cfg, small_data_root).train] == [names[start]]
    with pytest.raises(ValueError, match="train_start=2 with train_images=1 needs 3"):
        load_data(TrainConfig.from_profile("smoke", train_images=1, train_start=len(names)),
                  small_data_root)


# -- the control for the weight map --------------------------------------------------------------
def _share(maps, labels) -> float:  # noqa: ANN001
    return sum(float(w[lab == 0].sum()) for w, lab in zip(maps, labels, strict=True)) / sum(
        float(w.sum()) for w in maps)


def test_uniform_reweighting_gives_the_membranes_the_weight_maps_share(small_data_root) -> None:
    cfg = TrainConfig.from_profile("smoke", dataset="isbi2012", loss="weighted_ce", w0=0.0,
                                   class_reweight_w0=10.0)
    train = load_data(cfg, small_data_root).train
    labels = [instance_labels(e, cfg) for e in train]
    record = class_reweighting(labels, [None] * len(labels), cfg)
    paper = [weight_map(lab, w0=10.0, sigma=cfg.wmap_sigma,
                        class_weights=balanced_class_weights(labels)) for lab in labels]
    control = loss_weight_maps(train, cfg)
    assert math.isclose(record["share_target"], _share(paper, labels), rel_tol=1e-9)
    assert math.isclose(_share(control, labels), record["share_target"], rel_tol=1e-6)
    assert record["share_target"] > record["share_balanced"] and record["factor"] > 1
    assert math.isclose(record["share_balanced"], 0.5, abs_tol=1e-6)  # w_c: equal totals
    for w, lab in zip(control, labels, strict=True):  # uniform within each class
        assert np.ptp(w[lab == 0]) < 1e-9 and np.ptp(w[lab > 0]) < 1e-9


def test_the_reweighting_computes_each_labels_maps_once(small_data_root, monkeypatch) -> None:
    cfg = TrainConfig.from_profile("smoke", dataset="isbi2012", loss="weighted_ce", w0=0.0,
                                   class_reweight_w0=10.0)
    train = load_data(cfg, small_data_root).train
    labels = [instance_labels(e, cfg) for e in train]
    fovs = [None] * len(labels)
    class_weights = balanced_class_weights(labels, fovs)
    maps = [(weight_map(lab, w0=0.0, sigma=cfg.wmap_sigma, class_weights=class_weights),
             weight_map(lab, w0=10.0, sigma=cfg.wmap_sigma, class_weights=class_weights))
            for lab in labels]
    s0 = recipe._border_class_share([b for b, _ in maps], labels, fovs)
    s = recipe._border_class_share([m for _, m in maps], labels, fovs)
    expected = {"factor": s / (1.0 - s) * (1.0 - s0) / s0, "share_balanced": s0,
                "share_target": s}
    calls = {"labellings": 0, "class_weights": 0}
    as_labels, balanced = weights._as_labels, recipe.balanced_class_weights

    def labelling(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        calls["labellings"] += 1
        return as_labels(*args, **kwargs)

    def counted(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        calls["class_weights"] += 1
        return balanced(*args, **kwargs)

    monkeypatch.setattr(weights, "_as_labels", labelling)
    monkeypatch.setattr(recipe, "balanced_class_weights", counted)
    assert class_reweighting(labels, fovs, cfg) == expected  # the same numbers, bit for bit
    assert calls == {"labellings": len(labels), "class_weights": 1}  # one w_c map per label
    calls.update(labellings=0, class_weights=0)
    loss_weight_maps(train, cfg)
    assert calls["class_weights"] == 1  # the reweighting reuses the recipe's class weights


# -- augmentations --------------------------------------------------------------------------------
def test_rotation_context_covers_45_degrees() -> None:
    for patch in (32, 128, 316):
        half_diagonal = patch / math.sqrt(2)
        assert rotation_context(patch) >= 2 * half_diagonal * math.sin(math.pi / 8)
        assert rotation_context(patch) < 0.8 * half_diagonal


def _window(size: int, context: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    side = size + 2 * context
    labels = rng.integers(0, 50, (side, side)).astype(np.int64)
    return labels.astype(np.float32) / 50, labels


@pytest.mark.parametrize("size", [17, 32])
def test_paper_augmentation_moves_image_and_masks_together(size) -> None:  # noqa: ANN001
    context = rotation_context(size) + 40
    aug = PaperAugmentation(tile=572, context=context, order=0, contrast=0.0, brightness=0.0)
    image, labels = _window(size, context)
    out_image, out_labels = aug(image, labels, rng=3)
    c = context
    np.testing.assert_array_equal(np.rint(out_image[c:-c, c:-c] * 50), out_labels[c:-c, c:-c])
    # the border comes back as it was; the centre changed
    np.testing.assert_array_equal(out_labels[:c], labels[:c])
    assert not np.array_equal(out_labels[c:-c, c:-c], labels[c:-c, c:-c])
    again = aug(image, labels, rng=3)
    np.testing.assert_array_equal(again[1], out_labels)
    assert out_image.dtype == image.dtype and out_labels.dtype == labels.dtype


def test_without_deformation_the_centre_pixel_only_turns() -> None:
    size, context = 33, rotation_context(33)
    aug = PaperAugmentation(sigma=0.0, tile=572, context=context, order=0, contrast=0.0,
                            brightness=0.0)
    image, labels = _window(size, context, seed=1)
    centre = context + size // 2
    for seed in range(8):
        _, out = aug(image, labels, rng=seed)
        assert out[centre, centre] == labels[centre, centre]


def test_grey_values_change_by_contrast_and_brightness() -> None:
    aug = PaperAugmentation(sigma=0.0, tile=572, context=rotation_context(16), contrast=0.2,
                            brightness=0.1)
    flat = np.full((16 + 2 * aug.context,) * 2, 0.5, np.float32)
    values = [float(aug(flat, rng=s)[0][aug.context + 8, aug.context + 8]) for s in range(40)]
    assert min(values) < 0.5 - 0.02 and max(values) > 0.5 + 0.02
    assert all(0.5 * 0.8 - 0.1 - 1e-6 <= v <= 0.5 * 1.2 + 0.1 + 1e-6 for v in values)


def test_the_swapped_elastic_step_is_the_rest_alone_when_it_does_not_fire() -> None:
    elastic = make_augmentation("paper", tile=572, context=8)
    rest = make_augmentation("albumentations", elastic_p=0.0)
    swapped = WithPaperElastic(elastic, rest, p=0.0)
    image, labels = _window(24, 8, seed=2)
    out = swapped(image, labels, rng=5)
    g = np.random.default_rng(5)
    g.random()  # the draw that decides the elastic step
    expected = rest(np.ascontiguousarray(image[8:-8, 8:-8]),
                    np.ascontiguousarray(labels[8:-8, 8:-8]), rng=g)
    np.testing.assert_array_equal(out[0][8:-8, 8:-8], expected[0])
    np.testing.assert_array_equal(out[1][8:-8, 8:-8], expected[1])


@pytest.mark.parametrize("augmentation", AUGMENTATIONS)
@pytest.mark.parametrize("padding", ["same", "valid"])
def test_every_augmentation_samples_aligned_patches(small_data_root, augmentation,
                                                    padding) -> None:  # noqa: ANN001
    sizes = {"patch_size": 60, "eval_tile": 60} if padding == "valid" else {"patch_size": 32}
    cfg = TrainConfig.from_profile("smoke", augmentation=augmentation, padding=padding, **sizes)
    data = load_data(cfg, small_data_root)
    sampler = build_sampler(cfg, build_model(cfg, data.in_channels), data.train)
    batch = sampler.sample(4)
    assert tuple(batch.image.shape[2:]) == (cfg.patch_size,) * 2
    assert batch.target.shape == batch.valid.shape
    assert sampler.context == augmentation_options(cfg).get("context", 0)


def test_the_swapped_pipeline_needs_the_papers_tile() -> None:
    cfg = TrainConfig.from_profile("cpu", augmentation="albumentations_paper_elastic",
                                   elastic_tile=0)
    with pytest.raises(ValueError, match="needs elastic_tile > 0"):
        augmentation_options(cfg)


# -- the pixels outside the field of view ----------------------------------------------------------
@pytest.mark.parametrize("augmentation", ["none", "paper"])
def test_outside_the_fov_counts_as_background_only_when_asked(small_data_root,
                                                              augmentation) -> None:  # noqa: ANN001
    batches = {}
    for mode in ("ignore", "background"):
        cfg = TrainConfig.from_profile("smoke", patch_size=32, augmentation=augmentation,
                                       outside_fov=mode)
        data = load_data(cfg, small_data_root)
        sampler = build_sampler(cfg, build_model(cfg, data.in_channels), data.train)
        batches[mode] = sampler.sample(16)
    ignore, background = batches["ignore"], batches["background"]
    # the same patches are drawn (the FOV decides where), only the loss mask differs
    assert torch.equal(ignore.image, background.image)
    assert background.valid.float().mean() > ignore.valid.float().mean()
    assert not ignore.valid.all() and bool(background.valid.all())
    # outside the FOV the target is background; inside it is the same
    assert torch.equal(background.target[ignore.valid], ignore.target[ignore.valid])
    assert not background.target[~ignore.valid].any()


def test_outside_fov_is_a_checked_choice() -> None:
    with pytest.raises(ValueError, match="outside_fov='both' is not valid; expected one of "
                                         "ignore, background"):
        TrainConfig.from_profile("cpu", outside_fov="both")
    assert TrainConfig.from_profile("cpu", outside_fov="background").key() != (
        TrainConfig.from_profile("cpu").key())
    assert TrainConfig.from_profile("cpu", dataset="isbi2012", outside_fov="background").key() == (
        TrainConfig.from_profile("cpu", dataset="isbi2012").key())  # no FOV: no effect
