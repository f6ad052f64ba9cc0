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
