"""Training (docs/METHOD.md §5) of any method that trains: the source dataset's test split, Adam, the last
epoch is the model. The method (``cfg.method``, ``wmoe_clip.model.registry``) gives the model, its loss
and its diagnostics; nothing here depends on which one it is.

Reproducibility and resumption:

* Every epoch's randomness is a function of (seed, epoch) alone: the data order comes from a
  generator seeded with ``derived_seed(seed, epoch)`` and the global RNG (CTDS noise) is reseeded
  with ``derived_seed(seed, epoch, 1)``. Resuming therefore needs no RNG state, only the learnable
  weights and the optimiser state, which ``DIR/state/<key>/epoch-NNNN.pt`` holds after each epoch
  (written atomically; older ones are removed). Re-running the same command continues from the last
  one, and on the CPU the final weights equal those of an uninterrupted run bit for bit.
* ``<key>`` is a digest of everything that decides the result (run config, source, prepared data;
  not the epoch count, the loader workers, the device or the cache memory budget), so a training with
  another setting (another lr, new data) starts afresh beside an interrupted one instead of failing
  on it; a grown epoch count resumes, and a state past the requested epochs is started over. Once ``model.pt`` is written the training's own state is
  removed (and ``state/`` when nothing else is left in it): a finished training leaves nothing that
  a later run with changed settings could trip over.
* Gradient accumulation (``train.micro_batch_size``) splits each batch of ``train.batch_size`` and
  weights each part by its share of the batch, so the update equals the full batch's (the losses are
  batch means).
* Outputs: ``history.json`` (per-epoch loss terms, the model's ``diagnostics`` and its
  ``DIAGNOSTIC_GROUPS`` such as WMoE-CLIP's expert usage, lr, time, and ``encoder_images``: the images
  the epoch put through the frozen encoder, a feature cache this job built counting in its first epoch),
  ``run.json`` (with ``method``, the run name as ``variant`` and ``encoder_images``, the sum) and, last,
  ``model.pt`` — its presence means the training finished.
* ``model.precision: fp16`` scales the loss (``torch.amp.GradScaler``): the gradients of the prompts
  flow back through the frozen text encoder, whose fp16 backward would otherwise underflow. Steps with
  non-finite gradients are skipped and counted in the history. bf16 and fp32 need no scaling.
* ``run.json`` records the sha256 of the ``model.pt`` it belongs to (the checkpoint is written to a
  temporary file and hashed first), so an evaluation can check that a run record and a checkpoint go
  together; and ``tracking.error`` says when the run could not be logged to MLflow.
* The output folder is tested for writing before the data is read or the model built.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from ..config import RunConfig, config_from_dict
from ..errors import WMoEError
from ..data.dataset import AnomalyDataset
from ..data.meta import data_folders, is_synthetic
from ..io import atomic_path, check_output, check_writable, torch_load, torch_save, write_json
from ..model import registry
from ..model.checkpoint import config_differences, load_learnable_state, save_checkpoint
from . import runtime
from .feature_cache import ImageSource, open_cache
from .results import file_sha256
from .tracking import Tracker

STATE_DIR = "state"
_STATE_NAME = re.compile(r"^epoch-(\d{4})\.pt$")
STATE_FORMAT = "wmoe-clip/train-state"


def meta_digest(prepared_dir: str | Path) -> str:
    return hashlib.sha256((Path(prepared_dir) / "meta.json").read_bytes()).hexdigest()


def _step_plan(n: int, batch_size: int, micro: int | None, generator: torch.Generator) -> list[list[list[int]]]:
    """Shuffled indices as optimiser steps, each a list of micro-batches."""
    order = torch.randperm(n, generator=generator).tolist()
    micro = micro or batch_size
    steps = []
    for i in range(0, n, batch_size):
        batch = order[i : i + batch_size]
        steps.append([batch[j : j + micro] for j in range(0, len(batch), micro)])
    return steps


# Settings that do not change an epoch's result: a state written under other values resumes. The
# epoch count may grow too (every epoch's randomness depends on (seed, epoch) alone).
_RESUME_FREE = ("epochs", "num_workers", "device", "feature_cache_memory")


def _resume_identity(cfg: RunConfig, source: str, data_digest: str) -> dict[str, Any]:
    """What a state checkpoint must agree on to be resumed."""
    config = cfg.to_dict()
    config["train"] = {k: v for k, v in config["train"].items() if k not in _RESUME_FREE}
    return {"config": config, "source": source, "data": data_digest}


def state_dir_for(out_dir: str | Path, identity: dict[str, Any]) -> Path:
    """``DIR/state/<key>``: the resume folder of exactly this training."""
    key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
    return Path(out_dir) / STATE_DIR / key


def latest_state(state_dir: Path) -> Path | None:
    found = sorted(p for p in state_dir.glob("epoch-*.pt") if _STATE_NAME.match(p.name)) if state_dir.is_dir() else []
    return found[-1] if found else None


class _EpochStats:
    """Sample-weighted means of the loss terms and of the model's diagnostics, the vectors of its
    ``DIAGNOSTIC_GROUPS`` (e.g. WMoE-CLIP's expert usage) apart."""

    def __init__(self, model):
        self.model = model
        self.n = 0
        self.sums: dict[str, float] = {}
        self.diagnostic_sums: dict[str, np.ndarray] = {}

    def add(self, terms: dict[str, torch.Tensor], aux: dict[str, torch.Tensor], n: int) -> None:
        self.n += n
        for k, v in terms.items():
            self.sums[k] = self.sums.get(k, 0.0) + float(v.detach()) * n
        for k, v in self.model.diagnostics(aux).items():
            self.diagnostic_sums[k] = self.diagnostic_sums.get(k, 0.0) + np.asarray(v, dtype=np.float64) * n

    def means(self) -> dict[str, float]:
        return {k: v / max(self.n, 1) for k, v in self.sums.items()}

    def diagnostics(self) -> dict[str, float]:
        grouped = {name for names in self.model.DIAGNOSTIC_GROUPS.values() for name in names}
        return {k: float(v) / max(self.n, 1) for k, v in self.diagnostic_sums.items() if k not in grouped}

    def groups(self) -> dict[str, dict[str, list[float]] | None]:
        """Each group of the model's ``DIAGNOSTIC_GROUPS``: its vectors, or None when the batches had none."""
        return {group: {k: (self.diagnostic_sums[k] / max(self.n, 1)).tolist() for k in names}
                if set(names) <= set(self.diagnostic_sums) else None
                for group, names in self.model.DIAGNOSTIC_GROUPS.items()}


def train(
    cfg: RunConfig,
    source: str,
    data_dir: str | Path,
    out_dir: str | Path,
    *,
    tracker: Tracker | None = None,
    cache_dir: str | Path | None = None,
    on_epoch_end: Callable[[int], None] | None = None,
    progress: bool = True,
    restart: bool = False,
    force: bool = False,
    inputs: tuple[str | Path, ...] = (),
    verify_cache: bool = False,
) -> dict[str, Any]:
    """Train ``cfg`` (its method's; variant and seed applied) on ``source``'s test split; returns the run record.

    ``restart`` ignores the state of an interrupted run in ``out_dir/state`` and starts at epoch 0
    (its files are replaced by the new run's). ``force`` replaces files at the outputs' paths that are
    not earlier outputs of a training; none ever replaces the data or the other ``inputs`` (the config file).
    """
    spec = registry.get(cfg.method)
    if not spec.trains:
        raise WMoEError(f"method {cfg.method} has nothing to train; evaluate it from its run config: "
                        "wmoe-clip evaluate --config RUN_CONFIG ...")
    out_dir, data_dir = Path(out_dir), Path(data_dir)
    check_writable(out_dir, "--out", folder=True)
    check_writable(out_dir / STATE_DIR, "the training state folder", folder=True)
    inputs = (*inputs, *data_folders(data_dir))
    for name, kind in (("model.pt", "checkpoint"), ("run.json", "run"), ("history.json", "history")):
        check_output(out_dir / name, "--out", kind, inputs=inputs, force=force)
    tc = cfg.train
    tracker = tracker or Tracker(enabled=False)
    device = runtime.select_device(tc.device)
    dataset = AnomalyDataset(data_dir, "test", cfg.model.image_size, cfg.data.mask_interpolation)
    if dataset.dataset != source:
        raise WMoEError(f"--source {source!r} but {data_dir}/meta.json holds dataset {dataset.dataset!r}")
    if len(dataset) == 0:
        raise WMoEError(f"{data_dir}: the test split of {source!r} is empty; nothing to train on")
    data_digest = meta_digest(data_dir)

    runtime.seed_everything(tc.seed)
    model = registry.build_model(cfg).to(device)
    optimizer = torch.optim.Adam(model.learnable_parameters(), lr=tc.lr, betas=tc.betas)
    scaler = torch.amp.GradScaler(device.type, enabled=cfg.model.precision == "fp16")

    identity = _resume_identity(cfg, source, data_digest)
    state_dir = state_dir_for(out_dir, identity)
    history, start_epoch, run_id = [], 0, None
    state = None if restart else _resumable_state(state_dir, identity, tc.epochs, out_dir, device)
    if state is not None:
        history, start_epoch, run_id = _resume(state, model, optimizer, scaler)
        print(f"resuming from {state['path']} (epoch {start_epoch}/{tc.epochs})")

    synthetic = is_synthetic(data_dir)
    run_name = registry.run_name(cfg)
    tags = runtime.run_tags("train", device, dataset, synthetic, source=source, method=cfg.method, variant=run_name,
                            seed=tc.seed)
    resumed_run = run_id
    with tracker.run(f"train {source} {run_name} seed{tc.seed}", tags, resume_run_id=resumed_run) as run_id:
        if resumed_run is None:  # a new run (also when the interrupted one was not tracked) gets the config
            tracker.log_params(cfg.to_dict())

        if tc.feature_cache:
            feats_source = open_cache(cfg, dataset, model, device, cache_dir, tc.batch_size, tc.num_workers,
                                      verify=verify_cache)
        else:
            feats_source = ImageSource(dataset, model, device, tc.num_workers)
        steps_per_epoch = math.ceil(len(dataset) / tc.batch_size)

        encoded = 0  # images this job has put through the frozen encoder (a cache it built counts once)
        for epoch in range(start_epoch, tc.epochs):
            history.append(_train_epoch(model, optimizer, scaler, feats_source, cfg, epoch, device,
                                        steps_per_epoch, tracker, progress))
            history[-1]["encoder_images"], encoded = feats_source.encoded - encoded, feats_source.encoded
            tracker.log_metrics(_epoch_metrics(history[-1], model.DIAGNOSTIC_GROUPS), step=epoch + 1)
            _save_epoch_state(state_dir, identity, epoch + 1, model, optimizer, scaler, history, run_id)
            write_json(out_dir / "history.json", history)
            if on_epoch_end is not None:
                on_epoch_end(epoch + 1)

        run = _run_record(cfg, source, data_dir, data_digest, dataset, synthetic, history, device, run_id)
        write_json(out_dir / "history.json", history)
        # model.pt appears last (it marks a finished training), after the run.json that names its hash.
        with atomic_path(out_dir / "model.pt") as model_tmp:
            save_checkpoint(model, model_tmp, source={"dataset": source, "data_meta_sha256": data_digest})
            run["model_sha256"] = file_sha256(model_tmp)
            run["tracking"] = tracker.status()
            write_json(out_dir / "run.json", run)
        _remove_state(state_dir)
        tracker.log_artifact(out_dir / "history.json")
        tracker.log_artifact(out_dir / "run.json")
    if tracker.status() != run["tracking"]:  # logging failed after run.json was written
        run["tracking"] = tracker.status()
        write_json(out_dir / "run.json", run)
    return run


def _resumable_state(state_dir: Path, identity: dict[str, Any], epochs: int, out_dir: Path,
                     device: torch.device) -> dict[str, Any] | None:
    """The last epoch state of this training in ``state_dir`` (with its ``path``), or None: none there, or
    one past the requested ``epochs``. A state of another training is an error."""
    state_path = latest_state(state_dir)
    if state_path is None:
        return None
    state = torch_load(state_path, "training state", f"rerun with --restart to start again from epoch 0 "
                       f"(its files in {state_dir} are then replaced), or restore the file", map_location=device)
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT or state.get("identity") != identity:
        stored = state.get("identity") if isinstance(state, dict) else None
        diff = config_differences(stored, identity) if isinstance(stored, dict) else ["not a training state"]
        raise WMoEError(
            f"{state_path} was written by a different training ({'; '.join(diff[:6])}); "
            f"rerun with --restart to start afresh in {out_dir}, or use another --out"
        )
    if state["epoch"] > epochs:
        # An interrupted longer run of the same training: its state cannot give this one's result.
        print(f"{state_path} is past epoch {epochs}; starting afresh (it is replaced at the first epoch)")
        return None
    return {**state, "path": state_path}


def _resume(state: dict[str, Any], model, optimizer, scaler) -> tuple[list[dict[str, Any]], int, str | None]:
    """Load an epoch state into the model, optimiser and scaler; returns (history, epoch, MLflow run id)."""
    load_learnable_state(model, state["model"], str(state["path"]))
    optimizer.load_state_dict(state["optimizer"])
    scaler.load_state_dict(state["scaler"])
    return json.loads(state["history"]), state["epoch"], state.get("mlflow_run_id")


def _save_epoch_state(state_dir: Path, identity: dict[str, Any], epoch: int, model, optimizer, scaler,
                      history: list[dict[str, Any]], run_id: str | None) -> None:
    """Write the state after ``epoch`` (atomically) and remove the older ones."""
    state_dir.mkdir(parents=True, exist_ok=True)
    new_state = state_dir / f"epoch-{epoch:04d}.pt"
    torch_save({
        "format": STATE_FORMAT, "identity": identity, "epoch": epoch,
        "model": {k: v.cpu() for k, v in model.learnable_state_dict().items()},
        "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(), "history": json.dumps(history),
        "mlflow_run_id": run_id,
    }, new_state)
    for old in state_dir.glob("epoch-*.pt"):
        if old != new_state:
            old.unlink(missing_ok=True)


def _run_record(cfg: RunConfig, source: str, data_dir: Path, data_digest: str, dataset, synthetic: bool,
                history: list[dict[str, Any]], device: torch.device, run_id: str | None) -> dict[str, Any]:
    """``run.json`` of a finished training, before the checkpoint's hash and the tracking status."""
    tc = cfg.train
    return {
        "mlflow_run_id": run_id,
        "source": source,
        "method": cfg.method,
        "variant": registry.run_name(cfg),
        "seed": tc.seed,
        "epochs": tc.epochs,
        "data": str(data_dir),
        "data_meta_sha256": data_digest,
        "synthetic": synthetic,
        "counts": runtime.dataset_counts(dataset),
        "feature_cache": tc.feature_cache,
        # Over the whole training, a resumed one included (from its history).
        "encoder_images": sum(entry.get("encoder_images", 0) for entry in history),
        "device": runtime.device_description(device),
        "software": runtime.software_info(),
        "config": cfg.to_dict(),
        "model": "model.pt",
    }


def _remove_state(state_dir: Path) -> None:
    """Drop a finished training's resume folder, and ``state/`` once no other training's is left."""
    shutil.rmtree(state_dir, ignore_errors=True)
    if state_dir.parent.is_dir() and not any(state_dir.parent.iterdir()):
        state_dir.parent.rmdir()


def _train_epoch(model, optimizer, scaler: torch.amp.GradScaler, feats_source, cfg: RunConfig, epoch: int,
                 device: torch.device, steps_per_epoch: int, tracker: Tracker, progress: bool) -> dict[str, Any]:
    tc = cfg.train
    plan = _step_plan(len(feats_source), tc.batch_size, tc.micro_batch_size,
                      torch.Generator().manual_seed(runtime.derived_seed(tc.seed, epoch)))
    torch.manual_seed(runtime.derived_seed(tc.seed, epoch, 1))  # CTDS noise
    model.train()
    stats = _EpochStats(model)
    skipped = 0
    runtime.reset_peak_memory(device)
    start = time.perf_counter()
    micro_batches = feats_source.batches([mb for step in plan for mb in step])
    bar = tqdm(plan, desc=f"epoch {epoch + 1}/{tc.epochs}", unit="step", disable=not progress, leave=False)
    for step_index, step in enumerate(bar):
        optimizer.zero_grad(set_to_none=True)
        step_loss = accumulate_gradients(model, micro_batches, step, stats, scaler)
        scale = scaler.get_scale()
        scaler.step(optimizer)
        scaler.update()
        skipped += scaler.get_scale() < scale  # the scaler lowers its scale after a non-finite step
        tracker.log_metrics({"step_loss": step_loss}, step=epoch * steps_per_epoch + step_index + 1)
        bar.set_postfix({k: f"{v:.3f}" for k, v in stats.means().items()})
    bar.close()
    elapsed = time.perf_counter() - start
    entry = {
        "epoch": epoch + 1,
        "loss": stats.means(),
        "diagnostics": stats.diagnostics(),
        **stats.groups(),
        "lr": optimizer.param_groups[0]["lr"],
        "time_s": elapsed,
        "images_per_s": stats.n / elapsed if elapsed > 0 else 0.0,
        "peak_memory_mb": runtime.peak_memory_mb(device),
    }
    if scaler.is_enabled():
        entry["grad_scale"] = scaler.get_scale()
        entry["skipped_steps"] = int(skipped)
    return entry


def accumulate_gradients(model, micro_batches, step: list[list[int]], stats: _EpochStats | None = None,
                         scaler: torch.amp.GradScaler | None = None) -> float:
    """Backpropagate one optimiser step given as micro-batches (read from the iterator
    ``micro_batches``); each micro-batch's loss is weighted by its share of the step, so the summed
    gradients equal those of the whole batch (times the ``scaler``'s scale, if one is given).
    Returns the step's loss."""
    n_step = sum(len(mb) for mb in step)
    step_loss = 0.0
    for mb in step:
        batch = next(micro_batches)
        out = model.forward_features(batch.feats, batch.classes)
        terms = model.loss(out, batch.labels, batch.masks)
        loss = terms["total"] * (len(mb) / n_step)
        (scaler.scale(loss) if scaler is not None else loss).backward()
        if stats is not None:
            stats.add(terms, out.aux, len(mb))
        step_loss += float(terms["total"].detach()) * len(mb) / n_step
    return step_loss


def _epoch_metrics(entry: dict[str, Any], groups: dict[str, tuple[str, ...]]) -> dict[str, Any]:
    """An epoch's history entry as MLflow metrics: ``loss.<term>``, ``diagnostics.<name>``, ``lr``, and the
    vectors of the diagnostic groups per component, e.g. ``selected_share.<i>`` and ``mean_router_prob.<i>``."""
    metrics = {k: v for k, v in entry.items() if k != "epoch" and k not in groups}
    for group in groups:
        for name, values in (entry.get(group) or {}).items():
            metrics[name] = {str(i): v for i, v in enumerate(values)}
    return metrics


def apply_overrides(cfg: RunConfig, variant: str | None = None, seed: int | None = None,
                    epochs: int | None = None) -> RunConfig:
    """``cfg`` with a variant of its method (WMoE-CLIP's Table 2 rows), and the seed and epoch count of the
    command line (validated with the config's own ranges)."""
    registry.check_variant(cfg.method, variant)
    if variant:
        cfg = cfg.with_variant(variant)
    changes = {k: v for k, v in (("seed", seed), ("epochs", epochs)) if v is not None}
    if not changes:
        return cfg
    data = cfg.to_dict()
    data["train"].update(changes)
    return config_from_dict(data, " ".join(f"--{k} {v}" for k, v in changes.items()))
