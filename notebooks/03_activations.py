# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 3. Activations, gradients and BatchNorm statistics
#
# The third lecture looks inside the MLP while it trains: the loss at initialisation, tanh
# units that saturate, BatchNorm's statistics, and the update-to-data ratio of every weight
# matrix. The package measures these inside the compiled training loop when a config sets
# `log_diagnostics=True` (the command line's `--config.log_diagnostics=True`): every
# `diagnostics_every` steps it appends one JSON line to `diagnostics.jsonl` in the workdir.
# This notebook trains four short runs, with and without BatchNorm, each from a good and a bad
# initialisation, and draws what the diagnostics recorded.

# %%
import json

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax

import jax_makemore as jm

STEPS, EVERY = 10_000, 500

# %% [markdown]
# ## Four runs with diagnostics
#
# The hidden layer's kernel is N(0, gain² / fan_in). A good init is the Kaiming gain 5/3; the
# lecture's bad one is `torch.randn` (std 1), i.e. gain √30 for the 30 inputs. Each with
# BatchNorm (`mlp`) and without (`mlp_nobn`, which has a hidden bias instead), 10,000 steps.

# %%
runs = {}
for bn_name, cfg in [("BatchNorm", "mlp"), ("no BatchNorm", "mlp_nobn")]:
    for init_name, gain in [("gain 5/3", 5 / 3), ("randn (gain √30)", float(np.sqrt(30)))]:
        c = jm.get_config(
            cfg,
            num_steps=STEPS,
            log_diagnostics=True,
            diagnostics_every=EVERY,
            model={"kaiming_gain": gain},
        )
        name = f"{bn_name}, {init_name}"
        workdir = f"runs/03_{cfg}_{'good' if gain < 2 else 'randn'}"
        runs[name] = jm.train(c, workdir=workdir, overwrite=True, progress=False)
        print(f"{name:32s} val {runs[name].losses()['val']:.4f}")


