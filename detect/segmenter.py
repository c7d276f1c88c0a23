"""A self-supervised segmentation detector trained on synthetic anomalies (the NSA recipe).

Schlüter et al., "Natural Synthetic Anomalies for Self-Supervised Anomaly Detection and
Localization" (ECCV 2022): a network learns to *localise* anomalies that are made on the fly in
anomaly-free images, so it never sees a real defect. Here:

* network: a small U-Net whose encoder is the ImageNet EfficientNet-Lite0 (first four stages,
  strides 2..16) and whose decoder is four upsampling steps with skip connections -> one logit per
  pixel;
* training data: each sample is a fit image (randomly flipped) with one anomaly from
  ``synth.synthesize`` using any registered method or a mix (``methods=("synagen", "nsa")``);
* labels: NSA's logistic label ``mask / (1 + exp(-k (d - x0)))`` with ``d`` the per-pixel mean
  absolute change over channels in 0-255 units, ``k = 1/3``, ``x0 = 7``: faint changes count less;
* loss: binary cross-entropy on the logits;
* anomaly map: sigmoid of the logits; image score: maximum of the map after a ``score_kernel`` mean
  filter (robust to single hot pixels).

Training (``train_segmenter``) runs under ``accelerate`` (CPU, one or many GPUs, mixed precision),
writes checkpoints, resumes from the last one and shows a tqdm progress bar; see ``detect.train``
for the command line.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .backbones import IMAGENET_MEAN, IMAGENET_STD, efficientnet_lite0
from .detector import Detector
from .errors import DetectError

LOGISTIC_K = 1.0 / 3.0
LOGISTIC_X0 = 7.0


def logistic_label(mask: np.ndarray, abs_change: np.ndarray, k: float = LOGISTIC_K, x0: float = LOGISTIC_X0) -> np.ndarray:
    """NSA's logistic label, float32 ``(H, W)`` in [0, 1).

    ``mask`` bool ``(H, W)`` changed pixels; ``abs_change`` float ``(H, W)`` mean absolute change
    over channels in 0-255 units. ``label = mask / (1 + exp(-k (abs_change - x0)))``.
    """
    return (mask.astype(np.float32) / (1.0 + np.exp(-k * (abs_change.astype(np.float32) - x0)))).astype(np.float32)


class _Up(nn.Module):
    def __init__(self, in_ch: int, skip_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(in_ch + skip_ch, out_ch, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None) -> torch.Tensor:
        size = skip.shape[-2:] if skip is not None else tuple(s * 2 for s in x.shape[-2:])
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        if skip is not None:
            x = torch.cat([x, skip], dim=1)
        return self.conv(x)


class LiteUNet(nn.Module):
    """U-Net on EfficientNet-Lite0: float32 ``(N, 3, H, W)`` in [0, 1] -> logits ``(N, 1, H, W)``.

    H and W must be multiples of 16 (``Segmenter`` pads). 0.43 M parameters when ``width=32``.
    """

    def __init__(self, pretrained: bool = True, width: int = 32) -> None:
        super().__init__()
        encoder = efficientnet_lite0(pretrained)
        self.stem = nn.Sequential(encoder._conv_stem, encoder._bn0, nn.ReLU6())
        ends = encoder.stage_ends  # last block index of each stage
        blocks = list(encoder._blocks)
        self.stages = nn.ModuleList(
            [nn.Sequential(*blocks[(ends[i - 1] + 1 if i else 0) : ends[i] + 1]) for i in range(4)]
        )  # outputs: 16 ch /2, 24 ch /4, 40 ch /8, 80 ch /16
        self.up3 = _Up(80, 40, 2 * width)
        self.up2 = _Up(2 * width, 24, width)
        self.up1 = _Up(width, 16, width)
        self.up0 = _Up(width, 0, width // 2)
        self.head = nn.Conv2d(width // 2, 1, 1)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        x = self.stem((x - self.mean) / self.std)
        skips = []
        for stage in self.stages:
            x = stage(x)
            skips.append(x)
        s2, s4, s8, s16 = skips
        y = self.up3(s16, s8)
        y = self.up2(y, s4)
        y = self.up1(y, s2)
        y = self.up0(y, None)
        return self.head(y)


class SyntheticAnomalies(torch.utils.data.Dataset):
    """Sample ``i`` = one fit image with one synthetic anomaly, fully determined by ``(seed, i)``.

    ``images``   uint8 ``(N, H, W, C)`` anomaly-free images (C = 1 or 3).
    ``methods``  synth method names; each sample draws one uniformly.
    Returns ``(image float32 (C, H, W) in [0, 1], label float32 (1, H, W) in [0, 1])``.
    """

    def __init__(self, images: np.ndarray, methods: Sequence[str], seed: int, length: int) -> None:
        self.images = images
        self.methods = tuple(methods)
        self.seed = int(seed)
        self.length = int(length)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        from synth import SynthError, synthesize

        rng = np.random.default_rng([self.seed, int(index)])
        for _attempt in range(8):
            source = self.images[int(rng.integers(len(self.images)))]
            if rng.random() < 0.5:
                source = source[:, ::-1]
            if rng.random() < 0.5:
                source = source[::-1]
            source = np.ascontiguousarray(source)
            partner = self.images[int(rng.integers(len(self.images)))]
            method = self.methods[int(rng.integers(len(self.methods)))]
            image = source[:, :, 0] if source.shape[2] == 1 else source
            try:
                anomaly = synthesize(
                    image, method, seed=int(rng.integers(2**31)),
                    partners=(partner[:, :, 0] if partner.shape[2] == 1 else partner,),
                )
            except SynthError:
                continue  # an anomaly that does not fit this image: draw another
            if anomaly.mask.any():
                break
        else:
            raise DetectError(
                f"could not make a synthetic anomaly with {self.methods} in 8 attempts; "
                "are the fit images large enough (>= 32 px) and not constant?"
            )
        out = anomaly.image.reshape(source.shape).astype(np.float32)
        change = np.abs(out - source.astype(np.float32)).mean(axis=2)  # 0..255 units
        label = logistic_label(anomaly.mask, change)
        return (
            torch.from_numpy(out / 255.0).permute(2, 0, 1).contiguous(),
            torch.from_numpy(label)[None],
        )


class Segmenter(Detector):
    """Self-supervised segmentation detector (NSA recipe) on a Lite0 U-Net.

    ``methods``        synth methods to train on (names from ``synth.registry.METHODS``).
    ``steps``          optimiser steps; ``train_batch_size`` images per step (per process).
    ``lr``             AdamW learning rate (cosine decay to 5 %).
    ``score_kernel``   side of the mean filter applied before taking the image-score maximum.
    ``mixed_precision`` "no", "fp16" or "bf16" (training only).
    ``pretrained``     start the encoder from ImageNet weights.
    """

    name = "segmenter"

    def __init__(
        self,
        *,
        methods: Sequence[str] = ("synagen",),
        steps: int = 300,
        train_batch_size: int = 8,
        lr: float = 1e-3,
        score_kernel: int = 9,
        mixed_precision: str = "no",
        pretrained: bool = True,
        width: int = 32,
        num_workers: int = 0,
        **common: Any,
    ) -> None:
        super().__init__(**common)
        from synth.registry import METHODS

        unknown = [m for m in methods if m not in METHODS]
        if unknown or not methods:
            raise DetectError(f"unknown synth method(s) {unknown}; choose from {', '.join(METHODS)}")
        if steps < 1 or train_batch_size < 1:
            raise DetectError("steps and train_batch_size must be >= 1")
        if score_kernel < 1 or score_kernel % 2 == 0:
            raise DetectError(f"score_kernel must be an odd integer >= 1, got {score_kernel}")
        self.methods = tuple(methods)
        self.steps = int(steps)
        self.train_batch_size = int(train_batch_size)
        self.lr = float(lr)
        self.score_kernel = int(score_kernel)
        self.mixed_precision = mixed_precision
        self.pretrained = bool(pretrained)
        self.width = int(width)
        self.num_workers = int(num_workers)
        with torch.random.fork_rng(devices=[]):  # seeded decoder init without touching global state
            torch.manual_seed(self.seed)
            self.model = LiteUNet(pretrained=self.pretrained, width=self.width)
        self.model.to(self.device).eval()
        self.trained_steps = 0

    def config(self) -> dict[str, Any]:
        return {
            **super().config(),
            "methods": list(self.methods),
            "steps": self.steps,
            "train_batch_size": self.train_batch_size,
            "lr": self.lr,
            "score_kernel": self.score_kernel,
            "mixed_precision": self.mixed_precision,
            "pretrained": self.pretrained,
            "width": self.width,
        }

    def _fit(self, images: torch.Tensor) -> None:
        train_segmenter(self, images, accelerator=None, progress=False)

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, 1, H, W)`` for float32 ``(B, C, H, W)``; pads to a multiple of 16."""
        h, w = images.shape[-2:]
        ph, pw = (-h) % 16, (-w) % 16
        x = images.to(self.device)
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="reflect")
        return self.model(x)[..., :h, :w]

    def _score_batch(self, images: torch.Tensor) -> torch.Tensor:
        self.model.eval()
        return torch.sigmoid(self.logits(images).float())[:, 0]

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


