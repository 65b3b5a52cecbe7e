"""Atomic, weights-only checkpoints and RNG capture."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from unet_train.checkpoint import capture_rng, load_checkpoint, restore_rng, save_checkpoint


def test_round_trip_weights_only(tmp_path):
    state = {"w": torch.arange(3.0), "step": 7, "name": "x", "nested": {"a": [1, 2.5, None]}}
    save_checkpoint(tmp_path / "c.pt", state)
    loaded = torch.load(tmp_path / "c.pt", weights_only=True)
    assert torch.equal(loaded["w"], state["w"]) and loaded["nested"] == state["nested"]


def test_failed_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "c.pt"
    save_checkpoint(path, {"step": 1})

    def broken_save(obj, f):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, {"step": 2})
    monkeypatch.undo()
    assert load_checkpoint(path)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]  # no temp file left behind


def test_code_carrying_checkpoint_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.pt"
    torch.save({"x": Evil()}, path)
    with pytest.raises(ValueError, match=f"checkpoint {path} could not be loaded"):
        load_checkpoint(path)


def test_missing_and_corrupt(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        load_checkpoint(tmp_path / "nope.pt")
    (tmp_path / "bad.pt").write_bytes(b"\x00garbage")
    with pytest.raises(ValueError, match="bad.pt"):
        load_checkpoint(tmp_path / "bad.pt")


def test_rng_capture_restores_every_generator(tmp_path):
    gen = np.random.default_rng(1)
    gen.random(3)
    save_checkpoint(tmp_path / "r.pt", {"rng": capture_rng(gen)})
    first = (torch.rand(3), random.random(), gen.random(2))
    restore_rng(load_checkpoint(tmp_path / "r.pt")["rng"], gen)
    second = (torch.rand(3), random.random(), gen.random(2))
    assert torch.equal(first[0], second[0]) and first[1] == second[1]
    assert np.array_equal(first[2], second[2])
