"""Dataset download: resumable HTTP(S) fetch, sha256 verification, and the ``download`` workflow.

A file is fetched into ``<name>.part`` and resumed with an HTTP ``Range`` request after a dropped
connection or an interrupted run; it gets its final name only once its sha256 is verified (or, where
the registry has none, computed and recorded). ``download_dataset`` then extracts every archive into
a temporary directory beside the destination and moves the finished tree into place; the
``download.json`` record inside it is what marks a dataset directory as complete.

A dead or silent server costs a bounded, visible time: a connection that delivers no byte for
``stall_timeout`` seconds counts as dropped, and a command has ``retries`` retries in all (a
:class:`RetryBudget` shared by its files), both printed at the start and settable on the command line.
"""

from __future__ import annotations

import datetime
import hashlib
import http.client
import json
import os
import re
import shutil
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from .. import __version__
from ..errors import WMoEError
from ..io import atomic_dir, check_writable, write_json
from .convert import IMAGE_EXTS
from .extract import extract_into, is_archive
from .registry import FileSpec

DOWNLOADS_DIRNAME = ".downloads"
RECORD_NAME = "download.json"
CHUNK = 1 << 20


@dataclass(frozen=True)
class FetchResult:
    path: Path
    sha256: str
    size: int


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_sha256(path: Path, got: str, expected: str | None, source: str) -> None:
    if expected and got != expected.lower():
        raise WMoEError(
            f"sha256 mismatch for {path.name} from {source}: expected {expected}, got {got}; "
            "the file is corrupt or the source changed. It was removed; run the command again, "
            "and if the mismatch persists, check the source page."
        )


class _Dropped(Exception):
    """The connection ended before the announced length: resume from the partial file."""


@dataclass
class RetryBudget:
    """How long a command waits on the network: ``stall_timeout`` seconds without a byte before a
    connection counts as dropped, and ``retries`` retries for the whole command (all files together),
    ``backoff``·n seconds apart. A server that accepts and never answers thus costs at most
    (retries + 1)·stall_timeout seconds plus the pauses."""

    retries: int = 5
    stall_timeout: float = 60.0
    backoff: float = 1.0
    used: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if self.retries < 0:
            raise WMoEError(f"--retries must be 0 or more, got {self.retries}")
        if not self.stall_timeout > 0:
            raise WMoEError(f"--stall-timeout must be a positive number of seconds, got {self.stall_timeout}")

    def describe(self) -> str:
        return (f"a connection is dropped after {self.stall_timeout:g} s without data; {self.retries - self.used} "
                f"of {self.retries} retries left (--stall-timeout, --retries)")

    def retry(self, reason: str, part: Path) -> None:
        """Spend one retry after ``reason`` (and wait), or give up with a message when none is left."""
        if self.used >= self.retries:
            size = part.stat().st_size if part.exists() else 0
            kept = f" The partial file {part} ({size} bytes) is kept: run again to resume." if size else ""
            raise WMoEError(f"{reason}; gave up after {self.retries} retries (--retries, --stall-timeout).{kept}")
        self.used += 1
        delay = self.backoff * self.used
        print(f"{reason}; retry {self.used} of {self.retries} in {delay:g} s", file=sys.stderr)
        time.sleep(delay)


def _request(url: str, offset: int, timeout: float):
    headers = {"User-Agent": f"wmoe-clip/{__version__}"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)


def _total_from_content_range(value: str | None) -> int | None:
    # "bytes 100-199/200" or "bytes */200"
    if not value or "/" not in value:
        return None
    total = value.rsplit("/", 1)[1].strip()
    return int(total) if total.isdigit() else None


def _start_from_content_range(value: str | None) -> int | None:
    match = re.match(r"bytes (\d+)-", value or "")
    return int(match.group(1)) if match else None


def _unreachable(url: str, exc: Exception, timeout: float) -> _Dropped:
    reason = getattr(exc, "reason", exc)
    if isinstance(reason, TimeoutError) or isinstance(exc, TimeoutError):
        return _Dropped(f"no data from {url} for {timeout:g} s")
    return _Dropped(f"cannot reach {url}: {reason}")


