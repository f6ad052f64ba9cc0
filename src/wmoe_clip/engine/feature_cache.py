"""Where the frozen encoder's outputs come from: the images, or an on-disk cache of them.

The frozen image encoder does not depend on anything that learns, and training has no random
augmentation, so its outputs for a dataset are the same in every epoch and every ablation variant.
With ``train.feature_cache: true`` they are computed once and stored:

* one folder per key under the cache root, the key being what the features depend on: backbone,
  pretrained weights, backbone seed, image size, feature layers, value-value settings, the backbone
  options (global token ``ln_post``, positional-grid interpolation), encoder precision
  (``model.precision``), mask convention, and the dataset (its manifest and the size and mtime of
  each file);
* ``global.npy`` (N,D), ``patches.npy`` (N,L,P,D) and ``plain.npy`` (N,P,D, the last block's plain
  patch tokens) in fp16, ``masks.npy`` (N,S,S) and ``labels.npy``; every method reads what it needs;
* written atomically (a folder replaced as a whole; ``key.json`` names what it holds) under a file
  lock, so parallel jobs on one dataset build it once and never read half a cache; the disk space it
  needs is checked (and reserved) before the first array is filled, and a failed build leaves no
  temporary folder (a killed one's is removed by the next build, its owner being gone);
* verified: ``manifest.json`` records each array's file size, shape, dtype and BLAKE2b digest. Every
  open checks the sizes and headers; the digests are checked whenever the arrays are read whole (held
  in device memory) and on demand (``verify``, ``--verify-cache``). A damaged entry is rebuilt, with a
  line saying which file was wrong;
* read back into the compute device's memory (GPU memory on CUDA, RAM on CPU) when the arrays fit in
  ``train.feature_cache_memory`` × the free device memory (available RAM on CPU), so steady epochs
  read no disk and batches are gathered on the device; otherwise through memory maps, so memory stays
  bounded whatever the dataset's size. Both give the same batches, bit for bit.

Without the cache (:class:`ImageSource`), loader workers send uint8 pixels and bool masks (a quarter
of float32's bytes to copy and pin) and the batch is normalised on the device.

fp16 storage keeps bf16 features (the CUDA default) exactly, except magnitudes below 2^-17, which
move by at most 2^-25; fp32 features (CPU, ``model.precision: fp32``) are rounded (relative error
up to 4.9e-4), so such a cached run is close to, not bitwise equal to, an uncached one.
Disk: 2·(L+1)·P·D bytes per image — 10.5 MB for ViT-L-14-336 at 518 with four feature layers.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import torch
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm import tqdm

from ..config import RunConfig
from ..data.dataset import normalise
from ..errors import WMoEError
from ..io import atomic_dir, file_lock, remove_stale_temporaries, write_json

# 2: plain.npy (the plain last-block tokens) beside the feature layers' tokens. 3: manifest.json.
CACHE_VERSION = 3
MANIFEST = "manifest.json"
# Room left free beside a cache being built (file system metadata, other writers' small files).
_SPACE_MARGIN = 16 * 2**20
CACHE_ENV = "WMOE_CLIP_CACHE_DIR"


@dataclass
class Batch:
    """Encoder outputs of some records with their ground truth, on the compute device."""

    feats: Any  # wmoe_clip.model.ImageFeatures
    masks: torch.Tensor  # (B,S,S) float {0,1}
    labels: torch.Tensor  # (B,) long
    indices: list[int]
    classes: list[str]  # the class name of each record


def class_names(dataset, indices: Sequence[int]) -> list[str]:
    """The class name of each record (what class-specific prompts name)."""
    return [dataset.records[i]["cls_name"] for i in indices]


def default_cache_root() -> Path:
    """``$WMOE_CLIP_CACHE_DIR``, else ``$XDG_CACHE_HOME/wmoe-clip/features`` (``~/.cache`` by default)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "wmoe-clip" / "features"


class _PixelItems(Dataset):
    """The loader's view of an ``AnomalyDataset``: its ``pixel_item``s (uint8 pixels, bool masks)."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.dataset.pixel_item(index)


class _Plan(Sampler):
    """Batches of indices replaced before each pass, so that one loader (and its workers) serves all."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


