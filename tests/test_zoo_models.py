"""makemore.py's sequence models (rnn, gru, bow, transformer) against the model contract and
against independent NumPy computations of makemore's formulas."""

from __future__ import annotations

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized
from flax import linen as nn

from jax_makemore.errors import UserError
from jax_makemore.models import build_model, get_spec, model_config, validate_model_config
from jax_makemore.models.bow import causal_average

NAMES = ("rnn", "gru", "bow", "transformer")
V, T = 7, 6  # tiny vocabulary and padded word length
TINY = {
    "rnn": dict(n_embd=8, n_embd2=5),
    "gru": dict(n_embd=8, n_embd2=5),
    "bow": dict(n_embd=8, n_embd2=5),
    "transformer": dict(n_layer=2, n_head=2, n_embd=8),
}


def tiny(name: str, **overrides) -> nn.Module:
    return build_model(model_config(name, **{**TINY[name], **overrides}), vocab_size=V, seq_len=T)


def random_idx(seed: int, shape: tuple[int, ...], vocab_size: int = V) -> jax.Array:
    return jax.random.randint(jax.random.PRNGKey(seed), shape, 0, vocab_size)


@functools.cache
def tiny_variables(name: str) -> dict:
    """Initialised variables of `tiny(name)`, shared by the tests (init compiles slowly on CPU)."""
    init = jax.jit(functools.partial(tiny(name).init, train=False))
    return init(jax.random.PRNGKey(0), jnp.zeros((1, T), jnp.int32))


class ZooShapeTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.parameters(*NAMES)
    def test_logits_are_BxTxV_and_tanh_states_are_sown(self, name):
        model = tiny(name)
        idx_BxT = random_idx(0, (3, T))
        variables = tiny_variables(name)

        @self.variant
        def forward(variables, idx_BxT):
            return model.apply(variables, idx_BxT, train=False, mutable=["intermediates"])

        logits_BxTxV, state = forward(variables, idx_BxT)
        chex.assert_shape(logits_BxTxV, (3, T, V))
        chex.assert_tree_all_finite(logits_BxTxV)
        if name != "transformer":  # the models with tanh hidden states
            (h_BxTxH,) = state["intermediates"]["h_BxTxH"]
            chex.assert_shape(h_BxTxH, (3, T, 5))


@pytest.mark.parametrize("name", NAMES)
def test_spec_is_a_sequences_model_with_defaults_as_makemore(name):
    spec = get_spec(name)
    expected = {
        "rnn": dict(n_embd=64, n_embd2=64),
        "gru": dict(n_embd=64, n_embd2=64),
        "bow": dict(n_embd=64, n_embd2=64),
        "transformer": dict(n_layer=4, n_head=4, n_embd=64, dropout=0.0, token_noise=0.0),
    }[name]
    assert spec.layout == "sequences"
    assert spec.hyperparameters() == expected


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _linear(p: dict, x: np.ndarray) -> np.ndarray:
    return x @ np.asarray(p["kernel"]) + np.asarray(p["bias"])


@pytest.mark.parametrize("name", ["rnn", "gru"])
def test_recurrence_matches_makemore_cell_in_numpy(name):
    model = tiny(name)
    idx_BxT = random_idx(6, (3, 2))
    params = tiny_variables(name)["params"]
    # a non-zero start state, so the reset gate has something to act on
    params = {**params, "start": jax.random.normal(jax.random.PRNGKey(8), params["start"].shape)}
    logits_BxTxV = model.apply({"params": params}, idx_BxT, train=False)

    wte = np.asarray(params["wte"]["embedding"])
    cell = params["cell"]
    h = np.broadcast_to(np.asarray(params["start"]), (3, 5))
    for t in range(2):
        x = wte[np.asarray(idx_BxT[:, t])]
        xh = np.concatenate([x, h], axis=1)
        if name == "rnn":
            h = np.tanh(_linear(cell["xh_to_h"], xh))
        else:
            r = _sigmoid(_linear(cell["xh_to_r"], xh))
            hbar = np.tanh(_linear(cell["xh_to_hbar"], np.concatenate([x, r * h], axis=1)))
            z = _sigmoid(_linear(cell["xh_to_z"], xh))
            h = (1 - z) * h + z * hbar
        expected = _linear(params["lm_head"], h)
        np.testing.assert_allclose(logits_BxTxV[:, t], expected, rtol=1e-5, atol=1e-5)


