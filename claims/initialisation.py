"""Initialisation: the Kaiming gain of a deep tanh MLP, and init scales with and without
BatchNorm."""

from __future__ import annotations

import math
import statistics
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from claims.exact import tanh_std_exact, tanh_std_sampled
from claims.helpers import DeepTanhMLP
from claims.runner import Runner, dataset, load_member, losses, members
from claims.verdict import (
    claim,
    difference_part,
    figure_part,
    fmt,
    mean_sd,
    part,
    stat_difference_part,
)

GAINS = (1.0, 5.0 / 3.0, 3.0)


def layer_stats(model: nn.Module, variables: Any, X_BxT: jax.Array) -> dict[str, list[float]]:
    """Per tanh layer of a DeepTanhMLP on one batch: std of the pre-activation, std of the tanh
    output and its saturated fraction (|h| > 0.97, the lecture's threshold)."""
    from jax_makemore.diagnostics import saturated_fraction

    _, state = model.apply(variables, X_BxT, train=False, mutable=["intermediates"])
    inter = state["intermediates"]
    n = model.n_layer
    return {
        "preact_std": [float(jnp.std(inter[f"preact_{i}"][0])) for i in range(n)],
        "h_std": [float(jnp.std(inter[f"h_{i}"][0])) for i in range(n)],
        "saturated": [float(saturated_fraction(inter[f"h_{i}"][0])) for i in range(n)],
    }


def deep_stats(run: Runner, record: dict[str, Any], X_BxT: jax.Array, vocab_size: int) -> dict:
    """{gain: {'init': [stats per seed], 'trained': [...], 'val': [...]}}; init from
    PRNGKey(seed) of each seed, trained from each member's checkpoint."""
    out = {}
    for gain in GAINS:
        found = members(record, model__gain=gain)
        inits, trained = [], []
        for seed in range(run.budget.seeds):
            model = DeepTanhMLP(vocab_size=vocab_size, gain=gain)
            inits.append(
                layer_stats(model, model.init(jax.random.PRNGKey(seed), X_BxT, False), X_BxT)
            )
        for m in found:
            loaded = load_member(m)
            trained.append(layer_stats(loaded.model, loaded.variables, X_BxT))
        out[gain] = {"init": inits, "trained": trained, "val": [m["loss"]["val"] for m in found]}
    return out


def per_layer(stats: list[dict[str, list[float]]], key: str, layer: int) -> list[float]:
    """One statistic of one layer, per seed."""
    return [s[key][layer] for s in stats]


def claim_kaiming(run: Runner) -> dict[str, Any]:
    """tanh's output std, then per-layer statistics of the 5-layer tanh MLP for three gains."""
    exact, sampled = tanh_std_exact(), tanh_std_sampled()
    record = run.sweep("deep_tanh", str(run.helpers["notes_deep_tanh"]),
                       {"model.gain": ",".join(repr(g) for g in GAINS)},
                       run.loop(run.budget.deep_steps))  # fmt: skip
    ds = dataset(run.data, 3)
    X, _ = ds.split("train")
    rows = np.random.default_rng(0).choice(len(X), 1000, replace=False)
    stats = deep_stats(run, record, jnp.asarray(X[rows]), ds.vocab.size)
    good = stats[5.0 / 3.0]["init"]
    worst = max((statistics.mean(per_layer(good, "preact_std", i)) for i in range(1, 5)),
                key=lambda s: abs(s - 1))  # fmt: skip
    sat = {g: [statistics.mean(s["saturated"]) for s in stats[g]["init"]] for g in GAINS}
    parts = [
        figure_part("tanh of N(0, 1) has std ≈ 0.63", exact, 0.63, 0.005),
        figure_part("gain 5/3 keeps the pre-activations' std ≈ 1 at every layer fed by a tanh "
                    "(layers 2–5; the one farthest from 1, at init)", worst, 1.0, 0.2),
        difference_part("without the gain (1) the activations shrink with depth (pre-activation "
                        "std, layer 5 against layer 1, at init)",
                        per_layer(stats[1.0]["init"], "preact_std", 4),
                        per_layer(stats[1.0]["init"], "preact_std", 0), -1, paired=True),
        difference_part("a larger gain (3) saturates more tanh units than 5/3 (mean over layers, "
                        "at init)", sat[3.0], sat[5.0 / 3.0], +1),
    ]  # fmt: skip
    table = [["gain", "layer", "pre-act std (init)", "tanh std (init)", "saturated (init)",
              "pre-act std (trained)", "tanh std (trained)", "saturated (trained)"]]  # fmt: skip
    for g in GAINS:
        for i in range(5):
            cells = [fmt(per_layer(stats[g][when], key, i), 3) for when in ("init", "trained")
                     for key in ("preact_std", "h_std", "saturated")]  # fmt: skip
            table.append([f"{g:.3g}" if i == 0 else "", str(i + 1), *cells[:3], *cells[3:]])
    vals = "; ".join(f"gain {g:.3g}: val {fmt(stats[g]['val'])}" for g in GAINS)
    why = (
        f"std(tanh(z)) = {exact:.4f} exactly ({sampled:.4f} from 10⁷ float32 draws), so the "
        f"inverse factor would be {1 / exact:.3f}, not 5/3 = 1.667; with 5/3 the pre-activation "
        f"std of layers 2–5 is at most {abs(worst - 1):.2f} from 1 (layer 1 sees the N(0, 1) "
        "embeddings, not a tanh, so its std is 5/3). After "
        f"{run.budget.deep_steps:,} steps: {vals}"
    )
    return claim(
        "kaiming", "Kaiming gain",
        "Tanh on std=1 input produces std≈0.63 output, so we boost the input by the inverse "
        "factor to keep output variance ≈1 (the 5/3 gain)",
        ["in-process: tanh_std_exact(), tanh_std_sampled()", record["command"]],
        {"tanh_std_exact": exact, "tanh_std_sampled": sampled,
         "layers": {f"{g:.4g}": stats[g] for g in GAINS}},
        table, parts, why,
    ) | {"key_figure": f"std tanh(N(0,1)) = {exact:.4f}; gain 5/3 pre-act std ≈ {worst:.2f} "
                       "at the worst layer"}  # fmt: skip