class ImageSource:
    """Encoder outputs computed from the images, batch by batch (the uncached path).

    Workers persist across passes (training epochs), send uint8 pixels, and the batch is normalised
    on the compute device (:func:`wmoe_clip.data.dataset.normalise`). One pass at a time: starting a
    pass ends the previous one.
    """

    # What the source did with the frozen encoder: no cache, images encoded so far.
    cache: str | None = None

    def __init__(self, dataset, model, device: torch.device, num_workers: int = 0):
        self.dataset, self.model, self.device, self.num_workers = dataset, model, device, num_workers
        self.encoded = 0
        self._plan = _Plan()
        self._passes = 0
        self._loader = DataLoader(
            _PixelItems(dataset),
            batch_sampler=self._plan,
            num_workers=num_workers,
            pin_memory=device.type == "cuda",
            persistent_workers=num_workers > 0,
            # Its own generator, so that worker seeding never draws from the global RNG.
            generator=torch.Generator().manual_seed(0),
        )

    def __len__(self) -> int:
        return len(self.dataset)

    def batches(self, batches: Sequence[Sequence[int]]) -> Iterator[Batch]:
        """One :class:`Batch` per list of dataset indices, in the order given."""
        self._plan.batches = [list(b) for b in batches]
        self._passes += 1
        this_pass = self._passes
        for item in self._loader:
            self._check_pass(this_pass)
            images = normalise(item["pixels"].to(self.device, non_blocking=True))
            feats = self.model.encode_image(images)
            self.encoded += len(images)
            masks = item["mask"].to(self.device, non_blocking=True).float()
            indices = item["index"].tolist()
            yield Batch(feats, masks, item["label"].to(self.device), indices, class_names(self.dataset, indices))
        self._check_pass(this_pass)

    def _check_pass(self, this_pass: int) -> None:
        # The persistent workers' iterator is shared: once a newer pass has reset it, what it yields
        # (or its end) belongs to that pass.
        if self._passes != this_pass:
            raise RuntimeError("ImageSource.batches: a newer pass was started before this one ended")


def _size(n: float) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def memory_budget(device: torch.device, fraction: float) -> tuple[int, str]:
    """Bytes the feature cache may hold in ``device``'s memory, and how that figure was reached."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(fraction * free), f"{fraction:g} × {_size(free)} free on {device}"
    available = psutil.virtual_memory().available
    return int(fraction * available), f"{fraction:g} × {_size(available)} of available RAM"


_LOAD_CHUNK_BYTES = 256 * 2**20


def _chunks(arr: np.ndarray) -> Iterator[np.ndarray]:
    """``arr`` in row blocks of about ``_LOAD_CHUNK_BYTES``, each read into memory (bounded host memory)."""
    rows = max(1, _LOAD_CHUNK_BYTES // max(1, arr[:1].nbytes))
    for start in range(0, len(arr), rows):
        yield np.array(arr[start : start + rows])


def array_digest(arr: np.ndarray, chunks: Iterator[np.ndarray] | None = None) -> str:
    """BLAKE2b of an array's data bytes, in row order (read in bounded chunks)."""
    digest = hashlib.blake2b(digest_size=20)
    for chunk in chunks if chunks is not None else _chunks(arr):
        digest.update(chunk.view(np.uint8).reshape(-1) if chunk.size else b"")
    return digest.hexdigest()


def _to_device(arr: np.ndarray, device: torch.device, bar: tqdm) -> tuple[torch.Tensor, str]:
    """A memory-mapped array copied into ``device``'s memory in chunks (host memory stays bounded), and
    the digest of the bytes copied (:func:`array_digest`), checked against the manifest for free."""
    out = torch.empty(arr.shape, dtype=torch.from_numpy(np.empty(0, arr.dtype)).dtype, device=device)
    start = 0

    def copied() -> Iterator[np.ndarray]:
        nonlocal start
        for chunk in _chunks(arr):
            out[start : start + len(chunk)].copy_(torch.from_numpy(chunk))
            start += len(chunk)
            bar.update(chunk.nbytes)
            yield chunk

    return out, array_digest(arr, copied())


class CacheDamaged(Exception):
    """A cache entry whose files do not match its manifest (the message names the file)."""


def _read_manifest(folder: Path) -> dict[str, Any]:
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        raise CacheDamaged(f"{folder / MANIFEST} is missing or unreadable") from None
    if not isinstance(manifest, dict) or set(manifest) != set(CachedSource.ARRAYS):
        raise CacheDamaged(f"{folder / MANIFEST} does not list the cache's arrays")
    return manifest


