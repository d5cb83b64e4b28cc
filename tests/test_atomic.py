"""Write-time failures: one `error:` line, exit 2, nothing partial on disk, no temp file left.

Covers the atomic writer itself (directory in the way, parent that is a file, permission and
read-only errors after the temp exists, a full disk, Ctrl-C, a writer killed with SIGKILL) and the
commands that write (`features`, `segment`, `export`, `build`). A real full disk uses a 1 MB tmpfs
where this process may mount one (root in a container with CAP_SYS_ADMIN); elsewhere that test
skips with the reason and the injected-ENOSPC tests still run.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lseg_encoder.cli import main
from lseg_encoder.errors import WriteError
from lseg_encoder.store.atomic import TEMP_MARK, atomic_path, remove_stale_temps, write_bytes_atomic


def temps(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if TEMP_MARK in p.name]


def run_cli(capsys, *args) -> tuple[int, str]:
    code = main([str(a) for a in args])
    err = capsys.readouterr().err
    return code, err


def assert_one_line_error(code: int, err: str, *needles: str) -> None:
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err and "File exists" not in err
    for needle in needles:
        assert needle in lines[0], lines[0]


# the writer -------------------------------------------------------------------------------------
def test_target_is_a_directory(tmp_path):
    (tmp_path / "out.npy").mkdir()
    with pytest.raises(WriteError, match=r"out.npy: it is a directory"):
        write_bytes_atomic(tmp_path / "out.npy", b"x")
    assert not temps(tmp_path)


@pytest.mark.parametrize("depth", ["f/x.bin", "f/a/b/x.bin"])
def test_parent_is_a_file(tmp_path, depth):
    (tmp_path / "f").write_text("a file")
    with pytest.raises(WriteError, match=r"f is a file, not a folder") as info:
        write_bytes_atomic(tmp_path / depth, b"x")
    assert "File exists" not in str(info.value)
    assert (tmp_path / "f").read_text() == "a file" and not temps(tmp_path)


@pytest.mark.parametrize(("code", "message"), [
    (errno.EACCES, "permission denied"), (errno.EPERM, "permission denied"),
    (errno.EROFS, "read-only file system"),
])
def test_rename_refused_after_temp_written(tmp_path, monkeypatch, code, message):
    """Root ignores chmod, so the refusal is injected where it happens: the final rename."""
    def refuse(src, dst):
        assert Path(src).read_bytes() == b"payload"  # the temp existed and was complete
        raise OSError(code, os.strerror(code), str(dst))

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(WriteError, match=message):
        write_bytes_atomic(tmp_path / "out.bin", b"payload")
    assert list(tmp_path.iterdir()) == []


def test_disk_full_says_free_and_needed(tmp_path):
    with pytest.raises(WriteError) as info, atomic_path(tmp_path / "big.bin", expected_bytes=3_000_000_000) as tmp:
        tmp.write_bytes(b"x" * 5000)
        (tmp.parent / (tmp.name + ".data")).write_bytes(b"companion")  # like ONNX external data
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    free_mb = shutil.disk_usage(tmp_path).free / 1e6
    message = str(info.value)
    assert message.startswith(f"cannot write {tmp_path / 'big.bin'}: disk full (") and "3000 MB needed)" in message
    assert abs(float(message.split("disk full (")[1].split(" MB free")[0]) - free_mb) < 50
    assert list(tmp_path.iterdir()) == []


def test_disk_full_without_errno_from_numpy(tmp_path, monkeypatch):
    """numpy's tofile raises a bare OSError ('N requested and M written'); still one clear line."""
    def short_write(file, arr, **kw):
        Path(file).write_bytes(b"\x93NUMPY")
        raise OSError("524288 requested and 262112 written")

    monkeypatch.setattr(np, "save", short_write)
    from lseg_encoder.store.atomic import save_npy_atomic

    with pytest.raises(WriteError, match=r"cannot write .*f.npy: "):
        save_npy_atomic(tmp_path / "f.npy", np.zeros((4, 4), np.float32))
    assert list(tmp_path.iterdir()) == []


