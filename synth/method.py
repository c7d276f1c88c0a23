"""The interface every synthesis method implements: draw a spec, then render it.

Modelled on kornia's augmentations: ``Method.sample(rng, scene, ...)`` draws every random choice
from the caller's ``numpy.random.Generator`` into a plain, JSON-serialisable ``Spec``;
``Method.render(scene, spec)`` is deterministic (any per-pixel noise it needs is generated from
integer seeds stored in the spec), so the same spec replays byte for byte and *is* the metadata.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping

import numpy as np

from .errors import InvalidParameterError
from .sizebins import SizeBin


@dataclass(frozen=True)
class Scene:
    """What a method may look at: the image and everything that constrains or feeds the anomaly.

    ``image``      float32 ``(H, W, C)`` in [0, 1], C = 1 or 3 (alpha already split off).
    ``region``     bool ``(H, W)`` allowed pixels, or ``None`` for the whole image.
    ``partners``   other anomaly-free images (float32 ``(h, w, C)``, any size) for methods that
                   blend a second image (NSA, FPI, foreground Perlin); empty -> the image itself.
    ``textures``   float32 ``(h, w, 3)`` texture images (SYNAGEN ``texture`` mode, DRAEM).
    ``foreground`` bool ``(H, W)`` object mask of ``image`` when known (else methods estimate it).
    ``quantum``    the storage step of the output dtype in [0, 1] units (1/255 for uint8, 0 for
                   float), so that methods measure exactly what will be written.
    ``min_change`` a pixel counts as changed (mask, measured area) when some channel moved by
                   more than this, in [0, 1] units (default one level, ``change.CHANGE_TOLERANCE``).
    """

    image: np.ndarray
    region: np.ndarray | None = None
    partners: tuple[np.ndarray, ...] = ()
    textures: tuple[np.ndarray, ...] = ()
    foreground: np.ndarray | None = None
    quantum: float = 1.0 / 255.0
    min_change: float = 1.0 / 255.0

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        return int(self.image.shape[1])

    @property
    def channels(self) -> int:
        return int(self.image.shape[2])

    @property
    def allowed(self) -> np.ndarray:
        """The region, or an all-True mask."""
        if self.region is None:
            return np.ones((self.height, self.width), dtype=bool)
        return self.region


@dataclass(frozen=True)
class Spec:
    """Every choice behind one anomaly. ``params`` holds only JSON types (numbers, strings, lists)."""

    method: str
    shape: str
    mode: str
    seed: int
    size_bin: SizeBin | None = None
    params: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "shape": self.shape,
            "mode": self.mode,
            "seed": int(self.seed),
            "size_bin": None if self.size_bin is None else [self.size_bin.low, self.size_bin.high],
            "params": dict(self.params),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Spec":
        size_bin = data.get("size_bin")
        return cls(
            method=data["method"],
            shape=data["shape"],
            mode=data["mode"],
            seed=int(data["seed"]),
            size_bin=None if size_bin is None else SizeBin(float(size_bin[0]), float(size_bin[1])),
            params=dict(data.get("params", {})),
        )


@dataclass(frozen=True)
class Rendering:
    """What ``render`` returns: the new colour image and what it measured on the way.

    ``image``  float32 ``(H, W, C)`` in [0, 1]; pixels outside the scene's region must equal the source.
    ``label``  optional float32 ``(H, W)`` soft label in [0, 1] (NSA continuous/logistic, FPI alpha).
    ``angle``  rotation in degrees applied to the anomaly (0 when the method does not rotate).
    ``extra``  JSON-serialisable values fixed during rendering (e.g. the final scale).
    ``window`` optional ``(y0, y1, x0, x1)``: every change lies inside it, and ``image`` (and
               ``label``) hold just that window. Lets large images skip whole-image work.
    """

    image: np.ndarray
    label: np.ndarray | None = None
    angle: float = 0.0
    extra: Mapping[str, Any] = field(default_factory=dict)
    window: tuple[int, int, int, int] | None = None


class Method(ABC):
    """Base class of synthesis methods. Subclasses set ``name``, ``shapes``, ``modes``."""

    name: ClassVar[str]
    shapes: ClassVar[tuple[str, ...]]
    modes: ClassVar[tuple[str, ...]]
    #: True when ``render`` steers the changed area into ``spec.size_bin`` by itself.
    targets_size: ClassVar[bool] = False
    #: True when the method blends a second anomaly-free image (``Scene.partners``).
    needs_partner: ClassVar[bool] = False
    #: shapes / modes the folder protocol enumerates (each gets its own outputs) when none are
    #: asked for; ``None``: one output per anomaly, its shape / mode drawn by ``sample``.
    default_shapes: ClassVar[tuple[str, ...] | None] = None
    default_modes: ClassVar[tuple[str, ...] | None] = None
    #: True for a mixture of other methods (its outputs carry the drawn method's labels, so its
    #: own name, shapes and modes are not part of the published vocabulary).
    composite: ClassVar[bool] = False
    #: True when the record's ``angle`` is the spec's ``angle`` (an anomaly drawn rotated).
    records_angle: ClassVar[bool] = False
    #: True when ``sample`` looks at the pixel values (not only at the image's size).
    samples_pixels: ClassVar[bool] = False
    #: ``"module:Class"`` of the method's batched torch renderer (``synth.batched``), imported
    #: on first use; ``None``: the method renders on the CPU path only.
    batched: ClassVar[str | None] = None

    @abstractmethod
    def sample(
        self,
        rng: np.random.Generator,
        scene: Scene,
        *,
        shape: str | None = None,
        mode: str | None = None,
        size_bin: SizeBin | None = None,
        seed: int = 0,
    ) -> Spec:
        """Draw a spec. ``shape``/``mode`` None = drawn uniformly from the method's options."""

    @abstractmethod
    def render(self, scene: Scene, spec: Spec) -> Rendering:
        """Deterministically render ``spec`` on ``scene`` (no hidden randomness)."""

    def check_choices(self, shape: str | None = None, mode: str | None = None) -> None:
        """Refuse a shape or mode the method does not have, with the message ``sample`` gives."""
        self._check(shape, self.shapes, "shape")
        self._check(mode, self.modes, "mode")

    def offers(self, shape: str | None = None, mode: str | None = None) -> bool:
        """Whether ``sample`` can make this shape in this mode (``None``: any)."""
        return (shape is None or shape in self.shapes) and (mode is None or mode in self.modes)

    # helpers for subclasses ------------------------------------------------------------------
    def _choose(self, rng: np.random.Generator, value: str | None, options: tuple[str, ...], what: str) -> str:
        if value is None:
            return options[int(rng.integers(len(options)))]
        self._check(value, options, what)
        return value

    def _check(self, value: str | None, options: tuple[str, ...], what: str) -> None:
        if value is not None and value not in options:
            raise InvalidParameterError(
                f"unknown {what} {value!r} for method {self.name!r}; choose from {', '.join(options)}"
            )
