"""Detectors whose network learns from synthetic anomalies: the training data and the training loop.

Three detection pipelines train this way (ASBench section 3.1): the segmenter (NSA recipe,
``detect.training.segmenter``), DRAEM (``detect.training.draem``) and defect-map prediction (``detect.training.defect_map``).
They share

* the data (:class:`SyntheticAnomalies`): sample ``i`` is a fit image, randomly flipped, that
  carries one synthetic anomaly with probability ``anomaly_ratio`` (ASBench's *anomaly ratio*, the
  share of training samples with an anomaly; DRAEM's own default is 0.5) made by any registered
  synth method, a uniform mix of several, or a weighted mix (a hybrid, ASBench section 4.5);
* the loop (:func:`train_on_synthetic`): ``accelerate`` (CPU, one or many GPUs, mixed precision),
  a checkpoint every N steps and at the end, exact resume from the newest checkpoint, tqdm;
* saving and loading through ``Detector.save`` / ``load_detector`` (network weights + step count).

A pipeline subclasses :class:`SyntheticTrainedDetector` and gives its network (``build_model``),
its loss (``training_loss``), its optimiser and learning-rate schedule, and how a map is scored.
"""

from __future__ import annotations

import json
import math
from abc import abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from detect.detectors.detector import Detector
from detect.errors import DetectError
from detect.runtime import choose_device, fastest_threads
from synth.atomic import atomic_path

LOGISTIC_K = 1.0 / 3.0
LOGISTIC_X0 = 7.0

#: how a training label is made from an anomaly: NSA's logistic label of the change, or its mask
LabelKind = Literal["logistic", "mask"]

#: a synthesis for training: one method name, several names (a uniform mix) or {name: weight} (a hybrid)
MethodsOption = str | Sequence[str] | Mapping[str, float]


def logistic_label(mask: np.ndarray, abs_change: np.ndarray, k: float = LOGISTIC_K, x0: float = LOGISTIC_X0) -> np.ndarray:
    """NSA's logistic label, float32 ``(H, W)`` in [0, 1).

    ``mask`` bool ``(H, W)`` changed pixels; ``abs_change`` float ``(H, W)`` mean absolute change
    over channels in 0-255 units. ``label = mask / (1 + exp(-k (abs_change - x0)))``.
    """
    return (mask.astype(np.float32) / (1.0 + np.exp(-k * (abs_change.astype(np.float32) - x0)))).astype(np.float32)


def method_weights(synthesis: MethodsOption) -> dict[str, float]:
    """``{method: probability}`` of a synthesis (name, names or weights), checked against the registry.

    Raises ``DetectError`` for unknown methods, an empty mix, or weights that are negative,
    non-finite or all zero.
    """
    from synth.errors import SynthError
    from synth.registry import mixture_weights

    if isinstance(synthesis, str):
        synthesis = (synthesis,)
    if isinstance(synthesis, Mapping):
        raw = {str(k): v for k, v in synthesis.items()}
    else:
        names = list(synthesis)
        raw = {name: 1.0 for name in names}
    try:
        return mixture_weights(raw)
    except SynthError as exc:
        raise DetectError(f"{exc} (a mix: several names, or {{name: weight}})") from None


def check_anomaly_ratio(ratio: float) -> float:
    """``ratio`` as a float in [0, 1], or ``DetectError``."""
    try:
        value = float(ratio)
    except (TypeError, ValueError):
        raise DetectError(f"anomaly_ratio must be a number in [0, 1], got {ratio!r}") from None
    if not 0.0 <= value <= 1.0:
        raise DetectError(f"anomaly_ratio is the share of training samples with an anomaly; it must be in [0, 1], got {ratio!r}")
    return value


