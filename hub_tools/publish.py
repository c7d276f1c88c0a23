"""Publish a build as an immutable version on the Hub, list versions, load a pinned version.

A version is one commit on the dataset repo's ``main`` branch plus the tag ``vMAJOR.MINOR.PATCH``
on exactly that commit. ``push_build``:

1. refuses a malformed version (ASCII ``MAJOR.MINOR.PATCH``, each part below 10^6) or repo id, and
   a version that is already tagged or not above the newest tag;
2. validates the build folder (schema, non-empty splits, masks matching their images);
3. reads the current head of ``main`` and the card there (for the changelog);
4. makes one commit (``HfApi.create_commit`` with ``parent_commit`` = that head, so a concurrent
   push is detected instead of silently overwritten; through Git LFS when the Hub has no Xet
   storage): the parquet shards, the card, ``build.json`` and the example images, and deletes the
   previous version's data files;
5. tags that commit.

Failure modes: an upload or commit that fails leaves the branch as it was (the Hub applies a
commit atomically) and no tag. A push whose commit landed but whose tag was not created is
finished by running the same command again: the head commit already holds this build for this
version, so only the tag is created. A push whose tag was created but whose answer was lost is
recognised the same way: the tag points at a commit whose ``build.json`` has this build's
fingerprint, so the rerun reports the version as published instead of refusing it. ``--private``
never silently publishes into an existing public repo: that is refused. Tokens come from
``huggingface_hub.get_token()`` (``HF_TOKEN`` or the ``hf auth login`` file) and their value is
scrubbed from every message this module raises (``hub_tools.tokens``). A 401 or 403 answer to a
request that carried the token is a ``CredentialsError`` naming what to change, never "run the same
push again": the same push would be refused the same way.
"""

from __future__ import annotations

import json
import os
import re
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from .build import validate_build
from .card import add_changelog_entry, read_changelog, render_card
from .errors import (CredentialsError, DatasetNotFoundError, HubToolsError, PublishError, RepoIdError,
                     StaleParentError, ValidationError, VersionError, VisibilityError)
from .loading import load_dataset
from .schema import SPLITS
from .tokens import redact, resolve_token

REPO_TYPE = "dataset"
BRANCH = "main"
#: ASCII digits only: ``\d`` and ``int()`` also take other scripts' digits ("1\u0661" would be 11)
_VERSION_RE = re.compile(r"v?(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)", re.ASCII)
#: each of MAJOR, MINOR and PATCH stays below this: a typo must not become a version no later one can pass
VERSION_PART_LIMIT = 10**6


def parse_version(text: str) -> tuple[int, int, int]:
    """``"1.2.3"`` or ``"v1.2.3"`` -> ``(1, 2, 3)``; ``VersionError`` naming the problem otherwise.

    Parts are ASCII digits without leading zeros, each below ``VERSION_PART_LIMIT``.
    """
    text = str(text)
    foreign = next((c for c in text if c.isdigit() and not c.isascii()), None)
    if foreign is not None:
        raise VersionError(
            f"version {text!r} contains the non-ASCII digit {foreign!r} (U+{ord(foreign):04X}); "
            "write versions with the digits 0-9 only, e.g. 1.2.0"
        )
    match = _VERSION_RE.fullmatch(text.strip())
    if not match:
        raise VersionError(f"version {text!r} is not MAJOR.MINOR.PATCH (e.g. 1.2.0)")
    numbers = tuple(int(g) for g in match.groups())
    too_big = [g for g, n in zip(match.groups(), numbers) if n >= VERSION_PART_LIMIT]
    if too_big:
        raise VersionError(
            f"version {text!r}: {too_big[0]} is too large; each part of MAJOR.MINOR.PATCH must be below "
            f"{VERSION_PART_LIMIT:,}"
        )
    return numbers  # type: ignore[return-value]


def version_tag(version: str | tuple[int, int, int]) -> str:
    """The tag name of a version: ``v1.2.3``."""
    parts = parse_version(version) if isinstance(version, str) else version
    return "v" + ".".join(map(str, parts))


