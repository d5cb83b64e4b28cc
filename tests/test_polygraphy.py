"""Polygraphy as an independent second referee (issue 16), on the tiny config, on CPU.

- Polygraphy's own OnnxrtRunner + Comparator, with tolerances from the one table, must reach the
  project's verdict (the project's OnnxRuntimeRunner + `metrics.check`) on the fp32 and fp16 ONNX
  at two sizes, and an ONNX whose Resize nodes lost `align_corners` must fail both.
- The same with Polygraphy's TrtRunner on the engine `build_engine` made, where TensorRT executes.
- The `polygraphy run` commands in docs/fidelity.md run as written, pass, and fail on the broken ONNX.
- `inspect_summary` / `inspect_markdown` report dynamic axes, opset, node count and engine profiles.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from lseg_encoder.errors import BackendUnavailable
from lseg_encoder.fidelity.metrics import check, feature_metrics
from lseg_encoder.fidelity.polygraphy_check import (
    OUTPUT_NAME,
    check_with_polygraphy,
    judge_run_results,
    polygraphy_tolerances,
    reference_pair,
    require_polygraphy,
    trt_runner_available,
)
from lseg_encoder.fidelity.tolerances import tolerance_for

pytestmark = pytest.mark.fidelity


@pytest.fixture(scope="module", autouse=True)
def polygraphy_probe():
    """Probed when a test runs, never at collection (which must import no optional backend)."""
    try:
        require_polygraphy()
    except BackendUnavailable as exc:
        pytest.skip(f"needs Polygraphy: {exc}")

ROOT = Path(__file__).resolve().parents[1]
SIZES = [(256, 256), (192, 320)]  # square and not; small: Polygraphy's stats sort every element
DOC_SIZE = (256, 256)  # the size docs/fidelity.md writes its reference at (its thresholds depend on it)


def _break_resize(src: Path, dst: Path) -> Path:
    """The export with every align_corners Resize switched to half_pixel (SPEC §5's classic port bug)."""
    import onnx

    model = onnx.load(str(src))
    switched = 0
    for node in model.graph.node:
        for attr in node.attribute:
            if node.op_type == "Resize" and attr.name == "coordinate_transformation_mode" \
                    and attr.s == b"align_corners":
                attr.s, switched = b"half_pixel", switched + 1
    assert switched, f"{src} has no align_corners Resize to break"
    onnx.save(model, str(dst))
    return dst


@pytest.fixture(scope="session")
def onnx_paths(tiny_encoder):
    from lseg_encoder.loaders import onnx_file

    return {p: onnx_file(tiny_encoder, precision=p, dynamic=True) for p in ("fp32", "fp16")}


@pytest.fixture(scope="session")
def broken_paths(onnx_paths, tmp_path_factory):
    folder = tmp_path_factory.mktemp("broken")
    return {p: _break_resize(path, folder / f"broken_resize_{p}.onnx") for p, path in onnx_paths.items()}


@pytest.fixture(scope="session")
def references(tiny_encoder):
    cache = {}

    def get(size):
        if size not in cache:
            cache[size] = reference_pair(tiny_encoder, size, seed=size[0] * 7919 + size[1])
        return cache[size]

    return get


def project_verdict(onnx_path, image, reference, precision):
    from lseg_encoder.runners.onnxruntime_runner import OnnxRuntimeRunner

    with OnnxRuntimeRunner(onnx_path, providers=["CPUExecutionProvider"]) as runner:
        got = runner.infer(torch.from_numpy(image))
    return check(feature_metrics(got, reference), precision)


# Polygraphy's verdict vs the project's -----------------------------------------------------------
@pytest.mark.parametrize("size", SIZES, ids=[f"{h}x{w}" for h, w in SIZES])
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_polygraphy_agrees_with_project(onnx_paths, references, precision, size):
    image, reference = references(size)
    ours = project_verdict(onnx_paths[precision], image, reference, precision)
    theirs = check_with_polygraphy(onnx_paths[precision], image, reference, precision)
    assert ours and theirs, f"project: {ours}\npolygraphy: {theirs}\n{theirs.log}"
    assert theirs.runner.startswith("polygraphy-onnxrt:")
    names = (["simple"] if tolerance_for(precision).max_abs is not None else []) + ["L2 Norm", "Cosine Similarity"]
    assert len(theirs.checks) == len(names), str(theirs)
    assert all(line.startswith(name) for (line, _), name in zip(theirs.checks, names)), str(theirs)


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_broken_resize_fails_both(broken_paths, references, precision):
    image, reference = references(SIZES[0])
    ours = project_verdict(broken_paths[precision], image, reference, precision)
    theirs = check_with_polygraphy(broken_paths[precision], image, reference, precision)
    assert not ours and not theirs, f"project: {ours}\npolygraphy: {theirs}"
    failed = [line for line, ok in theirs.checks if not ok]
    assert any(line.startswith("Cosine Similarity") and "FAILED" in line for line in failed), str(theirs)


def test_max_abs_boundary_agrees(references):
    """One element off by just more / just less than the fp32 max-abs tolerance: Polygraphy's simple
    check (max, rtol 0) and the project's max_abs check must flip together."""
    from polygraphy.comparator import RunResults

    _, reference = references(SIZES[0])
    reference = np.ascontiguousarray(reference[:, :, :16, :16])  # still unit vectors per pixel; cheap
    atol = tolerance_for("fp32").max_abs
    for delta, should_pass in ((0.9 * atol, True), (1.5 * atol, False)):
        candidate = reference.copy()
        candidate[0, 0, 0, 0] += delta
        results = RunResults()
        results.add([{OUTPUT_NAME: candidate}], runner_name="perturbed")
        theirs = judge_run_results(results, reference, "fp32")
        ours = check(feature_metrics(candidate, reference), "fp32")
        assert bool(theirs) == bool(ours) == should_pass, f"{delta}: project {ours}\npolygraphy {theirs}"


def test_tolerances_follow_the_table(references):
    _, reference = references(SIZES[0])
    norm = float(np.linalg.norm(reference.astype(np.float64)))
    assert norm == pytest.approx(np.sqrt(reference.shape[0] * reference.shape[2] * reference.shape[3]), rel=1e-5)
    for precision in ("fp32", "fp16", "bf16"):
        tol, pg = tolerance_for(precision), polygraphy_tolerances(precision, reference)
        assert pg.cosine_similarity_threshold == tol.cosine and pg.atol == tol.max_abs
        assert pg.l2_threshold == pytest.approx(tol.rel_l2 * norm)
        assert ("simple" in pg.cli_args()) == (tol.max_abs is not None)
        assert "label_agreement" in pg.not_expressed and "pixel_cos_p01" in pg.not_expressed


def test_missing_polygraphy_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "polygraphy", None)
    with pytest.raises(BackendUnavailable, match="pip install"):
        require_polygraphy()


