import dataclasses
import json
import math
import types

import pytest
import torch
from mlflow.tracking import MlflowClient

from wmoe_clip.config import load_config
from wmoe_clip.engine.tracking import Tracker, default_tracking_uri
from wmoe_clip.engine.train import apply_overrides, train
from wmoe_clip.errors import WMoEError
from wmoe_clip.model.checkpoint import read_checkpoint


class Interrupt(Exception):
    pass


def _cfg(epochs, **train_changes):
    cfg = apply_overrides(load_config("tiny"), "full", seed=3, epochs=epochs)
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, **train_changes))


def test_loss_falls_and_history_records_terms_and_expert_usage(trained):
    run, out = trained
    history = json.loads((out / "history.json").read_text())
    assert [h["epoch"] for h in history] == list(range(1, run["epochs"] + 1))
    totals = [h["loss"]["total"] for h in history]
    assert totals[-1] < 0.8 * totals[0]
    for h in history:
        assert {"global", "focal", "dice", "kl", "rec", "total"} <= set(h["loss"])
        share = h["expert_usage"]["selected_share"]
        assert len(share) == 8 and sum(share) == pytest.approx(1.0)
        assert sum(h["expert_usage"]["mean_router_prob"]) == pytest.approx(1.0)
        assert h["lr"] == 1e-3 and h["time_s"] > 0
        d = h["diagnostics"]
        assert set(d) == {"prompt_shift_norm", "prompt_shift_norm_sampled", "cos_text", "cos_global",
                          "router_entropy"}
        assert 0 <= d["router_entropy"] <= math.log(8) and -1 <= d["cos_text"] <= 1 and -1 <= d["cos_global"] <= 1
        assert "grad_scale" not in h  # fp32: no loss scaling
    # Started at the identity, the branches have moved by the end.
    assert history[-1]["diagnostics"]["prompt_shift_norm"] > 0 and history[-1]["diagnostics"]["cos_global"] < 1
    assert run["counts"] == {"n_images": 96, "n_normal": 48, "n_anomalous": 48, "n_classes": 12}
    assert json.loads((out / "run.json").read_text())["mlflow_run_id"] == run["mlflow_run_id"] is not None


def test_interrupted_and_resumed_training_equals_an_uninterrupted_one(make_prepared, tmp_path):
    data = make_prepared("btad", 4)
    cfg = _cfg(3)
    train(cfg, "btad", data, tmp_path / "straight", progress=False)

    def stop_after_first(epoch):
        if epoch == 1:
            raise Interrupt

    with pytest.raises(Interrupt):
        train(cfg, "btad", data, tmp_path / "resumed", on_epoch_end=stop_after_first, progress=False)
    assert not (tmp_path / "resumed" / "model.pt").exists()
    assert [p.relative_to(tmp_path / "resumed" / "state").parts[1:] for p in
            (tmp_path / "resumed" / "state").glob("*/*")] == [("epoch-0001.pt",)]
    # The interrupted part was not tracked: the resumed part opens a new run and logs the config there.
    run = train(cfg, "btad", data, tmp_path / "resumed", tracker=Tracker(), progress=False)
    tracked = MlflowClient(default_tracking_uri()).get_run(run["mlflow_run_id"])
    assert tracked.data.params["train.seed"] == "3" and tracked.info.status == "FINISHED"

    _, straight = read_checkpoint(tmp_path / "straight" / "model.pt")
    _, resumed = read_checkpoint(tmp_path / "resumed" / "model.pt")
    assert straight.keys() == resumed.keys()
    for name in straight:
        assert torch.equal(straight[name], resumed[name]), name
    h1 = json.loads((tmp_path / "straight" / "history.json").read_text())
    h2 = json.loads((tmp_path / "resumed" / "history.json").read_text())
    assert [h["loss"] for h in h1] == [h["loss"] for h in h2]
    # A finished training keeps no resume state.
    assert sorted(p.name for p in (tmp_path / "resumed").iterdir()) == ["history.json", "model.pt", "run.json"]


