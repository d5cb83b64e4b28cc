"""`extract(inputs, out, ...)`: features of many images and video frames on disk, resumable.

Order of work, cheapest checks first: options and sizes (no model), inputs (listing only), the out
folder (writable, same configuration), then the model, the PCA basis if asked, and the engine. A
rerun of the same command finds the finished items in the manifest and on disk and skips them.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

from ..devices import parse_cli_device
from ..errors import LsegError
from .compute import NATIVE, FeatureComputer, JobSpec, recipe_params, validate
from .inputs import Item, VideoSampling, expand_inputs, parse_shard, select_shard
from .manifest import ManifestWriter, check_config, done_ids, read_manifest, write_run_json
from .pipeline import Output, StageTimes, run_items
from .sinks import FORMATS, feature_path, sweep_stale_parts
from .summary import ExtractSummary, Tally

ENGINES = ("local", "ray")
SINKS = ("files", "none")


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def default_backend(device: str) -> str:
    """Compiled fp16 on CUDA (the fast path), eager fp32 on CPU (compiling costs more than it saves)."""
    return "compiled" if str(device).startswith("cuda") else "torch"


def parse_devices(devices) -> list[str] | None:
    """'all' | 'cuda:0,cuda:1' | a list -> device names; refuses CUDA requests where there is none."""
    if devices is None:
        return None
    import torch

    names = devices.split(",") if isinstance(devices, str) else list(devices)
    names = [n.strip() for n in names if n.strip()]
    if names == ["all"]:
        if not torch.cuda.is_available():
            raise LsegError("--devices all needs CUDA GPUs, and this machine has none "
                            "(torch.cuda.is_available() is False); leave --devices out to run on the CPU")
        return [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    for name in names:
        if name.startswith("cuda"):
            if not torch.cuda.is_available():
                raise LsegError(f"--devices {','.join(names)} needs CUDA, and this machine has none "
                                "(torch.cuda.is_available() is False)")
            index = parse_cli_device(name).index or 0  # "cuda:x" is one clear line, not a ValueError
            if index >= torch.cuda.device_count():
                raise LsegError(f"--devices: {name} does not exist ({torch.cuda.device_count()} GPUs here)")
        elif name != "cpu":
            raise LsegError(f"--devices: unknown device {name!r}; use all, cuda:N or cpu")
    if not names:
        raise LsegError("--devices names no device")
    return names


def _prepare_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise LsegError(f"cannot write to --out {out}: it is a file, not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".lseg-write-probe"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise LsegError(f"cannot write to --out {out}: {exc.strerror or exc}") from None


def extract(inputs, out=None, *, recipe: str = NATIVE, size=(480, 480), recipe_options: dict | None = None,
            weights=None, backbone: str | None = None, backend: str | None = None, device: str | None = None,
            batch: int = 8, workers: int = 2, fmt: str = "npy", dtype: str = "fp16", pca: int | None = None,
            feature_size=None, shard=None, devices=None, engine: str = "local", ray_address: str | None = None,
            every: int | None = None, fps: float | None = None, overwrite: bool = False, fail_fast: bool = False,
            max_pixels: int | None = 50_000_000, sink: str = "files", progress: bool = True,
            encoder=None) -> ExtractSummary:
    """Extract features of `inputs` into `out`; see docs/extract.md. Returns what happened.

    `recipe` is a name or a recipe object of `lseg_encoder.recipes` (rebuilt from its `params()` in
    each worker); `recipe_options` are the recipe's parameters (e.g. scales for lseg-multiscale);
    `size` is the native recipe's. `encoder` (an LSegEncoder already loaded from `weights`) skips loading it again.
    """
    # 1. options, no model yet
    if fmt not in FORMATS:
        raise LsegError(f"unknown --format {fmt!r}; use one of {', '.join(FORMATS)}")
    if sink not in SINKS:
        raise LsegError(f"unknown --sink {sink!r}; use one of {', '.join(SINKS)}")
    if engine not in ENGINES:
        raise LsegError(f"unknown --engine {engine!r}; use one of {', '.join(ENGINES)}")
    if sink == "files" and out is None:
        raise LsegError("--out is required (or --sink none to measure without writing)")
    if workers < 0:
        raise LsegError(f"--workers must be >= 0, got {workers}")
    shard = parse_shard(shard) if isinstance(shard, str) else shard
    if shard is not None:
        shard = parse_shard(f"{shard[0]}/{shard[1]}")
    device_list = parse_devices(devices)
    device = device or (device_list[0] if device_list else default_device())
    backend = backend or default_backend(device)
    from ..backends import check_backends

    check_backends([backend])
    if pca is not None and not 1 <= int(pca) <= 512:
        raise LsegError(f"--pca K must be in 1..512, got {pca}")
    options = dict(recipe_options or {})
    if not isinstance(recipe, str):  # a Recipe object from lseg_encoder.recipes: rebuilt from its parameters
        params = dict(recipe.params())
        recipe = params.pop("recipe")
        backbone = backbone or params.pop("backbone", None)
        params.pop("backbone", None)
        options = {**params, **options}
    if recipe == NATIVE:
        options.setdefault("size", list(size) if not isinstance(size, int) else [size, size])
    sampling = VideoSampling(every=every, fps=fps)
    from ..weights.choice import planned_backbone, resolve_weights

    weights = weights if encoder is None else weights or encoder.source
    backbone = planned_backbone(weights, backbone or (encoder.config.name if encoder is not None else None))
    weights = resolve_weights(weights, backbone)
    spec = JobSpec(weights=weights, backbone=backbone, backend=backend, device=device, recipe=recipe,
                   recipe_options=options, dtype=dtype,
                   feature_size=tuple(int(v) for v in feature_size) if feature_size else None, batch=int(batch))
    validate(spec)

    # 2. inputs
    all_items = expand_inputs(inputs, sampling, max_pixels)
    selected = select_shard(all_items, shard)

    # 3. the out folder (writable?), the model, then the configuration check
    out_path = Path(out) if out is not None and sink == "files" else None
    if out_path is not None:
        _prepare_out(out_path)
    from ..backends import BACKENDS
    from ..store.fingerprint import weights_fingerprint
    from ..weights.checkpoint import load_encoder

    t_load = time.perf_counter()
    if encoder is None:
        encoder = load_encoder(spec.weights, backbone=spec.backbone)
    load_seconds = time.perf_counter() - t_load
    config = {
        "recipe": recipe_params(spec), "weights_fingerprint": weights_fingerprint(encoder),
        "backbone": spec.backbone, "backend": backend, "precision": BACKENDS[backend].precision, "format": fmt,
        "dtype": dtype, "pca": int(pca) if pca else None,
        "feature_size": list(spec.feature_size) if spec.feature_size else None,
    }
    manifest, done, resume = None, set(), False
    if out_path is not None:
        resume = check_config(out_path, config, overwrite)
        write_run_json(out_path, config, _run_record(spec, backend, encoder))
        if resume:
            done = done_ids(out_path, read_manifest(out_path), FORMATS[fmt])
        manifest = ManifestWriter(out_path, fresh=not resume)
    plan = [it for it in selected if it.id not in done]
    listed_failures = [it for it in plan if it.error]
    plan = [it for it in plan if not it.error]
    if out_path is not None and sink == "files":
        sweep_stale_parts([feature_path(out_path, it.id, fmt) for it in plan])

    # 4. PCA basis, then the engine
    if pca:
        from .pca import ensure_pca

        pca_file = ensure_pca(out_path, spec, all_items, int(pca), max_pixels, refit=not resume, encoder=encoder)
        spec = dataclasses.replace(spec, pca_path=str(pca_file))

    from tqdm import tqdm

    bar = tqdm(total=len(plan) + len(listed_failures), unit="img", disable=not progress, dynamic_ncols=True,
               file=sys.stderr, smoothing=0.1)
    tally = Tally(manifest, bar)
    output = Output(out=str(out_path) if out_path else "", fmt=fmt, sink=sink, max_pixels=max_pixels,
                    workers=workers, fail_fast=fail_fast)
    t0 = time.perf_counter()
    try:
        for it in listed_failures:
            from .manifest import Record

            tally(Record(it.id, it.source, "failed", reason=it.error))
            if fail_fast:
                from .decode import ItemFailure

                raise ItemFailure(f"{it.id}: {it.error} (--fail-fast)")
        stages = _run_engine(engine, spec, output, plan, tally, device_list, ray_address, encoder)
    finally:
        bar.close()
        if manifest is not None:
            manifest.close()
    seconds = time.perf_counter() - t0
    stages.load += load_seconds
    return ExtractSummary(out=str(out_path) if out_path else None, total=len(selected), skipped=len(done),
                          ok=tally.ok, failed=tally.failed, seconds=seconds, bytes=stages.bytes, stages=stages,
                          device=",".join(device_list) if device_list else device, backend=backend,
                          failures=tally.failures, steady=tally.steady_window(),
                          warm_marks=tally.warm_marks)


def _run_engine(engine, spec: JobSpec, output: Output, plan: list[Item], tally, device_list, ray_address,
                encoder) -> StageTimes:
    if not plan:
        return StageTimes()
    if engine == "ray":
        from .ray_engine import run_ray

        return run_ray(spec, output, plan, tally, ray_address=ray_address, devices=device_list)
    if device_list and len(device_list) > 1:
        from .devices import run_devices

        return run_devices(spec, output, plan, tally, device_list)
    from .loader import new_counter

    computer = FeatureComputer(spec, encoder)
    try:
        return run_items(spec, output, plan, new_counter(), tally, computer=computer,
                         warm=lambda load, first: tally.warm(str(computer.device), load, first))
    finally:
        computer.close()


def _run_record(spec: JobSpec, backend: str, encoder) -> dict:
    from .. import __version__
    from ..suites.timing import machine_info

    return {"package_version": __version__, "backend": backend, "device": spec.device,
            "weights": spec.weights, "synthetic_weights": bool(getattr(encoder, "synthetic", False)),
            "batch": spec.batch, "machine": machine_info(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
