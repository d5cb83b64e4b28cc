"""Polygraphy as a second, independent referee of an exported encoder.

The project's verdict (`metrics.check`) comes from its own runners and its own metrics. This module
asks NVIDIA's Polygraphy the same question with Polygraphy's own machinery: its `OnnxrtRunner` (or
`TrtRunner` on the engine the project built) runs under `Comparator.run`, the PyTorch fp32 outputs
enter as one more `RunResults` entry, and `Comparator.compare_accuracy` judges them with Polygraphy's
comparison functions. Tolerances are derived from the ONE table (`tolerances.tolerance_for`):

- cosine similarity (global, flattened): the table's `cosine`, as `cosine_similarity_threshold`;
- L2: Polygraphy's L2 is absolute (`||a - b||`), the table's is relative, so the threshold is
  `rel_l2 * ||reference||` (for L2-normalised features `||reference|| = sqrt(B*h*w)`);
- simple: `check_error_stat="max"`, `atol` = the table's `max_abs`, `rtol=0`, which makes
  Polygraphy's "abs OR rel within tolerance" rule exactly `max|a - b| <= max_abs`. Precisions whose
  table leaves max-abs unbounded (fp16, bf16) run no simple check rather than a meaningless one.

Not expressible in Polygraphy and therefore left to the project's verdict, which stays primary: the
per-pixel cosine (min, 0.1th percentile), label agreement over the prompt set, and the bound
relative to PyTorch in the same precision (`k_vs_baseline`).

The installed Polygraphy (0.53) spells the comparison functions `SimpleCompareFunc`,
`L2CompareFunc` and `CosineSimilarityCompareFunc` (the CLI's `distance_metrics` is l2 + cosine);
older releases had `CompareFunc.distance_metrics`. Polygraphy is imported lazily; without it every
entry point raises `BackendUnavailable` with the install command.

`python -m lseg_encoder.fidelity.polygraphy_check --checkpoint C --size 384 --inputs I --reference R`
writes an input and its PyTorch fp32 reference in Polygraphy's JSON formats for `polygraphy run
--load-inputs I --load-outputs R` (see docs/fidelity.md), and prints the tolerance arguments.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import BackendUnavailable, LsegError
from .tolerances import TOLERANCES, tolerance_for

INSTALL_HINT = "pip install 'polygraphy>=0.53' (or: pip install 'lseg-encoder[test]')"
REFERENCE_RUNNER = "pytorch-fp32"
INPUT_NAME, OUTPUT_NAME = "image", "features"  # the exporter's names (export/onnx.py)


def require_polygraphy():
    """Import Polygraphy, or raise BackendUnavailable saying what to install."""
    try:
        import polygraphy
        import polygraphy.comparator as comparator
    except ImportError as exc:
        raise BackendUnavailable(f"Polygraphy is not importable ({exc}); install it: {INSTALL_HINT}") from None
    missing = [n for n in ("SimpleCompareFunc", "L2CompareFunc", "CosineSimilarityCompareFunc")
               if not hasattr(comparator, n)]
    if missing:
        raise BackendUnavailable(f"polygraphy {polygraphy.__version__} lacks {', '.join(missing)}; "
                                 f"upgrade it: {INSTALL_HINT}")
    return polygraphy


def _array(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().to("cpu").float().numpy()
    return np.ascontiguousarray(np.asarray(x, dtype=np.float32))


# tolerances ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PolygraphyTolerances:
    """The tolerance table for one precision, in Polygraphy's terms, for one reference output."""

    precision: str
    cosine_similarity_threshold: float
    l2_threshold: float  # absolute: rel_l2 * ||reference||
    reference_norm: float
    atol: float | None  # simple/max; None: the table does not bound max-abs, no simple check
    rtol: float = 0.0
    check_error_stat: str = "max"

    @property
    def not_expressed(self) -> list[str]:
        """The table's checks for this precision that no Polygraphy comparison function expresses."""
        tol = tolerance_for(self.precision)
        limits = {"pixel_cos_min": tol.pixel_cos_min, "pixel_cos_p01": tol.pixel_cos_p01,
                  "label_agreement": tol.label_agreement, "k_vs_baseline": tol.k_vs_baseline}
        return [name for name, limit in limits.items() if limit is not None]

    def cli_args(self) -> list[str]:
        """The `polygraphy run` comparison arguments that express the same checks."""
        funcs = (["simple"] if self.atol is not None else []) + ["distance_metrics"]
        args = ["--compare", *funcs]
        if self.atol is not None:
            args += ["--check-error-stat", self.check_error_stat, "--atol", f"{self.atol:g}",
                     "--rtol", f"{self.rtol:g}"]
        args += ["--l2-threshold", f"{self.l2_threshold:.6g}",
                 "--cosine-similarity-threshold", f"{self.cosine_similarity_threshold:g}"]
        return args


