"""Small generated inputs for the extract tests: random-content JPEGs/PNGs and a PyAV clip."""

from __future__ import annotations

from pathlib import Path

import numpy as np

SIZE = (64, 64)  # tiny: output (512, 32, 32)


def make_images(folder: Path, count: int, *, nested: bool = True, seed: int = 0) -> list[str]:
    """`count` images of varied sizes and formats; returns their expected ids, sorted."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    ids = []
    for i in range(count):
        sub = f"part{i % 2}/" if nested else ""
        ext = ".png" if i % 3 == 0 else ".jpg"
        path = folder / f"{sub}img{i:03d}{ext}"
        path.parent.mkdir(parents=True, exist_ok=True)
        h, w = 40 + 8 * (i % 4), 56 + 4 * (i % 5)
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
        ids.append(f"{sub}img{i:03d}")
    return sorted(ids)


def make_clip(path: Path, frames: int, fps: int = 6, size: tuple[int, int] = (48, 64)) -> Path:
    """An H.264/MPEG-4 clip of `frames` frames whose content changes every frame."""
    import av

    h, w = size
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for i in range(frames):
            img = np.full((h, w, 3), (i * 20) % 256, dtype=np.uint8)
            img[:, : (i * 5) % w] = 255
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def feature_files(out: Path) -> dict[str, Path]:
    """id -> feature file under `out` (npy or safetensors)."""
    files = {}
    for p in sorted(out.rglob("*")):
        if p.is_file() and p.suffix in (".npy", ".safetensors") and not p.name.startswith("."):
            files[p.relative_to(out).with_suffix("").as_posix()] = p
    return files
