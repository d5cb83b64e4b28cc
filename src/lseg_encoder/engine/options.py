"""What an engine is built from besides the ONNX: input shapes and builder options, as plain data.

Shapes are stated as batch x height x width (`BxHxW`): the encoder's input always has 3 channels,
so the channel axis is left out (a `Bx3xHxW` form is accepted too). A `ShapeSpec` is either one
static shape (min = opt = max) or one or more optimisation profiles of one engine.

`BuildOptions` only says what was asked for. Whether the chosen backend can do it is decided in
`engine.build.resolve_options`, which refuses what the backend lacks instead of dropping it.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import EngineError
from ..sizes import parse_shape

Shape3 = tuple[int, int, int]  # (batch, height, width)

_UNITS = {"": 1, "b": 1, "k": 1 << 10, "kib": 1 << 10, "m": 1 << 20, "mib": 1 << 20,
          "g": 1 << 30, "gib": 1 << 30}
DEFAULT_WORKSPACE = 4 << 30


def parse_bytes(text: str | int) -> int:
    """'4GiB' / '512MiB' / '1073741824' / '1.5G' -> bytes. Decimal units (MB, GB) are refused as
    ambiguous; K/M/G are binary like TensorRT's own pool limits."""
    if isinstance(text, int):
        value = text
    else:
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", str(text))
        unit = m.group(2).lower() if m else None
        if not m or unit not in _UNITS:
            raise EngineError(f"bad size {text!r}; use bytes or a KiB/MiB/GiB suffix, e.g. 4GiB or 512MiB")
        exact = float(m.group(1)) * _UNITS[unit]
        if exact != int(exact):
            raise EngineError(f"bad size {text!r}: not a whole number of bytes")
        value = int(exact)
    if value <= 0:
        raise EngineError(f"workspace must be positive, got {text!r}")
    return value


@dataclass(frozen=True)
class Profile:
    """One optimisation profile: per-axis bounds (batch, height, width) and the shape tuned for."""

    min: Shape3
    opt: Shape3
    max: Shape3

    def __post_init__(self):
        for axis, name in enumerate(("batch", "height", "width")):
            lo, mid, hi = self.min[axis], self.opt[axis], self.max[axis]
            if min(lo, mid, hi) <= 0:
                raise EngineError(f"profile {self}: {name} must be positive")
            if not lo <= mid <= hi:
                raise EngineError(f"profile {self}: {name} must satisfy min <= opt <= max, got "
                                  f"{lo} <= {mid} <= {hi}")

    @classmethod
    def parse(cls, text: str) -> Profile:
        """'MIN,OPT,MAX', each BxHxW, e.g. '1x256x256,1x384x384,4x512x512'."""
        parts = [p for p in text.split(",")]
        if len(parts) != 3:
            raise EngineError(f"bad profile {text!r}; use MIN,OPT,MAX with each BxHxW, "
                              "e.g. 1x256x256,1x384x384,4x512x512")
        return cls(*(parse_shape(p) for p in parts))

    @property
    def is_static(self) -> bool:
        return self.min == self.opt == self.max

    def input_shapes(self) -> tuple[tuple[int, int, int, int], ...]:
        """(min, opt, max) as (B, 3, H, W) input shapes."""
        return tuple((b, 3, h, w) for b, h, w in (self.min, self.opt, self.max))

    def contains(self, batch: int, height: int, width: int) -> bool:
        value = (batch, height, width)
        return all(lo <= v <= hi for v, lo, hi in zip(value, self.min, self.max, strict=True))

    def __str__(self) -> str:
        return ",".join("x".join(map(str, s)) for s in (self.min, self.opt, self.max))

    def to_json(self) -> dict:
        return {"min": list(self.min), "opt": list(self.opt), "max": list(self.max)}

    @classmethod
    def from_json(cls, data: dict) -> Profile:
        return cls(tuple(data["min"]), tuple(data["opt"]), tuple(data["max"]))


@dataclass(frozen=True)
class ShapeSpec:
    """The input shapes an engine accepts: one static shape, or one or more profiles."""

    profiles: tuple[Profile, ...]

    def __post_init__(self):
        if not self.profiles:
            raise EngineError("an engine needs a static shape or at least one profile")

    @classmethod
    def static(cls, batch: int, height: int, width: int) -> ShapeSpec:
        shape = (batch, height, width)
        return cls((Profile(shape, shape, shape),))

    @classmethod
    def dynamic(cls, *profiles: Profile | str) -> ShapeSpec:
        return cls(tuple(p if isinstance(p, Profile) else Profile.parse(p) for p in profiles))

    @property
    def is_static(self) -> bool:
        return len(self.profiles) == 1 and self.profiles[0].is_static

    def token(self) -> str:
        """File-name part: '1x384x384' (static) or 'p1x256x256-1x384x384-4x512x512' per profile."""
        if self.is_static:
            return "x".join(map(str, self.profiles[0].min))
        return "_".join("p" + str(p).replace(",", "-") for p in self.profiles)

    def to_json(self) -> list[dict]:
        return [p.to_json() for p in self.profiles]


