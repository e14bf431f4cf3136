"""Resolve `--config NAME|PATH` to an ml_collections.ConfigDict and apply `--config.KEY=VALUE`.

`NAME` is a file `jax_makemore/configs/NAME.py`, package data read with importlib.resources (so
an install from a wheel has them); a path to any `.py` file with `get_config()` works too.
Overrides follow the Flax examples' convention and are typed by the default's type; an unknown
key or a value of the wrong type is a one-line UserError naming the key.
"""

from __future__ import annotations

import ast
import difflib
import importlib.util
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import ml_collections

from jax_makemore import DEFAULT_DATA_PATH
from jax_makemore.errors import UserError
from jax_makemore.models import check_packable, get_spec, model_config, validate_model_config

#: The named configs (the `jax_makemore.configs` package), as an importlib.resources Traversable.
CONFIG_DIR = resources.files("jax_makemore.configs")

#: Keys of the training loop that must be positive integers when the model takes steps.
POSITIVE_INT_KEYS = ("batch_size", "num_steps", "steps_per_call")
#: Top-level keys that fix the words of each split: the data file, the longest line it may
#: have, and the shuffle that cuts it. Runs that agree on them train and evaluate on the
#: same words (a resumed run, the members of an ensemble, a sweep's group).
DATA_KEYS = ("data_path", "split_seed", "split_fractions", "split_by", "max_word_length")


def available_configs() -> list[str]:
    """The names `--config NAME` accepts: the modules of `jax_makemore.configs`."""
    files = (p.name for p in CONFIG_DIR.iterdir() if p.is_file())
    return sorted(n[:-3] for n in files if n.endswith(".py") and not n.startswith("_"))


def base_config(model: str = "mlp") -> ml_collections.ConfigDict:
    """Keys every config has, with `config.model` set to model `model` at its defaults; a
    config file starts from this and changes what it needs. The model's own keys (sizes,
    BatchNorm, ...) are the defaults of its module in `jax_makemore/models/`."""
    c = ml_collections.ConfigDict()
    c.model = model_config(model)  # name + that model's hyper-parameters
    c.data_path = str(DEFAULT_DATA_PATH)
    c.encoding = "utf-8"  # of the data file (utf-8 drops a byte-order mark); e.g. cp1252
    c.max_word_length = 10_000  # longer lines are refused, naming the line
    c.seed = 1337  # init, batches, dropout and the samples printed at the end
    c.split_seed = 1337  # the shuffle that cuts the words into train/val/test
    c.split_fractions = (0.8, 0.1, 0.1)
    # word: shuffle distinct words, so no word is in two splits | line: the lectures' split,
    # random.Random(split_seed).shuffle of the lines (a repeated name can be in train and val)
    c.split_by = "word"
    # optimisation
    c.num_steps = 200_000
    c.batch_size = 32  # windows (windows layout) or words (sequences layout)
    c.full_batch = False  # True: every step uses the whole training split (the bigram lecture)
    # sequence models: pack whole words end to end into rows of pack_len positions (widened to
    # the longest word + 1), as many rows as hold batch_size words per step on average
    c.packed = False
    c.pack_len = 64
    c.optimizer = "sgd"  # sgd | adamw
    c.learning_rate = 0.1
    c.lr_schedule = "step"  # step: x lr_decay_factor at lr_decay_steps | cosine: to lr_min_factor
    c.lr_decay_factor = 0.1
    c.lr_decay_steps = -1  # -1: half of num_steps
    c.lr_min_factor = 0.0  # cosine: the final learning rate as a fraction of learning_rate
    c.warmup_steps = 0  # linear warm-up from 0 before the schedule
    c.adam_b1 = 0.9
    c.adam_b2 = 0.999
    c.adam_eps = 1e-8
    c.weight_decay = 0.0  # decoupled decay via optax.add_decayed_weights / adamw
    c.decay_matrices_only = True  # False: decay every parameter, as torch's AdamW does
    c.ema_decay = 0.0  # > 0: also keep an exponential moving average of the params (evaluated,
    # saved, and used by sample and evaluate); 0.999 averages over about the last 1,000 steps
    c.l2_mean = 0.0  # the notes' `l2_mean * mean(W**2)` term, as equivalent per-matrix weight decay
    # loop
    c.steps_per_call = 1000  # steps fused into one compiled lax.scan
    c.num_devices = 0  # data-parallel devices (jax.sharding mesh axis "data"); 0 = all visible
    c.eval_every = 50_000
    c.eval_batch_size = 8192
    # rows (windows, or words of a sequence model) each split is evaluated on during training:
    # a fixed sample drawn with split_seed when the split has more (results.json then says how
    # many in eval_rows); names.txt's splits are smaller, so they are scored whole
    c.eval_max_rows = 500_000
    c.checkpoint_every = 50_000
    c.keep_checkpoints = 2
    c.num_samples = 10  # printed at the end of training
    c.tensorboard = True  # TensorBoard event file in the workdir (tensorboard --logdir runs)
    c.divergence_loss = 100.0  # a chunk whose loss is NaN, inf or above this stops the run
    # diagnostics (jax_makemore/diagnostics.py): tanh saturation, gradient and update statistics
    c.log_diagnostics = False  # measured inside the compiled chunk, written to diagnostics.jsonl
    c.diagnostics_every = 1000  # steps between measurements (when log_diagnostics)
    return c


