"""Every bad input is a one-line error with a non-zero status and no traceback; interrupted,
killed or diverging runs lose nothing (issue 6)."""

import importlib
import json
import os
import signal
import subprocess
import sys
import time

import chex
import pytest
from conftest import REPO, run_cli, write_small_names

from jax_makemore import checkpoint as ckpt
from jax_makemore import evaluate, sample
from jax_makemore.errors import run_cli as run_main
from jax_makemore.restore import load_trained

#: the train module (`jax_makemore.train`, the attribute of the package, is the API function)
train = importlib.import_module("jax_makemore.train")


def cli(main, *argv, capsys):
    """The entry point's own error handling, in-process: (exit status, stderr)."""
    status = run_main(main, list(argv))
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return status, err


def one_line_error(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, err
    return lines[0]


# -- data ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "does not exist"),
        ("dir", "is a directory"),
        (b"", "has no non-empty lines"),
        (b" \n\t\r\n\n", "has no non-empty lines"),
        (b"abc\n\xc3\x28\n", "is not UTF-8 (invalid byte 0xc3 at offset 4)"),
        (b"a" * 100_000 + b"\n", "line 1 has 100000 characters; the limit is 10000"),
    ],
)
def test_bad_data_files(tmp_path, capsys, content, message):
    path = tmp_path / "data.txt"
    if content == "dir":
        path.mkdir()
    elif content is not None:
        path.write_bytes(content)
    status, err = cli(
        train.main,
        "--config",
        "bigram_counts",
        "--workdir",
        str(tmp_path / "w"),
        f"--config.data_path={path}",
        capsys=capsys,
    )
    assert status == 2
    line = one_line_error(err)
    assert message in line and str(path) in line


@pytest.mark.heavy
def test_one_character_file_crlf_and_dotted_lines_train_and_round_trip(tmp_path, capsys):
    one = tmp_path / "one.txt"
    one.write_bytes(b"aaa\r\naa\r\na\r\n" * 20)
    status, _ = cli(
        train.main,
        "--config",
        "mlp",
        "--workdir",
        str(tmp_path / "one"),
        f"--config.data_path={one}",
        "--config.num_steps=50",
        "--config.steps_per_call=50",
        capsys=capsys,
    )
    assert status == 0
    assert json.loads((tmp_path / "one" / "results.json").read_text())["loss"]["train"] < 1.0

    dotted = tmp_path / "dotted.txt"
    dotted.write_text("\n".join(["a.b", "c.d", "dr.no", "j.r.r"] * 30) + "\n")
    status, _ = cli(
        train.main,
        "--config",
        "bigram_counts",
        "--workdir",
        str(tmp_path / "dot"),
        f"--config.data_path={dotted}",
        capsys=capsys,
    )
    assert status == 0
    loaded = load_trained(tmp_path / "dot")
    assert loaded.vocab.boundary != "." and "." in loaded.vocab.chars
    status = run_main(sample.main, ["--workdir", str(tmp_path / "dot"), "--num", "200"])
    words = capsys.readouterr().out.splitlines()
    assert status == 0 and len(words) == 200 and any("." in w for w in words)
    assert all(loaded.vocab.decode(loaded.vocab.encode(w)) == w for w in words)


# -- config -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--config", "nosuch"], "unknown config 'nosuch'; available: bigram, bigram_counts"),
        (["--config", "mlp", "--config.hidden=3"], "unknown config key 'hidden'"),
        (
            ["--config", "mlp", "--config.num_steps=lots"],
            "--config.num_steps='lots': expected an integer",
        ),
        (["--config", "mlp", "--config.batch_size=0"], "batch_size must be > 0, got 0"),
        (["--config", "mlp", "--config.num_steps=0"], "num_steps must be > 0, got 0"),
        (
            ["--config", "mlp", "--config.model.block_size=-1"],
            "model.block_size must be > 0, got -1",
        ),
        (["--config", "mlp", "--config.model.n_embd=0"], "model.n_embd must be > 0, got 0"),
        (["--config", "mlp", "--config.model.n_hidden=0"], "model.n_hidden must be > 0, got 0"),
        (
            ["--config", "mlp", "--config.model.name=gpt5"],
            "config key model.name='gpt5': unknown model; registered: bigram, bigram_counts",
        ),
        (
            ["--config", "mlp", "--config.model.n_layer=2"],
            "model 'mlp' has no hyper-parameter 'n_layer'",
        ),
        (
            ["--config", "mlp", "--config.split_fractions=(0.5,0.1,0.1)"],
            "must be non-negative and sum to 1",
        ),
        (
            ["--config", "mlp", "--config.split_fractions=(1.5,-0.5,0.0)"],
            "must be non-negative and sum to 1",
        ),
    ],
)
def test_bad_config(tmp_path, capsys, argv, message):
    status, err = cli(train.main, *argv, "--workdir", str(tmp_path / "w"), capsys=capsys)
    assert status == 2 and message in one_line_error(err)
    assert not (tmp_path / "w").exists()


