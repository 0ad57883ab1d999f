"""``cpi-theory sweep`` end to end: bad specs exit 2 before any work; a killed sweep resumes bit for bit."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np

from cpi_theory.sweep._results import load

CLI = [sys.executable, "-m", "cpi_theory.cli", "sweep"]


def _env():
    env = dict(os.environ)
    env.pop("JAX_NUM_CPU_DEVICES", None)
    env["JAX_PLATFORMS"] = "cpu"
    return env


def _sweep(spec_path, out, *extra, check=True):
    args = [*CLI, str(spec_path), "--out", str(out), "--cpu-devices", "2", "--no-progress", *extra]
    proc = subprocess.run(args, capture_output=True, text=True, env=_env(), timeout=300)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def test_bad_spec_exits_2_naming_the_key_before_any_work(tmp_path):
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"base": {"n_subjects": 15}, "grid": {"n_context_critical": [5, 20]}}))
    out = tmp_path / "out.nc"
    proc = _sweep(spec, out, check=False)
    assert proc.returncode == 2
    assert proc.stderr.startswith("cpi-theory sweep: error: n_subjects:")
    assert "Traceback" not in proc.stderr
    assert not out.exists() and not (tmp_path / "out.nc.chunks").exists()


def test_killed_sweep_resumes_to_the_uninterrupted_result_bit_for_bit(tmp_path):
    spec = tmp_path / "spec.json"
    # 24 chunks of 2 runs over two shape buckets: long enough to kill it after its first chunk.
    small = {
        "n_answers": 12,
        "n_subjects": 10,
        "n_context_critical": 3,
        "n_non_context_critical": 3,
        "steps": 80,
    }
    spec.write_text(
        json.dumps(
            {
                "base": small,
                "grid": {
                    "lr_kq": [0.25 * k for k in range(1, 13)],
                    "n_non_context_critical": [0, 3],
                    "lr_v": [0.0, 0.1],
                },
                "trajectory_every": 10,
                "trajectory_metrics": ["context_reliance", "attention_context", "per_class_loss"],
            }
        )
    )
    reference = tmp_path / "reference.nc"
    _sweep(spec, reference, "--chunk-size", "2")

    out = tmp_path / "resumed.nc"
    chunk_dir = tmp_path / "resumed.nc.chunks"
    args = [*CLI, str(spec), "--out", str(out), "--cpu-devices", "2", "--no-progress", "--chunk-size", "2"]
    proc = subprocess.Popen(args, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while not list(chunk_dir.glob("chunk_*.nc")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished_before_kill = len(list(chunk_dir.glob("chunk_*.nc")))
    assert 1 <= finished_before_kill < 24, "the kill must land mid-sweep"
    assert not out.exists()

    # Without --resume the interrupted sweep is not overwritten.
    proc = _sweep(spec, out, "--chunk-size", "2", check=False)
    assert proc.returncode == 2 and "--resume" in proc.stderr

    proc = _sweep(spec, out, "--resume")  # the chunk size comes from the interrupted sweep
    assert f"({24 - finished_before_kill} computed now" in proc.stderr
    assert not chunk_dir.exists()

    expected, got = load(reference), load(out)
    assert expected.attrs == got.attrs
    assert set(expected.variables) == set(got.variables)
    for name in expected.variables:
        a, b = np.asarray(expected[name]), np.asarray(got[name])
        assert a.dtype == b.dtype, name
        if a.dtype == object:  # the data_class names
            assert a.tolist() == b.tolist()
        else:
            assert a.tobytes() == b.tobytes(), name
    assert reference.read_bytes() == out.read_bytes()


def test_two_host_sweep_with_jax_distributed_equals_one_host(tmp_path):
    """Two processes (2 CPU devices each) joined by jax.distributed form one 4-device mesh."""
    import socket

    from cpi_theory.sweep._runner import run_sweep
    from cpi_theory.sweep._spec import SweepSpec

    data = {
        "base": {
            "n_answers": 12,
            "n_subjects": 10,
            "n_context_critical": 3,
            "n_non_context_critical": 3,
            "steps": 20,
        },
        "grid": {"lr_kq": [0.5, 1.0, 1.5, 2.0, 2.5, 3.0], "lr_v": [0.0, 0.2]},
    }
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(data))
    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    out = tmp_path / "two_hosts.nc"
    common = ["--out", str(out), "--cpu-devices", "2", "--no-progress", "--chunk-size", "4", "--distributed"]
    procs = [
        subprocess.Popen(
            [
                *CLI,
                str(spec),
                *common,
                "--coordinator",
                f"localhost:{port}",
                "--num-processes",
                "2",
                "--process-id",
                str(i),
            ],
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    logs = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], logs
    assert "4 device(s)" in logs[0] and "wrote" in logs[0] and "wrote" not in logs[1]

    # this process: 4 CPU devices, and XLA's program, as a multi-host sweep runs (the CPU kernel is one
    # process's)
    expected = run_sweep(SweepSpec.from_mapping(data), chunk_size=4, cpu_kernel=False).dataset
    got = load(out)
    for name in expected.data_vars:
        assert np.asarray(got[name]).tobytes() == np.asarray(expected[name]).tobytes(), name
