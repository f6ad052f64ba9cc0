"""benchmarks/gpu.sh keeps working: the accelerator benchmark runs on CPU with the tiny config."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_gpu_benchmark_runs_on_cpu_with_the_tiny_config():
    env = {**os.environ, "PYTHON": sys.executable}
    done = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu.sh"), "--config", "tiny", "--device", "cpu",
                           "--quick"], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    for line in ("frozen encoder images/s by batch: 2: ", "training on cached features, images/s (batch 4): full ",
                 "evaluation of 5 checkpoints", "loader, 1024² JPEG -> 112 px"):
        assert line in out
    # The paper protocol as the run summary counts it: 10 trainings, 22 evaluations, 15,368 distinct test images.
    assert "10 trainings of 2 epochs, 22 evaluations, 15368 distinct images" in out


def test_encoder_benchmark_counts_winclip_windows_on_cpu():
    done = subprocess.run([sys.executable, "encoders.py", "--configs", "tiny", "tiny_winclip", "--device", "cpu",
                           "--batch", "2", "--repeats", "1"], capture_output=True, text=True,
                          cwd=ROOT / "benchmarks", timeout=600)
    assert done.returncode == 0, done.stderr
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[1:-1]]
            for line in done.stdout.splitlines() if line.startswith("| tiny")}
    # Sequences per image: the whole image, plus on the tiny 7×7 grid 6·6 windows of 2×2 and 5·5 of 3×3.
    assert rows["tiny"][5] == "1" and rows["tiny_winclip"][5] == str(1 + 36 + 25)
    assert all(float(rows[name][6]) > 0 for name in rows)
