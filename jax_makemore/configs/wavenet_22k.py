"""The WaveNet lecture's hierarchical model at the size of the flat context-8 MLP (~22k
parameters: n_embd 10, n_hidden 68), trained like `wavenet`. With
`--config.model.bn_over_time=False` its BatchNorm takes statistics over the batch axis only, per
(time, channel): the lecture's bug, kept to show what the fix is worth."""

from jax_makemore.config import base_config


def get_config():
    config = base_config("wavenet")
    config.model.n_embd = 10
    config.model.n_hidden = 68
    config.lr_decay_steps = 150_000
    return config
