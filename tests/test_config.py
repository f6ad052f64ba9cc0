import dataclasses

import pytest

from wmoe_clip.config import VARIANTS, ConfigError, RunConfig, config_from_dict, load_config


def test_defaults_are_the_paper_protocol():
    cfg = load_config("vit_l14_336")
    # The one difference is how the frozen features are obtained, not what they are.
    assert cfg.train.feature_cache and not RunConfig().train.feature_cache
    assert cfg == dataclasses.replace(RunConfig(), train=dataclasses.replace(RunConfig().train, feature_cache=True))
    assert cfg.model.feature_layers == (6, 12, 18, 24)
    assert (cfg.model.sa_moe.num_experts, cfg.model.sa_moe.top_k) == (8, 2)
    assert (cfg.train.epochs, cfg.train.batch_size, cfg.train.lr) == (20, 32, 1e-3)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_variants_set_exactly_their_switches(variant):
    cfg = RunConfig().with_variant(variant)
    m = cfg.model
    assert (m.ctds.enabled, m.wcma.enabled, m.sa_moe.enabled) == VARIANTS[variant]
    assert cfg.variant == variant


def test_unknown_key_names_the_source_and_key():
    with pytest.raises(ConfigError, match=r"my\.yaml: model\.sa_moe: unknown key\(s\) top_kk"):
        config_from_dict({"model": {"sa_moe": {"top_kk": 3}}}, "my.yaml")


def test_wrong_type_is_rejected():
    with pytest.raises(ConfigError, match="train.epochs: expected an integer"):
        config_from_dict({"train": {"epochs": "20"}})
    with pytest.raises(ConfigError, match="top_k must lie"):
        config_from_dict({"model": {"sa_moe": {"top_k": 9}}})
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