def test_interrupt_removes_temp_and_keeps_old_file(tmp_path):
    target = tmp_path / "keep.bin"
    target.write_bytes(b"old")
    with pytest.raises(KeyboardInterrupt), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise KeyboardInterrupt
    assert target.read_bytes() == b"old" and not temps(tmp_path)


def test_folder_temp_is_named_and_removed(tmp_path):
    target = tmp_path / "pkg.pt2"
    with pytest.raises(RuntimeError), atomic_path(target, folder=True) as inner:
        assert inner.name == "pkg.pt2" and TEMP_MARK in inner.parent.name
        inner.write_bytes(b"partial")
        raise RuntimeError("compile failed")
    assert list(tmp_path.iterdir()) == []
    with atomic_path(target, folder=True) as inner:
        inner.write_bytes(b"whole")
    assert [p.name for p in tmp_path.iterdir()] == ["pkg.pt2"] and target.read_bytes() == b"whole"


_SLOW_WRITER = """
import sys, time
from lseg_encoder.store.atomic import atomic_path
with atomic_path(sys.argv[1], suffix=".npy") as tmp:
    with open(tmp, "wb") as f:
        f.write(b"\\0" * (8 << 20))
        f.flush()
        print(tmp, flush=True)
        time.sleep(120)
"""


def start_writer(target: Path) -> tuple[subprocess.Popen, Path]:
    proc = subprocess.Popen([sys.executable, "-c", _SLOW_WRITER, str(target)], stdout=subprocess.PIPE, text=True)
    tmp = Path(proc.stdout.readline().strip())
    assert tmp.is_file() and tmp.stat().st_size == 8 << 20 and TEMP_MARK in tmp.name, tmp
    return proc, tmp


def test_stale_temp_after_kill_9_is_cleaned_by_the_next_write(tmp_path, capsys, tiny_checkpoint):
    target = tmp_path / "f.npy"
    proc, tmp = start_writer(target)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert tmp.exists() and not target.exists()  # what kill -9 leaves
    code, err = run_cli(capsys, "features", "--weights", tiny_checkpoint, "--size", "64", "--output", target)
    assert code == 0, err
    assert np.load(target).shape == (512, 32, 32)
    assert not temps(tmp_path), temps(tmp_path)


def test_stale_temps_of_a_nested_write_are_cleaned(tmp_path):
    """A cache build writes through two atomic paths (the cache's temp, then the exporter's temp of
    that temp, with an external-data companion); a kill leaves all three, the next write takes them."""
    outer = ".m.onnx.lseg-tmp-4194999-ab12.tmp.onnx"  # pid above any pid_max: its writer is gone
    names = [outer, f".{outer}.lseg-tmp-4194999-cd34.onnx.tmp", f".{outer}.lseg-tmp-4194999-cd34.onnx.tmp.data",
             ".other.onnx.lseg-tmp-4194999-ef56.onnx.tmp"]  # another target's temp: not this write's business
    for name in names:
        (tmp_path / name).write_bytes(b"left behind")
    write_bytes_atomic(tmp_path / "m.onnx", b"graph")
    assert sorted(p.name for p in tmp_path.iterdir()) == [names[3], "m.onnx"]


def test_live_writers_temp_is_left_alone(tmp_path):
    target = tmp_path / "f.npy"
    proc, tmp = start_writer(target)
    try:
        assert remove_stale_temps(target) == []
        write_bytes_atomic(target, b"mine")
        assert tmp.exists() and target.read_bytes() == b"mine"
    finally:
        proc.kill()
        proc.wait(timeout=30)
    assert remove_stale_temps(target) == [tmp] and not tmp.exists()


# the commands -----------------------------------------------------------------------------------
@pytest.fixture()
def blockers(tmp_path):
    """An existing directory named like an output, and a file where a folder should be."""
    for name in ("out.npy", "out.png", "out.onnx", "out.trt"):
        (tmp_path / name).mkdir()
    (tmp_path / "file").write_text("x")
    return tmp_path


@pytest.mark.parametrize(("output", "message"), [
    ("out.npy", "it is a directory"), ("file/x.npy", "is a file, not a folder")])
