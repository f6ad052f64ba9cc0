"""The name of an encoder pass (backbone_digest): what changes it, what does not, and that the workflow
can compute it without torch."""

from __future__ import annotations

import subprocess
import sys

from wmoe_clip.config import config_with_overrides
from wmoe_clip.model.encoder_pass import backbone_digest


def _digest(**sets) -> str:
    return backbone_digest(config_with_overrides("tiny", sets, "test"))


def test_digest_names_what_the_encoder_pass_depends_on():
    base = _digest()
    assert len(base) == 12 and int(base, 16) >= 0 and _digest() == base
    # Models that may share a pass: settings of the methods, training and figures do not enter it.
    for same in ({"method": "clip"}, {"train.epochs": 7}, {"eval.figure_samples": 1}, {"eval.sigma": 2.0},
                 {"model.wmoe_clip.alpha": 0.3}):
        assert _digest(**same) == base, same
    # The frozen encoder's outputs and the batches of the pass do.
    for other in ({"model.image_size": 32}, {"model.feature_layers": [4]}, {"model.precision": "bf16"},
                  {"model.global_token_ln_post": False}, {"eval.batch_size": 3}, {"eval.device": "cpu"},
                  {"data.mask_interpolation": "nearest"}, {"model.backbone_seed": 1}):
        assert _digest(**other) != base, other


def test_digest_does_not_depend_on_the_weights_file_state(tmp_path):
    # The workflow names its jobs before the weights are downloaded and after: the same name.
    weights = tmp_path / "weights.pt"
    before = _digest(**{"model.pretrained": str(weights)})
    weights.write_bytes(b"weights")
    assert _digest(**{"model.pretrained": str(weights)}) == before
    assert _digest(**{"model.pretrained": str(tmp_path / "other.pt")}) != before


def test_the_workflow_reads_it_without_torch():
    code = ("import sys; from wmoe_clip.config import load_config; from wmoe_clip.model.encoder_pass import "
            "backbone_digest; backbone_digest(load_config('tiny')); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
