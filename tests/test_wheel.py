"""The built wheel ships the figures: `cpi-theory reproduce` must work from a non-editable install, where
the repository's experiments/ directory does not exist."""

import shutil
import subprocess
import sys
import zipfile

import pytest

FIGURE_MODULES = (
    "_f1_inversion",
    "_f2_time_scales",
    "_f3_phase_diagram",
    "_f4_mitigations",
    "_f5_self_aligning",
    "_f6_with_without_context",
)


@pytest.mark.slow
def test_wheel_contains_the_figure_modules(repo_root, tmp_path):
    # Build from a copy of the sources: an in-tree build would leave build/ and *.egg-info in the checkout.
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(repo_root / name, source / name)
    shutil.copytree(
        repo_root / "cpi_theory", source / "cpi_theory", ignore=shutil.ignore_patterns("__pycache__")
    )
    wheels = tmp_path / "wheels"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--quiet",
            "--wheel-dir",
            str(wheels),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (wheel,) = wheels.glob("cpi_theory-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        scripts = archive.read(entry_points).decode()
    for module in (*FIGURE_MODULES, "__init__", "_data", "_plotting", "_reproduce"):
        assert f"cpi_theory/figures/{module}.py" in names
    assert "cpi_theory/cli/_reproduce.py" in names
    assert not any(n.startswith(("experiments/", "tests/", "figures/")) for n in names)
    assert "cpi-theory = cpi_theory.cli:main" in scripts
