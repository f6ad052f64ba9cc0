"""`wmoe-clip report` on hand-written evaluation JSONs: values, Δ, missing cells, synthetic notes,
a self-contained page, and LaTeX that compiles."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from conftest import compile_latex, eval_json, random_scores, write_eval, write_training
from wmoe_clip.cli import main
from wmoe_clip.report import build_report, load_paper_results, load_results, table1, table2

MVTEC_IMAGE = {"auroc": 0.90, "f1_max": 0.88, "ap": 0.95}
PIXEL = {"auroc": 0.91, "aupro_anomalyclip": 0.80, "ap": 0.40, "aupro": 0.7}


def _results(root, synthetic=False):
    rng = np.random.default_rng(0)
    for seed, auroc in [(0, 0.90), (1, 0.92)]:
        write_eval(root, eval_json("visa", "mvtec", "full", seed, image={**MVTEC_IMAGE, "auroc": auroc},
                                   pixel=PIXEL, scores={"bottle": random_scores(rng, 20, 30)}, synthetic=synthetic))
    write_eval(root, eval_json("mvtec", "visa", "base", 0, image={"auroc": 0.8, "f1_max": 0.7, "ap": 0.75},
                               pixel={"auroc": 0.93, "aupro_anomalyclip": 0.6, "ap": 0.2},
                               scores={"pcb1": random_scores(rng, 10, 10)}, synthetic=synthetic))
    write_eval(root, eval_json("visa", "isic", "full", 0, pixel={"auroc": 0.9, "aupro_anomalyclip": 0.85, "ap": 0.7},
                               synthetic=synthetic))
    write_training(root, "visa", "full", 0)
    return root


def _row(table, dataset, metric):
    """The row of ``dataset``/``metric`` (dataset names only sit on a block's first row)."""
    current = None
    for row in table.rows:
        current = row[0] or current
        if current == dataset and row[1] == metric:
            return dict(zip(table.columns, row))
    raise KeyError((dataset, metric))


def test_table1_puts_ours_beside_the_paper(tmp_path, paper_path):
    paper = load_paper_results(paper_path)
    t = table1(paper, load_results(_results(tmp_path)), resamples=200)
    row = _row(t, "MVTec-AD", "AUROC")
    mean, std = np.mean([0.90, 0.92]) * 100, np.std([0.90, 0.92], ddof=1) * 100
    assert row["Ours"] == f"{mean:.1f} ± {std:.1f}" == "91.0 ± 1.4"
    assert row["WMoE-CLIP (paper)"] == "92.4" and row["AA-CLIP"] == "90.5" and row["WinCLIP"] == "91.8"
    assert row["Δ"] == "−1.4"
    assert re.fullmatch(r"\[\d+\.\d, \d+\.\d\]", row["95% CI"])
    assert row["Trained on"] == "visa"
    # The paper's PRO column is compared with the AnomalyCLIP-compatible AUPRO.
    pro = _row(t, "MVTec-AD", "PRO")
    assert pro["Ours"] == "80.0 ± 0.0" and pro["Δ"] == f"{80.0 - 86.8:+.1f}".replace("-", "−")
    isic = _row(t, "ISIC", "AP")
    assert isic["Ours"] == "70.0" and isic["Δ"] == "−17.0"


def test_missing_results_are_dashes_with_a_note(tmp_path, paper_path):
    paper = load_paper_results(paper_path)
    t = table1(paper, load_results(_results(tmp_path)), resamples=50)
    btad = _row(t, "BTAD", "AUROC")
    assert btad["Ours"] == btad["Δ"] == btad["95% CI"] == btad["Trained on"] == "–"
    assert btad["WMoE-CLIP (paper)"] == "92.6"
    assert any("BTAD" in n and "btad" in n for n in t.notes)
    # Every one of the 14 datasets appears, with 3 rows per level it has.
    assert len(t.rows) == 3 * (6 * 2 + 3 + 5)


def test_table2_ablation(tmp_path, paper_path):
    paper = load_paper_results(paper_path)
    t = table2(paper, load_results(_results(tmp_path)), resamples=50)
    assert [r[:3] for r in t.rows] == [["", "", ""], ["✓", "", ""], ["✓", "✓", ""], ["✓", "", "✓"], ["✓", "✓", "✓"]]
    base, full = t.rows[0], t.rows[4]
    # Columns: 3 switches, then per dataset (MVTec-AD, VisA): I paper, ours, Δ, CI, P paper, ours, Δ.
    assert base[3:10] == ["88.6", "–", "–", "–", "90.8", "–", "–"]
    assert base[10:12] == ["84.8", "80.0"] and base[12] == "−4.8"
    assert base[14:17] == ["94.3", "93.0", "−1.3"]
    assert full[3:6] == ["92.4", "91.0 ± 1.4", "−1.4"]
    assert any("no result" in n and "ctds on VisA" in n for n in t.notes)


def test_synthetic_results_are_flagged_on_every_table(tmp_path, paper_path):
    results = _results(tmp_path / "results", synthetic=True)
    build_report(results, tmp_path / "report", paper_path, resamples=50)
    html = (tmp_path / "report" / "index.html").read_text()
    assert html.count("Synthetic data:</strong> the numbers in this table") == 2
    # The full explanation once, in the page banner, not repeated under every table.
    assert html.count("These numbers come from generated stand-in datasets") == 1
    for name in ("table1.tex", "table2.tex"):
        tex = (tmp_path / "report" / name).read_text()
        assert "Synthetic data, not comparable with the paper" in tex  # in the caption
        notes = tex[tex.index("\\end{longtable}"):]
        assert notes.index("\\textbf{Synthetic data.} These numbers come from generated") < notes.index("Paper columns")


def test_real_results_carry_no_synthetic_note(tmp_path, paper_path):
    build_report(_results(tmp_path / "results"), tmp_path / "report", paper_path, resamples=50)
    assert "Synthetic data" not in (tmp_path / "report" / "table1.tex").read_text()
    assert "Synthetic data" not in (tmp_path / "report" / "index.html").read_text()


def test_html_is_one_self_contained_page(tmp_path, paper_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = _results(tmp_path / "results")
    figure = results / "eval" / "visa" / "mvtec" / "full" / "seed0.png"
    plt.imsave(figure, np.random.default_rng(0).random((40, 1600)))
    data = json.loads(figure.with_suffix(".json").read_text())
    figure.with_suffix(".json").write_text(json.dumps({**data, "figure": figure.name}))
    build_report(results, tmp_path / "report", paper_path, resamples=50)
    html = (tmp_path / "report" / "index.html").read_text()
    # No external resource of any kind: every image is a data URI.
    assert not re.search(r"""(src|href)=["'](?!data:|#)""", html)
    assert "<script" not in html and "<link" not in html
    assert html.count('src="data:image/') == 2  # training curves + one evaluation figure
    assert 'alt="training curves"' in html and "trained on visa, variant full, seed 0" in html
    assert "Run summary" in html and "abc123" in html


def _latex_rows(tex):
    body = tex[tex.index("\\endfoot") + len("\\endfoot"):tex.index("\\end{longtable}")]
    return [line for line in body.splitlines() if line.endswith("\\\\") and "\\multicolumn" not in line]


@pytest.mark.parametrize("name,n_columns", [("table1.tex", 12), ("table2.tex", 17)])
def test_latex_is_a_standalone_booktabs_document(tmp_path, paper_path, name, n_columns):
    build_report(_results(tmp_path / "results", synthetic=True), tmp_path / "report", paper_path, resamples=50)
    tex = (tmp_path / "report" / name).read_text()
    assert tex.startswith("%") and "\\documentclass" in tex and tex.rstrip().endswith("\\end{document}")
    assert "\\usepackage{booktabs}" in tex
    assert all(rule in tex for rule in ("\\toprule", "\\midrule", "\\bottomrule"))
    rows = _latex_rows(tex)
    assert rows and all(row.count(" & ") == n_columns - 1 for row in rows)
    assert "±" not in tex and "Δ" not in tex and "–" not in tex  # all escaped to LaTeX
    assert "Overfull \\hbox" not in compile_latex(tmp_path / "report", name)


def test_cli_writes_the_three_files(tmp_path, paper_path, capsys):
    results = _results(tmp_path / "results")
    out = tmp_path / "report"
    assert main(["report", "--results", str(results), "--out", str(out), "--paper", str(paper_path),
                 "--resamples", "50"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["index.html", "table1.tex", "table2.tex"]


@pytest.mark.parametrize("corrupt", ["not json", "wrong place", "old format"])
def test_bad_evaluation_files_name_the_file(tmp_path, paper_path, capsys, corrupt):
    results = _results(tmp_path / "results")
    path = results / "eval" / "visa" / "isic" / "full" / "seed0.json"
    data = json.loads(path.read_text())
    if corrupt == "not json":
        path.write_text("{")
    elif corrupt == "wrong place":
        path.write_text(json.dumps({**data, "target": "kvasir"}))
    else:
        path.write_text(json.dumps({**data, "format_version": 0}))
    assert main(["report", "--results", str(results), "--out", str(tmp_path / "r"), "--paper", str(paper_path)]) == 2
    assert str(path) in capsys.readouterr().err


def test_an_evaluation_that_breaks_the_schema_is_refused_by_name(tmp_path):
    from wmoe_clip.errors import WMoEError

    doc = eval_json("visa", "mvtec", "full", 0, image={"auroc": 0.9, "ap": 0.9, "f1_max": 0.9})
    doc["per_class"]["all"]["image"]["auroc"] = 1.7  # outside [0, 1]
    path = write_eval(tmp_path, doc)
    with pytest.raises(WMoEError, match=re.escape(str(path)) + ".*per_class/all/image/auroc"):
        load_results(tmp_path)


def _with_dataset(doc, **dataset):
    doc["dataset"].update(dataset)
    return doc


def test_dataset_names_carry_the_protocol_and_a_partial_coverage(tmp_path, paper_path):
    results = _results(tmp_path / "results")
    path = results / "eval" / "visa" / "mvtec" / "full"
    for seed_file in path.glob("seed*.json"):
        doc = json.loads(seed_file.read_text())
        seed_file.write_text(json.dumps(_with_dataset(doc, protocol=None, classes_evaluated=["bottle"],
                                                      n_registry_classes=15)))
    write_eval(results, _with_dataset(eval_json("visa", "ksdd2", "full", 0, image=MVTEC_IMAGE, pixel=PIXEL),
                                      protocol="official", classes_evaluated=["all"], n_registry_classes=1))
    # A file written before the protocol had its name records it as protocol_variant.
    write_eval(results, _with_dataset(eval_json("visa", "dagm", "full", 0, image=MVTEC_IMAGE, pixel=PIXEL),
                                      protocol_variant="bayes-pfl", classes_evaluated=["all"], n_registry_classes=7))
    paper = load_paper_results(paper_path)
    t1 = table1(paper, load_results(results), resamples=50)
    assert _row(t1, "MVTec-AD (1/15 classes)", "AUROC")["Ours"] == "91.0 ± 1.4"
    assert _row(t1, "KSDD2 (official)", "AUROC")["Ours"] == "90.0"
    assert _row(t1, "DAGM (bayes-pfl, 1/7 classes)", "AUROC")["Ours"] == "90.0"
    notes = " ".join(t1.notes)
    assert "KSDD2 (official): evaluated on the protocol official, not the project's default bayes-pfl" in notes
    assert "MVTec-AD (1/15 classes): the mean covers 1 of 15 classes of the registry" in notes
    assert "DAGM (bayes-pfl, 1/7 classes): the mean covers 1 of 7" in notes and "DAGM (bayes-pfl, 1/7 classes): eval" not in notes
    t2 = table2(paper, load_results(results), resamples=50)
    assert ("MVTec-AD (1/15 classes)", 7) in t2.header_groups[0]
    build_report(results, tmp_path / "report", paper_path, resamples=50)
    tex = (tmp_path / "report" / "table1.tex").read_text()
    assert "MVTec-AD (1/15 classes) & AUROC" in tex and "KSDD2 (official) & AUROC" in tex


def test_own_datasets_get_a_section_of_their_own(tmp_path, paper_path):
    results = _results(tmp_path / "results")
    rng = np.random.default_rng(1)
    for variant in ("full", "base"):
        write_eval(results, _with_dataset(
            eval_json("visa", "parts", variant, 0, image=MVTEC_IMAGE, scores={"screw": random_scores(rng, 5, 5)}),
            domain="custom", display_name="parts", protocol=None, classes_evaluated=["screw"],
            n_registry_classes=None))
    build_report(results, tmp_path / "report", paper_path, resamples=50)
    html = (tmp_path / "report" / "index.html").read_text()
    section = html[html.index('<h2 id="custom">'):html.index("<h2>Training curves")]
    rows = re.findall(r"<tr><td>parts</td>.*?</tr>", section, re.S)
    # The main variant first.
    assert [re.findall(r"<td[^>]*>(.*?)</td>", r)[:3] for r in rows] == [["parts", "visa", "full"],
                                                                        ["parts", "visa", "base"]]
    cells = re.findall(r"<td[^>]*>(.*?)</td>", rows[0])
    assert cells[3:] == ["1", "5 / 5", "90.0", "95.0", "88.0", "n/a", "n/a", "n/a"]
    assert "image level over 1 of 1 classes" in section
    for name in ("table1.tex", "table2.tex"):
        assert "parts" not in (tmp_path / "report" / name).read_text()
    assert "parts" not in html[html.index('<h2 id="table1">'):html.index('<h2 id="custom">')]