def test_features_output_errors(blockers, capsys, tiny_checkpoint, output, message):
    code, err = run_cli(capsys, "features", "--weights", tiny_checkpoint, "--size", "64",
                        "--output", blockers / output)
    assert_one_line_error(code, err, message)
    assert not temps(blockers)


@pytest.mark.parametrize(("output", "message"), [
    ("out.png", "it is a directory"), ("file/x.png", "is a file, not a folder")])
def test_segment_output_errors(blockers, capsys, tiny_checkpoint, output, message):
    code, err = run_cli(capsys, "segment", "--weights", tiny_checkpoint, "--size", "64", "--labels", "a, b",
                        "--output", blockers / output)
    assert_one_line_error(code, err, message)
    assert not temps(blockers) and not (blockers / "x.json").exists()


@pytest.mark.parametrize(("output", "message"), [
    ("out.onnx", "it is a directory"), ("file/x.onnx", "is a file, not a folder")])
def test_export_output_errors(blockers, capsys, tiny_checkpoint, output, message):
    code, err = run_cli(capsys, "export", "--weights", tiny_checkpoint, "--output", blockers / output)
    assert_one_line_error(code, err, message)


@pytest.mark.parametrize(("command", "refused"), [("features", ".npy"), ("segment", ".png"), ("segment", ".json")])
def test_permission_error_after_temp_created(tmp_path, capsys, monkeypatch, tiny_checkpoint, command, refused):
    """The rename onto `refused` fails; with segment's JSON, the PNG written just before goes too."""
    renamed, real_replace = [], os.replace

    def refuse(src, dst):
        renamed.append(Path(src))
        assert Path(src).exists()
        if str(dst).endswith(refused):
            raise PermissionError(errno.EACCES, "Permission denied", str(dst))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", refuse)
    out = tmp_path / ("o.npy" if command == "features" else "o.png")
    extra = ["--labels", "a, b"] if command == "segment" else []
    code, err = run_cli(capsys, command, "--weights", tiny_checkpoint, "--size", "64", *extra, "--output", out)
    assert_one_line_error(code, err, f"cannot write {out.with_suffix(refused)}: permission denied")
    assert renamed and list(tmp_path.iterdir()) == []


def test_features_disk_full_injected(tmp_path, capsys, monkeypatch, tiny_checkpoint):
    def fill_then_fail(file, arr, **kw):
        Path(file).write_bytes(b"\0" * 4096)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(file))

    monkeypatch.setattr(np, "save", fill_then_fail)
    code, err = run_cli(capsys, "features", "--weights", tiny_checkpoint, "--size", "64",
                        "--output", tmp_path / "f.npy")
    assert_one_line_error(code, err, "disk full (", "MB free, 2.1 MB needed)")  # 512x32x32 float32 + header
    assert list(tmp_path.iterdir()) == []


# a real full disk -------------------------------------------------------------------------------
@pytest.fixture()
def mount_tmpfs(tmp_path):
    """mount_tmpfs(size) -> a fresh tmpfs of that size, unmounted after the test."""
    mounted = []

    def mount(size: str) -> Path:
        mnt = tmp_path / f"mnt{len(mounted)}"
        mnt.mkdir()
        if not shutil.which("mount"):
            pytest.skip("no `mount` command: the disk-full case runs with an injected ENOSPC only")
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)],
                           capture_output=True, text=True)
        if r.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip() or r.returncode}); "
                        "the disk-full case runs with an injected ENOSPC only")
        mounted.append(mnt)
        return mnt

    yield mount
    for mnt in mounted:  # a file still open in a failed write keeps it busy: detach it lazily then
        if subprocess.run(["umount", str(mnt)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mnt)], check=False)


@pytest.fixture()
def tiny_disk(mount_tmpfs):
    """A 1 MB tmpfs."""
    return mount_tmpfs("1m")


def test_real_disk_full_features(tiny_disk, capsys, tiny_checkpoint):
    out = tiny_disk / "f.npy"
    code, err = run_cli(capsys, "features", "--weights", tiny_checkpoint, "--size", "64", "--output", out)
    assert_one_line_error(code, err, f"cannot write {out}: disk full (", "MB free, 2.1 MB needed)")
    assert list(tiny_disk.iterdir()) == []


