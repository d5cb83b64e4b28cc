"""The layout's promises, checked: who may import whom, one backend table that every sweep reads,
artefacts exported once, no mutation of the caller's module or of global torch flags, small modules,
and a test collection that imports no optional backend and asks for no GPU."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "lseg_encoder"
MAX_LINES = 400


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, *, top_level_only: bool) -> set[str]:
    """Absolute names of the lseg_encoder modules `path` imports (module level only, if asked)."""
    tree = ast.parse(path.read_text())
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rsplit(".", 1)[0]
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if module.startswith("lseg_encoder"):
                found.add(module)
                found.update(f"{module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("lseg_encoder"))
    return found


def _sources():
    return sorted(PACKAGE.rglob("*.py"))


def test_export_never_imports_runners_and_runners_never_build():
    for path in _sources():
        name = _module_name(path)
        deps = _imports(path, top_level_only=False)
        if name.startswith("lseg_encoder.export"):
            bad = {d for d in deps if d.startswith(("lseg_encoder.runners", "lseg_encoder.loaders"))}
            assert not bad, f"{name} (an exporter) imports {bad}"
        if name.startswith("lseg_encoder.runners"):
            builders = ("lseg_encoder.loaders", "lseg_encoder.export.onnx", "lseg_encoder.export.aoti",
                        "lseg_encoder.engine.build", "lseg_encoder.backends")
            bad = {d for d in deps if d.startswith(builders)}
            assert not bad, f"{name} (a runner) imports {bad}: runners run what they are given"


def test_no_import_cycle_at_module_level():
    modules = {_module_name(p): p for p in _sources()}
    graph = {name: {d for d in _imports(path, top_level_only=True) if d in modules and d != name}
             for name, path in modules.items()}
    # a package's __init__ importing its own submodules is how packages work, not a cycle
    graph = {n: {d for d in deps if not (n.count(".") < d.count(".") and d.startswith(n + "."))}
             for n, deps in graph.items()}
    state: dict[str, int] = {}

    def visit(node, stack):
        state[node] = 1
        for dep in graph[node]:
            if state.get(dep) == 1:
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(dep):] + [dep]))
            if dep not in state:
                visit(dep, stack + [dep])
        state[node] = 2

    for name in graph:
        if name not in state:
            visit(name, [name])


def test_source_files_stay_small():
    long = {str(p.relative_to(ROOT)): n for p in _sources() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"files over {MAX_LINES} lines: {long}"


def test_public_api_is_plain_names():
    import lseg_encoder

    assert not hasattr(lseg_encoder, "__getattr__"), "a module __getattr__ hides the API from type checkers"
    for name in lseg_encoder.__all__:
        assert name in vars(lseg_encoder), f"lseg_encoder.{name} is listed but not defined"


def test_collection_imports_no_optional_backend_and_probes_no_gpu(tmp_path):
    out = tmp_path / "probe.json"
    env = {**os.environ, "LSEG_COLLECTION_PROBE": str(out), "PYTHONPATH": str(ROOT / "tests")}
    proc = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "_collection_probe",
                           "-p", "no:cacheprovider", str(ROOT / "tests")], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    found = json.loads(out.read_text())
    assert found == {"optional_imports": [], "gpu_probes": []}


def test_runners_and_exporters_leave_the_callers_module_and_flags_alone(tiny_encoder, tmp_path):
    from lseg_encoder.export.onnx import export_onnx
    from lseg_encoder.runners.torch_runner import TorchRunner, strict_fp32

    before = {k: v.clone() for k, v in tiny_encoder.state_dict().items()}
    dtype, device = next(tiny_encoder.parameters()).dtype, next(tiny_encoder.parameters()).device
    flags = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    with TorchRunner(tiny_encoder, "fp32") as runner:
        runner.infer(torch.rand(1, 3, 64, 64))
    export_onnx(tiny_encoder, tmp_path / "m.onnx", precision="fp16", dynamic=False, size=(64, 64))
    assert (next(tiny_encoder.parameters()).dtype, next(tiny_encoder.parameters()).device) == (dtype, device)
    assert all(torch.equal(before[k], v) for k, v in tiny_encoder.state_dict().items())
    assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == flags

    # TF32 is off inside the reference's scope and restored after it, whatever it was before
    torch.backends.cudnn.allow_tf32 = True
    try:
        with strict_fp32():
            assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
        assert torch.backends.cudnn.allow_tf32
    finally:
        torch.backends.cudnn.allow_tf32 = flags[1]


def test_weights_fingerprint_is_memoised_until_a_weight_changes(tiny_encoder, monkeypatch):
    import copy

    import lseg_encoder.store.fingerprint as fingerprint

    encoder = copy.deepcopy(tiny_encoder)
    calls = []
    real = fingerprint.tensors_fingerprint
    monkeypatch.setattr(fingerprint, "tensors_fingerprint", lambda state: calls.append(1) or real(state))
    first = fingerprint.weights_fingerprint(encoder)
    assert fingerprint.weights_fingerprint(encoder) == first and len(calls) == 1
    with torch.no_grad():
        next(encoder.parameters()).add_(1.0)
    assert fingerprint.weights_fingerprint(encoder) != first and len(calls) == 2


def test_verify_exports_each_artefact_once_and_hashes_weights_once(tiny_checkpoint, tmp_path, monkeypatch):
    """A fresh cache: verify with ONNX backends at two sizes exports fp32 and fp16 once each and
    fingerprints the weights once, although several runners and steps ask for the artefacts."""
    import lseg_encoder.export.onnx as exporter
    import lseg_encoder.store.fingerprint as fingerprint
    from lseg_encoder.suites.verify import run_verify
    from lseg_encoder.weights.checkpoint import load_encoder

    monkeypatch.setenv("LSEG_CACHE_DIR", str(tmp_path / "cache"))
    exports, hashes = [], []
    real_export, real_hash = exporter.export_onnx, fingerprint.tensors_fingerprint
    monkeypatch.setattr(exporter, "export_onnx", lambda *a, **k: exports.append(k["precision"]) or real_export(*a, **k))
    monkeypatch.setattr(fingerprint, "tensors_fingerprint", lambda state: hashes.append(len(state)) or real_hash(state))
    encoder = load_encoder(tiny_checkpoint)
    image_tensors = len(encoder.state_dict())  # the text tower is another module, with its own digest
    result = run_verify(encoder, weights=tiny_checkpoint, sizes=[(64, 64), (96, 64)], device="cpu",
                        backends=["onnxruntime", "onnxruntime-fp16", "tensorrt"], iterations=1)
    assert result.passed and {r.candidate for r in result.rows} >= {"onnxruntime", "onnxruntime-fp16"}
    assert sorted(exports) == ["fp16", "fp32"]
    assert hashes.count(image_tensors) == 1


FAKE_REASON = "fake backend: it exists only in this test"


@pytest.fixture
def fake_backend_row(monkeypatch):
    """One more row in the backend table, as a new backend would add it."""
    from lseg_encoder import backends

    row = backends.Backend("fake", "fp32", "a row added by a test", False, backends.BACKENDS["torch"].open,
                           lambda device: FAKE_REASON)
    monkeypatch.setitem(backends.BACKENDS, "fake", row)
    return row


def test_a_new_row_reaches_every_sweep_with_one_skip_reason(fake_backend_row, tiny_encoder, tiny_checkpoint,
                                                            tmp_path, pytestconfig):
    """Adding a backend is one row: the fidelity and benchmark parametrisations, `bench` and `verify`
    all pick it up from the table and report the same reason where it cannot run."""
    import test_bench
    import test_fidelity
    from lseg_encoder.backends import BACKENDS
    from lseg_encoder.suites.bench import run_benchmarks
    from lseg_encoder.suites.sweep import RunnerPool
    from lseg_encoder.suites.verify import run_verify

    fidelity_backends = {case[2] for case in test_fidelity._matrix(pytestconfig)}
    assert set(BACKENDS) <= fidelity_backends, set(BACKENDS) - fidelity_backends
    # the benchmark parametrisation is the table as collected (before this test added its row)
    assert set(BACKENDS) - {"fake"} <= set(test_bench.BENCH_BACKENDS)

    assert RunnerPool(tiny_encoder).runner("fake", (64, 64)).reason == FAKE_REASON  # both test pools use it
    report = run_benchmarks(tiny_encoder, list(BACKENDS), [(64, 64)], iterations=1, warmup=0, modes=["device"],
                            progress=False)
    assert {s.backend: s.reason for s in report.skipped}["fake"] == FAKE_REASON
    assert {r.backend for r in report.results} >= {"torch", "onnxruntime"}
    result = run_verify(tiny_encoder, weights=tiny_checkpoint, sizes=[(64, 64)], iterations=1)
    assert result.skipped["fake"] == FAKE_REASON
    assert set(result.backends) == set(BACKENDS)  # verify's default: every row, run or skipped
