"""The dataset card (README.md): YAML front matter for the Hub plus a human description.

The front matter is built with ``huggingface_hub.DatasetCardData`` and ``datasets``' own
``MetadataConfigs`` / ``DatasetInfosDict`` writers, so that the Hub and ``load_dataset`` read
exactly what they expect (``configs:`` with the split globs, ``dataset_info:`` with the
features); it is serialised by a YAML library and read back before the card is used, so no user
text can end it early. User text in the body (title, changelog message, attribution, score
names) is escaped: it reads as the characters typed, never as Markdown or HTML. The changelog
is carried from version to version: its entries are stored as JSON in an HTML comment, so a new
version re-reads them from the previous card and appends its own.
"""

from __future__ import annotations

import html
import json
import re
from typing import Any, Sequence

from huggingface_hub import DatasetCardData

from .errors import ValidationError
from .schema import GOOD_SPLIT, SPLITS, TEST_SPLIT

CHANGELOG_START = "<!-- changelog-entries:"
CHANGELOG_END = "-->"

DEFAULT_TITLE = "Synthetic anomalies"
#: Markdown punctuation that changes the meaning of text anywhere in a line; "_" only where it
#: can start or end emphasis (not inside a word: ``lpips_whole`` stays as it is)
_INLINE_MARKUP = re.compile(r"([\\`*\[\]|~!#]|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9]))")
#: what turns a line into a list item, quote, heading underline or rule when it starts the line
_LINE_START_MARKUP = re.compile(r"^(\s*\d*)([-+=.)])")

TAGS = ["anomaly-detection", "synthetic", "defect-detection", "segmentation", "anomalyforge"]
TASK_CATEGORIES = ["image-segmentation", "image-classification"]


def size_category(n_rows: int) -> str:
    """The Hub's ``size_categories`` value for ``n_rows`` rows."""
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"),
                        (1_000_000, "100K<n<1M"), (10_000_000, "1M<n<10M")):
        if n_rows < limit:
            return name
    return "10M<n<100M"


def read_changelog(card_text: str | None) -> list[dict[str, Any]]:
    """Changelog entries (newest first) stored in a previous card; ``[]`` when there are none."""
    if not card_text:
        return []
    start = card_text.find(CHANGELOG_START)
    if start < 0:
        return []
    end = card_text.find(CHANGELOG_END, start)
    try:
        entries = json.loads(card_text[start + len(CHANGELOG_START):end])
    except json.JSONDecodeError:
        return []
    return [e for e in entries if isinstance(e, dict) and "version" in e]


def add_changelog_entry(entries: Sequence[dict[str, Any]], entry: dict[str, Any]) -> list[dict[str, Any]]:
    """Entries with ``entry`` first; an entry of the same version (a retried push) is replaced."""
    return [entry] + [e for e in entries if e.get("version") != entry["version"]]


def one_line(text: str) -> str:
    """``text`` with every run of whitespace, line breaks of any kind included, as one space."""
    return " ".join(text.split())


def escape_markdown(text: str) -> str:
    """``text`` as Markdown that renders as exactly these characters: HTML tags, emphasis, links,
    tables, headings, lists and rules written in it are shown, not applied. Line breaks are kept."""
    text = html.escape(text, quote=False)  # &, <, > (also ends a "-->" that could close a comment)
    text = _INLINE_MARKUP.sub(r"\\\1", text)
    return "\n".join(_LINE_START_MARKUP.sub(r"\1\\\2", line) for line in text.splitlines())


def title_of(pretty_name: str | None) -> str:
    """The card's title: ``pretty_name`` on one line (a title is one line, in the YAML and the heading)."""
    return one_line(pretty_name or "") or DEFAULT_TITLE


