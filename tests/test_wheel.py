"""The package as a user installs it from a package index: a wheel, without the source tree,
trains, samples and evaluates from any directory. The named configs and names.txt are package
data (jax_makemore/configs/, jax_makemore/datasets/) read with importlib.resources.

The wheel is built offline (`--no-build-isolation`: setuptools and wheel come from the dev
extra) and installed without dependencies into a fresh target directory that goes first on
PYTHONPATH, so the test environment's own jax, flax, ... serve it and no network is needed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import REPO

pytestmark = pytest.mark.heavy


def _build_and_install(tmp_path: Path) -> Path:
    """`pip wheel . --no-deps` of a copy of the tree, then `pip install --no-deps --target`;
    returns the target directory. The copy keeps the build's build/ and egg-info out of the
    checkout."""
    source, wheels, target = tmp_path / "source", tmp_path / "wheels", tmp_path / "site"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(REPO / "jax_makemore", source / "jax_makemore", ignore=ignore)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    build = [*pip, "wheel", ".", "--no-deps", "--no-build-isolation", "-w", str(wheels)]
    subprocess.run(build, cwd=source, check=True, capture_output=True, timeout=300)
    (wheel,) = wheels.glob("jax_makemore-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"jax_makemore/configs/mlp.py", "jax_makemore/datasets/names.txt"} <= names
    install = [*pip, "install", "--no-deps", "--no-index", "--target", str(target), str(wheel)]
    subprocess.run(install, check=True, capture_output=True, timeout=300)
    return target


def test_a_wheel_installed_elsewhere_trains_samples_and_evaluates_from_any_directory(tmp_path):
    target = _build_and_install(tmp_path)
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    env = dict(os.environ, PYTHONPATH=str(target), JAX_PLATFORMS="cpu")

    def python(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
        )
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout

    probe = (
        "import jax_makemore, jax_makemore.config as c; "
        "print(jax_makemore.__file__); print(jax_makemore.DEFAULT_DATA_PATH); "
        "print(' '.join(c.available_configs()))"
    )
    module_file, data_file, configs = python("-c", probe).splitlines()
    assert Path(module_file).is_relative_to(target), module_file  # not the source tree
    assert Path(data_file).is_relative_to(target) and Path(data_file).is_file()
    assert {"mlp", "wavenet", "bigram_counts"} <= set(configs.split())

    python("-m", "jax_makemore.train", "--config", "mlp", "--config.num_steps=200")
    workdir = cwd / "runs" / "mlp"  # the default workdir, relative to where the command runs
    assert json.loads((workdir / "results.json").read_text())["steps"] == 200
    for meta in (workdir / "checkpoints").glob("*/meta/metadata"):  # no site-packages path
        assert (
            json.loads(meta.read_text())["config"]["data_path"] == "jax_makemore:datasets/names.txt"
        )
    samples = python("-m", "jax_makemore.sample", "--workdir", "runs/mlp", "--num", "5")
    assert len(samples.split()) >= 5
    assert "val" in python("-m", "jax_makemore.evaluate", "--workdir", "runs/mlp")

    # --config PATH and --config.data_path=PATH still take files anywhere
    (cwd / "mine.py").write_text(
        "from jax_makemore.config import base_config\n\n\n"
        "def get_config():\n    return base_config('bigram_counts')\n"
    )
    (cwd / "few.txt").write_text("emma\nolivia\nava\nisabella\nsophia\nmia\n" * 20)
    python("-m", "jax_makemore.train", "--config", "mine.py", "--config.data_path=few.txt")
    assert (cwd / "runs" / "mine" / "results.json").is_file()
