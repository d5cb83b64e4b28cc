"""AOTInductor packaging (`lseg_encoder.export.aoti`, `lseg-encoder package-aoti`) and `AOTIRunner`, on CPU.

One fp32 and one fp16-output fp16 tiny package come from the artefact cache (compiled once, shared
with `test_cpp.py`); one fp16 package with fp32 output is written by the CLI. Each compile takes
~15-35 s on two CPU cores.
"""

from __future__ import annotations

import json
import zipfile

import pytest
import torch

from lseg_encoder.errors import BackendUnavailable, InputSizeError, LsegError
from lseg_encoder.export.aoti import package_aoti
from lseg_encoder.export.metadata import AOTIPackageSpec, PackageError, read_package_spec
from lseg_encoder.fidelity.metrics import check, feature_metrics
from lseg_encoder.loaders import aoti_package
from lseg_encoder.runners.aoti_runner import AOTIRunner
from lseg_encoder.runners.torch_runner import TorchRunner

SIZE = (64, 96)  # tiny: H//16 and W//16 even -> output (512, 32, 48)
# Limits come from the library's one tolerance table (`lseg_encoder.fidelity.tolerances`) through `compare.check`.


@pytest.fixture(scope="session")
def tiny_package(tiny_encoder):
    return aoti_package(tiny_encoder, size=SIZE)


@pytest.fixture(scope="module")
def cli_fp16_package(tiny_checkpoint, tmp_path_factory):
    from lseg_encoder.cli import main

    out = tmp_path_factory.mktemp("aoti") / "tiny_fp16.pt2"
    rc = main(["package-aoti", "--weights", str(tiny_checkpoint), "--static", f"1x{SIZE[0]}x{SIZE[1]}",
               "--precision", "fp16", "--output", str(out)])
    assert rc == 0
    return out


def _image(seed: int = 0) -> torch.Tensor:
    return torch.randn(1, 3, *SIZE, generator=torch.Generator().manual_seed(seed))


