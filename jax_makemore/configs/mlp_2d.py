"""The MLP with 2-D character embeddings, so the embedding table can be drawn as it is
(`python -m jax_makemore.plot`): the second lecture's picture where the vowels cluster and the
boundary token sits apart. Everything else is the `mlp` config."""

from jax_makemore.config import base_config


def get_config():
    config = base_config()
    config.model.n_embd = 2
    return config
