"""Zero-shot evaluation of a model on a target dataset, streamed class by class.

The model is a trained checkpoint, or the run config of a method that does not train (``clip``; its
source is then ``none`` and its seed 0). Per batch: the model's per-layer maps fused by its rule at the
input size (``anomaly_map``), Gaussian smoothing with σ = ``eval.sigma`` (:mod:`.smoothing`, equal to
scipy's ``gaussian_filter``), and the model's ``eval_image_score`` — WMoE-CLIP's is
``α·s_g + (1 − α)·max(smoothed map)``, the max of the *smoothed* map, the same map the pixel metrics
see, so that one hot pixel does not decide an image; AnomalyCLIP's and CLIP's is ``s_g``. The metrics accumulator holds one
class's maps at a time and frees them when the class is finalised, so memory does not grow with the
dataset. Only the metric levels of the target (registry ``image_metrics`` / ``pixel_metrics``, or
those derived for a user's own dataset, kept in its ``meta.json``) are computed; the evaluation
records the target's protocol variant and which classes were evaluated out of the registry's.
For image-level targets the image metrics of ``s_g`` alone and of ``max(M)`` alone are
recorded too (``score_parts``, every method), so a fusion can be judged on real data; nothing selects on them.

Before any of that: the output paths are tested for writing, and the checkpoint is matched to its
training record (``run.json``, by the checkpoint's sha256) to learn the source dataset. A model
trained on the target itself is refused — the cell would not be zero-shot — unless
``allow_same_source``, and then the JSON says ``"zero_shot": false`` and the report marks the cell.
"""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from ..data.meta import dataset_spec, is_synthetic, load_meta
from ..errors import WMoEError
from ..io import check_writable
from ..model import registry
from . import runtime
from .feature_cache import ImageSource, open_cache
from .figures import Sample, denormalise, sample_grid, select_samples
from .results import build_eval, file_sha256, write_eval
from .smoothing import gaussian_smooth
from .tracking import Tracker


def load_model(checkpoint: str | Path | None, config: str | Path | None):
    """``(model, file)``: the model of a checkpoint, or of the run config of a method that does not train,
    in eval mode on the CPU, and the file it came from."""
    from ..config import load_config, resolve_config_path
    from ..model import build_model, load_checkpoint
    from ..model.checkpoint import require_checkpoint_file

    if (checkpoint is None) == (config is None):
        raise WMoEError("give one of --checkpoint (the model.pt of a training, or of import-checkpoint) and "
                        "--config (the run config of a method that does not train)")
    if checkpoint is not None:
        path = require_checkpoint_file(checkpoint)
        return load_checkpoint(path, map_location="cpu"), path
    path = resolve_config_path(config)
    cfg = load_config(path)
    if registry.get(cfg.method).trains:
        raise WMoEError(f"--config {config}: method {cfg.method} learns its parameters; give the model.pt of its "
                        "training (wmoe-clip train) or of wmoe-clip import-checkpoint with --checkpoint")
    return build_model(cfg).eval(), path


class ScoreParts:
    """Image metrics, per class and their mean, of the two parts of the image score: ``s_g`` alone
    (``global_score``) and ``max(M)`` alone (``map_max``, M the smoothed map)."""

    def __init__(self):
        from ..metrics import ClassMetricAccumulator

        self.parts = {name: ClassMetricAccumulator(image=True, pixel=False) for name in ("global_score", "map_max")}

    def add(self, cls: str, labels: np.ndarray, global_score: torch.Tensor, smoothed: torch.Tensor) -> None:
        self.parts["global_score"].add(cls, labels, global_score.float().cpu().numpy())
        self.parts["map_max"].add(cls, labels, smoothed.flatten(1).amax(dim=1).cpu().numpy())

    def results(self) -> dict[str, dict[str, Any]]:
        return {name: {"per_class": {cls: r["image"] for cls, r in acc.results().items()}, "mean": acc.mean()["image"]}
                for name, acc in self.parts.items()}


def training_record(checkpoint: Path, train_run: str | Path | None, checkpoint_sha256: str) -> dict[str, Any]:
    """The training's ``run.json``: the one given, else the one beside the checkpoint, else empty.

    It must be the record of this checkpoint: its ``model_sha256`` must equal the checkpoint's. A
    record without one (written before wmoe-clip recorded it) is trusted only beside its checkpoint,
    where the training wrote both.
    """
    path = Path(train_run) if train_run else checkpoint.parent / "run.json"
    if not path.is_file():
        if train_run:
            raise WMoEError(f"--train-run {path} does not exist; give the run.json written by wmoe-clip train")
        return {}
    try:
        run = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise WMoEError(f"{path}: not valid JSON ({exc}); rerun the training that wrote it") from None
    if not isinstance(run, dict):
        raise WMoEError(f"{path}: not a training record (run.json of wmoe-clip train)")
    recorded = run.get("model_sha256")
    if recorded is None and train_run:
        raise WMoEError(f"--train-run {path} records no model_sha256, so it cannot be matched to {checkpoint}; "
                        "give the run.json beside the checkpoint, or --source instead of --train-run")
    if recorded is not None and recorded != checkpoint_sha256:
        raise WMoEError(
            f"{path} belongs to another checkpoint: it records model sha256 {recorded[:12]}…, but {checkpoint} "
            f"has {checkpoint_sha256[:12]}…; give the run.json written by the training of this checkpoint"
        )
    return run


