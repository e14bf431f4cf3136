"""The Python API: what `import jax_makemore as jm` exports, for a notebook or a script.

    config = jm.get_config("mlp", num_steps=20_000, model={"n_hidden": 100})
    run = jm.train(config, workdir="runs/mlp_small")
    run.sample(10, seed=0, prefix="ma"); run.losses(); run.score(["emma"])
    again = jm.load("runs/mlp_small")

Every command is a thin parser over these same functions: `jm.train` writes the workdir the
`train` command writes, and `Run.sample` draws the words the `sample` command prints for the
same workdir, seed and arguments. Bad input raises `UserError` with the command's one-line
message; nothing here prints on stdout.
"""

from __future__ import annotations

import sys
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import ml_collections

from jax_makemore import config as config_lib
from jax_makemore import rundir
from jax_makemore.data import SPLITS, Dataset, dataset_from_config
from jax_makemore.errors import Interrupted, UserError
from jax_makemore.restore import LoadedModel, load_trained

#: The config name of each config `get_config` returned (by object id, while it lives), so that
#: `train(config)` picks the command's default workdir `runs/<config name>`.
_CONFIG_NAMES: dict[int, str] = {}


def configs() -> list[str]:
    """The names of the named configs (`jax_makemore/configs/NAME.py`)."""
    return config_lib.available_configs()


def models() -> list[str]:
    """The names of the registered models: the package's own and those of `register_model`."""
    from jax_makemore.models import model_names

    return model_names()


def get_config(name_or_path: str, **overrides: Any) -> ml_collections.ConfigDict:
    """The config `train --config NAME|PATH` resolves, with `overrides` applied as Python values
    typed and validated as `--config.KEY=VALUE` is: `num_steps=20_000`,
    `model={"n_hidden": 100}` (hyper-parameters), `model={"name": "gru"}` (another model, at its
    defaults). The result may be edited further (`config.model.n_hidden = 50`); `train`
    validates it again."""
    config, name = config_lib.load_config(name_or_path)
    config_lib.apply_values(config, overrides)
    config_lib.validate_config(config)
    _remember_name(config, name)
    return config


def _remember_name(config: ml_collections.ConfigDict, name: str) -> None:
    key = id(config)
    _CONFIG_NAMES[key] = name
    weakref.finalize(config, _CONFIG_NAMES.pop, key, None)


def _progress_mode(progress: bool | str) -> str:
    """The loop's display: a notebook's widget in Jupyter, a terminal's bar or lines elsewhere."""
    if isinstance(progress, str):
        return progress
    if not progress:
        return "off"
    in_kernel = "ipykernel" in sys.modules
    return "notebook" if in_kernel else "auto"


def train(
    config: ml_collections.ConfigDict | str,
    workdir: str | Path | None = None,
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool | str = True,
    **overrides: Any,
) -> Run:
    """Train `config` (a config from `get_config`, or a config name or path, with `overrides`
    as in `get_config`) into `workdir` (default `runs/<config name>`, as the command), and
    return the trained `Run`, ready to sample and score without a reload.

    `resume` continues the workdir's checkpoint (bit-identical to an uninterrupted run),
    `overwrite` replaces it; a workdir holding a checkpoint needs one of them. `progress`:
    True (a tqdm bar: a widget in Jupyter), False (nothing but warnings), or a mode of
    `logs.PROGRESS_MODES`. Ctrl-C (a notebook's interrupt) saves a checkpoint at the current
    step, then raises KeyboardInterrupt; `resume=True` continues it."""
    from jax_makemore.train import train_run, trained_model

    config = _resolved(config, overrides)  # the caller's config stays as it was
    name = _CONFIG_NAMES.get(id(config), "config")
    workdir = Path(workdir) if workdir is not None else Path("runs") / name
    try:
        r, results = train_run(
            config, name, workdir, resume=resume, overwrite=overwrite, num_samples=0,
            progress=_progress_mode(progress),
        )  # fmt: skip
    except Interrupted as stop:
        raise KeyboardInterrupt(
            f"training stopped by signal {stop.signum}; the checkpoint in '{workdir}' "
            "continues with resume=True"
        ) from None
    return Run(trained_model(r), workdir, results)


def init(config: ml_collections.ConfigDict | str, **overrides: Any) -> Run:
    """The config's model as training starts it, before any step (a fitted model, the count
    bigram, comes fitted): its initial loss, samples and variables, with no workdir written.
    The variables are those `train` starts from with the same seed."""
    from jax_makemore.train import build_run, trained_model

    config = _resolved(config, overrides)
    name = _CONFIG_NAMES.get(id(config), "config")
    return Run(trained_model(build_run(config, name, Path())), None, None)


def load(workdir: str | Path) -> Run:
    """The trained model of any workdir `train` wrote (the command's or `jm.train`'s), at its
    latest checkpoint: the same `Run` that `train` returns."""
    workdir = Path(workdir)
    return Run(load_trained(workdir), workdir, None)


