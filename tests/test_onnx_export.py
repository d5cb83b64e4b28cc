"""ONNX export: fp32/fp16 x static/dynamic x sizes validated with ONNX Runtime against PyTorch fp32,
graph structure (LayerNormalization, fp32 islands), metadata, and bad input."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lseg_encoder.errors import ExportError
from lseg_encoder.export.onnx import export_onnx
from lseg_encoder.fidelity.metrics import check, feature_metrics
from lseg_encoder.loaders import export_validated, onnx_file
from lseg_encoder.runners.onnxruntime_runner import OnnxRuntimeRunner

SIZES = [(256, 256), (320, 480), (448, 224)]
DYNAMIC_TRACE = (384, 384)  # not one of SIZES: a dynamic model must be right away from its export size
FLOAT, FLOAT16 = 1, 10  # onnx.TensorProto.FLOAT / FLOAT16 (onnx is imported inside the tests that need it)


def torch_reference(encoder, x):
    with torch.inference_mode():
        return encoder(x)


def _input(h, w, batch=1, seed=0):
    return torch.rand(batch, 3, h, w, generator=torch.Generator().manual_seed(seed + h + w)) * 2 - 1


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("mode", ["static", "dynamic"])
@pytest.mark.parametrize("size", SIZES, ids=[f"{h}x{w}" for h, w in SIZES])
def test_onnxruntime_matches_torch(tiny_encoder, precision, mode, size):
    dynamic = mode == "dynamic"
    path = onnx_file(tiny_encoder, precision=precision, dynamic=dynamic, size=DYNAMIC_TRACE if dynamic else size)
    x = _input(*size)
    with OnnxRuntimeRunner(path, providers=["CPUExecutionProvider"]) as runner:
        got = runner.infer(x)
    verdict = check(feature_metrics(got, torch_reference(tiny_encoder, x)), precision)
    assert verdict, str(verdict)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(gh=st.integers(1, 20), gw=st.integers(1, 20), rh=st.integers(0, 15), rw=st.integers(0, 15),
       batch=st.integers(1, 2))
def test_dynamic_model_any_valid_size(tiny_encoder, gh, gw, rh, rw, batch):
    h, w = 32 * gh + rh, 32 * gw + rw  # every valid ViT/16 size: H//16 even
    path = onnx_file(tiny_encoder, precision="fp32", dynamic=True, size=DYNAMIC_TRACE)
    x = _input(h, w, batch)
    with OnnxRuntimeRunner(path, providers=["CPUExecutionProvider"]) as runner:
        got = runner.infer(x)
    assert tuple(got.shape) == (batch, 512, 8 * (h // 16), 8 * (w // 16))
    verdict = check(feature_metrics(got, torch_reference(tiny_encoder, x)), "fp32")
    assert verdict, str(verdict)


def _types(model):
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model)
    types = {v.name: v.type.tensor_type.elem_type
             for v in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]}
    types.update({t.name: t.data_type for t in model.graph.initializer})
    return types


def test_fp16_graph_has_layernorm_and_fp32_islands(tiny_encoder):
    import onnx

    model = onnx.load(str(onnx_file(tiny_encoder, precision="fp16", dynamic=True, size=DYNAMIC_TRACE)))
    ops = Counter(n.op_type for n in model.graph.node)
    assert ops["LayerNormalization"] == 2 * tiny_encoder.config.backbone.depth
    types = _types(model)
    islands = [n for n in model.graph.node if n.op_type in ("LayerNormalization", "Softmax", "ReduceL2")]
    assert {n.op_type for n in islands} == {"LayerNormalization", "Softmax", "ReduceL2"}
    for node in islands:
        assert types[node.input[0]] == FLOAT, f"{node.op_type} {node.name} does not run in fp32"
    heavy = [n for n in model.graph.node if n.op_type in ("Conv", "MatMul", "ConvTranspose")]
    in_fp16 = sum(types[n.input[0]] == FLOAT16 for n in heavy)
    assert in_fp16 == len(heavy), f"only {in_fp16}/{len(heavy)} conv/matmul nodes compute in fp16"
    assert model.graph.input[0].type.tensor_type.elem_type == FLOAT
    assert model.graph.output[0].type.tensor_type.elem_type == FLOAT


def test_fp32_graph_is_fp32_with_real_layernorm(tiny_encoder):
    import onnx

    model = onnx.load(str(onnx_file(tiny_encoder, precision="fp32", dynamic=True, size=DYNAMIC_TRACE)))
    assert "LayerNormalization" in {n.op_type for n in model.graph.node}
    assert all(t.data_type == FLOAT for t in model.graph.initializer if t.data_type in (FLOAT, FLOAT16))
    assert model.opset_import[0].version >= 17


def test_metadata_and_dynamic_axes(tiny_encoder):
    import onnx

    path = onnx_file(tiny_encoder, precision="fp16", dynamic=True, size=DYNAMIC_TRACE)
    model = onnx.load(str(path))
    meta = {p.key: p.value for p in model.metadata_props}
    for key in ("lseg_encoder_version", "backbone", "checkpoint_sha256", "precision", "opset",
                "input_normalisation", "output_stride", "valid_sizes"):
        assert meta.get(key), key
    assert meta["backbone"] == "tiny" and meta["precision"] == "fp16" and meta["dynamic"] == "true"
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert [d.HasField("dim_param") for d in dims] == [True, False, True, True]
    onnx.checker.check_model(str(path), full_check=True)


def test_static_runner_rejects_other_shapes(tiny_encoder):
    path = onnx_file(tiny_encoder, precision="fp32", dynamic=False, size=(256, 256))
    with OnnxRuntimeRunner(path, providers=["CPUExecutionProvider"]) as runner:
        assert runner.input_spec.shape == (1, 3, 256, 256)
        with pytest.raises(ValueError, match="static shape"):
            runner.infer(_input(320, 320))


def test_unsupported_opset_and_no_partial_file(tiny_encoder, tmp_path):
    with pytest.raises(ExportError, match="unsupported opset 14"):
        export_onnx(tiny_encoder, tmp_path / "m.onnx", opset=14)
    assert list(tmp_path.iterdir()) == []


def test_unwritable_path(tiny_encoder, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(Exception, match="cannot write"):
        export_onnx(tiny_encoder, blocker / "sub" / "m.onnx")


def test_failed_validation_leaves_nothing(tiny_encoder, tmp_path, monkeypatch):
    """A graph that ORT computes differently from torch must be refused, and no file kept."""
    import lseg_encoder.export.onnx as exporter

    real = exporter.prepare_for_export

    def broken(encoder, precision):
        wrapper = real(encoder, precision)
        wrapper.encoder.scratch.head1.bias.data += 0.5  # the exported graph no longer matches torch
        return wrapper

    monkeypatch.setattr(exporter, "prepare_for_export", broken)
    with pytest.raises(ExportError, match="not faithful to PyTorch"):
        export_validated(tiny_encoder, tmp_path / "m.onnx", dynamic=False, size=(256, 256))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("content", [b"garbage" * 50, b""])
def test_corrupt_onnx_is_refused(tmp_path, content):
    path = tmp_path / "bad.onnx"
    path.write_bytes(content)
    with pytest.raises(ExportError, match="not a readable ONNX model"):
        OnnxRuntimeRunner(path)


def test_foreign_onnx_is_refused(tmp_path):
    import onnx
    from onnx import helper

    node = helper.make_node("Identity", ["image"], ["features"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("image", FLOAT, [1, 3, 4, 4])],
                              [helper.make_tensor_value_info("features", FLOAT, [1, 3, 4, 4])])
    path = tmp_path / "foreign.onnx"
    onnx.save(helper.make_model(graph), str(path))
    with pytest.raises(ExportError, match="not an lseg-encoder ONNX export"):
        OnnxRuntimeRunner(path)


def test_cli_export_checkpoint_backbone_mismatch(tmp_path, tiny_checkpoint):
    from test_cli_features import cli

    r = cli("export", "--weights", str(tiny_checkpoint), "--backbone", "clip_vitl16_384",
            "--output", str(tmp_path / "m.onnx"))
    assert r.returncode == 2 and "does not match backbone clip_vitl16_384" in r.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "m.onnx").exists()


def test_cli_export_writes_checked_model(tmp_path, tiny_checkpoint):
    from test_cli_features import cli

    out = tmp_path / "m.onnx"
    r = cli("export", "--weights", str(tiny_checkpoint), "--precision", "fp16", "--static", "1x256x256",
            "--output", str(out))
    assert r.returncode == 0, r.stderr
    assert "check 256x256: [fp16]" in r.stderr
    assert OnnxRuntimeRunner(out).meta["precision"] == "fp16"


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_full_vitl16_export(vitl16_encoder, precision):
    """Full ViT-L/16: the dynamic export is validated by the exporter at 384 and a second size."""
    path = onnx_file(vitl16_encoder, precision=precision, dynamic=True, size=(384, 384))
    x = _input(320, 480)
    with OnnxRuntimeRunner(path, providers=["CPUExecutionProvider"]) as runner:
        got = runner.infer(x)
    verdict = check(feature_metrics(got, torch_reference(vitl16_encoder, x)), precision)
    assert verdict, str(verdict)
