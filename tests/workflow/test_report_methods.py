"""Table 1 with the baselines of issue 10: for every method run, "ours" beside the paper's number of that
method with Δ, in its own group of columns; methods not run keep the paper's numbers only; ``clip``, which
has no column in the paper, is compared with its published reference when one is recorded."""

from __future__ import annotations

import re

import numpy as np
import pytest
import yaml

from conftest import compile_latex, eval_json, random_scores, write_eval
from wmoe_clip.report import build_report, load_paper_results, load_results, table1, table2
from wmoe_clip.report.render import latex_escape

WMOE_MVTEC = {"auroc": 0.90, "f1_max": 0.88, "ap": 0.95}
PIXEL = {"auroc": 0.91, "aupro_anomalyclip": 0.80, "ap": 0.40, "aupro": 0.7}
# The paper's six columns for MVTec-AD image AUROC: WinCLIP, CLIP-AD, AnomalyCLIP, AdaCLIP, AA-CLIP, WMoE-CLIP.
PAPER_MVTEC_AUROC = ["91.8", "89.8", "91.5", "92.0", "90.5", "92.4"]


def _results(root):
    rng = np.random.default_rng(0)
    for seed, auroc in [(0, 0.90), (1, 0.92)]:
        write_eval(root, eval_json("visa", "mvtec", "full", seed, image={**WMOE_MVTEC, "auroc": auroc},
                                   pixel=PIXEL, scores={"bottle": random_scores(rng, 20, 30)}))
    write_eval(root, eval_json("mvtec", "visa", "full", 0, image={"auroc": 0.85, "f1_max": 0.8, "ap": 0.86},
                               pixel={"auroc": 0.95, "aupro_anomalyclip": 0.9, "ap": 0.3}))
    # AnomalyCLIP, trained on the same sources; nothing on ISIC.
    write_eval(root, eval_json("visa", "mvtec", "anomalyclip", 0, image={"auroc": 0.85, "f1_max": 0.9, "ap": 0.96},
                               pixel={"auroc": 0.90, "aupro_anomalyclip": 0.82, "ap": 0.33}))
    write_eval(root, eval_json("mvtec", "visa", "anomalyclip", 0, image={"auroc": 0.83, "f1_max": 0.8, "ap": 0.85},
                               pixel={"auroc": 0.955, "aupro_anomalyclip": 0.87, "ap": 0.2}))
    # CLIP: training-free, source "none", seed 0.
    for target in ("mvtec", "visa"):
        write_eval(root, eval_json("none", target, "clip", 0, image={"auroc": 0.74, "f1_max": 0.8, "ap": 0.876},
                                   pixel={"auroc": 0.384, "aupro_anomalyclip": 0.113, "ap": 0.05}))
    write_eval(root, eval_json("none", "isic", "clip", 0, pixel={"auroc": 0.33, "aupro_anomalyclip": 0.06, "ap": 0.2}))
    write_eval(root, eval_json("visa", "isic", "full", 0, pixel={"auroc": 0.9, "aupro_anomalyclip": 0.85, "ap": 0.7}))
    return root


def _columns(table):
    """Column names qualified by their group of the last header row ("AnomalyCLIP/Ours")."""
    names, col = [], 0
    for label, span in table.header_groups[-1]:
        for c in table.columns[col:col + span]:
            names.append(f"{label}/{c}" if label else c)
        col += span
    return names


def _row(table, dataset, metric, trained_on=None):
    current, source = None, None
    for row in table.rows:
        current, source = row[0] or current, row[2] or source
        if current == dataset and row[1] == metric and trained_on in (None, source):
            return dict(zip(_columns(table), row))
    raise KeyError((dataset, metric, trained_on))


