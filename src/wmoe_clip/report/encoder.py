"""Encoder passes of a protocol: images through the frozen encoder against distinct test images.

The frozen encoder is nearly all of the compute, so the run summary says how often the protocol sent
each test image through it. The counts come from the files alone:

* an evaluation JSON's ``encoder`` block: ``images`` its job encoded for this file's backbone
  configuration, ``job`` (one id per ``evaluate`` invocation) and ``backbone`` (a digest of the backbone
  configuration). Every checkpoint scored from one shared pass carries the same block, so a job's
  images count once per distinct (job, backbone);
* a training's ``run.json`` ``encoder_images`` (0 when it read a feature cache another job built).
  A training belongs to the backbone of the evaluations of its checkpoint (by sha256).

Distinct test images: every dataset the protocol touched (targets and training sources) once, from
the evaluations' per-class counts (the union of the classes evaluated) or, for a source that is never
a target, its training's ``counts``. A file without these fields (an older wmoe-clip) makes the figure
"not recorded": a partial sum would be a wrong number.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from .results import Results


@dataclass
class Passes:
    """Encoder passes and distinct test images of one backbone configuration, or of the whole protocol."""

    images: int = 0
    eval_images: int = 0
    eval_jobs: int = 0
    checkpoints: int = 0  # evaluation files scored from those jobs
    train_images: int = 0
    trainings: int = 0
    datasets: set[str] = field(default_factory=set)
    distinct: int = 0

    @property
    def ratio(self) -> float | None:
        return self.images / self.distinct if self.distinct else None


@dataclass
class EncoderSummary:
    total: Passes | None  # None: not recorded
    # backbone digest -> (description of the configuration, its passes); only with several backbones
    per_backbone: dict[str, tuple[str, Passes]]
    unattributed_train_images: int  # trainings without an evaluation naming their backbone
    not_recorded: str | None  # why, when total is None


def _distinct_images(results: Results) -> dict[str, int]:
    """Test images of every dataset the protocol touched, each counted once."""
    per_class: dict[tuple[str, str | None], dict[str, int]] = defaultdict(dict)
    for e in results.evaluations:
        key = (e.target, e.protocol)
        for cls, entry in e.data["per_class"].items():
            per_class[key][cls] = max(per_class[key].get(cls, 0), entry["n_images"])
    counts: dict[str, int] = defaultdict(int)
    for (target, _), classes in per_class.items():
        counts[target] += sum(classes.values())
    for t in results.trainings:
        n = (t.run.get("counts") or {}).get("n_images")
        if n is not None:  # the full test split it trained on, when an evaluation covered fewer classes
            counts[t.source] = max(counts[t.source], n)
    return dict(counts)


def _backbone_description(config: dict) -> str:
    model = config.get("model", {})
    parts = [f"{model.get('backbone', '?')} at {model.get('image_size', '?')} px"]
    parts += [f"{k} {model[k]}" for k in ("precision", "compat") if model.get(k)]
    return ", ".join(parts)


def encoder_summary(results: Results) -> EncoderSummary:
    evals, trainings = results.evaluations, results.trainings
    old_evals = [e for e in evals if not isinstance(e.data.get("encoder"), dict)]
    old_trainings = [t for t in trainings if not isinstance(t.run.get("encoder_images"), int)]
    if old_evals or old_trainings:
        parts = [f"{len(old_evals)} of {len(evals)} evaluation files"] if old_evals else []
        parts += [f"{len(old_trainings)} of {len(trainings)} trainings"] if old_trainings else []
        return EncoderSummary(None, {}, 0, f"{' and '.join(parts)} carry no encoder count (written by an "
                              "older wmoe-clip, or a training without its run.json)")
    jobs: dict[tuple[str, str], int] = {}
    files: dict[tuple[str, str], int] = defaultdict(int)
    for e in evals:
        enc = e.data["encoder"]
        key = (enc["job"], enc["backbone"])
        if jobs.setdefault(key, enc["images"]) != enc["images"]:
            return EncoderSummary(None, {}, 0, f"the evaluation files of job {key[0]} (backbone {key[1]}) "
                                  f"disagree on its images ({jobs[key]} and {enc['images']}, e.g. {e.path})")
        files[key] += 1
    backbone_of = {e.data["checkpoint"]["sha256"]: e.data["encoder"]["backbone"] for e in evals}
    describe = {e.data["encoder"]["backbone"]: _backbone_description(e.data.get("config") or {}) for e in evals}
    distinct = _distinct_images(results)

    total, per = Passes(), defaultdict(Passes)
    for (job, backbone), images in jobs.items():
        for p in (total, per[backbone]):
            p.eval_images += images
            p.eval_jobs += 1
            p.checkpoints += files[(job, backbone)]
    for e in evals:
        for p in (total, per[e.data["encoder"]["backbone"]]):
            p.datasets.add(e.target)
    unattributed = 0
    for t in trainings:
        backbone = backbone_of.get(t.run.get("model_sha256"))
        for p in (total, per[backbone]) if backbone else (total,):
            p.train_images += t.run["encoder_images"]
            p.trainings += 1
            p.datasets.add(t.source)
        if backbone is None:
            unattributed += t.run["encoder_images"]
    for p in (total, *per.values()):
        p.images = p.eval_images + p.train_images
        p.distinct = sum(distinct.get(d, 0) for d in p.datasets)
    per_backbone = {b: (describe[b], p) for b, p in sorted(per.items())} if len(per) > 1 else {}
    return EncoderSummary(total, per_backbone, unattributed, None)


def _describe(p: Passes) -> str:
    ratio = f"{p.ratio:.2f}" if p.ratio is not None else "–"
    return (f"{p.images:,} images through the frozen encoder for {p.distinct:,} distinct test images "
            f"(ratio {ratio}): evaluations {p.eval_images:,} in {p.eval_jobs} job(s) scoring {p.checkpoints} "
            f"checkpoint(s), trainings {p.train_images:,} in {p.trainings} run(s)")


def summary_rows(results: Results) -> list[tuple[str, str]]:
    """The run summary's lines: the protocol total, and one per backbone configuration when there are several."""
    s = encoder_summary(results)
    if s.total is None:
        return [("Encoder passes", f"not recorded: {s.not_recorded}")]
    several = (f"; {len(s.per_backbone)} backbone configurations, each of which needs every image it scores "
               "or trains on at least once (lines below)") if s.per_backbone else ""
    rows = [("Encoder passes", _describe(s.total) + several)]
    for backbone, (description, p) in s.per_backbone.items():
        rows.append((f"Encoder passes, backbone {backbone}", f"{description}: {_describe(p)}"))
    if s.per_backbone and s.unattributed_train_images:
        rows.append(("Encoder passes, backbone unknown",
                     f"{s.unattributed_train_images:,} images of trainings whose checkpoint no evaluation scored"))
    return rows