def repo_id_problem(repo_id: str) -> str | None:
    """What is wrong with ``repo_id`` as a dataset repo ``ORG/NAME`` in the Hub's spelling, or None."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    if not isinstance(repo_id, str) or repo_id.count("/") != 1:
        return "it must be ORG/NAME, with exactly one /"
    try:
        validate_repo_id(repo_id)
    except HFValidationError:
        return ("ORG and NAME may hold only letters, digits, '-', '_' and '.', not start or end "
                "with '-' or '.', hold no '--' or '..' and be at most 96 characters each")
    return None


def check_repo_id(repo_id: str) -> str:
    """``repo_id`` when it is ``ORG/NAME`` in the Hub's spelling; ``RepoIdError`` naming it otherwise.

    Checked before any request: a mistyped id is bad input (exit 2), not a failed push to retry.
    """
    problem = repo_id_problem(repo_id)
    if problem is not None:
        raise RepoIdError(f"repo id {repo_id!r} is not valid: {problem}; nothing was pushed")
    return repo_id


def _network_errors() -> tuple[type[BaseException], ...]:
    """What the Hub client raises when the server answers an error or cannot be reached."""
    from huggingface_hub.errors import HfHubHTTPError, HTTPError  # HTTPError: the client's transport errors

    return (HfHubHTTPError, HTTPError, OSError)


def _api(token: str | None, endpoint: str | None = None):
    from huggingface_hub import HfApi

    return HfApi(endpoint=endpoint, token=token)


def _describe_http_error(exc: Exception, token: str | None) -> str:
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    first_line = str(exc).splitlines()[0] if str(exc) else ""
    if status is None:  # a transport error (connection dropped, refused, timed out): name its kind
        first_line = f"{type(exc).__name__}: {first_line}".rstrip(": ")
    server_message = getattr(exc, "server_message", None)
    if server_message:  # what the Hub says is wrong ("Invalid credentials", "Repository not found")
        first_line = f"{first_line} ({' '.join(str(server_message).split())})"
    return redact(first_line, token)


def _causes(exc: BaseException | None) -> Iterator[BaseException]:
    """``exc`` and the exceptions it wraps (``__cause__``, else ``__context__``), each once."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def _status(exc: BaseException) -> int | None:
    return getattr(getattr(exc, "response", None), "status_code", None)


def _refused_error(exc: BaseException | None) -> Any:
    """The Hub's 401/403 answer (an ``HfHubHTTPError``) to a request that carried the token, found
    in ``exc`` or the exceptions it wraps (a failed LFS upload is a ``RuntimeError`` around one);
    None otherwise.

    A 403 from a pre-signed storage upload (no ``Authorization`` header) judged no token: an
    expired upload URL is retried by running the push again, like any other failed upload.
    """
    from huggingface_hub.errors import HfHubHTTPError

    return next((e for e in _causes(exc) if isinstance(e, HfHubHTTPError) and _status(e) in (401, 403)
                 and _carried_token(e.response)), None)


def _carried_token(response: Any) -> bool:
    try:
        return "authorization" in response.request.headers  # httpx headers: case-insensitive
    except RuntimeError:  # a response built without its request
        return False


#: what to do about a token the Hub answered 401
_INVALID_TOKEN = "it is invalid or expired; log in again with `hf auth login` or set HF_TOKEN to a valid token"


def _hub_said(refused: Any, token: str | None) -> str:
    """``: what the Hub said`` (e.g. "Invalid credentials in Authorization header"), redacted; or ``""``."""
    said = " ".join(str(refused.server_message or "").split())
    return f": {redact(said, token)}" if said else ""


