"""What `anomalyforge hub` guarantees about versions, tokens, the card, repo ids, Xet and sources.

Each test runs the command line in a subprocess against the Hub-compatible server of
tests/hub_server.py (the real huggingface_hub client path). Images are 64x64 crops of
scikit-image's CC0 textures.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import skimage.data
import yaml

from hub_server import hub_environment
from hub_tools.build import build_dataset
from hub_tools.tokens import redacted_output
from synth import save_png

pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=<...>':DeprecationWarning")

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "hf_TrustTokenNeverPrinted0097"
GENERATION = ["--per-image", "1", "--shapes", "rough", "--modes", "gray_noise", "--bins", "2.5-15%", "--seed", "2",
              "--no-progress"]


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    with hub_environment(tmp_path_factory.mktemp("hf_home"), TOKEN) as server:
        yield server


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("sources")
    for name in ("brick", "grass"):
        save_png(folder / f"{name}.png", getattr(skimage.data, name)()[100:164, 100:164])
    return folder


@pytest.fixture(scope="module")
def build(sources, tmp_path_factory) -> Path:
    return build_dataset(sources, tmp_path_factory.mktemp("build") / "b", progress=False, per_image=1,
                         shapes=["rough"], modes=["gray_noise"], bins=["2.5-15%"], seed=2).build_dir


def _cli(*args: str, home: Path, endpoint: str = "http://127.0.0.1:9",
         env: dict[str, str] | None = None, before_main: str | None = None) -> subprocess.CompletedProcess:
    """``anomalyforge ARGS`` in a subprocess; ``before_main``: Python run in it before the command."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING"))}
    base.update(HF_ENDPOINT=endpoint, HF_TOKEN=TOKEN, HF_HOME=str(home), HF_HUB_DISABLE_XET="1",
                PYTHONPATH=str(ROOT))
    base.update(env or {})
    base = {k: v for k, v in base.items() if v is not None}
    entry = [str(ROOT / "anomalyforge.py")]
    if before_main is not None:
        entry = ["-c", f"import sys\n{before_main}\nfrom anomalyforge import main\nsys.exit(main(sys.argv[1:]))"]
    return subprocess.run([sys.executable, *entry, *args], capture_output=True, text=True,
                          env=base, cwd=ROOT, timeout=300)


def _tags(hub, repo: str) -> list[str]:
    repo_state = hub.state.repos.get(("dataset", repo))
    return sorted(repo_state.tags) if repo_state is not None else []


# --------------------------------------------------------------------------- versions
@pytest.mark.parametrize("version, problem", [
    ("1\u0661.0.0", "non-ASCII digit '\u0661' (U+0661)"),   # Arabic-Indic one: int() reads "1١" as 11
    ("\uff11.0.0", "non-ASCII digit '\uff11' (U+FF11)"),    # fullwidth one
    ("99999999999999999999.0.0", "99999999999999999999 is too large"),
    ("1.1000000.0", "1000000 is too large"),
    ("01.0.0", "is not MAJOR.MINOR.PATCH"),
])
def test_a_malformed_or_absurd_version_is_refused_and_nothing_is_published(hub, build, tmp_path, version,
                                                                            problem):
    result = _cli("hub", "push", str(build), "--repo", "org/typos", "--version", version,
                  home=tmp_path, endpoint=hub.url)
    assert result.returncode == 2, result.stderr
    assert problem in result.stderr and "Traceback" not in result.stderr
    assert ("dataset", "org/typos") not in hub.state.repos  # refused before any request that writes


def test_the_largest_allowed_version_parts_are_published(hub, build, tmp_path):
    result = _cli("hub", "push", str(build), "--repo", "org/big-versions", "--version", "999999.999999.999999",
                  home=tmp_path, endpoint=hub.url)
    assert result.returncode == 0, result.stderr
    assert _tags(hub, "org/big-versions") == ["v999999.999999.999999"]


def test_an_absurd_version_tag_already_on_the_hub_does_not_block_normal_versions(hub, build, tmp_path):
    from huggingface_hub import HfApi

    api = HfApi(endpoint=hub.url, token=TOKEN)
    api.create_repo("org/old-typo", repo_type="dataset")
    api.create_tag("org/old-typo", tag="v99999999999999999999.0.0", repo_type="dataset")  # an older release's typo
    result = _cli("hub", "push", str(build), "--repo", "org/old-typo", "--version", "1.0.0", home=tmp_path,
                  endpoint=hub.url)
    assert result.returncode == 0, result.stderr
    assert "v1.0.0" in _tags(hub, "org/old-typo")


