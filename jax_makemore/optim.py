"""optax chains built from the config: SGD with the notes' step decay, or AdamW; weight decay
lives here (optax.add_decayed_weights), never as a term inside the model or the loss."""

from __future__ import annotations

from typing import Any

import jax
import ml_collections
import optax


def learning_rate_schedule(config: ml_collections.ConfigDict) -> optax.Schedule:
    """learning_rate, multiplied by lr_decay_factor from step lr_decay_steps on (default: half)."""
    decay_steps = config.lr_decay_steps if config.lr_decay_steps >= 0 else config.num_steps // 2
    if config.lr_decay_factor == 1.0 or decay_steps <= 0:
        return optax.constant_schedule(config.learning_rate)
    return optax.piecewise_constant_schedule(
        config.learning_rate, {int(decay_steps): float(config.lr_decay_factor)}
    )


def _is_matrix(params: Any) -> Any:
    """Mask of leaves that get weight decay: kernels and embeddings, not biases or BN gains."""
    return jax.tree.map(lambda p: p.ndim >= 2, params)


def l2_mean_as_weight_decay(l2_mean: float, params: Any) -> optax.GradientTransformation:
    """The notes' loss term `l2_mean * mean(W**2)` for every matrix W, as weight decay.

    d/dW [l2_mean * mean(W**2)] = (2 * l2_mean / W.size) * W, so each matrix gets
    optax.add_decayed_weights with that coefficient: an SGD step is then identical to a gradient
    step on the loss with the explicit L2 term.
    """
    leaves = jax.tree.leaves(params)
    sizes = sorted({p.size for p in leaves if p.ndim >= 2})
    parts = []
    for size in sizes:
        mask = jax.tree.map(lambda p, s=size: p.ndim >= 2 and p.size == s, params)
        parts.append(optax.add_decayed_weights(2.0 * l2_mean / size, mask=mask))
    return optax.chain(*parts)


def build_optimizer(config: ml_collections.ConfigDict, params: Any) -> optax.GradientTransformation:
    """The optimizer named by config.optimizer, with the learning-rate schedule and decay."""
    schedule = learning_rate_schedule(config)
    decay = []
    if config.l2_mean > 0:
        decay.append(l2_mean_as_weight_decay(config.l2_mean, params))
    if config.optimizer == "sgd":
        if config.weight_decay > 0:
            decay.append(optax.add_decayed_weights(config.weight_decay, mask=_is_matrix(params)))
        return optax.chain(*decay, optax.sgd(schedule))
    if config.optimizer == "adamw":
        return optax.chain(
            *decay, optax.adamw(schedule, weight_decay=config.weight_decay, mask=_is_matrix(params))
        )
    raise ValueError(f"unknown optimizer {config.optimizer!r}")
