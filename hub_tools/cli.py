"""``anomalyforge hub``: build, push, list and load versioned datasets.

    anomalyforge hub build INPUT_DIR BUILD_DIR [generation options of `anomalyforge synth`]
    anomalyforge hub push BUILD_DIR --repo ORG/NAME --version 1.1.0 [--private] [--message ...]
    anomalyforge hub versions ORG/NAME
    anomalyforge hub load ORG/NAME --version 1.1.0 [--offline] [--save-to DIR]

Exit codes: 0 success, 1 a push/load that failed on the way (network, server; run it again),
2 bad input (invalid build, refused version, bad options, a token the Hub refuses: 401/403, a
dataset or version that is not there). Nothing any of them prints carries the value of the Hugging
Face token.
"""

from __future__ import annotations

import argparse
import functools
import sys
from typing import Any, Callable

from synth import arguments
from synth.errors import SynthError

from .errors import HubToolsError, PublishError
from .tokens import redact, redacted_output, resolve_token


def _generation_options() -> tuple[Any, Any]:
    """``(add_generation_options, generation_from_args)`` of ``anomalyforge synth``."""
    from synth.cli import add_generation_options, generation_from_args

    return add_generation_options, generation_from_args


def register(subparsers: argparse._SubParsersAction) -> None:
    hub = subparsers.add_parser(
        "hub",
        help="build, publish, list and load versioned datasets on the Hugging Face Hub",
        description="Versioned synthetic-anomaly datasets on the Hugging Face Hub.",
    )
    sub = hub.add_subparsers(dest="hub_command", metavar="ACTION")
    sub.required = True

    build = sub.add_parser(
        "build",
        help="generate anomalies and write parquet shards + dataset card to BUILD_DIR",
        description=(
            "Run the generation protocol on INPUT_DIR (anomaly-free images; region masks as "
            "<name>_mask.png beside them or in --region-masks) -- or read an imagefolder written by "
            "`anomalyforge synth` (its anomaly-free images are found where that run read them, or "
            "given with --sources) -- and write BUILD_DIR/data/*.parquet "
            "(splits test and good), BUILD_DIR/README.md and BUILD_DIR/build.json. "
            "`datasets.load_dataset(BUILD_DIR)` reads the result. Rerunning resumes."
        ),
    )
    build.add_argument("input_dir", metavar="INPUT_DIR")
    build.add_argument("build_dir", metavar="BUILD_DIR")
    build.add_argument("--sources", default=None, metavar="DIR",
                       help="anomaly-free images an existing imagefolder INPUT_DIR was made from (the good split; "
                            "default: the input folder its synth run recorded)")
    build.add_argument("--diff", action="store_true", help="add the diff column (|synthetic - source|)")
    build.add_argument("--shard-mb", type=arguments.positive, default=500, metavar="MB",
                       help="close a parquet shard after about this many MB of images (default 500)")
    add_generation_options, _ = _generation_options()
    add_generation_options(build)
    build.set_defaults(func=_redacting(run_build))

    push = sub.add_parser(
        "push",
        help="publish BUILD_DIR as a new immutable version (one commit + tag vX.Y.Z)",
        description=(
            "Validate BUILD_DIR and push it as one commit to the dataset repo, then tag that commit "
            "vVERSION. Refuses a version that exists or is not above the latest. Token: HF_TOKEN or "
            "`hf auth login`."
        ),
    )
    push.add_argument("build_dir", metavar="BUILD_DIR")
    push.add_argument("--repo", required=True, metavar="ORG/NAME")
    push.add_argument("--version", required=True, metavar="X.Y.Z")
    push.add_argument("--private", action="store_true", help="create the repo as private (new repos only)")
    push.add_argument("--message", default=None, help="changelog entry / commit description of this version")
    push.add_argument("--license", default=None, help="license id of the dataset card, e.g. cc-by-4.0 (default other)")
    push.add_argument("--pretty-name", default=None, help="title of the dataset card")
    push.add_argument("--attribution", default=None,
                      help="where the anomaly-free source images come from and their license (shown in the card)")
    push.add_argument("--diversity", default=None, metavar="FILE",
                      help="JSON mapping score name -> value (from `anomalyforge diversity`) for the card")
    push.set_defaults(func=_redacting(run_push))

    versions = sub.add_parser("versions", help="list published versions with dates and row counts")
    versions.add_argument("repo", metavar="ORG/NAME", type=repo_id)
    versions.set_defaults(func=_redacting(run_versions))

    load = sub.add_parser("load", help="load one published version (prints its splits)")
    load.add_argument("repo", metavar="ORG/NAME", type=repo_id)
    load.add_argument("--version", required=True, metavar="X.Y.Z")
    load.add_argument("--offline", action="store_true", help="read the version from the local cache only")
    load.add_argument("--save-to", default=None, metavar="DIR",
                      help="also save the DatasetDict to DIR (save_to_disk; DIR appears only once complete)")
    load.set_defaults(func=_redacting(run_load))


