"""Where the frozen encoder's outputs come from: the images, or an on-disk cache of them.

The frozen image encoder does not depend on anything that learns, and training has no random
augmentation, so its outputs for a dataset are the same in every epoch and every ablation variant.
With ``train.feature_cache: true`` they are computed once and stored:

* one folder per key under the cache root, the key being what the features depend on: backbone,
  pretrained weights, backbone seed, image size, feature layers, value-value settings, the backbone
  options (global token ``ln_post``, positional-grid interpolation), forward precision, mask
  convention, and the dataset (its manifest and the size and mtime of each file);
* ``global.npy`` (N,D) and ``patches.npy`` (N,L,P,D) in fp16, ``masks.npy`` (N,S,S) and ``labels.npy``,
  read back through memory maps, so memory stays bounded whatever the dataset's size;
* written atomically (a folder replaced as a whole; ``key.json`` names what it holds) under a file
  lock, so parallel jobs on one dataset build it once and never read half a cache.

fp16 storage rounds the features (relative error ~5e-4); a cached run is therefore close to, not
bitwise equal to, an uncached one. Disk: 2·L·P·D bytes per image — 8.4 MB for ViT-L-14-336 at 518.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from ..config import RunConfig
from ..errors import WMoEError
from ..io import atomic_dir, write_json
from . import runtime

CACHE_VERSION = 1
CACHE_ENV = "WMOE_CLIP_CACHE_DIR"


@dataclass
class Batch:
    """Encoder outputs of some records with their ground truth, on the compute device."""

    feats: Any  # wmoe_clip.model.ImageFeatures
    masks: torch.Tensor  # (B,S,S) float {0,1}
    labels: torch.Tensor  # (B,) long
    indices: list[int]


def default_cache_root() -> Path:
    """``$WMOE_CLIP_CACHE_DIR``, else ``$XDG_CACHE_HOME/wmoe-clip/features`` (``~/.cache`` by default)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "wmoe-clip" / "features"


def _collate(items: list[dict]) -> dict:
    return {
        "image": torch.stack([it["image"] for it in items]),
        "mask": torch.stack([it["mask"] for it in items]),
        "label": torch.tensor([it["label"] for it in items], dtype=torch.long),
        "index": [it["index"] for it in items],
    }


class ImageSource:
    """Encoder outputs computed from the images, batch by batch (the uncached path)."""

    def __init__(self, dataset, model, device: torch.device, num_workers: int = 0):
        self.dataset, self.model, self.device, self.num_workers = dataset, model, device, num_workers

    def __len__(self) -> int:
        return len(self.dataset)

    def batches(self, batches: Sequence[Sequence[int]]) -> Iterator[Batch]:
        """One :class:`Batch` per list of dataset indices, in the order given."""
        loader = DataLoader(
            self.dataset,
            batch_sampler=[list(b) for b in batches],
            num_workers=self.num_workers,
            collate_fn=_collate,
            pin_memory=self.device.type == "cuda",
            # Its own generator, so that worker seeding never draws from the global RNG.
            generator=torch.Generator().manual_seed(0),
        )
        for item in loader:
            images = item["image"].to(self.device, non_blocking=True)
            with torch.no_grad(), runtime.autocast(self.device):
                feats = self.model.encode_image(images)
            yield Batch(feats, item["mask"].to(self.device), item["label"].to(self.device), item["index"])


class CachedSource:
    """Encoder outputs read from a built cache folder through memory maps."""

    def __init__(self, folder: Path, device: torch.device):
        from ..model import ImageFeatures

        self._features = ImageFeatures
        self.folder, self.device = folder, device
        self.global_token = np.load(folder / "global.npy", mmap_mode="r")
        self.patch_tokens = np.load(folder / "patches.npy", mmap_mode="r")
        self.masks = np.load(folder / "masks.npy", mmap_mode="r")
        self.labels = np.load(folder / "labels.npy", mmap_mode="r")

    def __len__(self) -> int:
        return len(self.labels)

    def batches(self, batches: Sequence[Sequence[int]]) -> Iterator[Batch]:
        for idx in batches:
            sel = np.asarray(idx, dtype=np.int64)
            dev = self.device
            feats = self._features(
                torch.from_numpy(self.global_token[sel]).to(dev).float(),
                torch.from_numpy(self.patch_tokens[sel]).to(dev).float(),
            )
            masks = torch.from_numpy(self.masks[sel].astype(np.float32)).to(dev)
            labels = torch.from_numpy(self.labels[sel].astype(np.int64)).to(dev)
            yield Batch(feats, masks, labels, list(map(int, idx)))


