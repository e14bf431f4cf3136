"""BatchNorm at evaluation: running, per-batch and recalibrated statistics, a batch of one,
and the hidden bias it makes redundant."""

from __future__ import annotations

import statistics
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from claims.context import block_sweep
from claims.exact import b1_gradient
from claims.runner import Runner, dataset, load_member, members
from claims.verdict import bound_part, claim, difference_part, figure_part, fmt


def nll(logits: jax.Array, Y: jax.Array) -> jax.Array:
    """Per-row negative log-likelihood."""
    return jax.nn.logsumexp(logits, -1) - jnp.take_along_axis(logits, Y[:, None], 1)[:, 0]


def batch_stat_nll(
    model: nn.Module, variables: Any, X: np.ndarray, Y: np.ndarray, size: int
) -> float:
    """val NLL when each batch of `size` rows (shuffled with seed 0) is normalised with its own
    statistics (BatchNorm in training mode), as a network that never kept running statistics;
    the last incomplete batch is dropped."""
    order = np.random.default_rng(0).permutation(len(X))
    n = len(X) // size * size
    Xb = jnp.asarray(X[order[:n]].reshape(-1, size, X.shape[1]))
    Yb = jnp.asarray(Y[order[:n]].reshape(-1, size))

    @jax.jit
    def one(x, y):
        logits, _ = model.apply(variables, x, train=True, mutable=["batch_stats"])
        return nll(logits, y)

    return float(jnp.mean(jax.lax.map(lambda xy: one(*xy), (Xb, Yb), batch_size=256)))


def recalibrated(model: nn.Module, variables: Any, X_train: np.ndarray) -> Any:
    """The variables with BatchNorm's statistics replaced by those of the whole training split
    (one training-mode pass with momentum 1, so the running values become the batch's)."""
    _, new = model.clone(bn_momentum=1.0).apply(
        variables, jnp.asarray(X_train), train=True, mutable=["batch_stats"]
    )
    return {**variables, "batch_stats": new["batch_stats"]}


def eval_nll(model: nn.Module, variables: Any, X: np.ndarray, Y: np.ndarray) -> float:
    """val NLL in evaluation mode (BatchNorm's stored statistics)."""
    return float(jnp.mean(nll(model.apply(variables, jnp.asarray(X), train=False), jnp.asarray(Y))))


def erased_input(model: nn.Module, variables: Any, X: np.ndarray) -> float:
    """Largest |BatchNorm output - its bias| over single-example batches of the rows of `X`:
    0 when normalising one example erases it (x - mean(x) = 0)."""

    def post_bn(x_1xT: jax.Array) -> jax.Array:
        _, state = model.apply(
            variables, x_1xT[None], train=True, mutable=["batch_stats", "intermediates"]
        )
        return state["intermediates"]["preact_BxH"][0][0]

    bias = variables["params"]["BatchNorm_0"]["bias"]
    return float(jnp.abs(jax.vmap(post_bn)(jnp.asarray(X)) - bias).max())


def bn_evaluations(run: Runner) -> dict[str, list[float]]:
    """For each seed's `mlp` model: val with running statistics, with each batch's statistics
    (32 and 1), with statistics recalibrated on the training split; and, for a batch of one,
    the batch variance and the share of non-finite logits at eps 1e-5 and at eps 0."""
    out: dict[str, list[float]] = {}
    ds = dataset(run.data, 3)
    (Xt, _), (Xv, Yv) = ds.split("train"), ds.split("val")
    for m in members(block_sweep(run), model__block_size=3):
        loaded = load_member(m)
        model, variables = loaded.model, loaded.variables
        row = {
            "running": eval_nll(model, variables, Xv, Yv),
            "batch_32": batch_stat_nll(model, variables, Xv, Yv, 32),
            "batch_1": batch_stat_nll(model, variables, Xv, Yv, 1),
            "recalibrated": eval_nll(model, recalibrated(model, variables, Xt), Xv, Yv),
        }
        row["erased"] = erased_input(model, variables, Xv[:100])
        x1 = jnp.asarray(Xv[:1])
        for eps in (1e-5, 0.0):
            logits, _ = model.clone(bn_eps=eps).apply(
                variables, x1, train=True, mutable=["batch_stats"]
            )
            row[f"nonfinite_eps_{eps:g}"] = float(jnp.mean(~jnp.isfinite(logits)))
        for key, value in row.items():
            out.setdefault(key, []).append(value)
    return out


