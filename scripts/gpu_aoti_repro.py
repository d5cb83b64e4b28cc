"""Reduce the Python AOTIRunner crash on CUDA packages (exit 139, torch 2.11, issue 13).

Packages the tiny encoder for CUDA (fp16 by default; precisions as arguments; 64x96), then loads each package in fresh
subprocesses, one way each, and records exit status and the last stderr lines (faulthandler on):
  load-only  torch._inductor.aoti_load_package(path, device_index=0), nothing else;
  load-only-bt  the same under gdb, or cuda-gdb where that is the only debugger (the GPU image);
  cuda-first CUDA initialised by a tensor before the load, then one forward;
  raw        torch._inductor.aoti_load_package(path, device_index=0), then one forward;
  raw-noidx  the same with the default device_index (-1);
  runner     lseg_encoder's AOTIRunner(path).activate() and infer().
Writes $OUT/aoti_repro.json.   PYTHONPATH=src python3 scripts/gpu_aoti_repro.py
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

LOADER_TIMEOUT_S = 60
LOAD_ONLY = "import torch; m = torch._inductor.aoti_load_package({p!r}, device_index=0); print('loaded')"
LOADERS = {
    "load-only": LOAD_ONLY,
    "load-only-bt": LOAD_ONLY,  # the same under gdb / cuda-gdb, for the native backtrace
    "cuda-first": "import torch; torch.zeros(1, device='cuda'); m = torch._inductor.aoti_load_package({p!r}, "
                  "device_index=0); print(m(torch.randn(1, 3, 64, 96, device='cuda')).shape)",
    "raw": "import torch; m = torch._inductor.aoti_load_package({p!r}, device_index=0); "
           "print(m(torch.randn(1, 3, 64, 96, device='cuda')).shape)",
    "raw-noidx": "import torch; m = torch._inductor.aoti_load_package({p!r}); "
                 "print(m(torch.randn(1, 3, 64, 96, device='cuda')).shape)",
    "runner": "import torch; from lseg_encoder.runners.aoti_runner import AOTIRunner; "
              "r = AOTIRunner({p!r}).activate(); print(r.infer(torch.randn(1, 3, 64, 96)).shape)",
}


def main() -> None:
    import torch

    from lseg_encoder.loaders import aoti_package
    from lseg_encoder.model import build_encoder

    out = Path(os.environ.get("OUT", "out"))
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    enc = build_encoder("tiny").eval()
    result = {"torch": torch.__version__, "gpu": torch.cuda.get_device_name(0), "cases": []}
    for precision in sys.argv[1:] or ["fp16"]:
        t0 = time.perf_counter()
        try:
            path = aoti_package(enc, size=(64, 96), precision=precision, device="cuda")
        except Exception as exc:  # the packaging itself may be the defect
            result["cases"].append({"precision": precision, "package_error": f"{type(exc).__name__}: {exc}"[:1500]})
            continue
        package_s = time.perf_counter() - t0
        for name, code in LOADERS.items():
            cmd = [sys.executable, "-X", "faulthandler", "-c", code.format(p=str(path))]
            debugger = shutil.which("gdb") or shutil.which("cuda-gdb")  # the GPU image has only cuda-gdb
            if name == "load-only-bt" and debugger:  # a native backtrace of the crash
                cmd = [debugger, "-q", "-batch", "-ex", "set pagination off", "-ex", "run", "-ex", "bt 30",
                       "--args", *cmd]
            try:
                proc = subprocess.run(cmd, capture_output=True, text=True, timeout=LOADER_TIMEOUT_S)
                rc, stdout, stderr = proc.returncode, proc.stdout, proc.stderr
            except subprocess.TimeoutExpired as exc:
                rc, stdout, stderr = "timeout", _text(exc.stdout), _text(exc.stderr)
            case = {"precision": precision, "loader": name, "package_s": round(package_s, 1), "rc": rc,
                    "stdout": stdout.strip()[-3000:], "stderr_tail": stderr.strip()[-3000:]}
            result["cases"].append(case)
            print(f"== {precision} {name}: rc {rc}", flush=True)
            tail = (stdout if name == "load-only-bt" else stderr).strip().splitlines()
            print("\n".join("   " + line for line in tail[-14:] if "warn" not in line.lower()), flush=True)
            (out / "aoti_repro.json").write_text(json.dumps(result, indent=1))
    (out / "aoti_repro.json").write_text(json.dumps(result, indent=1))


def _text(data) -> str:
    return data.decode(errors="replace") if isinstance(data, bytes) else (data or "")


if __name__ == "__main__":
    main()