def test_each_run_method_has_its_group_beside_the_paper(tmp_path, paper_path):
    t = table1(load_paper_results(paper_path), load_results(_results(tmp_path)), resamples=100)
    assert t.header_groups[-1][1:] == [("WMoE-CLIP (full)", 3), ("AnomalyCLIP", 2), ("CLIP", 1)]
    assert t.header_groups[0] == [("", 3), ("Paper, Table 1, §3.2", 6), ("This run", 6)]
    row = _row(t, "MVTec-AD", "AUROC")
    assert [row[c] for c in ("WinCLIP", "CLIP-AD", "AnomalyCLIP", "AdaCLIP", "AA-CLIP", "WMoE-CLIP (paper)")] \
        == PAPER_MVTEC_AUROC
    assert row["WMoE-CLIP (full)/Ours"] == "91.0 ± 1.4" and row["WMoE-CLIP (full)/Δ"] == "−1.4"
    assert re.fullmatch(r"\[\d+\.\d, \d+\.\d\]", row["WMoE-CLIP (full)/95% CI"])
    # AnomalyCLIP against the paper's AnomalyCLIP column (91.5), not WMoE-CLIP's.
    assert row["AnomalyCLIP/Ours"] == "85.0" and row["AnomalyCLIP/Δ"] == "−6.5"
    # CLIP has no column in the paper and no recorded reference numbers: ours alone.
    assert row["CLIP/Ours"] == "74.0" and "CLIP/Δ" not in row
    pro = _row(t, "VisA", "PRO")
    assert (pro["AnomalyCLIP"], pro["AnomalyCLIP/Ours"], pro["AnomalyCLIP/Δ"]) == ("87.0", "87.0", "+0.0")
    assert (pro["WMoE-CLIP (paper)"], pro["WMoE-CLIP (full)/Ours"], pro["WMoE-CLIP (full)/Δ"]) == ("90.1", "90.0", "−0.1")
    assert pro["CLIP/Ours"] == "11.3" and pro["Trained on"] == ""
    visa = _row(t, "VisA", "AUROC")
    assert visa["Trained on"] == "mvtec" and visa["CLIP/Ours"] == "74.0"  # untrained: shown in the trained block


def test_methods_not_run_keep_the_paper_numbers_only(tmp_path, paper_path):
    results = tmp_path / "results"
    write_eval(results, eval_json("visa", "mvtec", "full", 0, image=WMOE_MVTEC, pixel=PIXEL))
    t = table1(load_paper_results(paper_path), load_results(results), resamples=20)
    assert t.header_groups[-1][1:] == [("WMoE-CLIP (full)", 3)]
    assert len(t.columns) == 12
    notes = " ".join(t.notes)
    assert "Not run here, the paper's numbers only: WinCLIP, CLIP-AD, AnomalyCLIP, AdaCLIP, AA-CLIP." in notes
    t = table1(load_paper_results(paper_path), load_results(_results(tmp_path / "all")), resamples=20)
    assert "Not run here, the paper's numbers only: WinCLIP, CLIP-AD, AdaCLIP, AA-CLIP." in " ".join(t.notes)


def test_missing_baseline_cells_are_dashes_with_a_note(tmp_path, paper_path):
    t = table1(load_paper_results(paper_path), load_results(_results(tmp_path)), resamples=20)
    isic = _row(t, "ISIC", "AUROC")
    assert isic["Trained on"] == "visa" and isic["WMoE-CLIP (full)/Ours"] == "90.0"
    assert isic["AnomalyCLIP/Ours"] == isic["AnomalyCLIP/Δ"] == "–" and isic["AnomalyCLIP"] == "88.4"
    assert isic["CLIP/Ours"] == "33.0"
    btad = _row(t, "BTAD", "AUROC")
    assert btad["Trained on"] == btad["AnomalyCLIP/Ours"] == btad["CLIP/Ours"] == btad["WMoE-CLIP (full)/Ours"] == "–"
    notes = " ".join(t.notes)
    assert "– AnomalyCLIP: no result for BTAD, KSDD2, DAGM, DTD-Synthetic, HeadCT" in notes
    assert "CLIP: training-free" in notes


