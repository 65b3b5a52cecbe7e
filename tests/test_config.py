"""TrainConfig: profiles, validation, names, keys."""

from __future__ import annotations

import pytest

from unet_train.config import GROUPS, PROFILES, TrainConfig, check_names
from unet_train.identity import with_added_fields


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_profiles_build(profile):
    cfg = TrainConfig.from_profile(profile)
    assert cfg.profile == profile
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg


def test_paper_profile_follows_the_paper():
    cfg = TrainConfig.from_profile("paper")
    assert (cfg.padding, cfg.base_channels, cfg.depth, cfg.batch_norm) == ("valid", 64, 4, False)
    assert (cfg.optimizer, cfg.momentum, cfg.batch_size, cfg.patch_size) == ("sgd", 0.99, 1, 572)
    assert (cfg.loss, cfg.augmentation) == ("weighted_ce", "paper")
    assert cfg.dropout > 0


def test_unknown_profile_lists_the_choices():
    with pytest.raises(ValueError,
                       match="profile='fast' is not valid; expected one of paper, cpu, smoke"):
        TrainConfig.from_profile("fast")


def test_misspelt_parameter_gets_a_suggestion_and_the_list():
    with pytest.raises(ValueError, match=r"'stpes' \(did you mean 'steps'\?\).*valid parameters"):
        TrainConfig.from_profile("smoke", stpes=3)
    with pytest.raises(ValueError, match="unknown parameter"):
        check_names({"xyz": 1})


@pytest.mark.parametrize(
    "field,value,match",
    [
        ("dataset", "kitti", "expected one of drive, isbi2012"),
        ("loss", "focal", "weighted_ce, bce, dice, bce_dice"),
        ("padding", "reflect", "valid, same"),
        ("augmentation", "mixup",
         "paper, paper_full, albumentations, albumentations_paper_elastic, none"),
        ("steps", 0, "steps must be >= 1"),
        ("dropout", 1.5, "dropout"),
        ("threshold", 1.0, "threshold"),
        ("elastic_grid", 1, "elastic_grid"),
        ("threshold_images", "test", "expected one of training_set, validation"),
    ],
)
def test_bad_values(field, value, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig.from_profile("cpu", **{field: value})


def test_validation_threshold_needs_validation_images():
    with pytest.raises(ValueError, match="threshold_images='validation' needs val_images >= 1"):
        TrainConfig.from_profile("cpu", threshold_images="validation", val_images=0)
    # Either other rule works without validation images.
    TrainConfig.from_profile("cpu", threshold_images="training_set", val_images=0)
    TrainConfig.from_profile("cpu", threshold_images="validation", val_images=0,
                             tune_threshold=False)


def test_key_tracks_results_not_device():
    a = TrainConfig.from_profile("smoke")
    assert a.key() == TrainConfig.from_profile("smoke", device="cpu", threads=1).key()
    assert a.key() != TrainConfig.from_profile("smoke", seed=1).key()


def test_the_deformation_tile_counts_only_for_the_paper_deformation() -> None:
    """``elastic_tile`` acts only with ``augmentation="paper"``: elsewhere it changes neither
    the hash nor the config comparison; with the paper's deformation it does, and a config
    stored before the field existed reads as the old behaviour (0: grid on the patch)."""
    cpu = TrainConfig.from_profile("cpu")
    assert TrainConfig.from_profile("cpu", elastic_tile=0).key() == cpu.key()
    paper = TrainConfig.from_profile("cpu", augmentation="paper")
    no_tile = TrainConfig.from_profile("cpu", augmentation="paper", elastic_tile=0)
    assert no_tile.key() != paper.key()
    old = {k: v for k, v in paper.to_dict().items() if k != "elastic_tile"}
    assert TrainConfig.from_dict(with_added_fields(old)).elastic_tile == 0
    assert TrainConfig.from_dict(old).elastic_tile == 0  # the migration of a stored config
    with pytest.raises(ValueError, match="elastic_tile must be >= 0"):
        TrainConfig(elastic_tile=-1)


def test_the_defaults_are_the_papers_recipe_and_profiles_name_overrides() -> None:
    """The dataclass defaults are the paper's (Sec. 3); ``cpu`` and ``smoke`` override them,
    and the keys that name run folders did not change when the defaults did (pinned here)."""
    paper = TrainConfig()
    assert paper == TrainConfig.from_profile("paper") and paper.profile == "paper"
    assert (paper.padding, paper.batch_norm, paper.batch_size, paper.patch_size) == (
        "valid", False, 1, 572)
    assert (paper.optimizer, paper.momentum, paper.loss, paper.augmentation) == (
        "sgd", 0.99, "weighted_ce", "paper")
    assert PROFILES["paper"] == {}
    cpu, smoke = TrainConfig.from_profile("cpu"), TrainConfig.from_profile("smoke")
    assert (cpu.base_channels, cpu.padding, cpu.loss) == (16, "same", "bce_dice")
    assert (smoke.base_channels, smoke.padding, smoke.loss) == (4, "same", "bce_dice")
    # the run-folder keys of the three profiles on DRIVE, as before the defaults moved
    assert {p: TrainConfig.from_profile(p).key() for p in PROFILES} == PINNED_KEYS


PINNED_KEYS = {"paper": "6b80207b0d", "cpu": "6f76fe09f9", "smoke": "85e648ede6"}


def test_a_stored_config_without_new_fields_reads_as_its_run_did() -> None:
    """Migration: a ``config.json`` written when the defaults were the ``cpu`` profile lacks
    the fields added since; they take the values that reproduce its run, never the paper's."""
    cpu = TrainConfig.from_profile("cpu").to_dict()
    old = {k: v for k, v in cpu.items() if k not in ("checkpoint_every", "outside_fov",
                                                     "isbi_gap", "cv_folds")}
    read = TrainConfig.from_dict(old)
    assert read.checkpoint_every == 200 and read.outside_fov == "ignore"
    assert read.isbi_gap == 0 and read.cv_folds == 0  # ADDED_FIELDS: the behaviour before
    assert read.key() == TrainConfig.from_dict({**cpu, "isbi_gap": 0}).key()


def test_the_groups_list_every_field_once_in_order() -> None:
    listed = [name for names in GROUPS.values() for name in names]
    assert listed == list(TrainConfig.field_names())
    grouped = TrainConfig.from_profile("cpu").grouped()
    assert grouped["model"] == {"base_channels": 16, "depth": 4, "padding": "same",
                                "batch_norm": True, "dropout": 0.0}
