"""`extract`'s copy to the host overlaps the next chunk's forward (issue 13, fourteenth session).

On the CPU these check the order of the pipeline (a chunk is started before the one before it is
finished) and what --fail-fast leaves on disk; on CUDA, that chunks in flight together give the features
of chunks run one by one, to the bit, and that a chunk's arrays survive the chunks after it.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from _extract_data import SIZE, feature_files, make_images
from lseg_encoder.errors import LsegError
from lseg_encoder.extract import extract
from lseg_encoder.extract.compute import FeatureComputer, JobSpec, PendingFeatures


def test_each_chunk_starts_before_the_one_before_it_is_finished(tiny_checkpoint, tiny_encoder, tmp_path,
                                                                  monkeypatch):
    """Three chunks: the first is finished at once (the warm-up is its wall time), then chunk 3's forward is
    queued before chunk 2's features are waited for."""
    make_images(tmp_path / "images", 6)
    calls, started = [], []
    start, result = FeatureComputer.native_start, PendingFeatures.result

    def recorded_start(self, pixels, raw=False):
        started.append(start(self, pixels, raw))
        calls.append("start")
        return started[-1]

    def recorded_result(self):
        calls.append(f"result {started.index(self) + 1}")
        return result(self)

    monkeypatch.setattr(FeatureComputer, "native_start", recorded_start)
    monkeypatch.setattr(PendingFeatures, "result", recorded_result)
    summary = extract([tmp_path / "images"], tmp_path / "out", weights=str(tiny_checkpoint), encoder=tiny_encoder,
                      size=SIZE, workers=0, batch=2, progress=False, device="cpu")
    assert (summary.ok, summary.failed) == (6, 0)
    assert calls == ["start", "result 1", "start", "start", "result 2", "result 3"]
    assert len(feature_files(tmp_path / "out")) == 6


def test_fail_fast_writes_the_chunk_in_flight_before_it_stops(tiny_checkpoint, tiny_encoder, tmp_path):
    """The third chunk holds a broken image: the second, started and not yet finished when the third is
    refused, is still written, as it was when chunks ran one by one."""
    folder = tmp_path / "images"
    ids = make_images(folder, 4, nested=False)
    (folder / "zz_broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(LsegError, match=r"zz_broken: cannot decode image .*\(--fail-fast\)"):
        extract([folder], tmp_path / "out", weights=str(tiny_checkpoint), encoder=tiny_encoder, size=SIZE,
                workers=0, batch=2, progress=False, fail_fast=True, device="cpu")
    assert sorted(feature_files(tmp_path / "out")) == ids


@pytest.mark.parametrize("dtype", ["fp16", "fp32"])
def test_chunks_in_flight_give_the_features_of_chunks_one_by_one(tiny_checkpoint, tiny_encoder, dtype):
    if not torch.cuda.is_available():  # asked when the test runs: collection probes no GPU
        pytest.skip("the copy stream is CUDA's; this machine has no GPU")
    spec = JobSpec(weights=str(tiny_checkpoint), backbone="tiny", backend="torch", device="cuda",
                   recipe_options={"size": list(SIZE)}, dtype=dtype, batch=2)
    computer = FeatureComputer(spec, tiny_encoder)
    rng = np.random.default_rng(3)
    chunks = [torch.from_numpy(rng.integers(0, 256, (2, *SIZE, 3), dtype=np.uint8)).pin_memory() for _ in range(4)]
    alone = [computer.native_batch(c) for c in chunks]
    started = [computer.native_start(c) for c in chunks[:2]]
    first = started[0].result()
    kept = [a.copy() for a in first]
    rest = [p.result() for p in started[1:]] + [computer.native_start(c).result() for c in chunks[2:]]
    for got, want in zip([first, *rest], alone):
        for a, b in zip(got, want):
            np.testing.assert_array_equal(a, b)
    for a, b in zip(first, kept):  # later chunks did not write into the first chunk's pinned block
        np.testing.assert_array_equal(a, b)
    computer.close()