def test_a_baseline_cell_that_is_not_zero_shot_keeps_its_dagger(tmp_path, paper_path):
    results = _results(tmp_path)
    doc = eval_json("mvtec", "mvtec", "anomalyclip", 0, image={"auroc": 0.97, "f1_max": 0.9, "ap": 0.99}, pixel=PIXEL)
    write_eval(results, doc | {"zero_shot": False})
    t = table1(load_paper_results(paper_path), load_results(results), resamples=20)
    same = _row(t, "MVTec-AD", "AUROC", trained_on="mvtec")
    assert same["AnomalyCLIP/Ours"] == "97.0 †" and same["AnomalyCLIP/Δ"] == "n/a"
    assert same["WMoE-CLIP (full)/Ours"] == "–"  # WMoE-CLIP was not trained on MVTec-AD
    assert same["CLIP/Ours"] == "74.0"
    assert _row(t, "MVTec-AD", "AUROC", trained_on="visa")["AnomalyCLIP/Ours"] == "85.0"
    assert any("not zero-shot" in n for n in t.notes)


def test_table2_stays_wmoe_clip_alone(tmp_path, paper_path):
    results = _results(tmp_path)
    doc = eval_json("visa", "mvtec", "anomalyclip", 1, image=WMOE_MVTEC, pixel=PIXEL)
    doc["dataset"].update(protocol=None, classes_evaluated=["all"], n_registry_classes=15)
    write_eval(results, doc)
    t = table2(load_paper_results(paper_path), load_results(results), resamples=20)
    # A baseline's partial evaluation of MVTec-AD does not label Table 2's MVTec-AD.
    assert [g for g, _ in t.header_groups[0][1:]] == ["MVTec-AD", "VisA"]
    assert len(t.columns) == 17 and "AnomalyCLIP" not in " ".join(t.notes)


def _paper_with_clip_reference(tmp_path, paper_path):
    raw = yaml.safe_load(paper_path.read_text())
    raw["references"]["clip"]["datasets"] = {"mvtec": {"image": [74.1, 87.6], "pixel": [38.4, 11.3]}}
    raw["references"]["clip"]["note"] = "Hand-made numbers of this test."
    path = tmp_path / "paper.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True, sort_keys=False))
    return path


def test_clip_reference_numbers_appear_with_their_source(tmp_path, paper_path):
    paper = load_paper_results(_paper_with_clip_reference(tmp_path, paper_path))
    t = table1(paper, load_results(_results(tmp_path / "results")), resamples=20)
    assert t.header_groups[-1][-1] == ("CLIP", 3)
    row = _row(t, "MVTec-AD", "AUROC")
    assert (row["CLIP/Published"], row["CLIP/Ours"], row["CLIP/Δ"]) == ("74.1", "74.0", "−0.1")
    # The reference reports image AUROC and AP only: F1-max has neither a published number nor a Δ.
    f1 = _row(t, "MVTec-AD", "F1-max")
    assert (f1["CLIP/Published"], f1["CLIP/Ours"], f1["CLIP/Δ"]) == ("–", "80.0", "–")
    pro = _row(t, "MVTec-AD", "PRO")
    assert (pro["CLIP/Published"], pro["CLIP/Ours"], pro["CLIP/Δ"]) == ("11.3", "11.3", "+0.0")
    visa = _row(t, "VisA", "AUROC")  # no reference number for VisA in this file
    assert (visa["CLIP/Published"], visa["CLIP/Ours"], visa["CLIP/Δ"]) == ("–", "74.0", "–")
    note = next(n for n in t.notes if n.startswith("CLIP:"))
    assert "AnomalyCLIP: Object-agnostic Prompt Learning for Zero-shot Anomaly Detection (ICLR 2024, " \
           "arXiv:2310.18961), Table 1, row CLIP; Δ = ours − published." in note


def test_the_shipped_clip_reference_names_its_source_without_numbers(tmp_path, paper_path):
    t = table1(load_paper_results(paper_path), load_results(_results(tmp_path)), resamples=20)
    note = next(n for n in t.notes if n.startswith("CLIP:"))
    assert "arXiv:2310.18961), Table 1, row CLIP." in note and "not recorded" in note
    assert "KSDD2" in note and "DAGM" in note  # the datasets whose protocol differs from ours


