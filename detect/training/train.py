"""Train a detection pipeline on synthetic anomalies: the segmenter (NSA recipe), DRAEM or defect-map prediction.

Command line (any of)::

    anomalyforge train --fit path/to/train/good --output runs/seg --methods synagen --steps 2000
    anomalyforge train --pipeline draem --anomaly-ratio 0.5 --methods draem:0.5,cutpaste:0.5 ...
    python -m detect.training.train ...
    accelerate launch --multi_gpu --num_processes 4 -m detect.training.train ... --mixed-precision bf16

Writes ``OUTPUT/checkpoints/step_XXXXXXX.pt`` every ``--checkpoint-every`` steps (and at the end)
and the fitted detector ``OUTPUT/detector.pt`` (use it with ``anomalyforge evaluate
--detector-file``). ``--resume`` continues from the newest checkpoint with exactly the data an
uninterrupted run would have seen. A CPU smoke test: ``--image-size 64 --steps 30``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from detect.runtime import make_accelerator, parse_options, script_main
from synth import arguments

#: the detectors that train on synthetic anomalies (names in detect.registry)
PIPELINES = ("segmenter", "draem", "defect_map")


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--fit", required=True, help="folder of anomaly-free images (searched recursively)")
    parser.add_argument("--output", required=True, help="folder for checkpoints/ and detector.pt")
    parser.add_argument("--pipeline", default="segmenter", choices=PIPELINES,
                        help="segmenter (NSA recipe, default), draem, or defect_map")
    parser.add_argument("--methods", nargs="+", default=None,
                        help="synth methods that make the training anomalies, space- or comma-separated (a mix is "
                             "drawn uniformly) or with weights, e.g. draem:0.7,cutpaste:0.3 or draem=0.7 cutpaste=0.3 "
                             "(a hybrid); default: the "
                             "pipeline's own (segmenter synagen, draem draem, defect_map foreground_perlin)")
    parser.add_argument("--anomaly-ratio", type=arguments.number(0, 1), default=None,
                        help="share of training samples that carry an anomaly, 0..1 (default: the pipeline's, "
                             "segmenter 1.0, draem and defect_map 0.5)")
    parser.add_argument("--steps", type=arguments.positive, default=2000)
    parser.add_argument("--batch-size", type=arguments.positive, default=8, help="images per step and process")
    parser.add_argument("--lr", type=arguments.number(0, low_open=True), default=None, help="learning rate (default: the pipeline's)")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="pipeline option, e.g. rec_width=128 (repeatable; JSON values)")
    parser.add_argument("--image-size", type=arguments.integer(8), default=None, help="resize images to SIZE x SIZE (default: native)")
    parser.add_argument("--mixed-precision", choices=("no", "fp16", "bf16"), default="no")
    parser.add_argument("--checkpoint-every", type=arguments.positive, default=500)
    parser.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in OUTPUT/checkpoints")
    parser.add_argument("--workers", type=arguments.non_negative, default=0, help="data-loader processes making anomalies")
    parser.add_argument("--synth-device", default=None, metavar="DEVICE",
                        help="make the training anomalies batched on this torch device (cuda, cuda:N, cpu) instead of "
                             "in CPU loader processes (every method renders batched: synth.batched.BATCHED_METHODS; "
                             "default: the CPU loader)")
    parser.add_argument("--seed", type=arguments.seed, default=0)
    parser.add_argument("--no-pretrained", action="store_true",
                        help="random encoder instead of ImageNet weights (segmenter, defect_map)")
    parser.add_argument("--cpu", action="store_true", help="do not use GPUs even when present")
    parser.add_argument("--no-progress", action="store_true")
    return parser


def run(args: argparse.Namespace) -> int:
    from detect.images import read_image_folder
    from detect.registry import build_detector
    from detect.training.synthetic_training import train_on_synthetic

    accelerator = make_accelerator(args.cpu, mixed_precision=args.mixed_precision)
    images, _ = read_image_folder(args.fit)
    options = parse_options(args.option)
    if args.methods is not None:
        options["methods"] = parse_methods(args.methods)
    if args.anomaly_ratio is not None:
        options["anomaly_ratio"] = args.anomaly_ratio
    if args.lr is not None:
        options["lr"] = args.lr
    if args.no_pretrained:
        options["pretrained"] = False
    detector = build_detector(
        args.pipeline, steps=args.steps, train_batch_size=args.batch_size, image_size=args.image_size,
        mixed_precision=args.mixed_precision, seed=args.seed, num_workers=args.workers,
        synth_device=args.synth_device,
        device=str(accelerator.device), **options,
    )
    out = Path(args.output)
    # the detector's own fit() trains in-process; here the loop runs under the accelerator instead
    train_on_synthetic(
        detector, detector.prepare_fit(images), accelerator=accelerator,
        checkpoint_dir=out / "checkpoints", checkpoint_every=args.checkpoint_every,
        resume=args.resume, progress=not args.no_progress,
    )
    if accelerator.is_main_process:
        path = detector.to("cpu").save(out / "detector.pt")
        print(f"trained {detector.trained_steps} steps; detector saved to {path}")
    accelerator.wait_for_everyone()
    return 0


def parse_methods(text: str | Sequence[str]) -> tuple[str, ...] | dict[str, float]:
    """``"a,b"`` or ``["a", "b"]`` -> ``("a", "b")`` (uniform mix); ``"a:0.7,b:0.3"`` (or ``a=0.7``)
    -> ``{"a": 0.7, "b": 0.3}`` (weights). The list syntax is ``anomalyforge synth``'s."""
    from synth.config import parse_names

    from detect.errors import DetectError

    parts = [p.replace("=", ":") for p in parse_names(text, "--methods") or []]
    if not parts:
        raise DetectError("--methods is empty; name at least one synth method")
    if not any(":" in p for p in parts):
        return tuple(parts)
    weights = {}
    for part in parts:
        name, _, weight = part.partition(":")
        try:
            weights[name.strip()] = float(weight) if weight else 1.0
        except ValueError:
            raise DetectError(f"--methods {part!r}: write NAME:WEIGHT with a number, e.g. draem:0.5") from None
    return weights


def main(argv: Sequence[str] | None = None) -> int:
    return script_main(sys.modules[__name__], argv)


if __name__ == "__main__":
    sys.exit(main())
