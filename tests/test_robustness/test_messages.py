"""What a user reads when a store or a checkpoint is bad: one line with what to do, never a SQL
dump, never torch's advice to load with ``weights_only=False``, no torch warning before the error."""

from __future__ import annotations

import builtins
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from robustness_util import assert_one_line_error, run_cli, tree

# Phrases of torch's load errors that tell the user to run the file's code.
TORCH_ADVICE = ("weights_only=False", "weights_only` set to `False", "Re-running", "trusted source",
                "add_safe_globals", "trust the source")


@pytest.mark.parametrize("damage", ["random bytes", "a damaged SQLite file"])
def test_tracking_init_on_a_corrupt_database_gives_one_line_with_advice(tmp_path, capsys, damage):
    db = tmp_path / "mlflow.db"
    body = np.random.default_rng(0).integers(0, 256, 8192, dtype=np.uint8).tobytes()
    db.write_bytes(body if damage == "random bytes" else b"SQLite format 3\0" + body)
    before = tree(tmp_path)
    rc, _, err = run_cli(capsys, "tracking-init", "--uri", f"sqlite:///{db}", "--marker", tmp_path / "marker.json")
    line = assert_one_line_error(err, rc)
    assert f"the MLflow store {db} is not a readable SQLite database (file is not a database)" in line
    assert f"move the file aside (e.g. mv {db} {db}.corrupt)" in line and "point --uri" in line
    assert "SELECT" not in err and "[SQL" not in err and "sqlalche.me" not in err
    assert {k: v for k, v in tree(tmp_path).items() if not k.endswith(".lock")} == before


class _Payload:
    """A pickle that would create a file when unpickled without weights_only."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return builtins.exec, (f"open({self.marker!r}, 'w').write('ran')",)


def _image(path):
    Image.fromarray(np.zeros((20, 20, 3), dtype=np.uint8)).save(path)
    return path


def _reading(command, checkpoint, tmp_path):
    """The command line of ``command`` reading ``checkpoint``: predict's or the AnomalyCLIP import's."""
    if command == "predict":
        return ["predict", "--checkpoint", checkpoint, _image(tmp_path / "a.png"), "--out", tmp_path / "p"]
    return ["import-checkpoint", checkpoint, "--from", "anomalyclip", "--config", "tiny_anomalyclip",
            "--out", tmp_path / "imported.pt"]


@pytest.mark.parametrize("command", ["predict", "import-checkpoint"])
def test_a_malicious_pickle_is_refused_without_torchs_advice(tmp_path, capsys, command):
    marker = tmp_path / "payload_ran"
    checkpoint = tmp_path / "model.pt"
    torch.save({"prompt_learner": {"ctx_pos": _Payload(marker)}}, checkpoint)
    args = _reading(command, checkpoint, tmp_path)
    before = tree(tmp_path)
    rc, _, err = run_cli(capsys, *args)
    line = assert_one_line_error(err, rc)
    assert f"{checkpoint} is refused" in line and "nothing in it was run" in line
    assert "Unsupported global: GLOBAL builtins.exec" in line or "Unsupported global: GLOBAL exec" in line
    assert not [phrase for phrase in TORCH_ADVICE if phrase in err]
    assert not marker.exists()
    assert tree(tmp_path) == before


def _torchscript(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit itself is deprecated; only the reading is under test
        torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), path)


def _legacy_pickle(path):
    torch.save({"prompt_learner": torch.nn.Linear(2, 2)}, path, _use_new_zipfile_serialization=False)


@pytest.mark.parametrize("make", [_torchscript, _legacy_pickle], ids=["torchscript", "legacy-pickle"])
@pytest.mark.parametrize("command", ["predict", "import-checkpoint"])
def test_an_old_format_gives_our_error_and_no_torch_warning(tmp_path, capsys, make, command):
    checkpoint = tmp_path / "model.pt"
    make(checkpoint)
    args = _reading(command, checkpoint, tmp_path)
    before = tree(tmp_path)
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        rc, _, err = run_cli(capsys, *args)
    line = assert_one_line_error(err, rc)
    assert str(checkpoint) in line
    assert not [phrase for phrase in TORCH_ADVICE if phrase in err]
    assert [str(w.message) for w in shown] == []
    assert tree(tmp_path) == before
