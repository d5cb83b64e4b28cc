"""`extract` API on the tiny backbone: outputs, resume rules, failures, shards, PCA, video, workers.

Runs in-process with the session's tiny encoder (no model reload per test); the subprocess tests
(kill -9, exit codes) are in test_extract_cli.py, Ray in test_extract_ray.py.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from _extract_data import SIZE, feature_files, make_clip, make_images
from lseg_encoder.errors import InputSizeError, LsegError
from lseg_encoder.extract import PCABasis, extract, load_features, parse_shard
from lseg_encoder.extract.inputs import InputError
from lseg_encoder.extract.manifest import ConfigMismatch, read_manifest


@pytest.fixture()
def run(tiny_checkpoint, tiny_encoder):
    def _run(inputs, out, **kw):
        kw.setdefault("size", SIZE)
        kw.setdefault("workers", 0)
        kw.setdefault("batch", 2)
        kw.setdefault("device", "cpu")  # what these tests assert (exact fp32 features) is the CPU's, on any machine
        return extract(inputs, out, weights=str(tiny_checkpoint), encoder=tiny_encoder, progress=False, **kw)
    return _run


@pytest.fixture()
def images(tmp_path):
    folder = tmp_path / "images"
    return folder, make_images(folder, 6)


def test_native_fp32_matches_features_of_each_image(run, images, tmp_path, tiny_encoder):
    from lseg_encoder.preprocess import preprocess

    folder, ids = images
    summary = run([folder], tmp_path / "out", dtype="fp32", batch=1)
    assert (summary.ok, summary.failed, summary.total) == (6, 0, 6) and summary.complete
    items, seconds = summary.steady  # 6 batches of 1; writes finish on threads, so the first may land after warm()
    assert 1 <= items <= 6 and 0 < seconds < summary.seconds and summary.steady_images_per_second > 0
    files = feature_files(tmp_path / "out")
    assert sorted(files) == ids
    for item_id, path in files.items():
        source = next(folder.rglob(item_id.split("/")[-1] + ".*"))
        with torch.inference_mode():
            want = tiny_encoder(preprocess(source, SIZE, "tiny"))[0].numpy()
        np.testing.assert_array_equal(np.load(path), want)
    run_json = json.loads((tmp_path / "out" / "run.json").read_text())
    assert run_json["config"]["recipe"] == {"recipe": "native", "backbone": "tiny", "size": list(SIZE)}
    assert run_json["config"]["weights_fingerprint"] and run_json["machine"]["cpu"]
    assert run_json["package_version"] and run_json["config"]["precision"] == "fp32"


def test_fp16_default_manifest_lines_and_safetensors(run, images, tmp_path):
    folder, ids = images
    out = tmp_path / "out"
    run([folder], out, fmt="safetensors")
    records = read_manifest(out)
    assert sorted(records) == ids
    for item_id, rec in records.items():
        feats = load_features(out / f"{item_id}.safetensors")
        assert feats.dtype == np.float16 and list(feats.shape) == rec.shape == [512, 32, 32]
        assert rec.status == "ok" and rec.dtype == "float16"
        assert rec.bytes == (out / f"{item_id}.safetensors").stat().st_size
        assert rec.seconds > 0 and rec.source.startswith(str(folder))


def test_rerun_skips_done_and_redoes_missing_or_truncated(run, images, tmp_path):
    folder, ids = images
    out = tmp_path / "out"
    first = run([folder], out)
    assert first.ok == 6
    second = run([folder], out)
    assert (second.ok, second.skipped) == (0, 6)
    (out / f"{ids[0]}.npy").unlink()
    truncated = out / f"{ids[1]}.npy"
    truncated.write_bytes(truncated.read_bytes()[:100])
    third = run([folder], out)
    assert (third.ok, third.skipped) == (2, 4)
    assert all(load_features(p).shape == (512, 32, 32) for p in feature_files(out).values())


def test_changed_configuration_is_refused_naming_it_unless_overwrite(run, images, tmp_path):
    folder, _ = images
    out = tmp_path / "out"
    run([folder], out)
    before = {p: p.stat().st_mtime_ns for p in feature_files(out).values()}
    with pytest.raises(ConfigMismatch, match=r'dtype: "fp16" there, "fp32" now'):
        run([folder], out, dtype="fp32")
    with pytest.raises(ConfigMismatch, match=r"recipe: .*\[64, 64\].*\[64, 96\]"):
        run([folder], out, size=(64, 96))
    assert {p: p.stat().st_mtime_ns for p in feature_files(out).values()} == before
    summary = run([folder], out, dtype="fp32", overwrite=True)
    assert summary.ok == 6 and all(load_features(p).dtype == np.float32 for p in feature_files(out).values())


def test_failed_items_recorded_and_run_continues(run, images, tmp_path):
    from PIL import Image

    folder, ids = images
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (folder / "empty.png").write_bytes(b"")
    Image.new("RGB", (300, 200)).save(folder / "huge.png")
    foreign = tmp_path / "out" / "notes.txt"
    foreign.parent.mkdir()
    foreign.write_text("mine")
    summary = run([folder], tmp_path / "out", max_pixels=50_000)
    assert (summary.ok, summary.failed) == (6, 3) and not summary.complete
    reasons = dict(summary.failures)
    assert "cannot decode image" in reasons["broken"]
    assert reasons["empty"] == "empty file (0 bytes)"
    assert "300x200 = 60000 pixels, over --max-pixels 50000" in reasons["huge"]
    records = read_manifest(tmp_path / "out")
    assert {k for k, r in records.items() if r.status == "failed"} == {"broken", "empty", "huge"}
    assert sorted(feature_files(tmp_path / "out")) == ids and foreign.read_text() == "mine"
    with pytest.raises(LsegError, match=r"broken: cannot decode image .*\(--fail-fast\)"):
        run([folder], tmp_path / "out2", fail_fast=True)


def test_multi_worker_decode_equals_single_worker(run, tmp_path):
    folder = tmp_path / "images"
    make_images(folder, 8)
    run([folder], tmp_path / "w0", workers=0, dtype="fp32")
    run([folder], tmp_path / "w2", workers=2, dtype="fp32")
    a, b = feature_files(tmp_path / "w0"), feature_files(tmp_path / "w2")
    assert sorted(a) == sorted(b) and len(a) == 8
    for item_id in a:
        np.testing.assert_array_equal(np.load(a[item_id]), np.load(b[item_id]))


def test_shard_halves_cover_exactly_the_set(run, images, tmp_path):
    folder, ids = images
    parts = [set(feature_files(tmp_path / f"s{i}")) for i in range(2) if run([folder], tmp_path / f"s{i}",
                                                                             shard=f"{i}/2").ok >= 0]
    assert parts[0].isdisjoint(parts[1]) and parts[0] | parts[1] == set(ids)
    assert parts[0] and parts[1]  # 6 ids: both halves non-empty for this hash
    for bad in ("3/2", "2/2", "-1/2", "1/0", "a/b", "1"):
        with pytest.raises(InputError, match="bad --shard"):
            parse_shard(bad)


def test_pca_round_trip(run, images, tmp_path):
    folder, ids = images
    run([folder], tmp_path / "full", dtype="fp32")
    summary = run([folder], tmp_path / "pca", dtype="fp32", pca=8)
    assert summary.ok == 6
    basis = PCABasis.load(tmp_path / "pca")
    assert basis.components.shape == (8, 512)
    np.testing.assert_allclose(basis.components @ basis.components.T, np.eye(8), atol=1e-5)
    assert np.all(np.diff(basis.explained) <= 1e-7) and 0 < basis.explained.sum() <= 1 + 1e-6
    full, reduced = feature_files(tmp_path / "full"), feature_files(tmp_path / "pca")
    for item_id in ids:
        stored = np.load(reduced[item_id])
        assert stored.shape == (8, 32, 32)
        np.testing.assert_allclose(stored, basis.project(np.load(full[item_id])), atol=1e-4)
        back = basis.reconstruct(stored)
        assert back.shape == (512, 32, 32)
        np.testing.assert_allclose(basis.project(back), stored, atol=1e-4)  # reconstruct is the inverse on the basis
    # a rerun keeps the same basis; a full-rank basis reconstructs the features themselves
    run([folder], tmp_path / "pca", dtype="fp32", pca=8)
    np.testing.assert_array_equal(PCABasis.load(tmp_path / "pca").components, basis.components)
    from lseg_encoder.extract.pca import fit_pca, sample_pixels

    x = np.load(full[ids[0]])
    full_rank = fit_pca(sample_pixels(x, seed=0, count=1024), 512)
    np.testing.assert_allclose(full_rank.reconstruct(full_rank.project(x)), x, atol=1e-4)


def test_feature_size_resizes_stored_features(run, images, tmp_path):
    folder, _ = images
    run([folder], tmp_path / "out", feature_size=(16, 24))
    assert {load_features(p).shape for p in feature_files(tmp_path / "out").values()} == {(512, 16, 24)}


def test_video_frames_by_every_and_by_fps(run, tmp_path):
    pytest.importorskip("av", reason="PyAV (extra 'video') not installed")
    clips = tmp_path / "clips"
    clips.mkdir()
    make_clip(clips / "walk.mp4", frames=12, fps=6)
    import av

    with av.open(str(clips / "nothing.avi"), "w") as c:  # a valid container with a stream and no frame
        s = c.add_stream("mpeg4", rate=6)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        c.start_encoding()
    (clips / "garbage.mp4").write_bytes(b"not a video" * 20)
    every = run([clips], tmp_path / "every", every=5)
    assert sorted(feature_files(tmp_path / "every")) == ["walk/000000", "walk/000005", "walk/000010"]
    assert dict(every.failures) == {"nothing": "video has no frames",
                                    "garbage": dict(every.failures)["garbage"]}
    assert "cannot read video" in dict(every.failures)["garbage"]
    run([clips / "walk.mp4"], tmp_path / "fps", fps=2)  # 6 fps clip at 2 fps: every third frame
    assert sorted(feature_files(tmp_path / "fps")) == [f"walk/{i:06d}" for i in (0, 3, 6, 9)]
    # the stored frame is the decoded frame, resized: compare with decoding it ourselves
    with av.open(str(clips / "walk.mp4")) as c:
        frame6 = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)][6]
    from PIL import Image

    Image.fromarray(frame6).save(tmp_path / "f6.png")
    run([clips / "walk.mp4"], tmp_path / "f32", fps=2, dtype="fp32", batch=1)
    assert run([tmp_path / "f6.png"], tmp_path / "img", dtype="fp32", batch=1).ok == 1
    np.testing.assert_array_equal(np.load(tmp_path / "f32" / "walk" / "000006.npy"),
                                  np.load(tmp_path / "img" / "f6.npy"))


def test_bad_invocations_fail_before_the_model(run, images, tmp_path, monkeypatch):
    folder, _ = images
    import lseg_encoder.weights.checkpoint as checkpoint

    monkeypatch.setattr(checkpoint, "load_encoder", lambda *a, **k: pytest.fail("model loaded"))
    with pytest.raises(InputSizeError, match="not supported by tiny"):
        extract([folder], tmp_path / "o", size=(80, 80), backbone="tiny", progress=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # the refusal of a machine without a GPU
    with pytest.raises(LsegError, match="--devices all needs CUDA"):
        extract([folder], tmp_path / "o", devices="all", backbone="tiny", progress=False)
    monkeypatch.undo()
    monkeypatch.setattr(checkpoint, "load_encoder", lambda *a, **k: pytest.fail("model loaded"))
    with pytest.raises(InputError, match="does not exist"):
        extract([tmp_path / "nope"], tmp_path / "o", size=SIZE, backbone="tiny", progress=False)
    with pytest.raises(InputError, match="matches no files"):
        extract([str(tmp_path / "*.xyz")], tmp_path / "o", size=SIZE, backbone="tiny", progress=False)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(LsegError, match="cannot write to --out"):
        run([folder], blocker / "out")


def test_full_disk_stops_clearly_and_rerun_resumes(run, images, tmp_path, monkeypatch):
    import errno

    import lseg_encoder.extract.sinks as sinks

    folder, ids = images
    real_save, calls = np.save, []

    def save_until_full(f, array):
        calls.append(1)
        if len(calls) > 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_save(f, array)

    monkeypatch.setattr(sinks.np, "save", save_until_full)
    with pytest.raises(sinks.DiskFullError, match="disk full .*rerun the same command to resume"):
        run([folder], tmp_path / "out")
    monkeypatch.setattr(sinks.np, "save", real_save)
    done = feature_files(tmp_path / "out")
    assert 1 <= len(done) <= 3 and all(load_features(p).shape == (512, 32, 32) for p in done.values())
    assert not list((tmp_path / "out").rglob("*.part"))
    summary = run([folder], tmp_path / "out")
    assert summary.ok + summary.skipped == 6 and sorted(feature_files(tmp_path / "out")) == ids


@pytest.mark.slow  # two spawned processes each import torch and load the model: ~20 s on 2 busy cores
def test_two_cpu_processes_share_the_queue_and_match_one(run, images, tmp_path):
    folder, ids = images
    run([folder], tmp_path / "one", dtype="fp32")
    summary = run([folder], tmp_path / "two", dtype="fp32", devices="cpu,cpu")
    assert summary.ok == 6 and summary.device == "cpu,cpu"
    # each process that got a chunk warmed up once (one may claim all 3 chunks first); warm-ups overlap, not summed
    assert summary.stages.warmup_items in (2, 4) and summary.stages.warmup < summary.seconds
    assert [m.device for m in summary.warm_marks] in (["cpu"], ["cpu", "cpu"])  # the parent heard each process
    assert all(0 < m.load and 0 < m.first_batch and m.load + m.first_batch < m.at < summary.seconds
               for m in summary.warm_marks)
    a, b = feature_files(tmp_path / "one"), feature_files(tmp_path / "two")
    assert sorted(b) == ids
    for item_id in ids:
        np.testing.assert_allclose(np.load(a[item_id]), np.load(b[item_id]), atol=1e-5)


def test_published_recipe_per_image_equals_the_recipe_itself(run, tmp_path, tiny_encoder):
    recipes = pytest.importorskip("lseg_encoder.recipes", reason="lseg_encoder.recipes is not part of this build")
    from PIL import Image

    folder = tmp_path / "frames"
    folder.mkdir()
    rng = np.random.default_rng(3)
    shapes = {"a": (48, 64), "b": (64, 48), "c": (88, 80)}  # c: crop 176 gives tiny features of another size
    for name, (h, w) in shapes.items():
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(folder / f"{name}.png")
    summary = run([folder], tmp_path / "out", recipe="openscene", dtype="fp32")
    assert (summary.ok, summary.failed) == (2, 1) and "openscene" in dict(summary.failures)["c"]
    recipe = recipes.get_recipe("openscene", backbone="tiny")
    for name in ("a", "b"):
        image = np.array(Image.open(folder / f"{name}.png"))
        with torch.inference_mode():
            want = recipe.run(image, tiny_encoder).numpy()
        np.testing.assert_allclose(np.load(tmp_path / "out" / f"{name}.npy"), want, atol=1e-5)


def test_short_chunk_padded_for_static_batch_backends_gives_the_same_features(tiny_checkpoint, tiny_encoder):
    from lseg_encoder.backends import BACKENDS
    from lseg_encoder.extract.compute import FeatureComputer, JobSpec

    assert BACKENDS["compiled"].specialised and not BACKENDS["torch"].specialised
    spec = JobSpec(weights=str(tiny_checkpoint), backbone="tiny", backend="torch", device="cpu",
                   recipe_options={"size": list(SIZE)}, dtype="fp32", batch=4)
    computer = FeatureComputer(spec, tiny_encoder)
    pixels = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (2, *SIZE, 3), dtype=np.uint8))
    plain = computer.native_batch(pixels)
    computer.pad_to = 4  # as for a compiled / TensorRT / AOTI runner specialised to batch 4
    padded = computer.native_batch(pixels)
    assert len(padded) == 2
    for a, b in zip(plain, padded):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_steady_window_opens_when_the_last_device_is_warm(monkeypatch):
    """Two devices warming up side by side: the rate counts only items finished after BOTH were warm,
    over seconds on one clock (summing their warm-ups would subtract overlapping seconds twice)."""
    import lseg_encoder.extract.summary as summary_mod
    from lseg_encoder.extract.manifest import Record
    from lseg_encoder.extract.summary import Tally

    clock = iter([0.5, 1.0, 2.0, 10.0, 11.0, 12.0, 20.0, 21.0, 22.0])
    monkeypatch.setattr(summary_mod.time, "monotonic", lambda: next(clock))
    tally = Tally()  # 0.5: the start
    ok = Record("x", "x.png", "ok")
    assert tally.steady_window() is None  # nobody warm yet
    tally(ok)  # 1.0: first batch of device A
    tally.warm("A")  # 2.0: A warm
    tally(ok)  # 10.0: A's second batch, while B still compiles: not steady
    tally.warm("B")  # 11.0: B warm -> the window opens
    tally(ok)  # 12.0
    tally(Record("y", "y.png", "failed", reason="bad"))  # failures take no clock reading
    tally(ok)  # 20.0
    tally(ok)  # 21.0
    assert tally.steady_window() == (3, 10.0)  # items at 12, 20, 21 over 21 - 11 s
    assert tally.ok == 5 and tally.failed == 1
    assert [(m.device, m.at) for m in tally.warm_marks] == [("A", 1.5), ("B", 10.5)]


def test_summary_names_when_each_device_joined():
    """With several devices, a late one (a slow start, a cold compile) must show in the closing lines."""
    from lseg_encoder.extract.pipeline import StageTimes
    from lseg_encoder.extract.summary import ExtractSummary, WarmMark

    def lines(marks):
        return ExtractSummary(out=None, total=4, skipped=0, ok=4, failed=0, seconds=60.0, bytes=0,
                              stages=StageTimes(), device="cuda:0,cuda:1", backend="compiled",
                              warm_marks=marks).lines()

    early, late = WarmMark("cuda:0", 26.4, 4.0, 20.0), WarmMark("cuda:1", 40.3, 4.0, 20.0)
    joined = [line for line in lines([early, late]) if line.startswith("first batch")]
    assert joined == ["first batch done at: cuda:0 26.4 s (start 2.4, model load 4.0, first batch 20.0), "
                      "cuda:1 40.3 s (start 16.3, model load 4.0, first batch 20.0)"]
    assert not any(line.startswith("first batch") for line in lines([early]))


def test_device_processes_share_the_cores(monkeypatch):
    """Each device process gets its share of torch's CPU threads, unless the user chose (OMP_NUM_THREADS)."""
    from lseg_encoder.extract import devices

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(devices.os, "cpu_count", lambda: 32)
    assert [devices.threads_per_device(n) for n in (1, 2, 3, 64)] == [32, 16, 10, 1]
    monkeypatch.setenv("OMP_NUM_THREADS", "4")
    assert devices.threads_per_device(2) is None