def makemore_training(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """makemore.py's training defaults for its sequence models, in place: batches of 32 words,
    AdamW at a constant 5e-4, betas (0.9, 0.99), eps 1e-8, weight decay 0.01 on every
    parameter (as torch.optim.AdamW over model.parameters())."""
    config.batch_size = 32
    config.optimizer = "adamw"
    config.learning_rate = 5e-4
    config.lr_decay_factor = 1.0
    config.adam_b1, config.adam_b2, config.adam_eps = 0.9, 0.99, 1e-8
    config.weight_decay = 0.01
    config.decay_matrices_only = False
    config.steps_per_call = 500
    config.eval_every = 2_500
    config.checkpoint_every = 2_500
    return config


def load_config(name_or_path: str) -> tuple[ml_collections.ConfigDict, str]:
    """Return (config, config name) for a config name or a path to a config file."""
    path = Path(name_or_path)
    if name_or_path.endswith(".py") or path.is_file():
        if not path.is_file():
            raise UserError(f"config file '{name_or_path}' does not exist")
        name = path.stem
    else:
        path = Path(str(CONFIG_DIR / f"{name_or_path}.py"))  # a wheel installs as files
        if name_or_path not in available_configs():
            raise UserError(
                f"unknown config '{name_or_path}'; available: {', '.join(available_configs())}"
            )
        name = name_or_path
    spec = importlib.util.spec_from_file_location(f"jax_makemore_config_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise UserError(f"config file '{path}' has no get_config() function")
    return module.get_config(), name


def _parse_value(key: str, text: str, default: Any) -> Any:
    def bad(kind: str) -> UserError:
        return UserError(f"--config.{key}={text!r}: expected {kind}")

    if isinstance(default, bool):
        low = text.strip().lower()
        if low in ("true", "1", "yes"):
            return True
        if low in ("false", "0", "no"):
            return False
        raise bad("true or false")
    if isinstance(default, int):
        try:
            return int(text)
        except ValueError:
            try:
                as_float = float(text)
            except ValueError:
                raise bad("an integer") from None
            if as_float.is_integer():
                return int(as_float)
            raise bad("an integer") from None
    if isinstance(default, float):
        try:
            return float(text)
        except ValueError:
            raise bad("a number") from None
    if isinstance(default, tuple | list):
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            raise bad(f"a tuple like {tuple(default)}") from None
        if not isinstance(value, tuple | list):
            raise bad(f"a tuple like {tuple(default)}")
        return tuple(value)
    if isinstance(default, str):
        return text
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def apply_overrides(
    config: ml_collections.ConfigDict, overrides: Sequence[tuple[str, str]]
) -> None:
    """Set each dotted `key` to `value` (a string parsed by the default's type), in place.

    `model.name` is applied first and resets `config.model` to that model's defaults, so
    `--config.model.name=gru --config.model.n_embd=32` works from any config."""
    _apply_pairs(config, overrides, _parse_value)


def _apply_pairs(
    config: ml_collections.ConfigDict,
    pairs: Sequence[tuple[str, Any]],
    convert: Callable[[str, Any, Any], Any],
) -> None:
    """Set each dotted key to `convert(key, value, default)`, in place; `model.name` first,
    which resets `config.model` to that model's defaults."""
    for key, value in pairs:
        if key == "model.name":
            if not isinstance(value, str):
                raise UserError(f"config key model.name={value!r}: expected a model name")
            with config.unlocked():
                config.model = model_config(value)
    for key, value in pairs:
        if key == "model.name":
            continue
        node, last = _parent_node(config, key)
        with config.unlocked():
            node[last] = convert(key, value, node[last])


def _coerce_value(key: str, value: Any, default: Any) -> Any:
    """A Python value for `key` checked against the default's type, as `_parse_value` types a
    string: an int where an int is (or a float with no fraction), a number where a float is,
    a tuple (from a list or tuple) where a tuple is, a bool where a bool is."""

    def bad(kind: str) -> UserError:
        return UserError(f"config key {key}={value!r}: expected {kind}")

    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise bad("True or False")
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise bad("an integer")
        if isinstance(value, float) and not value.is_integer():
            raise bad("an integer")
        return int(value)
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise bad("a number")
        return float(value)
    if isinstance(default, tuple | list):
        if not isinstance(value, tuple | list):
            raise bad(f"a tuple like {tuple(default)}")
        return tuple(value)
    if isinstance(default, str) and not isinstance(value, str):
        raise bad("a string")
    return value


def apply_values(config: ml_collections.ConfigDict, values: dict[str, Any]) -> None:
    """Set each key of `values` to a Python value, typed by its default, in place: the API's
    form of `apply_overrides`. `model={...}` sets hyper-parameters of `config.model`; a
    `model={"name": NAME}` switches the model to its defaults first, as `--config.model.name`
    does. Dotted keys (`"model.n_hidden"`) work too."""
    flat: list[tuple[str, Any]] = []
    for key, value in values.items():
        if isinstance(value, dict):
            flat += [(f"{key}.{k}", v) for k, v in value.items()]
        else:
            flat.append((key, value))
    _apply_pairs(config, flat, _coerce_value)


def _parent_node(config: ml_collections.ConfigDict, key: str) -> tuple[Any, str]:
    """(the sub-config that holds dotted `key`, its last part); an unknown key is the
    one-line error of `apply_overrides`, with its did-you-mean."""
    node = config
    parts = key.split(".")
    for depth, part in enumerate(parts):
        if part not in node and depth == 1 and parts[0] == "model":
            known = sorted(k for k in node.keys() if k != "name")
            close = difflib.get_close_matches(part, known, n=1)
            hint = f"did you mean model.{close[0]}? " if close else ""
            raise UserError(
                f"unknown config key '{key}': model {node.name!r} has no hyper-parameter "
                f"{part!r}; {hint}it has {', '.join(known)}"
            )
        if part not in node:
            known = [".".join(parts[:depth] + [k]) for k in node.keys()]
            close = difflib.get_close_matches(key, known, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise UserError(f"unknown config key '{key}'{hint}")
        if depth < len(parts) - 1:
            node = node[part]
            if not isinstance(node, ml_collections.ConfigDict):
                raise UserError(f"unknown config key '{key}': '{part}' has no sub-keys")
    return node, parts[-1]


def validate_config(config: ml_collections.ConfigDict) -> None:
    """Reject values no model can train with, naming the key."""
    from jax_makemore.data import SPLIT_BY, check_split_fractions

    if not isinstance(config.get("model"), ml_collections.ConfigDict):
        raise UserError(
            f"config key model must be a model sub-config (base_config(NAME) or "
            f"models.model_config(NAME)), got {config.get('model')!r}"
        )
    validate_model_config(config.model)
    trains = get_spec(config.model.name).fit is None
    for key in POSITIVE_INT_KEYS:
        if trains and config[key] <= 0:
            raise UserError(f"config key {key} must be > 0, got {config[key]}")
    for key in (
        "eval_every",
        "checkpoint_every",
        "keep_checkpoints",
        "eval_batch_size",
        "eval_max_rows",
    ):
        if config[key] <= 0:
            raise UserError(f"config key {key} must be > 0, got {config[key]}")
    for key in ("num_steps", "warmup_steps", "max_word_length"):
        if config[key] < 0:
            raise UserError(f"config key {key} must be >= 0, got {config[key]}")
    if config.optimizer not in ("sgd", "adamw"):
        raise UserError(f"config key optimizer={config.optimizer!r}: expected sgd or adamw")
    if config.lr_schedule not in ("step", "cosine"):
        raise UserError(f"config key lr_schedule={config.lr_schedule!r}: expected step or cosine")
    check_split_fractions(config.split_fractions)
    if not 0.0 <= config.ema_decay < 1.0:
        raise UserError(f"config key ema_decay={config.ema_decay} must be in [0, 1)")
    if config.pack_len <= 0:
        raise UserError(f"config key pack_len must be > 0, got {config.pack_len}")
    check_packable(config.model, config.packed)
    if config.split_by not in SPLIT_BY:
        raise UserError(
            f"config key split_by={config.split_by!r}: expected {' or '.join(SPLIT_BY)}"
        )


def split_config_args(
    argv: Sequence[str], prefix: str = "config"
) -> tuple[list[str], list[tuple[str, str]]]:
    """Separate `--PREFIX.KEY=VALUE` / `--PREFIX.KEY VALUE` pairs (`--config.` overrides, or
    the sweep's `--sweep.` values) from the other arguments."""
    flag = f"--{prefix}."
    rest, pairs = [], []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg.startswith(flag):
            body = arg[len(flag) :]
            if "=" in body:
                key, value = body.split("=", 1)
            elif i + 1 < len(argv):
                key, value = body, argv[i + 1]
                i += 1
            else:
                raise UserError(f"{arg} needs a value ({flag}{body}=VALUE)")
            pairs.append((key, value))
        else:
            rest.append(arg)
        i += 1
    return rest, pairs


def get_value(config: ml_collections.ConfigDict, key: str) -> Any:
    """The value at dotted `key` of `config` ("model.dropout"), a sequence as a tuple (so that
    values compare and hash alike); a missing key is a KeyError."""
    node = config
    for part in key.split("."):
        node = node[part]
    return tuple(node) if isinstance(node, list | tuple) else node


def flatten_config(config: ml_collections.ConfigDict, prefix: str = "") -> dict[str, Any]:
    """{dotted key: value} of every leaf of a config, each as `get_value` gives it."""
    out = {}
    for key, value in config.items():
        if isinstance(value, ml_collections.ConfigDict):
            out.update(flatten_config(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = tuple(value) if isinstance(value, list | tuple) else value
    return out


def resolve(
    name_or_path: str, overrides: Sequence[tuple[str, str]] = ()
) -> tuple[ml_collections.ConfigDict, str]:
    """load_config + apply_overrides + validate_config."""
    config, name = load_config(name_or_path)
    apply_overrides(config, overrides)
    validate_config(config)
    return config, name
