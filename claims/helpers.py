"""Helper models that exist only for a claim, registered through
`jax_makemore.models.register_model`: the neural bigram fed the raw character index as one
number, the third lecture's 5-layer tanh MLP and an MLP that keeps its hidden bias before
BatchNorm; and the config files through which the sweep command trains them."""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
from flax import linen as nn

from jax_makemore.config import resolve
from jax_makemore.layers import TANH_GAIN, BatchNorm, kaiming_normal
from jax_makemore.models import ModelSpec, register_model


class RawIntBigram(nn.Module):
    """The 'lie about distances' bigram: logits = x * w + b with x the previous character's
    index as one float, instead of one_hot(x) @ W. W ~ N(0, 1) as the notes' bigram."""

    vocab_size: int
    block_size: int = 1

    @nn.compact
    def __call__(self, idx_BxT: jax.Array, train: bool) -> jax.Array:
        x_Bx1 = idx_BxT[:, -1:].astype(jnp.float32)
        return nn.Dense(self.vocab_size, kernel_init=nn.initializers.normal(1.0))(x_Bx1)


class DeepTanhMLP(nn.Module):
    """The third lecture's deep net: embeddings, `n_layer` x (Linear -> tanh) of `n_hidden`
    units with Kaiming init of gain `gain` and zero biases, then a small output layer. Sows
    every pre-activation (`preact_L`) and tanh output (`h_L`)."""

    vocab_size: int
    block_size: int = 3
    n_embd: int = 10
    n_hidden: int = 100
    n_layer: int = 5
    gain: float = TANH_GAIN

    @nn.compact
    def __call__(self, idx_BxT: jax.Array, train: bool) -> jax.Array:
        B, T = idx_BxT.shape
        emb_BxTxE = nn.Embed(
            self.vocab_size, self.n_embd, embedding_init=nn.initializers.normal(1.0)
        )(idx_BxT)
        h_BxH = emb_BxTxE.reshape(B, T * self.n_embd)
        for layer in range(self.n_layer):
            preact_BxH = nn.Dense(self.n_hidden, kernel_init=kaiming_normal(self.gain))(h_BxH)
            self.sow("intermediates", f"preact_{layer}", preact_BxH)
            h_BxH = jnp.tanh(preact_BxH)
            self.sow("intermediates", f"h_{layer}", h_BxH)
        return nn.Dense(self.vocab_size, kernel_init=nn.initializers.normal(0.01))(h_BxH)


class BiasBatchNormMLP(nn.Module):
    """The notes' MLP before `b1` was removed: Dense *with* bias -> BatchNorm -> tanh -> Dense."""

    vocab_size: int
    block_size: int = 3
    n_embd: int = 10
    n_hidden: int = 200

    @nn.compact
    def __call__(self, idx_BxT: jax.Array, train: bool) -> jax.Array:
        B, T = idx_BxT.shape
        emb = nn.Embed(self.vocab_size, self.n_embd, embedding_init=nn.initializers.normal(1.0))
        x_BxTE = emb(idx_BxT).reshape(B, T * self.n_embd)
        preact_BxH = nn.Dense(self.n_hidden, kernel_init=kaiming_normal(), name="hidden")(x_BxTE)
        h_BxH = jnp.tanh(BatchNorm()(preact_BxH, train))
        return nn.Dense(self.vocab_size, kernel_init=nn.initializers.normal(0.01))(h_BxH)


HELPER_SPECS = (
    ModelSpec("notes_raw_bigram", RawIntBigram, "windows"),
    ModelSpec("notes_deep_tanh", DeepTanhMLP, "windows"),
)


def register_helpers() -> None:
    """Add the helper models to the package's model registry (in this process)."""
    for spec in HELPER_SPECS:
        register_model(spec)


def helper_config(name: str) -> ml_collections.ConfigDict:
    """The config a helper model trains with: the raw-integer bigram with the `bigram`
    config's recipe (full batch, L2 0.01, constant learning rate), the deep MLP with the
    `mlp` config's (batches of 32, SGD 0.1 then 0.01)."""
    register_helpers()
    base = "bigram" if name == "notes_raw_bigram" else "mlp"
    config, _ = resolve(base, [("model.name", name)])
    return config


def write_helper_configs(out: Path) -> dict[str, Path]:
    """Config files `--config PATH` can take: each imports `claims.helpers` (registering the
    helper models) and returns its model's config."""
    folder = out / "configs"
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for spec in HELPER_SPECS:
        path = folder / f"{spec.name}.py"
        path.write_text(
            f'"""Written by the notes-claims command: the helper model {spec.name}."""\n\n'
            "from claims.helpers import helper_config\n\n\n"
            f"def get_config():\n    return helper_config({spec.name!r})\n",
            encoding="utf-8",
        )
        paths[spec.name] = path
    return paths