# TensorRT ---------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def built_engines(onnx_paths):
    """The project's own engines (static 1x256x256), where some TensorRT flavour can build them."""
    from lseg_encoder.engine import FLAVOURS, BuildOptions, backend_available, build_engine
    from lseg_encoder.store.cache import cache_dir

    probes = {flavour: backend_available(flavour) for flavour in FLAVOURS}
    usable = [flavour for flavour, (ok, _) in probes.items() if ok]
    if not usable:
        pytest.skip("no TensorRT flavour can build engines here: " + "; ".join(r for _, r in probes.values()))
    return {p: build_engine(path, "1x256x256", BuildOptions(), backend=usable[0], cache_dir=cache_dir("engines")).path
            for p, path in onnx_paths.items()}


@pytest.mark.trt
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_trt_runner_agrees_with_project(built_engines, references, precision):
    engine = built_engines[precision]
    ok, reason = trt_runner_available(engine)
    if not ok:
        pytest.skip(f"Polygraphy's TrtRunner cannot execute the engine here: {reason}")
    from lseg_encoder.runners.tensorrt_runner import TensorRTRunner

    image, reference = references(SIZES[0])
    with TensorRTRunner(engine) as runner:
        got = runner.infer(torch.from_numpy(image).cuda()).cpu()
    ours = check(feature_metrics(got, reference), precision)
    theirs = check_with_polygraphy(engine, image, reference, precision, runner="trt")
    assert ours and theirs, f"project: {ours}\npolygraphy: {theirs}"


# inspect ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_inspect_onnx(onnx_paths, precision):
    import onnx

    from lseg_encoder.fidelity.polygraphy_inspect import inspect_markdown, inspect_summary

    summary = inspect_summary(onnx_paths[precision])
    model = onnx.load(str(onnx_paths[precision]), load_external_data=False)
    assert summary["opset"] == 18 and summary["node_count"] == len(model.graph.node)
    assert summary["precision"] == precision and summary["backbone"] == "tiny"
    (inp,), (out,) = summary["inputs"], summary["outputs"]
    assert (inp["name"], inp["dtype"], inp["dynamic_axes"]) == ("image", "float32", [0, 2, 3])
    assert inp["shape"] == ["batch", 3, "height", "width"]
    assert (out["name"], out["dtype"], out["shape"][1], out["dynamic_axes"]) == ("features", "float32", 512, [0, 2, 3])
    assert ("Cast" in summary["op_types"]) == (precision == "fp16")
    md = inspect_markdown(summary)
    assert "ONNX opset 18" in md and "| input | image | float32 | (batch, 3, height, width) |" in md


