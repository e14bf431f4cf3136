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
from jax_makemore.sample import (
    TooFewWords,
    default_max_len,
    generate,
    label_words,
    sample_words,
)
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


def test_top_k_1_and_a_cold_temperature_are_greedy_regardless_of_seed(trained):
    loaded = load_trained(trained)
    # independent greedy decode, one character at a time
    context, out, gaps = [loaded.vocab.boundary_id] * loaded.config.model.block_size, [], []
    for _ in range(default_max_len(loaded.seq_len - 1)):
        logits = loaded.model.apply(
            loaded.variables, jnp.asarray([context], jnp.int32), train=False
        )
        top2 = np.sort(np.asarray(logits[0]))[-2:]
        gaps.append(top2[1] - top2[0])
        nxt = int(jnp.argmax(logits[0]))
        if nxt == loaded.vocab.boundary_id:
            break
        out.append(loaded.vocab.itos[nxt])
        context = context[1:] + [nxt]
    greedy = "".join(out)
    # at temperature 1e-3 a runner-up 0.02 below the best has probability < e^-20
    assert min(gaps) > 0.02, "a near tie on the greedy path: the cold check would be luck"
    for seed in range(4):
        assert _words(loaded, seed, num=5, top_k=1) == [greedy] * 5
        assert _words(loaded, seed, num=5, temperature=1e-3) == [greedy] * 5


def _next_char_probs(loaded, context: str, temperature: float = 1.0, top_k: int = 0):
    """The model's exact distribution of the character after `context` (a window model: the
    last block_size characters, boundary tokens before the word), as `sample` should draw it."""
    T, b = loaded.config.model.block_size, loaded.vocab.boundary_id
    window = ([b] * T + [loaded.vocab.stoi[c] for c in context])[-T:]
    logits = loaded.model.apply(loaded.variables, jnp.asarray([window], jnp.int32), train=False)
    logits = np.asarray(logits[0], np.float64) / temperature
    if top_k:
        logits = np.where(logits >= np.sort(logits)[-top_k], logits, -np.inf)
    p = np.exp(logits - logits.max())
    return p / p.sum()


def _frequencies(ids, V):
    return np.bincount(np.asarray(ids, np.int64), minlength=V) / len(ids)


def _tv(p, q):
    return 0.5 * np.abs(p - q).sum()


def _tv_bound(p, n):
    """About 4x the expected total-variation distance of n draws from p to p itself."""
    return 1.5 * np.sqrt(p * (1 - p) / n).sum()


def _ids_at(loaded, words, i):
    """The id of each word's character i; the boundary token where the word ended before i."""
    return [loaded.vocab.stoi[w[i]] if len(w) > i else loaded.vocab.boundary_id for w in words]


@pytest.mark.parametrize(
    "temperature, top_k, other",
    [
        (1.0, 0, dict(temperature=2.0)),
        pytest.param(2.0, 0, dict(temperature=1.0), marks=pytest.mark.heavy),
        pytest.param(0.5, 0, dict(temperature=1.0), marks=pytest.mark.heavy),
        (1.0, 3, dict(top_k=0)),
    ],
)
def test_first_characters_follow_the_models_softmax(trained, temperature, top_k, other):
    """20,000 first characters against the exact softmax of the first step (logits / T,
    truncated to the top k); each case also differs clearly from the `other` settings, so a
    sampler that ignored the temperature or top_k would fail."""
    loaded = load_trained(trained)
    n, V = 20_000, loaded.vocab.size
    p = _next_char_probs(loaded, "", temperature, top_k)
    words = _words(loaded, num=n, max_len=1, temperature=temperature, top_k=top_k)
    bound = _tv_bound(p, n)
    assert _tv(_frequencies(_ids_at(loaded, words, 0), V), p) < bound
    settings = {"temperature": temperature, "top_k": top_k, **other}
    assert _tv(p, _next_char_probs(loaded, "", **settings)) > 3 * bound


