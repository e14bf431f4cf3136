import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import run_cli, tiny_config, write_small_names

from jax_makemore.data import Vocab
from jax_makemore.errors import UserError
from jax_makemore.models import input_length
from jax_makemore.models.bigram import CountBigram
from jax_makemore.restore import load_trained
from jax_makemore.sample import default_max_len, generate, label_words
from jax_makemore.train import train_and_evaluate


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A briefly trained MLP (BatchNorm) workdir on 1,500 names."""
    root = tmp_path_factory.mktemp("sample")
    data = write_small_names(root, 1500)
    config, name = tiny_config("mlp", data, num_steps=1000, steps_per_call=500)
    train_and_evaluate(config, name, root / "w")
    return root / "w"


def _words(loaded, seed=0, **kw):
    num = kw.pop("num", 50)
    kw.setdefault("max_len", default_max_len(loaded.seq_len - 1))
    return generate(
        loaded.model,
        loaded.variables,
        loaded.vocab,
        jax.random.PRNGKey(seed),
        num,
        layout=loaded.spec.layout,
        input_len=input_length(loaded.config.model, loaded.seq_len),
        **kw,
    )


def test_same_seed_same_words_different_seed_different_words(trained):
    loaded = load_trained(trained)
    a, b, c = _words(loaded, 0), _words(loaded, 0), _words(loaded, 1)
    assert a == b and a != c
    assert all(set(w) <= set(loaded.vocab.chars) for w in a)


def test_top_k_1_is_greedy_regardless_of_seed(trained):
    loaded = load_trained(trained)
    words = {tuple(_words(loaded, seed, num=5, top_k=1)) for seed in range(4)}
    assert len(words) == 1
    greedy = next(iter(words))
    assert len(set(greedy)) == 1  # every row decodes the same argmax path
    # independent greedy decode, one character at a time
    context, out = [loaded.vocab.boundary_id] * loaded.config.model.block_size, []
    for _ in range(default_max_len(loaded.seq_len - 1)):
        logits = loaded.model.apply(
            loaded.variables, jnp.asarray([context], jnp.int32), train=False
        )
        nxt = int(jnp.argmax(logits[0]))
        if nxt == loaded.vocab.boundary_id:
            break
        out.append(loaded.vocab.itos[nxt])
        context = context[1:] + [nxt]
    assert greedy[0] == "".join(out)


def test_prefix_max_len_and_temperature(trained):
    loaded = load_trained(trained)
    words = _words(loaded, prefix="ma", num=30, max_len=4)
    assert all(w.startswith("ma") and len(w) <= 6 for w in words)
    cold = _words(loaded, temperature=0.05, num=200)
    hot = _words(loaded, temperature=3.0, num=200)
    assert len(set(cold)) < len(set(hot))


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"num": 0}, "--num must be > 0"),
        ({"temperature": 0.0}, "--temperature must be > 0"),
        ({"top_k": 28}, "--top_k must be between 0"),
        ({"prefix": "x9"}, "--prefix 'x9' has characters not in the trained vocabulary: '9'"),
    ],
)
def test_bad_sampling_arguments(trained, kw, message):
    with pytest.raises(UserError, match=message):
        _words(load_trained(trained), **kw)


def test_first_characters_follow_the_count_bigram_boundary_row():
    """20,000 samples of a count bigram: first-character frequencies match the model's
    boundary-token row (total-variation distance < 0.02)."""
    vocab = Vocab.from_words(["abcdefgh"])
    V = vocab.size
    probs = np.random.default_rng(0).dirichlet(np.ones(V), size=V).astype(np.float32)
    model = CountBigram(vocab_size=V)
    variables = {"params": {"log_probs": jnp.log(probs)}}
    words = generate(
        model,
        variables,
        vocab,
        jax.random.PRNGKey(3),
        20_000,
        layout="windows",
        input_len=1,
        max_len=1,
    )
    first = np.array([vocab.stoi[w[0]] if w else vocab.boundary_id for w in words])
    empirical = np.bincount(first, minlength=V) / len(first)
    tv = 0.5 * np.abs(empirical - probs[vocab.boundary_id]).sum()
    assert tv < 0.02


def test_large_requests_run_in_batches_and_match_the_first_batch():
    vocab = Vocab.from_words(["abc"])
    model = CountBigram(vocab_size=vocab.size)
    variables = {"params": {"log_probs": jnp.zeros((vocab.size, vocab.size))}}
    key = jax.random.PRNGKey(0)
    kw = dict(layout="windows", input_len=1, max_len=5, batch_size=10)
    small = generate(model, variables, vocab, key, 30, **kw)
    large = generate(model, variables, vocab, key, 95, **kw)
    assert len(large) == 95 and large[:30] == small


def test_label_words():
    assert label_words(["a", "b", "c"], {"a"}, {"b"}) == ["in train", "in val/test", "new"]


def test_sample_cli_prints_only_words_on_stdout(trained):
    result = run_cli("sample", "--workdir", str(trained), "--num", "7", "--seed", "3")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 7 and all(line and " " not in line for line in lines)
    assert "7 words:" in result.stderr and "new" in result.stderr and "mean length" in result.stderr
    again = run_cli("sample", "--workdir", str(trained), "--num", "7", "--seed", "3")
    assert again.stdout == result.stdout
    bad = run_cli("sample", "--workdir", str(trained), "--temperature", "0")
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().splitlines()[-1] == "error: --temperature must be > 0, got 0.0"