INIT_GAINS = (0.2, 1.0, 5.0 / 3.0, 5.0)


def claim_init_bn(run: Runner) -> dict[str, Any]:
    """The spread of val over init scales, with BatchNorm and without."""
    record = run.sweep("init_bn", "mlp",
                       {"model.kaiming_gain": ",".join(repr(g) for g in INIT_GAINS),
                        "model.use_batchnorm": "True,False"},
                       run.loop(run.budget.mlp_steps))  # fmt: skip
    table = [["init gain", "val with BatchNorm", "val without", "train with", "train without"]]
    val, span = {}, {}
    for bn in (True, False):
        val[bn] = {g: losses(record, "val", model__kaiming_gain=g, model__use_batchnorm=bn)
                   for g in INIT_GAINS}  # fmt: skip
        means = {g: statistics.mean(v) for g, v in val[bn].items()}
        hi, lo = max(means, key=means.get), min(means, key=means.get)
        spread = math.hypot(mean_sd(val[bn][hi])[1], mean_sd(val[bn][lo])[1])
        span[bn] = (means[hi] - means[lo], spread)
    for g in INIT_GAINS:
        train = [losses(record, "train", model__kaiming_gain=g, model__use_batchnorm=bn)
                 for bn in (True, False)]  # fmt: skip
        table.append([f"{g:.3g}", fmt(val[True][g]), fmt(val[False][g]), fmt(train[0]),
                      fmt(train[1])])  # fmt: skip
    table.append(["range of the means", fmt(span[True][0]), fmt(span[False][0]), "", ""])
    parts = [
        stat_difference_part("BatchNorm shrinks the range of val over init scales",
                             span[True][0] - span[False][0],
                             math.hypot(span[True][1], span[False][1]), -1),
        part("with BatchNorm init almost stops mattering: its best and worst init scale differ "
             "by no more than twice their spread", span[True][0] <= 2 * span[True][1],
             f"range {span[True][0]:.4f}, 2 × spread {2 * span[True][1]:.4f}"),
    ]  # fmt: skip
    why = (
        f"over init gains {', '.join(f'{g:.3g}' for g in INIT_GAINS)} val spans "
        f"{span[True][0]:.4f} with BatchNorm and {span[False][0]:.4f} without "
        f"({run.budget.mlp_steps:,} steps of the notes' 1-hidden-layer MLP)"
    )
    return claim(
        "init_bn", "Init with BatchNorm",
        "BatchNorm is so powerful that initialization almost stops mattering",
        [record["command"]], {"val": {str(bn): {f"{g:.4g}": v for g, v in val[bn].items()}
                                      for bn in val}, "range": {str(k): v for k, v in span.items()}},
        table, parts, why,
    ) | {"key_figure": f"val range over init {span[True][0]:.4f} with BN, "
                       f"{span[False][0]:.4f} without"}  # fmt: skip
