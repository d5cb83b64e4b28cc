"""Video frames as items, through PyAV (optional extra `video`).

Listing reads packets only (no decoding), so planning a long video is cheap: the frame count and
each frame's timestamp come from the packets' presentation times. Decoding happens in the loader
workers; each keeps its open videos and decodes forward, because a worker is handed increasing
frame indices (chunks are claimed in id order).
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np

from ..errors import LsegError
from .inputs import Item, VideoSampling

FRAME_DIGITS = 6  # ids <stem>/000042 sort in frame order


def _require_av():
    try:
        import av
    except ImportError:
        raise LsegError("video input needs PyAV: pip install 'lseg-encoder[video]' (or pip install av)") from None
    return av


def frame_id(base_id: str, index: int) -> str:
    return f"{base_id}/{index:0{FRAME_DIGITS}d}"


def select_frames(times: list[float], sampling: VideoSampling) -> list[int]:
    """Indices of the frames to keep: every N-th, or the first frame at or after each 1/fps tick."""
    if sampling.fps is None:
        return list(range(0, len(times), sampling.every or 1))
    step, tick, keep = 1.0 / sampling.fps, 0.0, []
    for index, t in enumerate(times):
        if t + 1e-9 >= tick:
            keep.append(index)
            while tick <= t + 1e-9:
                tick += step
    return keep


def frame_times(path: Path) -> tuple[list[float], tuple[int, int]]:
    """Presentation times (s, from the first frame) of every frame, and the (height, width)."""
    av = _require_av()
    with av.open(str(path)) as container:
        if not container.streams.video:
            raise LsegError("no video stream")
        stream = container.streams.video[0]
        size = (stream.codec_context.height, stream.codec_context.width)
        base = stream.time_base or Fraction(1, 1)
        pts = []
        try:
            pts.extend(p.pts for p in container.demux(stream) if p.size and p.pts is not None)
        except EOFError:  # a stream that ends before its first packet: no frames
            pass
    pts.sort()
    return [float((p - pts[0]) * base) for p in pts], size


def list_frames(path: Path, base_id: str, sampling: VideoSampling, max_pixels: int | None) -> list[Item]:
    """The frame items of one video; one failed item named after the video when it cannot be used."""
    try:
        times, (h, w) = frame_times(path)
    except LsegError as exc:
        if "needs PyAV" in str(exc):
            raise
        return [Item(base_id, str(path), error=f"cannot read video: {exc}")]
    except Exception as exc:  # PyAV raises its own error tree (InvalidDataError, ...), all decode failures here
        return [Item(base_id, str(path), error=f"cannot read video ({exc.__class__.__name__}: {exc})")]
    if not times:
        return [Item(base_id, str(path), error="video has no frames")]
    if max_pixels and h * w > max_pixels:
        return [Item(base_id, str(path), error=f"frames are {w}x{h} = {h * w} pixels, over --max-pixels {max_pixels}")]
    return [Item(frame_id(base_id, i), str(path), frame=i) for i in select_frames(times, sampling)]


class FrameReader:
    """Sequential decoder of one video that serves increasing frame indices without seeking."""

    def __init__(self, path: str):
        av = _require_av()
        self.path = path
        self.container = av.open(path)
        self.frames = self.container.decode(video=0)
        self.next_index = 0

    def read(self, index: int) -> np.ndarray:
        for frame in self.frames:
            current = self.next_index
            self.next_index += 1
            if current == index:
                return frame.to_ndarray(format="rgb24")
        raise LsegError(f"frame {index} not found: the video decodes to {self.next_index} frames")

    def close(self) -> None:
        self.container.close()


class FrameCache:
    """Open readers per video in one worker process; reopens when asked to go backwards."""

    def __init__(self, limit: int = 4):
        self.readers: dict[str, FrameReader] = {}
        self.limit = limit

    def read(self, path: str, index: int) -> np.ndarray:
        reader = self.readers.get(path)
        if reader is None or reader.next_index > index:
            if reader is not None:
                self.readers.pop(path).close()
            while len(self.readers) >= self.limit:
                self.readers.pop(next(iter(self.readers))).close()
            reader = self.readers[path] = FrameReader(path)
        return reader.read(index)
