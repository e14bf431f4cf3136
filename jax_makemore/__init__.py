"""jax_makemore: makemore's character-level language models, rebuilt functionally in JAX/Flax.

Array names carry their shapes as suffixes (`X_NxT`, `logits_BxTxV`). The letters:

    B  rows of a batch: context windows (windows layout) or words (sequences layout)
    T  positions of one model input row: the window width `block_size`, or `L`
    L  padded word length of the sequences layout: `seq_len` = longest word + 1
    N  rows of a whole split
    V  vocabulary size: the data's characters + the boundary token
    E  embedding width (`n_embd`)
    C  features per position inside a model (a residual stream, a WaveNet level's input)
    H  hidden units (`n_hidden`, `n_embd2`)
    A  attention heads, D = C / A features per head (transformer.py)
    K  train steps fused into one compiled chunk
    M  members of a sweep trained together
    R  rows still generating in a sampling phase; S the sampler's state row; G generated
       positions (`max_len`)

A module may define a further letter for its own intermediates; its docstring says so.

The Python API (`api.py`) is what this package exports: `import jax_makemore as jm`, then
`jm.get_config`, `jm.train`, `jm.load`, `jm.Run`, `jm.register_model`, ... (`__all__`). The
names load on first use, so that `python -m jax_makemore.sample` imports only what it needs.
"""

import sys as _sys
import types as _types
from importlib import resources as _resources
from pathlib import Path as _Path

__version__ = "0.1.0"

#: The shipped default data set: package data (jax_makemore/datasets/names.txt), so an install
#: from a wheel finds it from any directory. A wheel installs as files, so this is a real path.
DEFAULT_DATA_PATH = _Path(str(_resources.files(__name__) / "datasets" / "names.txt"))

#: The API, each name with the module it lives in.
_EXPORTS = {
    "get_config": "jax_makemore.api",
    "train": "jax_makemore.api",
    "load": "jax_makemore.api",
    "init": "jax_makemore.api",
    "Run": "jax_makemore.api",
    "configs": "jax_makemore.api",
    "models": "jax_makemore.api",
    "load_data": "jax_makemore.api",
    "figures": "jax_makemore.api",
    "compare_figure": "jax_makemore.api",
    "ensemble_losses": "jax_makemore.api",
    "lr_find": "jax_makemore.api",
    "sweep": "jax_makemore.api",
    "register_model": "jax_makemore.models",
    "ModelSpec": "jax_makemore.models.base",
    "UserError": "jax_makemore.errors",
}

__all__ = ["DEFAULT_DATA_PATH", *_EXPORTS]


def __getattr__(name: str):
    """The API's names, imported when first asked for (PEP 562)."""
    if name in _EXPORTS:
        import importlib

        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'jax_makemore' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)


class _Package(_types.ModuleType):
    """The package's module type: `train` and `models` name both an API function and a
    submodule (`python -m jax_makemore.train`, `jax_makemore/models/`). Importing the submodule
    would bind it over the function as an attribute of the package; here the function stays,
    and the submodule is reached by its full import path (`from jax_makemore.train import ...`)."""

    def __setattr__(self, name: str, value: object) -> None:
        if name in _EXPORTS and isinstance(value, _types.ModuleType):
            return
        super().__setattr__(name, value)


_sys.modules[__name__].__class__ = _Package