def open_arrays(folder: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The memory maps of a cache folder and its manifest, after the cheap check: every file has its
    recorded size and a readable header of the recorded shape and dtype (raises :class:`CacheDamaged`)."""
    manifest = _read_manifest(folder)
    arrays = {}
    for name, entry in manifest.items():
        path = folder / f"{name}.npy"
        try:
            size = path.stat().st_size
        except OSError:
            raise CacheDamaged(f"{path} is missing") from None
        if size != entry.get("bytes"):
            raise CacheDamaged(f"{path} has {size} bytes, {entry.get('bytes')} were written")
        try:
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
        except Exception as exc:  # noqa: BLE001 - any header a reader cannot parse is damage
            raise CacheDamaged(f"{path} has a damaged header ({type(exc).__name__})") from None
        if list(arr.shape) != entry.get("shape") or str(arr.dtype) != entry.get("dtype"):
            raise CacheDamaged(f"{path} holds {arr.dtype}{list(arr.shape)}, "
                               f"{entry.get('dtype')}{entry.get('shape')} were written")
        arrays[name] = arr
    return arrays, manifest


def check_digests(folder: Path, digests: dict[str, str], manifest: dict[str, Any]) -> None:
    """Raise :class:`CacheDamaged` naming the first array whose data digest is not the recorded one."""
    for name, digest in digests.items():
        if digest != manifest[name]["blake2b"]:
            raise CacheDamaged(f"{folder / f'{name}.npy'} does not hold the bytes that were written (checksum)")


class CachedSource:
    """Encoder outputs read from a built cache folder of ``dataset``: from device memory when the arrays
    fit in ``memory_fraction`` of it (see :func:`memory_budget`), else through memory maps.

    ``cache`` is ``"built"`` when this job built the folder (``encoded``: its images went through the
    encoder once), ``"read"`` when another job had (``encoded`` 0)."""

    ARRAYS = ("global", "patches", "plain", "masks", "labels")

    def __init__(self, folder: Path, device: torch.device, dataset, memory_fraction: float = 0.0,
                 built: bool = False, verify: bool = False):
        from ..model import ImageFeatures

        self._features = ImageFeatures
        self.folder, self.device, self.dataset = folder, device, dataset
        self.cache = "built" if built else "read"
        self.encoded = len(dataset) if built else 0
        arrays, manifest = open_arrays(folder)
        size = sum(a.nbytes for a in arrays.values())
        budget, how = memory_budget(device, memory_fraction)
        self.resident = size <= budget
        where = f"held in {device.type} memory" if self.resident else "read through memory maps"
        print(f"feature cache {folder.name}: {_size(size)}, budget {_size(budget)} "
              f"(train.feature_cache_memory {how}): {where}", file=sys.stderr)
        if self.resident:
            with tqdm(total=size, desc=f"feature cache -> {device}", unit="B", unit_scale=True) as bar:
                loaded = {name: _to_device(a, device, bar) for name, a in arrays.items()}
            check_digests(folder, {name: digest for name, (_, digest) in loaded.items()}, manifest)
            arrays = {name: tensor for name, (tensor, _) in loaded.items()}
        elif verify:
            check_digests(folder, {name: array_digest(a) for name, a in arrays.items()}, manifest)
        self.global_token, self.patch_tokens, self.plain_tokens = arrays["global"], arrays["patches"], arrays["plain"]
        self.masks, self.labels = arrays["masks"], arrays["labels"]

    def __len__(self) -> int:
        return len(self.labels)

    def _rows(self, arr: np.ndarray | torch.Tensor, idx: Sequence[int]) -> torch.Tensor:
        if isinstance(arr, torch.Tensor):  # resident: gathered on the device
            return arr[torch.as_tensor(idx, dtype=torch.long, device=self.device)]
        return torch.from_numpy(arr[np.asarray(idx, dtype=np.int64)]).to(self.device)

    def batches(self, batches: Sequence[Sequence[int]]) -> Iterator[Batch]:
        for idx in batches:
            feats = self._features(*(self._rows(a, idx).float()
                                     for a in (self.global_token, self.patch_tokens, self.plain_tokens)))
            masks = self._rows(self.masks, idx).float()
            labels = self._rows(self.labels, idx).long()
            indices = list(map(int, idx))
            yield Batch(feats, masks, labels, indices, class_names(self.dataset, indices))


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


def cache_key(cfg: RunConfig, dataset) -> dict[str, Any]:
    from ..model.encoder_pass import backbone_configuration

    return {
        "cache_version": CACHE_VERSION,
        # The backbone configuration, not the method: every method on the same backbone reads one cache.
        **backbone_configuration(cfg.model),
        "mask_interpolation": dataset.mask_interpolation,
        "dataset": dataset.dataset,
        "classes": list(dataset.class_names),
        "n_records": len(dataset),
        "data_fingerprint": _dataset_fingerprint(dataset),
    }


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
                tokens = {"global": batch.feats.global_token, "patches": batch.feats.patch_tokens,
                          "plain": batch.feats.plain_tokens}
                if not arrays:
                    s = dataset.image_size
                    shapes = {name: (np.float16, (n, *t.shape[1:])) for name, t in tokens.items()}
                    shapes |= {"masks": (np.bool_, (n, s, s)), "labels": (np.int8, (n,))}
                    _check_space(folder, tmp, shapes)
                    arrays = {name: _allocate(tmp / f"{name}.npy", dtype, shape)
                              for name, (dtype, shape) in shapes.items()}
                sel = np.asarray(batch.indices)
                for name, t in tokens.items():
                    arrays[name][sel] = t.float().cpu().numpy().astype(np.float16)
                arrays["masks"][sel] = batch.masks.cpu().numpy() > 0.5
                arrays["labels"][sel] = batch.labels.cpu().numpy()
                bar.update(len(batch.indices))
        for arr in arrays.values():
            arr.flush()
        write_json(tmp / MANIFEST, {name: {"bytes": (tmp / f"{name}.npy").stat().st_size, "shape": list(arr.shape),
                                           "dtype": str(arr.dtype), "blake2b": array_digest(arr)}
                                    for name, arr in arrays.items()})
        del arrays
        write_json(tmp / "key.json", key)


def _check_space(folder: Path, tmp: Path, shapes: dict[str, tuple[Any, tuple[int, ...]]]) -> None:
    """Refuse a build the disk cannot hold, before its first array is filled."""
    need = sum(np.dtype(dtype).itemsize * int(np.prod(shape)) for dtype, shape in shapes.values()) + _SPACE_MARGIN
    free = shutil.disk_usage(tmp).free
    if need > free:
        raise WMoEError(f"feature cache {folder}: needs {_size(need)} but {_size(free)} are free on its disk; free "
                        f"disk space, set {CACHE_ENV} to another folder, or turn train.feature_cache off")


def _allocate(path: Path, dtype: Any, shape: tuple[int, ...]) -> np.ndarray:
    """A new .npy file's memory map with its blocks reserved: a disk that fills up meanwhile fails here
    with ENOSPC, not later with a bus error when a page of the map is written."""
    arr = np.lib.format.open_memmap(path, "w+", dtype, shape)
    fd = os.open(path, os.O_RDWR)
    try:
        os.posix_fallocate(fd, 0, os.fstat(fd).st_size)
    except OSError as exc:
        if exc.errno not in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):  # file systems that cannot reserve
            raise
    finally:
        os.close(fd)
    return arr


def open_cache(
    cfg: RunConfig,
    dataset,
    model,
    device: torch.device,
    root: str | os.PathLike | None = None,
    batch_size: int = 32,
    num_workers: int = 0,
    verify: bool = False,
) -> CachedSource:
    """The cache of ``dataset`` for ``cfg``'s encoder, built first if it is missing, stale or damaged;
    ``verify`` checks every array's digest even when the arrays are read through memory maps."""
    root = Path(root) if root else default_cache_root()
    key = cache_key(cfg, dataset)
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    folder = root / f"{dataset.dataset}-{digest}"
    lock = root / f".{folder.name}.lock"

    def build() -> None:
        _build(folder, key, dataset, model, device, batch_size, num_workers)

    def source(built: bool) -> CachedSource:
        return CachedSource(folder, device, dataset, cfg.train.feature_cache_memory, built=built, verify=verify)

    try:
        with file_lock(lock):
            remove_stale_temporaries(root)  # of builds killed before they could clean up
            built = _read_key(folder) != key
            if not built:
                try:
                    open_arrays(folder)
                except CacheDamaged as exc:
                    print(f"feature cache: {exc}; rebuilding {folder.name}", file=sys.stderr)
                    built = True
            if built:
                build()
        try:
            return source(built)
        except CacheDamaged as exc:
            if built:
                raise WMoEError(f"feature cache: {exc} right after it was built; check the disk, or set "
                                f"{CACHE_ENV} to another folder") from None
            print(f"feature cache: {exc}; rebuilding {folder.name}", file=sys.stderr)
            with file_lock(lock):
                build()
            return source(True)
    except OSError as exc:
        raise WMoEError(
            f"feature cache {folder}: {exc}; free disk space, set {CACHE_ENV} to another folder, "
            "or turn train.feature_cache off"
        ) from None
