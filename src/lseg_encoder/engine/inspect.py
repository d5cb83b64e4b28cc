"""What a built engine says about itself: the builder configuration read back, the sparse-tactic
report and the layer inspector. Read after the build, recorded in the sidecar."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import EngineError
from .backend import CapturedLog, TrtBackend, execution_unavailable_reason
from .options import BuildOptions
from .plan import BuildPlan

if TYPE_CHECKING:  # the TensorRT 10.13 API (tensorrt-stubs)
    import tensorrt


def config_read_back(trt: TrtBackend, config: tensorrt.IBuilderConfig, plan: BuildPlan,
                      options: BuildOptions) -> dict:
    """Read every option back from the builder config; an option that did not stick is an error."""
    m = trt.module
    flags = [f for f in plan.builder_flags if config.get_flag(getattr(m.BuilderFlag, f))]
    tactics = int(config.get_tactic_sources()) if hasattr(config, "get_tactic_sources") else None
    out: dict[str, Any] = {"builder_flags": flags,
           "workspace": int(config.get_memory_pool_limit(m.MemoryPoolType.WORKSPACE)),
           "tactic_sources_mask": tactics,
           "optimization_level": getattr(config, "builder_optimization_level", None)}
    if trt.has_compute_capability_targets:
        count = config.num_compute_capabilities  # type: ignore[attr-defined]  # RTX API, not in the stubs
        out["compute_capabilities"] = [
            str(config.get_compute_capability(i).name)  # type: ignore[attr-defined]  # RTX API, not in the stubs
            for i in range(count)]
    problems = []
    if flags != plan.builder_flags:
        problems.append(f"flags {sorted(set(plan.builder_flags) - set(flags))} did not stick")
    if out["workspace"] != options.workspace:
        problems.append(f"workspace reads back as {out['workspace']} bytes, not {options.workspace}")
    if plan.optimization_level is not None and out["optimization_level"] != plan.optimization_level:
        problems.append(f"optimization level reads back as {out['optimization_level']}")
    if plan.compute_capabilities is not None and out["compute_capabilities"] != [
            "SM" + cc.replace(".", "") for cc in plan.compute_capabilities]:
        problems.append(f"compute capabilities read back as {out['compute_capabilities']}")
    if problems:
        raise EngineError(f"{trt} did not apply the requested options: {'; '.join(problems)}")
    return out


def sparsity_report(trt: TrtBackend, data: bytes, options: BuildOptions, log: CapturedLog) -> dict:
    """How many layers chose sparse tactics, when the backend says; otherwise say why it is unknown.

    LSeg weights are dense, so SPARSE_WEIGHTS is expected to change nothing; this reports what
    TensorRT did rather than implying a speed-up.
    """
    out: dict[str, Any] = {"requested": options.sparse, "layers_total": None, "layers_sparse": None, "log": []}
    out["log"] = [msg for msg in log.at_least("INFO")
                  if "(Sparsity)" in msg or "sparse implementation" in msg]
    counts, why_not = inspect_layers(trt, data)
    if counts is not None:
        out["layers_total"], out["layers_sparse"] = counts
        out["report"] = f"{counts[1]} of {counts[0]} layers chose sparse tactics (IEngineInspector)"
    elif out["log"]:
        out["report"] = "builder log: " + " | ".join(out["log"])
    else:
        out["report"] = f"not available: the builder logged no sparsity summary and {why_not}"
    return out


def inspect_layers(trt: TrtBackend, data: bytes) -> tuple[tuple[int, int] | None, str]:
    """((total layers, layers whose tactic name says sparse), '') via IEngineInspector, or (None, why)."""
    if not trt.has_engine_inspector:
        return None, f"{trt} has no IEngineInspector"
    reason = execution_unavailable_reason(flavour=trt)
    if reason:
        return None, f"the engine cannot be deserialised for IEngineInspector here ({reason})"
    import json

    log = CapturedLog()
    runtime = trt.module.Runtime(trt.make_logger(log))
    engine = runtime.deserialize_cuda_engine(data)
    if engine is None:
        return None, "deserialize_cuda_engine failed: " + ("; ".join(log.errors()) or "no reason logged")
    inspector = engine.create_engine_inspector()
    try:
        info = json.loads(inspector.get_engine_information(trt.module.LayerInformationFormat.JSON))
    except ValueError:
        return None, "IEngineInspector returned no JSON layer information"
    layers = info.get("Layers", [])
    sparse = sum(1 for layer in layers
                 if isinstance(layer, dict) and "sparse" in str(layer.get("TacticName", "")).lower())
    return (len(layers), sparse), ""
