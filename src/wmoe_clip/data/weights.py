"""``download-weights``: the OpenAI ViT-L/14@336px CLIP weights, fetched and made loadable offline.

The source URL comes from open_clip's pretrained registry (``ViT-L-14-336-quickgelu`` / ``openai``);
OpenAI's URLs carry the file's full sha256 as their second-to-last segment, which is verified. The
OpenAI file is a TorchScript archive, which ``torch.load(weights_only=True)`` (open_clip's default
for a weights path) refuses, so it is converted once, after verification, into a plain state dict:
``open_clip.create_model("ViT-L-14-336-quickgelu", pretrained=<DIR>/vit_l14_336_openai.pt)``
accepts it. The 890 MB TorchScript download is deleted after conversion; ``weights.json`` records
both hashes.
"""

from __future__ import annotations

import json
import os
import re
import urllib.parse
from pathlib import Path

from ..errors import WMoEError
from ..io import check_writable, torch_save, write_json
from .download import DOWNLOADS_DIRNAME, RetryBudget, fetch, sha256_file

MODEL = "ViT-L-14-336-quickgelu"
TAG = "openai"
WEIGHTS_FILE = "vit_l14_336_openai.pt"
RECORD_FILE = "weights.json"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def openai_source(model: str = MODEL, tag: str = TAG) -> tuple[str, str]:
    """(url, sha256) of ``model``/``tag`` from open_clip's registry."""
    import open_clip

    url = open_clip.get_pretrained_cfg(model, tag).get("url", "")
    if not url:
        raise WMoEError(f"open_clip {open_clip.__version__} has no download URL for {model}/{tag}")
    digest = urllib.parse.urlparse(url).path.split("/")[-2]
    if not _SHA256.match(digest):
        raise WMoEError(f"cannot read the sha256 from open_clip's URL {url}; pass --sha256 explicitly")
    return url, digest


def _to_state_dict(jit_path: Path) -> dict:
    import open_clip.factory

    # weights_only=False is needed for TorchScript; safe here because the file's sha256 was verified.
    return open_clip.factory.load_state_dict(str(jit_path), weights_only=False)


def download_weights(dest: str | os.PathLike, url: str | None = None, sha256: str | None = None,
                     budget: RetryBudget | None = None) -> Path:
    """Fetch, verify and convert the weights into ``dest``; return the path of the loadable file.

    ``url``/``sha256`` override open_clip's source (a mirror or a test server); a URL without a
    known sha256 is refused, since the file is unpickled to convert it.
    """
    dest = Path(dest)
    if url is None:
        url, default_sha = openai_source()
        sha256 = sha256 or default_sha
    sha256 = (sha256 or "").lower()
    if not sha256:
        raise WMoEError(f"no sha256 for {url}: pass --sha256 (the file is unpickled, so it must be verified)")
    out = dest / WEIGHTS_FILE
    record = dest / RECORD_FILE
    if out.is_file() and record.is_file():
        info = json.loads(record.read_text())
        if info.get("source_sha256") == sha256 and info.get("sha256") == sha256_file(out):
            print(f"weights already in place: {out}")
            return out
    check_writable(dest, "--dest", folder=True)
    budget = budget or RetryBudget()
    print(f"fetching {url} ({budget.describe()})")
    raw = fetch(url, dest / DOWNLOADS_DIRNAME / Path(urllib.parse.urlparse(url).path).name, sha256=sha256,
                budget=budget)
    print(f"converting {raw.path.name} (TorchScript) to a state dict")
    torch_save(_to_state_dict(raw.path), out)
    write_json(record, {
        "model": MODEL, "tag": TAG, "url": url, "source_sha256": raw.sha256,
        "file": WEIGHTS_FILE, "sha256": sha256_file(out),
    })
    raw.path.unlink()
    print(f"weights ready: {out}\nset model.pretrained: {out} in the run config")
    return out