def polygraphy_tolerances(precision: str, reference) -> PolygraphyTolerances:
    """Map `tolerance_for(precision)` onto Polygraphy's comparison functions for `reference`."""
    tol = tolerance_for(precision)
    norm = float(np.linalg.norm(_array(reference).astype(np.float64)))
    return PolygraphyTolerances(precision, cosine_similarity_threshold=tol.cosine, l2_threshold=tol.rel_l2 * norm,
                                reference_norm=norm, atol=tol.max_abs)


def compare_funcs(tolerances: PolygraphyTolerances) -> list:
    """Polygraphy comparison functors for `tolerances` (simple only where max-abs is bounded)."""
    require_polygraphy()
    from polygraphy.comparator import CosineSimilarityCompareFunc, L2CompareFunc, SimpleCompareFunc

    funcs = []
    if tolerances.atol is not None:
        funcs.append(SimpleCompareFunc(atol=tolerances.atol, rtol=tolerances.rtol,
                                       check_error_stat=tolerances.check_error_stat))
    funcs.append(L2CompareFunc(l2_threshold=tolerances.l2_threshold))
    funcs.append(CosineSimilarityCompareFunc(cosine_similarity_threshold=tolerances.cosine_similarity_threshold))
    return funcs


# verdict ------------------------------------------------------------------------------------------
@dataclass
class PolygraphyVerdict:
    """Truthy when Polygraphy's `AccuracyResults` is; `str()` shows Polygraphy's line per check."""

    precision: str
    runner: str
    tolerances: PolygraphyTolerances
    checks: list[tuple[str, bool]]
    passed: bool
    log: str = field(default="", repr=False)  # Polygraphy's own log of the comparison

    def __bool__(self) -> bool:
        return self.passed

    def __str__(self) -> str:
        head = f"[polygraphy {self.precision}] {self.runner} vs {REFERENCE_RUNNER}: {'PASSED' if self else 'FAILED'}"
        return "\n  ".join([head, *(line for line, _ in self.checks)])

    __repr__ = __str__

    def to_dict(self) -> dict:
        return {"precision": self.precision, "runner": self.runner, "passed": self.passed,
                "checks": [{"line": line, "passed": ok} for line, ok in self.checks],
                "cli_args": self.tolerances.cli_args(), "not_expressed": self.tolerances.not_expressed}


def _describe(name: str, result, tolerances: PolygraphyTolerances) -> tuple[str, bool]:
    if isinstance(result, bool):  # Polygraphy returns a bare False when shapes differ
        return f"{name}: not compared (shapes differ) | FAILED", result
    described = result.describe()
    if described is not None:
        return described
    ok = bool(result)
    return (f"simple ({tolerances.check_error_stat}): abs diff {result.max_absdiff:.5g} (tolerance: "
            f"{tolerances.atol:g}, rtol {tolerances.rtol:g}) | {'PASSED' if ok else 'FAILED'}"), ok


