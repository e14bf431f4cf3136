import json
import random
import subprocess
import sys

import chex
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jax_makemore import DEFAULT_DATA_PATH
from jax_makemore.config import base_config
from jax_makemore.data import (
    Vocab,
    context_windows,
    load_dataset,
    read_words,
    split_data,
    split_lines,
    split_words,
)
from jax_makemore.errors import UserError


def test_vocab_boundary_is_last_and_round_trips():
    vocab = Vocab.from_words(["emma", "olivia", "ava"])
    assert vocab.itos[-1] == "." and vocab.boundary_id == vocab.size - 1
    assert vocab.chars == tuple(sorted(set("emmaoliviaava")))
    for word in ["emma", "olivia", "ava", "vivi"]:
        assert vocab.decode(vocab.encode(word)) == word
    assert vocab.decode(vocab.encode("ava") + [vocab.boundary_id] + vocab.encode("emma")) == "ava"
    assert Vocab.from_json(vocab.to_json()) == vocab


def test_boundary_token_avoids_characters_of_the_data():
    vocab = Vocab.from_words(["a.b", "c|d"])
    assert vocab.boundary not in vocab.chars
    assert vocab.boundary not in ".|"
    assert vocab.decode(vocab.encode("a.b")) == "a.b"


def test_encode_rejects_unknown_characters():
    vocab = Vocab.from_words(["abc"])
    with pytest.raises(UserError, match="'z'"):
        vocab.encode("abz")


