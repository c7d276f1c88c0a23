"""The first rows of a published version, read over HTTP without filling a cache.

``read_rows`` is what a viewer needs (the Space's Datasets tab): a handful of decoded rows of one
split. It opens the split's first parquet shard through ``huggingface_hub.HfFileSystem``, which
reads byte ranges, and decodes only the first row group(s) holding ``n`` rows -- nothing is
written to disk, so browsing a 69 MB dataset costs a few hundred kilobytes of transfer and no
cache. ``load_version`` is the tool for whole datasets.

Credentials are explicit: ``token=False`` reads anonymously (whatever ``HF_TOKEN`` says), a string
reads as that user, ``None`` uses the environment's token as every other hub_tools call does. A
repository that does not exist and one the credentials cannot read give the same
``DatasetNotFoundError``, as the Hub itself does.
"""

from __future__ import annotations

from typing import Any

from .errors import DatasetNotFoundError, PublishError, ValidationError, VersionError
from .publish import REPO_TYPE, _semver_tags, version_tag
from .schema import REQUIRED_COLUMNS


def _not_found(repo_id: str) -> DatasetNotFoundError:
    return DatasetNotFoundError(f"dataset {repo_id} not found or private")


def read_rows(repo_id: str, version: str | None = None, n: int = 8, *, split: str = "test",
              token: str | bool | None = None) -> tuple[Any, str, int]:
    """``(rows, version, total)``: the first ``n`` rows of ``split`` of one published version.

    ``rows`` is a ``datasets.Dataset`` (images decode to PIL, labels keep their ``ClassLabel``
    names in ``rows.features``), ``version`` the one read (the newest when ``version`` is None),
    ``total`` the rows the split's first shard holds. Raises ``DatasetNotFoundError`` (missing or
    private repository, unknown version), ``ValidationError`` (a dataset without the schema's
    columns: not made by anomalyforge), ``PublishError`` (the Hub cannot be reached).
    """
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq
    from huggingface_hub import HfApi, HfFileSystem
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    api = HfApi(token=token)
    try:
        tags = {t.name for t in api.list_repo_refs(repo_id, repo_type=REPO_TYPE).tags}
        versions = _semver_tags(dict.fromkeys(tags, ""))
        if version is None:
            if not versions:
                raise DatasetNotFoundError(f"dataset {repo_id} has no published version yet")
            tag = versions[max(versions)]
        else:
            tag = version_tag(version)
            if tag not in tags:
                raise DatasetNotFoundError(f"dataset {repo_id} has no version {tag[1:]}")
        fs = HfFileSystem(token=token)
        root = f"datasets/{repo_id}@{tag}"
        shards = sorted(fs.glob(f"{root}/data/{split}-*.parquet"))
        if not shards:
            raise ValidationError(f"dataset {repo_id} {tag[1:]} is not an anomalyforge dataset: it has no "
                                  f"{split} split (data/{split}-*.parquet)")
        with fs.open(shards[0], "rb") as handle:
            parquet = pq.ParquetFile(handle)
            total = parquet.metadata.num_rows
            batch = next(parquet.iter_batches(batch_size=n), None)
            table = pa.Table.from_batches([batch]) if batch is not None else parquet.schema_arrow.empty_table()
            table = table.replace_schema_metadata(parquet.schema_arrow.metadata)
    except (RepositoryNotFoundError, GatedRepoError):
        raise _not_found(repo_id) from None
    except RevisionNotFoundError:
        raise DatasetNotFoundError(f"dataset {repo_id} has no version {version}") from None
    except VersionError as exc:
        raise DatasetNotFoundError(str(exc)) from None
    except HfHubHTTPError as exc:
        status = getattr(getattr(exc, "response", None), "status_code", None)
        if status in (401, 403, 404):
            raise _not_found(repo_id) from None
        raise PublishError(f"cannot read {repo_id}: the Hub answered HTTP {status}") from None
    except (DatasetNotFoundError, ValidationError):
        raise
    except Exception as exc:  # noqa: BLE001 -- the HTTP client's transport errors (httpx, OSError) share no base
        raise PublishError(f"cannot reach the Hugging Face Hub to read {repo_id} ({type(exc).__name__})") from None
    rows = datasets.Dataset(table)
    _check_schema(rows, f"dataset {repo_id} {tag[1:]}", split)
    return rows, tag[1:], total


def _check_schema(rows: Any, what: str, split: str) -> None:
    """``ValidationError`` unless ``rows`` carries the schema's required columns, images as images."""
    import datasets

    missing = [c for c in REQUIRED_COLUMNS if c not in rows.features]
    not_images = [c for c in ("image", "mask")
                  if c in rows.features and not isinstance(rows.features[c], datasets.Image)]
    if missing or not_images:
        problem = (f"has no column(s) {', '.join(missing)}" if missing
                   else f"stores {', '.join(not_images)} as {rows.features[not_images[0]]!r}, not images")
        raise ValidationError(
            f"{what} is not an anomalyforge dataset: its {split} split {problem} "
            f"(columns: {', '.join(rows.features) or 'none'})"
        )
