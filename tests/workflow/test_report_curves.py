"""The report's training curves: one panel per loss term and diagnostic, one line per training."""

from __future__ import annotations

import io
import json

import pytest
from PIL import Image

from conftest import eval_json, write_eval
from wmoe_clip.report import build_report
from wmoe_clip.report.figures import PANEL_TITLES, curve_panels, training_curves_png
from wmoe_clip.report.results import Training


def _full_epoch(epoch):
    """An epoch of the ``full`` variant as engine/train.py writes it."""
    return {
        "epoch": epoch,
        "loss": {"total": 3.0 / epoch, "global": 0.7, "focal": 1.0, "dice": 1.2, "kl": 0.1 * epoch, "rec": 0.9,
                 "load_balance": 1.1},
        "diagnostics": {"prompt_shift_norm": 0.2 * epoch, "prompt_shift_norm_sampled": 2.0 * epoch,
                        "cos_text": 1.0 - 0.01 * epoch, "cos_global": 1.0 - 0.02 * epoch,
                        "router_entropy": 2.0 - 0.5 * epoch},
        "expert_usage": {"selected_share": [0.125 * epoch, 0.5 - 0.125 * epoch] + [0.5 / 6] * 6,
                         "mean_router_prob": [0.125] * 8},
        "lr": 1e-3, "time_s": 4.0, "images_per_s": 10.0, "peak_memory_mb": None,
    }


def _base_epoch(epoch):
    return {"epoch": epoch, "loss": {"total": 2.0 / epoch, "global": 0.7, "focal": 1.0, "dice": 0.3},
            "diagnostics": {}, "expert_usage": None, "lr": 1e-3, "time_s": 2.0, "images_per_s": 20.0,
            "peak_memory_mb": None}


def _trainings():
    return [Training("visa", "full", 0, [_full_epoch(e) for e in (1, 2, 3)]),
            Training("visa", "base", 0, [_base_epoch(e) for e in (1, 2, 3)])]


def test_one_panel_per_quantity_with_a_line_per_training_that_has_it():
    panels = curve_panels(_trainings())
    full, base = "visa / full / seed 0", "visa / base / seed 0"
    assert list(panels) == [name for name in PANEL_TITLES if name in panels]
    assert {"diagnostics/prompt_shift_norm", "diagnostics/cos_text", "diagnostics/cos_global",
            "diagnostics/router_entropy", "expert_usage/max_selected_share", "loss/kl", "loss/rec", "lr"} <= set(panels)
    assert set(panels["loss/total"]) == {full, base}
    # A switched-off module draws no line (not a line at 0, which would read as a collapse).
    for name in ("loss/kl", "diagnostics/cos_text", "diagnostics/router_entropy", "expert_usage/max_selected_share"):
        assert set(panels[name]) == {full}, name
    assert panels["diagnostics/prompt_shift_norm"][full] == ([1.0, 2.0, 3.0], pytest.approx([0.2, 0.4, 0.6]))
    assert panels["expert_usage/max_selected_share"][full] == ([1.0, 2.0, 3.0], [0.375, 0.25, 0.375])
    assert panels["lr"][base] == ([1.0, 2.0, 3.0], [1e-3] * 3)
    assert not any("time" in name or "per_s" in name or "memory" in name for name in panels)


def test_curves_render_as_one_png():
    png = training_curves_png(_trainings())
    with Image.open(io.BytesIO(png)) as im:
        assert im.format == "PNG" and im.width > 1000 and im.height > 600
    assert training_curves_png([]) is None


def test_the_report_shows_the_diagnostics_of_a_training_history(tmp_path, paper_path):
    hist = tmp_path / "results" / "train" / "visa" / "full" / "seed0" / "history.json"
    hist.parent.mkdir(parents=True)
    hist.write_text(json.dumps([_full_epoch(e) for e in (1, 2)]))
    write_eval(tmp_path / "results", eval_json("visa", "mvtec", "full", 0, image={"auroc": 0.8}))
    build_report(tmp_path / "results", tmp_path / "report", paper_path, resamples=10)
    html = (tmp_path / "report" / "index.html").read_text()
    assert 'alt="training curves"' in html and "‖P(μ)‖" in html and "1/k" in html
