"""The dataset registry against docs/DATASETS.md §1 (counts, capabilities) and the Table 1 names."""

import dataclasses
import re
from pathlib import Path

import pytest

from wmoe_clip.data import datasets, registry
from wmoe_clip.data.synth.writer import Shape
from wmoe_clip.errors import WMoEError

# docs/DATASETS.md §1 overview, typed in independently: key -> (display name, domain, classes, normal, anomalous).
DOC_TABLE = {
    "mvtec": ("MVTec-AD", "industrial", 15, 467, 1258),
    "visa": ("VisA", "industrial", 12, 962, 1200),
    "btad": ("BTAD", "industrial", 3, 451, 290),
    "ksdd2": ("KSDD2", "industrial", 1, 356, 356),
    "dagm": ("DAGM", "industrial", 7, 1350, 1350),
    "dtd": ("DTD-Synthetic", "industrial", 12, 357, 947),
    "headct": ("HeadCT", "medical", 1, 100, 100),
    "brainmri": ("BrainMRI", "medical", 1, 98, 155),
    "br35h": ("Br35H", "medical", 1, 1500, 1500),
    "isic": ("ISIC", "medical", 1, 0, 379),
    "colondb": ("ColonDB", "medical", 1, 0, 380),
    "clinicdb": ("ClinicDB", "medical", 1, 0, 612),
    "endo": ("Endo", "medical", 1, 0, 200),
    "kvasir": ("Kvasir", "medical", 1, 0, 1000),
}
IMAGE_ONLY = {"headct", "brainmri", "br35h"}
PIXEL_ONLY = {"isic", "colondb", "clinicdb", "endo", "kvasir"}


def test_keys_in_table1_order():
    # The paper's datasets first, in Table 1 order; a dataset added later follows them.
    assert registry.keys()[:len(DOC_TABLE)] == tuple(DOC_TABLE)
    assert [s.key for s in registry.all()] == list(registry.keys())


@pytest.mark.parametrize("key", list(DOC_TABLE))
def test_entry_matches_datasets_doc(key):
    spec = registry.get(key)
    name, domain, n_classes, normal, anomalous = DOC_TABLE[key]
    assert (spec.display_name, spec.domain, len(spec.classes)) == (name, domain, n_classes)
    assert spec.totals == (normal, anomalous)
    known = [c for c in spec.classes.values() if c is not None]
    if len(known) == len(spec.classes):
        assert (sum(c[0] for c in known), sum(c[1] for c in known)) == (normal, anomalous)
    assert spec.image_metrics == (key not in PIXEL_ONLY)
    assert spec.pixel_metrics == (key not in IMAGE_ONLY)
    assert spec.licence and spec.homepage and spec.description and spec.citation


def test_published_per_class_counts():
    assert registry.get("btad").classes == {"01": (21, 49), "02": (30, 200), "03": (400, 41)}
    dagm = registry.get("dagm").classes
    assert dagm["Fabric1"] == (150, 150) and dagm["Fabric8"] == (300, 300) and "Fabric6" not in dagm
    assert all(a == 100 for _, a in registry.get("visa").classes.values())
    assert registry.get("mvtec").classes["metal_nut"] == (22, 93)


@pytest.mark.parametrize("spec", registry.all(), ids=lambda s: s.key)
def test_download_entries(spec):
    dl = spec.download
    assert dl.kind in ("http", "manual")
    if dl.kind == "http":
        assert dl.files and all(f.url.startswith("http") and f.filename for f in dl.files)
    else:
        assert not dl.files and "RAW_DIR" in dl.manual
    for f in dl.files:
        assert f.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", f.sha256)


def test_known_checksums():
    (mvtec,) = registry.get("mvtec").download.files
    assert mvtec.sha256.startswith("cf4313b1") and mvtec.sha256.endswith("cd3d")
    (btad,) = registry.get("btad").download.files
    assert btad.sha256.startswith("461c9387") and btad.sha256.endswith("d2a")


def test_unknown_key_lists_the_keys():
    with pytest.raises(WMoEError, match="mvtec.*kvasir"):
        registry.get("mvtec-ad")


def test_spec_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        registry.get("visa").display_name = "x"


def test_mask_threshold_only_for_jpeg_masks():
    assert {s.key: s.mask_threshold for s in registry.all() if s.mask_threshold} == {"kvasir": 127}