def test_a_prefix_continues_with_the_models_conditionals(trained):
    """After --prefix 'ma': the first generated character follows p(. | 'ma'), and the second,
    among the words whose first one is the commonest letter, follows p(. | 'ma' + letter)."""
    loaded = load_trained(trained)
    n, V, b = 20_000, loaded.vocab.size, loaded.vocab.boundary_id
    words = _words(loaded, prefix="ma", num=n, max_len=2)
    assert all(w.startswith("ma") for w in words)
    first = np.array(_ids_at(loaded, words, 2))
    p1 = _next_char_probs(loaded, "ma")
    assert _tv(_frequencies(first, V), p1) < _tv_bound(p1, n)
    # the prefix matters: its conditional is far from the first character of a word
    assert _tv(p1, _next_char_probs(loaded, "")) > 3 * _tv_bound(p1, n)
    counts = np.bincount(first, minlength=V)
    counts[b] = 0
    letter = loaded.vocab.itos[int(np.argmax(counts))]
    after = [w for w in words if w[2:3] == letter]
    p2 = _next_char_probs(loaded, "ma" + letter)
    assert len(after) > 1000
    assert _tv(_frequencies(_ids_at(loaded, after, 3), V), p2) < _tv_bound(p2, len(after))
    assert _tv(p2, p1) > 3 * _tv_bound(p2, len(after))


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


@pytest.mark.heavy
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


@pytest.mark.heavy
def test_sample_cli_prints_words_on_stdout_and_their_summary_on_stderr(trained):
    result = run_cli("sample", "--workdir", str(trained), "--num", "7", "--seed", "3")
    assert result.returncode == 0, result.stderr
    words = result.stdout.splitlines()
    assert len(words) == 7 and all(w and " " not in w for w in words)
    # the summary counts these words against the run's own splits
    loaded = load_trained(trained)
    seen = sum(w in loaded.train_words for w in words)
    heldout = sum(w in loaded.heldout_words and w not in loaded.train_words for w in words)
    mean_len = sum(map(len, words)) / len(words)
    assert result.stderr.strip().splitlines()[-1] == (
        f"7 words: {7 - seen - heldout} new, {seen} in train, {heldout} in val/test; "
        f"mean length {mean_len:.2f}; 7 draws"
    )
    again = run_cli("sample", "--workdir", str(trained), "--num", "7", "--seed", "3")
    assert again.stdout == result.stdout
    bad = run_cli("sample", "--workdir", str(trained), "--temperature", "0")
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().splitlines()[-1] == "error: --temperature must be > 0, got 0.0"


def test_new_words_are_no_line_of_the_data_file_and_follow_from_the_seed(trained):
    loaded = load_trained(trained)
    data = loaded.train_words | loaded.heldout_words
    key = jax.random.PRNGKey(7)
    words = sample_words(loaded, key, 300, new=True)
    assert len(words) == 300 and not set(words) & data
    assert words == sample_words(loaded, key, 300, new=True)
    # the first round is the unfiltered draw, less the data's words; later rounds add more
    first = [w for w in sample_words(loaded, key, 300) if w not in data]
    assert len(first) < 300 and words[: len(first)] == first
    unique = sample_words(loaded, key, 300, new=True, unique=True)
    assert len(set(unique)) == 300 and not set(unique) & data
    exclude = set(words[:50])
    others = sample_words(loaded, key, 300, new=True, exclude=exclude)
    assert len(others) == 300 and not set(others) & (exclude | data)


def test_new_needs_the_data_file_and_a_shortfall_keeps_the_words_found(trained):
    loaded = load_trained(trained)
    loaded.train_words = loaded.heldout_words = None
    with pytest.raises(UserError, match="--new needs the data file"):
        sample_words(loaded, jax.random.PRNGKey(0), 5, new=True)
    loaded = load_trained(trained)
    with pytest.raises(TooFewWords) as info:  # one generated character: at most V words
        sample_words(loaded, jax.random.PRNGKey(0), 60, max_len=1, unique=True)
    found = info.value.words
    assert 0 < len(found) < 60 and len(set(found)) == len(found)
    assert info.value.draws == 100 * 60 and all(len(w) <= 1 for w in found)