def _rewrite_metadata(src, dst, **changes) -> None:
    """Copy a package, changing its metadata strings (to simulate one built elsewhere)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for name in zin.namelist():
            data = zin.read(name)
            if name.endswith("metadata.json"):
                meta = json.loads(data)
                meta.update(changes)
                data = json.dumps(meta).encode()
            zout.writestr(name, data)


def test_package_metadata_describes_the_package(tiny_package):
    spec = read_package_spec(tiny_package)
    assert spec == AOTIPackageSpec(backbone="tiny", input_shape=(1, 3, *SIZE), output_shape=(1, 512, 32, 48),
                                   precision="fp32", device="cpu", mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
                                   synthetic=True)


def test_runner_matches_eager_fp32(tiny_package, tiny_encoder):
    x = _image()
    with AOTIRunner(tiny_package) as runner:
        assert runner.name == "aoti-fp32"
        assert runner.input_spec.shape == (1, 3, *SIZE)
        got = runner.infer(x)
    with torch.inference_mode():
        want = tiny_encoder(x)
    assert got.dtype == torch.float32 and got.shape == (1, 512, 32, 48)
    assert got.is_contiguous(), f"package output strides {got.stride()}, expected NCHW-contiguous"
    assert check(feature_metrics(got, want), "fp32")


def test_runner_refuses_other_shapes(tiny_package):
    with AOTIRunner(tiny_package) as runner, pytest.raises(InputSizeError, match="static shape"):
        runner.infer(torch.zeros(1, 3, 64, 64))


def test_cli_fp16_package_within_fp16_error_of_eager(cli_fp16_package, tiny_encoder):
    spec = read_package_spec(cli_fp16_package)
    assert (spec.precision, spec.device, spec.input_shape) == ("fp16", "cpu", (1, 3, *SIZE))
    assert spec.output_dtype == "float32"
    x = _image(1)
    with torch.inference_mode():
        ref = tiny_encoder(x)
    with AOTIRunner(cli_fp16_package) as runner:
        got = runner.infer(x)
    with TorchRunner(tiny_encoder, "fp16") as eager16:
        base = eager16.infer(x)
    assert got.dtype == torch.float32  # I/O stays fp32; the normalisation ran in fp32
    # err(package fp16, fp32) <= k * err(eager fp16 autocast, fp32), k from the tolerance table
    assert check(feature_metrics(got, ref), "fp16", baseline=feature_metrics(base, ref))
    torch.testing.assert_close(got.norm(dim=1), torch.ones(1, 32, 48), atol=1e-5, rtol=0)


def test_fp16_output_package_writes_fp16_and_the_runner_keeps_float32(tiny_encoder):
    # the same cached package as tests/test_cpp.py's (package-aoti --output-dtype fp16)
    package = aoti_package(tiny_encoder, size=SIZE, precision="fp16", output_dtype="float16")
    assert read_package_spec(package).output_dtype == "float16"
    x = _image(1)
    with torch.inference_mode():
        ref = tiny_encoder(x)
    with AOTIRunner(package) as runner:
        got = runner.infer(x)
        half = runner.infer(x, out_dtype=torch.float16)
        raw = runner.model(x)  # what the package itself writes
    with TorchRunner(tiny_encoder, "fp16") as eager16:
        base = eager16.infer(x)
    assert raw.dtype == torch.float16 and raw.is_contiguous()  # written by the normalisation kernel
    assert half.dtype == torch.float16 and torch.equal(half, raw)
    assert got.dtype == torch.float32 and torch.equal(got, raw.float())  # the runner's float32 contract
    assert check(feature_metrics(got, ref), "fp16", baseline=feature_metrics(base, ref))
    # unit vectors normalised in fp32, then rounded to fp16 (<= 2^-11 relative per component)
    torch.testing.assert_close(got.norm(dim=1), torch.ones(1, 32, 48), atol=5e-4, rtol=0)


def test_failed_packaging_leaves_nothing(tiny_encoder, tmp_path):
    out = tmp_path / "bad.pt2"
    with pytest.raises(InputSizeError, match="not supported by tiny"):
        package_aoti(tiny_encoder, out, (48, 48), progress=None)  # 48//16 = 3: odd grid
    assert list(tmp_path.iterdir()) == []


def test_bad_requests_are_refused(tiny_encoder, tmp_path):
    with pytest.raises(LsegError, match="must end in .pt2"):
        package_aoti(tiny_encoder, tmp_path / "x.so", SIZE, progress=None)
    with pytest.raises(LsegError, match="unknown precision"):
        package_aoti(tiny_encoder, tmp_path / "x.pt2", SIZE, precision="int8", progress=None)
    if not torch.cuda.is_available():
        with pytest.raises(BackendUnavailable, match="torch.cuda.is_available"):
            package_aoti(tiny_encoder, tmp_path / "x.pt2", SIZE, device="cuda", progress=None)
    assert list(tmp_path.iterdir()) == []


def test_not_a_package_is_a_clear_error(tmp_path):
    with pytest.raises(PackageError, match="not found"):
        AOTIRunner(tmp_path / "missing.pt2")
    junk = tmp_path / "junk.pt2"
    junk.write_bytes(b"not a zip")
    with pytest.raises(PackageError, match="not a readable zip"):
        AOTIRunner(junk)
    foreign = tmp_path / "foreign.pt2"
    with zipfile.ZipFile(foreign, "w") as z:
        z.writestr("hello.txt", "hi")
    with pytest.raises(PackageError, match="not an AOTInductor .pt2 package"):
        AOTIRunner(foreign)


def test_corrupt_library_is_a_clear_error(tiny_package, tmp_path):
    broken = tmp_path / "broken.pt2"
    with zipfile.ZipFile(tiny_package) as zin, zipfile.ZipFile(broken, "w") as zout:
        for name in zin.namelist():
            zout.writestr(name, b"garbage" if name.endswith(".so") else zin.read(name))
    runner = AOTIRunner(broken)  # metadata is intact: constructing is fine
    with pytest.raises(PackageError, match="cannot load the AOTInductor package"):
        runner.activate()


@pytest.mark.usefixtures("without_cuda")  # simulates a CUDA package on a machine without CUDA
def test_cuda_package_on_cpu_machine_is_unavailable(tiny_package, tmp_path):
    fake = tmp_path / "cuda.pt2"
    _rewrite_metadata(tiny_package, fake, AOTI_DEVICE_KEY="cuda", **{"lseg.device": "cuda"})
    runner = AOTIRunner(fake)
    assert runner.device.type == "cuda"
    with pytest.raises(BackendUnavailable, match="compiled for CUDA but torch.cuda.is_available"):
        runner.activate()


def test_package_from_another_cpu_is_unavailable(tiny_package, tmp_path):
    fake = tmp_path / "arm.pt2"
    _rewrite_metadata(tiny_package, fake, AOTI_MACHINE="aarch64-elsewhere")
    with pytest.raises(BackendUnavailable, match="compiled for aarch64-elsewhere"):
        AOTIRunner(fake).activate()


def test_a_load_that_kills_the_child_becomes_one_clear_reason(tmp_path):
    """The CUDA-package probe: a SIGSEGV in the child (torch 2.11's defect) is named, an ordinary
    failure or success is left to the in-process load."""
    from lseg_encoder.runners.aoti_runner import load_crash_reason

    pkg = tmp_path / "x.pt2"
    pkg.write_bytes(b"PK")
    crash = "import os, signal, sys; os.kill(os.getpid(), signal.SIGSEGV)"
    reason = load_crash_reason(pkg, 0, code=crash)
    assert reason and "SIGSEGV" in reason and "lseg_cpp" in reason
    assert load_crash_reason(pkg, 1, code="import sys; sys.exit(1)") is None
    assert load_crash_reason(pkg, 2, code="import sys; print(sys.argv[1:])") is None
    # memoised per file and device: the same key does not run the child again
    assert load_crash_reason(pkg, 0, code="raise SystemExit(0)") == reason
    # a load that hangs is a reason too, not a TimeoutExpired traceback
    hang = load_crash_reason(pkg, 3, code="import time; time.sleep(60)", timeout=1)
    assert hang and "did not finish in 1 s" in hang


def test_cuda_fp16_packages_compile_the_compiled_runners_graph(tiny_encoder):
    """Graph revision 8: an fp16 CUDA package holds the compiled runner's kernels (attention, the fused
    upsample + normalisation) and is compiled with its Inductor settings; CPU and fp32 packages are
    not. Checked on the module tree and the settings (exporting for CUDA needs a GPU)."""
    from lseg_encoder.export.aoti import ContiguousOutput, package_inductor_configs, packaged_model
    from lseg_encoder.model.fused_finish import FusedFinish
    from lseg_encoder.model.kernel_attention import KernelAttention

    cuda16 = packaged_model(tiny_encoder, "fp16", "cuda", torch.float16)
    assert isinstance(cuda16, FusedFinish) and cuda16.dtype == torch.float16 and cuda16.model.deferred_upsample
    assert any(isinstance(m, KernelAttention) for m in cuda16.modules())
    cpu16 = packaged_model(tiny_encoder, "fp16", "cpu", torch.float32)
    assert isinstance(cpu16, ContiguousOutput) and not cpu16.model.deferred_upsample
    assert not any(isinstance(m, KernelAttention) for m in cpu16.modules())
    assert isinstance(packaged_model(tiny_encoder, "fp32", "cuda", torch.float32), ContiguousOutput)

    def spec(precision, device):
        return AOTIPackageSpec(backbone="tiny", input_shape=(1, 3, *SIZE), output_shape=(1, 512, 32, 48),
                               precision=precision, device=device, mean=(0.5,) * 3, std=(0.5,) * 3,
                               synthetic=True, output_dtype="float32")

    assert package_inductor_configs(spec("fp16", "cuda"))["realize_reads_threshold"] == 2
    for precision, device in (("fp16", "cpu"), ("fp32", "cuda")):
        configs = package_inductor_configs(spec(precision, device))
        assert list(configs) == ["aot_inductor.metadata"], (precision, device)


def test_package_cache_key_covers_the_kernels_and_inductor_settings(monkeypatch):
    """Cached packages are keyed by this digest: a changed Triton kernel (compiled into CUDA
    packages) or Inductor setting must rebuild them, not only a changed model file."""
    from pathlib import Path

    from lseg_encoder.export.aoti import model_code_digest

    before = model_code_digest()
    read = Path.read_bytes
    for name in ("attention.py", "inductor_settings.py", "vit.py"):
        monkeypatch.setattr(Path, "read_bytes", lambda p, n=name: read(p) + (b"#" if p.name == n else b""))
        assert model_code_digest() != before, name
    monkeypatch.setattr(Path, "read_bytes", read)
    assert model_code_digest() == before
