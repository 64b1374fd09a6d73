"""What the services read at run time ships in the package: the wheel built from pyproject.toml
holds every file of shared/ and services/ that git tracks (a page, a model, a word list left out
of the package data works in a checkout and fails in the Docker image)."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_the_wheel_holds_every_tracked_file_of_the_packages(tmp_path: Path) -> None:
    tracked = subprocess.run(["git", "ls-files", "shared", "services"], cwd=ROOT, check=True,
                             capture_output=True, text=True).stdout.split()
    if not tracked:
        pytest.skip("not a git checkout")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                    "--no-build-isolation", "--wheel-dir", str(tmp_path), str(ROOT)],
                   check=True, capture_output=True)
    [wheel] = tmp_path.glob("newsflow-*.whl")
    shipped = set(zipfile.ZipFile(wheel).namelist())
    missing = [path for path in tracked if path not in shipped]
    assert not missing, f"tracked but not in the wheel (pyproject package-data): {missing}"
