import dataclasses

import pytest

from wmoe_clip.config import ConfigError, RunConfig, config_from_dict, load_config
from wmoe_clip.model import registry
from wmoe_clip.model.wmoe_clip.settings import SWITCHES


def test_defaults_are_the_paper_protocol():
    cfg = load_config("vit_l14_336")
    # The one difference is how the frozen features are obtained, not what they are.
    assert cfg.train.feature_cache and not RunConfig().train.feature_cache
    assert cfg == dataclasses.replace(RunConfig(), train=dataclasses.replace(RunConfig().train, feature_cache=True))
    assert cfg.model.feature_layers == (6, 12, 18, 24)
    assert (cfg.model.wmoe_clip.sa_moe.num_experts, cfg.model.wmoe_clip.sa_moe.top_k) == (8, 2)
    assert (cfg.train.epochs, cfg.train.batch_size, cfg.train.lr) == (20, 32, 1e-3)


@pytest.mark.parametrize("variant", list(SWITCHES))
def test_variants_set_exactly_their_switches(variant):
    cfg = RunConfig().with_variant(variant)
    m = cfg.model.wmoe_clip
    assert (m.ctds.enabled, m.wcma.enabled, m.sa_moe.enabled) == SWITCHES[variant]
    assert cfg == dataclasses.replace(RunConfig(), model=dataclasses.replace(RunConfig().model, wmoe_clip=m))
    assert cfg.variant == variant


def test_unknown_key_names_the_source_and_key():
    with pytest.raises(ConfigError, match=r"my\.yaml: model\.wmoe_clip\.sa_moe: unknown key\(s\) top_kk"):
        config_from_dict({"model": {"wmoe_clip": {"sa_moe": {"top_kk": 3}}}}, "my.yaml")


def test_wrong_type_is_rejected():
    with pytest.raises(ConfigError, match="train.epochs: expected an integer"):
        config_from_dict({"train": {"epochs": "20"}})
    with pytest.raises(ConfigError, match=r"model\.wmoe_clip\.sa_moe\.top_k must lie"):
        config_from_dict({"model": {"wmoe_clip": {"sa_moe": {"top_k": 9}}}})
    for fraction in (-0.1, 1.5):
        with pytest.raises(ConfigError, match=r"train\.feature_cache_memory must lie in \[0, 1\]"):
            config_from_dict({"train": {"feature_cache_memory": fraction}})


def test_round_trip_through_dict():
    cfg = RunConfig().with_variant("ctds_wcma")
    assert config_from_dict(cfg.to_dict()) == cfg


def test_unknown_variant_and_missing_file():
    with pytest.raises(ConfigError, match="unknown variant"):
        load_config(None, variant="everything")
    with pytest.raises(ConfigError, match="neither an existing YAML file"):
        load_config("no_such_config")


@pytest.mark.parametrize(("data", "message"), [
    ({"model": {"alpha": 0.3}}, "model.alpha moved to model.wmoe_clip.alpha"),
    ({"model": {"wcma": {"heads": 2}}}, "model.wcma moved to model.wmoe_clip.wcma"),
    ({"loss": {"kl_weight": 0.1}}, "loss moved to model.wmoe_clip.loss"),
    ({"method": "anomalyclip", "model": {"temperature": 0.07}},
     "model.temperature moved to model.anomalyclip.temperature"),
    ({"model": {"temperature": 0.07}}, "model.temperature moved to model.wmoe_clip.temperature"),
])
def test_keys_that_moved_into_a_method_section_are_refused_naming_the_new_key(data, message):
    with pytest.raises(ConfigError) as err:
        config_from_dict(data, "old.yaml")
    assert str(err.value) == f"old.yaml: {message}"


def test_a_config_holds_its_own_method_section_alone():
    with pytest.raises(ConfigError, match=r"^x\.yaml: model\.anomalyclip is the section of method anomalyclip, but "
                                          r"this config's method is wmoe_clip"):
        config_from_dict({"model": {"anomalyclip": {"prompt_length": 3}}}, "x.yaml")
    clip = config_from_dict({"method": "clip", "model": {"clip": {"temperature": 0.5}}})
    assert clip.model.wmoe_clip is None and clip.model.anomalyclip is None and clip.settings.temperature == 0.5
    assert set(clip.to_dict()["model"]) & {"wmoe_clip", "anomalyclip", "clip"} == {"clip"}
    assert clip.variant is None
    with pytest.raises(ConfigError, match=f"method must be one of {', '.join(registry.METHODS)}, got 'winclap'"):
        config_from_dict({"method": "winclap"})


def test_for_method_keeps_the_shared_settings_and_takes_the_new_method_defaults():
    tiny = load_config("tiny", "base")
    clip = tiny.for_method("clip")
    assert clip.method == "clip" and clip.train == tiny.train and clip.eval == tiny.eval
    assert clip.model.backbone == tiny.model.backbone and clip.model.wmoe_clip is None
    assert clip.settings == type(clip.settings)()
    assert clip.for_method("wmoe_clip").variant == "full"  # the defaults again, not tiny's base switches


def test_overrides_switch_the_method_and_skip_other_methods_sections():
    from wmoe_clip.config import config_with_overrides

    sets = {"method": "anomalyclip", "model.wmoe_clip.alpha": 0.2, "model.anomalyclip.temperature": 0.05,
            "train.epochs": 3}
    cfg = config_with_overrides("tiny", sets, "here")
    assert cfg.method == "anomalyclip" and cfg.model.anomalyclip.temperature == 0.05 and cfg.train.epochs == 3
    assert cfg.model.backbone == load_config("tiny").model.backbone
    assert config_with_overrides("tiny", sets | {"method": "wmoe_clip"}, "here").model.wmoe_clip.alpha == 0.2
    with pytest.raises(ConfigError, match=r"^here: model\.wmoe_clip\.alpha must lie in \[0, 1\]"):
        config_with_overrides("tiny", {"model.wmoe_clip.alpha": 2.0}, "here")


def test_shipped_configs_live_in_the_method_folders():
    from wmoe_clip.config import shipped_configs

    found = {name: path.relative_to(path.parents[3]).as_posix() for name, path in shipped_configs().items()}
    assert {"tiny": "model/wmoe_clip/configs/tiny.yaml",
            "vit_l14_336": "model/wmoe_clip/configs/vit_l14_336.yaml",
            "anomalyclip": "model/anomalyclip/configs/anomalyclip.yaml",
            "tiny_anomalyclip": "model/anomalyclip/configs/tiny_anomalyclip.yaml"}.items() <= found.items()
    # Every shipped config, those of methods added later too, is its method's and lives in its folder.
    for name, rel in found.items():
        method = rel.split("/")[1]
        assert rel == f"model/{method}/configs/{name}.yaml" and load_config(name).method == method


@pytest.mark.parametrize(("method", "section", "message"), [
    ("anomalyclip", {"temperature": 0.0}, "model.anomalyclip.temperature must be positive"),
    ("anomalyclip", {"layers": [7]}, "model.anomalyclip.layers [7] must be a non-empty subset"),
    ("clip", {"normal_template": "a {x}"}, "model.clip.normal_template must hold the placeholder {cls} once"),
    ("wmoe_clip", {"init": "zero_residual", "wcma": {"residual": False}}, "model.wmoe_clip.init zero_residual needs"),
])
def test_each_method_checks_its_own_values(method, section, message):
    with pytest.raises(ConfigError) as err:
        config_from_dict({"method": method, "model": {method: section}}, "m.yaml")
    assert message in str(err.value)
