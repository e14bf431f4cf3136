import pytest

from jax_makemore.config import (
    apply_overrides,
    available_configs,
    base_config,
    load_config,
    resolve,
    split_config_args,
    validate_config,
)
from jax_makemore.errors import UserError
from jax_makemore.models import get_spec


def test_every_named_config_has_exactly_the_base_and_model_keys_and_validates():
    """A config file that sets a misspelt key (config.lerning_rate = ...) adds a key no code
    reads; this catches it, and any config whose values the validation refuses."""
    names = available_configs()
    assert {"bigram_counts", "bigram", "mlp", "mlp_nobn"} <= set(names)
    base_keys = set(base_config().keys())
    for name in names:
        config, config_name = load_config(name)
        assert config_name == name
        assert set(config.keys()) == base_keys, (name, set(config.keys()) ^ base_keys)
        model_keys = {"name", *get_spec(config.model.name).hyperparameters()}
        assert set(config.model.keys()) == model_keys, name
        validate_config(config)


def test_a_stray_key_in_a_config_file_is_caught(tmp_path):
    path = tmp_path / "typo.py"
    path.write_text(
        "from jax_makemore.config import base_config\n"
        "def get_config():\n    c = base_config()\n    c.lerning_rate = 7\n    return c\n"
    )
    config, _ = load_config(str(path))
    assert set(config.keys()) != set(base_config().keys())


def test_config_by_path(tmp_path):
    path = tmp_path / "mine.py"
    path.write_text(
        "from jax_makemore.config import base_config\n"
        "def get_config():\n    c = base_config()\n    c.model.n_hidden = 7\n    return c\n"
    )
    config, name = load_config(str(path))
    assert name == "mine" and config.model.n_hidden == 7


def test_overrides_are_typed_by_the_default():
    config, _ = resolve(
        "mlp",
        [
            ("num_steps", "1000"),
            ("learning_rate", "0.5"),
            ("model.use_batchnorm", "false"),
            ("split_fractions", "(1.0,0.0,0.0)"),
            ("data_path", "x.txt"),
        ],
    )
    assert config.num_steps == 1000 and isinstance(config.num_steps, int)
    assert config.learning_rate == 0.5
    assert config.model.use_batchnorm is False
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
        ("model.use_batchnorm", "maybe", "use_batchnorm.*true or false"),
        ("split_fractions", "0.8", "split_fractions.*tuple"),
        ("batch_size", "0", "batch_size must be > 0"),
        ("num_steps", "-5", "num_steps must be > 0"),
        ("lr_schedule", "linear", "step or cosine"),
        ("model.block_size", "0", "model.block_size must be > 0"),
        ("model.n_embd", "-1", "model.n_embd must be > 0"),
        ("model.n_hidden", "0", "model.n_hidden must be > 0"),
        ("model.hiden", "3", "did you mean model.n_hidden"),
        ("model.smoothing", "1.0", "model 'mlp' has no hyper-parameter 'smoothing'"),
        ("split_fractions", "(0.5,0.2,0.2)", "sum to 1"),
        ("split_fractions", "(1.1,-0.1,0.0)", "non-negative"),
        ("split_fractions", "(0.0,0.5,0.5)", "training split empty"),
        ("model.name", "gpt5", "unknown model; registered: bigram, bigram_counts"),
        ("optimizer", "lion", "sgd or adamw"),
        ("split_by", "name", "config key split_by='name': expected word or line"),
    ],
)
def test_bad_values_are_one_line_errors(key, value, message):
    with pytest.raises(UserError, match=message) as info:
        resolve("mlp", [(key, value)])
    assert "\n" not in str(info.value)


def test_unknown_config_name_lists_available():
    with pytest.raises(UserError, match="unknown config 'nope'; available: .*mlp"):
        load_config("nope")


def test_model_name_override_switches_to_that_models_defaults():
    config, _ = resolve("mlp", [("model.block_size", "2"), ("model.name", "bigram")])
    assert config.model.to_dict() == {"name": "bigram", "block_size": 2}  # in either order
    with pytest.raises(UserError, match="model 'bigram' has no hyper-parameter 'n_hidden'"):
        resolve("mlp", [("model.n_hidden", "7"), ("model.name", "bigram")])


def test_smoothing_of_the_count_bigram_must_not_be_negative():
    with pytest.raises(UserError, match="model.smoothing must be >= 0, got -1.0"):
        resolve("bigram_counts", [("model.smoothing", "-1")])


def test_split_by_is_word_by_default_and_line_by_flag():
    assert resolve("mlp")[0].split_by == "word"
    assert resolve("wavenet", [("split_by", "line")])[0].split_by == "line"
