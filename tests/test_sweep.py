"""jax_makemore.sweep: values and members, groups and traced hyper-parameters, members equal to
single `train` runs, interrupt and resume, memory checks, the command line and its pictures.

Everything trains a tiny MLP on 1,500 names for a few dozen steps, so the file stays fast."""

import contextlib
import importlib
import io
import json
import os
import shutil
import signal

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from conftest import assert_png, run_cli, tiny_config, tiny_setup, write_small_names
from flax import linen as nn

from jax_makemore import checkpoint as ckpt
from jax_makemore import memory, sweep_members, sweep_program
from jax_makemore.errors import Interrupted, UserError
from jax_makemore.evaluate import split_losses
from jax_makemore.logs import MemberProgress
from jax_makemore.models import ModelSpec
from jax_makemore.optim import build_optimizer, learning_rate_schedule, resolved_value
from jax_makemore.restore import load_trained
from jax_makemore.train import train_and_evaluate

#: the sweep module (`jax_makemore.sweep`, the attribute of the package, is the API function)
sweep = importlib.import_module("jax_makemore.sweep")

#: A tiny MLP: 120 steps in chunks of 40, one evaluation at the end.
TINY = dict(
    n_hidden=16, n_embd=4, batch_size=16, num_steps=120, steps_per_call=40,
    eval_every=120, checkpoint_every=120,
)  # fmt: skip
LRS = ("0.05", "0.1", "0.2")