@dataclass(frozen=True)
class BuildOptions:
    """Builder options. `None` means "the backend's default" and is recorded as such.

    fp16: True/False or None (= follow the ONNX: an fp16 graph gives an fp16 engine). With
    TensorRT 10 and an fp32 ONNX, True sets the weakly-typed FP16 builder flag. Strongly typed
    backends (TensorRT 11, TensorRT-RTX) take precision from the graph, so True needs the fp16 ONNX.
    tactic_sources: names of the backend's `TacticSource` members, each '+NAME' (enable) or '-NAME'
    (disable) relative to the backend default; a bare NAME means '+NAME'.
    compute_capabilities: TensorRT-RTX ahead-of-time targets such as ('8.6', '8.9'); None = its default.
    """

    workspace: int = DEFAULT_WORKSPACE
    fp16: bool | None = None
    sparse: bool = False
    disable_timing_cache: bool = False
    gpu_fallback: bool = False
    debug: bool = False
    tactic_sources: tuple[str, ...] | None = None
    optimization_level: int | None = None
    compute_capabilities: tuple[str, ...] | None = None

    def __post_init__(self):
        object.__setattr__(self, "workspace", parse_bytes(self.workspace))
        if self.optimization_level is not None and not 0 <= int(self.optimization_level) <= 5:
            raise EngineError(f"optimization level must be 0..5, got {self.optimization_level}")
        if self.tactic_sources is not None:
            tactics = tuple(_normalise_tactic(t) for t in self.tactic_sources)
            object.__setattr__(self, "tactic_sources", tactics)
        if self.compute_capabilities is not None:
            ccs = tuple(_normalise_cc(c) for c in self.compute_capabilities)
            if not ccs:
                raise EngineError("compute_capabilities must name at least one target, or be None")
            object.__setattr__(self, "compute_capabilities", ccs)

    @property
    def workspace_mib(self) -> int:
        return self.workspace >> 20

    def to_json(self) -> dict:
        data = dataclasses.asdict(self)
        for key in ("tactic_sources", "compute_capabilities"):
            if data[key] is not None:
                data[key] = list(data[key])
        return data

    @classmethod
    def from_json(cls, data: dict) -> BuildOptions:
        data = dict(data)
        for key in ("tactic_sources", "compute_capabilities"):
            if data.get(key) is not None:
                data[key] = tuple(data[key])
        return cls(**data)

    def name_parts(self, precision: str) -> list[str]:
        """The options that differ from the defaults, in a fixed order, for the default file name."""
        parts = [precision]
        parts += [name for name, on in (("sparse", self.sparse), ("notc", self.disable_timing_cache),
                                         ("gpufb", self.gpu_fallback), ("debug", self.debug)) if on]
        if self.optimization_level is not None:
            parts.append(f"opt{self.optimization_level}")
        if self.tactic_sources is not None:
            parts.append("ts" + "".join(("" if t[0] == "+" else "no") + t[1:].lower().replace("_", "")
                                        for t in self.tactic_sources))
        if self.compute_capabilities is not None:
            parts.append("sm" + "-".join(c.replace(".", "") for c in self.compute_capabilities))
        return parts


def _normalise_tactic(text: str) -> str:
    text = text.strip()
    sign = "+"
    if text[:1] in "+-":
        sign, text = text[0], text[1:]
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", text):
        raise EngineError(f"bad tactic source {text!r}; use NAME, +NAME or -NAME")
    return sign + text.upper()


def _normalise_cc(text: str) -> str:
    m = re.fullmatch(r"\s*(?:sm_?)?(\d+)(?:\.(\d))?\s*", str(text), flags=re.IGNORECASE)
    if not m:
        raise EngineError(f"bad compute capability {text!r}; use e.g. 8.6, 8.9 or 12.0")
    if m.group(2) is None:  # 'sm86' / '86' form
        digits = m.group(1)
        if len(digits) < 2:
            raise EngineError(f"bad compute capability {text!r}; use e.g. 8.6")
        return f"{int(digits[:-1])}.{digits[-1]}"
    return f"{int(m.group(1))}.{m.group(2)}"


def default_engine_name(onnx_path: str | Path, spec: ShapeSpec, options: BuildOptions, precision: str) -> str:
    """`<onnx-stem>__<opt1>_<opt2>_..._ws<N>MiB.trt`: precision, shapes, non-default options, workspace."""
    parts = [*options.name_parts(precision)]
    parts.insert(1, spec.token())
    return f"{Path(onnx_path).stem}__{'_'.join(parts)}_ws{options.workspace_mib}MiB.trt"

