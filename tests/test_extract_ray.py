"""`--engine ray` on a local Ray cluster gives the same files and manifest as the local engine."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from _extract_data import SIZE, feature_files, make_images
from lseg_encoder.extract import extract
from lseg_encoder.extract.manifest import read_manifest

ray = pytest.importorskip("ray", reason="Ray not installed (pip install 'lseg-encoder[ray]'); the ray engine is "
                                        "tested where the extra is installed")
pytest.importorskip("ray.data", reason="Ray Data missing (pip install 'ray[data]')")


def test_ray_local_cluster_matches_local_engine(tmp_path, tiny_checkpoint, tiny_encoder):
    folder = tmp_path / "images"
    ids = make_images(folder, 6)
    (folder / "broken.png").write_bytes(b"\x89PNG broken")
    common = dict(size=SIZE, batch=2, dtype="fp32", weights=str(tiny_checkpoint), progress=False)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # Ray's CPU actors run one thread; CPU GEMMs round differently per thread count
    try:
        local = extract([folder], tmp_path / "local", workers=0, encoder=tiny_encoder, **common)
    finally:
        torch.set_num_threads(threads)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False,
             object_store_memory=80 * 2**20)
    try:
        remote = extract([folder], tmp_path / "ray", engine="ray", **common)
        again = extract([folder], tmp_path / "ray", engine="ray", **common)
    finally:
        ray.shutdown()
    assert (remote.ok, remote.failed) == (local.ok, local.failed) == (6, 1)
    assert (again.ok, again.skipped, again.failed) == (0, 6, 1)  # done items are not scheduled again
    a, b = feature_files(tmp_path / "local"), feature_files(tmp_path / "ray")
    assert sorted(a) == sorted(b) == ids
    for item_id in ids:
        np.testing.assert_array_equal(np.load(a[item_id]), np.load(b[item_id]))
    ma, mb = read_manifest(tmp_path / "local"), read_manifest(tmp_path / "ray")
    assert {k: (r.status, r.reason, r.shape, r.bytes) for k, r in ma.items()} == \
           {k: (r.status, r.reason, r.shape, r.bytes) for k, r in mb.items()}