# --------------------------------------------------------------------------- repo ids
@pytest.mark.parametrize("repo", ["org/my dataset", "org//name", "org/name/", "https://huggingface.co/datasets/org/x",
                                  "org/na--me", "orgname"])
def test_a_mistyped_repo_id_is_named_and_exits_2(hub, build, tmp_path, repo):
    result = _cli("hub", "push", str(build), "--repo", repo, "--version", "1.0.0", home=tmp_path, endpoint=hub.url)
    assert result.returncode == 2, result.stderr
    assert f"repo id {repo!r} is not valid" in result.stderr
    assert "run the same push again" not in result.stderr


# --------------------------------------------------------------------------- refused tokens
def _error_line(result: subprocess.CompletedProcess) -> str:
    """The one error line of a failed command (progress output may precede it)."""
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("anomalyforge hub: error: ")]
    assert len(lines) == 1, result.stderr
    return lines[0]


def _state(hub, repo: str) -> tuple[int, list[str]] | None:
    """(number of commits, tags) of ``repo`` on the test Hub; None when it does not exist."""
    repo_state = hub.state.repos.get(("dataset", repo))
    return None if repo_state is None else (len(repo_state.commits), sorted(repo_state.tags))


def _published_once(hub, build, repo: str, tmp_path: Path) -> None:
    first = _cli("hub", "push", str(build), "--repo", repo, "--version", "1.0.0", home=tmp_path, endpoint=hub.url)
    assert first.returncode == 0, first.stderr


BAD_TOKEN = "hf_ExpiredTokenNotKnownToTheHub55"
READ_TOKEN = "hf_ReadOnlyTokenCannotWrite77"


@pytest.mark.parametrize("existing", [False, True], ids=["new-repo", "existing-repo"])
def test_a_token_the_hub_rejects_is_named_and_not_retried(hub, build, tmp_path, existing):
    repo = f"org/rejected-token-{existing}"
    if existing:
        _published_once(hub, build, repo, tmp_path)
    before = _state(hub, repo)
    result = _cli("hub", "push", str(build), "--repo", repo, "--version", "1.1.0", home=tmp_path, endpoint=hub.url,
                  env={"HF_TOKEN": BAD_TOKEN})
    assert result.returncode == 2, result.stderr
    line = _error_line(result)
    assert "the Hub refused the token (401" in line and "invalid or expired" in line and "hf auth login" in line
    assert "nothing was committed and no version was created" in line
    assert "run the same push again" not in result.stderr
    assert BAD_TOKEN not in result.stdout + result.stderr
    assert _state(hub, repo) == before  # no repo created, no commit, no tag


@pytest.mark.parametrize("existing", [False, True], ids=["new-repo", "existing-repo"])
def test_a_token_without_write_access_is_named_and_not_retried(hub, build, tmp_path, existing):
    hub.grant_read_only(READ_TOKEN)
    repo = f"org/read-only-token-{existing}"
    if existing:  # the version check and the build's validation pass; the upload is refused midway
        _published_once(hub, build, repo, tmp_path)
    before = _state(hub, repo)
    result = _cli("hub", "push", str(build), "--repo", repo, "--version", "1.1.0", home=tmp_path, endpoint=hub.url,
                  env={"HF_TOKEN": READ_TOKEN})
    assert result.returncode == 2, result.stderr
    line = _error_line(result)
    assert f"the token cannot write to {repo} (403" in line and "read-only" in line and "write access to org" in line
    assert "nothing was committed and no version was created" in line
    assert "run the same push again" not in result.stderr
    assert READ_TOKEN not in result.stdout + result.stderr
    assert _state(hub, repo) == before


def test_a_tag_refused_for_an_expired_token_names_the_landed_commit(hub, build, tmp_path):
    repo = "org/token-expired-before-tag"
    hub.fail("POST", rf"/api/datasets/{repo}/tag/", status=401)  # the token expired between commit and tag
    args = ("hub", "push", str(build), "--repo", repo, "--version", "1.0.0")
    result = _cli(*args, home=tmp_path, endpoint=hub.url)
    assert result.returncode == 2, result.stderr
    head = hub.repo(repo).branches["main"]
    line = _error_line(result)
    assert f"the data was committed ({head[:12]}) but the tag could not be created" in line
    assert "the Hub refused the token (401" in line and "run the same push again" not in line
    assert TOKEN not in result.stdout + result.stderr
    assert _tags(hub, repo) == []
    rerun = _cli(*args, home=tmp_path, endpoint=hub.url)  # with a valid token, the rerun tags that commit
    assert rerun.returncode == 0, rerun.stderr
    assert hub.repo(repo).tags == {"v1.0.0": head}


