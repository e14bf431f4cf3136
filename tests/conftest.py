"""Shared fixtures: small data files, tiny configs, a subprocess runner for the CLIs and a
check that a picture is a real one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from jax_makemore import DEFAULT_DATA_PATH
from jax_makemore.config import resolve

REPO = Path(__file__).resolve().parents[1]

# Bit-identity tests (reproducibility, resume) need deterministic scatter-adds on a GPU (the
# embedding gradient); set before any backend starts. CPU is deterministic already.
if "xla_gpu_deterministic_ops" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_gpu_deterministic_ops=true"
    ).strip()


#: Test modules of the quick tier (`pytest -m quick -n 2`, about a minute on two cores): pure
#: functions and small shapes. Their tests marked `heavy` or `slow` stay in those tiers.
QUICK_MODULES = (
    "test_config", "test_data", "test_loss", "test_optim", "test_models", "test_imports",
    "test_make_names", "test_notebooks", "test_rundir", "test_workdir", "test_search",
    "test_layers", "test_wavenet", "test_zoo_models", "test_backprop", "test_parallel",
)  # fmt: skip


def pytest_collection_modifyitems(config, items):
    """Mark the quick tier: every test of QUICK_MODULES that is not heavy, slow or notebooks."""
    for item in items:
        tiers = {m.name for m in item.iter_markers()} & {"heavy", "slow", "notebooks"}
        if item.module.__name__.rsplit(".", 1)[-1] in QUICK_MODULES and not tiers:
            item.add_marker(pytest.mark.quick)


def write_small_names(directory: Path, n: int = 1500) -> Path:
    """Write the first `n` names of the shipped data set to `directory`/small_names.txt."""
    lines = DEFAULT_DATA_PATH.read_text(encoding="utf-8").splitlines()[:n]
    path = directory / "small_names.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def small_names(tmp_path: Path) -> Path:
    """The first 1,500 names of the shipped data set."""
    return write_small_names(tmp_path)


def tiny_config(name: str = "mlp", data_path: Path | str | None = None, **overrides):
    """A named config shrunk for tests; keyword overrides are applied as `--config.K=V` strings
    (a key that is not a top-level key of the config is a model hyper-parameter: `model.K`)."""
    from jax_makemore.config import load_config

    top = set(load_config(name)[0].keys())
    pairs = [(k if k in top else f"model.{k}", str(v)) for k, v in overrides.items()]
    if data_path is not None:
        pairs.append(("data_path", str(data_path)))
    config, config_name = resolve(name, pairs)
    config.num_samples = 0
    return config, config_name


def run_cli(module: str, *args: str, cwd: Path | None = None, timeout: float = 300, env=None):
    """Run `python -m jax_makemore.<module> args...` and return the CompletedProcess."""
    full_env = dict(os.environ)
    full_env.setdefault("JAX_PLATFORMS", "cpu")
    if env:
        full_env.update(env)
    return subprocess.run(
        [sys.executable, "-m", f"jax_makemore.{module}", *args],
        capture_output=True,
        text=True,
        cwd=cwd or REPO,
        timeout=timeout,
        env=full_env,
    )


PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def assert_png(path: Path, min_size: tuple[int, int] = (200, 150)) -> None:
    """A real picture: PNG bytes, at least `min_size` pixels (width, height), not one colour.
    Needs matplotlib (call `pytest.importorskip("matplotlib")` first)."""
    import matplotlib.image
    import numpy as np

    assert path.read_bytes()[:8] == PNG_MAGIC, path
    pixels = matplotlib.image.imread(path)
    height, width = pixels.shape[:2]
    assert width >= min_size[0] and height >= min_size[1], (path, width, height)
    rgb = pixels[..., :3].reshape(-1, 3)
    assert np.unique(rgb, axis=0).shape[0] > 10, f"{path} is (nearly) blank"


def tiny_setup(config):
    """(dataset, spec, model, fresh_state, X_train, Y_train) of a config, outside the train loop:
    `fresh_state()` is a new TrainState from keys 0 (init) and 1 (data) each call (a chunk
    donates the state it is given)."""
    import jax
    import jax.numpy as jnp

    from jax_makemore.data import dataset_from_config
    from jax_makemore.models import get_spec
    from jax_makemore.train import create_train_state

    ds = dataset_from_config(config)
    spec = get_spec(config.model.name)
    model = spec.build(config.model, ds.vocab.size, ds.seq_len)
    X, Y = (jnp.asarray(a) for a in ds.split("train"))

    def fresh_state():
        return create_train_state(
            config, model, jax.random.PRNGKey(0), jax.random.PRNGKey(1), ds.seq_len
        )

    return ds, spec, model, fresh_state, X, Y
