import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jax_makemore.config import resolve
from jax_makemore.optim import (
    INTEGER_KEYS,
    SCHEDULE_KEYS,
    build_optimizer,
    l2_mean_as_weight_decay,
    learning_rate_schedule,
    resolved_value,
)


def test_l2_as_weight_decay_equals_explicit_l2_gradient_step():
    """The notes' loss + 0.01 * mean(W**2), one SGD step at lr 50, equals one optax step with
    add_decayed_weights(2 * 0.01 / W.size) on the plain loss."""
    key_w, key_x = jax.random.split(jax.random.PRNGKey(0))
    V, lr, l2 = 27, 50.0, 0.01
    W = jax.random.normal(key_w, (V, V))
    xs = jax.random.randint(key_x, (100,), 0, V)
    ys = jnp.roll(xs, 1)

    def nll(params):
        logits = jax.nn.one_hot(xs, V) @ params["W"]
        return optax.softmax_cross_entropy_with_integer_labels(logits, ys).mean()

    params = {"W": W}
    explicit = jax.tree.map(
        lambda p, g: p - lr * g,
        params,
        jax.grad(lambda p: nll(p) + l2 * jnp.mean(p["W"] ** 2))(params),
    )
    tx = optax.chain(l2_mean_as_weight_decay(l2, params), optax.sgd(lr))
    updates, _ = tx.update(jax.grad(nll)(params), tx.init(params), params)
    chex.assert_trees_all_close(
        optax.apply_updates(params, updates), explicit, rtol=1e-5, atol=1e-5
    )


def test_step_decay_schedule():
    config, _ = resolve("mlp", [("num_steps", "1000")])
    schedule = learning_rate_schedule(config)
    lrs = [float(schedule(step)) for step in (0, 499, 500, 999)]
    np.testing.assert_allclose(lrs, [0.1, 0.1, 0.01, 0.01], rtol=1e-6)


def test_adamw_decays_matrices_only():
    config, _ = resolve(
        "mlp", [("optimizer", "adamw"), ("weight_decay", "0.5"), ("learning_rate", "0.1")]
    )
    params = {"kernel": jnp.ones((3, 3)), "bias": jnp.ones((3,))}
    tx = build_optimizer(config, params)
    updates, _ = tx.update(jax.tree.map(jnp.zeros_like, params), tx.init(params), params)
    assert float(jnp.abs(updates["bias"]).max()) == 0.0  # zero grad, no decay
    assert float(updates["kernel"][0, 0]) < 0.0  # decayed toward zero


@pytest.mark.parametrize(
    "pairs, other_warmup",
    [
        ([("num_steps", "200")], 7),  # step decay at 100; warm-up 0 beside 7 in one program
        ([("num_steps", "200"), ("warmup_steps", "30"), ("lr_decay_steps", "20")], 0),
        ([("num_steps", "200"), ("warmup_steps", "30"), ("lr_decay_factor", "1.0")], 5),
        ([("num_steps", "200"), ("lr_schedule", "cosine")], 13),
        ([("num_steps", "963"), ("lr_schedule", "cosine"), ("lr_min_factor", "0.05")], 37),
        ([("num_steps", "1000"), ("lr_schedule", "cosine"), ("warmup_steps", "500"),
          ("optimizer", "adamw"), ("learning_rate", "7e-4"), ("lr_min_factor", "0.1")], 0),
        ([("num_steps", "5"), ("lr_schedule", "cosine"), ("warmup_steps", "9")], 2),
    ],
)  # fmt: skip
def test_traced_warmup_schedule_is_the_schedule_bit_for_bit(pairs, other_warmup):
    """Two members differing in warm-up (and traced in every schedule key) get, at every
    step, the learning rates of their own configs' schedules, as a train step computes them."""
    configs = [
        resolve("mlp", pairs)[0],
        resolve("mlp", [*pairs, ("warmup_steps", str(other_warmup))])[0],
    ]
    hp_M = {
        k: jnp.asarray(
            [resolved_value(c, k) for c in configs],
            jnp.int32 if k in INTEGER_KEYS else jnp.float32,
        )
        for k in SCHEDULE_KEYS
    }
    counts = jnp.arange(max(c.num_steps for c in configs) + 3)

    def member(hp, counts):  # a sweep member: its own traced values, scalar steps
        return jax.lax.map(learning_rate_schedule(configs[0], hp), counts)

    traced_M = jax.jit(jax.vmap(member, in_axes=(0, None)))(hp_M, counts)
    one = jax.jit(member)(jax.tree.map(lambda a: a[1], hp_M), counts)  # a tile of one member
    for i, config in enumerate(configs):
        schedule = learning_rate_schedule(config)
        plain = jax.jit(lambda c, s=schedule: jax.lax.map(s, c))(counts)
        np.testing.assert_array_equal(np.asarray(traced_M[i]), np.asarray(plain, np.float32))
    np.testing.assert_array_equal(np.asarray(one), np.asarray(traced_M[1]))
