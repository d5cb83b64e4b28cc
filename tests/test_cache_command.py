"""`lseg-encoder cache`: lists every kind with sizes and a total; `--clear [KIND]` frees exactly that.

Each test points LSEG_CACHE_DIR at its own folder, so the shared artefact cache is never touched.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from lseg_encoder.cli import main


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    monkeypatch.setenv("LSEG_CACHE_DIR", str(root))
    files = {
        "synthetic/synthetic_tiny_offset0.ckpt": 3_000_000, "synthetic/synthetic_tiny_offset0.ckpt.lock": 0,
        "onnx/abc.onnx": 2_000_000, "onnx/abc.onnx.key.json": 300, "onnx/abc.onnx.lock": 0,
        "onnx/big.onnx": 1_000, "onnx/big.onnx.data": 5_000_000,
        "engines/e.1234.trt": 700_000, "engines/e.1234.trt.json": 5_000,
        "aoti/tiny_64x96.pt2": 400_000, "vocab/k.npy": 60_000, "vocab/k.words.json": 900,
    }
    for rel, size in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"\0" * size)
    return root


def cli(capsys, *args) -> tuple[int, str, str]:
    code = main(["cache", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_lists_kinds_items_and_total(cache, capsys):
    code, out, _ = cli(capsys)
    assert code == 0
    assert out.splitlines()[0] == f"cache: {cache} ($LSEG_CACHE_DIR)"
    assert "onnx          7.0 MB  ONNX files (onnx/), 2 item(s)" in out  # big.onnx carries its .data
    assert "5.0 MB    big.onnx\n" in out and "2.0 MB    abc.onnx\n" in out
    assert "705.0 kB    e.1234.trt" in out and ".lock" not in out and "abc.onnx.key.json" not in out
    assert out.splitlines()[-1].startswith("total        11.2 MB")


def test_clear_one_kind_then_all(cache, capsys):
    code, out, _ = cli(capsys, "--clear", "onnx")
    assert code == 0 and out.strip() == f"freed 7.0 MB: removed 2 artefact(s) from {cache}"
    assert sorted(p.name for p in (cache / "onnx").iterdir()) == ["abc.onnx.lock"]
    assert (cache / "engines/e.1234.trt").exists()
    code, out, _ = cli(capsys, "--clear")
    assert code == 0 and out.startswith("freed 4.2 MB: removed 5 artefact(s)")
    leftovers = [p for p in cache.rglob("*") if p.is_file()]
    assert sorted(p.name for p in leftovers) == ["abc.onnx.lock", "synthetic_tiny_offset0.ckpt.lock"]


def test_clear_keeps_a_running_writers_temp_and_removes_a_dead_ones(cache, capsys):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        live = cache / "onnx" / f".x.onnx.lseg-tmp-{sleeper.pid}-ab12.onnx.tmp"
        dead = cache / "onnx" / ".y.onnx.lseg-tmp-4194999-cd34.onnx.tmp"  # above the default pid_max
        for path in (live, dead):
            path.write_bytes(b"\0" * 1000)
        _, out, _ = cli(capsys)
        assert f"{live.name}  [being written]" in out and f"{dead.name}  [stale temp]" in out
        cli(capsys, "--clear", "onnx")
        assert live.exists() and not dead.exists()
    finally:
        sleeper.kill()
        sleeper.wait()


def test_refuses_folders_outside_the_root(cache, tmp_path, capsys):
    """A kind folder that is a symlink out of the root: listed, never cleared."""
    outside = tmp_path / "elsewhere"
    os.rename(cache / "engines", outside)
    (cache / "engines").symlink_to(outside, target_is_directory=True)
    code, out, _ = cli(capsys)
    assert code == 0 and f"TensorRT engines ({outside}, outside the root), 1 item(s)" in out
    code, _, err = cli(capsys, "--clear", "engines")
    assert code == 2 and err.strip().splitlines() == [
        f"error: not clearing {outside}: it is outside the cache root {cache} (remove it yourself if you mean it)"]
    code, out, _ = cli(capsys, "--clear")
    assert code == 0 and f"not cleared: {outside} (TensorRT engines, 705.0 kB) is outside the cache root" in out
    assert (outside / "e.1234.trt").exists() and (outside / "e.1234.trt.json").exists()
    assert not (cache / "onnx" / "abc.onnx").exists()  # the rest was cleared


def test_empty_or_missing_cache(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LSEG_CACHE_DIR", str(tmp_path / "none"))
    code, out, _ = cli(capsys)
    assert code == 0 and out.splitlines()[-1].startswith("total            0 B")
    assert not (tmp_path / "none").exists()  # listing creates nothing