def _token_refusal(exc: BaseException, repo_id: str, token: str | None) -> str | None:
    """What to do when the Hub refused the token (401) or its rights on ``repo_id`` (403); None
    when ``exc`` is no such refusal (a network error, a 5xx: running the push again may work)."""
    refused = _refused_error(exc)
    if refused is None:
        return None
    detail = _hub_said(refused, token)
    org = repo_id.split("/")[0]
    if _status(refused) == 401:
        return f"the Hub refused the token (401{detail}): {_INVALID_TOKEN}"
    return (f"the token cannot write to {repo_id} (403{detail}): it is read-only or has no rights on the repo "
            f"or the organisation {org}; use a token with write access to {org} (`hf auth login` or HF_TOKEN)")


def _read_failure(exc: BaseException, repo_id: str, token: str | None, tag: str | None = None) -> HubToolsError | None:
    """The error for a read (``hub versions``, ``hub load``) that running it again cannot change --
    a token the Hub refuses, a repository or version that is not there (or not readable with these
    credentials: the Hub answers both alike) -- or None (a network error, a 5xx: try again)."""
    from huggingface_hub.errors import HfHubHTTPError, RevisionNotFoundError

    refused = _refused_error(exc)
    if refused is not None:
        detail = _hub_said(refused, token)
        if _status(refused) == 401:
            return CredentialsError(f"cannot read {repo_id}: the Hub refused the token (401{detail}): {_INVALID_TOKEN}")
        return CredentialsError(
            f"the token cannot read {repo_id} (403{detail}): use a token with read access to it (`hf auth login` or "
            "HF_TOKEN); a gated dataset must first be accepted on its page"
        )
    for cause in _causes(exc):
        if isinstance(cause, RevisionNotFoundError) and tag is not None:
            return DatasetNotFoundError(
                f"dataset {repo_id} has no version {tag[1:]}; `anomalyforge hub versions {repo_id}` lists the published ones"
            )
        if isinstance(cause, HfHubHTTPError) and _status(cause) in (401, 404):
            if token:
                return DatasetNotFoundError(f"dataset {repo_id} not found, or private and not readable with this token")
            return DatasetNotFoundError(
                f"dataset {repo_id} not found (if it is private: log in with `hf auth login` or set HF_TOKEN)"
            )
    return None


@dataclass(frozen=True)
class VersionInfo:
    """One published version: tag, commit, date of the commit and rows per split."""

    version: str
    tag: str
    commit: str
    date: str | None
    rows: dict[str, int]


@dataclass(frozen=True)
class PushResult:
    repo_id: str
    version: str
    tag: str
    commit: str
    url: str
    created_commit: bool
    #: the version was already published with this very build (nothing was changed)
    existed: bool = False
    #: what the user should know about how the push went (e.g. the upload protocol it fell back to)
    notes: tuple[str, ...] = ()


def _tags(api, repo_id: str) -> dict[str, str]:
    refs = api.list_repo_refs(repo_id, repo_type=REPO_TYPE)
    return {t.name: t.target_commit for t in refs.tags}


def _semver_tags(tags: dict[str, str]) -> dict[tuple[int, int, int], str]:
    out = {}
    for name in tags:
        try:
            out[parse_version(name)] = name
        except VersionError:
            continue  # other tags are not versions of this dataset
    return out


def _download_text(api, repo_id: str, filename: str, revision: str) -> str | None:
    from huggingface_hub.errors import EntryNotFoundError

    try:
        path = api.hf_hub_download(repo_id, filename, repo_type=REPO_TYPE, revision=revision)
    except EntryNotFoundError:
        return None
    return Path(path).read_text(encoding="utf-8")


