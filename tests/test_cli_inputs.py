"""Bad input through the CLI: one line on stderr, exit 2, nothing written, and no checkpoint read
or model run before the arguments were checked. Also the first-ten-minutes behaviour (default
outputs, subcommand usage, the hidden test-only backbone, autograd-free inference, progress lines)."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from lseg_encoder.cli import main


@pytest.fixture
def no_model(monkeypatch):
    """Fail the test if a command reads a checkpoint, loads a model or builds an artefact."""
    def forbidden(*args, **kwargs):
        raise AssertionError("the model or an artefact was loaded before the arguments were checked")

    import lseg_encoder.export.onnx as onnx_mod
    import lseg_encoder.loaders as loaders
    import lseg_encoder.weights.checkpoint as ckpt
    import lseg_encoder.weights.synthetic as synth

    for module, name in [(ckpt, "load_encoder"), (ckpt, "read_checkpoint"), (synth, "default_synthetic_checkpoint"),
                         (onnx_mod, "export_onnx"), (loaders, "onnx_file"), (loaders, "engine_file"),
                         (loaders, "export_validated")]:
        monkeypatch.setattr(module, name, forbidden)


def one_error_line(capsys, rc: int) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2, err
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def files_under(path) -> list:
    return sorted(p.relative_to(path) for p in path.rglob("*") if p.is_file())


@pytest.mark.parametrize("command", [
    ["features", "--output", "f.npy"],
    ["segment", "--labels", "a, b", "--output", "s.png"],
    ["wordfree", "--output", "w.png"],
    ["export", "--output", "e.onnx"],
])
def test_oversized_size_is_refused_with_an_estimate_before_loading(tmp_path, monkeypatch, capsys, no_model, command):
    monkeypatch.chdir(tmp_path)
    size = ["--static", "1x100000x100000"] if command[0] == "export" else ["--size", "100000"]
    line = one_error_line(capsys, main([*command, "--backbone", "tiny", *size]))
    assert "100000x100000" in line and "GiB" in line and "estimate" in line and "largest square size" in line
    assert files_under(tmp_path) == []


@pytest.mark.parametrize("command", ["features", "segment", "wordfree", "export"])
@pytest.mark.parametrize("problem", ["directory", "parent_is_file", "suffix"])
def test_bad_output_paths_are_refused_before_loading(tmp_path, monkeypatch, capsys, no_model, command, problem):
    monkeypatch.chdir(tmp_path)
    suffix = {"features": ".npy", "export": ".onnx"}.get(command, ".png")
    (tmp_path / "a_file").write_text("x")
    output = {"directory": str(tmp_path), "parent_is_file": f"a_file/out{suffix}", "suffix": "out.txt"}[problem]
    extra = ["--labels", "a, b"] if command == "segment" else []
    line = one_error_line(capsys, main([command, "--backbone", "tiny", "--output", output, *extra]))
    assert {"directory": "is a directory", "parent_is_file": "is a file", "suffix": "must end in"}[problem] in line
    assert files_under(tmp_path) == [type(tmp_path)("a_file")]


@pytest.mark.parametrize(("labels", "message"), [("", "empty label list"), ("a,,b", "empty label"),
                                                 ("dog, Dog", "duplicate")])
def test_bad_labels_fail_before_loading(tmp_path, capsys, no_model, labels, message):
    line = one_error_line(capsys, main(["segment", "--backbone", "tiny", "--labels", labels,
                                        "--output", str(tmp_path / "s.png")]))
    assert message in line and files_under(tmp_path) == []


def test_image_over_max_pixels_is_one_line(tmp_path, capsys, no_model):
    image = tmp_path / "big.png"
    Image.new("RGB", (300, 200)).save(image)
    out = tmp_path / "s.png"
    line = one_error_line(capsys, main(["segment", "--backbone", "tiny", "--labels", "a, b", "--image", str(image),
                                        "--max-pixels", "50000", "--output", str(out)]))
    assert "300x200 = 60000 pixels, over --max-pixels 50000" in line and not out.exists()


def test_tensorrt_is_checked_before_anything_is_built(tmp_path, capsys, no_model, monkeypatch):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the refusal is for machines that cannot execute engines")
    line = one_error_line(capsys, main(["segment", "--backbone", "tiny", "--labels", "a, b", "--backend", "tensorrt",
                                        "--output", str(tmp_path / "s.png")]))
    assert "cannot run on cpu here, so nothing was built" in line and "CUDA" in line


def test_argument_errors_show_the_subcommand_usage(capsys):
    for argv in (["segment", "--bogus"], ["features", "--size", "abc"], ["segment", "--backbone", "nope"]):
        rc = main(argv)
        err = capsys.readouterr().err
        assert rc == 2
        assert f"usage: lseg-encoder {argv[0]}" in err and f"lseg-encoder {argv[0]}: error:" in err, err


def test_tiny_is_not_offered_but_still_accepted(capsys):
    assert main(["segment", "--help"]) == 0
    assert "tiny" not in capsys.readouterr().out
    assert main(["segment", "--backbone", "nope"]) == 2
    err = capsys.readouterr().err
    assert "clip_vitl16_384" in err and "tiny" not in err


def test_segment_default_output_and_displayed_size(tmp_path, monkeypatch, capsys):
    """No --output: reports/segment/<stem>.png; an EXIF-rotated photo is segmented as displayed."""
    monkeypatch.chdir(tmp_path)
    stored = np.zeros((60, 100, 3), dtype=np.uint8)
    stored[:, :50] = 200
    im = Image.fromarray(stored)
    exif = im.getexif()
    exif[0x0112] = 6
    im.save(tmp_path / "phone.jpg", exif=exif)
    rc = main(["segment", "--backbone", "tiny", "--labels", "cat, other", "--size", "256",
               "--image", str(tmp_path / "phone.jpg")])
    err = capsys.readouterr().err
    assert rc == 0, err
    png = tmp_path / "reports" / "segment" / "phone.png"
    assert png.is_file() and "reports/segment/phone.png" in err
    meta = json.loads(png.with_suffix(".json").read_text())
    assert meta["image_size"] == [100, 60] and meta["stored_size"] == [60, 100] and meta["exif_orientation"] == 6


def test_encoder_call_is_free_of_autograd(tiny_encoder):
    x = torch.randn(1, 3, 64, 64)
    feats = tiny_encoder(x)
    assert not feats.requires_grad
    assert feats.numpy().shape == (1, 512, 32, 32)  # the README's next step works
    tiny_encoder.autograd = True
    try:
        x.requires_grad_(True)
        tiny_encoder(x).sum().backward()  # opt-in gradients still work
        assert x.grad is not None and x.grad.abs().sum() > 0
    finally:
        tiny_encoder.autograd = False


def test_progress_without_a_terminal_prints_periodic_lines():
    from lseg_encoder.progress import progress

    sink = io.StringIO()  # not a tty, like a log file or a pipe
    with progress(5, "encoding vocabulary", "word", interval=0.0, file=sink) as bar:
        for _ in range(5):
            bar.update(1)
    lines = sink.getvalue().splitlines()
    assert lines[0] == "encoding vocabulary: 5 words ..." and "\r" not in sink.getvalue()
    assert lines[1].startswith("encoding vocabulary: 1/5 words (20%)")
    assert lines[-1].startswith("encoding vocabulary: 5/5 words (100%)") and lines[-1].endswith("done")


def test_long_library_messages_are_shortened_only_at_a_sentence_end():
    from lseg_encoder.errors import first_sentences

    first = "The global posix.system is not allowed. "
    long = first + "x" * 500 + " and the name at the end matters.\nsecond line with an IR dump"
    assert first_sentences(RuntimeError(long), limit=100) == first.strip()
    one_sentence = "y" * 400 + " posix.system"
    assert first_sentences(RuntimeError(one_sentence), limit=100) == one_sentence  # kept whole, never cut
    assert first_sentences(RuntimeError("short; fine\nmore")) == "short; fine"
    assert first_sentences(RuntimeError("")) == "RuntimeError"


@pytest.mark.parametrize("command", [
    ["features", "--output", "f.npy"], ["segment", "--labels", "a, b", "--output", "s.png"], ["verify"],
    ["compare", "--backends", "torch"], ["bench"], ["extract", "in", "--out", "o"],
])
@pytest.mark.parametrize("device", ["tpu", "meta"])
def test_a_bad_device_is_a_usage_error_before_loading(tmp_path, monkeypatch, capsys, no_model, command, device):
    """Every `--device` goes through `commands.common.device_arg` (before: a RuntimeError traceback from
    torch in `features`, a checked error only in `bench`)."""
    monkeypatch.chdir(tmp_path)
    rc = main([*command, "--device", device])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.endswith(f"argument --device: unknown device {device!r}; use cpu, cuda or cuda:N"), last
    assert files_under(tmp_path) == []
