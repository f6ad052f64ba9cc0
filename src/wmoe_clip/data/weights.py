"""``download-weights``: a backbone's CLIP weights, fetched, verified and made loadable offline.

The source URL of each backbone comes from open_clip's pretrained registry, and so does what is
published of its hash:

- ``ViT-L-14-336-quickgelu`` / ``openai``: OpenAI's URLs carry the file's full sha256 as their
  second-to-last segment, which is verified. The file is a TorchScript archive, which
  ``torch.load(weights_only=True)`` (open_clip's default for a weights path) refuses, so it is
  converted once, after verification, into a plain state dict (``vit_l14_336_openai.pt``);
- ``ViT-B-16-plus-240`` / ``laion400m_e31`` (WinCLIP's backbone): open_clip's release URLs carry only
  the first 8 hex digits of the sha256 at the end of the file name (``…-8fb26589.pt``), which is all
  open_clip itself checks. The full sha256 is therefore recorded on the first download and every
  later download into the same folder must match it; ``--sha256`` pins it from the start. The file
  is a pickled checkpoint read with ``weights_only=True`` and saved as a plain state dict
  (``vit_b16_plus_240_laion400m_e31.pt``).

``open_clip.create_model(BACKBONE, pretrained=<DIR>/<file>)`` accepts either file. The download is
deleted after conversion; the record (``weights.json`` for ViT-L, ``<file stem>.json`` otherwise)
keeps both hashes.

``download-weights --anomalyclip`` also fetches AnomalyCLIP's two released prompt-learner checkpoints
from the official repository at a fixed commit, into ``<DIR>/anomalyclip/<run>/epoch_15.pth`` (their
repository paths below ``checkpoints/``), where they may also be placed by hand. The repository tracks
them as plain git blobs, so a file is verified against its git blob id (SHA-1 of ``blob <size>\0`` +
content) from the commit's tree; should the host serve a Git LFS pointer instead, the pointer is
verified that way and the file then fetched from the LFS media URL against the pointer's
``oid sha256``. The sha256 of each file is recorded on first download in
``<DIR>/anomalyclip/checkpoints.json`` and checked from then on.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from ..errors import WMoEError
from ..io import check_writable, torch_save, write_json
from .download import CHUNK, DOWNLOADS_DIRNAME, RetryBudget, fetch, sha256_file

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_SHA256_PREFIX = re.compile(r"^[0-9a-f]{8,64}$")


@dataclass(frozen=True)
class WeightsSource:
    backbone: str  # open_clip model name (model.backbone)
    tag: str  # open_clip pretrained tag
    file: str  # the converted state dict written into --dest
    record: str  # the JSON record beside it
    torchscript: bool  # the download is a TorchScript archive (OpenAI's), unpickled after verification


SOURCES: dict[str, WeightsSource] = {
    s.backbone: s
    for s in (
        WeightsSource("ViT-L-14-336-quickgelu", "openai", "vit_l14_336_openai.pt", "weights.json", torchscript=True),
        WeightsSource("ViT-B-16-plus-240", "laion400m_e31", "vit_b16_plus_240_laion400m_e31.pt",
                      "vit_b16_plus_240_laion400m_e31.json", torchscript=False),
    )
}
MODEL = "ViT-L-14-336-quickgelu"
TAG = SOURCES[MODEL].tag
WEIGHTS_FILE = SOURCES[MODEL].file
RECORD_FILE = SOURCES[MODEL].record


def weights_source(backbone: str) -> WeightsSource:
    try:
        return SOURCES[backbone]
    except KeyError:
        raise WMoEError(f"download-weights knows the backbones {', '.join(SOURCES)}, not {backbone!r}") from None


def registry_source(backbone: str = MODEL) -> tuple[str, str]:
    """(url, published hash) of ``backbone``'s weights from open_clip's registry: a full sha256 for
    OpenAI's URLs, a prefix of it for open_clip's own release files."""
    import open_clip

    src = weights_source(backbone)
    url = open_clip.get_pretrained_cfg(src.backbone, src.tag).get("url", "")
    if not url:
        raise WMoEError(f"open_clip {open_clip.__version__} has no download URL for {src.backbone}/{src.tag}")
    path = urllib.parse.urlparse(url).path
    digest = path.split("/")[-2] if "openaipublic" in url else Path(path).stem.rsplit("-", 1)[-1]
    if not _SHA256_PREFIX.match(digest):
        raise WMoEError(f"cannot read the sha256 from open_clip's URL {url}; pass --sha256 explicitly")
    return url, digest


def _to_state_dict(path: Path, torchscript: bool) -> dict:
    import open_clip.factory

    # weights_only=False is needed for TorchScript; safe here because the file's sha256 was verified.
    return open_clip.factory.load_state_dict(str(path), weights_only=not torchscript)


def download_weights(dest: str | os.PathLike, url: str | None = None, sha256: str | None = None,
                     budget: RetryBudget | None = None, backbone: str = MODEL) -> Path:
    """Fetch, verify and convert ``backbone``'s weights into ``dest``; return the path of the loadable file.

    ``url``/``sha256`` override open_clip's source (a mirror or a test server); a URL without a
    full sha256 is refused. open_clip's own URL may publish only a prefix of the sha256: the full one
    is then the one recorded by an earlier download into ``dest``, if any.
    """
    src = weights_source(backbone)
    dest = Path(dest)
    out, record = dest / src.file, dest / src.record
    info = json.loads(record.read_text()) if record.is_file() else {}
    prefix = ""
    if url is None:
        url, published = registry_source(backbone)
        if _SHA256.match(published):
            sha256 = sha256 or published
        else:
            prefix = published
            sha256 = sha256 or info.get("source_sha256")
    sha256 = (sha256 or "").lower()
    if not sha256 and not prefix:
        raise WMoEError(f"no sha256 for {url}: pass --sha256 (the file is unpickled, so it must be verified)")
    if out.is_file() and info and info.get("sha256") == sha256_file(out) and (
            info.get("source_sha256") == sha256 or (not sha256 and info.get("source_sha256", "").startswith(prefix))):
        print(f"weights already in place: {out}")
        return out
    check_writable(dest, "--dest", folder=True)
    budget = budget or RetryBudget()
    print(f"fetching {url} ({budget.describe()})")
    raw = fetch(url, dest / DOWNLOADS_DIRNAME / Path(urllib.parse.urlparse(url).path).name, sha256=sha256 or None,
                budget=budget)
    if not raw.sha256.startswith(prefix):
        raw.path.unlink()
        raise WMoEError(f"sha256 mismatch for {raw.path.name} from {url}: open_clip publishes a hash starting "
                        f"{prefix}, the file has {raw.sha256}; it was removed. Run the command again, and if the "
                        "mismatch persists, check the source")
    if not sha256:
        print(f"sha256 of {raw.path.name} (first download; open_clip publishes only its prefix {prefix}): {raw.sha256}")
    print(f"converting {raw.path.name} to a state dict")
    torch_save(_to_state_dict(raw.path, src.torchscript), out)
    write_json(record, {
        "model": src.backbone, "tag": src.tag, "url": url, "source_sha256": raw.sha256,
        "file": src.file, "sha256": sha256_file(out),
    })
    raw.path.unlink()
    print(f"weights ready: {out}\nset model.pretrained: {out} in the run config")
    return out


ANOMALYCLIP_REPOSITORY = "zqhang/AnomalyCLIP"
ANOMALYCLIP_COMMIT = "45ed4dd35c05797d854294b5e8d585c545920089"
RAW_BASE = f"https://raw.githubusercontent.com/{ANOMALYCLIP_REPOSITORY}/{ANOMALYCLIP_COMMIT}"
MEDIA_BASE = f"https://media.githubusercontent.com/media/{ANOMALYCLIP_REPOSITORY}/{ANOMALYCLIP_COMMIT}"
RELEASED_DIRNAME = "anomalyclip"
RELEASED_RECORD = "checkpoints.json"
_LFS_POINTER = b"version https://git-lfs.github.com/spec/v1"


@dataclass(frozen=True)
class ReleasedCheckpoint:
    """A released checkpoint of the official repository: its path there, git blob id and training source."""

    path: str  # in the repository, e.g. checkpoints/9_12_4_multiscale/epoch_15.pth
    git_blob_sha1: str
    trained_on: str
    tested_on: str

    @property
    def local(self) -> str:
        """Its place below ``<DIR>/anomalyclip/``: the repository path without ``checkpoints/``."""
        return self.path.removeprefix("checkpoints/")


# From the tree of ANOMALYCLIP_COMMIT (`git ls-tree`); test.sh evaluates each on the dataset it was not
# trained on.
RELEASED = (
    ReleasedCheckpoint("checkpoints/9_12_4_multiscale/epoch_15.pth", "c90f1d9d92d158b436a8fc193f984d4cec8b1fc8",
                       trained_on="visa", tested_on="mvtec"),
    ReleasedCheckpoint("checkpoints/9_12_4_multiscale_visa/epoch_15.pth", "72adc786e031b49ea288ba5f815f0d38cf158708",
                       trained_on="mvtec", tested_on="visa"),
)


def git_blob_sha1(path: Path) -> str:
    """Git's object id of the file's content (what ``git hash-object`` prints)."""
    digest = hashlib.sha1(f"blob {path.stat().st_size}\0".encode())
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _lfs_pointer(path: Path) -> dict[str, str] | None:
    """The fields of a Git LFS pointer file, or None for any other file."""
    if path.stat().st_size > 1024:
        return None
    text = path.read_bytes()
    if not text.startswith(_LFS_POINTER):
        return None
    return dict(line.split(" ", 1) for line in text.decode().splitlines() if " " in line)


def released_checkpoints(dest: str | os.PathLike, raw_base: str = RAW_BASE, media_base: str = MEDIA_BASE,
                         budget: RetryBudget | None = None) -> list[Path]:
    """Fetch (or check where placed by hand) AnomalyCLIP's released checkpoints into
    ``dest/anomalyclip/``; return their paths, in the order of RELEASED."""
    root = Path(dest) / RELEASED_DIRNAME
    record_path = root / RELEASED_RECORD
    record = json.loads(record_path.read_text()) if record_path.is_file() else {}
    budget = budget or RetryBudget()
    out = []
    for ckpt in RELEASED:
        target = root / ckpt.local
        known = (record.get(ckpt.local) or {}).get("sha256")
        if target.is_file():
            _check_released(target, ckpt, known, "placed")
            print(f"AnomalyCLIP checkpoint in place: {target}")
        else:
            check_writable(root, "--dest", folder=True)
            url = f"{raw_base}/{ckpt.path}"
            print(f"fetching {url} ({budget.describe()})")
            raw = fetch(url, root / DOWNLOADS_DIRNAME / ckpt.local, budget=budget).path
            pointer = _lfs_pointer(raw)
            if pointer is not None:
                _check_released(raw, ckpt, None, "LFS pointer")
                oid = pointer.get("oid", "").removeprefix("sha256:")
                url = f"{media_base}/{ckpt.path}"
                print(f"{ckpt.path} is stored with Git LFS; fetching {url}")
                raw.unlink()
                raw = fetch(url, raw, sha256=oid, budget=budget).path
            else:
                _check_released(raw, ckpt, known, "downloaded")
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(raw, target)
        record[ckpt.local] = {"repository": ANOMALYCLIP_REPOSITORY, "commit": ANOMALYCLIP_COMMIT, "path": ckpt.path,
                              "trained_on": ckpt.trained_on, "tested_on": ckpt.tested_on,
                              "git_blob_sha1": ckpt.git_blob_sha1, "sha256": sha256_file(target)}
        out.append(target)
    write_json(record_path, record)
    print(f"AnomalyCLIP's released checkpoints ready in {root}: wmoe-clip import-checkpoint --from anomalyclip "
          "FILE --config anomalyclip --out model.pt")
    return out


def _check_released(path: Path, ckpt: ReleasedCheckpoint, sha256: str | None, how: str) -> None:
    """The file is the released one: its recorded sha256 if any, else (and for a pointer) its git blob id."""
    if sha256 is not None and sha256_file(path) == sha256:
        return
    got = git_blob_sha1(path)
    if got != ckpt.git_blob_sha1:
        if how != "placed":
            path.unlink()
        what = "Remove it and run" if how == "placed" else "It was removed; run"
        raise WMoEError(
            f"{how} file {path} is not {ANOMALYCLIP_REPOSITORY}'s {ckpt.path} at {ANOMALYCLIP_COMMIT[:7]} (git blob "
            f"{got}, expected {ckpt.git_blob_sha1}). {what} wmoe-clip download-weights --anomalyclip again"
        )
