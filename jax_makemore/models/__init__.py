"""The model registry: every module of this package that defines `SPECS` (a tuple of
`ModelSpec`, see `base.py`) is a model family. Adding a model is one file here plus one config.

Nothing outside `models/` and `configs/` looks at a model's name: the rest of the package asks
the registry for the spec of `config.model.name` and reads its layout, hyper-parameters, and
whether it is fitted or trained.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil

import ml_collections
from flax import linen as nn

from jax_makemore.errors import UserError
from jax_makemore.models.base import DATA_FIELDS, Layout, ModelSpec


@functools.cache
def _shipped() -> dict[str, ModelSpec]:
    """{name: spec} of every model file in this package, discovered by import (once)."""
    specs: dict[str, ModelSpec] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name == "base":
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        for spec in getattr(module, "SPECS", ()):
            if spec.name in specs:
                raise RuntimeError(f"model name {spec.name!r} is registered twice")
            specs[spec.name] = spec
    return specs


#: Models registered from outside the package (`register_model`), by name.
_registered: dict[str, ModelSpec] = {}


def registry() -> dict[str, ModelSpec]:
    """{name: spec} of every model: the package's own files, then those given to
    `register_model`. A new dict each call: changing it changes no registration."""
    return {**_shipped(), **_registered}


def register_model(spec: ModelSpec, *, replace: bool = False) -> ModelSpec:
    """Make a model defined outside the package trainable by name, as a file under
    `jax_makemore/models/` would: `config.model.name = spec.name` then trains, checkpoints,
    resumes, samples and evaluates it (a process that loads its checkpoint registers it
    first). Registering the same spec twice is a no-op; another spec under a taken name is a
    UserError unless `replace` (a shipped model's name cannot be taken)."""
    if not isinstance(spec, ModelSpec):
        raise UserError(f"register_model takes a ModelSpec, got {type(spec).__name__}")
    if spec.layout not in ("windows", "sequences"):
        raise UserError(
            f"model {spec.name!r}: layout {spec.layout!r} is neither 'windows' nor 'sequences'"
        )
    if spec.layout == "windows" and "block_size" not in spec.hyperparameters():
        raise UserError(
            f"model {spec.name!r}: a windows model needs a defaulted `block_size` field "
            "(the width of its context window)"
        )
    if spec.name in _shipped():
        raise UserError(f"model name {spec.name!r} is a model of the package; choose another")
    old = _registered.get(spec.name)
    if old is not None and old != spec and not replace:
        raise UserError(
            f"model name {spec.name!r} is registered already (to {old.module.__name__}); "
            "pass replace=True to register another module under it"
        )
    _registered[spec.name] = spec
    return spec


def unregister_model(name: str) -> None:
    """Forget a model given to `register_model` (tests; a shipped model stays)."""
    _registered.pop(name, None)


def model_names() -> list[str]:
    return sorted(registry())


def get_spec(name: str) -> ModelSpec:
    """The spec of model `name`; an unknown name is a UserError listing the registered ones."""
    specs = registry()
    if name not in specs:
        raise UserError(
            f"config key model.name={name!r}: unknown model; registered: {', '.join(model_names())}"
        )
    return specs[name]


def model_config(name: str, **overrides) -> ml_collections.ConfigDict:
    """`config.model` for model `name`: its name and its hyper-parameters at their defaults,
    then `overrides` (which must be hyper-parameters of that model)."""
    spec = get_spec(name)
    params = spec.hyperparameters()
    for key in overrides:
        if key not in params:
            raise UserError(f"model {name!r} has no hyper-parameter {key!r}")
    return ml_collections.ConfigDict({"name": name, **params, **overrides})


def validate_model_config(model: ml_collections.ConfigDict) -> None:
    """One-line errors for a `config.model` no module of its kind can be built with."""
    spec = get_spec(model.name)
    known = set(spec.hyperparameters())
    for key in model.keys():
        if key != "name" and key not in known:
            raise UserError(
                f"config key model.{key}: model {model.name!r} has no such hyper-parameter; "
                f"it has {', '.join(sorted(known))}"
            )
    for key in sorted(known):
        if key not in model:
            raise UserError(f"config key model.{key} is missing for model {model.name!r}")
        value = model[key]
        if isinstance(value, int) and not isinstance(value, bool) and value <= 0:
            raise UserError(f"config key model.{key} must be > 0, got {value}")
    if spec.validate is not None:
        spec.validate(model)


def build_model(model: ml_collections.ConfigDict, vocab_size: int, seq_len: int = 0) -> nn.Module:
    """The Linen module of `config.model`, sized for the data (`seq_len`: sequences layout)."""
    return get_spec(model.name).build(model, vocab_size, seq_len)


def check_packable(model: ml_collections.ConfigDict, packed: bool) -> None:
    """A one-line UserError when `packed` training is asked of a model whose spec does not
    declare `packs` (a windows model, or a sequences model that needs one word per row)."""
    if packed and not get_spec(model.name).packs:
        raise UserError(
            f"config key packed=True: model {model.name!r} trains on one padded word per row "
            "only; set --config.packed=False"
        )


def input_length(model: ml_collections.ConfigDict, seq_len: int) -> int:
    """Length T of the model's input rows: the window width, or the padded word length."""
    return model.block_size if get_spec(model.name).layout == "windows" else seq_len


__all__ = [
    "DATA_FIELDS",
    "Layout",
    "ModelSpec",
    "build_model",
    "check_packable",
    "get_spec",
    "input_length",
    "model_config",
    "model_names",
    "register_model",
    "registry",
    "unregister_model",
    "validate_model_config",
]