def test_causal_average_is_the_mean_of_positions_up_to_t():
    x_BxTxC = np.asarray(jax.random.normal(jax.random.PRNGKey(9), (2, T, 3)))
    expected = np.stack([x_BxTxC[:, : t + 1].mean(axis=1) for t in range(T)], axis=1)
    np.testing.assert_allclose(causal_average(jnp.asarray(x_BxTxC)), expected, rtol=1e-6)


def test_transformer_parameter_count_is_makemores():
    n_layer, n_embd = 3, 12
    model = tiny("transformer", n_layer=n_layer, n_head=3, n_embd=n_embd)
    init = functools.partial(model.init, train=False)
    variables = jax.eval_shape(init, jax.random.PRNGKey(0), jnp.zeros((1, T), jnp.int32))
    count = sum(p.size for p in jax.tree.leaves(variables["params"]))
    C = n_embd

    def linear(n_in: int, n_out: int) -> int:  # nn.Linear with bias
        return n_in * n_out + n_out

    block = 2 * (2 * C) + linear(C, 3 * C) + linear(C, C) + linear(C, 4 * C) + linear(4 * C, C)
    # wte + wpe + blocks + ln_f + lm_head (no bias)
    assert count == V * C + T * C + n_layer * block + 2 * C + C * V


def test_validate_rejects_n_embd_not_divisible_by_n_head():
    with pytest.raises(UserError, match=r"model\.n_embd=65 must be divisible by model\.n_head=4"):
        validate_model_config(model_config("transformer", n_embd=65, n_head=4))
    validate_model_config(model_config("transformer", n_embd=64, n_head=4))


def test_dropout_draws_from_the_dropout_stream_only_in_training():
    model = tiny("transformer", dropout=0.3)
    idx_BxT = random_idx(0, (3, T))
    variables = tiny_variables("transformer")  # dropout has no params

    def forward(train: bool, seed: int) -> jax.Array:
        rngs = {"dropout": jax.random.PRNGKey(seed)}
        return model.apply(variables, idx_BxT, train=train, rngs=rngs)

    assert not np.allclose(forward(True, 1), forward(True, 2))
    np.testing.assert_array_equal(forward(False, 1), forward(False, 2))
    no_dropout = tiny("transformer").apply(variables, idx_BxT, train=False)
    np.testing.assert_allclose(forward(False, 1), no_dropout, atol=1e-6)


def test_token_noise_replaces_training_inputs_only():
    """A share token_noise * (V - 1) / V of the inputs changes, to every other token alike;
    evaluation sees clean inputs; at noise 1 the training forward no longer reads its input."""
    model = tiny("transformer", token_noise=0.25)
    variables = tiny_variables("transformer")
    ones_BxT = jnp.ones((400, 50), jnp.int32)
    noisy_BxT = np.asarray(
        model.bind(variables, rngs={"dropout": jax.random.PRNGKey(0)}).corrupt(ones_BxT)
    )
    changed = noisy_BxT != 1
    assert abs(changed.mean() - 0.25 * (V - 1) / V) < 0.01
    counts = np.bincount(noisy_BxT[changed], minlength=V)
    assert counts[1] == 0 and counts[np.arange(V) != 1].min() > 0.8 * changed.sum() / (V - 1)

    idx_BxT, other_BxT = random_idx(0, (3, T)), random_idx(1, (3, T))
    clean = tiny("transformer").apply(variables, idx_BxT, train=False)
    np.testing.assert_array_equal(model.apply(variables, idx_BxT, train=False), clean)
    all_noise = tiny("transformer", token_noise=1.0)
    rngs = {"dropout": jax.random.PRNGKey(2)}
    np.testing.assert_array_equal(
        all_noise.apply(variables, idx_BxT, train=True, rngs=rngs),
        all_noise.apply(variables, other_BxT, train=True, rngs=rngs),
    )
    assert not np.allclose(model.apply(variables, idx_BxT, train=True, rngs=rngs), clean)
    with pytest.raises(UserError, match="model.token_noise=1.5"):
        validate_model_config(model_config("transformer", token_noise=1.5))
