"""Precision and memory format chosen by measurement (unet_train.placement), and both precision
paths run on any CPU: the one this CPU's ``auto`` does not choose is forced here."""

from __future__ import annotations

import json

import pytest
import torch

from unet_core.data.splits import load_data
from unet_train import devices, placement
from unet_train.config import TrainConfig
from unet_train.evaluation import evaluate
from unet_train.placement import (
    CACHE_FILE,
    MEMORY_FORMAT_ENV,
    PRECISION_ENV,
    Placement,
    candidates,
    choose,
    in_memory_format,
    is_channels_last,
    measure,
    requested,
)
from unet_train.recipe import build_model
from unet_train.runs import load_model
from unet_train.train import train

CPU = torch.device("cpu")


def smoke(**overrides) -> TrainConfig:
    return TrainConfig.from_profile("smoke", patch_size=32, eval_tile=32, **overrides)


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    """An empty cache directory and no remembered choices."""
    monkeypatch.setenv(placement.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.delenv(PRECISION_ENV, raising=False)
    monkeypatch.delenv(MEMORY_FORMAT_ENV, raising=False)
    monkeypatch.setattr(placement, "_CHOSEN", {})
    return tmp_path / "cache"


@pytest.mark.parametrize("fields, env, expected", [
    ({}, {}, ("auto", "auto")),
    ({"bf16": False}, {PRECISION_ENV: "bf16"}, ("fp32", "auto")),  # the older switch wins
    ({"channels_last": False}, {}, ("auto", "contiguous")),
    ({"precision": "fp32", "memory_format": "channels_last"}, {}, ("fp32", "channels_last")),
    ({}, {PRECISION_ENV: "bf16", MEMORY_FORMAT_ENV: "contiguous"}, ("bf16", "contiguous")),
    ({"precision": "fp32"}, {PRECISION_ENV: "bf16"}, ("fp32", "auto")),  # the config wins
])
def test_requested_reads_the_config_the_older_switches_and_the_environment(
        monkeypatch, fields, env, expected):
    for name in (PRECISION_ENV, MEMORY_FORMAT_ENV):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert requested(smoke(**fields)) == expected


def test_a_bad_environment_value_names_the_variable_and_the_choices(monkeypatch):
    monkeypatch.setenv(PRECISION_ENV, "fp16")
    with pytest.raises(ValueError, match=r"UNET_PRECISION='fp16' is not valid; expected one of "
                                         r"fp32, bf16"):
        requested(smoke())


@pytest.mark.parametrize("fields, match", [
    ({"precision": "fp64"}, "precision='fp64' is not valid"),
    ({"memory_format": "nhwc"}, "memory_format='nhwc' is not valid"),
    ({"precision": "bf16", "bf16": False}, "contradicts bf16=False"),
    ({"memory_format": "channels_last", "channels_last": False}, "contradicts channels_last"),
])
def test_config_rejects_unknown_and_contradictory_choices(fields, match):
    with pytest.raises(ValueError, match=match):
        smoke(**fields)


def test_old_configs_keep_their_keys():
    """``precision`` and ``memory_format`` at ``auto`` leave the hash of a config (and so the
    run folder a stored config names) as it was before they existed."""
    cfg = smoke()
    stored = {k: v for k, v in cfg.to_dict().items() if k not in ("precision", "memory_format")}
    assert TrainConfig.from_dict(stored).key() == cfg.key()
    assert smoke(precision="fp32").key() != cfg.key()
    assert smoke(memory_format="contiguous").key() == cfg.key()  # it changes only rounding


@pytest.mark.parametrize("native", [True, False])
def test_bf16_is_a_candidate_only_where_the_cpu_computes_it(monkeypatch, fresh_cache, native):
    monkeypatch.setattr(devices, "cpu_supports_bf16", lambda: native)
    precisions, formats = candidates(smoke(), CPU)
    assert [p.name for p in precisions] == (["fp32", "bf16"] if native else ["fp32"])
    assert formats == [False, True]
    forced, _ = candidates(smoke(precision="bf16"), CPU)  # forced: emulated where not native
    assert [p.name for p in forced] == ["bf16"]


def test_choose_measures_once_then_reads_the_cache(fresh_cache, monkeypatch):
    cfg = smoke()
    model = build_model(cfg, 3)
    first = choose(cfg, model, CPU, "train")
    assert first.how == "measured" and set(first.seconds) >= {"fp32/contiguous",
                                                               "fp32/channels_last"}
    assert first.name == min(first.seconds, key=first.seconds.__getitem__)
    stored = json.loads((fresh_cache / CACHE_FILE).read_text())
    assert [e["choice"] for e in stored.values()] == [first.name]
    monkeypatch.setattr(placement, "_CHOSEN", {})  # a new process
    monkeypatch.setattr(placement, "measure", lambda *a, **k: pytest.fail("measured again"))
    again = choose(cfg, model, CPU, "train")
    assert again.how == "cached" and again.name == first.name
    assert again.seconds == pytest.approx(first.seconds)


def test_a_corrupt_cache_is_measured_again(fresh_cache):
    fresh_cache.mkdir(parents=True)
    (fresh_cache / CACHE_FILE).write_text("{not json")
    cfg = smoke()
    assert choose(cfg, build_model(cfg, 3), CPU, "infer").how == "measured"
    assert json.loads((fresh_cache / CACHE_FILE).read_text())  # rewritten, readable


def test_a_forced_choice_is_not_measured(fresh_cache, monkeypatch):
    monkeypatch.setattr(placement, "measure", lambda *a, **k: pytest.fail("measured"))
    cfg = smoke(precision="bf16", memory_format="contiguous")
    chosen = choose(cfg, build_model(cfg, 3), CPU, "train")
    assert (chosen.how, chosen.name, chosen.precision.autocast) == (
        "forced", "bf16/contiguous", torch.bfloat16)
    assert not (fresh_cache / CACHE_FILE).exists()


def test_measure_leaves_the_model_and_the_random_state_alone(fresh_cache):
    cfg = smoke()
    model = build_model(cfg, 3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    state = torch.get_rng_state()
    seconds = measure(cfg, model, CPU, "train",
                      [(placement.FP32, False), (placement.FP32, True)], rounds=1)
    assert set(seconds) == {"fp32/contiguous", "fp32/channels_last"}
    assert all(s > 0 for s in seconds.values())
    assert torch.equal(torch.get_rng_state(), state)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert not is_channels_last(model) and model.training


@pytest.mark.parametrize("in_channels", [1, 3])
def test_in_memory_format_converts_for_the_block_and_back(in_channels):
    model = build_model(smoke(), in_channels)
    params = list(model.parameters())
    with in_memory_format(model, True) as inside:
        assert inside is model and is_channels_last(model)
    assert not is_channels_last(model)
    assert all(a is b for a, b in zip(params, model.parameters(), strict=True))
    model.to(memory_format=torch.channels_last)
    with in_memory_format(model, False):
        assert not is_channels_last(model)
    assert is_channels_last(model)


def test_describe_and_record():
    p = Placement(placement.FP32, True, "measured", {"fp32/channels_last": 0.01})
    assert p.describe() == "fp32/channels_last (measured: fp32/channels_last 10.0 ms)"
    assert p.as_dict() == {"precision": "fp32", "memory_format": "channels_last",
                           "how": "measured", "seconds": {"fp32/channels_last": 0.01},
                           "note": ""}


def _path_not_chosen() -> str:
    """The precision this CPU's ``auto`` does not train the smoke network in."""
    cfg = smoke()
    auto = choose(cfg, build_model(cfg, 3), CPU, "train").precision.name
    return "bf16" if auto == "fp32" else "fp32"


@pytest.mark.parametrize("memory_format", ["contiguous", "channels_last"])
def test_the_precision_this_cpu_does_not_choose_trains_and_evaluates(tmp_path, small_data_root,
                                                                     memory_format):
    """Smoke test of the other path: it trains, records what it ran in, and its metrics are
    those of its model.pt evaluated again (one code path: the same placement)."""
    other = _path_not_chosen()
    cfg = smoke(precision=other, memory_format=memory_format)
    result = train(cfg, tmp_path / "r", progress=False, data_root=small_data_root,
                   log=lambda _: None)
    assert result.steps == cfg.steps and all(
        torch.isfinite(torch.tensor(r["loss"])) for r in result.history)
    env = json.loads((tmp_path / "r" / "environment.json").read_text())
    assert (env["precision"], env["memory_format"]) == (other, memory_format)
    assert env["placement"]["train"]["how"] == env["placement"]["infer"]["how"] == "forced"
    assert env["placement"]["infer"]["precision"] == other
    model, loaded, threshold = load_model(tmp_path / "r" / "model.pt")
    assert loaded == cfg
    test = load_data(cfg, small_data_root).test
    assert result.metrics["test"] == evaluate(model, test, loaded, threshold)
