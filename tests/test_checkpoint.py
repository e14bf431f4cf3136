import json

import chex
import pytest
from conftest import tiny_config

from jax_makemore import DEFAULT_DATA_PATH
from jax_makemore import checkpoint as ckpt
from jax_makemore.errors import UserError
from jax_makemore.train import train_and_evaluate


def _state(workdir):
    step = ckpt.restore_meta(workdir).step
    return step, ckpt.restore_state(workdir, step)


def test_resume_is_bit_identical_to_one_run(tmp_path, small_names):
    common = dict(steps_per_call=500, lr_decay_steps=1500, checkpoint_every=1000, eval_every=1000)
    config, name = tiny_config("mlp", small_names, num_steps=2000, **common)
    straight = train_and_evaluate(config, name, tmp_path / "one")

    config, name = tiny_config("mlp", small_names, num_steps=1000, **common)
    train_and_evaluate(config, name, tmp_path / "two")
    config, name = tiny_config("mlp", small_names, num_steps=2000, **common)
    resumed = train_and_evaluate(config, name, tmp_path / "two", resume=True)

    step_a, a = _state(tmp_path / "one")
    step_b, b = _state(tmp_path / "two")
    assert step_a == step_b == 2000
    chex.assert_trees_all_equal(a["params"], b["params"])
    chex.assert_trees_all_equal(a["batch_stats"], b["batch_stats"])
    chex.assert_trees_all_equal(a["opt_state"], b["opt_state"])
    assert straight["loss"] == resumed["loss"]
    steps = [
        json.loads(x)["step"] for x in (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()
    ]
    assert steps == [500, 1000, 1500, 2000]  # appended, not restarted


def test_checkpoint_holds_config_vocab_and_keys(tmp_path, small_names):
    config, name = tiny_config("mlp", small_names, num_steps=200, steps_per_call=100, n_hidden=16)
    train_and_evaluate(config, name, tmp_path / "w")
    meta = ckpt.restore_meta(tmp_path / "w")
    saved, saved_name, vocab, step = meta.config, meta.config_name, meta.vocab, meta.step
    assert saved_name == "mlp" and step == 200 and saved.model.n_hidden == 16
    assert vocab.size == 27 and vocab.boundary == "."
    assert meta.seq_len == max(len(w) for w in small_names.read_text().split()) + 1
    state = ckpt.restore_state(tmp_path / "w", step)
    assert set(state) >= {"params", "batch_stats", "opt_state", "step", "data_key"}


def test_existing_checkpoint_is_never_silently_overwritten(tmp_path, small_names):
    config, name = tiny_config("bigram_counts", small_names)
    train_and_evaluate(config, name, tmp_path / "w")
    before = sorted(p.name for p in ckpt.checkpoint_dir(tmp_path / "w").iterdir())
    config, name = tiny_config("bigram_counts", small_names)
    with pytest.raises(UserError, match="use --resume .* or --overwrite"):
        train_and_evaluate(config, name, tmp_path / "w")
    assert sorted(p.name for p in ckpt.checkpoint_dir(tmp_path / "w").iterdir()) == before
    train_and_evaluate(config, name, tmp_path / "w", overwrite=True)


@pytest.mark.heavy
def test_resume_refuses_a_different_model(tmp_path, small_names):
    config, name = tiny_config("mlp", small_names, num_steps=100, steps_per_call=100)
    train_and_evaluate(config, name, tmp_path / "w")
    config, name = tiny_config("mlp", small_names, num_steps=200, steps_per_call=100, n_hidden=64)
    with pytest.raises(
        UserError, match="model.n_hidden=200 but the flags ask for model.n_hidden=64"
    ):
        train_and_evaluate(config, name, tmp_path / "w", resume=True)
    config, name = tiny_config("bigram", small_names)
    with pytest.raises(
        UserError, match="model.name='mlp' but the flags ask for model.name='bigram'"
    ):
        train_and_evaluate(config, name, tmp_path / "w", resume=True)


def test_keeps_only_the_last_checkpoints(tmp_path, small_names):
    config, name = tiny_config(
        "mlp",
        small_names,
        num_steps=400,
        steps_per_call=100,
        checkpoint_every=100,
        keep_checkpoints=2,
    )
    train_and_evaluate(config, name, tmp_path / "w")
    assert ckpt.make_manager(tmp_path / "w").all_steps() == [300, 400]


def _rewrite_meta(workdir, change):
    """Edit the stored meta JSON of every checkpoint of `workdir` with `change(meta)`."""
    for path in ckpt.checkpoint_dir(workdir).glob("*/meta/metadata"):
        meta = json.loads(path.read_text())
        change(meta)
        path.write_text(json.dumps(meta))


def _stored_config(workdir):
    path = max(ckpt.checkpoint_dir(workdir).glob("*/meta/metadata"), key=lambda p: int(p.parts[-3]))
    return json.loads(path.read_text())["config"]


def test_default_data_is_stored_as_the_package_file_not_an_absolute_path(tmp_path):
    config, name = tiny_config("bigram_counts")
    assert config.data_path == str(DEFAULT_DATA_PATH)
    train_and_evaluate(config, name, tmp_path / "w")
    assert _stored_config(tmp_path / "w")["data_path"] == ckpt.PACKAGED_DATA_PATH
    assert ckpt.restore_meta(tmp_path / "w").config.data_path == str(DEFAULT_DATA_PATH)
    assert ckpt.portable_data_path("names.txt") == "names.txt"  # any other path as given


@pytest.mark.heavy
def test_a_checkpoint_of_the_old_default_path_without_split_by_resumes(tmp_path):
    """Workdirs written before the data became package data store `<clone>/data/names.txt`,
    and none of them has split_by: they resume (same data, the word split) and are rewritten
    in today's form."""
    common = dict(steps_per_call=50, n_hidden=8, eval_every=50)
    config, name = tiny_config("mlp", num_steps=50, **common)
    train_and_evaluate(config, name, tmp_path / "w")

    def make_old(meta):
        meta["config"]["data_path"] = str(ckpt.LEGACY_DEFAULT_DATA_PATH)
        del meta["config"]["split_by"]

    _rewrite_meta(tmp_path / "w", make_old)
    meta = ckpt.restore_meta(tmp_path / "w")
    assert meta.config.data_path == str(DEFAULT_DATA_PATH) and meta.config.split_by == "word"
    config, name = tiny_config("mlp", num_steps=100, **common)
    train_and_evaluate(config, name, tmp_path / "w", resume=True)
    assert ckpt.restore_meta(tmp_path / "w").step == 100
    assert _stored_config(tmp_path / "w")["data_path"] == ckpt.PACKAGED_DATA_PATH


def test_old_default_paths_resolve_only_to_the_same_file(tmp_path):
    elsewhere = tmp_path / "clone" / "data" / "names.txt"  # another clone's copy
    elsewhere.parent.mkdir(parents=True)
    elsewhere.write_bytes(DEFAULT_DATA_PATH.read_bytes())
    assert ckpt.local_data_path(str(elsewhere)) == str(DEFAULT_DATA_PATH)
    elsewhere.write_text("emma\nava\n")  # a user's own file of that name stays theirs
    assert ckpt.local_data_path(str(elsewhere)) == str(elsewhere)
    missing = str(tmp_path / "gone" / "data" / "names.txt")
    assert ckpt.local_data_path(missing) == missing
    assert ckpt.local_data_path("data/names.txt") == "data/names.txt"
