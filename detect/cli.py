"""``anomalyforge evaluate``, ``train``, ``bench``, ``diversity``, ``quality`` and ``stress``."""

from __future__ import annotations

from detect.evaluation import bench, evaluate, stress
from detect.quality import diversity, metrics as quality
from detect.runtime import guarded
from detect.training import train


def register(subparsers) -> None:
    """Add the detect subcommands to the ``anomalyforge`` parser."""
    commands = (
        ("evaluate", evaluate,
         "recall at k false positives (and AUROC, AP, AUPRO) of a detector on a published dataset"),
        ("train", train, "train a detection pipeline (segmenter, draem, defect_map) on synthetic anomalies"),
        ("bench", bench,
         "ASBench grid: syntheses x pipelines x anomaly ratios x seeds on real-defect sets, with reports"),
    )
    for name, module, summary in commands:
        # the module's first docstring line, without its reStructuredText ``literal`` marks
        p = subparsers.add_parser(name, help=summary, description=module.__doc__.split("\n")[0].replace("``", ""))
        module.add_arguments(p)
        p.set_defaults(func=guarded(module.run))

    for module in (diversity, quality, stress):
        module.register_cli(subparsers)