def push_build(
    build_dir: str | os.PathLike,
    repo_id: str,
    version: str,
    *,
    private: bool = False,
    message: str | None = None,
    license: str | None = None,
    pretty_name: str | None = None,
    attribution: str | None = None,
    diversity: dict[str, float] | str | os.PathLike | None = None,
    token: str | None = None,
    endpoint: str | None = None,
    progress: bool = False,
) -> PushResult:
    """Publish ``build_dir`` as version ``version`` of the dataset repo ``repo_id``.

    ``version``     ``MAJOR.MINOR.PATCH`` (a leading ``v`` is accepted); must be above every
                    version already tagged.
    ``license``     the card's license id (e.g. ``cc-by-4.0``); ``other`` when not given.
    ``attribution`` text naming the source images and their license, shown in the card.
    ``diversity``   mapping score name -> value, or a JSON file with one (``anomalyforge diversity``).

    Raises ``ValidationError`` (bad build), ``VersionError`` (refused version), ``StaleParentError``
    (the repo moved during the push) or ``PublishError`` (network/server failure; nothing tagged).
    """
    build_dir = Path(build_dir)
    numbers = parse_version(version)
    tag = version_tag(numbers)
    plain = tag[1:]
    check_repo_id(repo_id)
    if not (build_dir / "build.json").is_file():
        raise ValidationError(f"{build_dir} is not a build folder (no build.json); run `anomalyforge hub build` first")
    scores = _read_diversity(diversity)
    token = resolve_token(token)
    if not token:
        raise HubToolsError("no Hugging Face token: set HF_TOKEN or run `hf auth login`")
    api = _api(token, endpoint)

    try:
        # the version check is cheap: refuse before validating a large build
        done = _check_new_version(api, repo_id, build_dir, numbers, tag)
        if done is not None:
            return done
        info = validate_build(build_dir, progress=progress)
        _check_visibility(api, repo_id, private)
        api.create_repo(repo_id, repo_type=REPO_TYPE, private=private, exist_ok=True)
        head = api.repo_info(repo_id, repo_type=REPO_TYPE, revision=BRANCH).sha
        done = _finish_tagging(api, repo_id, head, info, tag)
        if done is not None:
            return done

        date = datetime.now(timezone.utc).date().isoformat()
        entry = {"version": plain, "date": date, "message": message or "",
                 "counts": dict(info["counts"]), "tool_version": info["tool_version"]}
        changelog = add_changelog_entry(read_changelog(_download_text(api, repo_id, "README.md", head)), entry)
        card = render_card(info, plain, repo_id=repo_id, license=license, pretty_name=pretty_name,
                           attribution=attribution, diversity=scores, changelog=changelog)
        record = dict(info)
        record["published"] = {"version": plain, "tag": tag, "date": date, "repo_id": repo_id,
                               "license": license or "other", "attribution": attribution,
                               "diversity": scores}
        operations = _release_operations(api, repo_id, build_dir, head, info, card, record)
        summary = f"Release {tag}" + (f": {message.splitlines()[0]}" if message else "")
        commit, notes = _commit_on_head(api, repo_id, operations, summary, message or "", head, tag)
        _tag_commit(api, repo_id, tag, commit.oid, token)
        return PushResult(repo_id, plain, tag, commit.oid, _url(api, repo_id, tag), created_commit=True, notes=notes)
    except (VersionError, StaleParentError, PublishError, ValidationError, VisibilityError, RepoIdError,
            CredentialsError):
        raise
    except Exception as exc:  # noqa: BLE001 -- any failure on the way means "no version made"
        refusal = _token_refusal(exc, repo_id, token)
        if refusal is not None:  # the same push would be refused the same way
            raise CredentialsError(
                f"push of {tag} to {repo_id} failed: {refusal}; nothing was committed and no version was created"
            ) from None
        # HTTP errors, the HTTP client's transport errors (a dropped connection), RuntimeError
        # wrapping a failed LFS upload: the version is not there, and the message says so
        raise PublishError(
            f"push of {tag} to {repo_id} failed: {_describe_http_error(exc, token)}; "
            "no version was created: run the same push again"
        ) from None


