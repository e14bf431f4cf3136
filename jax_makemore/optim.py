"""optax chains built from the config: SGD with the notes' step decay, or AdamW; weight decay
lives here (optax.add_decayed_weights), never as a term inside the model or the loss."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import optax

from jax_makemore.config import get_value

#: Keys the optimizer may take as traced per-member values (`hp`) instead of the config's: a
#: sweep trains members that differ only in these as one compiled program.
TRACED_KEYS = (
    "learning_rate",
    "lr_decay_factor",
    "lr_decay_steps",
    "lr_min_factor",
    "warmup_steps",
    "weight_decay",
    "l2_mean",
    "adam_b1",
    "adam_b2",
    "adam_eps",
)
#: Keys of the learning-rate schedule (a subset of TRACED_KEYS).
SCHEDULE_KEYS = (
    "learning_rate",
    "lr_decay_factor",
    "lr_decay_steps",
    "lr_min_factor",
    "warmup_steps",
)
#: The keys of TRACED_KEYS that are step counts: traced as int32, the others as float32.
INTEGER_KEYS = ("lr_decay_steps", "warmup_steps")


def resolved_value(config: ml_collections.ConfigDict, key: str) -> Any:
    """The value of (dotted) `key` that the program uses: `config.get_value`'s, except that
    lr_decay_steps -1 means half of num_steps."""
    if key == "lr_decay_steps" and config.lr_decay_steps < 0:
        return config.num_steps // 2
    return get_value(config, key)


def learning_rate_schedule(
    config: ml_collections.ConfigDict, hp: dict[str, Any] | None = None
) -> optax.Schedule:
    """The learning rate at each step: an optional linear warm-up from 0 over `warmup_steps`,
    then either `step` (learning_rate, times lr_decay_factor from lr_decay_steps on, default
    half of num_steps) or `cosine` (from learning_rate down to lr_min_factor * learning_rate at
    num_steps). `hp` holds traced values of SCHEDULE_KEYS in place of the config's (a sweep's
    members); the step decay, the cosine's length and the warm-up are then written with traced
    step counts, as the same float operations as optax's schedules, so that a traced schedule
    equals the concrete one bit for bit."""
    hp = hp or {}
    if any(k in hp for k in SCHEDULE_KEYS):
        return _traced_schedule(config, hp)
    lr, warmup = config.learning_rate, config.warmup_steps
    if config.lr_schedule == "cosine":
        main = optax.cosine_decay_schedule(
            lr, max(config.num_steps - warmup, 1), alpha=config.lr_min_factor
        )
    else:
        decay_steps = resolved_value(config, "lr_decay_steps")
        if config.lr_decay_factor == 1.0 or decay_steps <= 0:
            main = optax.constant_schedule(lr)
        else:
            main = optax.piecewise_constant_schedule(
                lr, {int(decay_steps) - warmup: float(config.lr_decay_factor)}
            )
    return _with_warmup(main, lr, warmup)


def _traced_schedule(config: ml_collections.ConfigDict, hp: dict[str, Any]) -> optax.Schedule:
    """`learning_rate_schedule` with the traced values of `hp`; a traced warm-up length also
    makes the cosine's length (num_steps - warmup) traced."""
    lr = hp.get("learning_rate", config.learning_rate)
    warmup = hp.get("warmup_steps", config.warmup_steps)
    if config.lr_schedule == "cosine":
        alpha = hp.get("lr_min_factor", config.lr_min_factor)
        if isinstance(warmup, int):
            main = optax.cosine_decay_schedule(lr, max(config.num_steps - warmup, 1), alpha=alpha)
        else:
            main = _cosine_decay(lr, jnp.maximum(config.num_steps - warmup, 1), alpha)
    else:
        decay_steps = hp.get("lr_decay_steps", resolved_value(config, "lr_decay_steps"))
        factor = hp.get("lr_decay_factor", config.lr_decay_factor)
        factor = jnp.where(jnp.asarray(decay_steps) > 0, factor, 1.0)
        threshold = decay_steps - warmup

        def main(count):
            indicator = jnp.maximum(0.0, jnp.sign(threshold - count))
            return lr * indicator + (1 - indicator) * factor * lr

    if isinstance(warmup, int):
        return _with_warmup(main, lr, warmup)
    return _traced_warmup(main, lr, warmup)