def judge_run_results(results, reference, precision: str) -> PolygraphyVerdict:
    """Add `reference` (PyTorch fp32) to Polygraphy `results` of one candidate runner and let
    `Comparator.compare_accuracy` judge the candidate with the tolerances for `precision`."""
    require_polygraphy()
    from polygraphy.comparator import Comparator
    from polygraphy.logger import G_LOGGER

    reference = _array(reference)
    tolerances = polygraphy_tolerances(precision, reference)
    runner_name = next(iter(results.keys()))
    results.add([{OUTPUT_NAME: reference}], runner_name=REFERENCE_RUNNER)
    log = io.StringIO()
    with contextlib.redirect_stdout(log), G_LOGGER.verbosity(G_LOGGER.INFO):
        accuracy = Comparator.compare_accuracy(results, compare_func=compare_funcs(tolerances))
    checks = [_describe(name, result, tolerances)
              for acc in accuracy for iterations in acc.values() for outputs in iterations
              for name, result in outputs.items()]
    return PolygraphyVerdict(precision, runner_name, tolerances, checks, bool(accuracy), log.getvalue())


def compare_with_polygraphy(runner, image, reference, precision: str) -> PolygraphyVerdict:
    """Run `runner` (a Polygraphy runner) on `image` under `Comparator.run` and judge its output."""
    require_polygraphy()
    from polygraphy.comparator import Comparator
    from polygraphy.logger import G_LOGGER

    log = io.StringIO()
    with contextlib.redirect_stdout(log), G_LOGGER.verbosity(G_LOGGER.INFO):
        results = Comparator.run([runner], data_loader=[{INPUT_NAME: _array(image)}])
    verdict = judge_run_results(results, reference, precision)
    verdict.log = log.getvalue() + verdict.log
    return verdict


# runners ------------------------------------------------------------------------------------------
def onnxrt_runner(onnx_path: str | Path, providers=("cpu",)):
    """Polygraphy's own ONNX Runtime runner (not the project's OnnxRuntimeRunner)."""
    require_polygraphy()
    from polygraphy.backend.onnxrt import OnnxrtRunner, SessionFromOnnx

    if not Path(onnx_path).is_file():
        raise LsegError(f"{onnx_path}: no such ONNX file")
    return OnnxrtRunner(SessionFromOnnx(str(onnx_path), providers=list(providers)),
                        name=f"polygraphy-onnxrt:{Path(onnx_path).name}")


def engine_flavour(engine_path: str | Path) -> str | None:
    """The TensorRT flavour that built `engine_path`, from the project's sidecar (None without one)."""
    from ..engine.sidecar import EngineMetadata, sidecar_path

    try:
        return EngineMetadata.read(sidecar_path(engine_path)).backend.get("flavour")
    except LsegError:
        return None


def trt_runner_available(engine_path: str | Path) -> tuple[bool, str]:
    """(available, reason) for running `engine_path` here, with the same probes as the project's runner."""
    from ..engine.backend import current_compute_capability, execution_unavailable_reason, load_backend

    try:
        require_polygraphy()
        trt = load_backend(engine_flavour(engine_path))
    except BackendUnavailable as exc:
        return False, str(exc)
    reason = execution_unavailable_reason(flavour=trt)
    if reason:
        return False, f"{trt} cannot execute {Path(engine_path).name} here: {reason}"
    return True, f"{trt} on compute capability {current_compute_capability()}"


def polygraphy_trt(flavour: str | None):
    """`polygraphy.backend.trt` bound to `flavour` (Polygraphy picks tensorrt or tensorrt_rtx once,
    from `polygraphy.config.USE_TENSORRT_RTX`, when that module is first imported)."""
    require_polygraphy()
    from polygraphy import config

    want_rtx = flavour == "tensorrt_rtx"
    if "polygraphy.backend.trt" in sys.modules and bool(config.USE_TENSORRT_RTX) != want_rtx:
        raise BackendUnavailable(f"polygraphy.backend.trt is already bound to "
                                 f"{'tensorrt_rtx' if config.USE_TENSORRT_RTX else 'tensorrt'} in this process; "
                                 f"run {flavour} engines in a fresh process (POLYGRAPHY_USE_TENSORRT_RTX="
                                 f"{int(want_rtx)})")
    config.USE_TENSORRT_RTX = want_rtx
    import polygraphy.backend.trt as pg_trt

    return pg_trt


