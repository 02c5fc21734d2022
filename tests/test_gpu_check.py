"""bench/gpu_check.py: loads the script as a module, and runs its --dry-run on the CPU (CI has no GPU)."""
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from bench_scripts import load_bench_script

REPO = Path(__file__).resolve().parents[1]


gpu_check = load_bench_script("gpu_check")


def test_dry_run_prints_one_table_with_every_step_on_the_cpu():
    res = subprocess.run([sys.executable, str(REPO / "bench" / "gpu_check.py"), "--dry-run"], cwd=REPO,
                         capture_output=True, text=True, timeout=400)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    out = res.stdout
    assert "DRY RUN on the CPU" in out and "not GPU results" in out
    table = [ln for ln in out.splitlines() if ln.startswith("|")]
    assert table[0].split("|")[1].strip() == "check" and "max err vs fp32 (grey)" in table[0]
    body = table[2:]
    assert any(r.startswith("| CUDA tests") and "skipped" in r for r in body)
    engines = [r for r in body if r.startswith("| engine")]
    # 2 engines x 2 sizes x 2 batches, each with a measured rate
    assert len(engines) == 8 and all(float(r.split("|")[5]) > 0 for r in engines)
    assert any("onnxruntime[CPU] fp32" in r for r in engines) and any("torch fp32" in r for r in engines)
    stream = [r for r in body if r.startswith("| run_stream 2 pairs")]
    assert len(stream) == 1 and "exit 0" in stream[0] and "cpu: model" in stream[0]


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_without_cuda_and_without_dry_run_it_says_what_to_do(capsys):
    assert gpu_check.main([]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: no CUDA device") and "--dry-run" in err[0]


def test_cells_past_the_budget_are_skipped_and_say_so():
    from lmfusion import preset
    from lmfusion.networks import LMFusionNet
    now = [0.0]
    budget = gpu_check.Budget(10.0, clock=lambda: now[0])
    plan = gpu_check.Plan.for_run(True, 10.0)
    plan = gpu_check.dataclasses.replace(plan, engines=[("torch", "fp32")], sizes=[(64, 64)], batches=[1, 2])
    calls = []

    def net():
        calls.append(1)
        return LMFusionNet(preset("tiny")).eval()
    now[0] = 9.0                       # 1 s left, 5 s reserved for what comes after
    rows = gpu_check.engine_rows(plan, budget, reserve_s=5.0, net_loader=net)
    assert [r.result for r in rows] == ["skipped: time budget (10 s) spent"] * 2 and all(r.ok for r in rows)
    assert calls == [1]


def test_table_has_a_header_a_rule_and_one_line_per_row():
    text = gpu_check.format_table([gpu_check.Row("CUDA tests", result="3 passed"),
                                   gpu_check.Row("engine", "torch fp16", "640x512", "4", "812.0")])
    lines = text.splitlines()
    assert len(lines) == 4 and set(lines[1]) <= {"|", "-"} and "812.0" in lines[3]
