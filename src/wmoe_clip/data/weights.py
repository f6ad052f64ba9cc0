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
"""

from __future__ import annotations

import json
import os
import re
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from ..errors import WMoEError
from ..io import check_writable, torch_save, write_json
from .download import DOWNLOADS_DIRNAME, RetryBudget, fetch, sha256_file

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
