"""From a config to the objects a run trains with (unet_train.recipe)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unet_core.augment import ElasticDeformation
from unet_core.data.splits import load_data
from unet_core.weights import balanced_class_weights, weight_map
from unet_train.config import TrainConfig
from unet_train.recipe import (
    build_model,
    build_optimizer,
    build_sampler,
    build_scheduler,
    instance_labels,
    loss_weight_maps,
)


def smoke(**overrides) -> TrainConfig:
    base = {"patch_size": 32, "eval_tile": 32, "steps": 6, "eval_every": 3}
    return TrainConfig.from_profile("smoke", **(base | overrides))


@pytest.mark.parametrize("overrides, out_channels", [
    ({}, 1),
    ({"loss": "weighted_ce", "padding": "valid", "batch_norm": False, "dropout": 0.5}, 2),
    ({"loss": "bce", "base_channels": 6, "depth": 3}, 1),
])
def test_build_model_follows_the_config(overrides, out_channels):
    cfg = smoke(**overrides)
    model = build_model(cfg, 3)
    assert (model.in_channels, model.out_channels) == (3, out_channels)
    assert (model.base_channels, model.depth, model.padding, model.batch_norm,
            model.dropout_p) == (cfg.base_channels, cfg.depth, cfg.padding, cfg.batch_norm,
                                 cfg.dropout)
    has_bn = any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    assert has_bn == cfg.batch_norm
    side = model.valid_input_size(44)
    x = torch.rand(2, 3, side, side)
    n = model.output_size(side)
    assert model(x).shape == (2, out_channels, n, n)
    # Same seed, same weights: a run and its reload build the same network.
    torch.manual_seed(3)
    a = build_model(cfg, 3).state_dict()
    torch.manual_seed(3)
    b = build_model(cfg, 3).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("name, kind", [("sgd", torch.optim.SGD), ("adam", torch.optim.Adam),
                                        ("adamw", torch.optim.AdamW)])
def test_build_optimizer_follows_the_config(name, kind):
    cfg = smoke(optimizer=name, lr=0.02, momentum=0.95, weight_decay=1e-4, scheduler="constant")
    model = build_model(cfg, 3)
    opt = build_optimizer(cfg, model)
    assert type(opt) is kind
    group = opt.param_groups[0]
    assert group["lr"] == 0.02 and group["weight_decay"] == 1e-4
    if name == "sgd":
        assert group["momentum"] == 0.95
    params = [p for g in opt.param_groups for p in g["params"]]
    assert len(params) == len(list(model.parameters()))
    assert {id(p) for p in params} == {id(p) for p in model.parameters()}


def test_onecycle_schedule_spans_the_run():
    cfg = smoke(steps=20, lr=0.01)
    opt = build_optimizer(cfg, build_model(cfg, 3))
    sched = build_scheduler(cfg, opt)
    lrs = []
    for _ in range(cfg.steps):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    peak = int(np.argmax(lrs))
    assert lrs[peak] == pytest.approx(0.01) and 0 < peak <= 0.15 * cfg.steps + 1
    assert lrs[0] < 0.01 / 10 and lrs[-1] < 0.01 / 100


def test_build_sampler_draws_patches_of_the_model_sizes(small_data_root):
    cfg = smoke(padding="valid", patch_size=44, augmentation="none")
    data = load_data(cfg, small_data_root)
    model = build_model(cfg, data.in_channels)
    sampler = build_sampler(cfg, model, data.train)
    batch = sampler.sample(3)
    out = model.output_size(44)
    assert batch.image.shape == (3, 3, 44, 44) and batch.target.shape == (3, out, out)
    assert batch.valid.shape == (3, out, out) and batch.weight is None
    assert batch.valid.float().mean() > 0.1  # DRIVE: patches hold enough FOV pixels
    # The sampler is seeded by the config: two samplers draw the same patches.
    again = build_sampler(cfg, model, data.train).sample(3)
    assert torch.equal(batch.image, again.image) and torch.equal(batch.target, again.target)
    other = build_sampler(smoke(padding="valid", patch_size=44, augmentation="none", seed=1),
                          model, data.train).sample(3)
    assert not torch.equal(batch.image, other.image)


def test_build_sampler_augmentation_and_weights(small_data_root):
    cfg = smoke(dataset="isbi2012", loss="weighted_ce", augmentation="paper", elastic_sigma=4.0,
                elastic_grid=5)
    data = load_data(cfg, small_data_root)
    model = build_model(cfg, data.in_channels)
    sampler = build_sampler(cfg, model, data.train)
    assert isinstance(sampler.transform, ElasticDeformation)
    assert (sampler.transform.sigma, sampler.transform.grid) == (4.0, 5)
    batch = sampler.sample(2)
    assert batch.weight is not None and batch.weight.shape == batch.target.shape
    assert batch.valid.all()  # ISBI: no FOV
    assert build_sampler(smoke(augmentation="none"), build_model(smoke(), 3),
                         load_data(smoke(), small_data_root).train).transform is None


def test_bad_patch_size_is_named(small_data_root):
    cfg = smoke(padding="valid", patch_size=30)
    data = load_data(cfg, small_data_root)
    with pytest.raises(ValueError, match="patch_size 30 is not valid"):
        build_sampler(cfg, build_model(cfg, data.in_channels), data.train)


def test_weight_maps_balance_the_training_set(small_data_root):
    cfg = smoke(dataset="isbi2012", loss="weighted_ce", w0=0.0)
    examples = load_data(cfg, small_data_root).train
    maps = loss_weight_maps(examples, cfg)
    assert [m.shape for m in maps] == [e.target.shape for e in examples]
    membrane = np.concatenate([e.target.ravel() for e in examples])
    weights = np.concatenate([m.ravel() for m in maps])
    # Set-wide balance: both classes carry the same total weight, the mean weight is 1.
    assert weights[membrane].sum() == pytest.approx(weights[~membrane].sum(), rel=1e-5)
    assert weights.mean() == pytest.approx(1.0, rel=1e-5)
    assert len(np.unique(np.round(weights, 5))) == 2  # one weight per class, every image


def test_weight_maps_add_the_border_term(small_data_root):
    cfg = smoke(dataset="isbi2012", loss="weighted_ce", w0=10.0, wmap_sigma=5.0)
    examples = load_data(cfg, small_data_root).train
    flat = loss_weight_maps(examples, smoke(dataset="isbi2012", loss="weighted_ce", w0=0.0))
    maps = loss_weight_maps(examples, cfg)
    for m, f in zip(maps, flat, strict=True):
        assert (m >= f - 1e-6).all() and (m - f).max() > 1.0  # w0 adds weight near borders
    # The same as the weight map of Eq. 2 with the set's class weights.
    labels = [instance_labels(e, cfg) for e in examples]
    want = weight_map(labels[0], w0=10.0, sigma=5.0,
                      class_weights=balanced_class_weights(labels))
    np.testing.assert_allclose(maps[0], want)