def _cosine_decay(lr: Any, decay_steps: jax.Array, alpha: Any) -> optax.Schedule:
    """optax.cosine_decay_schedule (exponent 1) with a traced number of decay steps T, which
    optax cannot take (it checks `T > 0` in Python). The arithmetic is optax's, with one
    change: optax's `pi * count / T` is written `count * (pi * (1 / T))`, the form XLA's
    simplifier compiles it to when T is a constant (a single run), so that a traced T rounds
    the same (a traced `pi * count / T` is 1 ulp off at some steps)."""

    def schedule(count):
        steps = decay_steps.astype(jnp.float32)
        count = jnp.minimum(count, steps)
        cosine_decay = 0.5 * (1 + jnp.cos(count * (jnp.pi * (1 / steps))))
        decayed = (1 - alpha) * cosine_decay**1.0 + alpha
        return lr * decayed

    return schedule


def _traced_warmup(main: optax.Schedule, lr: Any, warmup: jax.Array) -> optax.Schedule:
    """`_with_warmup` for a traced warm-up length W: optax.linear_schedule(0, lr, W) (its
    polynomial schedule with power 1) joined to `main` at W by join_schedules' `where`. As in
    `_cosine_decay`, optax's `count / W` is written `count * (1 / W)`, the form XLA compiles a
    constant W to. A member whose W is 0 never selects the ramp, so it gets `main(count)` as
    `_with_warmup` returns it; its ramp divides by 1, not 0."""

    def schedule(count):
        steps = jnp.maximum(warmup, 1)
        frac = 1 - jnp.clip(count, 0, steps) * (1 / steps)
        ramp = (0.0 - lr) * frac**1 + lr
        return jnp.where(count < warmup, ramp, main(count - warmup))

    return schedule


def _with_warmup(main: optax.Schedule, lr: Any, warmup: int) -> optax.Schedule:
    if warmup <= 0:
        return main
    return optax.join_schedules([optax.linear_schedule(0.0, lr, warmup), main], [warmup])


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


def build_optimizer(
    config: ml_collections.ConfigDict, params: Any, hp: dict[str, Any] | None = None
) -> optax.GradientTransformation:
    """The optimizer named by config.optimizer, with the learning-rate schedule and decay
    (on matrices only, or on every parameter with `decay_matrices_only=False`). `hp` holds
    traced values of TRACED_KEYS in place of the config's; the chain's structure (which
    stages it has) always comes from `config`."""
    hp = hp or {}

    def get(key: str) -> Any:
        return hp.get(key, config[key])

    schedule = learning_rate_schedule(config, hp)
    decay_mask = _is_matrix(params) if config.decay_matrices_only else None
    decay = []
    if config.l2_mean > 0:
        decay.append(l2_mean_as_weight_decay(get("l2_mean"), params))
    average = [parameter_average(config.ema_decay)] if config.get("ema_decay", 0.0) > 0 else []
    if config.optimizer == "sgd":
        if config.weight_decay > 0:
            decay.append(optax.add_decayed_weights(get("weight_decay"), mask=decay_mask))
        return optax.chain(*decay, optax.sgd(schedule), *average)
    if config.optimizer == "adamw":
        adamw = optax.adamw(
            schedule,
            b1=get("adam_b1"),
            b2=get("adam_b2"),
            eps=get("adam_eps"),
            weight_decay=get("weight_decay"),
            mask=decay_mask,
        )
        return optax.chain(*decay, adamw, *average)
    raise ValueError(f"unknown optimizer {config.optimizer!r}")


class ParamAverage(NamedTuple):
    """The optimizer state of `parameter_average`: the running average of the parameters."""

    averaged_params: Any


def parameter_average(decay: float) -> optax.GradientTransformation:
    """An exponential moving average of the parameters after each update, kept in the
    optimizer state (so checkpoints, resume and sweeps carry it like any optimizer moment):
    avg <- decay * avg + (1 - decay) * (params + updates), starting at the initial params.
    It leaves the updates unchanged, so training is the same with or without it; it goes last
    in the chain, where the updates are final."""

    def init(params):
        return ParamAverage(jax.tree.map(jnp.copy, params))  # its own buffers (donated)

    def update(updates, state, params):
        new_params = optax.apply_updates(params, updates)
        averaged = jax.tree.map(
            lambda a, p: decay * a + (1.0 - decay) * p, state.averaged_params, new_params
        )
        return updates, ParamAverage(averaged)

    return optax.GradientTransformation(init, update)


def averaged_params(opt_state: Any) -> Any | None:
    """The averaged parameters inside an optimizer state (its tree of optax states, or the
    nested dicts a checkpoint restores without a target); None without an average."""
    if isinstance(opt_state, ParamAverage):
        return opt_state.averaged_params
    if isinstance(opt_state, dict):
        if "averaged_params" in opt_state:
            return opt_state["averaged_params"]
        children = list(opt_state.values())
    elif isinstance(opt_state, tuple | list):
        children = list(opt_state)
    else:
        return None
    for child in children:
        found = averaged_params(child)
        if found is not None:
            return found
    return None
