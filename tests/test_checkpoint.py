"""Checkpoint loading: formats, real dtypes, strictness and one-line errors for bad files."""

from __future__ import annotations

import re
import sys
import types

import pytest
import torch

from lseg_encoder import load_encoder
from lseg_encoder.errors import CheckpointError
from lseg_encoder.weights.checkpoint import read_checkpoint
from lseg_encoder.weights.synthetic import synthetic_checkpoint, synthetic_state_dict


@pytest.fixture(scope="module")
def tiny_state():
    return synthetic_state_dict("tiny")


def _assert_same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def test_lightning_checkpoint_with_real_dtypes(tiny_checkpoint):
    raw = torch.load(tiny_checkpoint, weights_only=True)
    sd = raw["state_dict"]
    assert all(k.startswith("net.") for k in sd)
    assert sd["net.clip_pretrained.text_projection"].dtype == torch.float16  # real CLIP dtype
    assert sd["net.clip_pretrained.ln_final.weight"].dtype == torch.float32
    enc = load_encoder(tiny_checkpoint)
    assert enc.config.name == "tiny" and enc.synthetic
    assert not enc.training


def test_plain_state_dict_and_safetensors_give_same_model(tmp_path, tiny_state, tiny_encoder):
    from safetensors.torch import save_file

    plain = {k.removeprefix("net."): v for k, v in tiny_state.items()}
    torch.save(plain, tmp_path / "plain.pth")
    save_file({k: v.contiguous() for k, v in tiny_state.items()}, tmp_path / "w.safetensors")
    torch.save({"model": plain}, tmp_path / "wrapped.pt")
    for name in ("plain.pth", "w.safetensors", "wrapped.pt"):
        enc = load_encoder(tmp_path / name)
        assert not enc.synthetic  # no marker in these files
        _assert_same_weights(enc, tiny_encoder)


def test_backbone_inferred_and_explicit_mismatch(tiny_checkpoint):
    with pytest.raises(CheckpointError, match=r"does not match backbone clip_vitl16_384: .*missing keys"):
        load_encoder(tiny_checkpoint, backbone="clip_vitl16_384")


def test_renamed_key_is_named(tmp_path, tiny_state):
    state = dict(tiny_state)
    state["net.scratch.head1.weightX"] = state.pop("net.scratch.head1.weight")
    torch.save({"state_dict": state}, tmp_path / "renamed.ckpt")
    with pytest.raises(CheckpointError) as err:
        load_encoder(tmp_path / "renamed.ckpt", backbone="tiny")
    msg = str(err.value)
    assert "missing keys: 1 (scratch.head1.weight)" in msg
    assert "unexpected keys: 1 (scratch.head1.weightX)" in msg
    assert "\n" not in msg


def test_shape_mismatch_is_named(tmp_path, tiny_state):
    state = dict(tiny_state)
    state["net.scratch.head1.bias"] = torch.zeros(7)
    torch.save({"state_dict": state}, tmp_path / "shape.ckpt")
    with pytest.raises(CheckpointError, match=r"shape mismatches: 1 \(scratch.head1.bias \(7,\) vs expected \(512,\)"):
        load_encoder(tmp_path / "shape.ckpt", backbone="tiny")


def test_unused_official_keys_are_accepted(tmp_path, tiny_state):
    state = dict(tiny_state)
    state["net.pretrained.model.head.weight"] = torch.zeros(10, 64)
    state["net.scratch.refinenet4.resConfUnit1.conv1.weight"] = torch.zeros(32, 32, 3, 3)
    torch.save({"state_dict": state}, tmp_path / "extra.ckpt")
    load_encoder(tmp_path / "extra.ckpt")


@pytest.mark.parametrize("kind", ["missing", "directory", "garbage", "truncated", "not_state_dict", "empty"])
def test_bad_files_give_one_line(tmp_path, tiny_checkpoint, kind):
    path = tmp_path / "bad.ckpt"
    if kind == "directory":
        path.mkdir()
    elif kind == "garbage":
        path.write_bytes(b"this is not a checkpoint" * 100)
    elif kind == "truncated":
        path.write_bytes(tiny_checkpoint.read_bytes()[:100_000])
    elif kind == "not_state_dict":
        torch.save([1, 2, 3], path)
    elif kind == "empty":
        path.write_bytes(b"")
    with pytest.raises(CheckpointError) as err:
        load_encoder(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_pickled_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("owned",))

    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {"x": torch.zeros(1)}, "payload": Evil()}, path)
    with pytest.raises(CheckpointError) as err:
        read_checkpoint(path)
    message = str(err.value)
    assert re.search(r"global (builtins\.)?print\b.*would run code", message)  # names the global and why
    assert "weights_only" not in message and "\n" not in message  # never suggests the unsafe switch
    assert message.endswith(".")  # a whole sentence, not cut at a fixed width


@pytest.mark.parametrize("legacy", [True, False], ids=["legacy-non-zip", "zip"])
def test_both_torch_save_formats_load_with_weights_only(tmp_path, tiny_state, legacy):
    path = tmp_path / "tiny.pt"
    torch.save({"state_dict": tiny_state}, path,
               _use_new_zipfile_serialization=not legacy)
    encoder = load_encoder(path, backbone="tiny")
    for key, value in encoder.checkpoint_state_dict().items():
        assert torch.equal(value, tiny_state[f"net.{key}"].to(value.dtype)), key


def test_legacy_format_code_is_refused_too(tmp_path):
    import os

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo owned",))

    path = tmp_path / "evil_legacy.pt"
    torch.save({"payload": Evil()}, path, _use_new_zipfile_serialization=False)
    with pytest.raises(CheckpointError, match=r"global (posix|nt)\.system.*would run code"):
        read_checkpoint(path)


def test_lightning_callback_globals_are_allowed(tmp_path, tiny_state, monkeypatch):
    """Lightning 1.3/1.4 keys `callbacks` by the callback class; such files must still load."""
    mod = types.ModuleType("pytorch_lightning.callbacks.model_checkpoint")

    class ModelCheckpoint:
        pass

    ModelCheckpoint.__module__ = mod.__name__
    ModelCheckpoint.__qualname__ = "ModelCheckpoint"
    mod.ModelCheckpoint = ModelCheckpoint
    for name in ("pytorch_lightning", "pytorch_lightning.callbacks", mod.__name__):
        monkeypatch.setitem(sys.modules, name, mod if name == mod.__name__ else types.ModuleType(name))
    path = tmp_path / "lightning.ckpt"
    torch.save({"state_dict": tiny_state, "callbacks": {ModelCheckpoint: {"best_model_score": torch.tensor(0.5)}},
                "epoch": 3}, path)
    for name in ("pytorch_lightning", "pytorch_lightning.callbacks", mod.__name__):
        monkeypatch.delitem(sys.modules, name)
    enc = load_encoder(path)
    assert enc.config.name == "tiny"


def test_synthetic_checkpoint_is_atomic_and_labelled(tmp_path):
    path = synthetic_checkpoint(tmp_path / "s.ckpt", "tiny", offset=1)
    assert [p.name for p in tmp_path.iterdir()] == ["s.ckpt"]
    raw = read_checkpoint(path)
    assert raw.synthetic["offset"] == 1 and "SYNTHETIC" in raw.synthetic["note"]