def _dataset_fingerprint(dataset) -> str:
    """Digest of the manifest records and the size and mtime of every file they name."""
    digest = hashlib.sha256()
    digest.update(str(Path(dataset.root).resolve()).encode())
    for r in dataset.records:
        digest.update(json.dumps(r, sort_keys=True).encode())
        for rel in (r["img_path"], r["mask_path"]):
            if rel:
                st = (Path(dataset.root) / rel).stat()
                digest.update(f"{rel}:{st.st_size}:{st.st_mtime_ns}".encode())
    return digest.hexdigest()


def _weights_identity(pretrained: str | None) -> Any:
    if pretrained is None or not Path(pretrained).is_file():
        return pretrained
    st = Path(pretrained).stat()
    return {"path": str(Path(pretrained).resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def cache_key(cfg: RunConfig, dataset, device: torch.device) -> dict[str, Any]:
    m = cfg.model
    return {
        "cache_version": CACHE_VERSION,
        "backbone": m.backbone,
        "pretrained": _weights_identity(m.pretrained),
        "backbone_seed": m.backbone_seed if m.pretrained is None else None,
        "image_size": m.image_size,
        "feature_layers": list(m.feature_layers),
        "vv_attention": m.vv_attention,
        "vv_start_layer": m.vv_start_layer,
        "global_token_ln_post": m.global_token_ln_post,
        "pos_embed_interpolation": m.pos_embed_interpolation,
        "precision": "bf16" if device.type == "cuda" and m.precision == "auto" else "fp32",
        "mask_interpolation": dataset.mask_interpolation,
        "dataset": dataset.dataset,
        "classes": list(dataset.class_names),
        "n_records": len(dataset),
        "data_fingerprint": _dataset_fingerprint(dataset),
    }


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock across processes (POSIX); elsewhere atomic writes alone keep the cache whole."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _read_key(folder: Path) -> dict[str, Any] | None:
    try:
        return json.loads((folder / "key.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _build(folder: Path, key: dict[str, Any], dataset, model, device, batch_size: int, num_workers: int) -> None:
    n = len(dataset)
    source = ImageSource(dataset, model, device, num_workers)
    order = list(range(n))
    chunks = [order[i : i + batch_size] for i in range(0, n, batch_size)]
    with atomic_dir(folder) as tmp:
        arrays: dict[str, np.ndarray] = {}
        with tqdm(total=n, desc=f"feature cache {dataset.dataset}", unit="img") as bar:
            for batch in source.batches(chunks):
                g, p = batch.feats.global_token, batch.feats.patch_tokens
                if not arrays:
                    s = dataset.image_size
                    open_ = np.lib.format.open_memmap
                    arrays = {
                        "global": open_(tmp / "global.npy", "w+", np.float16, (n, *g.shape[1:])),
                        "patches": open_(tmp / "patches.npy", "w+", np.float16, (n, *p.shape[1:])),
                        "masks": open_(tmp / "masks.npy", "w+", np.bool_, (n, s, s)),
                        "labels": open_(tmp / "labels.npy", "w+", np.int8, (n,)),
                    }
                sel = np.asarray(batch.indices)
                arrays["global"][sel] = g.float().cpu().numpy().astype(np.float16)
                arrays["patches"][sel] = p.float().cpu().numpy().astype(np.float16)
                arrays["masks"][sel] = batch.masks.cpu().numpy() > 0.5
                arrays["labels"][sel] = batch.labels.cpu().numpy()
                bar.update(len(batch.indices))
        for arr in arrays.values():
            arr.flush()
        del arrays
        write_json(tmp / "key.json", key)


def open_cache(
    cfg: RunConfig,
    dataset,
    model,
    device: torch.device,
    root: str | os.PathLike | None = None,
    batch_size: int = 32,
    num_workers: int = 0,
) -> CachedSource:
    """The cache of ``dataset`` for ``cfg``'s encoder, built first if it is missing or stale."""
    root = Path(root) if root else default_cache_root()
    key = cache_key(cfg, dataset, device)
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    folder = root / f"{dataset.dataset}-{digest}"
    try:
        with _file_lock(root / f".{folder.name}.lock"):
            if _read_key(folder) != key:
                _build(folder, key, dataset, model, device, batch_size, num_workers)
    except OSError as exc:
        raise WMoEError(
            f"feature cache {folder}: {exc}; free disk space, set {CACHE_ENV} to another folder, "
            "or turn train.feature_cache off"
        ) from None
    return CachedSource(folder, device)
