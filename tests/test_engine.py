"""TensorRT / TensorRT-RTX engines: real builds, sidecar, cache rules, refusals, and the runner.

What runs where:
* Builds use the real `tensorrt_rtx` (CPU-only ahead-of-time build) for the tiny config at two
  static shapes and one dynamic profile, from the fp32 and the fp16 ONNX. Engines are cached on
  disk (`$LSEG_CACHE_DIR/engines`), so a second run only re-verifies them.
* A serialised engine cannot be deserialised without a CUDA device, so here I/O names and dtypes
  are checked on the parsed network (recorded in the sidecar), profile shapes on the
  IOptimizationProfile read back after set_shape, and the plan bytes for the I/O names. Where a
  supported GPU exists, the engine API (`get_tensor_profile_shape`, dtypes) is checked too.
* Execution and fidelity tests are marked `gpu`; on a machine that cannot execute they skip with
  the exact reason raised by `TensorRTRunner.activate()` (see `pytest -rs`).
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import socket
import time
import types

import pytest
import torch

from lseg_encoder.engine import (
    BuildOptions,
    EngineMetadata,
    Profile,
    ShapeSpec,
    TrtBackend,
    backend_available,
    build_engine,
    cache_key,
    load_backend,
    parse_bytes,
    read_onnx_info,
    resolve_options,
    sidecar_path,
    verify_engine,
)
from lseg_encoder.engine.sidecar import sha256_file
from lseg_encoder.errors import BackendUnavailable, EngineError, InputSizeError, LsegError
from lseg_encoder.store.cache import cache_dir

pytestmark = pytest.mark.trt

@pytest.fixture(scope="session")
def rtx_probe():
    """Probed when a test runs, never at collection (which must import no optional backend)."""
    ok, reason = backend_available("tensorrt_rtx")
    if not ok:
        pytest.skip(f"needs tensorrt_rtx to build engines: {reason}")


needs_rtx = pytest.mark.usefixtures("rtx_probe")

STATIC = ["1x384x384", "2x256x320"]
DYNAMIC = "1x256x256,2x384x384,4x512x512"
SPECS = [*STATIC, DYNAMIC]


# fixtures ---------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def tiny_onnx(tiny_encoder):
    """Dynamic tiny ONNX per precision, exported by `export_onnx` once and cached on disk."""
    from lseg_encoder.loaders import onnx_file

    return {p: onnx_file(tiny_encoder, precision=p, dynamic=True, size=(384, 384))
            for p in ("fp32", "fp16")}


@pytest.fixture(scope="session")
def rtx(rtx_probe):
    return load_backend("tensorrt_rtx")


@pytest.fixture(scope="session")
def built(tiny_onnx, rtx):
    """(precision, spec) -> EngineArtifact, through the on-disk engine cache."""
    cache = cache_dir("engines")
    out = {}

    def get(precision: str, spec: str):
        if (precision, spec) not in out:
            out[precision, spec] = build_engine(tiny_onnx[precision], spec, BuildOptions(), backend=rtx,
                                                cache_dir=cache)
        return out[precision, spec]

    return get


def _profile_shapes(spec: str):
    profile = Profile.parse(spec) if "," in spec else ShapeSpec.static(*map(int, spec.split("x"))).profiles[0]
    return [list(s) for s in profile.input_shapes()], profile


# real builds --------------------------------------------------------------------------------------
@needs_rtx
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("spec", SPECS, ids=["static384", "static2x256x320", "dynamic"])
def test_build_and_sidecar(built, tiny_onnx, rtx, precision, spec):
    art = built(precision, spec)
    meta = art.metadata
    data = art.path.read_bytes()
    assert len(data) > 100_000
    assert meta.engine["sha256"] == sha256_file(art.path) and meta.engine["bytes"] == len(data)
    assert (meta.schema, meta.schema_version) == ("lseg-encoder.engine-sidecar", 1)
    assert (meta.backend["flavour"], meta.backend["version"]) == ("tensorrt_rtx", rtx.module.__version__)
    assert meta.backend["typing"] == "strong" and "FP16" not in meta.backend["builder_flags"]
    assert meta.onnx["sha256"] == sha256_file(tiny_onnx[precision])
    assert meta.onnx["backbone"] == "tiny" and meta.onnx["precision"] == precision == meta.precision
    assert meta.options == BuildOptions().to_json()
    assert meta.targets["compute_capabilities"] is None and "8.6, 8.9, 12.0" in meta.targets["source"]
    assert meta.build["host"] == socket.gethostname()
    built_at = datetime.datetime.fromisoformat(meta.build["time_utc"])
    assert built_at <= datetime.datetime.now(datetime.timezone.utc)
    assert meta.build["seconds"] > 0 and meta.build["phases"]
    assert "--trt-backend tensorrt_rtx" in meta.rebuild_command
    # I/O of the parsed network: names and dtypes (fp16 graphs keep fp32 I/O), dynamic axes.
    assert meta.io == [
        {"name": "image", "mode": "input", "dtype": "float32", "shape": [-1, 3, -1, -1]},
        {"name": "features", "mode": "output", "dtype": "float32", "shape": [-1, 512, -1, -1]},
    ]
    # Profile shapes as TensorRT's IOptimizationProfile reports them after set_shape.
    shapes, profile = _profile_shapes(spec)
    assert meta.profiles == [profile.to_json()]
    assert meta.build["profiles_read_back"] == [shapes]
    assert meta.is_static == ("," not in spec)
    # The plan itself names the I/O tensors (observed: TensorRT-RTX stores them in clear).
    assert b"image" in data and b"features" in data
    assert verify_engine(art.path, backend=rtx, onnx_path=tiny_onnx[precision]).cache_key == art.key


@needs_rtx
def test_engines_differ_by_shape_and_precision(built):
    shas = {(p, s): built(p, s).metadata.engine["sha256"] for p in ("fp32", "fp16") for s in SPECS}
    assert len(set(shas.values())) == len(shas)
    # fp16 weights make a smaller plan than fp32 at the same shape
    size = {p: built(p, STATIC[0]).metadata.engine["bytes"] for p in ("fp32", "fp16")}
    assert size["fp16"] < size["fp32"]


@needs_rtx
@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_engine_api_io_and_profiles(built, rtx, precision):
    """Deserialise and read I/O and profiles through ICudaEngine (needs a GPU TensorRT-RTX runs on)."""
    from lseg_encoder.engine.backend import CapturedLog, cuda_available, current_compute_capability

    ok, reason = cuda_available()
    if not ok:
        pytest.skip(f"deserialize_cuda_engine needs a CUDA device: {reason}")
    cc = current_compute_capability()
    if cc not in rtx.known_compute_capabilities():
        pytest.skip(f"{rtx} does not run on compute capability {cc}")
    art = built(precision, DYNAMIC)
    log = CapturedLog()
    engine = rtx.module.Runtime(rtx.make_logger(log)).deserialize_cuda_engine(art.path.read_bytes())
    assert engine is not None, log.errors()
    names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
    assert names == ["image", "features"]
    assert [engine.get_tensor_dtype(n).name for n in names] == ["FLOAT", "FLOAT"]
    got = [[list(d) for d in engine.get_tensor_profile_shape("image", 0)]]
    assert got == art.metadata.build["profiles_read_back"]


# cache rules --------------------------------------------------------------------------------------
@needs_rtx
def test_cache_hit_and_miss_rules(tiny_onnx, rtx, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    onnx = tiny_onnx["fp32"]
    lines = []
    first = build_engine(onnx, "1x256x256", backend=rtx, cache_dir=cache, progress=lines.append)
    assert not first.cache_hit and any("cache miss" in m for m in lines)
    mtime = first.path.stat().st_mtime_ns
    lines.clear()
    again = build_engine(onnx, "1x256x256", backend=rtx, cache_dir=cache, progress=lines.append)
    assert again.cache_hit and again.path == first.path and again.key == first.key
    assert first.path.stat().st_mtime_ns == mtime  # not rebuilt
    assert any(m.startswith("cache hit") for m in lines)
    # everything that determines the engine changes the key
    other_opts = build_engine(onnx, "1x256x256", BuildOptions(workspace="1GiB"), backend=rtx, cache_dir=cache)
    other_shape = build_engine(onnx, "1x256x288", backend=rtx, cache_dir=cache)
    other_cc = build_engine(onnx, "1x256x256", BuildOptions(compute_capabilities=("8.9",)), backend=rtx,
                            cache_dir=cache)
    edited = tmp_path / "edited.onnx"
    import onnx as onnx_lib

    model = onnx_lib.load(str(onnx))
    model.metadata_props.add(key="note", value="edited")
    onnx_lib.save(model, str(edited))
    other_onnx = build_engine(edited, "1x256x256", backend=rtx, cache_dir=cache)
    keys = {first.key, other_opts.key, other_shape.key, other_cc.key, other_onnx.key}
    assert len(keys) == 5
    assert not any(a.cache_hit for a in (other_opts, other_shape, other_cc, other_onnx))
    base = dict(onnx_sha256="0" * 64, shapes=[], options={}, flavour="tensorrt_rtx", version="1.7.1.116",
                targets=None, typing="strong")
    assert cache_key(**base) != cache_key(**{**base, "version": "1.8.0"})
    assert cache_key(**base) != cache_key(**{**base, "flavour": "tensorrt"})
    # an output copy does not change the key, and is itself a verified engine
    out = build_engine(onnx, "1x256x256", backend=rtx, cache_dir=cache, output=tmp_path / "x.trt")
    assert out.cache_hit and out.path == tmp_path / "x.trt" and sidecar_path(out.path).is_file()
    assert verify_engine(out.path, backend=rtx).engine["sha256"] == first.metadata.engine["sha256"]
    # location: the one artefact cache ($LSEG_CACHE_DIR/engines), overridden by an explicit folder
    monkeypatch.setenv("LSEG_CACHE_DIR", str(cache.parent))
    assert build_engine(onnx, "1x256x256", backend=rtx, cache_dir=cache).cache_hit
    assert build_engine(onnx, "1x256x256", backend=rtx).path.parent == cache.parent / "engines"
    assert not build_engine(onnx, "1x256x256", backend=rtx, cache_dir=tmp_path / "elsewhere").cache_hit


@needs_rtx
def test_tampered_cache_entry_is_rebuilt(tiny_onnx, rtx, tmp_path):
    first = build_engine(tiny_onnx["fp16"], "1x256x256", backend=rtx, cache_dir=tmp_path)
    data = bytearray(first.path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    first.path.write_bytes(bytes(data))
    lines = []
    again = build_engine(tiny_onnx["fp16"], "1x256x256", backend=rtx, cache_dir=tmp_path, progress=lines.append)
    assert not again.cache_hit
    assert any("cached engine rejected, rebuilding" in m and "does not match its sidecar" in m for m in lines)
    assert sha256_file(again.path) == again.metadata.engine["sha256"]


# refusal of tampered / stale / foreign engines ----------------------------------------------------
@needs_rtx
def test_tampered_stale_and_foreign_engines_are_refused(built, tiny_onnx, rtx, tmp_path):
    art = built("fp32", STATIC[0])
    engine = tmp_path / "e.trt"
    shutil.copyfile(art.path, engine)
    shutil.copyfile(art.sidecar_path, sidecar_path(engine))
    assert verify_engine(engine, backend=rtx, onnx_path=tiny_onnx["fp32"])
    # stale: built from another ONNX
    with pytest.raises(EngineError, match=r"stale\. rebuild it: lseg-encoder build --onnx"):
        verify_engine(engine, onnx_path=tiny_onnx["fp16"])
    # foreign: another TensorRT version or flavour
    other = TrtBackend("tensorrt_rtx", "0.9.0", rtx.module)
    with pytest.raises(EngineError, match="only load in the exact version that built them"):
        verify_engine(engine, backend=other)
    # GPU outside the recorded targets
    targeted = build_engine(tiny_onnx["fp32"], "1x256x256", BuildOptions(compute_capabilities=("8.6",)),
                            backend=rtx, cache_dir=tmp_path / "c")
    assert targeted.metadata.targets["compute_capabilities"] == ["8.6"]
    assert targeted.metadata.build["config_read_back"]["compute_capabilities"] == ["SM86"]
    with pytest.raises(EngineError, match=r"built for compute capabilities 8\.6 .*this GPU has 12\.0"):
        verify_engine(targeted.path, compute_capability="12.0")
    # tampered: one byte changed
    data = bytearray(engine.read_bytes())
    data[-100] ^= 0x01
    engine.write_bytes(bytes(data))
    with pytest.raises(EngineError, match="does not match its sidecar.*refusing to load it. rebuild it"):
        verify_engine(engine, backend=rtx)
    # no sidecar
    sidecar_path(engine).unlink()
    with pytest.raises(EngineError, match="sidecar missing"):
        verify_engine(engine)


# bad input ----------------------------------------------------------------------------------------
@needs_rtx
@pytest.mark.parametrize("content", ["garbage", "truncated"])
def test_corrupt_onnx_is_refused(tiny_onnx, rtx, tmp_path, content):
    bad = tmp_path / "bad.onnx"
    good = tiny_onnx["fp32"].read_bytes()
    bad.write_bytes(b"not an onnx file\x00" * 64 if content == "garbage" else good[: len(good) // 3])
    with pytest.raises(EngineError, match=r"ONNX parser failed: .*MODEL_DESERIALIZE_FAILED"):
        build_engine(bad, "1x256x256", backend=rtx, cache=False, output=tmp_path / "bad.trt")
    assert not (tmp_path / "bad.trt").exists()


@needs_rtx
def test_onnx_that_is_not_an_encoder_is_refused(rtx, tmp_path):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "not_lseg",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    path = tmp_path / "relu.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))
    with pytest.raises(EngineError, match=r"not an LSeg encoder graph: input 'x' is float32 \(1, 4\)"):
        build_engine(path, "1x256x256", backend=rtx, cache=False, output=tmp_path / "relu.trt")
    assert not (tmp_path / "relu.trt").exists()


def test_profile_and_option_parsing():
    with pytest.raises(EngineError, match="min <= opt <= max"):
        Profile.parse("4x256x256,2x384x384,1x512x512")
    with pytest.raises(EngineError, match=r"height must satisfy min <= opt <= max, got 512 <= 384"):
        Profile.parse("1x512x512,1x384x384,1x640x640")
    with pytest.raises(EngineError, match="use MIN,OPT,MAX"):
        Profile.parse("1x256x256,1x384x384")
    with pytest.raises(InputSizeError, match="use BxHxW"):  # one spelling of a shape: BxHxW, no channels
        Profile.parse("1x3x256x256,2x384x384,4x512x512")
    assert Profile.parse("1x256x256,2x384x384,4x512x512").min == (1, 256, 256)
    assert parse_bytes("4GiB") == 4 << 30 and parse_bytes("512MiB") == 512 << 20
    assert parse_bytes("1024") == 1024
    assert parse_bytes("1.5G") == 3 << 29
    for bad in ("4GB", "lots", "0", "-1MiB", "0.5B"):
        with pytest.raises(EngineError):
            parse_bytes(bad)
    with pytest.raises(EngineError, match="0..5"):
        BuildOptions(optimization_level=7)
    assert BuildOptions(compute_capabilities=("sm86", "8.9")).compute_capabilities == ("8.6", "8.9")
    assert BuildOptions(tactic_sources=("jit_convolutions", "-EDGE_MASK_CONVOLUTIONS")).tactic_sources == (
        "+JIT_CONVOLUTIONS", "-EDGE_MASK_CONVOLUTIONS")


@needs_rtx
def test_unsupported_options_are_refused(tiny_onnx, rtx, tmp_path):
    fp32, fp16 = tiny_onnx["fp32"], tiny_onnx["fp16"]

    def build(onnx, **opts):
        return build_engine(onnx, "1x256x256", BuildOptions(**opts), backend=rtx, cache=False,
                            output=tmp_path / "never.trt")

    with pytest.raises(EngineError, match="FP16 builder flag, which tensorrt_rtx .* does not have"):
        build(fp32, fp16=True)
    with pytest.raises(EngineError, match="--no-fp16 was given but .* is an fp16 graph"):
        build(fp16, fp16=False)
    with pytest.raises(EngineError, match=r"CUBLAS not offered by tensorrt_rtx .*; it has EDGE_MASK"):
        build(fp32, tactic_sources=("+CUBLAS",))
    with pytest.raises(EngineError, match=r"cannot target compute capability 9\.0; it knows .*8\.6"):
        build(fp32, compute_capabilities=("9.0",))
    with pytest.raises(InputSizeError, match="400x400 is not supported by tiny"):
        build_engine(fp32, "1x400x400", backend=rtx, cache=False, output=tmp_path / "never.trt")
    assert not (tmp_path / "never.trt").exists()
    # options the backend has are applied, not dropped: they reach the sidecar and the key
    options = BuildOptions(sparse=True, debug=True, disable_timing_cache=True, optimization_level=1,
                           tactic_sources=("-JIT_CONVOLUTIONS",))
    art = build_engine(fp32, "1x256x256", options, backend=rtx, cache_dir=tmp_path / "c")
    meta = art.metadata
    assert meta.backend["builder_flags"] == ["SPARSE_WEIGHTS", "DISABLE_TIMING_CACHE", "DEBUG"]
    assert meta.options["tactic_sources"] == ["-JIT_CONVOLUTIONS"] and meta.options["optimization_level"] == 1
    applied = meta.build["config_read_back"]  # what the builder config reports after setting them
    assert applied["builder_flags"] == meta.backend["builder_flags"] and applied["optimization_level"] == 1
    jit = 1 << int(rtx.module.TacticSource.JIT_CONVOLUTIONS)
    assert applied["tactic_sources_mask"] & jit == 0 and applied["tactic_sources_mask"] != 0
    assert applied["workspace"] == 4 << 30
    assert any("timing cache" in n for n in art.notes)
    # sparsity honesty: a count where the backend exposes one, otherwise the reason it is unknown
    report = meta.sparsity
    assert report["requested"] is True
    if report["layers_total"] is None:
        assert report["report"].startswith("not available") or report["report"].startswith("builder log")
    else:
        assert 0 <= report["layers_sparse"] <= report["layers_total"]
    name = f"{fp32.stem}__fp32_1x256x256_sparse_notc_debug_opt1_tsnojitconvolutions_ws4096MiB."
    assert art.path.name.startswith(name)


def _documented_api(fp16_flag: bool, strongly_typed_flag: bool, cc_targets: bool) -> types.ModuleType:
    """The enum/class surface that resolve_options probes, shaped like the documented TensorRT 10 / 11
    Python APIs (TensorRT proper cannot be installed here). Only the decision table is tested with it;
    nothing is built or run through it."""
    flags = ["DEBUG", "GPU_FALLBACK", "DISABLE_TIMING_CACHE", "SPARSE_WEIGHTS"]
    flags += ["FP16"] if fp16_flag else []
    creation = {"STRONGLY_TYPED": 1} if strongly_typed_flag else {}
    return types.SimpleNamespace(
        BuilderFlag=types.SimpleNamespace(**{f: i for i, f in enumerate(flags)}),
        NetworkDefinitionCreationFlag=types.SimpleNamespace(**creation),
        TacticSource=types.SimpleNamespace(__members__={"EDGE_MASK_CONVOLUTIONS": 3, "JIT_CONVOLUTIONS": 4}),
        IBuilderConfig=type("IBuilderConfig", (), {"builder_optimization_level": 3,
                                                   **({"set_compute_capability": 1} if cc_targets else {})}),
        **({"ComputeCapability": types.SimpleNamespace(__members__={"SM86": 86})} if cc_targets else {}),
    )


def test_typing_decision_table_for_tensorrt_10_and_11(tiny_onnx):
    """fp16 semantics per flavour: TRT 10 fp32-ONNX+fp16 -> weak FP16 flag; TRT 11 -> refused; fp16 ONNX ->
    strongly typed everywhere; compute-capability targets refused outside TensorRT-RTX."""
    fp32, fp16 = read_onnx_info(tiny_onnx["fp32"]), read_onnx_info(tiny_onnx["fp16"])
    trt10 = TrtBackend("tensorrt", "10.x", _documented_api(True, True, False))
    trt11 = TrtBackend("tensorrt", "11.x", _documented_api(False, True, False))
    weak = resolve_options(BuildOptions(fp16=True), trt10, fp32)
    assert (weak.precision, weak.typing, weak.builder_flags) == ("fp16", "weak", ["FP16"])
    assert weak.network_flags == []
    for backend in (trt10, trt11):
        plan = resolve_options(BuildOptions(), backend, fp16)
        assert (plan.precision, plan.typing, plan.network_flags) == ("fp16", "strong", ["STRONGLY_TYPED"])
        plan = resolve_options(BuildOptions(fp16=False), backend, fp32)
        assert (plan.precision, plan.typing, plan.builder_flags) == ("fp32", "strong", [])
        with pytest.raises(EngineError, match="TensorRT builds for the GPU it runs on"):
            resolve_options(BuildOptions(compute_capabilities=("8.6",)), backend, fp32)
    with pytest.raises(EngineError, match="FP16 builder flag, which tensorrt 11.x does not have"):
        resolve_options(BuildOptions(fp16=True), trt11, fp32)


# CLI ----------------------------------------------------------------------------------------------
@needs_rtx
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_cli_build_then_cache_hit(tiny_onnx, tmp_path, capsys, precision):
    from lseg_encoder.cli import main

    args = ["build", "--onnx", str(tiny_onnx[precision]), "--trt-backend", "tensorrt_rtx",
            "--static", "1x256x320", "--engine-cache", str(tmp_path / "cache"),
            "--output", str(tmp_path / "e.trt")]
    assert main(args) == 0
    first = capsys.readouterr()
    assert "cache miss" in first.err and f"{precision} tensorrt_rtx" in first.err
    assert first.out.strip() == str(tmp_path / "e.trt")
    meta = json.loads(sidecar_path(tmp_path / "e.trt").read_text())
    assert meta["precision"] == precision and meta["profiles"][0]["min"] == [1, 256, 320]
    assert main(args) == 0
    second = capsys.readouterr()
    assert "cache hit" in second.err and "cache miss" not in second.err


@needs_rtx
def test_cli_refusals(tiny_onnx, tmp_path, capsys):
    from lseg_encoder.cli import main

    base = ["build", "--onnx", str(tiny_onnx["fp32"]), "--trt-backend", "tensorrt_rtx",
            "--engine-cache", str(tmp_path)]
    cases = [
        (["--profile", "4x256x256,2x384x384,1x512x512"], "batch must satisfy min <= opt <= max"),
        (["--fp16"], "needs TensorRT 10's weakly-typed FP16 builder flag"),
        (["--workspace", "4GB"], "bad size '4GB'"),
        (["--static", "1x256x256", "--profile", DYNAMIC], "not both"),
    ]
    for extra, message in cases:
        assert main(base + extra) == 2
        assert message in capsys.readouterr().err
    assert not list(tmp_path.glob("*.trt"))


# runner -------------------------------------------------------------------------------------------
@needs_rtx
def test_runner_input_spec_and_profile_check_without_gpu(built):
    """Shapes are validated from the sidecar before anything touches the GPU."""
    from lseg_encoder.runners.tensorrt_runner import TensorRTRunner

    dynamic = TensorRTRunner(built("fp32", DYNAMIC).path)
    spec = dynamic.input_spec
    assert (spec.name, spec.shape, spec.min_shape, spec.max_shape) == (
        "image", (None, 3, None, None), (1, 3, 256, 256), (4, 3, 512, 512))
    assert dynamic.name == "tensorrt_rtx-fp32" and dynamic.config.name == "tiny"
    dynamic.check_input(torch.zeros(2, 3, 320, 448))
    with pytest.raises(ValueError, match=r"outside the profile min \(1, 3, 256, 256\) .. max \(4, 3, 512, 5"):
        dynamic.check_input(torch.zeros(1, 3, 576, 256))
    static = TensorRTRunner(built("fp16", STATIC[1]).path)
    assert static.input_spec.shape == (2, 3, 256, 320) and static.precision == "fp16"
    with pytest.raises(InputSizeError, match="does not match the static shape"):
        static.check_input(torch.zeros(1, 3, 256, 320))
    with pytest.raises(LsegError, match="cuda_graph=True needs a static engine"):
        TensorRTRunner(built("fp32", DYNAMIC).path, cuda_graph=True)
    with pytest.raises(LsegError, match="not active"):
        static.infer(torch.zeros(2, 3, 256, 320))


def test_runner_needs_a_sidecar(tmp_path):
    from lseg_encoder.runners.tensorrt_runner import TensorRTRunner

    (tmp_path / "lone.trt").write_bytes(b"x" * 100)
    with pytest.raises(EngineError, match="sidecar missing"):
        TensorRTRunner(tmp_path / "lone.trt")


def _activate_or_skip(runner):
    try:
        runner.activate()
    except BackendUnavailable as exc:
        pytest.skip(f"{runner.name} cannot execute here: {exc}")
    return runner


def _input(batch, h, w, seed=0):
    return torch.rand(batch, 3, h, w, generator=torch.Generator().manual_seed(seed + h * 7 + w)) * 2 - 1


@needs_rtx
@pytest.mark.gpu
@pytest.mark.fidelity
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("spec,shape", [(STATIC[0], (1, 384, 384)), (DYNAMIC, (3, 320, 448))],
                         ids=["static", "dynamic"])
def test_runner_fidelity(built, tiny_encoder, precision, spec, shape):
    from lseg_encoder.fidelity.metrics import check, feature_metrics
    from lseg_encoder.runners.tensorrt_runner import TensorRTRunner

    runner = _activate_or_skip(TensorRTRunner(built(precision, spec).path))
    with runner:
        x = _input(*shape)
        got = runner.infer(x)
        on_device = runner.infer(x, to_host=False)
    assert on_device.device.type == "cuda" and got.device.type == "cpu"
    with torch.inference_mode():
        ref = tiny_encoder.float().eval()(x)
    verdict = check(feature_metrics(got, ref), precision)
    assert verdict, str(verdict)
    assert torch.equal(on_device.cpu(), got)


@needs_rtx
@pytest.mark.gpu
def test_runner_cuda_graph_matches_eager(built):
    from lseg_encoder.runners.tensorrt_runner import TensorRTRunner

    path = built("fp32", STATIC[0]).path
    eager = _activate_or_skip(TensorRTRunner(path))
    x = _input(1, 384, 384, seed=3)
    with eager:
        want = eager.infer(x)
    with TensorRTRunner(path, cuda_graph=True) as graphed:
        first = graphed.infer(x)
        second = graphed.infer(_input(1, 384, 384, seed=4))
        third = graphed.infer(x)
    torch.testing.assert_close(first, want, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(third, first)
    assert not torch.equal(second, first)


@needs_rtx
@pytest.mark.gpu
def test_runner_refuses_tampered_engine_on_activate(built, tmp_path):
    from lseg_encoder.runners.tensorrt_runner import TensorRTRunner

    art = built("fp32", STATIC[0])
    engine = tmp_path / "t.trt"
    data = bytearray(art.path.read_bytes())
    data[1000] ^= 0x10
    engine.write_bytes(bytes(data))
    shutil.copyfile(art.sidecar_path, sidecar_path(engine))
    runner = TensorRTRunner(engine)
    try:
        runner.activate()
    except BackendUnavailable as exc:
        pytest.skip(f"{runner.name} cannot execute here: {exc}")
    except EngineError as exc:
        assert "does not match its sidecar" in str(exc)
    else:
        pytest.fail("a tampered engine was activated")


# full size ----------------------------------------------------------------------------------------
@needs_rtx
@pytest.mark.slow
def test_full_vitl16_fp16_build(vitl16_encoder, rtx, tmp_path):
    """ViT-L/16 fp16 at 1x384x384, built for real (no cache) from the cached dynamic fp16 ONNX."""
    from lseg_encoder.loaders import onnx_file

    onnx = onnx_file(vitl16_encoder, precision="fp16", dynamic=True, size=(384, 384))
    start = time.perf_counter()
    art = build_engine(onnx, "1x384x384", backend=rtx, cache=False, output=tmp_path / "vitl16.trt")
    seconds = time.perf_counter() - start
    meta = art.metadata
    print(f"\nViT-L/16 fp16 1x384x384 with {rtx} on {os.cpu_count()} CPU cores: "
          f"build {meta.build['seconds']:.1f} s, total {seconds:.1f} s, "
          f"engine {meta.engine['bytes'] / 2**20:.0f} MiB")
    assert meta.precision == "fp16" and meta.onnx["backbone"] == "clip_vitl16_384"
    assert meta.io[1]["shape"] == [-1, 512, -1, -1]
    assert 300 << 20 < meta.engine["bytes"] < 1200 << 20  # ~300M fp16 weights are in the plan
    assert verify_engine(art.path, backend=rtx, onnx_path=onnx)
    assert EngineMetadata.read(art.sidecar_path).build["profiles_read_back"] == [[[1, 3, 384, 384]] * 3]