def test_real_disk_full_export(tiny_disk, capsys, tiny_checkpoint):
    out = tiny_disk / "m.onnx"  # the tiny graph is 2.7 MB
    code, err = run_cli(capsys, "export", "--weights", tiny_checkpoint, "--static", "1x64x64", "--no-check",
                        "--output", out)
    last = err.strip().splitlines()[-1]
    assert code == 2 and "Traceback" not in err
    assert last.startswith(f"error: cannot write {out}: disk full (1.0 MB free, ") and " MB needed)" in last
    assert list(tiny_disk.iterdir()) == []


def test_real_disk_full_torch_save(tiny_disk):
    """torch.save's zip writer reports a full disk as a RuntimeError without errno; still disk full."""
    from lseg_encoder.weights.synthetic import synthetic_checkpoint

    with pytest.raises(WriteError, match=r"s.ckpt: disk full \(1.0 MB free, 1\d\d MB needed\)"):
        synthetic_checkpoint(tiny_disk / "s.ckpt", "tiny")
    assert list(tiny_disk.iterdir()) == []


def test_real_disk_full_segment_leaves_neither_png_nor_json(tiny_disk, capsys, tiny_checkpoint):
    (tiny_disk / "filler").write_bytes(b"\0" * ((1 << 20) - 4 * 8192))  # a few pages left: the PNG cannot fit
    code, err = run_cli(capsys, "segment", "--weights", tiny_checkpoint, "--size", "64", "--labels", "a, b",
                        "--output", tiny_disk / "s.png")
    assert_one_line_error(code, err, "disk full (")
    assert sorted(p.name for p in tiny_disk.iterdir()) == ["filler"]