class Run:
    """A trained model and its run directory: sample from it, score words, read its losses.

    `model` is the Flax Linen module and `variables` its params (the moving average when the
    run kept one, as `sample` and `evaluate` use) and running statistics, for
    `model.apply(run.variables, idx_BxT, train=False)`; `vocab` maps characters to ids.
    """

    def __init__(
        self, trained: LoadedModel, workdir: Path | None, results: dict[str, Any] | None
    ) -> None:
        self.trained = trained
        self.workdir = workdir
        self._results = results
        self._losses: dict[str, float | None] | None = None

    def __repr__(self) -> str:
        return (
            f"Run(workdir='{self.workdir}', model={self.config.model.name!r}, "
            f"step={self.step}, params={self.num_params:,})"
        )

    @property
    def config(self) -> ml_collections.ConfigDict:
        return self.trained.config

    @property
    def model(self) -> Any:
        return self.trained.model

    @property
    def variables(self) -> dict[str, Any]:
        return self.trained.variables

    @property
    def vocab(self) -> Any:
        return self.trained.vocab

    @property
    def step(self) -> int:
        return self.trained.step

    @property
    def num_params(self) -> int:
        return int(sum(p.size for p in jax.tree.leaves(self.trained.variables["params"])))

    @property
    def results(self) -> dict[str, Any] | None:
        """The dict written to `results.json` (None while the run has not finished)."""
        if self._results is None and self.workdir is not None:
            if rundir.has_results(self.workdir):
                self._results = rundir.read_results(self.workdir)
        return self._results

    def metrics(self) -> list[dict[str, Any]]:
        """`metrics.jsonl`: one record per logged chunk (step, loss, lr, steps/s, words and
        characters seen; `split_loss` at each evaluation)."""
        return rundir.read_metrics(self._written_dir())

    def diagnostics(self) -> list[dict[str, Any]]:
        """`diagnostics.jsonl` (runs with `log_diagnostics=True`): tanh saturation, gradient
        and update-to-data statistics, one record per measurement."""
        return rundir.read_diagnostics(self._written_dir())

    def _written_dir(self) -> Path:
        if self.workdir is None:
            raise UserError("this model was not trained (jm.init): it has no run directory")
        return self.workdir

    def losses(self, splits: Sequence[str] = SPLITS) -> dict[str, float | None]:
        """Mean NLL per character of each split, re-cut exactly as in training (None for an
        empty split): what `evaluate --workdir` prints, equal to results.json's `loss` (its
        `loss_ema` when the run kept a moving average of the params)."""
        from jax_makemore.evaluate import split_losses

        if self._losses is None:
            self._losses = split_losses(self.trained, SPLITS)
        return {s: self._losses[s] for s in splits}

    def sample(
        self,
        num: int = 10,
        *,
        seed: int = 0,
        temperature: float = 1.0,
        top_k: int = 0,
        prefix: str = "",
        max_len: int = 0,
        **options: Any,
    ) -> list[str]:
        """`num` words, the ones `sample --workdir W --num N --seed S ...` prints for the same
        arguments. `max_len` (generated characters) and `min_len` (the whole word) draw whole
        words within those lengths from the model's distribution renormalised over them;
        `max_len` 0: no limit, only a cap at the longest word of the data + 10. Further
        keyword options are the sampler's (`sample.sample_words`: `min_len`, `new`, `unique`,
        `exclude`, `recompute`, `speedups`)."""
        from jax_makemore.sample import sample_words

        return sample_words(
            self.trained, jax.random.PRNGKey(seed), num, temperature=temperature,
            top_k=top_k, prefix=prefix, max_len=max_len, **options,
        )  # fmt: skip

    def most_likely(
        self, num: int = 10, *, prefix: str = "", new: bool = False, **limits: Any
    ) -> list[tuple[str, float]]:
        """The `num` words of highest probability under the model (the end token included),
        each with its NLL, most likely first: `sample --top N` (exact best-first search within
        a budget of expansions, else beam search). `new`: no word of the data file; `limits`:
        `min_len`, `max_len`, `exclude`, `budget`, `beam_width` (`search.most_likely`)."""
        from jax_makemore.search import most_likely

        return most_likely(self.trained, num, prefix=prefix, new=new, **limits)

    def score(self, words: Sequence[str]) -> list[dict[str, Any]]:
        """Each word's NLL as `evaluate --score` prints it: {"word", "nll" (total over
        len(word) + 1 predictions, the end token included), "nll_per_char"}."""
        from jax_makemore.evaluate import score_words

        if isinstance(words, str):
            words = [words]
        return score_words(self.trained, list(words))

    def next_char_probs(self, prefix: str = "") -> dict[str, float]:
        """{character: probability} of the character after `prefix`, summing to 1; the
        boundary token's entry (`run.vocab.boundary`, usually ".") is the probability that the
        word ends there."""
        from jax_makemore.sample import next_char_probs

        p_V = next_char_probs(self.trained, prefix)
        return {c: float(p) for c, p in zip(self.vocab.itos, p_V, strict=True)}

    def masses(self) -> dict[str, Any]:
        """`evaluate --mass`: the probability the model puts on the training words and on the
        held-out words, summed (the exact expected shares of samples that copy them), and the
        seen-word preference."""
        from jax_makemore.evaluate import split_masses

        return split_masses(self.trained)

    def label(self, words: Sequence[str]) -> list[str]:
        """'in train', 'in val/test' or 'new' for each word (the labels `train` prints)."""
        from jax_makemore.sample import label_words

        t = self.trained
        if t.train_words is None or t.heldout_words is None:
            raise UserError(f"data file '{t.config.data_path}' is missing: no labels")
        return label_words(words, t.train_words, t.heldout_words)

    def figures(self) -> dict[str, Any]:
        """The pictures the `plot` command draws for this run, as matplotlib Figures by file
        stem ("loss", "bigram", "embedding", "activations", "updates": those that apply),
        for a notebook to show (needs matplotlib)."""
        from jax_makemore.plot import run_figures

        return run_figures(self._written_dir(), self.trained)

    def data(self) -> Dataset:
        """The run's data as training saw it: the vocabulary, the split words and their arrays
        (`.split("train") -> (X, Y)`), in the model's layout."""
        t = self.trained
        return dataset_from_config(t.config, vocab=t.vocab, seq_len=t.seq_len)


