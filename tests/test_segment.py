"""Label-prompted segmentation: the backend-agnostic head (constructed cases), and the CLI end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from lseg_encoder.cli import main
from lseg_encoder.errors import LabelError
from lseg_encoder.segment import LOGIT_SCALE, label_maps, parse_labels, pixel_logits, segment_features


def quadrant_features(n: int = 16, channels: int = 8) -> tuple[torch.Tensor, np.ndarray]:
    """(1, C, n, n) features whose quadrants are basis vectors e0..e3, and the winner of each pixel."""
    winner = np.zeros((n, n), dtype=np.int64)
    winner[: n // 2, n // 2 :], winner[n // 2 :, : n // 2], winner[n // 2 :, n // 2 :] = 1, 2, 3
    feats = torch.nn.functional.one_hot(torch.from_numpy(winner), channels).permute(2, 0, 1)[None].float()
    return feats, winner


def test_constructed_case_gives_the_known_winners():
    feats, winner = quadrant_features()
    # text features: label i is e_i plus a little of the others, so each quadrant has one clear winner
    text = torch.eye(4, 8) + 0.1 * torch.roll(torch.eye(4, 8), 1, dims=1)
    maps = label_maps(feats, text)  # x2 upsample only: (32, 32)
    assert maps.shape == (1, 32, 32)
    # output pixel y samples input coordinate y * 15/31 (align_corners=True): pixels whose two
    # neighbouring source rows/cols fall in one quadrant must carry exactly that quadrant's label
    src = np.arange(32) * 15 / 31
    pure = (np.floor(src) < 8) == (np.ceil(src) < 8)
    expected = winner[np.floor(src).astype(int)][:, np.floor(src).astype(int)]
    got = maps[0].numpy()
    assert (got[np.ix_(pure, pure)] == expected[np.ix_(pure, pure)]).all()
    assert pure.sum() == 30  # only the two middle rows/cols mix quadrants


def test_logits_use_the_fixed_lseg_scale_and_normalise_text():
    feats, _ = quadrant_features(4)
    logits = pixel_logits(feats, 3.0 * torch.eye(4, 8))  # text norm 3 is normalised away
    assert torch.allclose(logits.amax(dim=1), torch.full((1, 4, 4), LOGIT_SCALE))


def test_label_map_has_the_original_image_size_and_fractions_sum_to_one():
    feats, _ = quadrant_features()
    text = torch.eye(4, 8)
    result = segment_features(feats, text, ["a", "b", "c", "d"], (45, 71))  # non-square original
    assert result.label_map.shape == (45, 71)
    assert sum(result.fractions.values()) == pytest.approx(1.0)
    assert all(0.2 < f < 0.3 for f in result.fractions.values())  # four quadrants of similar size
    # the top-left corner is quadrant 0, the bottom-right corner quadrant 3
    assert result.label_map[0, 0] == 0 and result.label_map[-1, -1] == 3


@pytest.mark.parametrize("bad, message", [
    ("", "empty label list"), (" , ", "empty label list"), ("dog,,cat", "empty label"),
    ("dog, cat, Dog", "duplicate"), (["grass", "grass "], "duplicate"),
])
def test_bad_label_lists_are_refused(bad, message):
    with pytest.raises(LabelError, match=message):
        parse_labels(bad)


def test_parse_labels_keeps_order_and_strips():
    assert parse_labels(" dog,  grass , other ") == ["dog", "grass", "other"]


def test_segment_image_api_with_a_runner(tiny_encoder):
    from PIL import Image

    from lseg_encoder.runners import TorchRunner
    from lseg_encoder.segment import segment_image
    from lseg_encoder.text import load_text_encoder
    from lseg_encoder.weights.synthetic import default_synthetic_checkpoint

    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (50, 90, 3), dtype=np.uint8))
    text = load_text_encoder(default_synthetic_checkpoint("tiny"))
    with TorchRunner(tiny_encoder) as runner:
        result = segment_image(runner, text, image, "dog, grass, other", 128)
    assert result.label_map.shape == (50, 90)  # the original image, not the 128 px network input
    assert result.labels == ["dog", "grass", "other"]
    assert set(np.unique(result.label_map)) <= {0, 1, 2}


def test_cli_segment_end_to_end(tmp_path, tiny_checkpoint, capsys):
    from PIL import Image

    out = tmp_path / "seg.png"
    rc = main(["segment", "--backbone", "tiny", "--labels", "dog, grass, other", "--size", "128",
               "--output", str(out)])
    assert rc == 0
    with Image.open(out) as png:
        assert png.format == "PNG" and png.width > 2 * png.height  # three panels side by side
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["labels"] == ["dog", "grass", "other"]
    assert report["image_size"] == [300, 451]  # the bundled sample image
    assert sum(report["fractions"].values()) == pytest.approx(1.0)
    assert report["synthetic_weights"] is True and report["backbone"] == "tiny"
    assert "SYNTHETIC" in capsys.readouterr().err


@pytest.mark.parametrize("args, message", [
    (["--labels", ""], "empty label list"),
    (["--labels", "dog, dog"], "duplicate label"),
    (["--labels", "dog, " + "very " * 80 + "long"], "77"),
    (["--labels", "dog, cat", "--size", "112"], "not supported by tiny"),
])
def test_cli_bad_input_exits_2_with_one_line(tmp_path, tiny_checkpoint, capsys, args, message):
    rc = main(["segment", "--backbone", "tiny", "--output", str(tmp_path / "x.png"), *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert err[-1].startswith("error: ") and message in err[-1]
    assert not (tmp_path / "x.png").exists()


def test_cli_unreadable_image(tmp_path, capsys):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not an image at all")
    rc = main(["segment", "--backbone", "tiny", "--labels", "dog, cat", "--image", str(bad),
               "--output", str(tmp_path / "x.png")])
    assert rc == 2 and "cannot decode image" in capsys.readouterr().err
