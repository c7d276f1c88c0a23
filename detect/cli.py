"""``anomalyforge evaluate``, ``train``, ``bench``, ``diversity``, ``quality`` and ``stress``."""

from __future__ import annotations

from detect.evaluation import bench, evaluate, stress
from detect.quality import diversity, metrics as quality
from detect.runtime import guarded
from detect.training import train


def register(subparsers) -> None:
    """Add the detect subcommands to the ``anomalyforge`` parser."""
    p = subparsers.add_parser(
        "evaluate",
        help="recall at k false positives (and AUROC, AP, AUPRO) of a detector on a published dataset",
        description=evaluate.__doc__.split("\n")[0],
    )
    evaluate.add_arguments(p)
    p.set_defaults(func=guarded(evaluate.run))

    p = subparsers.add_parser(
        "train",
        help="train a detection pipeline (segmenter, draem, defect_map) on synthetic anomalies",
        description=train.__doc__.split("\n")[0],
    )
    train.add_arguments(p)
    p.set_defaults(func=guarded(train.run))

    p = subparsers.add_parser(
        "bench",
        help="ASBench grid: syntheses x pipelines x anomaly ratios x seeds on real-defect sets, with reports",
        description=bench.__doc__.split("\n")[0],
    )
    bench.add_arguments(p)
    p.set_defaults(func=guarded(bench.run))

    for module in (diversity, quality, stress):
        module.register_cli(subparsers)
