"""Where a `--devices` process's start goes (run 91: 33-38 s from spawn to its model load on 2 H200s,
against ~1.2 s here on the CPU): the same spawn as `extract.devices.run_devices`, with the job's real
arguments (a JobSpec, an Output, 16384 Items), and a time stamp after each step of `_worker`'s start,
up to its decode workers' first chunk."""

import sys
import time

T0 = time.time()


def stamp(what: str) -> None:
    print(f"[{time.time() - T0:7.2f} s] {what}", file=sys.stderr, flush=True)


def child(t0: float, spec, output, plan, device: str) -> None:
    global T0
    T0 = t0
    stamp(f"child entered (its args unpickled: {len(plan)} items)")
    import torch

    stamp("import torch")
    torch.set_num_threads(8)
    if device.startswith("cuda"):
        torch.cuda.set_device(device)
        stamp("set_device")
        torch.zeros(1, device=device)
        torch.cuda.synchronize()
        stamp("first CUDA op")
    from lseg_encoder.extract.compute import FeatureComputer

    stamp("import extract.compute")
    computer = FeatureComputer(spec.on(device))
    stamp("FeatureComputer built (model load)")
    from lseg_encoder.extract.decode import Decoder
    from lseg_encoder.extract.loader import chunk_loader, new_counter

    loader = chunk_loader(plan[:64], chunk=spec.batch, decoder=Decoder(spec.native_size, output.max_pixels),
                          counter=new_counter(), workers=output.workers, stack=True,
                          pin_memory=computer.device.type == "cuda")
    stream = iter(loader)
    import multiprocessing

    ctx = loader.multiprocessing_context
    how = ctx.get_start_method() if ctx is not None else multiprocessing.get_start_method()
    stamp(f"{output.workers} decode workers started (iter(loader), {how})")
    next(stream)
    stamp("first decoded chunk (every item fails: the paths do not exist)")


def main() -> None:
    device = sys.argv[1] if len(sys.argv) > 1 else "cuda:0"
    stamp("parent start")
    import torch
    import torch.multiprocessing as mp

    stamp("parent import torch")
    from lseg_encoder.extract.compute import JobSpec
    from lseg_encoder.extract.inputs import Item
    from lseg_encoder.extract.pipeline import Output
    from lseg_encoder.weights.choice import resolve_weights

    stamp("parent imports")
    backend = "compiled" if device != "cpu" else "torch"
    spec = JobSpec(weights=resolve_weights(None, "clip_vitl16_384"), backbone="clip_vitl16_384", backend=backend,
                   device=device, recipe_options={"size": [480, 480]}, batch=16)
    plan = [Item(f"a/{i}", f"/tmp/x/a/{i}.jpg") for i in range(16384)]
    output = Output(out="", fmt="npy", sink="none", max_pixels=0, workers=8, fail_fast=False)
    stamp(f"parent: CUDA devices {torch.cuda.device_count()}")
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=child, args=(T0, spec, output, plan, device)) for _ in range(2)]
    for p in procs:
        p.start()
        stamp("parent: a process started")
    for p in procs:
        p.join(timeout=150)
    stamp(f"parent: children exited {[p.exitcode for p in procs]}")


if __name__ == "__main__":
    main()