@pytest.mark.parametrize("fmt", ["html", "latex"])
def test_html_and_latex_show_each_method_in_its_column(tmp_path, paper_path, fmt):
    build_report(_results(tmp_path / "results"), tmp_path / "report", paper_path, resamples=50)
    # Hand-written expected row of MVTec-AD image AUROC: dataset, metric, trained on, the paper's six
    # columns, then WMoE-CLIP (ours, Δ, CI), AnomalyCLIP (ours, Δ), CLIP (ours).
    head = ["MVTec-AD", "AUROC", "visa", *PAPER_MVTEC_AUROC, "91.0 ± 1.4", "−1.4"]
    tail = ["85.0", "−6.5", "74.0"]
    if fmt == "html":
        html = (tmp_path / "report" / "index.html").read_text()
        table = html[html.index('<h2 id="table1">'):html.index('<h2 id="table2">')]
        assert ('<th colspan="3" class="group start m0">WMoE-CLIP (full)</th><th colspan="2" class="group start m1">'
                'AnomalyCLIP</th><th colspan="1" class="group start m2">CLIP</th>') in table
        # The paper's column of a method run is tinted as its group, so a reader pairs them.
        assert '<th class="m1">AnomalyCLIP</th>' in table and '<th class="m0">WMoE-CLIP (paper)</th>' in table
        assert '<th class="start">WinCLIP</th>' in table and "<th>AdaCLIP</th>" in table
        rows = [re.findall(r"<td[^>]*>(.*?)</td>", r) for r in re.findall(r"<tr>(<td.*?)</tr>", table, re.S)]
        row = next(r for r in rows if r[:2] == ["MVTec-AD", "AUROC"])
    else:
        tex = (tmp_path / "report" / "table1.tex").read_text()
        assert "\\multicolumn{3}{c}{WMoE-CLIP (full)} & \\multicolumn{2}{c}{AnomalyCLIP} & \\multicolumn{1}{c}{CLIP}" in tex
        line = next(line for line in tex.splitlines() if line.startswith("MVTec-AD & AUROC"))
        row = line.removesuffix(" \\\\").split(" & ")
        head, tail = [latex_escape(c) for c in head], [latex_escape(c) for c in tail]
    assert len(row) == 15
    assert row[:11] == head and row[12:] == tail
    assert re.fullmatch(r"\[\d+\.\d, \d+\.\d\]", row[11])


def test_latex_with_every_group_is_a_consistent_document(tmp_path, paper_path):
    """The widest Table 1 (three groups, CLIP with a "Published" column, the longest dataset labels): every
    row has every column, and it compiles without running off the page where pdflatex is installed."""
    paper = _paper_with_clip_reference(tmp_path, paper_path)
    results = _results(tmp_path / "results")
    doc = eval_json("visa", "dagm", "full", 0, image=WMOE_MVTEC, pixel=PIXEL)
    doc["dataset"].update(protocol="kaggle", classes_evaluated=["all"], n_registry_classes=10)
    write_eval(results, doc)
    build_report(results, tmp_path / "report", paper, resamples=20)
    tex = (tmp_path / "report" / "table1.tex").read_text()
    assert "DAGM (kaggle, 1/10 classes) & AUROC & visa" in tex
    body = tex[tex.index("\\endfoot") + len("\\endfoot"):tex.index("\\end{longtable}")]
    rows = [line for line in body.splitlines() if line.endswith("\\\\") and "\\multicolumn" not in line]
    assert len(rows) == 3 * (6 * 2 + 3 + 5) and all(row.count(" & ") == 16 for row in rows)
    assert "\\begin{longtable}{>{\\raggedright\\arraybackslash}p{2.2cm}ll" + "r" * 6 + "rrc" + "rr" + "rrr}" in tex
    assert "\\cmidrule(lr){10-12}\\cmidrule(lr){13-14}\\cmidrule(lr){15-17}" in tex
    assert "Overfull \\hbox" not in compile_latex(tmp_path / "report", "table1.tex")
