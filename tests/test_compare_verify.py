"""`lseg-encoder compare` and `lseg-encoder verify` on the tiny config (fast, CPU)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lseg_encoder.cli import main


@pytest.fixture
def feature_files(tmp_path):
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((512, 12, 16)).astype(np.float32)
    ref /= np.linalg.norm(ref, axis=0, keepdims=True)
    bad = ref + 1e-3 * rng.standard_normal(ref.shape).astype(np.float32)
    paths = {}
    for name, arr in {"ref": ref, "same": ref.copy(), "bad": bad, "other_shape": ref[:, :8]}.items():
        paths[name] = tmp_path / f"{name}.npy"
        np.save(paths[name], arr)
    return paths


def test_compare_identical_files_pass(feature_files, tmp_path, capsys):
    out = tmp_path / "cmp"
    assert main(["compare", str(feature_files["same"]), str(feature_files["ref"]), "--out", str(out)]) == 0
    data = json.loads((out / "compare.json").read_text())
    assert data["passed"] is True and data["rows"][0]["metrics"]["max_abs"] == 0.0
    assert "| PASS |" in (out / "compare.md").read_text()
    assert (out / "pixel_cosine_worst.png").stat().st_size > 1000


def test_compare_perturbed_files_fail_naming_the_metric(feature_files, tmp_path, capsys):
    out = tmp_path / "cmp"
    code = main(["compare", str(feature_files["bad"]), str(feature_files["ref"]), "--out", str(out)])
    assert code == 1
    err = capsys.readouterr().err
    assert "FAIL" in err and "max_abs" in err and "would pass with" in err
    data = json.loads((out / "compare.json").read_text())
    assert data["passed"] is False
    assert any(f.startswith("max_abs") for f in data["rows"][0]["failures"])
    # the same perturbation passes the looser fp16 row of the tolerance table: the table is what decides
    assert main(["compare", str(feature_files["bad"]), str(feature_files["ref"]), "--precision", "fp16",
                 "--out", str(tmp_path / "fp16")]) == 0


@pytest.mark.parametrize("case, message", [("missing", "not found"), ("shape", "shape mismatch"),
                                           ("one", "two feature files")])
def test_compare_bad_input_is_one_line_exit_2(case, message, feature_files, tmp_path, capsys):
    files = {"missing": [str(tmp_path / "nope.npy"), str(feature_files["ref"])],
             "shape": [str(feature_files["other_shape"]), str(feature_files["ref"])],
             "one": [str(feature_files["ref"])]}[case]
    assert main(["compare", *files, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error:") and message in err


def test_compare_backends_writes_json_md_png(tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "backends"
    code = main(["compare", "--weights", str(tiny_checkpoint), "--backbone", "tiny", "--backends",
                 "torch,onnxruntime,tensorrt", "--sizes", "64", "96x64", "--out", str(out)])
    data = json.loads((out / "compare.json").read_text())
    assert code == 0, data
    rows = [(r["size"], r["candidate"]) for r in data["rows"]]
    assert ("64x64", "onnxruntime") in rows and ("96x64", "onnxruntime") in rows
    assert all(r["metrics"]["label_agreement"] is not None for r in data["rows"])
    if "tensorrt" not in [c for _, c in rows]:
        (skip,) = [s for s in data["skipped"] if s["backend"] == "tensorrt"]
        assert skip["reason"]  # a reason, never a silent skip
    assert data["schema"] == "lseg-encoder/compare/v1" and data["machine"]["torch"]  # the machine record
    md = (out / "compare.md").read_text()
    assert "| size | candidate |" in md and "label agreement" in md and "pixel_cosine_worst.png" in md
    assert (out / "pixel_cosine_worst.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_compare_two_checkpoints_metrics_only(tiny_checkpoint, tmp_path):
    from lseg_encoder.weights.synthetic import default_synthetic_checkpoint

    other = default_synthetic_checkpoint("tiny", offset=1)
    out = tmp_path / "ckpts"
    assert main(["compare", "--weights", str(tiny_checkpoint), "--weights-b", str(other), "--backbone", "tiny",
                 "--backend", "torch", "--sizes", "64", "--out", str(out)]) == 0
    data = json.loads((out / "compare.json").read_text())
    assert data["mode"] == "checkpoints" and data["passed"] is None
    row = data["rows"][0]
    assert row["passed"] is None and row["metrics"]["cosine"] < 0.999  # different weights really differ
    assert "no pass/fail" in (out / "compare.md").read_text()


def test_verify_tiny_writes_report(tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "verify"
    code = main(["verify", "--weights", str(tiny_checkpoint), "--backbone", "tiny", "--sizes", "64",
                 "--backends", "onnxruntime,onnxruntime-fp16,tensorrt", "--iterations", "1", "--out", str(out)])
    report = json.loads((out / "report.json").read_text())
    assert code == 0, report["fidelity"]
    md = (out / "report.md").read_text()
    assert md.splitlines()[2].startswith("> **SYNTHETIC WEIGHTS**")
    for section in ("## Fidelity", "## Latency", "## Artefacts", "## Skipped", "## Machine", "## Segmentation"):
        assert section in md
    assert report["synthetic_weights"] is True and report["passed"] is True
    assert {r["candidate"] for r in report["fidelity"]} >= {"onnxruntime", "onnxruntime-fp16"}
    assert {(s["backend"], s["mode"]) for s in report["latency"]} >= {("torch", "device"), ("torch", "end-to-end")}
    assert [a["precision"] for a in report["artefacts"] if a["kind"] == "onnx"] == ["fp32", "fp16"]
    for key in ("gpu", "driver", "cuda", "torch", "onnxruntime", "tensorrt"):
        assert key in report["machine"]
    ran_tensorrt = any(r["candidate"] == "tensorrt" for r in report["fidelity"])
    assert ran_tensorrt or report["skipped"]["tensorrt"]
    assert set(report["segmentation_fractions"]) >= {"torch", "onnxruntime", "onnxruntime-fp16"}
    png = out / report["segmentation_png"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_verify_fails_on_a_broken_tolerance(tiny_checkpoint, tmp_path, monkeypatch):
    """A verdict failing makes `verify` exit 1 and say FAIL; demonstrated with an impossible fp32 row."""
    import dataclasses

    from lseg_encoder.fidelity import tolerances

    strict = dataclasses.replace(tolerances.TOLERANCES["fp32"], max_abs=0.0, rel_l2=0.0)
    monkeypatch.setitem(tolerances.TOLERANCES, "fp32", strict)
    out = tmp_path / "verify"
    code = main(["verify", "--weights", str(tiny_checkpoint), "--backbone", "tiny", "--sizes", "64",
                 "--backends", "onnxruntime", "--iterations", "1", "--out", str(out)])
    assert code == 1
    md = (out / "report.md").read_text()
    assert "**Verdict: FAIL**" in md and "max_abs" in md


def test_verify_unknown_backend_is_exit_2(tiny_checkpoint, tmp_path, capsys):
    assert main(["verify", "--weights", str(tiny_checkpoint), "--backbone", "tiny", "--sizes", "64",
                 "--backends", "onnxruntime,nope", "--out", str(tmp_path / "v")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "error:" in err[-1] and "'nope'" in err[-1] and err[0].startswith("usage: lseg-encoder verify")
    assert not (tmp_path / "v").exists()