def test_training_split_with_no_words(tmp_path, capsys):
    data = tmp_path / "two.txt"
    data.write_text("ab\n")  # one distinct word: 0.8 * 1 rounds to a train split of 1, 0.4 to 0
    status, err = cli(
        train.main,
        "--config",
        "bigram_counts",
        "--workdir",
        str(tmp_path / "w"),
        f"--config.data_path={data}",
        "--config.split_fractions=(0.4,0.3,0.3)",
        capsys=capsys,
    )
    assert status == 2 and "training split" in one_line_error(err) and "has no words" in err


# -- workdir ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("rel")
    data = write_small_names(root, 1000)
    status = run_main(
        train.main,
        [
            "--config",
            "mlp",
            "--workdir",
            str(root / "w"),
            f"--config.data_path={data}",
            "--config.num_steps=400",
            "--config.steps_per_call=200",
            "--config.checkpoint_every=200",
            "--config.num_samples=0",
        ],
    )
    assert status == 0
    return root / "w", data


@pytest.mark.parametrize("main", [sample.main, evaluate.main])
def test_workdir_without_checkpoint_or_a_file(tmp_path, capsys, main):
    status, err = cli(main, "--workdir", str(tmp_path), capsys=capsys)
    assert status == 2 and "has no checkpoint; train first" in one_line_error(err)
    a_file = tmp_path / "f"
    a_file.write_text("x")
    status, err = cli(main, "--workdir", str(a_file), capsys=capsys)
    assert status == 2 and "is a file, not a directory" in one_line_error(err)


def test_train_into_a_file_workdir(tmp_path, capsys):
    a_file = tmp_path / "f"
    a_file.write_text("keep me")
    status, err = cli(
        train.main, "--config", "bigram_counts", "--workdir", str(a_file), capsys=capsys
    )
    assert status == 2 and "is a file" in one_line_error(err) and a_file.read_text() == "keep me"


@pytest.mark.heavy
def test_resume_with_a_different_model_is_refused(trained, capsys):
    workdir, data = trained
    before = ckpt.make_manager(workdir).all_steps()
    status, err = cli(
        train.main,
        "--config",
        "mlp",
        "--workdir",
        str(workdir),
        f"--config.data_path={data}",
        "--resume",
        "--config.model.n_hidden=50",
        "--config.num_steps=600",
        capsys=capsys,
    )
    message = "model.n_hidden=200 but the flags ask for model.n_hidden=50"
    assert status == 2 and message in one_line_error(err)
    status, err = cli(
        train.main,
        "--config",
        "bigram",
        "--workdir",
        str(workdir),
        f"--config.data_path={data}",
        "--resume",
        capsys=capsys,
    )
    assert (
        status == 2
        and "model.name='mlp' but the flags ask for model.name='bigram'" in one_line_error(err)
    )
    assert ckpt.make_manager(workdir).all_steps() == before


def test_corrupted_checkpoint_is_a_one_line_error(trained, tmp_path, capsys):
    import shutil

    workdir = tmp_path / "copy"
    shutil.copytree(trained[0], workdir)
    step_dir = ckpt.checkpoint_dir(workdir) / str(ckpt.make_manager(workdir).latest_step())
    for path in step_dir.rglob("*"):
        if path.is_file() and path.stat().st_size > 0:
            path.write_bytes(b"\x00garbage" * 3)
    status, err = cli(sample.main, "--workdir", str(workdir), capsys=capsys)
    assert status == 2 and "cannot be" in one_line_error(err)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through directory permissions")
def test_read_only_workdir(tmp_path, capsys):
    workdir = tmp_path / "ro"
    workdir.mkdir()
    workdir.chmod(0o500)
    try:
        status, err = cli(
            train.main, "--config", "bigram_counts", "--workdir", str(workdir), capsys=capsys
        )
        assert status == 2 and "not writable" in one_line_error(err)
    finally:
        workdir.chmod(0o700)


# -- divergence ---------------------------------------------------------------------------------