class SyntheticAnomalies(torch.utils.data.Dataset):
    """Sample ``i`` = one fit image, with a synthetic anomaly with probability ``ratio``; fully
    determined by ``(seed, i)``.

    ``images``   uint8 ``(N, H, W, C)`` anomaly-free images (C = 1 or 3).
    ``methods``  synth method names (each sample draws one uniformly) or ``{name: weight}``.
    ``ratio``    probability that a sample carries an anomaly (0: never; 1: always). The decision
                 uses its own random stream, so the anomalies of ratio 1 do not depend on it.
    ``label``    ``"logistic"`` (NSA's label of the change) or ``"mask"`` (the changed pixels, 0/1).
    ``with_source``  also return the anomaly-free image (the reconstruction target).
    ``textures`` texture image files for the methods that fill from one (DRAEM's fill, e.g. DTD;
                 SYNAGEN's ``texture`` mode): each sample reads one, drawn uniformly on a random
                 stream of its own (as DRAEM reads one texture per sample), so the other draws stay
                 those of a run without textures; none: DRAEM fills from the image's own tiles.
    ``source_augment``  how a sample's fit image is varied before the anomaly: ``"flips"`` (default;
                 left-right and up-down, each with probability 1/2) or ``"rotate"`` (DRAEM's code:
                 with probability 0.3 a rotation by U(-90°, 90°) about the centre, black corners).

    Returns ``(image, label)`` or ``(image, label, source)``: image and source float32
    ``(C, H, W)`` in [0, 1], label float32 ``(1, H, W)`` in [0, 1] (all 0 without an anomaly).
    """

    def __init__(
        self,
        images: np.ndarray,
        methods: Sequence[str] | Mapping[str, float],
        seed: int,
        length: int,
        *,
        ratio: float = 1.0,
        label: LabelKind = "logistic",
        with_source: bool = False,
        textures: Sequence[str | Path] = (),
        source_augment: str = "flips",
    ) -> None:
        if label not in ("logistic", "mask"):
            raise DetectError(f"label must be 'logistic' or 'mask', got {label!r}")
        self.source_augment = check_source_augment(source_augment)
        self.textures = tuple(str(t) for t in textures)
        self.images = images
        if isinstance(methods, Mapping):
            weights = method_weights(methods)
            self.methods = tuple(weights)
            self.probabilities: np.ndarray | None = np.asarray([weights[m] for m in self.methods])
        else:
            self.methods = tuple(methods)
            self.probabilities = None  # uniform: drawn with rng.integers, as before weights existed
        self.seed = int(seed)
        self.length = int(length)
        self.ratio = check_anomaly_ratio(ratio)
        self.label = label
        self.with_source = bool(with_source)

    def __len__(self) -> int:
        return self.length

    def has_anomaly(self, index: int) -> bool:
        """Whether sample ``index`` carries an anomaly (a Bernoulli draw with ``ratio``)."""
        if self.ratio >= 1.0:
            return True
        if self.ratio <= 0.0:
            return False
        return bool(np.random.default_rng([self.seed, int(index), 1]).random() < self.ratio)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, ...]:
        rng = np.random.default_rng([self.seed, int(index)])
        if not self.has_anomaly(index):
            source = self._draw_source(rng)
            x = torch.from_numpy(source.astype(np.float32) / 255.0).permute(2, 0, 1).contiguous()
            y = torch.zeros((1,) + source.shape[:2], dtype=torch.float32)
            return (x, y, x.clone()) if self.with_source else (x, y)
        source, out, mask = self._draw_anomaly(rng, self.texture(index))
        if self.label == "logistic":
            change = np.abs(out - source.astype(np.float32)).mean(axis=2)  # 0..255 units
            label = logistic_label(mask, change)
        else:
            label = mask.astype(np.float32)
        x = torch.from_numpy(out / 255.0).permute(2, 0, 1).contiguous()
        y = torch.from_numpy(label)[None]
        if self.with_source:
            return x, y, torch.from_numpy(source.astype(np.float32) / 255.0).permute(2, 0, 1).contiguous()
        return x, y

    def texture_pick(self, index: int) -> int | None:
        """Which texture file sample ``index`` fills from (``None`` without textures)."""
        if not self.textures:
            return None
        return int(np.random.default_rng([self.seed, int(index), 2]).integers(len(self.textures)))

    def texture(self, index: int) -> tuple[np.ndarray, ...]:
        """The texture image sample ``index`` fills from, as a ``textures`` argument of ``synthesize``."""
        from detect.images import load_image

        pick = self.texture_pick(index)
        return () if pick is None else (load_image(self.textures[pick]),)

    def draw_source(self, rng: np.random.Generator) -> SourceDraw:
        """Which fit image a sample starts from and how it is varied: ``(index, left-right flip,
        up-down flip, rotation in degrees or None)``."""
        index = int(rng.integers(len(self.images)))
        if self.source_augment == "rotate":
            rotate = rng.random() < DRAEM_ROTATION_PROBABILITY
            return index, False, False, float(rng.uniform(-90.0, 90.0)) if rotate else None
        return index, bool(rng.random() < 0.5), bool(rng.random() < 0.5), None

    def draw_attempt(self, rng: np.random.Generator) -> tuple[SourceDraw, int, str, int]:
        """One attempt at an anomaly: the source draw, the partner image's index, the method and
        its seed (the draws every path makes, in this order)."""
        source = self.draw_source(rng)
        partner = int(rng.integers(len(self.images)))
        if self.probabilities is None:
            method = self.methods[int(rng.integers(len(self.methods)))]
        else:
            method = self.methods[int(rng.choice(len(self.methods), p=self.probabilities))]
        return source, partner, method, int(rng.integers(2**31))

    def partner(self, index: int) -> np.ndarray:
        """Fit image ``index`` as a partner image for the synth methods (2-D when gray)."""
        image = self.images[index]
        return image[:, :, 0] if image.shape[2] == 1 else image

    def _source(self, draw: SourceDraw) -> np.ndarray:
        index, flip_lr, flip_ud, angle = draw
        source = self.images[index]
        if flip_lr:
            source = source[:, ::-1]
        if flip_ud:
            source = source[::-1]
        if angle is not None:
            source = rotated(source, angle)
        return np.ascontiguousarray(source)

    def _draw_source(self, rng: np.random.Generator) -> np.ndarray:
        return self._source(self.draw_source(rng))

    def _draw_anomaly(self, rng: np.random.Generator,
                      textures: tuple[np.ndarray, ...] = ()) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        from synth import SynthError, synthesize

        for _attempt in range(ANOMALY_ATTEMPTS):
            draw, partner, method, seed = self.draw_attempt(rng)
            source = self._source(draw)
            image = source[:, :, 0] if source.shape[2] == 1 else source
            try:
                anomaly = synthesize(image, method, seed=seed, partners=(self.partner(partner),),
                                     textures=textures)
            except SynthError:
                continue  # an anomaly that does not fit this image: draw another
            if anomaly.mask.any():
                return source, anomaly.image.reshape(source.shape).astype(np.float32), anomaly.mask
        raise no_anomaly_error(self.methods)