@pytest.mark.parametrize("key", list(DOC_TABLE))
def test_every_key_and_protocol_has_a_module_with_converter_and_synth_writer(key):
    module = datasets.module(key)
    assert module.__doc__ and module.__name__ == f"wmoe_clip.data.datasets.{key}"
    protocols = datasets.protocols(key)
    # The module's protocols are the registry's, in the same order (the first is the default).
    assert list(protocols) == (list(registry.get(key).protocols) or [None])
    for p in protocols.values():
        assert callable(p.convert) and callable(p.write) and p.layout is not None
    assert isinstance(datasets.shape(key), Shape)


def test_the_dataset_modules_are_the_registry_keys():
    folder = Path(datasets.__file__).parent
    assert sorted(p.stem for p in folder.glob("*.py") if p.stem != "__init__") == sorted(registry.keys())


def test_unknown_dataset_names_are_one_line_errors():
    registry.check_keys(["visa", "mvtec"], "config.yaml targets")
    with pytest.raises(WMoEError, match=r"^config.yaml targets: unknown datasets 'mvtec-ad', 'kolektor'; known "
                       r"datasets \(registry.yaml\): mvtec, visa, .*, kvasir$"):
        registry.check_keys(["visa", "mvtec-ad", "kolektor"], "config.yaml targets")


def test_a_registry_key_without_its_module_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(registry, "get", lambda key, protocol=None: None)
    with pytest.raises(WMoEError, match="'widget' is in the registry but has no module "
                       "src/wmoe_clip/data/datasets/widget.py"):
        datasets.protocols("widget")


# DATASETS.md §5.4/§5.5 and the sources in docs/REPRODUCTION.md, typed in independently.
PROTOCOL_TABLE = {
    ("ksdd2", "bayes-pfl"): ({"Metal": (356, 356)}, None),
    ("ksdd2", "official"): ({"Metal": (894, 110)}, None),
    ("ksdd2", "official-balanced"): ({"Metal": (356, 356)}, 0),
    ("dagm", "bayes-pfl"): ({f"Fabric{i}": (150, 150) for i in (1, 2, 3, 4, 5)} | {"Fabric7": (300, 300),
                                                                                   "Fabric8": (300, 300)}, None),
    ("dagm", "kaggle"): ({"Class1": (504, 71), "Class2": (491, 84), "Class3": (491, 84), "Class4": (507, 68),
                          "Class5": (495, 80), "Class6": (508, 67)}
                         | {f"Class{i}": (1000, 150) for i in (7, 8, 9, 10)}, None),
}


@pytest.mark.parametrize("key, protocol", list(PROTOCOL_TABLE))
def test_protocols(key, protocol):
    classes, seed = PROTOCOL_TABLE[key, protocol]
    spec = registry.get(key, protocol)
    assert (spec.key, spec.protocol, spec.classes, spec.balance_seed) == (key, protocol, classes, seed)
    assert spec.description and spec.protocols == tuple(p for k, p in PROTOCOL_TABLE if k == key)


def test_default_protocol_and_totals():
    assert registry.get("ksdd2").protocol == "bayes-pfl" and registry.get("dagm").protocol == "bayes-pfl"
    # Kaggle Test split: 575 images per class for Class1-6 and 1,150 for Class7-10.
    assert registry.get("dagm", "kaggle").totals == (6996, 1054)
    assert registry.get("ksdd2", "official").totals == (894, 110)
    assert registry.get("mvtec").protocol is None and registry.get("mvtec").protocols == ()
    with pytest.raises(WMoEError, match="unknown protocol 'kaggle'; protocols: bayes-pfl, official"):
        registry.get("ksdd2", "kaggle")
    with pytest.raises(WMoEError, match="single protocol"):
        registry.get("mvtec", "official")


def test_custom_names_stay_apart_from_the_registry():
    assert registry.check_custom_name("my_parts2") == "my_parts2"
    for bad in ("mvtec", "My Parts", "2parts", "parts-a", ""):
        with pytest.raises(WMoEError):
            registry.check_custom_name(bad)
    spec = registry.custom_spec("parts", "parts", False, True, ("a",), "mine")
    assert spec.custom and not registry.get("mvtec").custom


@pytest.mark.parametrize("key", ["folder", "My-Set"])
def test_a_registry_key_must_be_able_to_name_a_module(key, tmp_path, monkeypatch):
    path = tmp_path / "registry.yaml"
    path.write_text(f"{key}: {{}}\n")
    monkeypatch.setattr(registry, "REGISTRY_FILE", path)
    registry._load.cache_clear()
    try:
        with pytest.raises(WMoEError, match=f"dataset key '{key}': use lower-case letters"):
            registry.keys()
    finally:
        registry._load.cache_clear()