def test_gradient_accumulation_gives_the_full_batch_gradients(make_prepared):
    from wmoe_clip.data.dataset import AnomalyDataset
    from wmoe_clip.engine.feature_cache import ImageSource
    from wmoe_clip.engine.train import accumulate_gradients
    from wmoe_clip.model import build_model

    # CTDS draws noise per micro-batch; with it off (WCMA and SA-MoE on) the model is per-sample
    # deterministic and the split batch must give the whole batch's gradients.
    cfg = load_config("tiny", "full")
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(
        cfg.model, wmoe_clip=dataclasses.replace(cfg.model.wmoe_clip, ctds=dataclasses.replace(
            cfg.model.wmoe_clip.ctds, enabled=False))))
    torch.manual_seed(0)
    model = build_model(cfg)
    dataset = AnomalyDataset(make_prepared("btad", 4), "test", cfg.model.image_size)
    source = ImageSource(dataset, model, torch.device("cpu"))
    batch = [5, 0, 9, 2, 7, 11, 1]

    def grads(step):
        model.zero_grad(set_to_none=True)
        loss = accumulate_gradients(model, source.batches(step), step)
        return loss, {n: p.grad.clone() for n, p in model.learnable_named_parameters() if p.grad is not None}

    loss_full, full = grads([batch])
    loss_micro, micro = grads([batch[:3], batch[3:6], batch[6:]])
    assert loss_micro == pytest.approx(loss_full, rel=1e-5)
    assert full.keys() == micro.keys() and len(full) > 10
    for name in full:  # float32 summation order differs; 1e-7 absorbs the rounding noise of
        # gradients that are analytically zero (a key bias under softmax attention)
        scale = full[name].abs().max().item()
        assert (micro[name] - full[name]).abs().max().item() <= 1e-4 * scale + 1e-7, name


def _interrupt(epoch):
    raise Interrupt


def test_changed_settings_start_afresh_and_never_trip_over_earlier_state(make_prepared, tmp_path):
    data = make_prepared("btad", 4)
    # A finished training, then the same folder trained with another lr (what a workflow does after
    # a hyper-parameter change): the second trains from scratch, exactly as into an empty folder.
    train(_cfg(1), "btad", data, tmp_path / "dir", progress=False)
    train(_cfg(1, lr=5e-4), "btad", data, tmp_path / "dir", progress=False)
    train(_cfg(1, lr=5e-4), "btad", data, tmp_path / "fresh", progress=False)
    _, changed = read_checkpoint(tmp_path / "dir" / "model.pt")
    _, reference = read_checkpoint(tmp_path / "fresh" / "model.pt")
    assert all(torch.equal(changed[k], reference[k]) for k in reference)
    assert json.loads((tmp_path / "dir" / "history.json").read_text())[0]["lr"] == 5e-4

    # Every epoch's randomness depends on (seed, epoch) alone, so an interrupted run's state serves a
    # run with more epochs (it resumes), and one with fewer starts afresh (its state is past them); the
    # results equal uninterrupted runs, and a finished run leaves no state behind.
    def interrupt_at(n):
        def stop(epoch):
            if epoch == n:
                raise Interrupt
        return stop

    def same_model(a, b):
        _, x = read_checkpoint(a / "model.pt")
        _, y = read_checkpoint(b / "model.pt")
        return all(torch.equal(x[k], y[k]) for k in y)

    for epochs in (1, 3):
        train(_cfg(epochs), "btad", data, tmp_path / f"ref{epochs}", progress=False)
    with pytest.raises(Interrupt):
        train(_cfg(2), "btad", data, tmp_path / "more", on_epoch_end=interrupt_at(1), progress=False)
    run = train(_cfg(3), "btad", data, tmp_path / "more", progress=False)
    assert run["epochs"] == 3 and same_model(tmp_path / "more", tmp_path / "ref3")
    assert [h["epoch"] for h in json.loads((tmp_path / "more" / "history.json").read_text())] == [1, 2, 3]
    with pytest.raises(Interrupt):
        train(_cfg(3), "btad", data, tmp_path / "fewer", on_epoch_end=interrupt_at(2), progress=False)
    train(_cfg(1), "btad", data, tmp_path / "fewer", progress=False)
    assert same_model(tmp_path / "fewer", tmp_path / "ref1")
    assert not (tmp_path / "more" / "state").exists() and not (tmp_path / "fewer" / "state").exists()