@pytest.mark.parametrize("failure", [dict(status=503), dict(drop=True), dict(status=403, storage=True)],
                         ids=["5xx", "connection-dropped", "storage-upload-403"])
def test_a_push_that_failed_on_the_network_or_server_says_to_run_it_again(hub, build, tmp_path, failure):
    repo = "org/retry-" + "-".join(f"{k}{v}" for k, v in failure.items()).lower()
    if failure.pop("storage", False):  # a refused pre-signed upload URL: no token was sent, none was judged
        hub.fail("PUT", rf"^/_lfs/datasets/{repo}/", **failure)
    else:
        hub.fail("POST", rf"/api/datasets/{repo}/commit/main$", **failure)
    args = ("hub", "push", str(build), "--repo", repo, "--version", "1.0.0")
    result = _cli(*args, home=tmp_path, endpoint=hub.url)
    assert result.returncode == 1, result.stderr
    assert "no version was created: run the same push again" in _error_line(result)
    assert _tags(hub, repo) == []
    assert _cli(*args, home=tmp_path, endpoint=hub.url).returncode == 0
    assert _tags(hub, repo) == ["v1.0.0"]


@pytest.fixture(scope="module")
def private_version(hub, build, tmp_path_factory) -> str:
    repo = "org/private-reads"
    published = _cli("hub", "push", str(build), "--repo", repo, "--version", "1.0.0", "--private",
                     home=tmp_path_factory.mktemp("push_home"), endpoint=hub.url)
    assert published.returncode == 0, published.stderr
    return repo


@pytest.mark.parametrize("command", ["versions", "load"])
def test_reads_the_hub_refuses_are_named_once_and_exit_2(hub, private_version, tmp_path, command):
    """A refused token, a missing repository and a missing version cannot be fixed by running the
    command again: one line that says what to change, exit 2 (1 is kept for "run it again")."""

    def read(repo: str, token: str | None, version: str = "1.0.0") -> str:
        args = ("hub", "versions", repo) if command == "versions" else ("hub", "load", repo, "--version", version)
        result = _cli(*args, home=tmp_path / f"{token}{repo}".replace("/", "_"), endpoint=hub.url,
                      env={"HF_TOKEN": token})
        assert result.returncode == 2, result.stderr
        if token:
            assert token not in result.stdout + result.stderr
        return _error_line(result)

    line = read(private_version, BAD_TOKEN)
    assert f"cannot read {private_version}: the Hub refused the token (401" in line and "hf auth login" in line
    line = read(private_version, None)
    assert f"dataset {private_version} not found (if it is private: log in" in line
    assert "not found, or private and not readable with this token" in read("org/no-such-dataset", TOKEN)
    if command == "load":
        line = read(private_version, TOKEN, version="9.9.9")
        assert f"dataset {private_version} has no version 9.9.9; `anomalyforge hub versions {private_version}`" in line


def test_a_read_that_failed_on_the_server_still_says_to_try_again(hub, private_version, tmp_path):
    hub.fail("GET", rf"/api/datasets/{private_version}/refs", status=503)
    result = _cli("hub", "versions", private_version, home=tmp_path, endpoint=hub.url)
    assert result.returncode == 1, result.stderr
    assert f"cannot list versions of {private_version}: " in _error_line(result) and "503" in result.stderr


# --------------------------------------------------------------------------- hub load --save-to
#: every file the process writes stops at 4 KB: the save's JSON files fit, its Arrow files do not,
#: as on a disk that fills up midway (Python ignores SIGXFSZ, so the write fails with EFBIG)
FULL_DISK = "import resource\nresource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))"
#: a SIGKILL after the whole dataset is written, before it is renamed into place
KILL_BEFORE_RENAME = """
import os, signal
real_rename = os.rename
def rename(src, dst, **kwargs):
    if os.fspath(src).endswith(".partial"):
        os.kill(os.getpid(), signal.SIGKILL)
    return real_rename(src, dst, **kwargs)
os.rename = rename
"""


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".partial"))