#: attempts (source, partner, method, seed) at one sample's anomaly before giving up
ANOMALY_ATTEMPTS = 8


def no_anomaly_error(methods: Sequence[str]) -> DetectError:
    return DetectError(
        f"could not make a synthetic anomaly with {', '.join(methods)} in {ANOMALY_ATTEMPTS} attempts; "
        "are the fit images large enough (>= 32 px) and not constant?"
    )

#: a sample's source draw: (fit image index, left-right flip, up-down flip, rotation in degrees or None)
SourceDraw = tuple[int, bool, bool, float | None]
SOURCE_AUGMENTS = ("flips", "rotate")
#: DRAEM's code rotates a training image with probability 0.3 (``torch.rand(1) > 0.7``)
DRAEM_ROTATION_PROBABILITY = 0.3


def check_source_augment(name: str) -> str:
    if name not in SOURCE_AUGMENTS:
        raise DetectError(f"source_augment must be one of {', '.join(SOURCE_AUGMENTS)}, got {name!r}")
    return name


def rotated(image: np.ndarray, angle: float) -> np.ndarray:
    """``image`` ``(H, W, C)`` rotated by ``angle`` degrees about its centre, bilinear, black outside
    (DRAEM's ``iaa.Affine(rotate=(-90, 90))`` on its training images)."""
    import cv2

    h, w = image.shape[:2]
    matrix = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), angle, 1.0)
    out = cv2.warpAffine(np.ascontiguousarray(image), matrix, (w, h), flags=cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return out.reshape(image.shape)


def texture_files(folder: str | Path) -> tuple[str, ...]:
    """The image files under a texture folder (e.g. DTD's ``images/``; recursive, sorted), checked to exist."""
    from detect.images import IMAGE_SUFFIXES

    root = Path(folder)
    if not root.is_dir():
        raise DetectError(f"textures: {folder} is not a folder")
    files = sorted(str(p) for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DetectError(f"textures: no images ({', '.join(IMAGE_SUFFIXES)}) found in {folder}")
    return tuple(files)


class DeviceSyntheticBatches:
    """The samples of a :class:`SyntheticAnomalies` made a batch at a time on a torch device.

    ``batch(indices)`` returns what stacking ``dataset[i]`` for ``indices`` returns, on
    ``device``: the same draws (anomaly or not, source image and flips, partner, method, seed,
    retries) per sample, the anomalies rendered by ``synth.batched.render_batch`` (one call per
    method and partner image), so the anomalies are the CPU loader's, up to the batched
    renderer's stated agreement with the numpy path (byte-identical for CutOut, FPI, CutPaste,
    DRAEM, fractal and foreground Perlin; NSA's Poisson solve within one level of OpenCV's), and
    the logistic label up to float32 rounding of ``exp``. Samples whose drawn method has no
    batched renderer (Hybrid) are made by the CPU path, ``dataset[i]``, and moved to the device.
    """

    def __init__(self, dataset: SyntheticAnomalies, device: str | torch.device) -> None:
        from synth.batched import BATCHED_METHODS

        self.dataset = dataset
        self.device = torch.device(device)
        self.batched = set(BATCHED_METHODS)
        # the fit images on the device, (N, C, H, W) uint8
        self.images = torch.from_numpy(np.ascontiguousarray(dataset.images)).permute(0, 3, 1, 2).to(self.device)

    def _source(self, draw: SourceDraw) -> torch.Tensor:
        index, flip_lr, flip_ud, angle = draw
        if angle is not None:  # rotated as the CPU path does (OpenCV), then moved to the device
            return torch.from_numpy(self.dataset._source(draw)).permute(2, 0, 1).to(self.device)
        image = self.images[index]
        if flip_lr:
            image = image.flip(-1)
        if flip_ud:
            image = image.flip(-2)
        return image

    def batch(self, indices: Sequence[int]) -> tuple[torch.Tensor, ...]:
        data = self.dataset
        n = len(indices)
        sources: list[torch.Tensor | None] = [None] * n
        outputs: list[torch.Tensor | None] = [None] * n
        masks: list[torch.Tensor | None] = [None] * n
        cpu_samples: dict[int, tuple[torch.Tensor, ...]] = {}
        pending: dict[int, np.random.Generator] = {}
        for k, index in enumerate(indices):
            rng = np.random.default_rng([data.seed, int(index)])
            if data.has_anomaly(index):
                pending[k] = rng
            else:
                sources[k] = self._source(data.draw_source(rng))
        for _attempt in range(ANOMALY_ATTEMPTS):
            if not pending:
                break
            # one renderer call per method, partner image and texture
            groups: dict[tuple[str, int, int | None], list[tuple[int, torch.Tensor, int]]] = {}
            for k, rng in list(pending.items()):
                draw, partner, method, seed = data.draw_attempt(rng)
                if method not in self.batched:
                    cpu_samples[k] = tuple(t.to(self.device) for t in data[indices[k]])
                    del pending[k]
                    continue
                groups.setdefault((method, partner, data.texture_pick(indices[k])), []).append(
                    (k, self._source(draw), seed))
            for (method, partner, _texture), members, results in self._render(groups, indices):
                for (k, source, _), result in zip(members, results):
                    if result is not None:
                        sources[k], outputs[k], masks[k] = source, *result
                        del pending[k]
        if pending:
            raise no_anomaly_error(data.methods)
        return self._assemble(sources, outputs, masks, cpu_samples)

    def _render(self, groups: dict[tuple[str, int, int | None], list[tuple[int, torch.Tensor, int]]],
                indices: Sequence[int]):
        """``((method, partner, texture), members, results)`` per group (one per method, partner image
        and texture file), through ``synth.engine`` (one batch
        per group, the next one's specs drawn while this one renders): ``(output, mask)`` per
        member, ``None`` where the anomaly did not fit (as the CPU path skips a ``SynthError`` or an
        empty mask and draws again; one anomaly's problem costs only that one)."""
        from synth import DEFAULT_BINS, get_method
        from synth.engine import Draw, Engine, Group

        by_method: dict[str, list[Group]] = {}
        for (method, partner, texture), members in groups.items():
            textures = () if texture is None else self.dataset.texture(indices[members[0][0]])
            by_method.setdefault(method, []).append(Group(
                [Draw(seed) for _, _, seed in members], torch.stack([source for _, source, _ in members]),
                textures=textures, partners=(self.dataset.partner(partner),),
                key=((method, partner, texture), members),
            ))
        for method, batches in by_method.items():
            size = max(len(group.draws) for group in batches)
            engine = Engine(get_method(method), DEFAULT_BINS, self.device, size, host=False)
            for group, _, outcomes in engine.render(batches):
                yield *group.key, [
                    None if isinstance(o, str) or not bool(o.mask.any()) else (o.image, o.mask) for o in outcomes
                ]

    def _assemble(self, sources, outputs, masks, cpu_samples) -> tuple[torch.Tensor, ...]:
        data = self.dataset
        xs, ys, srcs = [], [], []
        for k, source in enumerate(sources):
            if k in cpu_samples:
                sample = cpu_samples[k]
                xs.append(sample[0])
                ys.append(sample[1])
                srcs.append(sample[2] if data.with_source else None)
                continue
            plain = source.to(torch.float32) / 255.0
            if outputs[k] is None:
                xs.append(plain)
                ys.append(torch.zeros((1, *plain.shape[1:]), dtype=torch.float32, device=self.device))
            else:
                out = outputs[k].to(torch.float32)
                if data.label == "logistic":
                    change = (out - source.to(torch.float32)).abs().mean(dim=0)  # 0..255 units
                    label = masks[k].to(torch.float32) / (1.0 + torch.exp(-LOGISTIC_K * (change - LOGISTIC_X0)))
                else:
                    label = masks[k].to(torch.float32)
                xs.append(out / 255.0)
                ys.append(label[None])
            srcs.append(plain)
        batch = (torch.stack(xs), torch.stack(ys))
        return (*batch, torch.stack(srcs)) if data.with_source else batch


class SyntheticTrainedDetector(Detector):
    """A detector whose network is trained on synthetic anomalies in the fit images.

    ``methods``        the training synthesis: a method name, names (a uniform mix) or
                       ``{name: weight}`` (a hybrid); names from ``synth.registry.METHODS``.
    ``anomaly_ratio``  share of training samples that carry an anomaly, in [0, 1].
    ``steps``          optimiser steps; ``train_batch_size`` images per step (per process).
    ``lr``             learning rate (the schedule is the pipeline's).
    ``score_kernel``   side of the mean filter applied before taking the image-score maximum.
    ``mixed_precision`` "no", "fp16" or "bf16" (training only).
    ``num_workers``    data-loader processes making anomalies (results do not depend on it).
    ``synth_device``   make the training anomalies batched on this torch device (e.g. ``"cuda"``)
                       with :class:`DeviceSyntheticBatches` instead of in CPU loader processes;
                       ``None`` (default): the CPU loader.
    ``textures``       a folder of texture images the training anomalies fill from (DRAEM's papers:
                       DTD); ``None`` (default): DRAEM's fill falls back to the image's own tiles.
    ``source_augment`` ``"flips"`` (default) or ``"rotate"`` (DRAEM's code), see
                       :class:`SyntheticAnomalies`.

    Subclasses set ``label_kind``/``needs_source`` and implement ``build_model``, ``training_loss``
    and ``anomaly_maps``; they may override ``make_optimizer``, ``lr_factor`` and ``before_step``.
    """

    label_kind: LabelKind = "mask"
    needs_source: bool = False  # whether training_loss needs the anomaly-free image
    default_ratio: float = 1.0
    pad_multiple: int = 1  # input sides are reflect-padded to a multiple of this

    def __init__(
        self,
        *,
        methods: MethodsOption = ("synagen",),
        anomaly_ratio: float | None = None,
        steps: int = 300,
        train_batch_size: int = 8,
        lr: float = 1e-3,
        score_kernel: int = 9,
        mixed_precision: str = "no",
        num_workers: int = 0,
        synth_device: str | None = None,
        textures: str | None = None,
        source_augment: str = "flips",
        **common: Any,
    ) -> None:
        super().__init__(**common)
        # read when training starts (a saved detector loads where the folder is gone)
        self.textures = None if textures is None else str(textures)
        self.source_augment = check_source_augment(source_augment)
        weights = method_weights(methods)
        if isinstance(methods, Mapping):
            self.methods: tuple[str, ...] | dict[str, float] = {str(k): float(v) for k, v in methods.items()}
        else:
            self.methods = tuple(weights)
        self.anomaly_ratio = check_anomaly_ratio(self.default_ratio if anomaly_ratio is None else anomaly_ratio)
        if steps < 1 or train_batch_size < 1:
            raise DetectError("steps and train_batch_size must be >= 1")
        if score_kernel < 1 or score_kernel % 2 == 0:
            raise DetectError(f"score_kernel must be an odd integer >= 1, got {score_kernel}")
        if mixed_precision not in ("no", "fp16", "bf16"):
            raise DetectError(f"mixed_precision must be 'no', 'fp16' or 'bf16', got {mixed_precision!r}")
        self.steps = int(steps)
        self.train_batch_size = int(train_batch_size)
        self.lr = float(lr)
        self.score_kernel = int(score_kernel)
        self.mixed_precision = mixed_precision
        self.num_workers = int(num_workers)
        self.synth_device = None if synth_device is None else str(synth_device)
        if self.synth_device is not None:  # refused now rather than at the first training step
            choose_device(self.synth_device, what="synth device")
        self.trained_steps = 0
        self.model: nn.Module | None = None  # built by init_model() once the subclass set its options

    def init_model(self) -> None:
        """Build the network, seeded without touching the global torch random state."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            self.model = self.build_model()
        self.model.to(self.device).eval()

    def config(self) -> dict[str, Any]:
        return {
            **super().config(),
            "methods": dict(self.methods) if isinstance(self.methods, dict) else list(self.methods),
            "anomaly_ratio": self.anomaly_ratio,
            "steps": self.steps,
            "train_batch_size": self.train_batch_size,
            "lr": self.lr,
            "score_kernel": self.score_kernel,
            "mixed_precision": self.mixed_precision,
            "textures": self.textures,
            "source_augment": self.source_augment,
        }

    # --- what a pipeline provides -------------------------------------------------------------
    @abstractmethod
    def build_model(self) -> nn.Module:
        """The network (called under a seeded RNG)."""

    @abstractmethod
    def training_loss(self, model: nn.Module, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """Scalar loss of one batch ``(image, label[, source])`` on the device (images 3-channel,
        not padded: pad with ``self.pad`` and crop the outputs back)."""

    @abstractmethod
    def anomaly_maps(self, model: nn.Module, images: torch.Tensor) -> torch.Tensor:
        """Maps ``(B, H, W)`` in [0, 1] for padded float32 ``(B, C, H, W)`` images (eval mode)."""

    def make_optimizer(self, parameters) -> torch.optim.Optimizer:
        return torch.optim.AdamW(parameters, lr=self.lr, weight_decay=1e-4)

    def lr_factor(self, step: int) -> float:
        """Learning-rate multiplier at ``step`` (default: cosine decay from 1 to 0.05)."""
        return 0.05 + 0.95 * 0.5 * (1.0 + math.cos(math.pi * min(step, self.steps) / max(self.steps, 1)))

    def before_step(self, model: nn.Module, step: int, steps_per_round: int) -> None:
        """Called before every optimiser step on the unwrapped model (e.g. to copy parameters)."""

    # --- Detector ----------------------------------------------------------------------------
    def _fit(self, images: torch.Tensor) -> None:
        train_on_synthetic(self, images, accelerator=None, progress=False)

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        m = self.pad_multiple
        ph, pw = (-x.shape[-2]) % m, (-x.shape[-1]) % m
        return F.pad(x, (0, pw, 0, ph), mode="reflect") if (ph or pw) else x

    def _score_batch(self, images: torch.Tensor) -> torch.Tensor:
        self.model.eval()
        h, w = images.shape[-2:]
        x = images.to(self.device)
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        return self.anomaly_maps(self.model, self.pad(x))[..., :h, :w].float()

    def _image_scores(self, maps: torch.Tensor) -> torch.Tensor:
        k = self.score_kernel
        smooth = F.avg_pool2d(maps[:, None], k, stride=1, padding=k // 2, count_include_pad=False)
        return smooth.flatten(1).amax(dim=1)

    def _state(self) -> dict[str, torch.Tensor]:
        state = dict(self.model.state_dict())
        state["trained_steps"] = torch.tensor(self.trained_steps)
        return state

    def _load_state(self, state: dict[str, torch.Tensor]) -> None:
        state = dict(state)
        self.trained_steps = int(state.pop("trained_steps", torch.tensor(0)))
        self.model.load_state_dict(state)
        self.model.eval()

    def _move(self, device: torch.device) -> None:
        self.model.to(device)

    def training_data(self, images: torch.Tensor) -> SyntheticAnomalies:
        """The endless synthetic training set of float32 ``(N, C, H, W)`` fit images in [0, 1]."""
        uint8_images = (images.permute(0, 2, 3, 1).clamp(0, 1) * 255.0).round().to(torch.uint8).numpy()
        textures = () if self.textures is None else texture_files(self.textures)
        return SyntheticAnomalies(
            uint8_images, self.methods, self.seed, length=2**62, ratio=self.anomaly_ratio,
            label=self.label_kind, with_source=self.needs_source, textures=textures,
            source_augment=self.source_augment,
        )


def _resume(ckpt_dir: Path, model, optimizer) -> int:
    """The step of the newest checkpoint in ``ckpt_dir``, its model and optimizer state loaded; 0 without one."""
    latest = latest_checkpoint(ckpt_dir)
    if latest is None:
        return 0
    state = torch.load(latest, map_location="cpu", weights_only=True)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    return int(state["step"])


def _step_batches(detector: SyntheticTrainedDetector, dataset, steps: list[list[int]]):
    """The batches of synthetic samples ``steps`` name, one per step: from a loader, or made
    batched on ``detector.synth_device`` (the same samples, no loader processes)."""
    if detector.synth_device is None:
        return torch.utils.data.DataLoader(
            dataset, batch_size=detector.train_batch_size, sampler=[i for step in steps for i in step],
            num_workers=detector.num_workers,
        )
    make = DeviceSyntheticBatches(dataset, detector.synth_device)
    return (make.batch(indices) for indices in steps)


def _optimise(detector: SyntheticTrainedDetector, model, optimizer, data: tuple, accelerator, scaler,
              device: torch.device, autocast_dtype) -> torch.Tensor:
    """One optimiser step on the training loss of ``data`` (under the accelerator's or this process's autocast)."""
    if accelerator is not None:
        with accelerator.autocast():
            loss = detector.training_loss(model, data)
    else:
        with torch.autocast(device.type, dtype=autocast_dtype or torch.bfloat16, enabled=autocast_dtype is not None):
            loss = detector.training_loss(model, data)
    optimizer.zero_grad(set_to_none=True)
    if accelerator is not None:
        accelerator.backward(loss)
        optimizer.step()
    else:
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    return loss


def train_on_synthetic(
    detector: SyntheticTrainedDetector,
    images: torch.Tensor,
    *,
    accelerator: Any = None,
    checkpoint_dir: str | Path | None = None,
    checkpoint_every: int = 0,
    resume: bool = False,
    progress: bool = True,
    stop_at: int | None = None,
) -> SyntheticTrainedDetector:
    """Train ``detector.model`` for ``detector.steps`` steps on synthetic anomalies in ``images``.

    ``images``          float32 ``(N, C, H, W)`` in [0, 1], anomaly-free, at the working size.
    ``accelerator``     an ``accelerate.Accelerator`` (CPU, GPUs, mixed precision); ``None`` trains
                        in this process on ``detector.device``.
    ``checkpoint_dir``  where ``step_XXXXXXX.pt`` checkpoints go (every ``checkpoint_every``
                        steps and at the end); ``resume=True`` continues from the newest one.
    ``stop_at``         stop (with a checkpoint) after this step, as if interrupted; the schedule
                        still follows ``detector.steps``, so a later ``resume`` finishes the same run.

    Sample ``j`` of step ``s`` on process ``r`` of ``P`` is synthetic sample
    ``(s * P + r) * batch + j``, so a resumed run sees exactly the data an uninterrupted run would.
    """
    from tqdm.auto import tqdm

    if images.shape[0] < 1:
        raise DetectError(f"no fit images: {detector.name} needs at least one anomaly-free image")
    batch = detector.train_batch_size
    rank = accelerator.process_index if accelerator is not None else 0
    world = accelerator.num_processes if accelerator is not None else 1
    is_main = accelerator.is_main_process if accelerator is not None else True
    dataset = detector.training_data(images)
    # a "round" (the defect-map paper's training session) is one pass over the fit images
    steps_per_round = max(1, math.ceil(images.shape[0] / (batch * world)))

    model = detector.model
    model.train()
    optimizer = detector.make_optimizer([p for p in model.parameters() if p.requires_grad])
    ckpt_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
    start = _resume(ckpt_dir, model, optimizer) if resume and ckpt_dir is not None else 0
    if accelerator is not None:
        model, optimizer = accelerator.prepare(model, optimizer)
        device = accelerator.device
    else:
        device = detector.device
        model.to(device)

    end = detector.steps if stop_at is None else max(start, min(int(stop_at), detector.steps))
    loader = _step_batches(detector, dataset, [
        list(range((step * world + rank) * batch, (step * world + rank + 1) * batch)) for step in range(start, end)
    ])
    autocast_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(detector.mixed_precision)
    # without an accelerator, fp16 needs its own loss scaling (the accelerator does it otherwise)
    scaler = torch.amp.GradScaler(device.type, enabled=accelerator is None and autocast_dtype is torch.float16)
    bar = tqdm(total=detector.steps, initial=start, desc=f"train {detector.name}", disable=not (progress and is_main))
    step = start
    # small convolutions at batch 8: on the CPU one thread is fastest (benchmarks/thread_overhead.py)
    with fastest_threads(device):
        for data in loader:
            data = tuple(t.to(device) for t in data)
            if data[0].shape[1] == 1:  # gray images: the networks take 3 channels
                data = tuple(t.expand(-1, 3, -1, -1) if i != 1 else t for i, t in enumerate(data))
            for group in optimizer.param_groups:
                group["lr"] = detector.lr * detector.lr_factor(step)
            detector.before_step(accelerator.unwrap_model(model) if accelerator is not None else model, step, steps_per_round)
            loss = _optimise(detector, model, optimizer, data, accelerator, scaler, device, autocast_dtype)
            step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.4f}")
            if ckpt_dir is not None and (step == end or (checkpoint_every and step % checkpoint_every == 0)):
                _save_checkpoint(ckpt_dir, step, model, optimizer, detector, accelerator, is_main)
    bar.close()
    if accelerator is not None:
        model = accelerator.unwrap_model(model)
    detector.model = model.eval()
    detector.trained_steps = step
    return detector


def _save_checkpoint(ckpt_dir: Path, step: int, model, optimizer, detector: Detector, accelerator, is_main: bool) -> None:
    if accelerator is not None:
        accelerator.wait_for_everyone()
        model = accelerator.unwrap_model(model)
    if is_main:
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        path = ckpt_dir / f"step_{step:07d}.pt"
        with atomic_path(path) as tmp:  # a crash mid-write never leaves a truncated checkpoint behind
            torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step,
                        "config": json.dumps(detector.config())}, tmp)
    if accelerator is not None:
        accelerator.wait_for_everyone()


def latest_checkpoint(ckpt_dir: str | Path) -> Path | None:
    """Newest ``step_XXXXXXX.pt`` in ``ckpt_dir``, or ``None``."""
    found = sorted(Path(ckpt_dir).glob("step_*.pt"))
    return found[-1] if found else None


def focal_loss(logits: torch.Tensor, target: torch.Tensor, *, gamma: float = 2.0, alpha: float | None = None) -> torch.Tensor:
    """Mean focal loss ``-α_t (1 - p_t)^γ log p_t`` (Lin et al. 2017) of per-pixel logits.

    ``logits`` and ``target`` float ``(B, 1, H, W)``, target in [0, 1] (soft targets allowed:
    ``log p_t`` is the binary cross-entropy). ``alpha=None`` weighs both classes 1, as DRAEM's
    implementation does; ``alpha=a`` weighs anomalous pixels ``a`` and the others ``1 - a``.
    """
    logits = logits.float()
    ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    p = torch.sigmoid(logits)
    p_t = p * target + (1.0 - p) * (1.0 - target)
    loss = (1.0 - p_t).clamp_min(0.0) ** gamma * ce
    if alpha is not None:
        loss = (alpha * target + (1.0 - alpha) * (1.0 - target)) * loss
    return loss.mean()


def ssim_loss(a: torch.Tensor, b: torch.Tensor, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """``mean(1 - SSIM(a, b))`` with a Gaussian window (Wang et al. 2004), differentiable.

    ``a``, ``b`` float ``(B, C, H, W)`` in [0, 1]; SSIM per pixel and channel with constants
    ``(0.01)^2`` and ``(0.03)^2`` (data range 1), windows clipped at the border by zero padding
    normalised by the window mass, as in DRAEM's implementation (window 11, sigma 1.5).
    """
    a, b = a.float(), b.float()
    c = a.shape[1]
    x = torch.arange(window, dtype=torch.float32, device=a.device) - (window - 1) / 2
    g = torch.exp(-0.5 * (x / sigma) ** 2)
    g = g / g.sum()
    kernel = (g[:, None] * g[None, :]).expand(c, 1, window, window).contiguous()

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(t, kernel, padding=window // 2, groups=c)

    ones = torch.ones_like(a[:1, :1]).expand(1, c, -1, -1)
    mass = blur(ones)  # < 1 near the border: normalise so border windows are proper means
    mu_a, mu_b = blur(a) / mass, blur(b) / mass
    var_a = blur(a * a) / mass - mu_a**2
    var_b = blur(b * b) / mass - mu_b**2
    cov = blur(a * b) / mass - mu_a * mu_b
    c1, c2 = 0.01**2, 0.03**2
    ssim = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return (1.0 - ssim).mean()