def trt_runner(engine_path: str | Path):
    """Polygraphy's `TrtRunner` on an engine the project built; BackendUnavailable where it cannot run."""
    ok, reason = trt_runner_available(engine_path)
    if not ok:
        raise BackendUnavailable(reason)
    from polygraphy.backend.common import BytesFromPath

    pg_trt = polygraphy_trt(engine_flavour(engine_path))
    return pg_trt.TrtRunner(pg_trt.EngineFromBytes(BytesFromPath(str(engine_path))),
                            name=f"polygraphy-trt:{Path(engine_path).name}")


def check_with_polygraphy(path: str | Path, image, reference, precision: str, *, runner: str = "onnxrt",
                          providers=("cpu",)) -> PolygraphyVerdict:
    """Polygraphy's verdict on the ONNX (`runner="onnxrt"`) or engine (`runner="trt"`) at `path`
    for `image` against `reference`, the PyTorch fp32 output for the same image."""
    if runner == "onnxrt":
        return compare_with_polygraphy(onnxrt_runner(path, providers), image, reference, precision)
    if runner == "trt":
        return compare_with_polygraphy(trt_runner(path), image, reference, precision)
    raise LsegError(f"unknown Polygraphy runner {runner!r}; use onnxrt or trt")


# reference files for `polygraphy run` -------------------------------------------------------------
def reference_pair(encoder, size: tuple[int, int], seed: int = 0, batch: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """A seeded input in [-1, 1] (the encoder's normalised domain) and its PyTorch fp32 output."""
    import torch

    g = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, 3, *size, generator=g) * 2 - 1
    with torch.inference_mode():
        y = encoder.float().eval()(x)
    return x.numpy(), y.float().numpy()


def save_reference(image, reference, inputs: str | Path, outputs: str | Path) -> None:
    """Write `image` for `--load-inputs` and `reference` for `--load-outputs` (atomically)."""
    require_polygraphy()
    from polygraphy.comparator import RunResults
    from polygraphy.json import save_json

    from ..store.atomic import atomic_path

    with atomic_path(inputs, suffix=".json") as tmp:
        save_json([{INPUT_NAME: _array(image)}], str(tmp), description="lseg-encoder input")
    results = RunResults()
    results.add([{OUTPUT_NAME: _array(reference)}], runner_name=REFERENCE_RUNNER)
    with atomic_path(outputs, suffix=".json") as tmp:
        results.save(str(tmp))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m lseg_encoder.fidelity.polygraphy_check",
                                description="write an input and its PyTorch fp32 reference for `polygraphy run`")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--size", default="384", help="N or HxW (default 384)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--inputs", required=True, help="JSON for polygraphy run --load-inputs")
    p.add_argument("--reference", required=True, help="JSON for polygraphy run --load-outputs")
    args = p.parse_args(argv)
    try:
        from ..sizes import check_size
        from ..weights.checkpoint import load_encoder

        h, _, w = args.size.partition("x")
        size = (int(h), int(w or h))
        encoder = load_encoder(args.checkpoint)
        check_size(encoder.config, *size)
        image, reference = reference_pair(encoder, size, args.seed)
        save_reference(image, reference, args.inputs, args.reference)
    except (LsegError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.inputs} and {args.reference} ({encoder.config.name}, {size[0]}x{size[1]})", file=sys.stderr)
    for precision in TOLERANCES:
        print(f"{precision}: " + " ".join(polygraphy_tolerances(precision, reference).cli_args()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