def test_a_foreign_file_in_the_state_folder_is_refused(make_prepared, tmp_path):
    data = make_prepared("btad", 4)
    with pytest.raises(Interrupt):
        train(_cfg(2), "btad", data, tmp_path, on_epoch_end=_interrupt, progress=False)
    (state,) = (tmp_path / "state").glob("*/epoch-0001.pt")
    payload = torch.load(state, weights_only=True)
    payload["identity"]["source"] = "visa"
    torch.save(payload, state)
    with pytest.raises(WMoEError, match=r"was written by a different training \(source: \'visa\' != \'btad\'\)"):
        train(_cfg(2), "btad", data, tmp_path, progress=False)


def test_source_must_match_the_prepared_data(make_prepared, tmp_path):
    with pytest.raises(WMoEError, match="holds dataset 'btad'"):
        train(_cfg(1), "visa", make_prepared("btad", 4), tmp_path, progress=False)


def test_progress_bar_shows_the_epoch_and_every_loss_term(make_prepared, tmp_path, capsys):
    train(_cfg(1), "btad", make_prepared("btad", 4), tmp_path, progress=True)
    err = capsys.readouterr().err
    assert "epoch 1/1" in err
    for term in ("global", "focal", "dice", "kl", "rec", "load_balance", "total"):
        assert f"{term}=" in err, term


@pytest.mark.parametrize(("error", "status"), [(RuntimeError, "FAILED"), (KeyboardInterrupt, "KILLED")])
def test_a_job_that_stops_on_an_error_closes_its_run(error, status, make_prepared, tmp_path):
    def fail(epoch):
        raise error("stop")

    tracker = Tracker()
    with pytest.raises(error):
        train(_cfg(1), "btad", make_prepared("btad", 4), tmp_path, tracker=tracker, on_epoch_end=fail, progress=False)
    assert MlflowClient(default_tracking_uri()).get_run(tracker.run_id).info.status == status


def test_base_variant_history_has_no_module_diagnostics(make_prepared, tmp_path):
    cfg = apply_overrides(load_config("tiny"), "base", seed=0, epochs=1)
    train(cfg, "btad", make_prepared("btad", 4), tmp_path, progress=False)
    (entry,) = json.loads((tmp_path / "history.json").read_text())
    assert entry["diagnostics"] == {} and entry["expert_usage"] is None
    assert set(entry["loss"]) == {"global", "focal", "dice", "total"}


def test_epoch_diagnostics_are_sample_weighted_means_of_the_batches():
    from wmoe_clip.engine.train import _EpochStats

    def aux(cos, expert):
        g = torch.tensor([[1.0, 0.0]])
        return {"g": g, "g_prime": torch.tensor([[cos, math.sqrt(1 - cos**2)]]),
                "router_probs": torch.tensor([[0.5, 0.5]]), "expert_index": torch.tensor([[expert]])}

    from wmoe_clip.model.wmoe_clip import WMoECLIP
    from wmoe_clip.model.wmoe_clip.diagnostics import diagnostics

    # What _EpochStats reads of a model: its diagnostics and their groups.
    stats = _EpochStats(types.SimpleNamespace(diagnostics=diagnostics, DIAGNOSTIC_GROUPS=WMoECLIP.DIAGNOSTIC_GROUPS))
    stats.add({"total": torch.tensor(1.0)}, aux(1.0, 0), 1)
    stats.add({"total": torch.tensor(3.0)}, aux(0.0, 1), 3)
    assert stats.means() == {"total": pytest.approx(2.5)}
    assert stats.diagnostics() == {"cos_global": pytest.approx(0.25), "router_entropy": pytest.approx(math.log(2))}
    assert stats.groups() == {"expert_usage": {"selected_share": pytest.approx([0.25, 0.75]),
                                               "mean_router_prob": pytest.approx([0.5, 0.5])}}
