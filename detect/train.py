"""Train the self-supervised segmentation detector on synthetic anomalies (the NSA recipe).

Command line (any of)::

    anomalyforge train --fit path/to/train/good --output runs/seg --methods synagen --steps 2000
    python -m detect.train ...
    accelerate launch --multi_gpu --num_processes 4 -m detect.train ... --mixed-precision bf16

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



def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--fit", required=True, help="folder of anomaly-free images (searched recursively)")
    parser.add_argument("--output", required=True, help="folder for checkpoints/ and detector.pt")
    parser.add_argument("--methods", default="synagen",
                        help="synth methods that make the training anomalies, comma separated (a mix is drawn uniformly)")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=8, help="images per step and process")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--image-size", type=int, default=None, help="resize images to SIZE x SIZE (default: native)")
    parser.add_argument("--mixed-precision", choices=("no", "fp16", "bf16"), default="no")
    parser.add_argument("--checkpoint-every", type=int, default=500)
    parser.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in OUTPUT/checkpoints")
    parser.add_argument("--workers", type=int, default=0, help="data-loader processes making anomalies")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-pretrained", action="store_true", help="random encoder instead of ImageNet weights")
    parser.add_argument("--cpu", action="store_true", help="do not use GPUs even when present")
    parser.add_argument("--no-progress", action="store_true")
    return parser


def run(args: argparse.Namespace) -> int:
    from .cli import make_accelerator
    from .images import read_image_folder
    from .segmenter import Segmenter, train_segmenter

    accelerator = make_accelerator(args.cpu, mixed_precision=args.mixed_precision)
    images, _ = read_image_folder(args.fit)
    detector = Segmenter(
        methods=tuple(m.strip() for m in args.methods.split(",") if m.strip()),
        steps=args.steps, train_batch_size=args.batch_size, lr=args.lr, image_size=args.image_size,
        mixed_precision=args.mixed_precision, pretrained=not args.no_pretrained, seed=args.seed,
        num_workers=args.workers, device=str(accelerator.device),
    )
    out = Path(args.output)
    # the detector's own fit() trains in-process; here the loop runs under the accelerator instead
    train_segmenter(
        detector, detector.prepare_fit(images), accelerator=accelerator,
        checkpoint_dir=out / "checkpoints", checkpoint_every=args.checkpoint_every,
        resume=args.resume, progress=not args.no_progress,
    )
    if accelerator.is_main_process:
        path = detector.to("cpu").save(out / "detector.pt")
        print(f"trained {detector.trained_steps} steps; detector saved to {path}")
    accelerator.wait_for_everyone()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    from .cli import script_main

    return script_main(sys.modules[__name__], argv)


if __name__ == "__main__":
    sys.exit(main())
