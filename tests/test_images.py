"""Every image mode against a conversion computed here with numpy, EXIF orientation, the pixel limit
(refused from the header, before decoding) and unreadable files."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from lseg_encoder.errors import ImageError
from lseg_encoder.images import load_image

RNG = np.random.default_rng(14)
H, W = 7, 9


def over_white(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Straight-alpha compositing over white, rounded to nearest (the documented rule)."""
    a = alpha.astype(np.float64)[..., None] / 255.0
    return np.rint(rgb.astype(np.float64) * a + 255.0 * (1.0 - a)).astype(np.uint8)


def grey3(v: np.ndarray) -> np.ndarray:
    return np.repeat(v[..., None], 3, axis=2)


def png_rgb16(path, rgb16: np.ndarray) -> None:
    """A 16-bit-per-channel RGB PNG written by hand (Pillow cannot write one)."""
    h, w, _ = rgb16.shape
    raw = b"".join(b"\x00" + rgb16[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw))
                     + chunk(b"IEND", b""))


def case_i16(tmp_path):
    v = RNG.integers(0, 65536, (H, W), dtype=np.uint16)
    v[0, :3] = (0, 255, 65535)  # the ends of the range: 0 -> 0, 255 -> 0, 65535 -> 255
    path = tmp_path / "grey16.png"
    Image.fromarray(v).save(path)
    assert Image.open(path).mode == "I;16"  # what Pillow gives for a 16-bit greyscale PNG
    return path, grey3((v // 256).astype(np.uint8))


def case_i16b(tmp_path):
    v = RNG.integers(0, 65536, (H, W), dtype=np.uint16)
    im = Image.frombytes("I;16B", (W, H), v.astype(">u2").tobytes())
    assert im.mode == "I;16B"
    return im, grey3((v // 256).astype(np.uint8))


def case_i32(tmp_path):
    v = RNG.integers(-1000, 70000, (H, W), dtype=np.int32)  # outside 0..65535 clips
    path = tmp_path / "grey32.tif"
    Image.fromarray(v, "I").save(path)
    return path, grey3((np.clip(v, 0, 65535) // 256).astype(np.uint8))


def case_f_unit(tmp_path):
    v = RNG.random((H, W), dtype=np.float32)
    path = tmp_path / "unit.tif"
    Image.fromarray(v, "F").save(path)
    return path, grey3(np.rint(v.astype(np.float64) * 255).astype(np.uint8))


def case_f_range(tmp_path):
    v = (RNG.random((H, W)) * 500 - 100).astype(np.float32)  # depth-like: stretched min..max
    lo, hi = float(v.min()), float(v.max())
    return Image.fromarray(v, "F"), grey3(np.rint((v.astype(np.float64) - lo) / (hi - lo) * 255).astype(np.uint8))


def case_rgb16(tmp_path):
    v = RNG.integers(0, 65536, (H, W, 3), dtype=np.uint16)
    path = tmp_path / "rgb16.png"
    png_rgb16(path, v)
    return path, (v // 256).astype(np.uint8)


def case_p_transparency(tmp_path):
    palette = RNG.integers(0, 256, (16, 3), dtype=np.uint8)
    index = RNG.integers(0, 16, (H, W), dtype=np.uint8)
    im = Image.fromarray(index, "P")
    im.putpalette(palette.ravel().tolist())
    im.info["transparency"] = 5
    path = tmp_path / "palette.png"
    im.save(path, transparency=5)
    alpha = np.where(index == 5, 0, 255).astype(np.uint8)
    return path, over_white(palette[index], alpha)


def case_pa(tmp_path):
    palette = RNG.integers(0, 256, (16, 3), dtype=np.uint8)
    index = RNG.integers(0, 16, (H, W), dtype=np.uint8)
    alpha = RNG.integers(0, 256, (H, W), dtype=np.uint8)
    im = Image.fromarray(np.dstack([index, alpha]), "LA")
    im = Image.merge("PA", [Image.fromarray(index, "L"), Image.fromarray(alpha, "L")])
    im.putpalette(palette.ravel().tolist())
    return im, over_white(palette[index], alpha)


def case_la(tmp_path):
    la = RNG.integers(0, 256, (H, W, 2), dtype=np.uint8)
    path = tmp_path / "la.png"
    Image.fromarray(la, "LA").save(path)
    return path, over_white(grey3(la[..., 0]), la[..., 1])


def case_rgba(tmp_path):
    rgba = RNG.integers(0, 256, (H, W, 4), dtype=np.uint8)
    rgba[0, 0, 3], rgba[0, 1, 3] = 0, 255  # fully transparent -> white; opaque -> unchanged
    path = tmp_path / "rgba.png"
    Image.fromarray(rgba, "RGBA").save(path)
    return path, over_white(rgba[..., :3], rgba[..., 3])


def case_cmyk(tmp_path):
    cmyk = RNG.integers(0, 256, (H, W, 4), dtype=np.uint8)
    path = tmp_path / "cmyk.tif"
    Image.fromarray(cmyk, "CMYK").save(path)
    ink = 255.0 - cmyk.astype(np.float64)
    return path, np.rint(ink[..., :3] * ink[..., 3:] / 255.0).astype(np.uint8)


def case_l(tmp_path):
    v = RNG.integers(0, 256, (H, W), dtype=np.uint8)
    path = tmp_path / "grey.png"
    Image.fromarray(v, "L").save(path)
    return path, grey3(v)


def case_1(tmp_path):
    v = RNG.random((H, W)) > 0.5
    path = tmp_path / "bits.png"
    Image.fromarray(v).save(path)
    return path, grey3(np.where(v, 255, 0).astype(np.uint8))


def case_rgb(tmp_path):
    v = RNG.integers(0, 256, (H, W, 3), dtype=np.uint8)
    path = tmp_path / "rgb.png"
    Image.fromarray(v, "RGB").save(path)
    return path, v


CASES = {name[5:]: fn for name, fn in globals().items() if name.startswith("case_")}


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_mode_matches_the_documented_conversion(tmp_path, case):
    source, expected = CASES[case](tmp_path)
    got = load_image(source)
    assert got.mode == "RGB" and got.size == (W, H)
    np.testing.assert_array_equal(np.asarray(got), expected)


def test_sixteen_bit_is_not_white(tmp_path):
    """The reported bug: Pillow's own convert("RGB") clips I;16 to (almost) pure white."""
    path, expected = case_i16(tmp_path)
    assert np.asarray(Image.open(path).convert("RGB")).mean() > 240  # the bug this module exists for
    assert abs(np.asarray(load_image(path)).mean() - expected.mean()) < 1e-9 and expected.mean() < 200


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_exif_orientation_is_applied(tmp_path, suffix):
    stored = np.zeros((20, 40, 3), dtype=np.uint8)
    stored[:, :20] = (255, 0, 0)   # left half red
    stored[:, 20:] = (0, 0, 255)   # right half blue
    im = Image.fromarray(stored)
    exif = im.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    path = tmp_path / f"phone{suffix}"
    im.save(path, exif=exif, **({"quality": 95} if suffix == ".jpg" else {}))
    got = load_image(path)
    assert got.size == (20, 40)  # displayed: W=20, H=40
    assert got.info["stored_size"] == (40, 20) and got.info["exif_orientation"] == 6
    expected = np.rot90(stored, k=-1)  # clockwise: the stored left column becomes the top row
    diff = np.abs(np.asarray(got).astype(int) - expected.astype(int))
    if suffix == ".png":
        assert diff.max() == 0
    else:  # JPEG: exact away from the colour edge (chroma subsampling blurs the middle rows)
        assert diff[:16].max() <= 8 and diff[24:].max() <= 8


def png_header_only(path, width: int, height: int) -> None:
    """A PNG whose header claims a size, with almost no pixel data: decoding would fail, opening not."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
                     + chunk(b"IEND", b""))


def test_image_over_the_pixel_limit_is_refused_before_decoding(tmp_path, monkeypatch):
    from PIL import ImageFile

    path = tmp_path / "huge.png"
    png_header_only(path, 12000, 12000)  # 144 MP: the out-of-memory case
    decoded = []
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: decoded.append(self) or None)
    with pytest.raises(ImageError) as err:
        load_image(path)
    message = str(err.value)
    assert "12000x12000 = 144000000 pixels, over --max-pixels 50000000 (144.0 MP > 50 MP)" in message
    assert "\n" not in message
    assert decoded == []  # refused from the header alone


def test_pixel_limit_is_configurable(tmp_path):
    path, _ = case_rgb(tmp_path)
    with pytest.raises(ImageError, match="over --max-pixels 60 "):
        load_image(path, max_pixels=60)
    assert load_image(path, max_pixels=H * W).size == (W, H)


def test_decompression_bomb_is_one_line(tmp_path):
    path = tmp_path / "bomb.png"
    png_header_only(path, 20000, 20000)  # above Pillow's own bomb limit (2 x 89 MP)
    with pytest.raises(ImageError) as err:
        load_image(path, max_pixels=None)  # our limit off: Pillow's check must still give one line
    assert "decompression bomb" in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize(("content", "message"), [
    (b"", "empty file"),
    (b"this is not an image", "cannot decode image"),
    (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "cannot decode image"),   # corrupt PNG
    (b"\xff\xd8\xff\xe0" + b"\x00" * 20, "cannot decode image"),   # truncated JPEG
    (b"%PDF-1.4\n", "cannot decode image"),                          # unsupported format
])
def test_unreadable_files_give_one_line(tmp_path, content, message):
    path = tmp_path / "bad.img"
    path.write_bytes(content)
    with pytest.raises(ImageError) as err:
        load_image(path)
    assert message in str(err.value) and str(path) in str(err.value) and "\n" not in str(err.value)


def test_arrays_must_say_what_they_are():
    rgb = RNG.integers(0, 256, (H, W, 3), dtype=np.uint8)
    np.testing.assert_array_equal(np.asarray(load_image(rgb)), rgb)
    with pytest.raises(ImageError, match="HxWx3"):
        load_image(rgb[..., 0])
    with pytest.raises(ImageError, match="uint8"):
        load_image(rgb.astype(np.float32))


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(ImageError, match="not found"):
        load_image(tmp_path / "nope.png")
    with pytest.raises(ImageError, match="not a file"):
        load_image(tmp_path)