def front_matter(info: dict[str, Any], license: str | None, pretty_name: str | None) -> DatasetCardData:
    """YAML metadata: license, tags, task categories, size, pretty name, configs and dataset_info."""
    from datasets import DatasetInfo, Features, SplitDict, SplitInfo
    from datasets.info import DatasetInfosDict
    from datasets.utils.metadata import MetadataConfigs

    counts = info["counts"]
    data = DatasetCardData(
        license=license or "other",
        tags=list(TAGS),
        task_categories=list(TASK_CATEGORIES),
        size_categories=[size_category(sum(counts.values()))],
        pretty_name=title_of(pretty_name),
    )
    MetadataConfigs(
        {"default": {"data_files": [{"split": s, "path": f"data/{s}-*"} for s in SPLITS]}}
    ).to_dataset_card_data(data)
    splits = SplitDict()
    for split in SPLITS:
        splits.add(SplitInfo(name=split, num_examples=counts[split],
                             num_bytes=sum(s["bytes"] for s in info["shards"][split])))
    ds_info = DatasetInfo(features=Features.from_dict(info["features"]), splits=splits,
                          download_size=sum(s["bytes"] for sp in SPLITS for s in info["shards"][sp]))
    DatasetInfosDict({"default": ds_info}).to_dataset_card_data(data)
    return data


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join("" if v is None else str(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def counts_table(info: dict[str, Any]) -> str:
    """Counts per method x shape x mode (rows) and size bin (columns)."""
    bins = [b for b in info["size_bins"] if any(c["size_bin"] == b for c in info["label_counts"])]
    grouped: dict[tuple, dict[str, int]] = {}
    for c in info["label_counts"]:
        grouped.setdefault((c["method"], c["shape"], c["mode"]), {})[c["size_bin"]] = c["count"]
    rows = []
    for key in sorted(grouped, key=lambda k: tuple(str(x) for x in k)):
        per_bin = grouped[key]
        rows.append([*key, *(per_bin.get(b, 0) for b in bins), sum(per_bin.values())])
    return _table(["method", "shape", "mode", *bins, "total"], rows)


def histogram_block(info: dict[str, Any], width: int = 40) -> str:
    """Text histogram of the measured changed-area percentages."""
    hist = info["area_histogram"]
    peak = max((h["count"] for h in hist), default=0) or 1
    label_w = max(len(h["range"]) for h in hist)
    lines = [f"{h['range']:>{label_w}} | {'#' * round(width * h['count'] / peak):<{width}} {h['count']}"
             for h in hist]
    return "```text\nchanged area (% of image pixels)\n" + "\n".join(lines) + "\n```"


def render_card(
    info: dict[str, Any],
    version: str | None,
    *,
    repo_id: str | None = None,
    license: str | None = None,
    pretty_name: str | None = None,
    attribution: str | None = None,
    diversity: dict[str, dict[str, float | None]] | None = None,
    changelog: Sequence[dict[str, Any]] = (),
) -> str:
    """README.md of a build (``version=None``: a local, unpublished build) or of a published version."""
    data = front_matter(info, license, pretty_name)
    parts = [
        "---",
        data.to_yaml(),
        "---",
        "",
        *_intro(info, version, pretty_name),
        *_how_to_load(repo_id or "PATH/TO/BUILD_DIR", f'"v{version}"' if version else '"vX.Y.Z"'),
        *_columns(info),
        *_generation(info),
        *_examples(info),
        *_diversity(diversity),
        "## Source images", "", escape_markdown(attribution.strip()) if attribution else
        "No attribution was given for the anomaly-free source images.", "",
        *_changelog(changelog),
    ]
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(parts) + "\n")
    _check_front_matter(text, data)
    return text


def _intro(info: dict[str, Any], version: str | None, pretty_name: str | None) -> list[str]:
    counts = info["counts"]
    return [
        f"# {escape_markdown(title_of(pretty_name))}" + (f" (v{version})" if version else ""),
        "",
        "Synthetic anomalies with exact ground truth: every row of the `test` split is an anomaly-free "
        "image with one synthetic anomaly, its binary mask (0/255) and the measured properties of the "
        "anomaly (method, shape, mode, size bin, changed area, brightness change, bounding box, seed and "
        "every drawn parameter). The `good` split holds the anomaly-free source images (all-zero masks), "
        "so thresholds at a fixed false-positive rate can be set from this dataset alone.",
        "",
        f"| split | rows |\n|---|---|\n| `{TEST_SPLIT}` | {counts[TEST_SPLIT]} |\n| `{GOOD_SPLIT}` | {counts[GOOD_SPLIT]} |",
        "",
    ]


def _how_to_load(name: str, revision: str) -> list[str]:
    return [
        "## How to load",
        "",
        "```python",
        "from datasets import load_dataset",
        "",
        f"ds = load_dataset(\"{name}\", revision={revision})  # pin a version tag",
        "anomalies, good = ds[\"test\"], ds[\"good\"]",
        "row = anomalies[0]  # row[\"image\"], row[\"mask\"]: PIL images",
        "print(anomalies.features[\"size_bin\"].int2str(row[\"size_bin\"]))",
        "```",
        "",
        "Offline, a pinned version reads from the local cache with",
        f"`hub_tools.load_version(\"{name}\", {revision}, offline=True)` (anomalyforge).",
        "",
    ]


def _columns(info: dict[str, Any]) -> list[str]:
    return [
        "## Columns",
        "",
        "`image` (PNG, same mode and size as the source), `mask` (L, 0/255), "
        + ("`diff` (L, |synthetic - source|), " if info.get("include_diff") else "")
        + "`source_id`, `file_name` (the image's path in the generated folder; in `good`, the source's "
        "path), `method`, `shape`, `mode`, `size_bin` (ClassLabel), `area_fraction`, "
        "`brightness_delta`, `background_brightness` (float32), `bbox` (x0, y0, x1, y1), `angle`, "
        "`seed` (regenerates the anomaly), `params` (JSON of every drawn parameter).",
        "",
    ]


def _generation(info: dict[str, Any]) -> list[str]:
    """The configuration that regenerates the build, its counts and its size histogram."""
    # the generator's own record holds every option with its default filled in; the options as
    # given are the fallback for imagefolders written without one
    gen = (info.get("protocol") or {}).get("config") or info["generation"]
    return [
        "## Generation",
        "",
        f"Made with anomalyforge {info['tool_version']} from {info['images']['sources']} anomaly-free images. "
        "Regenerate it with the same tool version, input images and this configuration:",
        "",
        "```json",
        json.dumps(gen, indent=2, sort_keys=True),
        "```",
        "",
        *(f"- `{key}`: `{info['generation'][key]}`" for key in ("region_masks", "textures")
          if info.get("generation", {}).get(key)),
        "",
        "## Counts per method × shape × mode × size bin",
        "",
        counts_table(info),
        "",
        "## Size histogram",
        "",
        histogram_block(info),
        "",
    ]


def _examples(info: dict[str, Any]) -> list[str]:
    if not info.get("examples"):
        return []
    return ["## Examples", "", _table(
        ["image", "mask", "method", "shape", "mode", "size bin"],
        [[f"![image]({e['image']})", f"![mask]({e['mask']})", e["method"], e["shape"], e["mode"], e["size_bin"]]
         for e in info["examples"]],
    ), ""]


def _diversity(diversity: dict[str, dict[str, float | None]] | None) -> list[str]:
    if not diversity:
        return []
    names = list(dict.fromkeys(name for group in diversity.values() for name in group))
    rows = [[escape_markdown(one_line(group)),
             *("n/a" if scores.get(n) is None else f"{scores[n]:.4g}" for n in names)]
            for group, scores in diversity.items()]
    return ["## Diversity", "", "Scores computed with `anomalyforge diversity`:", "",
            _table(["group", *(escape_markdown(one_line(n)) for n in names)], rows), ""]


def _changelog(changelog: Sequence[dict[str, Any]]) -> list[str]:
    """The versions, newest first as given, and the machine-readable copy the next push reads back."""
    parts = ["## Changelog", ""]
    if changelog:
        for entry in changelog:
            parts.append(f"### v{entry['version']} ({entry['date']})")
            parts.append("")
            if entry.get("message"):
                parts += [escape_markdown(entry["message"].strip()), ""]
            rows = ", ".join(f"{k}: {v}" for k, v in sorted(entry.get("counts", {}).items()))
            parts += [f"- rows: {rows}", f"- tool: anomalyforge {entry.get('tool_version', '?')}", ""]
    else:
        parts += ["Not published yet.", ""]
    # no "<" or ">" in the comment: "-->" would end it early, and no tag is written even there;
    # JSON reads \u003c and \u003e back as "<" and ">"
    blob = json.dumps(list(changelog), sort_keys=True).replace("<", "\\u003c").replace(">", "\\u003e")
    parts.append(CHANGELOG_START + " " + blob + " " + CHANGELOG_END)
    return parts


def _check_front_matter(card: str, data: DatasetCardData) -> None:
    """Read the card's front matter back as the Hub does; it must be exactly ``data``."""
    from huggingface_hub import DatasetCard

    if DatasetCard(card).data.to_dict() != data.to_dict():
        raise ValidationError("the dataset card's YAML front matter does not read back as written; "
                              "check --pretty-name and --license")