@pytest.fixture(scope="module")
def loadable(hub, build, tmp_path_factory) -> str:
    """A published version, already in the Hub cache of the returned home (loads from it write little)."""
    home = tmp_path_factory.mktemp("load_home")
    repo = "org/save-to"
    _published_once(hub, build, repo, home)
    assert _cli("hub", "load", repo, "--version", "1.0.0", home=home, endpoint=hub.url).returncode == 0
    return str(home)


def test_hub_load_save_to_that_fails_midway_leaves_nothing_and_a_rerun_saves(hub, loadable, tmp_path):
    from datasets import load_from_disk

    target = tmp_path / "saved"
    args = ("hub", "load", "org/save-to", "--version", "1.0.0", "--save-to", str(target))
    failed = _cli(*args, home=Path(loadable), endpoint=hub.url, before_main=FULL_DISK)
    assert failed.returncode == 2, failed.stderr
    line = _error_line(failed)
    assert f"cannot save to {target}" in line and "File too large" in line and "nothing was left there" in line
    assert not target.exists() and _leftovers(tmp_path) == []
    rerun = _cli(*args, home=Path(loadable), endpoint=hub.url)
    assert rerun.returncode == 0, rerun.stderr
    saved = load_from_disk(str(target))
    assert {split: saved[split].num_rows for split in saved} == {"test": 2, "good": 2}


def test_hub_load_save_to_killed_midway_leaves_nothing_at_the_path_and_the_rerun_clears_it(hub, loadable, tmp_path):
    target = tmp_path / "saved"
    args = ("hub", "load", "org/save-to", "--version", "1.0.0", "--save-to", str(target))
    killed = _cli(*args, home=Path(loadable), endpoint=hub.url, before_main=KILL_BEFORE_RENAME)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert not target.exists()
    assert len(_leftovers(tmp_path)) == 1 and _leftovers(tmp_path)[0].startswith(".saved.")
    rerun = _cli(*args, home=Path(loadable), endpoint=hub.url)
    assert rerun.returncode == 0, rerun.stderr
    assert (target / "dataset_dict.json").is_file() and _leftovers(tmp_path) == []


# --------------------------------------------------------------------------- tokens
def test_a_token_written_in_pieces_is_still_redacted(capfd):
    with redacted_output(TOKEN):
        sys.stderr.write("echo: Bearer " + TOKEN[:9])
        sys.stderr.flush()
        sys.stderr.write(TOKEN[9:20])
        sys.stderr.write(TOKEN[20:] + " done\n")
        sys.stdout.write("a prefix of it at the end: " + TOKEN[:6])
    out, err = capfd.readouterr()
    assert TOKEN not in err and err == "echo: Bearer *** done\n"
    assert out == "a prefix of it at the end: " + TOKEN[:6]  # not the token: given back when the block ends


def test_names_that_start_with_hf_are_printed_as_they_are(hub, tmp_path, sources):
    build = tmp_path / "hf_abcdefgh12_folder"
    built = _cli("hub", "build", str(sources), str(build), *GENERATION, home=tmp_path, endpoint=hub.url)
    assert built.returncode == 0, built.stderr
    assert f"built {build}:" in built.stdout
    repo = "org/hf_datasetsVersion2_textures"
    pushed = _cli("hub", "push", str(build), "--repo", repo, "--version", "1.0.0", home=tmp_path, endpoint=hub.url)
    assert pushed.returncode == 0, pushed.stderr
    assert f"{hub.url}/datasets/{repo}/tree/v1.0.0" in pushed.stdout
    assert "***" not in built.stdout + built.stderr + pushed.stdout + pushed.stderr


# --------------------------------------------------------------------------- the card
def _front_matter(card: str) -> dict:
    assert card.startswith("---\n")
    return yaml.safe_load(card[4:card.index("\n---\n", 4)])