def test_inspect_engine(built_engines):
    from lseg_encoder.fidelity.polygraphy_inspect import inspect_markdown, inspect_summary

    engine = built_engines["fp32"]
    summary = inspect_summary(engine)
    ok, reason = trt_runner_available(engine)
    assert summary["sidecar"]["profiles"] == [{"min": [1, 256, 256], "opt": [1, 256, 256], "max": [1, 256, 256]}]
    md = inspect_markdown(summary)
    if ok:
        assert summary["profiles"][0]["min_opt_max"]["image"] == [[1, 3, 256, 256]] * 3 and summary["layer_count"]
        assert "profile 0: image: min (1, 3, 256, 256)" in md
    else:
        assert summary["inspected_by"] is None and summary["reason"] == reason
        assert reason in md and "min (1, 256, 256), opt (1, 256, 256), max (1, 256, 256)" in md


# the docs' command lines ------------------------------------------------------------------------
def doc_blocks() -> dict[str, str]:
    text = (ROOT / "docs" / "fidelity.md").read_text()
    blocks = dict(re.findall(r"<!-- polygraphy-docs-test: (\S+) -->\n```bash\n(.*?)```", text, re.S))
    assert {"reference", "onnxrt-fp32", "onnxrt-fp16", "trt-fp32"} <= set(blocks), sorted(blocks)
    return blocks


def run_block(block: str, **paths) -> subprocess.CompletedProcess:
    env = {**os.environ, **{k: str(v) for k, v in paths.items()}}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return subprocess.run(["bash", "-c", block], env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="session")
def doc_reference(tiny_checkpoint, tmp_path_factory):
    folder = tmp_path_factory.mktemp("polygraphy_docs")
    files = {"CHECKPOINT": tiny_checkpoint, "INPUTS": folder / "inputs.json", "REFERENCE": folder / "reference.json"}
    done = run_block(doc_blocks()["reference"], **files)
    assert done.returncode == 0, done.stderr[-3000:]
    return files


def test_docs_onnxrt_commands_run_as_written(doc_reference, onnx_paths, broken_paths):
    blocks = doc_blocks()
    paths = {**doc_reference, "ONNX": onnx_paths["fp32"], "ONNX_FP16": onnx_paths["fp16"]}
    for name in ("onnxrt-fp32", "onnxrt-fp16"):
        done = run_block(blocks[name], **paths)
        assert done.returncode == 0 and "PASSED" in done.stdout, f"{name}:\n{done.stdout[-3000:]}{done.stderr[-2000:]}"
    done = run_block(blocks["onnxrt-fp32"], **{**paths, "ONNX": broken_paths["fp32"]})
    assert done.returncode != 0 and "FAILED" in done.stdout, done.stdout[-3000:]


def test_docs_thresholds_match_the_table(tiny_encoder):
    """The literal numbers in the docs are what the tolerance table gives at the documented size
    (the helper writes its reference with seed 0)."""
    _, reference = reference_pair(tiny_encoder, DOC_SIZE, seed=0)
    blocks = doc_blocks()
    assert "--size 256" in blocks["reference"]
    for name, precision in (("onnxrt-fp32", "fp32"), ("onnxrt-fp16", "fp16"), ("trt-fp32", "fp32")):
        args = " ".join(polygraphy_tolerances(precision, reference).cli_args())
        assert args in " ".join(blocks[name].replace("\\\n", " ").split()), f"{name} should say: {args}"


@pytest.mark.trt
def test_docs_trt_command_runs_as_written(doc_reference, built_engines):
    from lseg_encoder.fidelity.polygraphy_check import engine_flavour

    engine = built_engines["fp32"]
    ok, reason = trt_runner_available(engine)
    if not ok:
        pytest.skip(f"TensorRT cannot execute the engine here: {reason}")
    block = doc_blocks()["trt-fp32"]
    if engine_flavour(engine) != "tensorrt_rtx":  # the docs: leave the variable out for TensorRT proper
        block = block.replace("POLYGRAPHY_USE_TENSORRT_RTX=1 ", "")
    done = run_block(block, **doc_reference, ENGINE=engine)
    assert done.returncode == 0 and "PASSED" in done.stdout, done.stdout[-3000:]


def test_reference_helper_refuses_a_bad_size(tiny_checkpoint, tmp_path, capsys):
    from lseg_encoder.fidelity.polygraphy_check import main

    inputs, reference = tmp_path / "inputs.json", tmp_path / "reference.json"
    code = main(["--checkpoint", str(tiny_checkpoint), "--size", "250", "--inputs", str(inputs),
                 "--reference", str(reference)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: ") and "250" in err[0], err
    assert list(tmp_path.iterdir()) == []
