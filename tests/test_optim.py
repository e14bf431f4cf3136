import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jax_makemore.config import resolve
from jax_makemore.optim import build_optimizer, l2_mean_as_weight_decay, learning_rate_schedule


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