def test_read_only_folder_is_refused_before_work(tiny_disk, capsys, tiny_checkpoint):
    r = subprocess.run(["mount", "-o", "remount,ro", str(tiny_disk)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot remount the tmpfs read-only: {r.stderr.strip()}")
    code, err = run_cli(capsys, "features", "--weights", tiny_checkpoint, "--size", "64",
                        "--output", tiny_disk / "f.npy")
    assert_one_line_error(code, err, "read-only file system")


# build ------------------------------------------------------------------------------------------
@pytest.fixture()
def onnx_copy(tmp_path, tiny_encoder):
    from lseg_encoder.engine import backend_available
    from lseg_encoder.loaders import onnx_file

    ok, reason = backend_available("tensorrt_rtx")
    if not ok:
        pytest.skip(f"needs tensorrt_rtx to build engines: {reason}")
    folder = tmp_path / "models"
    folder.mkdir()
    return Path(shutil.copy(onnx_file(tiny_encoder, precision="fp32"), folder / "enc.onnx"))


def build_args(onnx: Path, cache: Path, *extra) -> list:
    return ["build", "--onnx", onnx, "--trt-backend", "tensorrt_rtx", "--static", "1x64x64",
            "--engine-cache", cache, *extra]


def test_build_without_output_keeps_one_engine_copy(onnx_copy, tmp_path, capsys):
    cache = tmp_path / "engines"
    assert main([str(a) for a in build_args(onnx_copy, cache)]) == 0
    out = capsys.readouterr()
    engines = sorted(p for p in tmp_path.rglob("*.trt"))
    assert len(engines) == 1 and engines[0].parent == cache, engines
    assert out.out.strip() == str(engines[0]) and "in the engine cache" in out.err
    assert sorted(p.name for p in onnx_copy.parent.iterdir()) == ["enc.onnx"]


def test_build_output_under_a_file_fails_before_building(onnx_copy, tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    code, err = run_cli(capsys, *build_args(onnx_copy, tmp_path / "engines", "--output", tmp_path / "file/e.trt"))
    assert code == 2 and "Traceback" not in err
    assert err.strip().splitlines()[-1] == f"error: cannot write {tmp_path / 'file/e.trt'}: {tmp_path / 'file'} " \
        "is a file, not a folder"
    assert not list((tmp_path / "engines").glob("*.trt"))  # refused before the build


def test_build_copy_on_a_full_disk(onnx_copy, tmp_path, tiny_disk, capsys):
    code, err = run_cli(capsys, *build_args(onnx_copy, tmp_path / "engines", "--output", tiny_disk / "e.trt"))
    last = err.strip().splitlines()[-1]
    assert code == 2 and "Traceback" not in err
    assert last.startswith(f"error: cannot write {tiny_disk / 'e.trt'}: disk full (") and "MB needed)" in last
    assert list(tiny_disk.iterdir()) == []
    assert len(list((tmp_path / "engines").glob("*.trt"))) == 1  # the cached engine itself is intact


def test_build_copy_whose_sidecar_does_not_fit_leaves_no_engine(onnx_copy, tmp_path, mount_tmpfs, capsys):
    cache = tmp_path / "engines"
    assert main([str(a) for a in build_args(onnx_copy, cache)]) == 0
    engine_bytes = next(cache.glob("*.trt")).stat().st_size
    disk = mount_tmpfs("16m")
    page = os.statvfs(disk).f_frsize
    room = -(-engine_bytes // page) * page  # the engine fits to the page, its sidecar does not
    (disk / "filler").write_bytes(b"\0" * (shutil.disk_usage(disk).free - room))
    capsys.readouterr()
    code, err = run_cli(capsys, *build_args(onnx_copy, cache, "--output", disk / "e.trt"))
    assert code == 2 and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith(f"error: cannot write {disk / 'e.trt.json'}: disk full (")
    assert sorted(p.name for p in disk.iterdir()) == ["filler"]


# ONNX external data (the > 2 GB path of ViT-L/16 fp32, forced here on the tiny model) -----------
@pytest.fixture()
def external_data(monkeypatch):
    import lseg_encoder.export.onnx as exporter

    monkeypatch.setattr(exporter, "TWO_GB", (64 << 20) + 1)  # every model is "too big" for one protobuf
    return exporter


def test_external_data_export_lands_as_graph_plus_data(external_data, tiny_encoder, tmp_path):
    out = tmp_path / "m.onnx"
    from lseg_encoder.loaders import export_validated  # the ONNX Runtime check reads the temp's data file

    export_validated(tiny_encoder, out, dynamic=False, size=(64, 64))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "m.onnx.data"]
    import onnx

    locations = {e.value for t in onnx.load(str(out), load_external_data=False).graph.initializer
                 for e in t.external_data if e.key == "location"}
    assert locations == {"m.onnx.data"}


def test_external_data_temp_is_removed_on_failure_and_after_kill(external_data, tiny_encoder, tmp_path,
                                                                 monkeypatch):
    from lseg_encoder.errors import ExportError

    seen = []

    def fail_check(path):
        seen.extend(p.name for p in tmp_path.iterdir())
        raise ExportError("exported graph fails onnx.checker: injected")

    monkeypatch.setattr(external_data, "_full_check", fail_check)
    out = tmp_path / "m.onnx"
    with pytest.raises(ExportError, match="injected"):
        external_data.export_onnx(tiny_encoder, out, dynamic=False, size=(64, 64))
    data = [n for n in seen if n.endswith(".data")]
    assert len(data) == 1 and data[0].startswith(".m.onnx" + TEMP_MARK), seen  # a named companion
    assert list(tmp_path.iterdir()) == []
    # what a kill -9 at that moment leaves (temp graph + its data) goes with the next write
    for name in seen:
        (tmp_path / name).write_bytes(b"left by a dead writer")
        os.rename(tmp_path / name, tmp_path / name.replace(f"{TEMP_MARK}{os.getpid()}-", f"{TEMP_MARK}4194999-"))
    write_bytes_atomic(out, b"next write")
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]


def test_cli_turns_a_stray_os_error_into_one_line(monkeypatch, capsys):
    """An OSError no writer converted (the environment, not a bug) still prints one line, exit 2."""
    import lseg_encoder.commands.cache as cache_command

    def full(args):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/some/where/file.bin")

    monkeypatch.setattr(cache_command, "run", full)
    code, err = run_cli(capsys, "cache")
    assert_one_line_error(code, err, "/some/where/file.bin: disk full (")