def test_min_len_keeps_every_word_whole_and_at_least_that_long(trained):
    loaded = load_trained(trained)
    key = jax.random.PRNGKey(2)
    words = sample_words(loaded, key, 500, min_len=6, max_len=8)
    assert all(6 <= len(w) <= 8 for w in words)
    assert sum(len(w) < 8 for w in words) > 100  # most words end by themselves
    plain = sample_words(loaded, key, 500, max_len=8)
    assert sum(len(w) < 6 for w in plain) > 100  # the limit is what made them long


@pytest.mark.heavy
def test_sample_cli_new_top_and_too_few(trained, tmp_path):
    loaded = load_trained(trained)
    data = loaded.train_words | loaded.heldout_words
    out = run_cli("sample", "--workdir", str(trained), "--num", "40", "--new", "--unique")
    assert out.returncode == 0, out.stderr
    words = out.stdout.splitlines()
    assert len(words) == len(set(words)) == 40 and not set(words) & data
    assert out.stderr.strip().splitlines()[-1].startswith("40 words: 40 new, 0 in train")
    assert "draws" in out.stderr
    top = run_cli("sample", "--workdir", str(trained), "--top", "5", "--min_len", "4")
    assert top.returncode == 0, top.stderr
    rows = [line.split("\t") for line in top.stdout.splitlines()]
    nlls = [float(x) for _, x in rows]
    assert len(rows) == 5 and nlls == sorted(nlls) and all(len(w) >= 4 for w, _ in rows)
    assert "exact best-first search" in top.stderr
    short = run_cli(
        "sample", "--workdir", str(trained), "--num", "60", "--max_len", "1", "--unique"
    )
    assert short.returncode == 2
    assert 0 < len(short.stdout.splitlines()) < 60
    last = short.stderr.strip().splitlines()[-1]
    assert last.startswith("error: only ") and "6000 draws" in last


@pytest.mark.heavy  # 10,500 words through the command: two batches of 10,000 compiled
def test_the_cli_streams_batches_with_the_words_of_one_list(trained):
    """Past one batch (10,000 words) the command writes batch by batch; the words are those
    of `sample_words` in one list, and the summary counts every batch."""
    loaded = load_trained(trained)
    expected = sample_words(loaded, jax.random.PRNGKey(2), 10_500)
    cli = run_cli("sample", "--workdir", str(trained), "--num", "10500", "--seed", "2")
    assert cli.returncode == 0, cli.stderr
    assert cli.stdout.splitlines() == expected
    assert "10500 words:" in cli.stderr and "10500 draws" in cli.stderr


def test_generate_batches_yields_the_first_batch_before_drawing_the_rest(trained):
    from jax_makemore.sample import generate_batches

    loaded = load_trained(trained)
    kw = dict(layout=loaded.layout, input_len=loaded.input_len, max_len=12, spec=loaded.spec)
    stream = generate_batches(
        loaded.model, loaded.variables, loaded.vocab, jax.random.PRNGKey(0), 10**9, **kw
    )
    first = next(stream)  # 10**9 words would not fit in memory: only one batch is drawn
    assert len(first) == 10_000
    assert first[:50] == generate(
        loaded.model, loaded.variables, loaded.vocab, jax.random.PRNGKey(0), 50,
        batch_size=10_000, **kw,
    )[:50]  # fmt: skip


@pytest.mark.heavy
def test_a_closed_pipe_ends_the_sample_command_quietly(trained):
    import subprocess
    import sys

    from conftest import REPO

    proc = subprocess.Popen(
        [sys.executable, "-m", "jax_makemore.sample", "--workdir", str(trained), "--num", "10000000"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO, text=True,
    )  # fmt: skip
    lines = [proc.stdout.readline() for _ in range(3)]
    proc.stdout.close()  # as `| head -3` does
    _, err = proc.communicate(timeout=600)
    assert all(line.strip() for line in lines)
    assert proc.returncode == 0 and "Traceback" not in err, err[-2000:]