def _fetch_once(url: str, part: Path, timeout: float, desc: str) -> None:
    """Append the rest of ``url`` to ``part``. Raises _Dropped when the caller should resume."""
    offset = part.stat().st_size if part.exists() else 0
    try:
        resp = _request(url, offset, timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:
            # Range starts at or past the end: the partial file may already hold everything.
            if _total_from_content_range(exc.headers.get("Content-Range")) == offset:
                return
            part.unlink()
            return _fetch_once(url, part, timeout, desc)
        if exc.code >= 500:  # a server-side hiccup: worth another try
            raise _Dropped(f"{url} answered HTTP {exc.code} {exc.reason}") from None
        raise WMoEError(f"download of {url} failed: HTTP {exc.code} {exc.reason}.") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        raise _unreachable(url, exc, timeout) from exc
    with resp:
        if offset and resp.status != 206:
            # The server ignored the Range header and sends the whole file: start over.
            offset = 0
            part.write_bytes(b"")
        elif offset and _start_from_content_range(resp.headers.get("Content-Range")) != offset:
            part.unlink()
            raise _Dropped(f"{url} answered a different byte range than asked; restarting from zero")
        length = resp.headers.get("Content-Length")
        expected_total = offset + int(length) if length is not None else None
        received = offset
        with open(part, "ab") as out, tqdm(
            total=expected_total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
            desc=desc, leave=False, postfix=f"drops after {timeout:g} s without data",
        ) as bar:
            while True:
                try:
                    block = resp.read1(CHUNK)  # what has arrived: a stall keeps the bytes before it
                except TimeoutError:
                    raise _Dropped(f"no data from {url} for {timeout:g} s (stalled at byte {received})") from None
                except (OSError, ValueError, http.client.HTTPException) as exc:  # reset, IncompleteRead
                    raise _Dropped(f"connection to {url} dropped at byte {received}: {exc}") from exc
                if not block:
                    break
                out.write(block)
                received += len(block)
                bar.update(len(block))
        if expected_total is not None and received < expected_total:
            raise _Dropped(f"connection to {url} ended at byte {received} of {expected_total}")


def fetch(
    url: str,
    target: str | os.PathLike,
    sha256: str | None = None,
    budget: RetryBudget | None = None,
) -> FetchResult:
    """Download ``url`` to ``target`` with resume; verify ``sha256`` when given, return the hash.

    An existing ``target`` with the right hash is reused. A dropped or stalled connection is resumed
    from the partial file while ``budget`` has retries left; after that the ``.part`` file stays, and
    the next call resumes it. A hash mismatch removes the partial file, since resuming it would keep
    bad bytes.
    """
    budget = budget or RetryBudget()
    target = Path(target)
    scheme = urllib.parse.urlparse(url).scheme
    if scheme not in ("http", "https"):
        raise WMoEError(f"only http(s) URLs can be downloaded, got {url!r}")
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        got = sha256_file(target)
        if not sha256 or got == sha256.lower():
            return FetchResult(target, got, target.stat().st_size)
        print(f"{target} does not match its sha256; downloading it again")
        target.unlink()
    part = target.with_name(target.name + ".part")
    while True:
        try:
            _fetch_once(url, part, budget.stall_timeout, desc=target.name)
            break
        except _Dropped as exc:
            budget.retry(str(exc), part)
    got = sha256_file(part)
    try:
        _check_sha256(target, got, sha256, url)
    except WMoEError:
        part.unlink(missing_ok=True)
        raise
    os.replace(part, target)
    return FetchResult(target, got, target.stat().st_size)


def _file_url(entry: Any, url_base: str | None) -> str:
    if url_base:
        return url_base.rstrip("/") + "/" + urllib.parse.quote(entry.filename)
    return entry.url


def _count_images(folder: Path) -> int:
    return sum(
        1 for p in folder.rglob("*")
        if p.suffix.lower() in IMAGE_EXTS and DOWNLOADS_DIRNAME not in p.relative_to(folder).parts
    )


def _placed_content(dest: Path) -> list[Path]:
    """What a user extracted into ``dest`` by hand: everything except our own bookkeeping."""
    if not dest.is_dir():
        return []
    return [p for p in dest.iterdir() if p.name not in (DOWNLOADS_DIRNAME, RECORD_NAME)]


def is_complete(dest: str | os.PathLike, key: str) -> bool:
    """Whether ``dest`` holds a finished download of dataset ``key``."""
    record = Path(dest) / RECORD_NAME
    if not record.is_file():
        return False
    try:
        return json.loads(record.read_text()).get("dataset") == key
    except (json.JSONDecodeError, AttributeError):
        return False


def _missing_manual_message(spec: Any, dest: Path) -> str:
    downloads = dest / DOWNLOADS_DIRNAME
    where = [str(downloads / f.filename) for f in spec.download.files]
    lines = [
        f"dataset {spec.key!r} ({spec.display_name}) cannot be downloaded automatically; "
        f"get it from {spec.homepage}.",
    ]
    if where:
        lines.append("Put the archive(s) at: " + ", ".join(where))
        lines.append(f"or extract them into {dest}/ yourself,")
    else:
        lines.append(f"Put the downloaded archive(s) in {dest}/ (they are extracted safely) or extract them there,")
    lines.append(f"then run `wmoe-clip download {spec.key} --dest {dest}` again.")
    if spec.download.manual:
        lines.append("Instructions: " + " ".join(spec.download.manual.split()))
    return " ".join(lines)


def _install(dest: Path, archives: list[Path], record: dict[str, Any]) -> None:
    """Extract ``archives`` into a fresh tree beside ``dest`` and swap it in as one step.

    The cached archives move along into the new tree. Until the final rename, ``dest`` is either
    its old self or has no ``download.json``, so no later step can take a half-made tree for a
    finished one.
    """
    with atomic_dir(dest) as tmp:
        for archive in archives:
            if is_archive(archive):
                extract_into(archive, tmp)
            else:
                shutil.copy2(archive, tmp / archive.name)
        write_json(tmp / RECORD_NAME, record)
        (dest / RECORD_NAME).unlink(missing_ok=True)
        kept = tmp / DOWNLOADS_DIRNAME
        if (dest / DOWNLOADS_DIRNAME).is_dir():
            os.replace(dest / DOWNLOADS_DIRNAME, kept)
        for archive in archives:
            if archive.parent == dest:  # put into dest by hand: kept with the downloaded ones
                kept.mkdir(exist_ok=True)
                os.replace(archive, kept / archive.name)


def _file_record(entry: Any, url: str | None, result: FetchResult) -> dict[str, Any]:
    return {
        "filename": entry.filename,
        "url": url,
        "bytes": result.size,
        "sha256": result.sha256,
        "sha256_source": "registry" if entry.sha256 else "computed",
    }


def _verify_placed_archive(spec: Any, entry: Any, path: Path) -> FetchResult:
    got = sha256_file(path)
    try:
        _check_sha256(path, got, entry.sha256, str(path))
    except WMoEError as exc:
        raise WMoEError(f"{exc} (manually placed archive of {spec.key}; source: {spec.homepage})") from None
    return FetchResult(path, got, path.stat().st_size)


def _fetch_entry(spec: Any, entry: Any, dest: Path, url: str, budget: RetryBudget) -> FetchResult:
    print(f"{spec.key}: fetching {url} ({budget.describe()})")
    try:
        return fetch(url, dest / DOWNLOADS_DIRNAME / entry.filename, sha256=entry.sha256, budget=budget)
    except WMoEError as exc:
        hint = f" If the source is gone: {' '.join(spec.download.manual.split())}" if spec.download.manual else ""
        raise WMoEError(
            f"{exc} Alternatively put {entry.filename} at {dest / DOWNLOADS_DIRNAME / entry.filename} "
            f"(source: {spec.homepage}) and run the command again.{hint}"
        ) from None


def download_dataset(
    spec: Any, dest: str | os.PathLike, url_base: str | None = None, force: bool = False,
    budget: RetryBudget | None = None,
) -> Path:
    """Download (or take the manually placed copy of) dataset ``spec`` into ``dest``.

    ``spec`` is a registry entry (``wmoe_clip.data.registry.get(key)``). ``url_base`` replaces the
    directory part of every source URL (a mirror, or a local server in tests). A folder a user
    extracted into ``dest`` by hand (``dest`` has content but no ``download.json``) is checked and
    used instead of downloading; so is an archive placed at ``dest/.downloads/<filename>``.
    ``budget`` bounds the time spent on a dead or stalled server (default: :class:`RetryBudget`).
    Returns ``dest``.
    """
    dest = Path(dest)
    budget = budget or RetryBudget()
    recorded = (dest / RECORD_NAME).is_file()
    if is_complete(dest, spec.key) and not force:
        print(f"{spec.key}: {dest} is already complete ({RECORD_NAME} present); nothing to do")
        return dest
    # Files go into dest/.downloads, the extracted tree is made beside dest and swapped in.
    check_writable(dest, "--dest", folder=True)
    check_writable(dest, "--dest", folder=True, replaced=True)
    record: dict[str, Any] = {"dataset": spec.key, "kind": spec.download.kind, "files": [], "wmoe_clip": __version__}
    downloads = dest / DOWNLOADS_DIRNAME
    files = spec.download.files
    archives_placed = bool(files) and all((downloads / f.filename).is_file() for f in files)
    if (spec.download.kind == "manual" and not archives_placed) or (_placed_content(dest) and not recorded):
        placed = _placed_content(dest)
        if not placed:
            raise WMoEError(_missing_manual_message(spec, dest))
        placed_archives = [p for p in placed if is_archive(p)]
        if placed_archives and not _count_images(dest):
            return _install_placed_archives(spec, dest, placed_archives, record)
        return _adopt_placed_folder(spec, dest, record)

    archives = []
    for entry in files:
        if spec.download.kind == "manual":
            url, result = None, _verify_placed_archive(spec, entry, downloads / entry.filename)
        else:
            url = _file_url(entry, url_base)
            result = _fetch_entry(spec, entry, dest, url, budget)
        if not entry.sha256:
            print(f"{spec.key}: {entry.filename} has no sha256 in the registry; computed "
                  f"{result.sha256}, recorded in {dest / RECORD_NAME}")
        record["files"].append(_file_record(entry, url, result))
        archives.append(result.path)
    record["completed"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    _install(dest, archives, record)
    print(f"{spec.key}: complete in {dest}")
    return dest


def _install_placed_archives(spec: Any, dest: Path, archives: list[Path], record: dict[str, Any]) -> Path:
    """Extract archives a user put into ``dest`` by hand, as if they had been downloaded.

    The registry knows no file name or hash for them: their sha256 is computed and recorded, and once
    extracted they move to ``dest/.downloads``; ``prepare`` then checks the layout and the counts.
    """
    for archive in archives:
        result = FetchResult(archive, sha256_file(archive), archive.stat().st_size)
        print(f"{spec.key}: extracting the placed archive {archive.name} (sha256 {result.sha256})")
        record["files"].append(_file_record(FileSpec(url="", filename=archive.name), None, result))
    record["source"] = "placed archive"
    record["completed"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    _install(dest, archives, record)
    print(f"{spec.key}: complete in {dest}")
    return dest


def _adopt_placed_folder(spec: Any, dest: Path, record: dict[str, Any]) -> Path:
    """Accept a dataset a user extracted into ``dest`` by hand, after a plausibility check.

    A folder has no archive hash to check, so it must at least hold as many images as the
    registry's test set; ``prepare`` then checks the exact per-class counts.
    """
    found, expected = _count_images(dest), sum(spec.totals)
    if found < expected:
        raise WMoEError(
            f"{dest} holds {found} images, fewer than the {expected} of {spec.key}'s test set: the "
            f"extraction is incomplete or the wrong archive was used. Source: {spec.homepage}"
        )
    record["source"] = "placed folder"
    record["n_images"] = found
    record["completed"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    write_json(dest / RECORD_NAME, record)
    print(f"{spec.key}: using the folder placed in {dest} ({found} images)")
    return dest