def _check_new_version(api, repo_id: str, build_dir: Path, numbers, tag: str) -> PushResult | None:
    """None when ``tag`` may be published; the earlier result when this very build is already
    that version; ``VersionError`` when the version exists with other data or is not the highest."""
    from huggingface_hub.errors import RepositoryNotFoundError

    try:
        tags = _tags(api, repo_id)
    except RepositoryNotFoundError:
        tags = {}
    versions = _semver_tags(tags)
    if tag in tags or numbers in versions:
        existing = versions.get(numbers, tag)
        done = _already_published(api, repo_id, build_dir, tag[1:], existing, tags[existing])
        if done is not None:
            return done
        raise VersionError(
            f"{repo_id} already has version {existing} (commit {tags[existing][:12]}); versions are "
            "immutable: publish the changes as a higher version"
        )
    if versions and numbers < max(versions):
        raise VersionError(
            f"version {tag} is not above the latest published version {versions[max(versions)]} of {repo_id}"
        )
    return None


def _finish_tagging(api, repo_id: str, head: str, info: dict[str, Any], tag: str) -> PushResult | None:
    """A previous run of this same push may have committed and then failed to tag: tag ``head``
    and return the result when ``head`` holds this build as this version; None otherwise."""
    plain = tag[1:]
    published = _download_text(api, repo_id, "build.json", head)
    if published is None:
        return None
    record = json.loads(published)
    if record.get("published", {}).get("version") == plain and record.get("fingerprint") == info["fingerprint"]:
        api.create_tag(repo_id, tag=tag, revision=head, repo_type=REPO_TYPE, tag_message=f"{repo_id} {tag}")
        return PushResult(repo_id, plain, tag, head, _url(api, repo_id, tag), created_commit=False)
    return None


def _release_operations(api, repo_id: str, build_dir: Path, head: str, info: dict[str, Any], card: str,
                        record: dict[str, Any]) -> list[Any]:
    """The shards, examples, card and ``build.json`` added; data and card files of ``head`` that
    this build no longer has deleted."""
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete

    files = [s["file"] for split in SPLITS for s in info["shards"][split]]
    files += [e[k] for e in info.get("examples", []) for k in ("image", "mask")]
    operations: list[Any] = [CommitOperationAdd(path, str(build_dir / path)) for path in files]
    operations.append(CommitOperationAdd("README.md", card.encode("utf-8")))
    operations.append(CommitOperationAdd("build.json", json.dumps(record, indent=1, sort_keys=True).encode()))
    keep = set(files)
    for remote in api.list_repo_files(repo_id, repo_type=REPO_TYPE, revision=head):
        if remote.startswith(("data/", "card/")) and remote not in keep:
            operations.append(CommitOperationDelete(remote))
    return operations


def _commit_on_head(api, repo_id: str, operations: list[Any], summary: str, description: str, head: str, tag: str):
    """``_commit``; a conflict (the repo moved past ``head``) is a ``StaleParentError``."""
    from huggingface_hub.errors import HfHubHTTPError

    try:
        return _commit(api, repo_id, operations, summary, description, head)
    except HfHubHTTPError as exc:
        status = getattr(exc.response, "status_code", None)
        if status in (409, 412):
            raise StaleParentError(
                f"{repo_id} changed while {tag} was being pushed (main is no longer at {head[:12]}); "
                "nothing was committed or tagged: run the push again to build on the new head"
            ) from None
        raise


def _tag_commit(api, repo_id: str, tag: str, oid: str, token: str) -> None:
    from huggingface_hub.errors import HfHubHTTPError

    try:
        api.create_tag(repo_id, tag=tag, revision=oid, repo_type=REPO_TYPE, tag_message=f"{repo_id} {tag}")
    except (HfHubHTTPError, OSError) as exc:
        refusal = _token_refusal(exc, repo_id, token)
        if refusal is not None:
            raise CredentialsError(
                f"{tag}: the data was committed ({oid[:12]}) but the tag could not be created: {refusal}; "
                "then run this push again to tag that commit"
            ) from None
        raise PublishError(
            f"{tag}: the data was committed ({oid[:12]}) but the tag could not be created "
            f"({_describe_http_error(exc, token)}); run the same push again to finish the version"
        ) from None