def test_divergence_stops_and_keeps_the_last_good_checkpoint(trained, tmp_path, capsys):
    import shutil

    workdir = tmp_path / "div"
    shutil.copytree(trained[0], workdir)
    good = ckpt.restore_state(workdir, 400)
    status, err = cli(
        train.main,
        "--config",
        "mlp",
        "--workdir",
        str(workdir),
        f"--config.data_path={trained[1]}",
        "--resume",
        "--config.num_steps=1000",
        "--config.steps_per_call=200",
        "--config.learning_rate=1e6",
        "--config.checkpoint_every=200",
        capsys=capsys,
    )
    line = one_line_error(err)
    # the step at lr 1e6 is 401; the loss of step 402 is the first computed after it
    assert status == 3 and "training diverged" in line and " at step 402 (" in line
    assert "checkpoint 400" in line
    assert ckpt.make_manager(workdir).latest_step() == 400
    chex.assert_trees_all_equal(ckpt.restore_state(workdir, 400)["params"], good["params"])
    assert run_main(sample.main, ["--workdir", str(workdir), "--num", "3"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 3


# -- signals (real subprocesses) ----------------------------------------------------------------


def _train_proc(workdir, data, *extra):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jax_makemore.train",
            "--config",
            "mlp",
            "--workdir",
            str(workdir),
            f"--config.data_path={data}",
            "--config.steps_per_call=500",
            "--config.lr_decay_steps=10000",
            "--config.num_samples=0",
            *extra,
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for_metrics(workdir, proc, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        metrics = workdir / "metrics.jsonl"
        if metrics.exists() and metrics.read_text().count("\n") >= 1:
            return
        if proc.poll() is not None:
            raise AssertionError(proc.stderr.read())
        time.sleep(0.05)
    proc.kill()
    raise AssertionError("training never logged")


@pytest.mark.heavy
@pytest.mark.parametrize("sig, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_saves_a_checkpoint_and_resume_matches_an_uninterrupted_run(
    trained, tmp_path, sig, status
):
    data = trained[1]
    num_steps = "--config.num_steps=20000"
    proc = _train_proc(tmp_path / "int", data, num_steps)
    try:
        _wait_for_metrics(tmp_path / "int", proc)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == status, err
    assert "Traceback" not in err and "continue with --resume" in err
    stopped_at = ckpt.make_manager(tmp_path / "int").latest_step()
    assert 0 < stopped_at < 20000 and stopped_at % 500 == 0

    resumed = run_cli(
        "train",
        "--config",
        "mlp",
        "--workdir",
        str(tmp_path / "int"),
        f"--config.data_path={data}",
        "--config.steps_per_call=500",
        "--config.lr_decay_steps=10000",
        "--config.num_samples=0",
        num_steps,
        "--resume",
    )
    assert resumed.returncode == 0, resumed.stderr
    straight = run_cli(
        "train",
        "--config",
        "mlp",
        "--workdir",
        str(tmp_path / "one"),
        f"--config.data_path={data}",
        "--config.steps_per_call=500",
        "--config.lr_decay_steps=10000",
        "--config.num_samples=0",
        num_steps,
    )
    assert straight.returncode == 0, straight.stderr
    a = ckpt.restore_state(tmp_path / "int", 20000)
    b = ckpt.restore_state(tmp_path / "one", 20000)
    chex.assert_trees_all_equal(a["params"], b["params"])
    chex.assert_trees_all_equal(a["batch_stats"], b["batch_stats"])


@pytest.mark.heavy
def test_kill_9_during_checkpointing_leaves_a_restorable_checkpoint(trained, tmp_path):
    """SIGKILL at many moments of a run that checkpoints every 100 steps; whatever the moment,
    the latest checkpoint restores and samples."""
    data = trained[1]
    workdir = tmp_path / "k"
    for attempt, delay in enumerate((0.0, 0.13, 0.29, 0.41)):
        extra = [
            "--config.num_steps=100000",
            "--config.checkpoint_every=100",
            "--config.steps_per_call=100",
            "--config.keep_checkpoints=3",
        ]
        proc = _train_proc(workdir, data, *extra, "--resume" if attempt else "--overwrite")
        try:
            if attempt == 0:
                deadline = time.time() + 120
                while (
                    not ckpt.has_checkpoint(workdir)
                    and time.time() < deadline
                    and proc.poll() is None
                ):
                    time.sleep(0.05)
            else:
                time.sleep(8)  # past start-up and compilation, inside the save-heavy loop
            time.sleep(delay)
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
        finally:
            proc.kill()
        loaded = load_trained(workdir)
        assert loaded.step > 0 and loaded.step % 100 == 0
    result = run_cli("sample", "--workdir", str(workdir), "--num", "5")
    assert result.returncode == 0 and len(result.stdout.splitlines()) == 5, result.stderr
