"""makemore.py's Transformer (same size: 4 layers, 4 heads, n_embd 64), regularised and
scheduled for the 2-core CPU budget: dropout 0.2, batches of 64 words, AdamW at 3e-3 with a
500-step linear warm-up and a cosine decay to 5% over 20,000 steps, weight decay 0.1 on the
weight matrices only (embeddings and kernels; not biases or LayerNorm gains), and an
exponential moving average of the params (0.999, about the last 1,000 steps) that evaluation,
sampling and scoring use. How the values were chosen: docs/experiments/transformer.md."""

from jax_makemore.config import base_config, makemore_training


def get_config():
    config = makemore_training(base_config("transformer"))
    config.model.dropout = 0.2
    config.batch_size = 64
    config.learning_rate = 3e-3
    config.lr_schedule = "cosine"
    config.warmup_steps = 500
    config.lr_min_factor = 0.05
    config.weight_decay = 0.1
    config.decay_matrices_only = True
    config.ema_decay = 0.999
    config.num_steps = 20_000
    # whole words packed end to end in rows of 24; --config.packed=False: makemore's padded rows
    config.packed, config.pack_len = True, 24
    return config
