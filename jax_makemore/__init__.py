"""jax_makemore: makemore's character-level language models, rebuilt functionally in JAX/Flax.

Array names carry their shapes as suffixes (`X_NxT`, `logits_BxTxV`). The letters:

    B  rows of a batch: context windows (windows layout) or words (sequences layout)
    T  positions of one model input row: the window width `block_size`, or `L`
    L  padded word length of the sequences layout: `seq_len` = longest word + 1
    N  rows of a whole split
    V  vocabulary size: the data's characters + the boundary token
    E  embedding width (`n_embd`)
    C  features per position inside a model (a residual stream, a WaveNet level's input)
    H  hidden units (`n_hidden`, `n_embd2`)
    A  attention heads, D = C / A features per head (transformer.py)
    K  train steps fused into one compiled chunk
    M  members of a sweep trained together
    R  rows still generating in a sampling phase; S the sampler's state row; G generated
       positions (`max_len`)

A module may define a further letter for its own intermediates; its docstring says so.
"""

from importlib import resources
from pathlib import Path

__version__ = "0.1.0"

#: The shipped default data set: package data (jax_makemore/datasets/names.txt), so an install
#: from a wheel finds it from any directory. A wheel installs as files, so this is a real path.
DEFAULT_DATA_PATH = Path(str(resources.files(__name__) / "datasets" / "names.txt"))
