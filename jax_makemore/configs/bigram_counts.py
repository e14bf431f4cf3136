"""The count bigram of the first lecture: a normalised, add-`smoothing` table of bigram counts."""

from jax_makemore.config import base_config


def get_config():
    config = base_config("bigram_counts")
    config.num_steps = 0  # fitted by counting, not by gradient steps
    return config
