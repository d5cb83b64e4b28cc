"""What Polygraphy's model inspection says about an exported ONNX or a built engine, for reports.

`inspect_summary(path) -> dict` reads the facts `polygraphy inspect model` prints: inputs and
outputs with their dynamic dimensions, the opset, the node (ONNX) or layer (engine) count, and for
engines the optimisation profiles. ONNX facts come from Polygraphy's ONNX utilities on the graph
(weights are not loaded, so a ViT-L/16 graph with external data is cheap). An engine can only be
inspected where TensorRT can deserialise it (a CUDA GPU the engine was built for); elsewhere the
summary says why, and still lists the profiles the project's build sidecar recorded, labelled as
such. `inspect_markdown(summary) -> str` renders a short block for `verify`'s report.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from ..errors import LsegError
from .polygraphy_check import engine_flavour, polygraphy_trt, require_polygraphy, trt_runner_available

ENGINE_SUFFIXES = (".trt", ".engine", ".plan")


def _dims(shape) -> tuple[list, list[int]]:
    """(shape with symbolic dims as strings, indices of the dynamic axes)."""
    dims = [d if isinstance(d, str) else int(d) for d in shape]
    return dims, [i for i, d in enumerate(dims) if isinstance(d, str) or d < 0]


def _tensor_rows(metadata) -> list[dict]:
    rows = []
    for name, meta in metadata.items():
        dims, dynamic = _dims(meta.shape)
        rows.append({"name": name, "dtype": str(meta.dtype), "shape": dims, "dynamic_axes": dynamic})
    return rows


def _inspect_onnx(path: Path) -> dict:
    polygraphy = require_polygraphy()
    import onnx
    from polygraphy.backend.onnx import util as onnx_util

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf raises DecodeError and others; report one line
        raise LsegError(f"{path}: not a readable ONNX model ({type(exc).__name__}: {exc})") from None
    opsets = {entry.domain or "ai.onnx": entry.version for entry in model.opset_import}
    meta = {p.key: p.value for p in model.metadata_props}
    return {
        "path": str(path), "kind": "onnx", "inspected_by": f"polygraphy {polygraphy.__version__}",
        "opset": opsets.get("ai.onnx"), "other_opsets": {k: v for k, v in opsets.items() if k != "ai.onnx"},
        "node_count": onnx_util.get_num_nodes(model), "initializer_count": len(model.graph.initializer),
        "op_types": dict(Counter(n.op_type for n in model.graph.node).most_common()),
        "inputs": _tensor_rows(onnx_util.get_input_metadata(model.graph)),
        "outputs": _tensor_rows(onnx_util.get_output_metadata(model.graph)),
        "producer": model.producer_name,
        "precision": meta.get("precision"), "backbone": meta.get("backbone"),
    }


def _sidecar_facts(path: Path) -> dict | None:
    from ..engine.sidecar import EngineMetadata, sidecar_path

    try:
        meta = EngineMetadata.read(sidecar_path(path))
    except LsegError:
        return None
    return {"flavour": meta.backend.get("flavour"), "version": meta.backend.get("version"),
            "precision": meta.precision, "profiles": meta.profiles, "io": meta.io}


def _inspect_engine(path: Path) -> dict:
    polygraphy = require_polygraphy()
    summary = {"path": str(path), "kind": "engine", "inspected_by": None, "reason": None,
               "sidecar": _sidecar_facts(path), "inputs": [], "outputs": [], "layer_count": None, "profiles": []}
    ok, reason = trt_runner_available(path)
    if not ok:
        summary["reason"] = reason
        return summary
    from polygraphy.backend.common import BytesFromPath

    from ..engine.backend import load_backend

    backend = load_backend(engine_flavour(path))
    pg_trt = polygraphy_trt(backend.flavour)
    engine = pg_trt.EngineFromBytes(BytesFromPath(str(path)))()
    trt = backend.module
    inputs = []
    for index in range(engine.num_io_tensors):
        name = engine.get_tensor_name(index)
        dims, dynamic = _dims(tuple(engine.get_tensor_shape(name)))
        row = {"name": name, "dtype": str(engine.get_tensor_dtype(name)).rsplit(".", 1)[-1].lower(), "shape": dims,
               "dynamic_axes": dynamic}
        is_input = engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
        (inputs if is_input else summary["outputs"]).append(row)
    summary["inputs"] = inputs
    for profile in range(engine.num_optimization_profiles):
        shapes = {row["name"]: [list(s) for s in engine.get_tensor_profile_shape(row["name"], profile)]
                  for row in inputs}
        summary["profiles"].append({"index": profile, "min_opt_max": shapes})
    summary["layer_count"] = engine.num_layers
    summary["inspected_by"] = f"polygraphy {polygraphy.__version__} ({backend})"
    return summary


def inspect_summary(path: str | Path) -> dict:
    """Polygraphy's view of an ONNX file or a TensorRT engine (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise LsegError(f"{path}: no such file")
    if path.suffix == ".onnx":
        return _inspect_onnx(path)
    if path.suffix in ENGINE_SUFFIXES:
        return _inspect_engine(path)
    raise LsegError(f"{path}: cannot inspect; expected .onnx or a TensorRT engine ({', '.join(ENGINE_SUFFIXES)})")


def _shape(dims: list) -> str:
    return "(" + ", ".join(str(d) for d in dims) + ")"


def _io_table(summary: dict) -> list[str]:
    lines = ["| I/O | name | dtype | shape | dynamic axes |", "|---|---|---|---|---|"]
    for kind in ("inputs", "outputs"):
        for row in summary[kind]:
            dynamic = ", ".join(f"{i} ({row['shape'][i]})" for i in row["dynamic_axes"]) or "none"
            lines.append(f"| {kind[:-1]} | {row['name']} | {row['dtype']} | {_shape(row['shape'])} | {dynamic} |")
    return lines


def inspect_markdown(summary: dict) -> str:
    """A short markdown block for one `inspect_summary` result."""
    name = Path(summary["path"]).name
    if summary["kind"] == "onnx":
        extra = f", other opsets {summary['other_opsets']}" if summary["other_opsets"] else ""
        head = (f"**{name}** (ONNX opset {summary['opset']}{extra}, {summary['node_count']} nodes, "
                f"{summary['initializer_count']} initializers; {summary['inspected_by']})")
        return "\n".join([head, "", *_io_table(summary)]) + "\n"
    lines = [f"**{name}** (TensorRT engine)"]
    if summary["inspected_by"]:
        lines[0] = f"**{name}** (TensorRT engine, {summary['layer_count']} layers; {summary['inspected_by']})"
        lines += ["", *_io_table(summary), ""]
        for profile in summary["profiles"]:
            shapes = "; ".join(f"{n}: min {_shape(s[0])}, opt {_shape(s[1])}, max {_shape(s[2])}"
                               for n, s in profile["min_opt_max"].items())
            lines.append(f"- profile {profile['index']}: {shapes}")
    else:
        lines += ["", f"Not inspected by Polygraphy: {summary['reason']}"]
    side = summary.get("sidecar")
    if side and not summary["inspected_by"]:
        lines += ["", f"Recorded by the build sidecar ({side['flavour']} {side['version']}, {side['precision']}), "
                      "not by Polygraphy:"]
        lines += [f"- profile {i} (B, H, W): min {_shape(p['min'])}, opt {_shape(p['opt'])}, max {_shape(p['max'])}"
                  for i, p in enumerate(side["profiles"])]
    return "\n".join(lines) + "\n"
