"""The members of a sweep and their groups.

A member is one run of the cross product of the swept values (`expand_members`): its name, its
typed swept values and its resolved config. Members whose programs agree -- the same static
config values (every key that is not traced: not a HOST_KEYS key, an optimizer key of
`TRACED_KEYS` or a model float that traces) and so the same array shapes -- form a `Group`,
which trains as one compiled program (sweep_program.py).
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import re
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax

from jax_makemore import config as config_lib
from jax_makemore.batches import Packing, packing_from_config
from jax_makemore.config import DATA_KEYS, flatten_config, get_value
from jax_makemore.data import Dataset, dataset_from_config
from jax_makemore.errors import UserError
from jax_makemore.models import ModelSpec, get_spec
from jax_makemore.optim import TRACED_KEYS
from jax_makemore.train import TrainState, create_train_state, make_train_step

#: Top-level keys that may differ inside a group because only the host uses them: the seed
#: gives each member its own init and data keys (state leaves); the others are checked or
#: ignored per member.
HOST_KEYS = ("seed", "divergence_loss", "num_samples", "tensorboard")


def split_values(key: str, text: str) -> list[str]:
    """The comma-separated values of `--sweep.KEY` (commas inside brackets stay: a tuple is
    one value); an integer range `a:b` stands for a, a+1, ..., b-1."""
    items, depth, current = [], 0, ""
    for ch in text:
        depth += ch in "([{"
        depth -= ch in ")]}"
        if ch == "," and depth == 0:
            items.append(current.strip())
            current = ""
        else:
            current += ch
    items.append(current.strip())
    values: list[str] = []
    for item in items:
        if item == "":
            continue
        match = re.fullmatch(r"(-?\d+):(-?\d+)", item)
        if match:
            lo, hi = int(match.group(1)), int(match.group(2))
            if hi <= lo:
                raise UserError(
                    f"--sweep.{key}={text!r}: the range {item} is empty (a:b needs b > a)"
                )
            values.extend(str(v) for v in range(lo, hi))
        else:
            values.append(item)
    if not values:
        raise UserError(f"--sweep.{key}={text!r}: no values (expected V1,V2,... or a:b)")
    return values


@dataclasses.dataclass
class Member:
    """One run of the sweep: its name (from the swept values), the typed swept values and
    the resolved config."""

    name: str
    values: dict[str, Any]
    config: ml_collections.ConfigDict


def format_value(value: Any) -> str:
    """A swept value as member names and the table write it (tuples without spaces)."""
    if isinstance(value, tuple | list):
        return "(" + ",".join(format_value(v) for v in value) + ")"
    return repr(value) if isinstance(value, float) else str(value)


def _apply(base: ml_collections.ConfigDict, pairs: Sequence[tuple[str, str]], where: str):
    """A copy of `base` with the `pairs` applied and validated; errors name `where`."""
    config = copy.deepcopy(base)
    try:
        config_lib.apply_overrides(config, pairs)
        config_lib.validate_config(config)
    except UserError as err:
        text = str(err)
        for key, _ in pairs:  # the config's messages name --config.KEY; this flag is --sweep.KEY
            text = text.replace(f"--config.{key}=", f"--sweep.{key}=")
        raise UserError(text if text.startswith("--sweep.") else f"{where}: {text}") from None
    return config


def expand_members(
    base: ml_collections.ConfigDict, swept: Sequence[tuple[str, str]]
) -> list[Member]:
    """The cross product of the swept values (in command-line order), each a resolved config.
    Unknown keys, values of the wrong type and repeated values are one-line UserErrors."""
    if not swept:
        raise UserError("nothing to sweep: give at least one --sweep.KEY=V1,V2,...")
    axes = []
    for key, text in swept:
        texts = split_values(key, text)
        typed: dict[str, Any] = {}
        for t in texts:
            single = _apply(base, [(key, t)], f"--sweep.{key}")
            value = get_value(single, key)
            if value in typed.values():
                raise UserError(
                    f"--sweep.{key}={text!r}: the value {format_value(value)} is listed twice"
                )
            typed[t] = value
        axes.append([(key, t, v) for t, v in typed.items()])
    members = []
    for combo in itertools.product(*axes):
        name = ",".join(f"{key}={format_value(v)}" for key, _, v in combo)
        config = _apply(base, [(key, t) for key, t, _ in combo], f"sweep member {name}")
        members.append(Member(name=name, values={key: v for key, _, v in combo}, config=config))
    return members


# ---------------------------------------------------------------------------------------------
# Groups: which members share one compiled program


def _model_float_keys(config: ml_collections.ConfigDict) -> list[str]:
    """The model's float hyper-parameters, as dotted keys (`model.bn_momentum`)."""
    params = get_spec(config.model.name).hyperparameters()
    return [f"model.{k}" for k, v in config.model.items() if k in params and isinstance(v, float)]