def _lr_factor(step: int, total: int) -> float:
    """Cosine decay from 1 to 0.05 over ``total`` steps."""
    return 0.05 + 0.95 * 0.5 * (1.0 + math.cos(math.pi * min(step, total) / max(total, 1)))


def train_segmenter(
    detector: Segmenter,
    images: torch.Tensor,
    *,
    accelerator: Any = None,
    checkpoint_dir: str | Path | None = None,
    checkpoint_every: int = 0,
    resume: bool = False,
    progress: bool = True,
    stop_at: int | None = None,
) -> Segmenter:
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
        raise DetectError("no fit images: the segmenter needs at least one anomaly-free image")
    uint8_images = (images.permute(0, 2, 3, 1).clamp(0, 1) * 255.0).round().to(torch.uint8).numpy()
    batch = detector.train_batch_size
    rank = accelerator.process_index if accelerator is not None else 0
    world = accelerator.num_processes if accelerator is not None else 1
    is_main = accelerator.is_main_process if accelerator is not None else True
    dataset = SyntheticAnomalies(uint8_images, detector.methods, detector.seed, length=2**62)

    model = detector.model
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=detector.lr, weight_decay=1e-4)
    start = 0
    ckpt_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
    if resume and ckpt_dir is not None:
        latest = latest_checkpoint(ckpt_dir)
        if latest is not None:
            state = torch.load(latest, map_location="cpu", weights_only=True)
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            start = int(state["step"])
    if accelerator is not None:
        model, optimizer = accelerator.prepare(model, optimizer)
        device = accelerator.device
    else:
        device = detector.device
        model.to(device)

    end = detector.steps if stop_at is None else max(start, min(int(stop_at), detector.steps))

    def indices():
        for step in range(start, end):
            base = (step * world + rank) * batch
            yield from range(base, base + batch)

    loader = torch.utils.data.DataLoader(
        dataset, batch_size=batch, sampler=list(indices()), num_workers=detector.num_workers
    )
    autocast_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(detector.mixed_precision)
    # without an accelerator, fp16 needs its own loss scaling (the accelerator does it otherwise)
    scaler = torch.amp.GradScaler(device.type, enabled=accelerator is None and autocast_dtype is torch.float16)
    bar = tqdm(total=detector.steps, initial=start, desc="train segmenter", disable=not (progress and is_main))
    step = start
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        for group in optimizer.param_groups:
            group["lr"] = detector.lr * _lr_factor(step, detector.steps)
        if accelerator is not None:
            with accelerator.autocast():
                logits = model(_pad16(x))[..., : x.shape[-2], : x.shape[-1]]
        else:
            with torch.autocast(device.type, dtype=autocast_dtype or torch.bfloat16, enabled=autocast_dtype is not None):
                logits = model(_pad16(x))[..., : x.shape[-2], : x.shape[-1]]
        loss = F.binary_cross_entropy_with_logits(logits.float(), y)
        optimizer.zero_grad(set_to_none=True)
        if accelerator is not None:
            accelerator.backward(loss)
            optimizer.step()
        else:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
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


def _pad16(x: torch.Tensor) -> torch.Tensor:
    ph, pw = (-x.shape[-2]) % 16, (-x.shape[-1]) % 16
    return F.pad(x, (0, pw, 0, ph), mode="reflect") if (ph or pw) else x


def _save_checkpoint(ckpt_dir: Path, step: int, model, optimizer, detector: Segmenter, accelerator, is_main: bool) -> None:
    if accelerator is not None:
        accelerator.wait_for_everyone()
        model = accelerator.unwrap_model(model)
    if is_main:
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        path = ckpt_dir / f"step_{step:07d}.pt"
        tmp = path.with_suffix(".tmp")
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step,
                    "config": json.dumps(detector.config())}, tmp)
        tmp.replace(path)  # a crash mid-write never leaves a truncated checkpoint behind
    if accelerator is not None:
        accelerator.wait_for_everyone()


def latest_checkpoint(ckpt_dir: str | Path) -> Path | None:
    """Newest ``step_XXXXXXX.pt`` in ``ckpt_dir``, or ``None``."""
    found = sorted(Path(ckpt_dir).glob("step_*.pt"))
    return found[-1] if found else None
