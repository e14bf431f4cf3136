import pytest

from jax_makemore.config import (
    apply_overrides,
    available_configs,
    load_config,
    resolve,
    split_config_args,
)
from jax_makemore.errors import UserError


def test_named_configs_exist_and_have_the_common_keys():
    names = available_configs()
    assert {"bigram_counts", "bigram", "mlp", "mlp_nobn"} <= set(names)
    for name in names:
        config, config_name = load_config(name)
        assert config_name == name
        for key in (
            "data_path",
            "seed",
            "split_fractions",
            "num_steps",
            "batch_size",
            "block_size",
        ):
            assert key in config, (name, key)


def test_config_by_path(tmp_path):
    path = tmp_path / "mine.py"
    path.write_text(
        "from jax_makemore.config import base_config\n"
        "def get_config():\n    c = base_config()\n    c.n_hidden = 7\n    return c\n"
    )
    config, name = load_config(str(path))
    assert name == "mine" and config.n_hidden == 7


def test_overrides_are_typed_by_the_default():
    config, _ = resolve(
        "mlp",
        [
            ("num_steps", "1000"),
            ("learning_rate", "0.5"),
            ("use_batchnorm", "false"),
            ("split_fractions", "(1.0,0.0,0.0)"),
            ("data_path", "x.txt"),
        ],
    )
    assert config.num_steps == 1000 and isinstance(config.num_steps, int)
    assert config.learning_rate == 0.5
    assert config.use_batchnorm is False
    assert config.split_fractions == (1.0, 0.0, 0.0)
    assert config.data_path == "x.txt"


def test_split_config_args_both_spellings():
    rest, overrides = split_config_args(
        ["--config", "mlp", "--config.num_steps=5", "--config.seed", "3", "--resume"]
    )
    assert rest == ["--config", "mlp", "--resume"]
    assert overrides == [("num_steps", "5"), ("seed", "3")]


def test_unknown_key_names_key_and_close_matches():
    config, _ = load_config("mlp")
    with pytest.raises(UserError, match="unknown config key 'num_step'.*num_steps"):
        apply_overrides(config, [("num_step", "3")])


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("num_steps", "many", "num_steps.*expected an integer"),
        ("learning_rate", "fast", "learning_rate.*expected a number"),
        ("use_batchnorm", "maybe", "use_batchnorm.*true or false"),
        ("split_fractions", "0.8", "split_fractions.*tuple"),
        ("batch_size", "0", "batch_size must be > 0"),
        ("num_steps", "-5", "num_steps must be > 0"),
        ("block_size", "0", "block_size must be > 0"),
        ("n_embd", "-1", "n_embd must be > 0"),
        ("n_hidden", "0", "n_hidden must be > 0"),
        ("split_fractions", "(0.5,0.2,0.2)", "sum to 1"),
        ("split_fractions", "(1.1,-0.1,0.0)", "non-negative"),
        ("split_fractions", "(0.0,0.5,0.5)", "training split empty"),
        ("model", "gpt5", "expected one of"),
        ("optimizer", "lion", "sgd or adamw"),
    ],
)
def test_bad_values_are_one_line_errors(key, value, message):
    with pytest.raises(UserError, match=message) as info:
        resolve("mlp", [(key, value)])
    assert "\n" not in str(info.value)


def test_unknown_config_name_lists_available():
    with pytest.raises(UserError, match="unknown config 'nope'; available: .*mlp"):
        load_config("nope")
