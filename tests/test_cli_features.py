"""`lseg-encoder features` end to end, with and without --weights, and its input errors."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest


def cli(*args, **kw):
    return subprocess.run([sys.executable, "-m", "lseg_encoder.cli", *args], capture_output=True, text=True, **kw)


def test_features_without_weights_is_labelled_synthetic(tmp_path):
    out = tmp_path / "f.npy"
    r = cli("features", "--backbone", "tiny", "--size", "256", "--output", str(out))
    assert r.returncode == 0, r.stderr
    assert "SYNTHETIC" in r.stderr
    feats = np.load(out)
    assert feats.shape == (512, 128, 128) and feats.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(feats, axis=0), 1.0, atol=1e-5)


def test_features_with_weights_matches_api(tmp_path, tiny_checkpoint, tiny_encoder):
    import torch

    from lseg_encoder.preprocess import preprocess, sample_image_path

    out = tmp_path / "f.npy"
    r = cli("features", "--weights", str(tiny_checkpoint), "--size", "320x256", "--output", str(out))
    assert r.returncode == 0, r.stderr
    with torch.inference_mode():
        want = tiny_encoder(preprocess(sample_image_path(), (320, 256), "tiny"))[0].numpy()
    np.testing.assert_array_equal(np.load(out), want)


@pytest.mark.parametrize(("args", "message"), [
    (["--image", "nope.png"], "image file not found"),
    (["--image", "{bad}"], "cannot decode image"),
    (["--size", "400"], "not supported by tiny"),
    (["--weights", "missing.ckpt"], "checkpoint file not found"),
])
def test_bad_input_one_line_nonzero_nothing_written(tmp_path, args, message):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    args = [a.replace("{bad}", str(bad)) for a in args]
    out = tmp_path / "f.npy"
    r = cli("features", "--backbone", "tiny", "--output", str(out), *args, cwd=tmp_path)
    assert r.returncode == 2
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and message in last
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".f.npy")]
