"""`lseg-encoder extract` as a process: kill -9 mid-run then rerun, and the exit codes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np

from _extract_data import feature_files, make_images
from lseg_encoder.extract.manifest import read_manifest

TINY = ["--backbone", "tiny", "--size", "64", "--no-progress"]


def cli(*args, **kw):
    return subprocess.run([sys.executable, "-m", "lseg_encoder.cli", "extract", *map(str, args)],
                          capture_output=True, text=True, timeout=300, **kw)


def test_kill_9_mid_run_then_rerun_ends_complete(tmp_path):
    folder, out = tmp_path / "images", tmp_path / "out"
    ids = make_images(folder, 24, nested=False)
    # batch 1 and no decode workers: many small steps, so the kill lands between and inside writes
    cmd = [sys.executable, "-m", "lseg_encoder.cli", "extract", str(folder), "--out", str(out), "--batch", "1",
           "--workers", "0", *TINY]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    manifest = out / "manifest.jsonl"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        if manifest.exists() and manifest.read_text().count("\n") >= 4:
            break
        time.sleep(0.05)
    assert proc.poll() is None, f"run ended before the kill: {proc.stderr.read().decode()[-500:]}"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = feature_files(out)
    assert 4 <= len(partial) < 24
    assert all(np.load(p).shape == (512, 32, 32) for p in partial.values())  # whatever is there loads

    r = cli(folder, "--out", out, "--batch", "1", "--workers", "0", *TINY)
    assert r.returncode == 0, r.stderr
    assert "0 failed" in r.stderr and "already done" in r.stderr
    files = feature_files(out)
    assert sorted(files) == ids and all(np.load(p).shape == (512, 32, 32) for p in files.values())
    records = read_manifest(out)
    assert sorted(records) == ids and {r.status for r in records.values()} == {"ok"}
    assert not [p for p in out.rglob("*") if p.name.endswith(".part")]


def test_exit_codes(tmp_path, capsys):
    from lseg_encoder.cli import main  # in-process: the same code path as the console script, no torch re-import

    folder, out = tmp_path / "images", tmp_path / "out"
    make_images(folder, 2, nested=False)
    (folder / "bad.jpg").write_bytes(b"")

    def run(*args) -> tuple[int, str]:
        code = main(["extract", *map(str, args)])
        return code, capsys.readouterr().err

    code, err = run(folder, "--out", out, *TINY)
    assert code == 1, err  # one item failed, the others are done
    assert "2 ok, 1 failed" in err and "failed: bad: empty file (0 bytes)" in err
    assert "stages:" in err and "img/s" in err
    code, err = run(folder, "--out", out, *TINY)
    assert code == 1 and "0 ok, 1 failed, 2 already done" in err  # a failed item is retried, and fails again

    code, err = run(folder, "--out", out, "--dtype", "fp32", *TINY)
    last = err.strip().splitlines()[-1]
    assert code == 2 and last.startswith("error: ") and 'dtype: "fp16" there, "fp32" now' in last

    for args, message in ((["--shard", "3/2"], "bad --shard '3/2'"),
                          (["--devices", "all"], "needs CUDA"),
                          (["--size", "80"], "not supported by tiny"),
                          (["--scales", "1,2"], "--scales only apply to --recipe lseg-multiscale")):
        code, err = run(folder, "--out", tmp_path / "other", *TINY, *args)
        last = err.strip().splitlines()[-1]
        assert code == 2 and last.startswith("error: ") and message in last, err
    assert not (tmp_path / "other").exists()
