"""A Hub-compatible HTTP server for tests: real commits, refs, tags and LFS, on 127.0.0.1.

It speaks the subset of the Hugging Face Hub protocol that ``huggingface_hub.HfApi`` (create_repo,
create_commit with LFS uploads, create_tag, list_repo_refs, list_repo_commits, repo_info,
list_repo_tree, get_paths_info, hf_hub_download, snapshot_download) and ``datasets.load_dataset``
use, so that publishing code runs its real client path against it. Content is stored in memory:
git-style blob ids (sha1 of ``"blob {len}\\0" + content``) for regular files, sha256 objects for LFS,
commits with parents, branches and immutable tags.

Tokens: ``token`` may read and write everything; tokens given to ``HubServer.grant_read_only`` may
read (private repos too) and are answered 403 on every write, as the Hub answers a read-only token or
one without rights on the repo's organisation; any other token is answered 401 on writes and on
private repos ("Invalid credentials in Authorization header", the Hub's answer to a bad token).

Failure injection (``HubServer.fail``) makes chosen requests fail -- an HTTP status, a dropped
connection, a request carried out whose answer is lost, or an error that echoes the request's
``Authorization`` header -- to test what a push leaves behind when the network breaks halfway.

Usage::

    with HubServer(token="hf_test") as hub:
        hub.url  # "http://127.0.0.1:PORT"
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Iterator
from urllib.parse import parse_qs, unquote, urlsplit

REPO_TYPES = ("model", "dataset", "space")

#: files stored through LFS, as the Hub's default .gitattributes does
LFS_SUFFIXES = (".parquet", ".arrow", ".png", ".jpg", ".jpeg", ".bin", ".safetensors", ".zip", ".gz")

GITATTRIBUTES = (
    "".join(f"*{suffix} filter=lfs diff=lfs merge=lfs -text\n" for suffix in LFS_SUFFIXES)
).encode()


def git_blob_id(content: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def lfs_pointer(oid: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize {size}\n".encode()


@dataclass(frozen=True)
class Entry:
    """One file in a commit: its git blob id and either inline content or an LFS object."""

    blob_id: str
    size: int
    content: bytes | None = None  # regular files
    lfs_oid: str | None = None  # LFS files (content in HubState.lfs)
    pointer_size: int = 0


@dataclass
class Commit:
    oid: str
    parent: str | None
    files: dict[str, Entry]
    title: str
    message: str
    date: str


@dataclass
class Repo:
    repo_type: str
    repo_id: str
    private: bool
    created: str
    commits: dict[str, Commit] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    lfs_oids: set[str] = field(default_factory=set)  # LFS objects uploaded to this repo

    def resolve(self, revision: str) -> str | None:
        """Commit oid for a branch, tag, ``refs/...`` name or commit oid; ``None`` if unknown."""
        revision = unquote(revision)
        for prefix, table in (("refs/heads/", self.branches), ("refs/tags/", self.tags)):
            if revision.startswith(prefix):
                return table.get(revision[len(prefix):])
        if revision in self.branches:
            return self.branches[revision]
        if revision in self.tags:
            return self.tags[revision]
        if revision in self.commits:
            return revision
        return None


@dataclass
class Failure:
    """Make matching requests fail: ``status`` (HTTP error) or ``drop`` (close the connection)."""

    method: str
    pattern: re.Pattern
    times: int
    status: int = 500
    drop: bool = False
    before: Callable[[], None] | None = None
    lose_answer: bool = False
    echo_auth: bool = False


def _now() -> str:
    """The Hub's timestamp format, ``2024-01-31T12:00:00.000Z``."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class HubState:
    def __init__(self, token: str | None) -> None:
        self.token = token
        self.read_only_tokens: set[str] = set()
        self.repos: dict[tuple[str, str], Repo] = {}
        self.lfs: dict[str, bytes] = {}
        self.lock = threading.RLock()
        self.failures: list[Failure] = []
        self.requests: list[tuple[str, str]] = []  # (method, path) log for assertions
        self._counter = 0

    def new_commit(self, repo: Repo, parent: str | None, files: dict[str, Entry], title: str, message: str) -> Commit:
        self._counter += 1
        digest = hashlib.sha1()
        digest.update(f"{repo.repo_id}\n{parent}\n{title}\n{message}\n{self._counter}\n".encode())
        for path in sorted(files):
            digest.update(f"{path}\0{files[path].blob_id}\n".encode())
        date = _now()
        commit = Commit(digest.hexdigest(), parent, files, title, message, date)
        repo.commits[commit.oid] = commit
        return commit