def diagnostics(run: jm.Run) -> list[dict]:
    with open(run.workdir / "diagnostics.jsonl", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


diag = {name: diagnostics(r) for name, r in runs.items()}
first = diag["BatchNorm, gain 5/3"][0]
print("one record:", {k: (list(v) if isinstance(v, dict) else v) for k, v in first.items()})

# %% [markdown]
# ## The loss at initialisation
#
# With 27 characters a model that knows nothing should say 1/27 for each: a loss of
# ln 27 = 3.30. The package's MLP scales its output layer by 0.01 (zero bias) so that the
# first logits are near 0 and the first loss is near that. With the output layer drawn from
# N(0, 1), as `torch.randn` would, the network starts confidently wrong:

# %%
data = runs["BatchNorm, gain 5/3"].data()
X_NxT, Y_N = (jnp.asarray(a) for a in data.split("train"))
xb_BxT, yb_B = X_NxT[:4096], Y_N[:4096]
model = runs["BatchNorm, gain 5/3"].model
variables = model.init(jax.random.PRNGKey(0), xb_BxT[:2], train=False)


def loss_of(variables: dict) -> float:
    logits = model.apply(variables, xb_BxT, train=False)
    return float(optax.softmax_cross_entropy_with_integer_labels(logits, yb_B).mean())


W2 = variables["params"]["Dense_1"]["kernel"]
randn_params = {
    **variables["params"],
    "Dense_1": {
        "kernel": jax.random.normal(jax.random.PRNGKey(1), W2.shape),
        "bias": jnp.zeros(W2.shape[1]),
    },
}
print(f"ln 27 = {np.log(27):.3f}")
print(f"initial loss, output layer x 0.01: {loss_of(variables):.3f}")
print(f"initial loss, output layer N(0,1): {loss_of({**variables, 'params': randn_params}):.3f}")

# %% [markdown]
# ## tanh saturation
#
# A tanh unit with |h| > 0.97 passes back less than 6% of its gradient (1 - h² < 0.06); a
# unit saturated on every example never learns. The histograms of the hidden tanh outputs at
# step 0, and the saturated fraction over training:

# %%
fig, axes = plt.subplots(1, 2, figsize=(12, 4))
edges = np.linspace(-1, 1, 51)
for name, rows in diag.items():
    t = rows[0]["tanh"]["h_BxH"]
    axes[0].stairs(t["hist"], edges, label=f"{name}: {100 * t['saturated']:.0f}% saturated")
    axes[1].plot(
        [r["step"] for r in rows], [r["tanh"]["h_BxH"]["saturated"] for r in rows], label=name
    )
axes[0].set_title("tanh outputs at step 0 (one batch of 32 x 200)")
axes[0].set_xlabel("h")
axes[0].legend(fontsize=8)
axes[1].set_title("fraction of |h| > 0.97")
axes[1].set_xlabel("step")
axes[1].legend(fontsize=8)
plt.show()

# %% [markdown]
# The bad init without BatchNorm starts with most units saturated, and they stay saturated;
# even the good init leaves a fifth of them there without BatchNorm. With BatchNorm the
# pre-activations are normalised before the tanh whatever the kernel's scale, so the bad init
# starts with as few saturated units as the good one.
#
# > BatchNorm is so powerful that initialization almost stops mattering.
#
# Over these two inits, the val losses above; over a range of gains (0.2 to 5) and four seeds
# the claims report finds the spread of val over the init scale just as large with BatchNorm
# (0.0571) as without (0.0566) at 20,000 steps: the claim does not hold there
# ([claims report, row 8](../docs/experiments/notes_claims.md#8-init-with-batchnorm)).

# %%
for name, r in runs.items():
    print(f"{name:32s} train {r.losses()['train']:.4f}  val {r.losses()['val']:.4f}")

# %% [markdown]
# ## Gradients and the update-to-data ratio
#
# The lecture plots, for each weight matrix, log10(std(update) / std(weights)) and wants it
# near -3: much below, the matrix barely moves; much above, it changes too fast. The package
# records the update the optimizer applied (lr x grad for SGD; the learning rate drops 10x at
# half-way).

# %%
fig, axes = plt.subplots(1, len(diag), figsize=(16, 3.6), sharey=True)
for ax, (name, rows) in zip(axes, diag.items(), strict=True):
    for key in rows[0]["update_ratio"]:
        ax.plot([r["step"] for r in rows], [r["update_ratio"][key] for r in rows], label=key)
    ax.axhline(-3, color="k", ls="--", lw=0.8)
    ax.set_title(name, fontsize=9)
    ax.set_xlabel("step")
axes[0].set_ylabel("log10 update / data")
axes[0].legend(fontsize=7)
plt.show()

fig, ax = plt.subplots(figsize=(7, 3.5))
for name, rows in diag.items():
    g = rows[0]["grad"]["Dense_0/kernel"]
    ax.stairs(g["hist"], np.linspace(g["lo"], g["hi"], 51), label=f"{name}: std {g['std']:.1e}")
ax.set_title("gradient of the hidden kernel at step 0")
ax.legend(fontsize=8)
plt.show()
for name, rows in diag.items():
    first_half = [r["update_ratio"]["Dense_0/kernel"] for r in rows if 0 < r["step"] < STEPS // 2]
    print(
        f"{name:32s} hidden kernel: mean log10 update/data {np.mean(first_half):.2f} (first half)"
    )

# %% [markdown]
# BatchNorm does not make the bad init free: its output does not change when the kernel is
# scaled, so the kernel's gradient shrinks as the kernel grows, and the √30 kernel, 3.3 times
# larger, moves about ten times less relative to its size (the blue line of the second
# panel sits near -3.7 instead of -2.7). After 10,000 steps it is behind the good init.

# %% [markdown]
# ## BatchNorm's running statistics
#
# During training each BatchNorm layer keeps a running mean and variance of its input (in the
# `batch_stats` collection, momentum 0.001 per step) for evaluation. After 10,000 steps they
# are compared with the statistics of the whole training split computed from the trained
# weights (the lecture's "calibrate after training"):

# %%
r = runs["BatchNorm, gain 5/3"]
p, stats = r.variables["params"], r.variables["batch_stats"]["BatchNorm_0"]
hpreact_NxH = p["Embed_0"]["embedding"][X_NxT].reshape(X_NxT.shape[0], -1) @ p["Dense_0"]["kernel"]
fig, axes = plt.subplots(1, 2, figsize=(10, 4))
for ax, key, exact in [
    (axes[0], "mean", hpreact_NxH.mean(0)),
    (axes[1], "var", hpreact_NxH.var(0)),
]:
    ax.scatter(np.asarray(exact), np.asarray(stats[key]), s=8)
    lo, hi = float(exact.min()), float(exact.max())
    ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
    ax.set_xlabel(f"{key} over the whole training split")
    ax.set_ylabel(f"running {key}")
plt.show()
rel = jnp.abs(stats["var"] - hpreact_NxH.var(0)) / hpreact_NxH.var(0)
print(f"running var within {100 * float(jnp.median(rel)):.1f}% of the split's (median over units)")

calibrated = {
    **r.variables,
    "batch_stats": {"BatchNorm_0": {"mean": hpreact_NxH.mean(0), "var": hpreact_NxH.var(0)}},
}
Xva_NxT, Yva_N = (jnp.asarray(a) for a in data.split("val"))
for name, v in [("running", r.variables), ("calibrated", calibrated)]:
    logits = r.model.apply(v, Xva_NxT, train=False)
    print(
        f"val with {name} statistics: "
        f"{float(optax.softmax_cross_entropy_with_integer_labels(logits, Yva_N).mean()):.4f}"
    )

# %% [markdown]
# The two give the same val to a few thousandths, as the claims report finds over four seeds
# ([row 9](../docs/experiments/notes_claims.md#9-running-statistics)).

# %% [markdown]
# The package draws the same diagnostics itself: `run.figures()` returns the pictures of the
# `plot` command for a run (here the BatchNorm run with the good init), by name.

# %%
figures = runs["BatchNorm, gain 5/3"].figures()
print(sorted(figures))
for key in ("activations", "updates"):
    if key in figures:
        display(figures[key])  # noqa: F821 (IPython's display)
plt.close("all")