def check_zero_shot(source: str | None, target: str, allow_same_source: bool, where: str) -> bool | None:
    """Whether the evaluation is zero-shot (None when the source is unknown); refuses source == target
    unless ``allow_same_source``."""
    if source is None:
        return None
    if source == target and not allow_same_source:
        raise WMoEError(
            f"the checkpoint was trained on {target!r} ({where}), the target itself: this evaluation would not be "
            "zero-shot. Evaluate on another dataset, or pass --allow-same-source to write it marked "
            "\"zero_shot\": false (the report then marks the cell)"
        )
    return source != target


def evaluate(
    checkpoint: str | Path | None,
    target: str,
    data_dir: str | Path,
    out_json: str | Path,
    *,
    config: str | Path | None = None,
    figure: str | Path | None = None,
    train_run: str | Path | None = None,
    source: str | None = None,
    tracker: Tracker | None = None,
    feature_cache: bool = False,
    cache_dir: str | Path | None = None,
    progress: bool = True,
    allow_same_source: bool = False,
) -> dict[str, Any]:
    """Evaluate ``checkpoint`` (or, with ``checkpoint`` None, the untrained method of the run config
    ``config``) on ``target``; writes ``out_json`` (validated) and the figure."""
    from ..data.dataset import AnomalyDataset
    from ..metrics import ClassMetricAccumulator
    from ..model.checkpoint import require_checkpoint_file

    data_dir, out_json = Path(data_dir), Path(out_json)
    figure = Path(figure) if figure else out_json.with_suffix(".png")
    tracker = tracker or Tracker(enabled=False)
    started = time.perf_counter()
    check_writable(out_json, "--out")
    check_writable(figure, "--figure")
    if checkpoint is not None:
        checkpoint = require_checkpoint_file(checkpoint)
        run = training_record(checkpoint, train_run, file_sha256(checkpoint))
        if source and run.get("source") and source != run["source"]:
            raise WMoEError(f"--source {source!r} but the training record of {checkpoint} says {run['source']!r}")
        source = source or run.get("source")
        zero_shot = check_zero_shot(source, target, allow_same_source,
                                    "--source" if not run.get("source") else "per its run.json")
    elif train_run or source or allow_same_source:
        raise WMoEError("--train-run, --source and --allow-same-source describe a training; a model given by "
                        "--config has none")
    else:
        # A method that does not train has seen no data: every evaluation is zero-shot.
        run, source, zero_shot = {}, registry.UNTRAINED_SOURCE, True

    model, model_file = load_model(checkpoint, config)
    cfg = model.cfg
    method = registry.get(cfg.method)
    run_name = registry.run_name(cfg)
    device = runtime.select_device(cfg.eval.device)
    model = model.to(device).eval()
    seed = int(run.get("seed", cfg.train.seed)) if method.trains else 0
    train_run_id = run.get("mlflow_run_id")

    dataset = AnomalyDataset(data_dir, "test", cfg.model.image_size, cfg.data.mask_interpolation)
    if dataset.dataset != target:
        raise WMoEError(f"--target {target!r} but {data_dir}/meta.json holds dataset {dataset.dataset!r}")
    spec = dataset_spec(load_meta(data_dir)[1])
    if len(dataset) == 0:
        raise WMoEError(f"{data_dir}: the test split of {target!r} is empty; nothing to evaluate")
    synthetic = is_synthetic(data_dir)
    classes = {cls: dataset.class_indices(cls) for cls in dataset.class_names}
    classes = {cls: idx for cls, idx in classes.items() if idx}

    size = cfg.model.image_size
    tags = runtime.run_tags("eval", device, dataset, synthetic, source=source, target=target, method=cfg.method,
                            variant=run_name, seed=seed)
    name = f"eval {source} -> {target} {run_name} seed{seed}"
    with tracker.run(name, tags, parent_run_id=train_run_id) as run_id:
        tracker.log_params(cfg.to_dict())
        if feature_cache:
            feats_source = open_cache(cfg, dataset, model, device, cache_dir, cfg.eval.batch_size, cfg.eval.num_workers)
        else:
            feats_source = ImageSource(dataset, model, device, cfg.eval.num_workers)
        acc = ClassMetricAccumulator(image=spec.image_metrics, pixel=spec.pixel_metrics, image_size=(size, size),
                                     expected={cls: len(idx) for cls, idx in classes.items()})
        picks = select_samples(dataset.records, cfg.eval.figure_samples)
        figure_picks = set(picks)
        figure_maps: dict[int, tuple[np.ndarray, float]] = {}
        score_parts = ScoreParts() if spec.image_metrics else None

        runtime.reset_peak_memory(device)
        inference_s = metrics_s = 0.0
        bs = cfg.eval.batch_size
        bar = tqdm(total=len(dataset), desc=f"evaluate {target}", unit="img", disable=not progress)
        # One stream of batches over all classes (loader workers start once and prefetch across
        # class boundaries); each class is finalised as soon as its last batch is in.
        chunks = {cls: [idx[i : i + bs] for i in range(0, len(idx), bs)] for cls, idx in classes.items()}
        stream = feats_source.batches([chunk for cls_chunks in chunks.values() for chunk in cls_chunks])
        for cls in classes:
            t0 = time.perf_counter()
            for batch in itertools.islice(stream, len(chunks[cls])):
                with torch.no_grad():
                    out = model.forward_features(batch.feats, batch.classes)
                    smoothed = gaussian_smooth(out.anomaly_map.float(), cfg.eval.sigma)
                    scores = model.eval_image_score(out.global_score, smoothed)
                maps_np, scores_np = smoothed.cpu().numpy(), scores.cpu().numpy()
                acc.add(cls, batch.labels.cpu().numpy(), scores_np, masks=batch.masks.cpu().numpy(), maps=maps_np)
                if score_parts is not None:
                    score_parts.add(cls, batch.labels.cpu().numpy(), out.global_score, smoothed)
                for j, index in enumerate(batch.indices):
                    if index in figure_picks:
                        figure_maps[index] = (maps_np[j].copy(), float(scores_np[j]))
                bar.update(len(batch.indices))
            t1 = time.perf_counter()
            result = acc.finalize_class(cls)
            metrics_s += time.perf_counter() - t1
            inference_s += t1 - t0
            tracker.log_metrics({f"class.{cls}": {k: v for k, v in result.items() if k in ("image", "pixel")}})
        bar.close()

        figure_name = None
        if figure_maps:
            samples = []
            for index in (i for i in picks if i in figure_maps):
                item = dataset[index]
                anomaly_map, score = figure_maps[index]
                samples.append(Sample(denormalise(item["image"]), item["mask"].numpy() > 0.5, anomaly_map,
                                      item["cls_name"], int(item["label"]), score))
            made = f"trained on {source} ({run_name}, seed {seed})" if method.trains else "no training"
            sample_grid(samples, figure, f"{spec.display_name}: {method.display_name}, {made}")
            figure_name = figure.name if figure.parent.resolve() == out_json.parent.resolve() else str(figure)

        n = len(dataset)
        timings = {
            "inference_s": inference_s,
            "images_per_s": n / inference_s if inference_s > 0 else 0.0,
            "metrics_s": metrics_s,
            "total_s": time.perf_counter() - started,
            "device": runtime.device_description(device),
            "peak_memory_mb": runtime.peak_memory_mb(device),
        }
        doc = build_eval(
            source=source, target=target, method=cfg.method, variant=run_name, seed=seed, synthetic=synthetic,
            dataset={"key": spec.key, "display_name": spec.display_name, "domain": spec.domain,
                     "image_metrics": spec.image_metrics, "pixel_metrics": spec.pixel_metrics,
                     "protocol_variant": spec.variant, "classes_evaluated": list(classes),
                     "n_registry_classes": None if spec.custom else len(spec.classes)},
            per_class=acc.results(), mean=acc.mean(), image_scores=acc.image_scores(),
            checkpoint=model_file, config=cfg.to_dict(), train_run_id=train_run_id, mlflow_run_id=run_id,
            software=runtime.software_info(), timings=timings, figure=figure_name,
            score_parts=score_parts.results() if score_parts is not None else None,
            zero_shot=zero_shot,
        )
        tracker.log_metrics({"mean": {lvl: {k: v["value"] for k, v in m.items()} for lvl, m in doc["mean"].items()},
                             "timings": {k: v for k, v in timings.items() if k != "device"}})
        if "score_parts" in doc:
            tracker.log_metrics({"score_parts": {name: {k: v["value"] for k, v in part["mean"].items()}
                                                 for name, part in doc["score_parts"].items()}})
        doc["tracking"] = tracker.status()
        write_eval(out_json, doc)
        tracker.log_artifact(out_json)
        if figure_name:
            tracker.log_artifact(figure)
    if tracker.status() != doc["tracking"]:  # logging failed after the JSON was written
        doc["tracking"] = tracker.status()
        write_eval(out_json, doc)
    return doc
