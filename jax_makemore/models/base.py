"""The model contract: what a model file under `models/` declares so that every command can
train, evaluate, sample, plot and resume it without knowing its name.

A model file defines a Flax Linen module and a module-level `SPECS` tuple of `ModelSpec`s. The
module is called as

    module.apply(variables, idx_BxT, train=..., segment_BxT=None, position_BxT=None)

and returns

* `logits_BxV` (layout `windows`: `idx_BxT` is a context window, the logits predict the next
  character; a windows module takes `idx_BxT` and `train` only), or
* `logits_BxTxV` (layout `sequences`: position t predicts the token at t + 1; the model must be
  causal). With the two keyword-only extras at None, each row of `idx_BxT` is one padded word
  starting at position 0. A packed row (`packing.py`) lays several words end to end and says
  where they are: `segment_BxT` (int32) numbers the row's words 1, 2, ... and is 0 on empty
  positions; `position_BxT` (int32) is the position within the word, 0 at the word's boundary
  token. A model whose spec declares `packs=True` must then let no position see another word,
  and give each word the logits it gets alone in a padded row. Further call-time switches are
  keyword arguments of this same call, never module fields.

Decoding (a `sequences` model whose spec declares `decodes=True`): the same call with the
keyword `decode=True` runs the model one position at a time on a cache, Flax's `cache`
collection, as Flax's lm1b example does:

* the first `decode=True` call, on an R x L input and with no `cache` in the variables,
  creates the cache for R rows of up to L positions (and returns the full forward's logits);
  `init_cache` below builds it from its shapes alone, since a model's empty cache is all zeros;
* each later call, with the cache in the variables and `mutable=["cache"]`, takes idx_Rx1, the
  token at the next position of every row, and returns that position's logits_Rx1xV (equal to
  the full forward's at that position) and the updated cache (`decode_step` below).

All rows decode in step: a cache leaf is either a scalar shared by every row (the position
index) or an array with the rows on its first axis, so that keeping some rows is a gather of
every leaf with an axis. Positions go up to the L of the first call (a position table has
seq_len rows); decoding is eval mode only (`train=False`, padded rows). The model docstrings
state the cache's bytes for R rows.

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

import jax
import jax.numpy as jnp
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
    packs: the module takes packed rows (`segment_BxT`, `position_BxT`), so training may lay
        several words in one row instead of padding each word to its own.
    decodes: the module takes `decode=True` (see the module docstring): the sampler then draws
        from a cache, one position per step, instead of recomputing the whole word each step.
    """

    name: str
    module: type[nn.Module]
    layout: Layout
    validate: Callable[[ml_collections.ConfigDict], None] | None = None
    fit: Callable[..., Any] | None = None
    loss_and_grads: Callable[..., Any] | None = None
    packs: bool = False
    decodes: bool = False

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


def init_cache(module: nn.Module, variables: Any, rows: int, length: int) -> Any:
    """The empty decoding cache of `module` for `rows` rows of up to `length` positions: the
    `cache` collection a `decode=True` call on a rows x length input creates, all zeros. Built
    from the shapes only (`jax.eval_shape`), so no forward pass is computed."""

    def created(variables: Any, idx_RxL: jax.Array) -> Any:
        _, mutated = module.apply(variables, idx_RxL, train=False, decode=True, mutable=["cache"])
        return mutated["cache"]

    idx_RxL = jax.ShapeDtypeStruct((rows, length), jnp.int32)
    shapes = jax.eval_shape(created, variables, idx_RxL)
    return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)


def decode_step(
    module: nn.Module, variables: Any, cache: Any, idx_Rx1: jax.Array
) -> tuple[jax.Array, Any]:
    """(logits_RxV, cache): the logits at the next position of every row, whose tokens are
    `idx_Rx1`, and the cache that has taken them in."""
    logits_Rx1xV, mutated = module.apply(
        {**variables, "cache": cache}, idx_Rx1, train=False, decode=True, mutable=["cache"]
    )
    return logits_Rx1xV[:, 0], mutated["cache"]


def check_decode(
    decode: bool, train: bool, segment_BxT: jax.Array | None, position_BxT: jax.Array | None
) -> None:
    """Decoding runs in eval mode on padded rows only."""
    if decode and (train or segment_BxT is not None or position_BxT is not None):
        raise ValueError("decode=True takes padded rows with train=False")


def causal_word_mask(T: int, segment_BxT: jax.Array | None = None) -> jax.Array:
    """Which positions each position may read: mask_1xTxT (padded rows) or mask_BxTxT (packed
    rows), True where key k <= query q and, in a packed row, both lie in the same segment.
    Empty positions (segment 0) see only each other, so no query row is ever all False (a
    softmax over nothing would be NaN, and NaN survives the loss mask in the gradient)."""
    causal_1xTxT = jnp.tril(jnp.ones((1, T, T), bool))
    if segment_BxT is None:
        return causal_1xTxT
    same_BxTxT = segment_BxT[:, :, None] == segment_BxT[:, None, :]
    return causal_1xTxT & same_BxTxT


def check_word_layout(segment_BxT: jax.Array | None, position_BxT: jax.Array | None) -> None:
    """A packed row needs both its segment ids and its positions; a padded row neither."""
    if (segment_BxT is None) != (position_BxT is None):
        raise ValueError("segment_BxT and position_BxT are given together or not at all")