def repo_id(text: str) -> str:
    """An argparse type: a dataset repo id ``ORG/NAME`` as the Hub spells them (checked before any request)."""
    from .publish import repo_id_problem

    problem = repo_id_problem(text)
    if problem is not None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a valid repo id: {problem}")
    return text


def _redacting(command: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Run ``command`` with the token's value scrubbed from all it prints (messages, warnings, logs)."""

    @functools.wraps(command)
    def run(args: argparse.Namespace) -> int:
        with redacted_output(resolve_token()):
            return command(args)

    return run


def _fail(exc: Exception) -> int:
    code = 1 if isinstance(exc, PublishError) else 2
    print(f"anomalyforge hub: error: {redact(str(exc), resolve_token())}", file=sys.stderr)
    return code


def run_build(args: argparse.Namespace) -> int:
    from .build import build_dataset

    _, generation_from_args = _generation_options()
    try:
        config, run = generation_from_args(args)
        input_dir = args.input_dir
        if input_dir.startswith("skimage:"):  # scikit-image's CC0 textures, as `anomalyforge synth` accepts
            from pathlib import Path

            from synth.cli import materialize_examples

            input_dir = str(materialize_examples(input_dir, Path(args.build_dir) / "sources"))
        result = build_dataset(
            input_dir,
            args.build_dir,
            sources_dir=args.sources,
            include_diff=args.diff,
            shard_bytes=args.shard_mb * 1024 * 1024,
            config=config,
            run=run,
        )
    except (HubToolsError, ValueError, OSError) as exc:
        return _fail(exc)
    counts = ", ".join(f"{k} {v}" for k, v in result.counts.items())
    print(f"built {result.build_dir}: {counts} rows; shards in {result.build_dir / 'data'}")
    return 0


def run_push(args: argparse.Namespace) -> int:
    from .publish import push_build

    try:
        result = push_build(
            args.build_dir,
            args.repo,
            args.version,
            private=args.private,
            message=args.message,
            license=args.license,
            pretty_name=args.pretty_name,
            attribution=args.attribution,
            diversity=args.diversity,
            progress=True,
        )
    except HubToolsError as exc:
        return _fail(exc)
    for note in result.notes:
        print(f"anomalyforge hub: note: {note}", file=sys.stderr)
    if result.existed:
        print(f"{result.repo_id} {result.tag} is already published with this build at commit "
              f"{result.commit[:12]}; nothing to do: {result.url}")
        return 0
    what = "published" if result.created_commit else "finished"
    print(f"{what} {result.repo_id} {result.tag} at commit {result.commit[:12]}: {result.url}")
    return 0


def run_versions(args: argparse.Namespace) -> int:
    from .publish import list_versions

    try:
        found = list_versions(args.repo)
    except HubToolsError as exc:
        return _fail(exc)
    if not found:
        print(f"{args.repo} has no published versions")
        return 0
    splits = sorted({s for v in found for s in v.rows})
    header = ["version", "date", "commit", *splits]
    rows = [[v.tag, (v.date or "?")[:19], v.commit[:12], *(str(v.rows.get(s, "?")) for s in splits)] for v in found]
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip())
    return 0


def run_load(args: argparse.Namespace) -> int:
    from .publish import load_version

    try:
        if args.save_to:  # refused before the download, not after it
            from synth.arguments import new_path

            new_path(args.save_to, "--save-to")
        ds = load_version(args.repo, args.version, offline=args.offline)
    except (HubToolsError, SynthError) as exc:
        return _fail(exc)
    print(ds)
    if args.save_to:
        try:
            save_whole(ds, args.save_to)
        except OSError as exc:  # a full disk, a quota: exit 2, as every command's failed write
            reason = exc.strerror or str(exc)
            return _fail(HubToolsError(f"cannot save to {args.save_to}: {reason}; nothing was left there"))
        print(f"saved to {args.save_to}")
    return 0


def save_whole(ds: Any, path: str) -> None:
    """``ds.save_to_disk`` into a partial folder beside ``path``, renamed to ``path`` once complete:
    a failure or a kill midway never leaves a half-saved dataset at ``path``."""
    from synth.atomic import atomic_folder

    with atomic_folder(path) as tmp:
        ds.save_to_disk(str(tmp))
