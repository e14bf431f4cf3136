"""A trained model restored from a workdir, for the commands that use one (sample, evaluate,
plot): the module rebuilt from the checkpoint's config, its variables (params and running
statistics, no optimizer state), and the words it was trained and validated on."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import ml_collections
from flax import linen as nn

from jax_makemore import checkpoint as ckpt
from jax_makemore.data import Vocab, read_words, split_data
from jax_makemore.errors import UserError
from jax_makemore.models import ModelSpec, get_spec
from jax_makemore.optim import averaged_params


def default_max_len(longest_word: int) -> int:
    """Cap on generated characters when none is given: the longest word of the data + 10."""
    return longest_word + 10


def variables_of(params: Any, batch_stats: Any) -> dict[str, Any]:
    """The `variables` of `model.apply`: params, and batch_stats when the model has any."""
    variables = {"params": params}
    if batch_stats:
        variables["batch_stats"] = batch_stats
    return variables


@dataclasses.dataclass
class LoadedModel:
    """A trained model restored from a workdir, ready for evaluation and sampling."""

    config: ml_collections.ConfigDict
    config_name: str
    vocab: Vocab
    step: int
    seq_len: int  # padded word length of the data it was built for (sequences layout)
    spec: ModelSpec
    model: nn.Module
    variables: dict[str, Any]
    train_words: set[str] | None  # None when the data file is gone
    heldout_words: set[str] | None

    @property
    def layout(self) -> str:
        """The data layout the model reads: `windows` or `sequences` (its spec's)."""
        return self.spec.layout

    @property
    def input_len(self) -> int:
        """Length T of the model's input rows: its window width, or its padded word length L."""
        return self.config.model.block_size if self.layout == "windows" else self.seq_len

    @property
    def default_max_len(self) -> int:
        """Cap on generated characters when none is given: the longest word of the data + 10."""
        return default_max_len(self.seq_len - 1)


def load_trained(workdir: str | Path) -> LoadedModel:
    """Restore the latest checkpoint of `workdir` (params and batch_stats only; the averaged
    params in place of the raw ones when the run kept an average)."""
    meta = ckpt.restore_meta(workdir)
    config = meta.config
    spec = get_spec(config.model.name)  # registered: restore_meta checked
    model = spec.build(config.model, meta.vocab.size, meta.seq_len)
    state = ckpt.restore_state(workdir, meta.step)
    # the moving average of the params when the run kept one (config key ema_decay)
    averaged = averaged_params(state.get("opt_state"))
    params = state["params"] if averaged is None else averaged
    variables = variables_of(params, state.get("batch_stats"))
    train_words = heldout_words = None
    if Path(config.data_path).is_file():
        try:
            encoding = config.get("encoding", "utf-8")  # checkpoints older than the key
            words = read_words(config.data_path, config.max_word_length, encoding=encoding)
            splits = split_data(words, config.split_seed, config.split_fractions, config.split_by)
            train_words, heldout_words = set(splits[0]), set(splits[1]) | set(splits[2])
        except UserError:  # the file changed since training: no new/seen labels, still usable
            pass
    return LoadedModel(
        config=config,
        config_name=meta.config_name,
        vocab=meta.vocab,
        step=meta.step,
        seq_len=meta.seq_len,
        spec=spec,
        model=model,
        variables=variables,
        train_words=train_words,
        heldout_words=heldout_words,
    )
