"""jax_makemore: makemore's character-level language models, rebuilt functionally in JAX/Flax."""

from pathlib import Path

__version__ = "0.1.0"

#: The repository root (configs/ and data/ live here; the package is installed editable).
REPO_ROOT = Path(__file__).resolve().parents[1]
#: The shipped default data set.
DEFAULT_DATA_PATH = REPO_ROOT / "data" / "names.txt"