def tiny_flags(data):
    flags = [
        f"--config.{'model.' if k in ('n_hidden', 'n_embd') else ''}{k}={v}"
        for k, v in TINY.items()
    ]
    return [*flags, f"--config.data_path={data}"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_small_names(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def lr_sweep(data, tmp_path_factory):
    """A 3-member learning-rate sweep run through the command's main(): (workdir, stdout)."""
    workdir = tmp_path_factory.mktemp("sweeps") / "lr"
    argv = ["--config", "mlp", "--workdir", str(workdir), *tiny_flags(data)]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert sweep.main([*argv, f"--sweep.learning_rate={','.join(LRS)}"]) == 0
    return workdir, out.getvalue()


def base(data, **overrides):
    return tiny_config("mlp", data, **{**TINY, **overrides})


# ---------------------------------------------------------------------------------------------
# values and members


def test_split_values_lists_ranges_and_tuples():
    assert sweep_members.split_values("seed", "0:3") == ["0", "1", "2"]
    assert sweep_members.split_values("learning_rate", "0.05, 0.1,0.2") == ["0.05", "0.1", "0.2"]
    assert sweep_members.split_values("split_fractions", "(0.8,0.1,0.1),(0.9,0.05,0.05)") == [
        "(0.8,0.1,0.1)",
        "(0.9,0.05,0.05)",
    ]
    for bad in ("", ",", "3:3"):
        with pytest.raises(UserError, match=r"--sweep\.seed"):
            sweep_members.split_values("seed", bad)


def test_members_are_the_cross_product_with_typed_values(data):
    config, _ = base(data)
    members = sweep.expand_members(config, [("model.n_hidden", "8,16"), ("seed", "0:2")])
    assert [m.name for m in members] == [
        "model.n_hidden=8,seed=0",
        "model.n_hidden=8,seed=1",
        "model.n_hidden=16,seed=0",
        "model.n_hidden=16,seed=1",
    ]
    assert members[3].config.model.n_hidden == 16 and members[3].config.seed == 1
    assert members[0].config.learning_rate == config.learning_rate  # the rest is the base


@pytest.mark.parametrize(
    "swept, message",
    [
        ([("bogus", "1,2")], r"--sweep\.bogus.*unknown config key 'bogus'"),
        ([("model.n_hiden", "1,2")], r"did you mean model\.n_hidden"),
        ([("learning_rate", "0.1,fast")], r"--sweep\.learning_rate='fast': expected a number"),
        ([("learning_rate", "0.1,0.10")], r"the value 0\.1 is listed twice"),
        ([("learning_rate", "")], r"no values"),
        ([], r"nothing to sweep"),
    ],
)
def test_bad_sweep_flags_are_one_line_errors(data, swept, message):
    config, _ = base(data)
    with pytest.raises(UserError, match=message) as err:
        sweep.expand_members(config, swept)
    assert "\n" not in str(err.value)


# ---------------------------------------------------------------------------------------------
# groups and traced hyper-parameters


def test_groups_split_on_shapes_and_trace_floats(data):
    config, _ = base(data)
    swept = [
        ("model.n_hidden", "8,16"),
        ("model.bn_momentum", "0.001,0.1"),
        ("lr_decay_steps", "10,30"),
        ("seed", "0:2"),
    ]
    groups = sweep.group_members(sweep.expand_members(config, swept))
    assert [len(g.members) for g in groups] == [8, 8]
    assert {g.config.model.n_hidden for g in groups} == {8, 16}
    for g in groups:
        assert g.traced == ["lr_decay_steps", "model.bn_momentum"]  # the seed is in the state
    # weight decay on/off changes the optax chain, so it splits the group
    groups = sweep.group_members(sweep.expand_members(config, [("weight_decay", "0,0.01,0.1")]))
    assert [len(g.members) for g in groups] == [1, 2]
    assert groups[1].traced == ["weight_decay"]


class _Branchy(nn.Module):
    """A module whose code branches on a float field in Python (as flax's nn.Dropout does
    on its rate)."""

    vocab_size: int
    block_size: int = 3
    rate: float = 0.5
    scale: float = 2.0

    @nn.compact
    def __call__(self, idx_BxT, train: bool):
        x = nn.Embed(self.vocab_size, 4)(idx_BxT).reshape(idx_BxT.shape[0], -1) * self.scale
        if self.rate > 0:  # a Python branch: the value must be concrete
            x = x * (1 - self.rate)
        return nn.Dense(self.vocab_size)(x)


def test_a_float_the_module_branches_on_is_not_traced():
    spec = ModelSpec("branchy", _Branchy, "windows")
    model_config = ml_collections.ConfigDict({"block_size": 3, "rate": 0.5, "scale": 2.0})
    assert sweep_members.traceable_model_key(spec, model_config, "scale", 27, 0)
    assert not sweep_members.traceable_model_key(spec, model_config, "rate", 27, 0)


#: A tiny transformer (packed rows, as its config trains) for the dropout and warm-up sweeps.
TINY_GPT = dict(
    n_layer=1, n_head=2, n_embd=8, batch_size=16, num_steps=20, steps_per_call=20,
    eval_every=20, checkpoint_every=20,
)  # fmt: skip
DROPOUT_WARMUP = [("model.dropout", "0.0,0.2"), ("warmup_steps", "0,5")]


@pytest.mark.heavy
def test_dropout_and_warmup_are_traced_in_one_group(data):
    config, _ = tiny_config("transformer", data, **TINY_GPT)
    groups = sweep.group_members(sweep.expand_members(config, DROPOUT_WARMUP))
    assert [len(g.members) for g in groups] == [4]
    assert groups[0].traced == ["model.dropout", "warmup_steps"]
    noise = sweep.expand_members(config, [("model.token_noise", "0.0,0.1,0.2")])
    assert [g.traced for g in sweep.group_members(noise)] == [["model.token_noise"]]


@pytest.mark.parametrize(
    "overrides",
    [
        {},  # step decay at num_steps // 2
        {"lr_decay_factor": 1.0},
        {"lr_decay_steps": 0},
        {"lr_decay_steps": 7, "warmup_steps": 5},
    ],
)
def test_member_schedule_is_the_optim_schedule_bit_for_bit(data, overrides):
    config, _ = base(data, **overrides)
    hp = {
        "learning_rate": jnp.float32(config.learning_rate),
        "lr_decay_factor": jnp.float32(config.lr_decay_factor),
        "lr_decay_steps": jnp.int32(resolved_value(config, "lr_decay_steps")),
    }
    counts = jnp.arange(config.num_steps + 2)
    traced = jax.jit(lambda hp, c: jax.vmap(learning_rate_schedule(config, hp))(c))(hp, counts)
    plain = jax.jit(jax.vmap(learning_rate_schedule(config)))(counts)  # as in a train step
    np.testing.assert_array_equal(np.asarray(traced), np.asarray(plain, np.float32))


@pytest.mark.parametrize(
    "overrides",
    [
        {"weight_decay": 0.01, "l2_mean": 0.001},
        {
            "optimizer": "adamw",
            "learning_rate": 1e-3,
            "weight_decay": 0.01,
            "lr_schedule": "cosine",
        },
    ],
)
def test_member_optimizer_updates_like_build_optimizer(data, overrides):
    config, _ = base(data, **overrides)
    params = {"W_IxO": jnp.ones((3, 4)), "b_O": jnp.zeros(4)}
    keys = ("learning_rate", "weight_decay", "l2_mean", "adam_b1", "lr_min_factor")
    hp = {k: jnp.float32(config[k]) for k in keys}
    grads = [jax.tree.map(lambda p, i=i: jnp.sin(p + i), params) for i in range(4)]

    def run(tx):
        p, state = params, tx.init(params)
        for g in grads:
            updates, state = tx.update(g, state, p)
            p = optax.apply_updates(p, updates)
        return p

    traced = run(build_optimizer(config, params, hp))
    plain = run(build_optimizer(config, params))
    for a, b in zip(jax.tree.leaves(traced), jax.tree.leaves(plain), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


# ---------------------------------------------------------------------------------------------
# members are real runs


def test_members_equal_single_train_runs(lr_sweep, data, tmp_path):
    workdir, _ = lr_sweep
    worst = 0.0
    for lr in LRS:
        config, name = base(data, learning_rate=lr)
        single = train_and_evaluate(config, name, tmp_path / lr)
        member = json.loads(
            (workdir / "members" / f"learning_rate={lr}" / "results.json").read_text()
        )
        assert set(member) == set(single) - {"samples"}
        assert member["steps"] == single["steps"] and member["num_params"] == single["num_params"]
        for split, value in single["loss"].items():
            worst = max(worst, abs(member["loss"][split] - value))
    assert worst < 1e-5
    print(f"max |member - single| split loss: {worst:.3g}")


@pytest.mark.heavy
def test_member_workdirs_work_with_evaluate_sample_and_resume(lr_sweep, data, tmp_path, capsys):
    from jax_makemore import sample

    workdir, _ = lr_sweep
    member = workdir / "members" / "learning_rate=0.1"
    results = json.loads((member / "results.json").read_text())
    losses = split_losses(load_trained(member))
    assert losses == pytest.approx(results["loss"], abs=1e-6)
    metrics = [json.loads(line) for line in (member / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [40, 80, 120]
    assert set(metrics[0]) == {"step", "loss", "lr", "steps_per_sec", "words_seen", "chars_seen"}
    assert [m["chars_seen"] for m in metrics] == [40 * 16, 80 * 16, 120 * 16]  # a window each
    assert 0 < metrics[0]["words_seen"] < metrics[-1]["words_seen"] < 120 * 16  # word ends
    assert metrics[-1]["split_loss"] == results["loss"]
    assert sample.main(["--workdir", str(member), "--num", "3"]) == 0
    assert len(capsys.readouterr().out.split()) == 3
    # train --resume takes the member over: 40 more steps from its checkpoint
    copy = tmp_path / "resumed"
    shutil.copytree(member, copy)
    config, name = base(data, learning_rate=0.1, num_steps=160)
    resumed = train_and_evaluate(config, name, copy, resume=True)
    assert resumed["steps"] == 160


def test_sweep_json_and_table(lr_sweep):
    workdir, stdout = lr_sweep
    record = json.loads((workdir / "sweep.json").read_text())
    assert record["swept"] == {"learning_rate": [0.05, 0.1, 0.2]}
    assert [m["status"] for m in record["members"]] == ["done"] * 3
    assert record["members"][0]["overrides"] == {"learning_rate": 0.05}
    assert len(record["groups"]) == 1 and record["groups"][0]["traced"] == ["learning_rate"]
    # each member's entry holds what its own run wrote to results.json
    for m in record["members"]:
        results = json.loads((workdir / m["workdir"] / "results.json").read_text())
        assert m["loss"] == results["loss"] and m["steps"] == results["steps"] == 120
    by_rate = {m["overrides"]["learning_rate"]: m for m in record["members"]}
    assert len({m["loss"]["val"] for m in by_rate.values()}) == 3  # the rates made a difference
    # the table: one row per member, sorted by val loss, each row that member's own losses
    header, *rows = stdout.splitlines()[:4]
    assert header.split() == ["learning_rate", "train", "val", "test", "status"]
    ordered = [by_rate[float(row.split()[0])] for row in rows]
    assert sorted(m["name"] for m in ordered) == sorted(m["name"] for m in by_rate.values())
    for row, m in zip(rows, ordered, strict=True):
        expected = [f"{m['loss'][split]:.4f}" for split in ("train", "val", "test")]
        assert row.split()[1:] == [*expected, m["status"]], row
    vals = [m["loss"]["val"] for m in ordered]
    assert vals == sorted(vals)


@pytest.mark.heavy
def test_traced_model_and_schedule_keys_match_single_runs(data, tmp_path):
    config, name = base(data, num_steps=40, eval_every=40, checkpoint_every=40)
    swept = [("model.bn_momentum", "0.001,0.1"), ("lr_decay_steps", "10,40")]
    members = sweep.expand_members(config, swept)
    record = sweep.run_sweep(members, name, tmp_path / "s")
    assert record["groups"][0]["traced"] == ["lr_decay_steps", "model.bn_momentum"]
    for m in members[2:3]:  # bn_momentum 0.1, the learning rate decays at step 10
        single = train_and_evaluate(m.config, name, tmp_path / m.name)
        got = next(e for e in record["members"] if e["name"] == m.name)["loss"]
        for split, value in single["loss"].items():
            assert abs(got[split] - value) < 1e-5, (m.name, split)


@pytest.mark.heavy
def test_dropout_and_warmup_members_equal_single_train_runs(data, tmp_path):
    """Dropout 0 and 0.2, warm-up 0 and 5 steps: one program, each member's losses those of
    `train` (dropout 0 there draws no mask; here it draws one that keeps everything)."""
    config, name = tiny_config("transformer", data, **TINY_GPT)
    members = sweep.expand_members(config, DROPOUT_WARMUP)
    record = sweep.run_sweep(members, name, tmp_path / "s")
    assert len(record["groups"]) == 1
    assert record["groups"][0]["traced"] == ["model.dropout", "warmup_steps"]
    worst = 0.0
    for m in members:
        single = train_and_evaluate(m.config, name, tmp_path / m.name)
        got = next(e for e in record["members"] if e["name"] == m.name)["loss"]
        worst = max(worst, *(abs(got[s] - v) for s, v in single["loss"].items()))
    assert worst < 1e-5
    print(f"max |member - single| split loss: {worst:.3g}")


# ---------------------------------------------------------------------------------------------
# interrupt and resume, workdir rules, memory


@pytest.mark.heavy
def test_sigint_saves_every_member_and_resume_finishes_identically(
    lr_sweep, data, tmp_path, monkeypatch
):
    config, name = base(data)
    members = sweep.expand_members(config, [("learning_rate", ",".join(LRS))])
    workdir = tmp_path / "s"
    calls = []

    def interrupt(*args):  # at the end of the first chunk, as if the user pressed Ctrl-C
        calls.append(args)
        if len(calls) == 1:
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(MemberProgress, "chunk", lambda self, *args: interrupt(*args))
    with pytest.raises(Interrupted):
        sweep.run_sweep(members, name, workdir)
    record = json.loads((workdir / "sweep.json").read_text())
    assert [m["status"] for m in record["members"]] == ["running"] * 3
    for m in members:  # saved at the end of the chunk that was running
        assert ckpt.restore_meta(workdir / "members" / m.name).step == 40
    with pytest.raises(UserError, match="already holds a sweep; use --resume"):
        sweep.run_sweep(members, name, workdir)
    with pytest.raises(UserError, match="other members"):
        sweep.run_sweep(members[:2], name, workdir, resume=True)
    record = sweep.run_sweep(members, name, workdir, resume=True)
    uninterrupted = json.loads((lr_sweep[0] / "sweep.json").read_text())
    assert [m["loss"] for m in record["members"]] == [m["loss"] for m in uninterrupted["members"]]


@pytest.mark.heavy
def test_max_parallel_beyond_memory_is_a_user_error(data, monkeypatch):
    config, _ = base(data)
    members = sweep.expand_members(config, [("learning_rate", ",".join(LRS))])
    group = sweep.group_members(members)[0]
    per_member = sweep_program.bytes_per_member(group)
    X_bytes = group.ds.split("train")[0].nbytes
    free = int((2.5 * per_member + X_bytes) / memory.MEMORY_FRACTION)
    monkeypatch.setattr(memory, "available_bytes", lambda: free)
    assert sweep_program.slice_size(group, None) == 2  # slices of what fits
    assert sweep_program.slice_size(group, 1) == 1
    with pytest.raises(UserError, match=r"--sweep\.max_parallel=3: .* use --sweep\.max_parallel=2"):
        sweep_program.slice_size(group, 3)
    monkeypatch.setattr(memory, "available_bytes", lambda: 1000)
    with pytest.raises(UserError, match="one member of .* needs about"):
        sweep_program.slice_size(group, None)


def test_command_line_errors_exit_2_with_one_line(data, tmp_path):
    proc = run_cli(
        "sweep", "--config", "mlp", "--workdir", str(tmp_path / "s"), "--sweep.bogus=1,2",
        f"--config.data_path={data}",
    )  # fmt: skip
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --sweep.bogus: unknown config key")
    with pytest.raises(UserError, match="max_parallel must be >= 1"):
        sweep.main(["--config", "mlp", "--sweep.seed=0:2", "--sweep.max_parallel=0"])


# ---------------------------------------------------------------------------------------------
# pictures and the benchmark


def test_plot_draws_the_sweep(lr_sweep, tmp_path):
    pytest.importorskip("matplotlib")
    from jax_makemore.plot import plot_run

    written, skipped = plot_run(lr_sweep[0], tmp_path / "pictures")
    assert sorted(p.name for p in written) == ["sweep.png", "sweep_curves.png"]
    assert not skipped
    for path in written:
        assert_png(path)


@pytest.mark.heavy
def test_bench_reports_sweep_throughput(data):
    from benchmarks import sweep_bench as bench  # bench.Sizes: benchmarks.machine's

    config, _ = base(data)
    result = bench.bench_sweep(config, [2], bench.Sizes(quick=True), lambda text: None)
    for key in ("sweep_model_steps_per_sec", "sweep_single_steps_per_sec", "sweep_speedup"):
        assert set(result[key]) == {"2"} and result[key]["2"] > 0
    speedup = result["sweep_model_steps_per_sec"]["2"] / result["sweep_single_steps_per_sec"]["2"]
    assert result["sweep_speedup"]["2"] == pytest.approx(speedup)
    # two members run the sweep command's chunk length
    assert result["sweep_steps_per_call"]["2"] == config.steps_per_call
    # the compiled program holds at least its arguments: the training split and two states
    _, _, _, fresh, X, Y = tiny_setup(config)
    state = fresh()
    state_bytes = sum(x.nbytes for x in jax.tree.leaves((state.params, state.opt_state)))
    assert result["sweep_memory_mb"]["2"] * 2**20 >= X.nbytes + Y.nbytes + 2 * state_bytes
