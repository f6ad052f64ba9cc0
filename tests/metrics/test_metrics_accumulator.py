"""The per-class accumulator: batches of mixed classes, numpy and torch, n/a handling, memory release."""

import numpy as np
import pytest
import torch
from metrics_reference import brute_force_aupro, sklearn_rank

from wmoe_clip.metrics import ClassMetricAccumulator, MetricInputError, pixel_metrics


def _dataset(rng):
    """Three classes; 'polyp' is all anomalous, so its image metrics do not apply."""
    data = {}
    for cls, n, all_anomalous in (("bottle", 9, False), ("cable", 7, False), ("polyp", 4, True)):
        labels = np.ones(n, dtype=int) if all_anomalous else (np.arange(n) % 3 != 0).astype(int)
        masks = np.zeros((n, 12, 12), dtype=np.float32)
        for i in np.flatnonzero(labels):
            r, c = rng.integers(0, 8, size=2)
            masks[i, r : r + 4, c : c + 3] = 1
        maps = (rng.random(masks.shape) + masks).astype(np.float32)
        scores = maps.reshape(n, -1).max(axis=1) + 0.3 * labels * rng.random(n)
        data[cls] = (labels, scores, masks, maps)
    return data


def _interleaved_batches(data, batch=3):
    rows = [(cls, i) for cls, (labels, *_) in data.items() for i in range(labels.size)]
    order = np.random.default_rng(5).permutation(len(rows))
    rows = [rows[i] for i in order]
    for start in range(0, len(rows), batch):
        chunk = rows[start : start + batch]
        yield ([cls for cls, _ in chunk],
               *(np.stack([data[cls][k][i] for cls, i in chunk]) for k in range(4)))


def test_results_and_mean_match_references():
    data = _dataset(np.random.default_rng(0))
    acc = ClassMetricAccumulator(image=True, pixel=True, image_size=(12, 12))
    for j, (names, labels, scores, masks, maps) in enumerate(_interleaved_batches(data)):
        if j % 2:  # torch batches as the engine gives them, masks with a channel axis
            labels, scores = torch.from_numpy(labels), torch.from_numpy(scores)
            masks, maps = torch.from_numpy(masks)[:, None], torch.from_numpy(maps)[:, None]
        acc.add(names, labels, scores, masks=masks, maps=maps)
    results = acc.results()
    assert list(results) == acc.classes
    for cls, (labels, scores, masks, maps) in data.items():
        got = results[cls]
        assert (got["n_images"], got["n_anomalous"]) == (labels.size, int(labels.sum()))
        assert got["n_normal"] == labels.size - labels.sum()
        # Order inside a class follows arrival, which pooled metrics do not depend on.
        assert got["pixel"] == pytest.approx(pixel_metrics(masks, maps), abs=1e-12)
        assert got["pixel"]["aupro"] == pytest.approx(brute_force_aupro(masks, maps), abs=1e-12)
        if cls == "polyp":
            assert got["image"] == {"auroc": None, "ap": None, "f1_max": None}
        else:
            assert got["image"] == pytest.approx(sklearn_rank(labels, scores), abs=1e-12)
    mean = acc.mean()
    assert mean["image"]["auroc"]["n_classes"] == 2
    assert mean["image"]["auroc"]["value"] == pytest.approx(
        (results["bottle"]["image"]["auroc"] + results["cable"]["image"]["auroc"]) / 2, abs=1e-15)
    assert mean["pixel"]["ap"]["n_classes"] == 3
    assert mean["pixel"]["ap"]["value"] == pytest.approx(np.mean([r["pixel"]["ap"] for r in results.values()]))
    stored = acc.image_scores()["cable"]
    assert sorted(stored["scores"]) == pytest.approx(sorted(data["cable"][1].tolist()))
    assert sorted(stored["labels"]) == sorted(data["cable"][0].tolist())


def test_finalize_frees_pixel_buffers_and_closes_the_class():
    rng = np.random.default_rng(1)
    acc = ClassMetricAccumulator(image_size=(16, 16), expected={"a": 4})
    masks = np.zeros((4, 16, 16), dtype=bool)
    masks[1:, 4:8, 4:8] = True
    acc.add("a", [0, 1, 1, 1], rng.random(4), masks=masks, maps=rng.random((4, 16, 16)))
    held = acc.nbytes
    assert held >= 4 * 16 * 16 * 5  # preallocated float32 maps + bool masks
    acc.add(["b"] * 2, [0, 1], rng.random(2), masks=masks[:2], maps=rng.random((2, 16, 16)))
    assert acc.nbytes > 2 * held - 100  # a second class of the same capacity
    result = acc.finalize_class("a")
    assert acc.nbytes < held + 100  # a's maps and masks are gone; its labels and scores stay
    assert result["pixel"]["aupro"] is not None and acc.results()["a"] is result
    with pytest.raises(MetricInputError, match="already finalised"):
        acc.add("a", [1], [0.5], masks=masks[:1], maps=rng.random((1, 16, 16)))


