"""`--engine ray`: the same extraction as a Ray Data pipeline, for clusters.

Read and decode are CPU tasks (`map_batches` over rows that name the items); inference runs in an
actor pool (one actor per GPU with `num_gpus=1`, or CPU actors on a CPU-only cluster) that writes
its own items, so features never travel through the object store: only small manifest rows come
back, and the driver appends them to the manifest as they arrive. Done items were removed from the
plan before scheduling. Rows keep their order and inference batches are `batch` consecutive items,
as in the local engine (one row per chunk), so both engines produce the same files.
"""

from __future__ import annotations

import json
import pickle

import numpy as np

from ..errors import LsegError
from .compute import JobSpec
from .inputs import Item
from .manifest import Record
from .pipeline import Output, StageTimes


def _require_ray():
    try:
        import ray
        import ray.data  # noqa: F401
        import ray.exceptions  # noqa: F401
    except ImportError:
        raise LsegError("--engine ray needs Ray Data: pip install 'lseg-encoder[ray]'") from None
    return ray


def _decode_chunks(rows: dict, native_size, max_pixels) -> dict:
    """CPU task: each row names one chunk (`batch` consecutive items of the plan, as the local
    engine's chunks) -> the decoded chunk, pickled (pixels travel once, to the actor)."""
    from .decode import Decoder
    from .loader import decode_chunk

    decoder = Decoder(tuple(native_size) if native_size else None, max_pixels)
    payloads = []
    for start, spec_json in zip(rows["start"], rows["items"]):
        items = [Item(i, s, None if f < 0 else f) for i, s, f in json.loads(spec_json)]
        chunk = decode_chunk(items, int(start), decoder, stack=native_size is not None)
        payloads.append(pickle.dumps((items, chunk), protocol=pickle.HIGHEST_PROTOCOL))
    return {"start": rows["start"], "payload": np.array(payloads, dtype=object)}


class InferActor:
    """One per GPU (or CPU worker): holds the model, computes a chunk, writes its files itself and
    returns only the manifest records."""

    def __init__(self, spec: JobSpec, output: Output):
        from .compute import FeatureComputer

        self.spec = spec
        self.output = output
        self.computer = FeatureComputer(spec)

    def __call__(self, batch: dict) -> dict:
        from .pipeline import run_chunk

        rows = []
        for start, payload in zip(batch["start"], batch["payload"]):
            items, chunk = pickle.loads(payload)
            records: list[Record] = []
            times = run_chunk(self.computer, self.spec, self.output, chunk, items, records.append, offset=int(start))
            rows.append(json.dumps({"records": [r.__dict__ for r in records], "times": times.__dict__}))
        return {"result": np.array(rows, dtype=object)}


def run_ray(spec: JobSpec, output: Output, plan: list[Item], tally, *, ray_address: str | None = None,
            devices: list[str] | None = None) -> StageTimes:
    ray = _require_ray()
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=ray_address, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        return _pipeline(ray, spec, output, plan, tally, devices)
    except ray.exceptions.RayTaskError as exc:  # an actor's LsegError (disk full, ...) stays one clear line
        cause = getattr(exc, "cause", None)
        if isinstance(cause, LsegError):
            raise LsegError(f"ray worker: {cause}") from None
        raise
    finally:
        if started_here:
            ray.shutdown()


def _pipeline(ray, spec: JobSpec, output: Output, plan: list[Item], tally, devices) -> StageTimes:
    from ray.data import ActorPoolStrategy, DataContext

    DataContext.get_current().execution_options.preserve_order = True  # same batches as the local engine
    gpu = spec.device.startswith("cuda")
    if gpu:
        actors = max(int(ray.cluster_resources().get("GPU", 0)), 1)
        spec = spec.on("cuda")
    else:
        actors = len(devices) if devices else 1
    rows = [{"start": k, "items": json.dumps([[it.id, it.source, -1 if it.frame is None else it.frame]
                                              for it in plan[k:k + spec.batch]])}
            for k in range(0, len(plan), spec.batch)]
    ds = ray.data.from_items(rows)
    ds = ds.map_batches(_decode_chunks, batch_size=1, batch_format="numpy", num_cpus=1,
                        fn_kwargs={"native_size": spec.native_size, "max_pixels": output.max_pixels})
    ds = ds.map_batches(InferActor, batch_size=1, batch_format="numpy", compute=ActorPoolStrategy(size=actors),
                        fn_constructor_kwargs={"spec": spec, "output": output},
                        num_gpus=1 if gpu else 0, num_cpus=0 if gpu else 1)
    stages = StageTimes()
    for row in ds.iter_rows():
        result = json.loads(row["result"])
        stages.add(StageTimes(**result["times"]))
        for data in result["records"]:
            record = Record(**data)
            tally(record)
            if output.fail_fast and record.status == "failed":
                from .decode import ItemFailure

                raise ItemFailure(f"{record.id}: {record.reason} (--fail-fast)")
    return stages
