from wmoe_clip.cli import main
from wmoe_clip.config import load_config
from wmoe_clip.model import build_model


def test_model_summary_prints_per_module_counts_and_the_total(capsys):
    assert main(["model-summary", "--config", "tiny", "--variant", "ctds_wcma"]) == 0
    text = capsys.readouterr().out
    rows = {line.rsplit(None, 1)[0].strip(): line.rsplit(None, 1)[1] for line in text.splitlines()[2:]}
    model = build_model(load_config("tiny", "ctds_wcma"))
    expected = {name: sum(p.numel() for n, p in model.named_parameters() if n.startswith(name + "."))
                for name in ("prompts", "ctds", "wcma")}
    for name, count in expected.items():
        assert int(rows[name].replace(",", "")) == count
    assert int(rows["sa_moe"]) == 0
    assert int(rows["total"].replace(",", "")) == sum(expected.values())


def test_model_summary_of_anomalyclip_counts_its_prompts_and_deep_tokens(capsys):
    assert main(["model-summary", "--config", "tiny_anomalyclip", "--method", "anomalyclip"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("AnomalyCLIP (anomalyclip)")
    rows = dict(line.rsplit(None, 1) for line in text.splitlines()[2:])
    total = int(rows["total"].strip().replace(",", ""))
    a, width = load_config("tiny_anomalyclip").model.anomalyclip, 64
    # Two context sets of prompt_length vectors, and deep_prompt_length tokens for each deep layer but the first.
    assert total == 2 * a.prompt_length * width + (a.deep_prompt_depth - 1) * a.deep_prompt_length * width


def test_model_summary_of_clip_has_nothing_to_learn(capsys):
    assert main(["model-summary", "--config", "tiny", "--method", "clip"]) == 0
    assert capsys.readouterr().out.splitlines()[2].split() == ["total", "0"]


def test_a_variant_is_refused_for_a_method_without_variants(capsys):
    assert main(["model-summary", "--config", "tiny", "--method", "clip", "--variant", "full"]) == 2
    assert "it has no variants" in capsys.readouterr().err
