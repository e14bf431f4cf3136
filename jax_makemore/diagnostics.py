"""Training diagnostics of the third lecture, measured inside the compiled chunk.

With `--config.log_diagnostics=True` the chunk's first step also collects the model's sown
'intermediates' and measures (`measure`):

* tanh outputs (sown names starting with `h_`): the saturated fraction |h| > 0.97, mean, std and
  a histogram over [-1, 1];
* gradients of every weight matrix (params with ndim >= 2: embeddings and kernels): mean, std and
  a histogram over [min, max];
* the update-to-data ratio log10(std(update) / std(param)) of every weight matrix, where the
  update is what the optimizer applied (`lr * grad` for plain SGD) and `param` is the value the
  gradient was taken at. About -3 is healthy (the lecture's guide line).

Chunks then also end at multiples of `diagnostics_every`, so each measured step starts a chunk:
the other steps run the plain, unchanged train step (no per-step branch, which on a GPU would
cost a device-to-host sync every step), and the measurement comes back with the chunk's losses
in the same host transfer. `record` turns it into a JSON line of `diagnostics.jsonl`.
All functions here are pure and take arrays, so each is tested against NumPy.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jax_makemore import rundir
from jax_makemore.errors import UserError

#: |tanh| above this counts as saturated (the lecture's threshold: gradient 1 - h^2 < 0.06).
SATURATION_THRESHOLD = 0.97
#: Bins of every histogram.
NUM_BINS = 50
#: File the training loop appends one JSON object per measured step to.
FILENAME = rundir.DIAGNOSTICS_FILE


def saturated_fraction(h: jax.Array, threshold: float = SATURATION_THRESHOLD) -> jax.Array:
    """Fraction of entries with |h| > threshold."""
    return jnp.mean(jnp.abs(h) > threshold)


def histogram(x: jax.Array, lo: jax.Array, hi: jax.Array, bins: int = NUM_BINS) -> jax.Array:
    """Counts of `x` in `bins` equal bins over [lo, hi] (lo/hi may be traced), like
    `np.histogram(x, bins, (lo, hi))`: the last bin is closed, values outside are dropped."""
    x = jnp.ravel(x).astype(jnp.float32)
    width = jnp.maximum(hi - lo, jnp.finfo(jnp.float32).tiny)
    idx = jnp.floor((x - lo) / width * bins).astype(jnp.int32)
    idx = jnp.where(x == hi, bins - 1, idx)  # the right edge belongs to the last bin
    inside = (x >= lo) & (x <= hi)
    return jnp.zeros((bins,), jnp.int32).at[jnp.where(inside, idx, 0)].add(inside.astype(jnp.int32))


def update_ratio(old: jax.Array, new: jax.Array) -> jax.Array:
    """log10(std(new - old) / std(old)): how large a step was relative to the parameter."""
    return jnp.log10(jnp.std(new - old) / jnp.std(old))


def path_name(path: tuple[Any, ...]) -> str:
    """'Dense_0/kernel' for a Flax tree path."""
    parts = []
    for key in path:
        part = getattr(key, "key", getattr(key, "name", getattr(key, "idx", key)))
        parts.append(str(part))
    return "/".join(parts)


def weight_matrices(tree: Any) -> dict[str, jax.Array]:
    """The leaves with ndim >= 2 (embeddings and kernels), by path name, in tree order."""
    flat = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {path_name(p): x for p, x in flat if x.ndim >= 2}


def tanh_outputs(intermediates: Any) -> dict[str, jax.Array]:
    """Sown tanh outputs: intermediates whose name starts with 'h_' (sow keeps a tuple; the
    trailing index is dropped from the name)."""
    out = {}
    for path, x in jax.tree_util.tree_flatten_with_path(intermediates)[0]:
        names = [str(getattr(k, "key", "")) for k in path]
        named = [n for n in names if n]
        if named and named[-1].startswith("h_"):
            out["/".join(named)] = x
    return out


def measure(
    old_params: Any, new_params: Any, grads: Any, intermediates: Any, bins: int = NUM_BINS
) -> dict[str, Any]:
    """All statistics of one step (see the module docstring); a dict of fixed-shape arrays."""
    tanh = {}
    for name, h in tanh_outputs(intermediates).items():
        tanh[name] = {
            "saturated": saturated_fraction(h),
            "mean": jnp.mean(h),
            "std": jnp.std(h),
            "hist": histogram(h, jnp.float32(-1.0), jnp.float32(1.0), bins),
        }
    grad = {}
    for name, g in weight_matrices(grads).items():
        lo, hi = jnp.min(g), jnp.max(g)
        grad[name] = {
            "mean": jnp.mean(g),
            "std": jnp.std(g),
            "lo": lo,
            "hi": hi,
            "hist": histogram(g, lo, hi, bins),
        }
    old, new = weight_matrices(old_params), weight_matrices(new_params)
    ratio = {name: update_ratio(old[name], new[name]) for name in old}
    return {"tanh": tanh, "grad": grad, "update_ratio": ratio}


def every_from_config(config: Any) -> int:
    """Steps between measurements: `diagnostics_every` when `log_diagnostics`, else 0 (off)."""
    if not config.get("log_diagnostics", False):
        return 0
    every = int(config.diagnostics_every)
    if every <= 0:
        raise UserError(f"config key diagnostics_every must be > 0, got {every}")
    return every


def record(diag: Any, step: int) -> dict[str, Any]:
    """A JSON-ready dict of one measurement (host arrays) taken at the step that started at
    `step` (0-based, before its update); non-finite numbers become null."""

    def to_py(x: Any) -> Any:
        x = np.asarray(x)
        if x.ndim:
            return x.tolist()
        return x.item() if np.isfinite(x) else None

    return {"step": int(step), **jax.tree.map(to_py, diag)}


def append_records(workdir: str | Path, rows: list[dict[str, Any]]) -> None:
    """Append rows to `<workdir>/diagnostics.jsonl` (process 0 only, like metrics.jsonl)."""
    if not rows or jax.process_index() != 0:
        return
    with open(Path(workdir) / FILENAME, "a", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
