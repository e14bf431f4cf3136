"""Packed rows (packing.py) and the models that train on them: the same words score the same
packed or padded, no position sees another word, and the packer draws whole training words."""

from __future__ import annotations

import functools
import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jax_makemore import DEFAULT_DATA_PATH
from jax_makemore.data import IGNORE, Vocab, sequences
from jax_makemore.errors import UserError
from jax_makemore.loss import mean_nll
from jax_makemore.models import build_model, check_packable, model_config, registry
from jax_makemore.packing import (
    pack_rows,
    pack_words,
    row_width,
    rows_for_words,
    word_tokens,
    words_per_step,
)

WORDS = DEFAULT_DATA_PATH.read_text(encoding="utf-8").split()[:400]
VOCAB = Vocab.from_words(WORDS)
L = max(len(w) for w in WORDS) + 1
X_NxL, Y_NxL = sequences(WORDS, VOCAB, L)
B = VOCAB.boundary_id
PACKING = ("transformer", "bow", "rnn", "gru")
TINY = {
    "rnn": dict(n_embd=8, n_embd2=16),
    "gru": dict(n_embd=8, n_embd2=16),
    "bow": dict(n_embd=8, n_embd2=16),
    "transformer": dict(n_layer=2, n_head=2, n_embd=8, dropout=0.0),
}


@functools.cache
def tiny(name: str):
    """The tiny module and its variables, with a non-zero start state for the recurrent
    models (so a missing reset at a word start would show)."""
    model = build_model(model_config(name, **TINY[name]), VOCAB.size, L)
    variables = model.init(jax.random.PRNGKey(0), jnp.asarray(X_NxL[:2]), train=False)
    if "start" in variables["params"]:
        start = jax.random.normal(jax.random.PRNGKey(1), variables["params"]["start"].shape)
        variables = {"params": {**variables["params"], "start": start}}
    return model, variables


def packed_logits(model, params, packed):
    return model.apply(
        {"params": params},
        packed.X_BxW,
        train=True,
        segment_BxT=packed.segment_BxW,
        position_BxT=packed.position_BxW,
    )


