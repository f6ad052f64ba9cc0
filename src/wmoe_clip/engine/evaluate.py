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
records the target's protocol and which classes were evaluated out of the registry's.
For image-level targets the image metrics of ``s_g`` alone and of ``max(M)`` alone are
recorded too (``score_parts``, every method), so a fusion can be judged on real data; nothing selects on them.

Before any of that: the output paths are tested for writing, and the checkpoint is matched to its
training record (``run.json``, by the checkpoint's sha256) and to the training source the checkpoint
itself records (so a copied checkpoint keeps it) to learn the source dataset. A model trained on the
target itself, or on the same prepared data (the sha256 of its ``meta.json``), is refused — the cell
would not be zero-shot — unless ``allow_same_source``, and then the JSON says ``"zero_shot": false``
and the report marks the cell.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import re
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from ..data.dataset import AnomalyDataset
from ..data.meta import data_folders, dataset_spec, is_synthetic, load_meta
from ..errors import WMoEError
from ..io import check_output
from ..metrics import ClassMetricAccumulator
from ..model import registry
from ..model.backbone import FrozenCLIP
from ..model.checkpoint import read_training_source, require_checkpoint_file
from ..model.encoder_pass import encoder_passes
from ..model.source import build_from_source, read_model_source
from . import runtime
from .feature_cache import ImageSource, open_cache
from .figures import Sample, denormalise, sample_grid, select_samples
from .results import build_eval, file_sha256, write_eval
from .smoothing import gaussian_smooth
from .tracking import Tracker


class ScoreParts:
    """Image metrics, per class and their mean, of the two parts of the image score: ``s_g`` alone
    (``global_score``) and ``max(M)`` alone (``map_max``, M the smoothed map)."""

    def __init__(self):
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


@dataclass
class ModelRequest:
    """One model of an evaluation (a checkpoint, or the run config of a method that does not train) and
    where its results go; the options of ``wmoe-clip evaluate`` that follow its ``--checkpoint``/``--config``."""

    out: Path
    checkpoint: Path | None = None
    config: Path | None = None
    figure: Path | None = None
    train_run: Path | None = None
    source: str | None = None
    allow_same_source: bool = False
    force: bool = False  # replace existing files at --out/--figure that are not earlier outputs
    # The run's name in the results layout (eval/{source}/{target}/{run}/); None: the method's own
    # (registry.run_name), e.g. "anomalyclip_released" for an imported released checkpoint.
    run: str | None = None


_RUN_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


class _ModelRun:
    """One model's evaluation inside a shared pass: its record, accumulators, figure and MLflow run."""

    def __init__(self, request: ModelRequest, target: str, tracker: Tracker, target_digest: str | None = None,
                 data_inputs: tuple[Path, ...] = ()):
        r = request
        self.out, self.tracker = Path(r.out), tracker
        self.figure = Path(r.figure) if r.figure else self.out.with_suffix(".png")
        inputs = [r.checkpoint, r.config, r.train_run, *data_inputs]
        if r.checkpoint is not None:
            inputs.append(Path(r.checkpoint).parent / "run.json")
        check_output(self.out, "--out", "eval", inputs=inputs, force=r.force)
        check_output(self.figure, "--figure", "figure", inputs=inputs, force=r.force,
                     earlier=self._named_by_earlier_eval())
        if r.checkpoint is not None:
            checkpoint = require_checkpoint_file(r.checkpoint)
            run = training_record(checkpoint, r.train_run, file_sha256(checkpoint))
            # The checkpoint's own record of its training data holds wherever the file is copied.
            recorded = read_training_source(checkpoint) or {}
            for given, said in ((r.source, "--source"), (run.get("source"), "its run.json")):
                if given and recorded.get("dataset") and given != recorded["dataset"]:
                    raise WMoEError(f"{said} says {checkpoint} was trained on {given!r}, but the checkpoint records "
                                    f"{recorded['dataset']!r}; give the checkpoint's own training dataset")
            if r.source and run.get("source") and r.source != run["source"]:
                raise WMoEError(f"--source {r.source!r} but the training record of {checkpoint} says {run['source']!r}")
            self.source = r.source or run.get("source") or recorded.get("dataset")
            where = ("per its run.json" if run.get("source") else "--source" if r.source
                     else "as the checkpoint records")
            # The very data it was trained on is its source, whatever the dataset is called now.
            same_data = self.source != target and target_digest is not None and target_digest in (
                run.get("data_meta_sha256"), recorded.get("data_meta_sha256"))
            self.zero_shot = check_zero_shot(target if same_data else self.source, target, r.allow_same_source,
                                             "the same prepared data, by its meta.json" if same_data else where)
        elif r.train_run or r.source or r.allow_same_source:
            raise WMoEError("--train-run, --source and --allow-same-source describe a training; a model given "
                            f"by --config ({r.config}) has none")
        else:
            # A method that does not train has seen no data: every evaluation is zero-shot.
            run, self.source, self.zero_shot = {}, registry.UNTRAINED_SOURCE, True
        self.cfg, self.state, self.file = read_model_source(r.checkpoint, r.config)
        self.method = registry.get(self.cfg.method)
        if r.run is not None and not _RUN_NAME.match(r.run):
            raise WMoEError(f"--run {r.run!r}: a run name is lower-case letters, digits, _ and -, e.g. anomalyclip_released")
        self.run_name = r.run or registry.run_name(self.cfg)
        self.seed = int(run.get("seed", self.cfg.train.seed)) if self.method.trains else 0
        self.train_run_id = run.get("mlflow_run_id")
        self.model = None

    def _named_by_earlier_eval(self) -> bool:
        """Whether the evaluation JSON at ``out`` names the figure path as its own (figures written before
        they carried a wmoe-clip mark are recognised so)."""
        try:
            doc = json.loads(self.out.read_text())
        except (OSError, ValueError):
            return False
        name = doc.get("figure") if isinstance(doc, dict) and doc.get("format") == "wmoe-clip/eval" else None
        return isinstance(name, str) and (self.out.parent / name).resolve() == self.figure.resolve()

    def build(self, backbone, device: torch.device) -> None:
        """The model on the group's shared backbone, with its learned state, on ``device``."""
        self.model = build_from_source(self.cfg, self.state, self.file, backbone).to(device)

    def start(self, stack: contextlib.ExitStack, dataset, spec, synthetic: bool, device: torch.device,
              classes: dict[str, list[int]], target: str) -> None:

        size = self.cfg.model.image_size
        tags = runtime.run_tags("eval", device, dataset, synthetic, source=self.source, target=target,
                                method=self.cfg.method, variant=self.run_name, seed=self.seed)
        # The MLflow run lasts until the group's pass is done; an error ends it FAILED (KILLED on Ctrl-C).
        self.run_id = stack.enter_context(self.tracker.run(
            f"eval {self.source} -> {target} {self.run_name} seed{self.seed}", tags, parent_run_id=self.train_run_id))
        self.tracker.log_params(self.cfg.to_dict())
        self.acc = ClassMetricAccumulator(image=spec.image_metrics, pixel=spec.pixel_metrics, image_size=(size, size),
                                          expected={cls: len(idx) for cls, idx in classes.items()},
                                          undefined=self.cfg.eval.undefined_metric)
        self.picks = select_samples(dataset.records, self.cfg.eval.figure_samples)
        # Anomalous images without a mask (a user's dataset): image metrics only.
        self.unmasked = {i for i, r in enumerate(dataset.records) if r["anomaly"] and not r["mask_path"]}
        self.figure_maps: dict[int, tuple[np.ndarray, float]] = {}
        self.score_parts = ScoreParts() if spec.image_metrics else None
        self.metrics_s = 0.0

    @torch.no_grad()
    def score(self, cls: str, batch) -> None:
        out = self.model.forward_features(batch.feats, batch.classes)
        smoothed = gaussian_smooth(out.anomaly_map.float(), self.cfg.eval.sigma)
        scores = self.model.eval_image_score(out.global_score, smoothed)
        maps_np, scores_np = smoothed.cpu().numpy(), scores.cpu().numpy()
        labels = batch.labels.cpu().numpy()
        masked = np.array([i not in self.unmasked for i in batch.indices], dtype=bool)
        self.acc.add(cls, labels, scores_np, masks=batch.masks.cpu().numpy(), maps=maps_np, masked=masked)
        if self.score_parts is not None:
            self.score_parts.add(cls, labels, out.global_score, smoothed)
        for j, index in enumerate(batch.indices):
            if index in self.picks:
                self.figure_maps[index] = (maps_np[j].copy(), float(scores_np[j]))

    def finish_class(self, cls: str) -> None:
        t0 = time.perf_counter()
        result = self.acc.finalize_class(cls)
        self.metrics_s += time.perf_counter() - t0
        self.tracker.log_metrics({f"class.{cls}": {k: v for k, v in result.items() if k in ("image", "pixel")}})

    def write(self, dataset, spec, synthetic: bool, target: str, classes: dict[str, list[int]],
              timings: dict[str, Any], encoder: dict[str, Any]) -> dict[str, Any]:
        figure_name = None
        if self.figure_maps:
            samples = []
            for index in (i for i in self.picks if i in self.figure_maps):
                item = dataset[index]
                anomaly_map, score = self.figure_maps[index]
                samples.append(Sample(denormalise(item["image"]), item["mask"].numpy() > 0.5, anomaly_map,
                                      item["cls_name"], int(item["label"]), score))
            made = (f"trained on {self.source} ({self.run_name}, seed {self.seed})" if self.method.trains
                    else "no training")
            sample_grid(samples, self.figure, f"{spec.display_name}: {self.method.display_name}, {made}")
            same_folder = self.figure.parent.resolve() == self.out.parent.resolve()
            figure_name = self.figure.name if same_folder else str(self.figure)
        timings = {**timings, "metrics_s": self.metrics_s}
        doc = build_eval(
            source=self.source, target=target, method=self.cfg.method, variant=self.run_name, seed=self.seed,
            synthetic=synthetic,
            dataset={"key": spec.key, "display_name": spec.display_name, "domain": spec.domain,
                     "image_metrics": spec.image_metrics, "pixel_metrics": spec.pixel_metrics,
                     "protocol": spec.protocol, "classes_evaluated": list(classes),
                     "n_registry_classes": None if spec.custom else len(spec.classes)},
            per_class=self.acc.results(), mean=self.acc.mean(), image_scores=self.acc.image_scores(),
            checkpoint=self.file, config=self.cfg.to_dict(), train_run_id=self.train_run_id,
            mlflow_run_id=self.run_id, software=runtime.software_info(), timings=timings, figure=figure_name,
            score_parts=self.score_parts.results() if self.score_parts is not None else None,
            zero_shot=self.zero_shot, encoder=encoder,
        )
        t = self.tracker
        t.log_metrics({"mean": {lvl: {k: v["value"] for k, v in m.items()} for lvl, m in doc["mean"].items()},
                       "timings": {k: v for k, v in timings.items() if k != "device"},
                       "encoder_images": encoder["images"], "encoder_shared_by": encoder["shared_by"]})
        if "score_parts" in doc:
            t.log_metrics({"score_parts": {name: {k: v["value"] for k, v in part["mean"].items()}
                                           for name, part in doc["score_parts"].items()}})
        doc["tracking"] = t.status()
        write_eval(self.out, doc)
        t.log_artifact(self.out)
        if figure_name:
            t.log_artifact(self.figure)
        self.model = None  # the group's backbone is freed once its pass is done
        return doc

    def settle(self, doc: dict[str, Any]) -> None:
        """After the run has ended: record a logging failure that came after the JSON was written."""
        if self.tracker.status() != doc["tracking"]:
            doc["tracking"] = self.tracker.status()
            write_eval(self.out, doc)


def evaluate_models(
    requests: list[ModelRequest],
    target: str,
    data_dir: str | Path,
    *,
    trackers: list[Tracker] | None = None,
    feature_cache: bool = False,
    cache_dir: str | Path | None = None,
    progress: bool = True,
    verify_cache: bool = False,
) -> list[dict[str, Any]]:
    """Evaluate every model of ``requests`` on ``target``; one JSON (and figure, MLflow run) per model,
    each exactly what evaluating that model alone writes. Models with equal encoder pass keys
    (``model.encoder_pass``) share one frozen backbone and one pass of the target's images through it;
    ``trackers`` holds one tracker per request (default: none)."""
    started = time.perf_counter()
    data_dir = Path(data_dir)
    if not requests:
        raise WMoEError("nothing to evaluate: give --checkpoint or --config (with its --out) at least once")
    trackers = trackers or [Tracker(enabled=False) for _ in requests]
    outputs = [p.resolve() for r in requests
               for p in (Path(r.out), Path(r.figure) if r.figure else Path(r.out).with_suffix(".png"))]
    repeated = sorted({str(p) for p in outputs if outputs.count(p) > 1})
    if repeated:
        raise WMoEError(f"two models of this evaluation would write {', '.join(repeated)}; give each its own --out "
                        "(and --figure)")
    # Everything is checked before the first image is read: outputs, records, configs.
    meta = data_dir / "meta.json"
    target_digest = file_sha256(meta) if meta.is_file() else None
    data_inputs = data_folders(data_dir)
    runs = [_ModelRun(r, target, t, target_digest, data_inputs) for r, t in zip(requests, trackers)]
    # The workflow's evaluate jobs are these groups, named by the same digest.
    groups = encoder_passes(runs, lambda m: m.cfg)

    job = str(uuid.uuid4())
    docs: dict[int, dict[str, Any]] = {}
    for digest, members in groups.items():
        cfg = members[0].cfg
        dataset = AnomalyDataset(data_dir, "test", cfg.model.image_size, cfg.data.mask_interpolation)
        if dataset.dataset != target:
            raise WMoEError(f"--target {target!r} but {data_dir}/meta.json holds dataset {dataset.dataset!r}")
        if len(dataset) == 0:
            raise WMoEError(f"{data_dir}: the test split of {target!r} is empty; nothing to evaluate")
        spec = dataset_spec(load_meta(data_dir)[1])
        synthetic = is_synthetic(data_dir)
        classes = {cls: idx for cls in dataset.class_names if (idx := dataset.class_indices(cls))}

        device = runtime.select_device(cfg.eval.device)
        backbone = FrozenCLIP(cfg.model).to(device)
        for m in members:
            m.build(backbone, device)
        encoder_model = members[0].model
        if feature_cache:
            own = registry.get(cfg.method).image_encoder
            if own:
                raise WMoEError(f"{cfg.method} encodes more than the backbone's tokens ({own}), which the feature "
                                "cache does not hold: evaluate it without the feature cache")
            source = open_cache(cfg, dataset, encoder_model, device, cache_dir, cfg.eval.batch_size,
                                cfg.eval.num_workers, verify=verify_cache)
        else:
            source = ImageSource(dataset, encoder_model, device, cfg.eval.num_workers)
        runtime.reset_peak_memory(device)
        with contextlib.ExitStack() as stack:
            for m in members:
                m.start(stack, dataset, spec, synthetic, device, classes, target)
            inference_s = 0.0
            bs = cfg.eval.batch_size
            bar = tqdm(total=len(dataset), desc=f"evaluate {target}" + (f" ({len(members)} models)"
                       if len(members) > 1 else ""), unit="img", disable=not progress)
            # One stream of batches over all classes (loader workers start once and prefetch across
            # class boundaries); each class is finalised as soon as its last batch is in.
            chunks = {cls: [idx[i : i + bs] for i in range(0, len(idx), bs)] for cls, idx in classes.items()}
            stream = source.batches([chunk for cls_chunks in chunks.values() for chunk in cls_chunks])
            for cls in classes:
                t0 = time.perf_counter()
                for batch in itertools.islice(stream, len(chunks[cls])):
                    for m in members:
                        m.score(cls, batch)
                    bar.update(len(batch.indices))
                inference_s += time.perf_counter() - t0
                for m in members:
                    m.finish_class(cls)
            bar.close()
            n = len(dataset)
            timings = {"inference_s": inference_s, "images_per_s": n / inference_s if inference_s > 0 else 0.0,
                       "total_s": time.perf_counter() - started, "device": runtime.device_description(device),
                       "peak_memory_mb": runtime.peak_memory_mb(device)}
            encoder = {"images": source.encoded, "job": job, "backbone": digest, "shared_by": len(members),
                       "cache": source.cache}
            for m in members:
                docs[id(m)] = m.write(dataset, spec, synthetic, target, classes, timings, encoder)
        for m in members:
            m.settle(docs[id(m)])
        del backbone, source
    return [docs[id(m)] for m in runs]


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
    request = ModelRequest(out=Path(out_json), checkpoint=Path(checkpoint) if checkpoint else None,
                           config=config, figure=Path(figure) if figure else None,
                           train_run=Path(train_run) if train_run else None, source=source,
                           allow_same_source=allow_same_source)
    return evaluate_models([request], target, data_dir, trackers=[tracker or Tracker(enabled=False)],
                           feature_cache=feature_cache, cache_dir=cache_dir, progress=progress)[0]