def claim_running_stats(run: Runner, ev: dict[str, list[float]]) -> dict[str, Any]:
    """val with running statistics, per-batch statistics (32, 1) and recalibrated ones."""
    running, recal, one = ev["running"], ev["recalibrated"], ev["batch_1"]
    gap = [a - b for a, b in zip(one, running, strict=True)]
    parts = [
        figure_part("running statistics give the global normalisation the model was trained "
                    "toward: val equals the recalibrated model's (difference, tolerance 0.01)",
                    statistics.mean(a - b for a, b in zip(running, recal, strict=True)), 0.0, 0.01),
        difference_part("normalising over a single example is worse", one, running, +1,
                        paired=True),
        bound_part("… only slightly worse (by less than 0.1 nats)", statistics.mean(gap), 0.1,
                   below=True),
    ]  # fmt: skip
    table = [["BatchNorm statistics at evaluation", "val"],
             ["running (kept during training, momentum 0.001)", fmt(running)],
             ["recalibrated over the whole training split", fmt(recal)],
             ["each evaluation batch of 32", fmt(ev["batch_32"])],
             ["each example alone (batch of 1)", fmt(one)]]  # fmt: skip
    why = (
        f"val with the running statistics is {fmt(running)}, with recalibrated ones "
        f"{fmt(recal)}; a batch of one normalises every hidden unit to its bias, so the model "
        f"ignores its input and val rises by {statistics.mean(gap):.3f} nats"
    )
    return claim(
        "running_stats",
        "Running statistics",
        "Using running stats → … great names. Normalizing over single example → … slightly "
        "worse names.",
        [
            block_sweep(run)["command"] + "   (the block_size=3 members)",
            "in-process: eval_nll, batch_stat_nll(32 and 1), recalibrated() on each member",
        ],
        ev,
        table,
        parts,
        why,
    ) | {"key_figure": f"val running {fmt(running)}, batch of 1 {fmt(one)}"}


def claim_batch_of_one(run: Runner, ev: dict[str, list[float]]) -> dict[str, Any]:
    """What normalising over a batch of one does: std 0, and NaN only without epsilon."""
    erased, finite_eps = max(ev["erased"]), max(ev["nonfinite_eps_1e-05"])
    nan_no_eps = min(ev["nonfinite_eps_0"])
    parts = [
        bound_part("over a batch of one the std is 0: BatchNorm's output is its bias for every "
                   "input (largest |output − bias|)", erased, 1e-6, below=True),
        bound_part("→ NaNs/infs, with the epsilon (1e-5) the notes' BatchNorm adds (share of "
                   "non-finite logits)", finite_eps, 0.0, below=False),
    ]  # fmt: skip
    table = [["BatchNorm over one example", "value"],
             ["largest |output − bias| (100 val windows, each alone)", f"{erased:.2g}"],
             ["non-finite logits, eps 1e-5", f"{finite_eps:.2g}"],
             ["non-finite logits, eps 0", f"{nan_no_eps:.2g}"],
             ["val, each example alone (eps 1e-5)", fmt(ev["batch_1"])]]  # fmt: skip
    why = (
        f"the std over one example is exactly 0; with the epsilon {finite_eps:.0%} of the "
        f"logits are non-finite, without it {nan_no_eps:.0%}: with it the hidden layer is "
        "constant (BatchNorm's bias), so the model ignores its input"
    )
    return claim(
        "batch_of_one",
        "A batch of one",
        "With batch=1, dim=0 gives std≈0 → division by near-zero → NaNs/infs.",
        [
            "in-process: BatchNorm in training mode on single val windows of each block_size=3 "
            "member, eps 1e-5 and 0"
        ],
        {k: ev[k] for k in ("erased", "nonfinite_eps_1e-05", "nonfinite_eps_0")},
        table,
        parts,
        why,
    ) | {"key_figure": f"finite with eps (NaN share {nan_no_eps:.0%} without)"}


def claim_b1(run: Runner) -> dict[str, Any]:
    """The gradient of a hidden bias placed before BatchNorm, in float32, on one batch."""
    ds = dataset(run.data, 3)
    X, Y = ds.split("train")
    rows = np.random.default_rng(0).choice(len(X), 32, replace=False)
    g = b1_gradient(jnp.asarray(X[rows]), jnp.asarray(Y[rows]), ds.vocab.size)
    parts = [
        bound_part("the gradient of b1 is zero: max |dL/db1| relative to the RMS of the other "
                   "gradients", g["ratio"], 1e-6, below=True),
        bound_part("any constant shift from b1 is subtracted: largest change of the logits when "
                   "b1 grows by 5", g["max_logit_change_b1_plus_5"], 1e-4, below=True),
    ]  # fmt: skip
    table = [["measure (one batch of 32, float32)", "value"],
             ["max |dL/db1|", f"{g['max_abs_grad_b1']:.2e}"],
             ["RMS of the other gradients", f"{g['rms_other_grads']:.2e}"],
             ["ratio", f"{g['ratio']:.2e}"],
             ["largest logit change, b1 + 5", f"{g['max_logit_change_b1_plus_5']:.2e}"]]  # fmt: skip
    why = (
        f"dL/db1 = sum over the batch of dL/d(preact), which BatchNorm's backward makes 0: "
        f"measured {g['ratio']:.1e} of the other gradients' scale (float32 rounding)"
    )
    return claim(
        "b1",
        "Removing b1",
        "Why remove bias b1 after adding BatchNorm? Any constant shift from b1 is immediately "
        "subtracted by the -bnmean term.",
        ["in-process: b1_gradient() on BiasBatchNormMLP (claims.exact)"],
        g,
        table,
        parts,
        why,
    ) | {"key_figure": f"|dL/db1| / RMS(other grads) = {g['ratio']:.1e}"}
