"""config/references/*.yaml against their sources: AnomalyCLIP's Tables 1-2 (typed excerpt checked against
the repository's images, data/anomalyclip_tables.txt), its released checkpoints' logs (verbatim,
data/anomalyclip_logs.txt), WinCLIP's † cells; the WMoE-CLIP paper's cells marked as copied are exactly
those equal to AnomalyCLIP's own table; a garbled or missing file is said in one line."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from wmoe_clip.errors import WMoEError
from wmoe_clip.report import load_paper_results

DATA = Path(__file__).parent / "data"
COLUMNS = ["clip", "clip_ac", "winclip", "vand", "coop", "anomalyclip"]
PAIR = re.compile(r"^(\d+\.\d), (\d+\.\d)( †)?$")


def _excerpt() -> dict[tuple[str, str, str], tuple[list | None, bool]]:
    """(table, level, printed dataset name) -> per column ([v1, v2] or None, dagger)."""
    out, key = {}, None
    for line in (DATA / "anomalyclip_tables.txt").read_text(encoding="utf-8").splitlines():
        if line.startswith("## "):
            table, level = line[3:].split(", ", 1)
            key = ("table1" if table == "Table 1" else "table2", "image" if level.startswith("Image") else "pixel")
        elif line.startswith("| "):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            name, values = cells[0], [c for c in cells[1:] if PAIR.match(c) or c == "–, –"]
            assert len(values) == 6, line
            out[(*key, name)] = [(None, False) if v == "–, –" else
                                 ([float(PAIR.match(v)[1]), float(PAIR.match(v)[2])], bool(PAIR.match(v)[3]))
                                 for v in values]
    return out


@pytest.fixture
def anomalyclip(paper_path):
    return yaml.safe_load((paper_path.parent / "references" / "anomalyclip.yaml").read_text())


def test_anomalyclip_tables_have_every_number_of_the_images(anomalyclip):
    excerpt = _excerpt()
    assert len(excerpt) == 7 * 2 + 4 + 6  # industrial rows x 2 levels, medical image and pixel rows
    recorded = {}
    for table in anomalyclip["tables"]:
        assert [c["method"] for c in table["columns"]] == COLUMNS
        for row in table["rows"]:
            for level in ("image", "pixel"):
                if level in row:
                    recorded[(table["key"], level, row["name"])] = row[level]
    assert recorded == {k: [v for v, _ in cells] for k, cells in excerpt.items()}
    # † cells (taken from the methods' own papers): WinCLIP and VAND on MVTec AD and VisA, nothing else.
    daggers = {(k[2], COLUMNS[i]) for k, cells in excerpt.items() for i, (_, d) in enumerate(cells) if d}
    t1 = anomalyclip["tables"][0]["copied"]
    assert daggers == {(name, m) for m, e in t1.items() for name in ("MVTec AD", "VisA")
                       if {"MVTec AD": "mvtec", "VisA": "visa"}[name] in e["datasets"]}


def test_released_logs_are_the_repository_logs(anomalyclip):
    text = (DATA / "anomalyclip_logs.txt").read_text()
    blocks = [b for b in text.split("# Verbatim:")[1:]]
    recorded = anomalyclip["released"]
    assert recorded["metrics"] == ["pixel.auroc", "pixel.aupro_anomalyclip", "image.auroc", "image.ap"]
    assert "| objects    |   pixel_auroc |   pixel_aupro |   image_auroc |   image_ap |" in text
    for block, entry in zip(blocks, recorded["checkpoints"]):
        assert entry["log"] in block.splitlines()[0]
        rows = {}
        for line in block.splitlines():
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if line.startswith("| ") and re.fullmatch(r"\d+(\.\d)?", cells[-1]):
                rows[cells[0]] = [float(c) for c in cells[1:]]
        assert rows.pop("mean") == entry["mean"]
        assert rows == entry["classes"]


def test_released_log_classes_are_the_registry_classes(anomalyclip):
    from wmoe_clip.data import registry

    for entry in anomalyclip["released"]["checkpoints"]:
        assert set(entry["classes"]) == set(registry.get(entry["dataset"]).classes)


def test_the_papers_copied_cells_are_those_equal_to_anomalyclips_own_table(paper_path, anomalyclip):
    """A WMoE-CLIP cell is marked copied iff its printed tuple, on the metrics both give, equals the
    method's cell in AnomalyCLIP's table (WMoE-CLIP: image AUROC, F1, AP and pixel AUROC, PRO, AP)."""
    paper = yaml.safe_load(paper_path.read_text())["table1"]
    theirs = {(row["dataset"], level, col["method"]): row[level][i]
              for table in anomalyclip["tables"] for row in table["rows"] if row["dataset"]
              for level in ("image", "pixel") if level in row for i, col in enumerate(table["columns"])}
    equal = set()
    for dataset, entry in paper["datasets"].items():
        for level in ("image", "pixel"):
            for method, values in entry.get(level, {}).items():
                shared = [values[0], values[2]] if level == "image" else values[:2]
                if theirs.get((dataset, level, method)) == shared:
                    equal.add((method, dataset, level))
    marked = {(m, d, lvl) for m, e in paper["copied"].items() for d, levels in e["cells"].items() for lvl in levels}
    assert marked == equal


def test_copied_cells_carry_the_protocol_of_the_table_they_were_copied_from(paper_path):
    refs = load_paper_results(paper_path).references
    dtd = next(c for c in refs.cells("anomalyclip", "dtd", "image", "auroc") if c.source_key == "paper")
    assert (dtd.value, dtd.training) == (93.5, "mvtec") and "presumably copied" in dtd.copied_from
    btad = next(c for c in refs.cells("anomalyclip", "btad", "image", "auroc") if c.source_key == "paper")
    assert (btad.value, btad.training, btad.copied_from) == (89.1, "visa", None)
    own = next(c for c in refs.cells("anomalyclip", "btad", "image", "auroc") if c.source_key == "anomalyclip")
    assert (own.value, own.training) == (88.3, "mvtec")
    mvtec = next(c for c in refs.cells("anomalyclip", "mvtec", "image", "auroc") if c.source_key == "anomalyclip")
    assert mvtec.training == "visa"  # AnomalyCLIP's MVTec AD cells are VisA-trained
    dagm = next(c for c in refs.cells("clip", "dagm", "image", "auroc"))
    assert (dagm.value, dagm.training, dagm.variant) == (79.6, "none", "kaggle")
    # WinCLIP's own PRO is the standard AUPRO: its † cell keeps that definition.
    assert [c.value for c in refs.cells("winclip", "mvtec", "pixel", "aupro")] == [64.6, 64.6]


def test_winclip_file_holds_the_dagger_cells_of_anomalyclips_table(paper_path):
    winclip = yaml.safe_load((paper_path.parent / "references" / "winclip.yaml").read_text())
    excerpt = _excerpt()
    for row in winclip["tables"][0]["rows"]:
        for level in ("image", "pixel"):
            values, dagger = excerpt[("table1", level, row["name"])][COLUMNS.index("winclip")]
            assert row[level] == [values] and dagger


def test_a_garbled_references_file_names_file_line_and_column(paper_path, tmp_path):
    config = tmp_path / "config"
    (config / "references").mkdir(parents=True)
    (config / "paper_results.yaml").write_text(paper_path.read_text())
    good = (paper_path.parent / "references" / "anomalyclip.yaml").read_text()
    (config / "references" / "anomalyclip.yaml").write_text(good.replace("units: percent", "units: [percent"))
    with pytest.raises(WMoEError) as exc:
        load_paper_results(config / "paper_results.yaml")
    message = str(exc.value)
    assert re.search(r"anomalyclip\.yaml:\d+:\d+: not valid YAML", message) and "Mark" not in message
    assert "\n" not in message


def test_a_missing_references_file_is_said_not_fatal(paper_path, tmp_path):
    path = tmp_path / "paper_results.yaml"
    path.write_text(paper_path.read_text())
    refs = load_paper_results(path).references
    assert [s.key for s in refs.sources] == ["paper"]
    assert any("references/anomalyclip.yaml: references file not found" in p for p in refs.problems)