def test_stage_times_keep_the_longest_warmup_of_parallel_devices():
    from lseg_encoder.extract.pipeline import StageTimes

    total = StageTimes()
    total.add(StageTimes(compute=2.0, warmup=30.0, warmup_items=16))
    total.add(StageTimes(compute=3.0, warmup=25.0, warmup_items=16))
    assert (total.compute, total.warmup, total.warmup_items) == (5.0, 30.0, 32)


def test_devices_names_are_parsed_as_every_device_flag_is(monkeypatch):
    """`--devices cuda:x` on a CUDA machine is one LsegError line (it was a ValueError from int());
    the GPU count is faked so that the check runs here."""
    from lseg_encoder.extract.api import parse_devices

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert parse_devices("cuda:1,cpu") == ["cuda:1", "cpu"]
    with pytest.raises(LsegError, match=r"unknown device 'cuda:x'; use cpu, cuda or cuda:N"):
        parse_devices("cuda:x")
    with pytest.raises(LsegError, match="cuda:2 does not exist"):
        parse_devices("cuda:2")


@pytest.mark.parametrize("dtype", ["fp16", "fp32"])
def test_native_batch_asks_the_runner_for_the_stored_dtype_with_the_same_values(tiny_checkpoint, tiny_encoder,
                                                                                 dtype):
    """Without PCA or resize the runner writes the stored dtype itself (the compiled runner's finish kernel
    then skips an fp32 write and a cast kernel); the stored values are those of the fp32 output, cast."""
    from lseg_encoder.extract.compute import DTYPES, FeatureComputer, JobSpec

    spec = JobSpec(weights=str(tiny_checkpoint), backbone="tiny", backend="torch", device="cpu",
                   recipe_options={"size": list(SIZE)}, dtype=dtype, batch=2)
    computer = FeatureComputer(spec, tiny_encoder)
    asked = []
    infer = computer.runner.infer

    def recording(x, **kw):
        asked.append(kw.get("out_dtype"))
        return infer(x, **kw)

    computer.runner.infer = recording
    pixels = torch.from_numpy(np.random.default_rng(1).integers(0, 256, (2, *SIZE, 3), dtype=np.uint8))
    stored = computer.native_batch(pixels)
    raw = computer.native_batch(pixels, raw=True)  # the fp32 output, as the PCA fit reads it
    assert asked == [DTYPES[dtype], None]
    for got, full in zip(stored, raw):
        assert got.dtype == np.dtype(dtype.replace("fp", "float")) and full.dtype == np.float32
        np.testing.assert_array_equal(got, full.astype(got.dtype))


def test_decode_workers_are_forked_whatever_started_this_process():
    """A `--devices` process is spawned and inherits spawn; its decode workers must still fork, or each
    imports torch again before its first chunk (5-7 s on 2 cores, scripts/gpu_spawn_probe.py)."""
    import sys

    from lseg_encoder.extract.decode import Decoder
    from lseg_encoder.extract.inputs import Item
    from lseg_encoder.extract.loader import chunk_loader, new_counter

    if sys.platform != "linux":
        pytest.skip("decode workers fork on Linux only; elsewhere the platform's start method is kept")

    def loader(workers):
        return chunk_loader([Item("a", "a.png")], chunk=1, decoder=Decoder((32, 32), None), counter=new_counter(),
                            workers=workers, stack=True, pin_memory=False)

    assert loader(2).multiprocessing_context.get_start_method() == "fork"
    assert loader(0).multiprocessing_context is None  # no workers: decoding stays in this process