def traceable_model_key(
    spec: ModelSpec,
    model_config: ml_collections.ConfigDict,
    key: str,
    vocab_size: int,
    seq_len: int,
) -> bool:
    """Whether the module of `model_config` trains and evaluates with its float field `key`
    given as a traced value, found by tracing one train step and one evaluation with it:
    False when its code needs the value in Python (an `if` on it, a shape from it). A dropout
    rate traces: `layers.Dropout` takes a traced rate (flax.linen.Dropout would not, as it
    tests `rate == 0` in Python)."""
    T = model_config["block_size"] if spec.layout == "windows" else seq_len
    x_BxT = jax.ShapeDtypeStruct((2, T), jnp.int32)
    y = jax.ShapeDtypeStruct((2,) if spec.layout == "windows" else (2, T), jnp.int32)
    model = spec.build(model_config, vocab_size, seq_len)
    variables = jax.eval_shape(lambda x: model.init(jax.random.PRNGKey(0), x, train=False), x_BxT)

    def probe(value, variables, x_BxT, y):
        traced = spec.build({**model_config.to_dict(), key: value}, vocab_size, seq_len)
        state = TrainState.create(
            apply_fn=traced.apply,
            params=variables["params"],
            tx=optax.sgd(0.1),
            batch_stats=variables.get("batch_stats", {}),
            data_key=jax.random.PRNGKey(0),
        )
        step = make_train_step(traced, batch_size=2, full_batch=True, spec=spec)
        return step(state, x_BxT, y)[1], traced.apply(variables, x_BxT, train=False)

    try:
        jax.eval_shape(probe, jnp.float32(model_config[key]), variables, x_BxT, y)
        return True
    except (jax.errors.ConcretizationTypeError, jax.errors.TracerBoolConversionError, TypeError):
        return False


@dataclasses.dataclass
class Group:
    """Members that train as one program. `config` is the first member's; `traced` lists the
    dotted keys whose values differ between the members, each a per-member array in the
    program; `abstract_state` is the train state's shapes and dtypes, the same for all."""

    members: list[Member]
    config: ml_collections.ConfigDict
    spec: ModelSpec
    ds: Dataset
    traced: list[str]
    abstract_state: Any
    packing: Packing | None = None  # the members' packed step (packed sequence models)
    compile_seconds: float = 0.0  # of every program compiled for the group, all slices

    def model(self, hp: dict[str, Any] | None = None):
        """The Flax module, with the traced model hyper-parameters of `hp` (arrays) when given."""
        fields = {k[len("model.") :]: v for k, v in (hp or {}).items() if k.startswith("model.")}
        model_config = {**self.config.model.to_dict(), **fields} if fields else self.config.model
        return self.spec.build(model_config, self.ds.vocab.size, self.ds.seq_len)


def _check_sweepable(member: Member) -> None:
    if get_spec(member.config.model.name).fit is not None:
        raise UserError(
            f"sweep member {member.name}: model {member.config.model.name!r} is fitted in "
            f"closed form, not trained; there is nothing to sweep"
        )
    if member.config.log_diagnostics:
        raise UserError(
            "config key log_diagnostics=True is not supported by sweep; train one member with it"
        )


def group_members(members: Sequence[Member]) -> list[Group]:
    """Members grouped by their static config values -- every key except TRACED_KEYS,
    HOST_KEYS and the model floats that trace -- and so by the tree of shapes and dtypes of
    their train state (computed once per group with `jax.eval_shape`)."""
    datasets: dict[tuple, Dataset] = {}
    traceable: dict[tuple, bool] = {}
    groups: dict[tuple, Group] = {}
    for m in members:
        _check_sweepable(m)
        c, spec = m.config, get_spec(m.config.model.name)
        data_id = (*(get_value(c, k) for k in DATA_KEYS), spec.layout, c.model.get("block_size"))
        if data_id not in datasets:
            datasets[data_id] = dataset_from_config(c)
        ds = datasets[data_id]
        flat = flatten_config(c)
        floats = _model_float_keys(c)
        model_static = tuple(
            (k, v) for k, v in flat.items() if k.startswith("model.") and k not in floats
        )
        free = set(TRACED_KEYS) | set(HOST_KEYS)
        for key in floats:
            if (model_static, key) not in traceable:
                traceable[model_static, key] = traceable_model_key(
                    spec, c.model, key[len("model.") :], ds.vocab.size, ds.seq_len
                )
            if traceable[model_static, key]:
                free.add(key)
        static = tuple((k, v) for k, v in flat.items() if k not in free)
        # structure no traced value can change: which weight-decay stages the optax chain has
        static += (("weight_decay>0", c.weight_decay > 0), ("l2_mean>0", c.l2_mean > 0))
        if static not in groups:
            groups[static] = Group(
                members=[],
                config=c,
                spec=spec,
                ds=ds,
                traced=sorted(free - set(HOST_KEYS)),
                abstract_state=None,
            )
        groups[static].members.append(m)
    for g in groups.values():
        g.traced = [k for k in g.traced if len({get_value(m.config, k) for m in g.members}) > 1]
        g.abstract_state = abstract_state(g)
        g.packing = packing_from_config(g.config, g.ds.split("train")[1], g.ds.seq_len)
    return list(groups.values())


def abstract_state(group: Group) -> TrainState:
    """The group's train state as shapes and dtypes (nothing is computed)."""
    model, key = group.model(), jax.random.PRNGKey(0)
    return jax.eval_shape(
        lambda: create_train_state(group.config, model, key, key, group.ds.seq_len)
    )