def _commit(api, repo_id: str, operations: list[Any], summary: str, description: str, head: str):
    """``(commit info, notes)``: one commit of ``operations`` on ``head``.

    huggingface_hub uploads through Xet storage whenever ``hf_xet`` is installed; a Hub without
    Xet (a self-hosted or older server) answers its token request with 404. Nothing was uploaded
    or committed then, so the same commit is made again through the regular (Git LFS) upload.
    """
    def commit():
        return api.create_commit(repo_id, operations, commit_message=summary, commit_description=description,
                                 repo_type=REPO_TYPE, revision=BRANCH, parent_commit=head)

    try:
        return commit(), ()
    except Exception as exc:  # noqa: BLE001 -- hf_xet reports a refused token as a plain ConnectionError
        if not _xet_unavailable(exc):
            raise
    with _xet_disabled():
        info = commit()
    return info, (f"{api.endpoint} does not offer Xet storage (its xet-write-token request answered 404): "
                  "uploaded through Git LFS instead; set HF_HUB_DISABLE_XET=1 to skip the Xet attempt",)


def _xet_unavailable(exc: BaseException) -> bool:
    """True when ``exc`` says the Hub has no Xet storage (not: refused credentials, a dropped connection)."""
    text = str(exc)
    return "xet-write-token" in text and ("404" in text or "Not Found" in text)


@contextmanager
def _xet_disabled() -> Iterator[None]:
    """Upload through Git LFS inside the block, as ``HF_HUB_DISABLE_XET=1`` does for a whole process."""
    import huggingface_hub.constants as constants

    previous = constants.HF_HUB_DISABLE_XET
    constants.HF_HUB_DISABLE_XET = True
    try:
        yield
    finally:
        constants.HF_HUB_DISABLE_XET = previous


def _already_published(api, repo_id: str, build_dir: Path, plain: str, tag: str, commit: str) -> PushResult | None:
    """A ``PushResult`` when ``tag`` already holds exactly this build (a rerun after the answer to
    the tag request was lost), else ``None``."""
    try:
        local = json.loads((build_dir / "build.json").read_text())
    except (OSError, ValueError):
        return None
    text = _download_text(api, repo_id, "build.json", commit)
    try:
        record = json.loads(text) if text is not None else {}
    except ValueError:
        return None
    if record.get("fingerprint") != local.get("fingerprint") or record.get("published", {}).get("version") != plain:
        return None
    return PushResult(repo_id, plain, tag, commit, _url(api, repo_id, tag), created_commit=False, existed=True)


def _check_visibility(api, repo_id: str, private: bool) -> None:
    """Refuse ``private=True`` for a repo that exists and is public (the Hub keeps its visibility)."""
    from huggingface_hub.errors import RepositoryNotFoundError

    if not private:
        return
    try:
        repo = api.repo_info(repo_id, repo_type=REPO_TYPE)
    except RepositoryNotFoundError:
        return
    if not repo.private:
        raise VisibilityError(
            f"{repo_id} exists and is public: --private applies only when the repo is created, so this "
            "version would be published publicly; nothing was pushed. Make the repo private on the Hub "
            "first (its Settings page), or push without --private to publish publicly"
        )


def _url(api, repo_id: str, tag: str) -> str:
    return f"{api.endpoint}/datasets/{repo_id}/tree/{tag}"