def test_card_front_matter_survives_any_pretty_name_and_user_text_is_escaped(hub, build, tmp_path):
    from huggingface_hub import DatasetCard, hf_hub_download

    pretty = "Textures\n---\nlicense: mit\n# not a heading"
    message = "<script>alert(1)</script> fixes **bold** [link](http://x)\n---\n- not a list"
    result = _cli("hub", "push", str(build), "--repo", "org/card-text", "--version", "1.0.0", "--license", "cc0-1.0",
                  "--pretty-name", pretty, "--message", message, "--attribution", "<img src=x onerror=alert(1)>",
                  home=tmp_path, endpoint=hub.url)
    assert result.returncode == 0, result.stderr
    card = Path(hf_hub_download("org/card-text", "README.md", repo_type="dataset", revision="v1.0.0")).read_text()
    meta = _front_matter(card)
    assert meta["license"] == "cc0-1.0"
    assert meta["pretty_name"] == "Textures --- license: mit # not a heading"  # a title is one line
    assert meta["configs"][0]["data_files"][0] == {"split": "test", "path": "data/test-*"}
    parsed = DatasetCard(card)
    assert parsed.data.license == "cc0-1.0" and parsed.data.pretty_name == meta["pretty_name"]
    body = parsed.text
    assert "<script>" not in body and "<img" not in body
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body and "&lt;img src=x onerror=alert(1)&gt;" in body
    assert "\\*\\*bold\\*\\*" in body and "\\[link\\]" in body and "\n\\---\n" in body and "\n\\- not a list" in body
    assert body.count("\n# ") == 1  # the one title, the pretty name's "# not a heading" escaped inside it


# --------------------------------------------------------------------------- Xet
def test_a_hub_without_xet_gets_the_push_through_git_lfs(hub, build, tmp_path):
    pytest.importorskip("hf_xet")
    # huggingface_hub tries Xet storage first; the test Hub has none (xet-write-token answers 404)
    result = _cli("hub", "push", str(build), "--repo", "org/no-xet", "--version", "1.0.0", home=tmp_path,
                  endpoint=hub.url, env={"HF_HUB_DISABLE_XET": None})
    assert result.returncode == 0, result.stderr
    assert "does not offer Xet storage" in result.stderr and "HF_HUB_DISABLE_XET=1" in result.stderr
    assert _tags(hub, "org/no-xet") == ["v1.0.0"]
    shards = [p for p in hub.repo("org/no-xet").commits[hub.repo("org/no-xet").tags["v1.0.0"]].files
              if p.endswith(".parquet")]
    assert shards and all(p.startswith("data/") for p in shards)


# --------------------------------------------------------------------------- hub build of a synth folder
def test_hub_build_of_a_synth_folder_finds_its_sources_without_the_option(tmp_path, sources):
    out = tmp_path / "synth_out"
    made = _cli("synth", str(sources), str(out), *GENERATION, home=tmp_path)
    assert made.returncode == 0, made.stderr
    result = _cli("hub", "build", str(out), str(tmp_path / "build"), "--no-progress", home=tmp_path)
    assert result.returncode == 0, result.stderr
    good = pq.read_table(next((tmp_path / "build" / "data").glob("good-*.parquet")))
    assert sorted(good.column("source_id").to_pylist()) == ["brick.png", "grass.png"]


def test_hub_build_of_a_synth_folder_whose_sources_moved_names_the_option(tmp_path, sources):
    copy = tmp_path / "moved_sources"
    copy.mkdir()
    for path in sources.iterdir():
        (copy / path.name).write_bytes(path.read_bytes())
    out = tmp_path / "synth_out"
    assert _cli("synth", str(copy), str(out), *GENERATION, home=tmp_path).returncode == 0
    for path in copy.iterdir():
        path.unlink()
    copy.rmdir()
    result = _cli("hub", "build", str(out), str(tmp_path / "build"), "--no-progress", home=tmp_path)
    assert result.returncode == 2
    assert "--sources" in result.stderr and str(copy) in result.stderr
    assert "sources_dir" not in result.stderr and "Traceback" not in result.stderr
    with_option = _cli("hub", "build", str(out), str(tmp_path / "build"), "--sources", str(sources), "--no-progress",
                       home=tmp_path)
    assert with_option.returncode == 0, with_option.stderr


# --------------------------------------------------------------------------- file_name
def test_every_row_names_its_file(build, sources):
    from datasets import load_dataset

    generated = build / "generated"
    listed = [json.loads(line) for line in (generated / "metadata.jsonl").read_text().splitlines() if line.strip()]
    test = pq.read_table(list((build / "data").glob("test-*.parquet")), columns=["image", "source_id", "file_name"])
    assert sorted(test.column("file_name").to_pylist()) == sorted(r["file_name"] for r in listed)
    for row in test.to_pylist():  # the name leads to the very file the row's image was read from
        assert row["image"]["bytes"] == (generated / row["file_name"]).read_bytes()
    good = load_dataset(str(build))["good"]
    assert sorted(good["file_name"]) == sorted(p.name for p in sources.iterdir())
    assert all((sources / name).is_file() for name in good["file_name"])
