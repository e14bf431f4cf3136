"""The neural bigram of the first lecture: one_hot(x) @ W, full-batch gradient descent at lr 50,
with the notes' L2 term 0.01 * mean(W**2) applied as the equivalent optax weight decay."""

from jax_makemore.config import base_config


def get_config():
    config = base_config("bigram")
    config.full_batch = True
    config.learning_rate = 50.0
    config.lr_decay_factor = 1.0
    config.l2_mean = 0.01
    config.num_steps = 300
    config.steps_per_call = 100
    config.eval_every = 100
    config.checkpoint_every = 300
    return config