# the Transformer's packed program compiles for ~18 s on 2 cores: the heavy tier
@pytest.mark.parametrize(
    "name",
    [
        pytest.param(n, marks=pytest.mark.heavy) if n in ("transformer", "bow") else n
        for n in PACKING
    ],
)
def test_packed_loss_and_gradients_equal_the_padded_ones(name):
    model, variables = tiny(name)
    words = np.random.default_rng(0).choice(len(WORDS), 24, replace=False)
    packed = pack_words(X_NxL, Y_NxL, words, width=32)
    assert packed.X_BxW.shape[0] < len(words)  # several words share a row

    def padded_loss(params):
        logits = model.apply({"params": params}, jnp.asarray(X_NxL[words]), train=True)
        return mean_nll(logits, jnp.asarray(Y_NxL[words]))

    def packed_loss(params):
        return mean_nll(packed_logits(model, params, packed), packed.Y_BxW)

    loss_pad, grads_pad = jax.jit(jax.value_and_grad(padded_loss))(variables["params"])
    loss_pack, grads_pack = jax.jit(jax.value_and_grad(packed_loss))(variables["params"])
    np.testing.assert_allclose(loss_pack, loss_pad, rtol=1e-5, atol=1e-5)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5), grads_pack, grads_pad
    )


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(n, marks=pytest.mark.heavy) if n in ("transformer", "bow") else n
        for n in PACKING
    ],
)
def test_changing_one_word_leaves_every_other_word_of_the_row_unchanged(name):
    model, variables = tiny(name)
    packed = pack_words(X_NxL, Y_NxL, range(8), width=48)
    segment_W = np.asarray(packed.segment_BxW[0])
    assert segment_W.max() >= 3  # the changed word has neighbours on both sides
    X_BxW = np.asarray(packed.X_BxW).copy()
    inside = (segment_W == 2) & (np.asarray(packed.position_BxW[0]) > 0)
    X_BxW[0, inside] = (X_BxW[0, inside] + 1) % B  # other characters, never the boundary
    before = packed_logits(model, variables["params"], packed)
    after = packed_logits(model, variables["params"], packed._replace(X_BxW=jnp.asarray(X_BxW)))
    others = segment_W != 2
    np.testing.assert_allclose(after[0, others], before[0, others], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(after[1:], before[1:], rtol=1e-6, atol=1e-6)
    assert not np.allclose(after[0, segment_W == 2], before[0, segment_W == 2], atol=1e-4)


def words_of(packed) -> list[str]:
    """The words of packed rows, checked to be whole: each segment is [boundary] + ids as X and
    ids + [boundary] as Y, at positions 0, 1, ... ."""
    words = []
    for x_W, y_W, s_W, p_W in zip(*(np.asarray(a) for a in packed), strict=True):
        for s in range(1, s_W.max() + 1):
            x, y, p = x_W[s_W == s], y_W[s_W == s], p_W[s_W == s]
            assert p.tolist() == list(range(len(p)))
            assert x[0] == B and y[-1] == B and x[1:].tolist() == y[:-1].tolist()
            words.append(VOCAB.decode(y))
    return words


def test_drawn_rows_hold_whole_training_words_and_mark_the_empty_tail():
    packed = jax.jit(pack_rows, static_argnums=(3, 4))(jax.random.PRNGKey(0), X_NxL, Y_NxL, 6, 32)
    segment_BxW = np.asarray(packed.segment_BxW)
    assert all(w in WORDS for w in words_of(packed))
    empty = segment_BxW == 0
    assert (np.asarray(packed.Y_BxW) == IGNORE).tolist() == empty.tolist()
    assert np.all(np.asarray(packed.X_BxW)[empty] == B)
    assert np.all(np.asarray(packed.position_BxW)[empty] == 0)
    # segments run 1, 2, ... and the empty positions are the row's tail only
    for s_W in segment_BxW:
        filled = s_W[s_W > 0]
        assert filled[0] == 1 and np.all(np.diff(filled) >= 0) and np.all(np.diff(filled) <= 1)
        assert np.all(s_W[len(filled) :] == 0)
    assert np.all((np.asarray(packed.Y_BxW) != IGNORE).sum(axis=1) <= 32)


def test_positions_restart_at_zero_at_each_word():
    packed = pack_words(X_NxL, Y_NxL, range(30), width=32)
    s, p = np.asarray(packed.segment_BxW), np.asarray(packed.position_BxW)
    new_word = np.concatenate([s[:, :1] > 0, s[:, 1:] != s[:, :-1]], axis=1) & (s > 0)
    assert np.all(p[new_word] == 0)
    same_word = ~new_word[:, 1:] & (s[:, 1:] > 0)  # positions that continue a word
    assert np.all(p[:, 1:][same_word] == p[:, :-1][same_word] + 1)
    assert words_of(packed) == WORDS[:30]


@pytest.mark.heavy
def test_pack_rows_is_a_pure_fixed_shape_function_of_its_key():
    pack = jax.jit(pack_rows, static_argnums=(3, 4))
    keys = jax.random.split(jax.random.PRNGKey(3), 4)
    one = pack(keys[0], X_NxL, Y_NxL, 5, 24)
    assert all(a.shape == (5, 24) for a in one)
    assert all(a.dtype == jnp.int32 for a in one)
    again = pack(keys[0], X_NxL, Y_NxL, 5, 24)
    assert all(np.array_equal(a, b) for a, b in zip(one, again, strict=True))
    other = pack(keys[1], X_NxL, Y_NxL, 5, 24)
    assert not np.array_equal(one.X_BxW, other.X_BxW)
    members = jax.vmap(lambda k: pack_rows(k, X_NxL, Y_NxL, 5, 24))(keys)
    assert all(a.shape == (4, 5, 24) for a in members)
    assert all(np.array_equal(a[0], b) for a, b in zip(members, one, strict=True))
    assert members.num_words().shape == (4,) and int(members.num_words()[0]) == one.num_words()


def test_rows_for_words_holds_the_batch_words_on_average_in_whole_device_groups():
    rows = rows_for_words(Y_NxL, 32, 32, multiple_of=4)
    assert rows % 4 == 0
    mean, std = words_per_step(Y_NxL, rows, 32, draws=200)
    assert 32 <= mean < 32 + 4 * 32 / rows + 1  # within one device group's words of 32
    assert 0 < std < 5
    assert rows_for_words(Y_NxL, 32, 32, multiple_of=4) == rows  # deterministic


def test_a_row_is_at_least_as_wide_as_the_longest_word():
    assert row_width(64, 16) == 64
    assert row_width(8, 16) == 16  # a pack_len below the longest word widens to it
    with pytest.raises(ValueError, match="shorter than the padded word length"):
        pack_rows(jax.random.PRNGKey(0), X_NxL, Y_NxL, 2, L - 1)
    longest = int(np.argmax(word_tokens(Y_NxL)))
    packed = pack_words(X_NxL, Y_NxL, [longest, 0, longest], width=L)
    assert words_of(packed) == [WORDS[longest], WORDS[0], WORDS[longest]]


@pytest.mark.parametrize(
    "name", [n for n, spec in registry().items() if spec.layout == "sequences"]
)
def test_every_sequences_module_takes_the_packed_extras_as_keyword_only(name):
    parameters = inspect.signature(registry()[name].module.__call__).parameters
    for extra in ("segment_BxT", "position_BxT"):
        assert parameters[extra].kind is inspect.Parameter.KEYWORD_ONLY
        assert parameters[extra].default is None


def test_only_models_that_declare_packs_take_packed_training():
    packs = {name for name, spec in registry().items() if spec.packs}
    assert packs == set(PACKING)
    for name in PACKING:
        check_packable(model_config(name), True)
    check_packable(model_config("wavenet_conv"), False)
    with pytest.raises(UserError, match="packed=True: model 'wavenet_conv'.*packed=False"):
        check_packable(model_config("wavenet_conv"), True)
    conv = build_model(model_config("wavenet_conv", n_embd=4, n_hidden=8), VOCAB.size, L)
    idx = jnp.asarray(X_NxL[:2])
    variables = conv.init(jax.random.PRNGKey(0), idx, train=False)
    with pytest.raises(ValueError, match="not packed rows"):
        conv.apply(variables, idx, train=False, segment_BxT=idx, position_BxT=idx)