class HubError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "_Server"

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass

    # ------------------------------------------------------------------ plumbing
    def _dispatch(self, method: str) -> None:
        state = self.server.state
        self._is_head = method == "HEAD"  # HEAD answers carry headers only, errors included
        url = urlsplit(self.path)
        path = url.path
        query = parse_qs(url.query)
        with state.lock:
            state.requests.append((method, path))
            failure = None
            for candidate in state.failures:
                if candidate.times > 0 and candidate.method == method and candidate.pattern.search(path):
                    candidate.times -= 1
                    failure = candidate
                    break
        body = self._read_body()
        if failure is not None and failure.lose_answer:
            # the request is carried out, then the network breaks before the answer arrives
            try:
                self.server.app.route(method, path, query, body, self.headers)
            except HubError:
                pass
            self._drop()
            return
        if failure is not None and failure.echo_auth:
            # a misbehaving server or proxy that quotes the credentials it was sent
            echoed = f"rejected credentials: {self.headers.get('Authorization', '')}"
            self._send_json({"error": echoed}, status=failure.status, headers={"X-Error-Message": echoed})
            return
        if failure is not None:
            if failure.before is not None:
                failure.before()
            else:
                if failure.drop:
                    # the network broke: no answer at all
                    self._drop()
                    return
                self._send_json({"error": "injected failure"}, status=failure.status)
                return
        try:
            result = self.server.app.route(method, path, query, body, self.headers)
        except HubError as exc:
            headers = {"X-Error-Code": exc.code} if exc.code else {}
            headers["X-Error-Message"] = exc.message
            self._send_json({"error": exc.message}, status=exc.status, headers=headers)
            return
        status, headers, payload = result
        self._send(status, headers, payload)

    def _drop(self) -> None:
        self.close_connection = True
        try:
            self.connection.shutdown(2)
        except OSError:
            pass

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size_line = self.rfile.readline().strip()
                size = int(size_line.split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send_json(self, obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> None:
        self._send(status, {"Content-Type": "application/json", **(headers or {})}, json.dumps(obj).encode())

    def _send(self, status: int, headers: dict[str, str], payload: bytes) -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        if "Content-Length" not in headers:
            self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if not self._is_head:
            self.wfile.write(payload)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: HubState
    app: "_App"


def _json(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> tuple[int, dict, bytes]:
    return status, {"Content-Type": "application/json", **(headers or {})}, json.dumps(obj).encode()


class _App:
    """Routes requests to the in-memory store (all methods run under the state lock)."""

    def __init__(self, state: HubState, base_url: Callable[[], str]) -> None:
        self.state = state
        self.base_url = base_url

    # ------------------------------------------------------------------ helpers
    def _role(self, headers: Any) -> str | None:
        """``"write"`` or ``"read"`` for a known token (anyone may write to a server without a
        token), None for none or an unknown one."""
        if self.state.token is None:
            return "write"
        given = headers.get("Authorization", "")
        if given == f"Bearer {self.state.token}":
            return "write"
        if given in {f"Bearer {t}" for t in self.state.read_only_tokens}:
            return "read"
        return None

    def _auth(self, headers: Any, write: bool, repo: Repo | None = None) -> None:
        role = self._role(headers)
        if write and role == "read":
            target = f"the {repo.repo_type} {repo.repo_id}" if repo is not None else "this namespace"
            raise HubError(403, f"You don't have the rights to write to {target}: the token has read access only")
        if (write or (repo is not None and repo.private)) and role is None:
            raise HubError(401, "Invalid credentials in Authorization header")

    def _repo(self, repo_type: str, repo_id: str, headers: Any, write: bool = False) -> Repo:
        repo = self.state.repos.get((repo_type, repo_id))
        if repo is None:
            raise HubError(404, f"Repository not found: {repo_type} {repo_id}", "RepoNotFound")
        self._auth(headers, write, repo)
        return repo

    def _commit(self, repo: Repo, revision: str) -> Commit:
        oid = repo.resolve(revision)
        if oid is None:
            raise HubError(404, f"Invalid rev id: {unquote(revision)}", "RevisionNotFound")
        return repo.commits[oid]

    @staticmethod
    def _type_and_id(prefix: str | None, ns: str, name: str) -> tuple[str, str]:
        repo_type = {"datasets": "dataset", "spaces": "space", "models": "model", None: "model"}[prefix]
        return repo_type, f"{ns}/{name}"

    def _file_json(self, path: str, entry: Entry) -> dict:
        out = {"type": "file", "oid": entry.blob_id, "size": entry.size, "path": path}
        if entry.lfs_oid is not None:
            out["lfs"] = {"oid": entry.lfs_oid, "size": entry.size, "pointerSize": entry.pointer_size}
        return out

    @staticmethod
    def _folders(files: dict[str, Entry]) -> set[str]:
        folders: set[str] = set()
        for path in files:
            parts = path.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                folders.add("/".join(parts[:i]))
        return folders

    def _tree_id(self, commit: Commit, folder: str) -> str:
        digest = hashlib.sha1()
        for path in sorted(commit.files):
            if path.startswith(folder + "/"):
                digest.update(f"{path}\0{commit.files[path].blob_id}\n".encode())
        return digest.hexdigest()

    def _listing(self, commit: Commit, folder: str, recursive: bool) -> list[dict]:
        prefix = folder + "/" if folder else ""
        out: list[dict] = []
        for sub in sorted(self._folders(commit.files)):
            if sub.startswith(prefix) and (recursive or "/" not in sub[len(prefix):]):
                out.append({"type": "directory", "oid": self._tree_id(commit, sub), "path": sub})
        for path in sorted(commit.files):
            if path.startswith(prefix) and (recursive or "/" not in path[len(prefix):]):
                out.append(self._file_json(path, commit.files[path]))
        return out

    # ------------------------------------------------------------------ routing
    def route(self, method: str, path: str, query: dict, body: bytes, headers: Any) -> tuple[int, dict, bytes]:
        with self.state.lock:
            return self._route(method, path, query, body, headers)

    def _route(self, method: str, path: str, query: dict, body: bytes, headers: Any) -> tuple[int, dict, bytes]:
        api = re.fullmatch(r"/api/(models|datasets|spaces)/([^/]+)/([^/]+)(?:/(.*))?", path)
        if path == "/api/repos/create" and method == "POST":
            return self.create_repo(json.loads(body or b"{}"), headers)
        if path == "/api/repos/delete" and method == "DELETE":
            payload = json.loads(body or b"{}")
            key = (payload.get("type") or "model", f"{payload.get('organization')}/{payload['name']}")
            self._repo(*key, headers, write=True)
            del self.state.repos[key]
            return _json({})
        if path == "/api/validate-yaml" and method == "POST":
            self._auth(headers, write=False)
            return _json({"errors": [], "warnings": []})
        if path == "/api/whoami-v2":
            role = self._role(headers)
            if role is None:
                raise HubError(401, "Invalid credentials in Authorization header")
            return _json({"type": "user", "name": "tester", "orgs": [], "auth": {"accessToken": {"role": role}}})
        if api:
            prefix, ns, name, rest = api.groups()
            repo_type, repo_id = self._type_and_id(prefix, ns, name)
            return self.api(method, repo_type, repo_id, rest or "", query, body, headers)
        lfs = re.fullmatch(r"/(?:(datasets|spaces)/)?([^/]+)/([^/]+)\.git/info/lfs/objects/batch", path)
        if lfs and method == "POST":
            repo_type, repo_id = self._type_and_id(lfs.group(1), lfs.group(2), lfs.group(3))
            return self.lfs_batch(repo_type, repo_id, json.loads(body), headers)
        upload = re.fullmatch(r"/_lfs/(models|datasets|spaces)/([^/]+)/([^/]+)/([0-9a-f]{64})", path)
        if upload and method == "PUT":
            repo_type, repo_id = self._type_and_id(upload.group(1), upload.group(2), upload.group(3))
            return self.lfs_put(self._repo(repo_type, repo_id, headers={"Authorization": f"Bearer {self.state.token}"}),
                                upload.group(4), body)
        resolve = re.fullmatch(r"/(?:(datasets|spaces)/)?([^/]+)/([^/]+)/resolve/([^/]+)/(.+)", path)
        if resolve and method in ("GET", "HEAD"):
            repo_type, repo_id = self._type_and_id(resolve.group(1), resolve.group(2), resolve.group(3))
            return self.resolve(repo_type, repo_id, resolve.group(4), unquote(resolve.group(5)), headers)
        raise HubError(404, f"no route for {method} {path}")

    def create_repo(self, payload: dict, headers: Any) -> tuple[int, dict, bytes]:
        self._auth(headers, write=True)
        repo_type = payload.get("type") or "model"
        repo_id = f"{payload.get('organization') or 'tester'}/{payload['name']}"
        url = f"{self.base_url()}/{'' if repo_type == 'model' else repo_type + 's/'}{repo_id}"
        if (repo_type, repo_id) in self.state.repos:
            # the Hub answers 409 with the url, which ``create_repo(exist_ok=True)`` returns
            return _json({"error": f"You already created this {repo_type} repo", "url": url}, status=409)
        private = payload.get("visibility", "public") != "public" or bool(payload.get("private"))
        now = _now()
        repo = Repo(repo_type, repo_id, private, now)
        self.state.repos[(repo_type, repo_id)] = repo
        content = GITATTRIBUTES
        initial = self.state.new_commit(
            repo, None, {".gitattributes": Entry(git_blob_id(content), len(content), content)}, "initial commit", ""
        )
        repo.branches["main"] = initial.oid
        return _json({"url": url, "name": repo_id, "id": repo_id})

    def api(self, method: str, repo_type: str, repo_id: str, rest: str, query: dict, body: bytes, headers: Any):
        write = method in ("POST", "PUT", "DELETE") and not rest.startswith("paths-info")
        repo = self._repo(repo_type, repo_id, headers, write=write)
        if rest == "" or rest.startswith("revision/"):
            revision = rest[len("revision/"):] if rest else "main"
            commit = self._commit(repo, revision)
            return _json({
                "id": repo_id,
                "author": repo_id.split("/")[0],
                "sha": commit.oid,
                "private": repo.private,
                "disabled": False,
                "gated": False,
                "createdAt": repo.created,
                "lastModified": commit.date,
                "tags": [],
                "siblings": [{"rfilename": p} for p in sorted(commit.files)],
            })
        if rest == "refs":
            return _json({
                "branches": [{"name": b, "ref": f"refs/heads/{b}", "targetCommit": o} for b, o in sorted(repo.branches.items())],
                "tags": [{"name": t, "ref": f"refs/tags/{t}", "targetCommit": o} for t, o in sorted(repo.tags.items())],
                "converts": [],
                "pullRequests": [],
            })
        m = re.fullmatch(r"tag/(.+)", rest)
        if m and method == "POST":
            payload = json.loads(body or b"{}")
            tag = payload["tag"]
            commit = self._commit(repo, m.group(1))
            if tag in repo.tags or tag in repo.branches:
                raise HubError(409, f"Tag {tag} already exists")
            repo.tags[tag] = commit.oid
            return _json({})
        if m and method == "DELETE":
            tag = unquote(m.group(1))
            if tag not in repo.tags:
                raise HubError(404, f"Invalid rev id: {tag}", "RevisionNotFound")
            del repo.tags[tag]
            return _json({})
        m = re.fullmatch(r"branch/(.+)", rest)
        if m and method == "POST":
            payload = json.loads(body or b"{}")
            branch = unquote(m.group(1))
            if branch in repo.branches:
                raise HubError(409, f"Branch {branch} already exists")
            start = self._commit(repo, payload.get("startingPoint") or "main")
            repo.branches[branch] = start.oid
            return _json({})
        m = re.fullmatch(r"preupload/(.+)", rest)
        if m and method == "POST":
            commit = self._commit(repo, m.group(1))
            files = []
            for item in json.loads(body)["files"]:
                existing = commit.files.get(item["path"])
                lfs = item["path"].lower().endswith(LFS_SUFFIXES) or item["size"] > 10_000_000
                files.append({
                    "path": item["path"],
                    "uploadMode": "lfs" if lfs else "regular",
                    "shouldIgnore": False,
                    "oid": None if existing is None else (existing.lfs_oid or existing.blob_id),
                })
            return _json({"files": files, "commitOid": commit.oid})
        m = re.fullmatch(r"commit/(.+)", rest)
        if m and method == "POST":
            return self.commit(repo, unquote(m.group(1)), body)
        m = re.fullmatch(r"commits/(.+)", rest)
        if m and method == "GET":
            commit = self._commit(repo, m.group(1))
            out = []
            while commit is not None:
                out.append({"id": commit.oid, "title": commit.title, "message": commit.message,
                            "date": commit.date, "authors": [{"user": "tester"}]})
                commit = repo.commits.get(commit.parent) if commit.parent else None
            return _json(out)
        m = re.fullmatch(r"tree/([^/]+)(?:/(.*))?", rest)
        if m and method == "GET":
            commit = self._commit(repo, m.group(1))
            folder = unquote(m.group(2) or "").strip("/")
            if folder and folder not in self._folders(commit.files):
                raise HubError(404, f"Entry not found: {folder}", "EntryNotFound")
            recursive = query.get("recursive", ["false"])[0].lower() in ("true", "1")
            return _json(self._listing(commit, folder, recursive))
        m = re.fullmatch(r"paths-info/(.+)", rest)
        if m and method == "POST":
            commit = self._commit(repo, m.group(1))
            if headers.get("Content-Type", "").startswith("application/json"):
                paths = json.loads(body).get("paths", [])
            else:
                paths = parse_qs(body.decode()).get("paths", [])
            folders = self._folders(commit.files)
            out = []
            for p in paths:
                p = p.strip("/")
                if p in commit.files:
                    out.append(self._file_json(p, commit.files[p]))
                elif p in folders:
                    out.append({"type": "directory", "oid": self._tree_id(commit, p), "path": p})
            return _json(out)
        raise HubError(404, f"no route for {method} /api/{repo_type}s/{repo_id}/{rest}")

    def commit(self, repo: Repo, branch: str, body: bytes) -> tuple[int, dict, bytes]:
        if branch not in repo.branches:
            raise HubError(404, f"Invalid rev id: {branch}", "RevisionNotFound")
        head = repo.branches[branch]
        lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
        if not lines or lines[0].get("key") != "header":
            raise HubError(400, "commit payload must start with a header line")
        header = lines[0]["value"]
        parent = header.get("parentCommit")
        if parent is not None and parent != head:
            raise HubError(412, "A commit has happened since. Please refresh and try again.")
        files = dict(repo.commits[head].files)
        for line in lines[1:]:
            key, value = line["key"], line["value"]
            if key == "file":
                content = base64.b64decode(value["content"]) if value.get("encoding") == "base64" else value["content"].encode()
                files[value["path"]] = Entry(git_blob_id(content), len(content), content)
            elif key == "lfsFile":
                oid = value["oid"]
                if oid not in repo.lfs_oids:
                    raise HubError(422, f"LFS object {oid} for {value['path']} was not uploaded")
                size = len(self.state.lfs[oid])
                pointer = lfs_pointer(oid, size)
                files[value["path"]] = Entry(git_blob_id(pointer), size, None, oid, len(pointer))
            elif key == "deletedFile":
                if value["path"] not in files:
                    raise HubError(404, f"A file with this name doesn't exist: {value['path']}", "EntryNotFound")
                del files[value["path"]]
            elif key == "deletedFolder":
                folder = value["path"].rstrip("/") + "/"
                for p in [p for p in files if p.startswith(folder)]:
                    del files[p]
            else:
                raise HubError(400, f"unknown commit operation {key!r}")
        commit = self.state.new_commit(repo, head, files, header.get("summary", ""), header.get("description", ""))
        repo.branches[branch] = commit.oid
        prefix = "" if repo.repo_type == "model" else f"{repo.repo_type}s/"
        return _json({
            "success": True,
            "commitOid": commit.oid,
            "commitUrl": f"{self.base_url()}/{prefix}{repo.repo_id}/commit/{commit.oid}",
            "pullRequestUrl": None,
        })

    def lfs_batch(self, repo_type: str, repo_id: str, payload: dict, headers: Any) -> tuple[int, dict, bytes]:
        repo = self._repo(repo_type, repo_id, headers, write=payload.get("operation") == "upload")
        objects = []
        for obj in payload["objects"]:
            item: dict[str, Any] = {"oid": obj["oid"], "size": obj["size"]}
            if obj["oid"] not in repo.lfs_oids:
                # a pre-signed upload URL, as the Hub hands out (no Authorization header needed)
                href = f"{self.base_url()}/_lfs/{repo_type}s/{repo_id}/{obj['oid']}"
                item["actions"] = {"upload": {"href": href, "header": {}}}
            objects.append(item)
        return 200, {"Content-Type": "application/vnd.git-lfs+json"}, json.dumps(
            {"transfer": "basic", "objects": objects, "hash_algo": "sha256"}).encode()

    def lfs_put(self, repo: Repo, oid: str, body: bytes) -> tuple[int, dict, bytes]:
        if hashlib.sha256(body).hexdigest() != oid:
            raise HubError(400, "uploaded content does not match its sha256")
        self.state.lfs[oid] = body
        repo.lfs_oids.add(oid)
        return 200, {}, b""

    def resolve(self, repo_type: str, repo_id: str, revision: str, path: str, headers: Any):
        repo = self._repo(repo_type, repo_id, headers)
        commit = self._commit(repo, revision)
        entry = commit.files.get(path)
        if entry is None:
            raise HubError(404, f"Entry not found: {path}", "EntryNotFound")
        data = entry.content if entry.content is not None else self.state.lfs[entry.lfs_oid]
        out_headers = {
            "X-Repo-Commit": commit.oid,
            "ETag": f'"{entry.lfs_oid or entry.blob_id}"',
            "Accept-Ranges": "bytes",
            "Content-Type": "application/octet-stream",
        }
        if entry.lfs_oid is not None:
            out_headers["X-Linked-Etag"] = f'"{entry.lfs_oid}"'
            out_headers["X-Linked-Size"] = str(entry.size)
        status = 200
        rng = headers.get("Range")
        if rng:
            m = re.fullmatch(r"bytes=(\d*)-(\d*)", rng.strip())
            if m:
                start = int(m.group(1)) if m.group(1) else max(0, len(data) - int(m.group(2)))
                end = int(m.group(2)) if m.group(1) and m.group(2) else len(data) - 1
                end = min(end, len(data) - 1)
                out_headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
                data = data[start:end + 1]
                status = 206
        return status, out_headers, data


class HubServer:
    """Start the server on a free loopback port in a daemon thread; ``close()`` stops it."""

    def __init__(self, token: str | None = "hf_test_token") -> None:
        self.state = HubState(token)
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.state = self.state
        self._server.app = _App(self.state, lambda: self.url)
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="hub-server", daemon=True)
        self._thread.start()

    def fail(self, method: str, path_pattern: str, *, times: int = 1, status: int = 500,
             drop: bool = False, before: Callable[[], None] | None = None,
             lose_answer: bool = False, echo_auth: bool = False) -> Failure:
        """Make the next ``times`` requests matching ``method`` and the ``path_pattern`` regex fail.

        ``drop=True`` closes the connection without an answer; otherwise the server answers
        ``status``. ``before`` instead runs a callback (e.g. a concurrent commit) and then serves
        the request normally. ``lose_answer=True`` carries the request out and then closes the
        connection without an answer; ``echo_auth=True`` answers ``status`` with an error message
        that quotes the request's ``Authorization`` header.
        """
        failure = Failure(method, re.compile(path_pattern), times, status, drop, before, lose_answer, echo_auth)
        with self.state.lock:
            self.state.failures.append(failure)
        return failure

    def grant_read_only(self, token: str) -> None:
        """Let ``token`` read everything, and answer 403 to every write it attempts."""
        with self.state.lock:
            self.state.read_only_tokens.add(token)

    def repo(self, repo_id: str, repo_type: str = "dataset") -> Repo:
        return self.state.repos[(repo_type, repo_id)]

    def commit_files(self, repo_id: str, files: dict[str, bytes], title: str = "external change",
                     repo_type: str = "dataset", branch: str = "main") -> str:
        """Commit small regular files directly (as another client would) and return the new oid."""
        with self.state.lock:
            repo = self.repo(repo_id, repo_type)
            head = repo.branches[branch]
            merged = dict(repo.commits[head].files)
            for path, content in files.items():
                merged[path] = Entry(git_blob_id(content), len(content), content)
            commit = self.state.new_commit(repo, head, merged, title, "")
            repo.branches[branch] = commit.oid
            return commit.oid

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> "HubServer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


@contextmanager
def hub_environment(home: Path, token: str) -> Iterator[HubServer]:
    """A running ``HubServer`` with huggingface_hub and datasets pointed at it, then restored.

    Sets the environment and patches the module constants they read at import time, as datasets'
    own test fixtures do; the caches live under ``home``. ``HF_HUB_OFFLINE`` is unset, since it
    would block loopback too.
    """
    import datasets.config
    import huggingface_hub.constants as hfc
    import pytest
    from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    server = HubServer(token=token)
    mp = pytest.MonkeyPatch()
    mp.setenv("HF_TOKEN", token)
    mp.setenv("HF_HOME", str(home))
    mp.setenv("HF_ENDPOINT", server.url)
    mp.setenv("HF_HUB_DISABLE_XET", "1")
    mp.delenv("HF_HUB_OFFLINE", raising=False)
    mp.setattr(hfc, "ENDPOINT", server.url)
    mp.setattr(hfc, "HUGGINGFACE_CO_URL_TEMPLATE", server.url + "/{repo_id}/resolve/{revision}/{filename}")
    mp.setattr(hfc, "HF_HUB_DISABLE_XET", True)
    mp.setattr(hfc, "HF_HUB_OFFLINE", False)
    mp.setattr(hfc, "HF_HUB_CACHE", str(home / "hub"))
    mp.setattr(hfc, "HF_TOKEN_PATH", str(home / "token"))
    mp.setattr(datasets.config, "HF_ENDPOINT", server.url)
    mp.setattr(datasets.config, "HUB_DATASETS_URL", server.url + "/datasets/{repo_id}/resolve/{revision}/{path}")
    mp.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    mp.setattr(datasets.config, "HF_DATASETS_CACHE", home / "datasets")
    bars_were_off = are_progress_bars_disabled()
    disable_progress_bars()  # upload bars from worker threads would print past pytest's capture
    try:
        yield server
    finally:
        if not bars_were_off:
            enable_progress_bars()
        mp.undo()
        server.close()