def test_buffers_grow_past_the_expected_count():
    rng = np.random.default_rng(2)
    acc = ClassMetricAccumulator(image=False, pixel=True)
    masks = np.zeros((30, 8, 8), dtype=bool)
    masks[::2, 2:5, 2:5] = True
    maps = rng.random(masks.shape).astype(np.float32) + masks
    for start in range(0, 30, 4):
        acc.add("x", masks[start : start + 4].any(axis=(1, 2)), None,
                masks=masks[start : start + 4], maps=maps[start : start + 4])
    assert acc.results()["x"]["pixel"] == pytest.approx(pixel_metrics(masks, maps), abs=1e-12)
    assert "image" not in acc.results()["x"] and "image" not in acc.mean()


def test_a_metric_no_class_covers_has_no_value():
    acc = ClassMetricAccumulator(image=True, pixel=False)
    acc.add(["a", "a", "b"], [1, 1, 1], [0.2, 0.4, 0.9])
    assert acc.mean() == {"image": {m: {"value": None, "n_classes": 0} for m in ("auroc", "ap", "f1_max")}}


def test_an_undefined_metric_is_left_out_by_default_or_counted_as_zero():
    from sklearn.metrics import roc_auc_score

    # 'b' has anomalous images only: its image AUROC is undefined.
    labels = {"a": [0, 1, 1, 0], "b": [1, 1]}
    scores = {"a": [0.1, 0.7, 0.3, 0.4], "b": [0.9, 0.2]}
    auroc_a = roc_auc_score(labels["a"], scores["a"])  # 0.75
    means = {}
    for rule in ("omit", "zero"):
        acc = ClassMetricAccumulator(image=True, pixel=False, undefined=rule)
        for cls in labels:
            acc.add(cls, labels[cls], scores[cls])
        assert acc.results()["b"]["image"]["auroc"] is None  # per class it stays undefined
        means[rule] = acc.mean()["image"]["auroc"]
    assert means["omit"] == {"value": pytest.approx(auroc_a), "n_classes": 1}
    assert means["zero"] == {"value": pytest.approx(auroc_a / 2), "n_classes": 2, "n_zero": 1}
    with pytest.raises(MetricInputError, match="undefined must be one of omit, zero"):
        ClassMetricAccumulator(undefined="skip")


def test_bad_batches_are_refused_with_the_argument_named():
    acc = ClassMetricAccumulator(image_size=(8, 8))
    good = np.zeros((2, 8, 8))
    with pytest.raises(MetricInputError, match="cls_names"):
        acc.add(["a"], [0, 1], [0.1, 0.2], masks=good, maps=good)
    with pytest.raises(MetricInputError, match="scores"):
        acc.add("a", [0, 1], [0.1, np.nan], masks=good, maps=good)
    with pytest.raises(MetricInputError, match="masks and maps"):
        acc.add("a", [0, 1], [0.1, 0.2])
    with pytest.raises(MetricInputError, match="size"):
        acc.add("a", [0, 1], [0.1, 0.2], masks=np.zeros((2, 4, 4)), maps=np.zeros((2, 4, 4)))
    assert acc.classes == []


def test_anomalous_images_without_a_mask_count_in_image_metrics_only():
    data = _dataset(np.random.default_rng(3))
    labels, scores, masks, maps = data["bottle"]
    # Two anomalous images whose masks are unknown: their all-zero masks must not enter the pixel metrics.
    unknown = np.flatnonzero(labels)[[1, 3]]
    masks = masks.copy()
    masks[unknown] = 0
    masked = np.ones(labels.size, dtype=bool)
    masked[unknown] = False
    acc = ClassMetricAccumulator(image=True, pixel=True, image_size=(12, 12))
    for start in range(0, labels.size, 4):
        rows = slice(start, start + 4)
        acc.add("bottle", labels[rows], scores[rows], masks=masks[rows], maps=maps[rows], masked=masked[rows])
    got = acc.results()["bottle"]
    assert got["n_anomalous_without_mask"] == 2 and got["n_anomalous"] == int(labels.sum())
    assert got["image"] == pytest.approx(sklearn_rank(labels, scores), abs=1e-12)
    kept = masked.nonzero()[0]
    assert got["pixel"] == pytest.approx(pixel_metrics(masks[kept], maps[kept]), abs=1e-12)
    assert {k: got["pixel"][k] for k in ("auroc", "ap", "f1_max")} == pytest.approx(
        sklearn_rank(masks[kept].ravel(), maps[kept].ravel()), abs=1e-12)
    assert got["pixel"]["aupro"] == pytest.approx(brute_force_aupro(masks[kept], maps[kept]), abs=1e-12)
    # Counting the unknown masks as normal pixels would have moved the pixel AUROC.
    assert sklearn_rank(masks.ravel(), maps.ravel())["auroc"] != pytest.approx(got["pixel"]["auroc"], abs=1e-6)
    full = ClassMetricAccumulator(image=True, pixel=True, image_size=(12, 12))
    full.add("bottle", labels, scores, masks=masks, maps=maps)
    assert "n_anomalous_without_mask" not in full.results()["bottle"]
    with pytest.raises(MetricInputError, match="masked: a normal image is false"):
        full.add("cable", [0], [0.5], masks=masks[:1], maps=maps[:1], masked=[False])
