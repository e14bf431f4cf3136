"""The model contract: what a model file under `models/` declares so that every command can
train, evaluate, sample, plot and resume it without knowing its name.

A model file defines a Flax Linen module and a module-level `SPECS` tuple of `ModelSpec`s. The
module is called as `module.apply(variables, idx_BxT, train=...)` and returns

* `logits_BxV` (layout `windows`: `idx_BxT` is a context window, the logits predict the next
  character), or
* `logits_BxTxV` (layout `sequences`: `idx_BxT` is a whole padded word, position t predicts
  character t + 1; the model must be causal).

Optional: running statistics in the `batch_stats` collection; a `dropout` rng stream when
`train=True`; tanh hidden states sown into `intermediates` under names starting with `h_` (the
diagnostics find them there).

The module's dataclass fields with defaults *are* the model's hyper-parameters: they become the
`config.model` sub-config (`--config.model.n_layer=8`), so each default is stated once, in the
model file. Two fields are filled in from the data instead of the config: `vocab_size` (always)
and `seq_len` (the padded word length of the `sequences` layout, when the module declares it).
A `windows` model must have a `block_size` field: the width of its context window.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Literal

import ml_collections
from flax import linen as nn

Layout = Literal["windows", "sequences"]

#: Fields of a module that come from the data, not from `config.model`.
DATA_FIELDS = ("vocab_size", "seq_len")
#: Fields every Linen module has that are not hyper-parameters.
_LINEN_FIELDS = ("parent", "name")


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """How the rest of the package sees one model.

    name: the `config.model.name` that selects it.
    module: the Linen module class; its defaulted fields are the hyper-parameters.
    layout: the data layout it trains on: `windows` (X_NxT context windows, Y_N next
        characters) or `sequences` (X_NxL padded words, Y_NxL targets, -1 where nothing counts).
    validate: raises `UserError` for hyper-parameter combinations the module cannot take
        (integer hyper-parameters are already checked to be > 0).
    fit: for models fitted in closed form instead of trained (the count bigram):
        `fit(model_config, X_NxT, Y_N, vocab_size) -> params`; training then takes no steps.
    loss_and_grads: a hand-written gradient instead of `jax.value_and_grad`:
        `loss_and_grads(module, params, batch_stats, X_BxT, Y_B) -> (loss, grads, batch_stats)`,
        pure and jit-compatible; the train step uses it when given.
    """

    name: str
    module: type[nn.Module]
    layout: Layout
    validate: Callable[[ml_collections.ConfigDict], None] | None = None
    fit: Callable[..., Any] | None = None
    loss_and_grads: Callable[..., Any] | None = None

    def hyperparameters(self) -> dict[str, Any]:
        """The module's defaulted fields that the config sets: {field name: default}."""
        out = {}
        for field in dataclasses.fields(self.module):
            if field.name in DATA_FIELDS or field.name in _LINEN_FIELDS or not field.init:
                continue
            if field.default is not dataclasses.MISSING:
                out[field.name] = field.default
            elif field.default_factory is not dataclasses.MISSING:
                out[field.name] = field.default_factory()
        return out

    def takes_seq_len(self) -> bool:
        return any(f.name == "seq_len" for f in dataclasses.fields(self.module))

    def build(
        self, model_config: ml_collections.ConfigDict, vocab_size: int, seq_len: int
    ) -> nn.Module:
        """The module sized for the data, with the hyper-parameters of `model_config`."""
        kwargs = {k: model_config[k] for k in self.hyperparameters()}
        for key, value in kwargs.items():  # ConfigDict keeps tuples as lists
            if isinstance(value, list):
                kwargs[key] = tuple(value)
        if self.takes_seq_len():
            kwargs["seq_len"] = seq_len
        return self.module(vocab_size=vocab_size, **kwargs)