def test_read_words_strips_crlf_and_blank_lines(tmp_path):
    path = tmp_path / "w.txt"
    path.write_bytes(b"emma\r\n\r\n  olivia \r\n\n ava\n")
    assert read_words(path) == ["emma", "olivia", "ava"]


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "does not exist"),
        (b"", "no non-empty lines"),
        (b"  \n\t\n \r\n", "no non-empty lines"),
        (b"emma\nol\xffivia\n", "not UTF-8 .*offset 7"),
    ],
)
def test_read_words_errors_name_the_file(tmp_path, content, message):
    path = tmp_path / "data.txt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(UserError, match=message) as info:
        read_words(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


SWEDISH = ["åsa", "björn", "märta", "örjan", "ängla"]


def test_read_words_in_another_encoding_and_utf8_with_a_byte_order_mark(tmp_path):
    cp = tmp_path / "cp1252.txt"
    cp.write_bytes("\n".join(SWEDISH).encode("cp1252"))
    assert read_words(cp, encoding="cp1252") == SWEDISH
    bom = tmp_path / "bom.txt"
    bom.write_bytes(b"\xef\xbb\xbf" + "\n".join(SWEDISH).encode("utf-8"))
    assert read_words(bom) == SWEDISH  # the mark is not part of the first word
    with pytest.raises(UserError) as info:  # cp1252's 0xe5 (å) starts no UTF-8 sequence here
        read_words(cp)
    message = str(info.value)
    assert "line 1 is not UTF-8" in message and "--config.encoding" in message
    assert "\n" not in message
    with pytest.raises(UserError, match="unknown encoding 'klingon'.*config key encoding"):
        read_words(cp, encoding="klingon")


def test_the_error_names_the_line_of_the_first_undecodable_byte(tmp_path):
    path = tmp_path / "mixed.txt"
    path.write_bytes(b"anna\nbo\n" + "björn\n".encode("cp1252"))
    with pytest.raises(UserError, match="line 3 is not UTF-8 .*0xf6"):
        read_words(path)


def test_load_dataset_reads_the_configs_encoding_and_old_configs_default_to_utf8(tmp_path):
    from jax_makemore.data import dataset_from_config

    path = tmp_path / "sv.txt"
    path.write_bytes("\n".join(SWEDISH * 4).encode("cp1252"))
    config = base_config("bigram")
    config.data_path = str(path)
    config.encoding = "cp1252"
    assert "ö" in dataset_from_config(config).vocab.chars
    del config["encoding"]  # a config saved before the key existed
    with pytest.raises(UserError, match="not UTF-8"):
        dataset_from_config(config)


def test_utf8_encoded_surrogate_is_rejected(tmp_path):
    path = tmp_path / "s.txt"
    path.write_bytes(b"ab\xed\xa0\x80c\n")  # U+D800 encoded as if it were a character
    with pytest.raises(UserError, match="offset 2"):
        read_words(path)


def test_nul_and_emoji_and_combining_marks_round_trip(tmp_path):
    words = ["a\x00b", "caf\u0065\u0301", "\U0001f600x", "zo\u00eb"]
    path = tmp_path / "u.txt"
    path.write_text("\n".join(words), encoding="utf-8")
    vocab = Vocab.from_words(read_words(path))
    assert [vocab.decode(vocab.encode(w)) for w in read_words(path)] == words


def test_read_words_refuses_a_directory_and_an_overlong_line(tmp_path):
    with pytest.raises(UserError, match="is a directory"):
        read_words(tmp_path)
    path = tmp_path / "long.txt"
    path.write_text("a" * 100_000 + "\nbob\n")
    with pytest.raises(UserError, match="line 1 has 100000 characters; the limit is 10000"):
        read_words(path, base_config().max_word_length)
    assert len(read_words(path)) == 2  # no limit unless one is given


def test_split_is_disjoint_covering_and_deterministic():
    words = [f"w{i}" for i in range(1000)] + ["w1", "w2", "w2"]  # repeats stay in one split
    train, val, test = split_words(words, seed=7)
    assert sorted(train + val + test) == sorted(words)
    assert not (set(train) & set(val) or set(train) & set(test) or set(val) & set(test))
    assert (len(set(train)), len(set(val)), len(set(test))) == (800, 100, 100)
    assert split_words(words, seed=7) == (train, val, test)
    assert split_words(words, seed=8) != (train, val, test)


def test_split_fraction_zero_gives_empty_split():
    train, val, test = split_words([f"w{i}" for i in range(50)], seed=0, fractions=(0.9, 0.0, 0.1))
    assert val == [] and len(train) == 45 and len(test) == 5


@pytest.mark.parametrize(
    "fractions", [(0.5, 0.2, 0.2), (1.2, -0.1, -0.1), (0.0, 0.5, 0.5), (0.5, 0.5)]
)
def test_bad_split_fractions(fractions):
    with pytest.raises(UserError, match="split_fractions"):
        split_words(["a", "b"], seed=0, fractions=fractions)


#: The lectures' split, verbatim, run in a fresh interpreter on the lines of argv[1].
LECTURE_SPLIT = """
import json, random, sys
words = open(sys.argv[1]).read().splitlines()
random.seed(42)
random.shuffle(words)
n1 = int(0.8*len(words))
n2 = int(0.9*len(words))
print(json.dumps([words[:n1], words[n1:n2], words[n2:]]))
"""


def test_line_split_is_the_lectures_split_list_for_list():
    """split_by="line" with split_seed=42 gives the lecture code's three lists, same order."""
    words = read_words(DEFAULT_DATA_PATH)
    out = subprocess.run(
        [sys.executable, "-c", LECTURE_SPLIT, str(DEFAULT_DATA_PATH)],
        capture_output=True,
        text=True,
        check=True,
    )
    lecture = tuple(json.loads(out.stdout))
    ours = split_data(words, 42, (0.8, 0.1, 0.1), "line")
    assert ours == lecture
    assert [len(s) for s in ours] == [int(0.8 * len(words)), 3247, 3247]
    assert set(ours[0]) & set(ours[1])  # repeated names cross splits, as in the lectures


def test_line_split_keeps_repeats_cuts_by_the_lectures_rule_and_leaves_global_state():
    state = random.getstate()
    lines = [f"w{i % 70}" for i in range(101)]  # 31 names on two lines
    train, val, test = split_lines(lines, seed=3)
    assert random.getstate() == state  # no global RNG in library code
    assert sorted(train + val + test) == sorted(lines)
    assert (len(train), len(val), len(test)) == (80, 10, 11)  # int(0.8*101), int(0.9*101)
    assert split_lines(lines, seed=3) == (train, val, test)
    assert split_lines(lines, seed=4) != (train, val, test)
    train, val, test = split_lines(lines, seed=3, fractions=(0.7, 0.2, 0.1))
    assert (len(train), len(val)) == (int(0.7 * 101), int(0.9 * 101) - int(0.7 * 101))
    assert split_lines(lines, seed=3, fractions=(0.9, 0.0, 0.1))[1] == []


def test_cumulative_cut_matches_the_literal_fraction():
    """The second cut is int(0.9*n) for (0.8, 0.1, 0.1) and for (0.7, 0.2, 0.1) alike, although
    0.7 + 0.2 is 0.8999999999999999 in floating point (n = 10 would cut at 8)."""
    for fractions in ((0.8, 0.1, 0.1), (0.7, 0.2, 0.1)):
        for n in range(1, 2000):
            train, val, _ = split_lines(range(n), seed=0, fractions=fractions)
            expected = (int(fractions[0] * n), int(0.9 * n))
            assert (len(train), len(train) + len(val)) == expected, (fractions, n)


def test_word_split_is_the_default_and_unknown_split_by_is_refused(small_names):
    words = read_words(small_names)
    assert split_data(words, 1337) == split_words(words, 1337)
    default = load_dataset(small_names, 1337, block_size=3)
    by_line = load_dataset(small_names, 1337, block_size=3, split_by="line")
    assert default.words == split_words(words, 1337)
    assert by_line.words == split_lines(words, 1337)
    assert by_line.vocab == default.vocab and by_line.seq_len == default.seq_len
    with pytest.raises(UserError, match="split_by='name': expected word or line"):
        split_data(words, 0, split_by="name")


def test_context_windows_for_emma():
    vocab = Vocab.from_words(["emma"])  # chars a, e, m; boundary id 3
    X, Y = context_windows(["emma"], vocab, block_size=3)
    b, a, e, m = 3, 0, 1, 2
    assert X.tolist() == [[b, b, b], [b, b, e], [b, e, m], [e, m, m], [m, m, a]]
    assert Y.tolist() == [e, m, m, a, b]
    assert X.dtype == np.int32 and Y.dtype == np.int32


def test_context_windows_shapes_match_a_python_loop():
    words = ["a", "bob", "carol", "dd"]
    vocab = Vocab.from_words(words)
    for block_size in (1, 2, 5):
        X_NxT, Y_N = context_windows(words, vocab, block_size)
        n = sum(len(w) + 1 for w in words)
        chex.assert_shape(X_NxT, (n, block_size))
        chex.assert_shape(Y_N, (n,))
        expected_X, expected_Y = [], []
        for w in words:
            context = [vocab.boundary_id] * block_size
            for ch in vocab.encode(w) + [vocab.boundary_id]:
                expected_X.append(context)
                expected_Y.append(ch)
                context = context[1:] + [ch]
        assert X_NxT.tolist() == expected_X and Y_N.tolist() == expected_Y


def test_load_dataset_on_the_shipped_file():
    ds = load_dataset(DEFAULT_DATA_PATH, 1337, block_size=3)
    assert ds.vocab.size == 27 and ds.vocab.boundary == "."
    n_words = sum(len(w) for w in ds.words)
    assert 32_000 < n_words < 33_000
    X, Y = ds.split("train")
    assert len(X) == sum(len(w) + 1 for w in ds.words[0])


# -- fuzzing: arbitrary Unicode lines survive read -> Vocab -> encode -> decode -----------------

line_text = st.text(
    alphabet=st.characters(
        blacklist_categories=("Cs",),
        blacklist_characters="\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029",
    ),
    min_size=0,
    max_size=30,
)


@settings(max_examples=150, deadline=None)
@given(st.lists(line_text, min_size=1, max_size=20))
def test_fuzz_unicode_round_trip(tmp_path_factory, lines):
    path = tmp_path_factory.mktemp("fuzz") / "f.txt"
    path.write_text("\n".join(lines), encoding="utf-8")
    expected = [w.strip() for w in lines if w.strip()]
    if not expected:
        with pytest.raises(UserError, match="no non-empty lines"):
            read_words(path)
        return
    words = read_words(path)
    assert words == expected
    vocab = Vocab.from_words(words)
    assert vocab.boundary not in vocab.chars
    for word in words:
        assert vocab.decode(vocab.encode(word)) == word


@settings(max_examples=50, deadline=None)
@given(st.binary(min_size=1, max_size=40))
def test_fuzz_bytes_either_decode_or_fail_cleanly(tmp_path_factory, raw):
    path = tmp_path_factory.mktemp("bytes") / "b.txt"
    path.write_bytes(raw)
    try:
        text = raw.decode("utf-8-sig")  # a leading byte-order mark is not part of the text
    except UnicodeDecodeError:
        with pytest.raises(UserError, match="not UTF-8"):
            read_words(path)
        return
    if not any(line.strip() for line in text.splitlines()):
        with pytest.raises(UserError):
            read_words(path)
    else:
        assert read_words(path) == [w.strip() for w in text.splitlines() if w.strip()]


@pytest.mark.heavy
def test_a_cp1252_file_trains_samples_and_resumes(tmp_path):
    """Swedish names in cp1252 with config key encoding: training reads them (ö, å, ä in the
    vocabulary), sampling works, and a resumed run continues from the checkpoint."""
    import jax
    from conftest import tiny_config

    from jax_makemore.restore import load_trained
    from jax_makemore.sample import sample_words
    from jax_makemore.train import train_and_evaluate

    path = tmp_path / "sv.txt"
    path.write_bytes("\n".join(SWEDISH * 20).encode("cp1252"))
    config, name = tiny_config("mlp", path, encoding="cp1252", num_steps=20, steps_per_call=10)
    train_and_evaluate(config, name, tmp_path / "w")
    loaded = load_trained(tmp_path / "w")
    assert {"å", "ö", "ä"} <= set(loaded.vocab.chars) and loaded.step == 20
    words = sample_words(loaded, jax.random.PRNGKey(0), 50)
    assert len(words) == 50 and set("".join(words)) <= set(loaded.vocab.chars)
    config.num_steps = 40
    train_and_evaluate(config, name, tmp_path / "w", resume=True)
    assert load_trained(tmp_path / "w").step == 40