def figures(workdir: str | Path) -> dict[str, Any]:
    """The pictures `plot --workdir DIR` saves, as matplotlib Figures by file stem: a run's
    (see `Run.figures`) or a sweep's ("sweep", "sweep_curves")."""
    from jax_makemore.plot import run_figures

    return run_figures(workdir)


def compare_figure(workdirs: Sequence[str | Path]) -> Any:
    """The picture `plot --compare DIR ... --out FILE.png` saves: several runs' loss curves."""
    from jax_makemore.plot import compare_figure as draw

    return draw(workdirs)


def sweep(
    config: ml_collections.ConfigDict | str,
    values: dict[str, Sequence[Any]],
    workdir: str | Path | None = None,
    *,
    resume: bool = False,
    overwrite: bool = False,
    max_parallel: int | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """`sweep --config NAME --sweep.KEY=v1,v2 ...`: train every combination of `values`
    ({dotted key: values}, e.g. {"model.n_hidden": [50, 100], "seed": range(3)}), the members
    of one shape as one vmapped program, into `workdir` (default `runs/sweep_<config name>`).
    Returns sweep.json's record; each member is a run directory under `workdir/members/`
    (`load` reads it)."""
    from jax_makemore.sweep import run_sweep
    from jax_makemore.sweep_members import expand_members, format_value

    config = _resolved(config, overrides)
    name = _CONFIG_NAMES.get(id(config), "config")
    swept = [(key, ",".join(format_value(v) for v in vs)) for key, vs in values.items()]
    members = expand_members(config, swept)
    workdir = Path(workdir) if workdir is not None else Path("runs") / f"sweep_{name}"
    try:
        return run_sweep(
            members, name, workdir, resume=resume, overwrite=overwrite,
            max_parallel=max_parallel,
        )  # fmt: skip
    except Interrupted as stop:
        raise KeyboardInterrupt(
            f"sweep stopped by signal {stop.signum}; resume=True finishes '{workdir}'"
        ) from None


def ensemble_losses(
    workdirs: Sequence[str | Path], splits: Sequence[str] = SPLITS
) -> dict[str, Any]:
    """`evaluate --ensemble DIR ...`: the split losses of the mean of several runs' predicted
    probabilities (a sweep's workdir counts as its finished members), beside each member's."""
    from jax_makemore.evaluate import ensemble_losses as score

    return score(workdirs, splits)


def lr_find(
    config: ml_collections.ConfigDict | str,
    *,
    min_lr: float = 1e-3,
    max_lr: float = 1.0,
    num_steps: int = 1000,
    repeats: int = 4,
    **overrides: Any,
) -> Any:
    """`lr_find --config NAME`: the learning rate grown exponentially over one short run of
    the config's own train step, `repeats` runs side by side; the result has `lrs_S`,
    `losses_RxS`, `smoothed_S`, `suggested_lr` (`lr_find.lr_find_figure(result, title)`
    draws it)."""
    from jax_makemore.lr_find import lr_find as search

    config = _resolved(config, overrides)
    return search(config, min_lr, max_lr, num_steps, repeats)


def _resolved(config: ml_collections.ConfigDict | str, overrides: dict[str, Any]):
    """A validated copy of `config` (or of the named config) with `overrides` applied."""
    if isinstance(config, str):
        return get_config(config, **overrides)
    if not isinstance(config, ml_collections.ConfigDict):
        raise UserError(f"expected a config from get_config or a config name, got {config!r}")
    name = _CONFIG_NAMES.get(id(config))
    config = config.copy_and_resolve_references()
    config_lib.apply_values(config, overrides)
    config_lib.validate_config(config)
    if name is not None:
        _remember_name(config, name)
    return config


def load_data(config: ml_collections.ConfigDict | str) -> Dataset:
    """The data a config trains on: its vocabulary (`.vocab`), split words (`.words`: train,
    val, test) and arrays in the model's layout (`.split(name) -> (X, Y)`)."""
    if isinstance(config, str):
        config = get_config(config)
    return dataset_from_config(config)