def _read_diversity(diversity: dict | str | os.PathLike | None) -> dict[str, dict[str, float | None]] | None:
    """Diversity scores as ``{group: {score: value}}`` from a mapping or the JSON file of
    ``anomalyforge diversity --output`` (flat ``{score: value}``, or ``{group: {score: value}}`` with
    ``--by``); ``None`` values (n/a) are kept."""
    if diversity is None:
        return None
    if isinstance(diversity, dict):
        data = diversity
    else:
        try:
            data = json.loads(Path(diversity).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ValidationError(f"cannot read diversity scores from {diversity}: {exc}") from None
        except RecursionError:  # json nests one Python call per level
            raise ValidationError(f"cannot read diversity scores from {diversity}: the JSON is nested too deeply") from None

    def scores(mapping: Any) -> dict[str, float | None] | None:
        if not isinstance(mapping, dict) or not mapping:
            return None
        if not all(v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in mapping.values()):
            return None
        return {str(k): None if v is None else float(v) for k, v in mapping.items()}

    flat = scores(data)
    if flat is not None:
        return {"all": flat}
    grouped = {str(k): scores(v) for k, v in data.items()} if isinstance(data, dict) and data else {}
    if not grouped or any(v is None for v in grouped.values()):
        raise ValidationError(
            "diversity scores must be a JSON object mapping score name -> number (or group -> such a mapping), "
            "as written by `anomalyforge diversity --output`"
        )
    return grouped  # type: ignore[return-value]


def list_versions(repo_id: str, *, token: str | None = None, endpoint: str | None = None) -> list[VersionInfo]:
    """Published versions of ``repo_id``, oldest first, with commit date and rows per split."""
    token = resolve_token(token)
    api = _api(token, endpoint)
    try:
        tags = _tags(api, repo_id)
        out = []
        for numbers, name in sorted(_semver_tags(tags).items()):
            commit = tags[name]
            commits = api.list_repo_commits(repo_id, repo_type=REPO_TYPE, revision=commit)
            date = commits[0].created_at.isoformat() if commits else None
            text = _download_text(api, repo_id, "build.json", commit)
            rows = dict(json.loads(text).get("counts", {})) if text else {}
            out.append(VersionInfo(".".join(map(str, numbers)), name, commit, date, rows))
        return out
    except _network_errors() as exc:
        raise _read_failure(exc, repo_id, token) or PublishError(
            f"cannot list versions of {repo_id}: {_describe_http_error(exc, token)}"
        ) from None


def load_version(
    repo_id: str,
    version: str,
    offline: bool = False,
    *,
    token: str | None = None,
    cache_dir: str | os.PathLike | None = None,
):
    """The ``DatasetDict`` (splits ``test`` and ``good``) of one published version.

    Online: ``datasets.load_dataset(repo_id, revision="vX.Y.Z")``. Offline: the files of that tag
    from the local Hub cache (``snapshot_download(..., local_files_only=True)``), read as parquet
    -- ``load_dataset`` in offline mode would serve the newest cached version instead of the one
    asked for. ``cache_dir`` is the Hub cache for the offline snapshot (default: the usual one).
    """
    import datasets

    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    tag = version_tag(version)
    token = resolve_token(token)
    if not offline:
        try:
            # the snapshot records tag -> commit in the Hub cache (load_dataset only stores files
            # by commit), which is what a later offline load of this tag needs; load_dataset then
            # finds the same files in the cache instead of downloading them again
            snapshot_download(repo_id, repo_type=REPO_TYPE, revision=tag, cache_dir=cache_dir, token=token,
                              allow_patterns=["data/*", "README.md", "build.json"])
            return datasets.load_dataset(repo_id, revision=tag, token=token)
        except Exception as exc:  # datasets/huggingface_hub raise many types for a missing repo or revision
            raise _read_failure(exc, repo_id, token, tag) or PublishError(
                f"cannot load {repo_id} {tag}: {_describe_http_error(exc, token)}"
            ) from None

    try:
        folder = Path(snapshot_download(repo_id, repo_type=REPO_TYPE, revision=tag, local_files_only=True,
                                        cache_dir=cache_dir, allow_patterns=["data/*", "README.md", "build.json"]))
    except (LocalEntryNotFoundError, OSError) as exc:
        raise PublishError(
            f"{repo_id} {tag} is not in the local cache ({type(exc).__name__}); load it once online first"
        ) from None
    data_files = {}
    for split in SPLITS:
        files = sorted(str(p) for p in (folder / "data").glob(f"{split}-*.parquet"))
        if not files:
            raise PublishError(f"the cached snapshot of {repo_id} {tag} has no {split} files; load it online again")
        data_files[split] = files
    return load_dataset("parquet", data_files=data_files)
