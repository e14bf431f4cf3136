import json

import pytest
from conftest import run_cli, write_small_names


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    data = write_small_names(root, 1500)
    # from another directory, with a relative workdir: the default data and configs still resolve
    result = run_cli(
        "train",
        "--config",
        "mlp",
        "--workdir",
        "w",
        f"--config.data_path={data}",
        "--config.num_steps=600",
        "--config.steps_per_call=300",
        cwd=root,
    )
    assert result.returncode == 0, result.stderr
    assert "mlp: 600 steps" in result.stdout
    # stderr is not a terminal here: plain progress lines instead of a bar
    assert "step 600/600  loss " in result.stderr and " steps/s" in result.stderr
    assert "\r" not in result.stderr
    assert (
        sum(
            line.endswith(("new", "in train", "in val/test")) for line in result.stdout.splitlines()
        )
        == 10
    )
    return root / "w"


def test_split_losses_equal_results_json(workdir):
    result = run_cli("evaluate", "--workdir", str(workdir))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == json.loads((workdir / "results.json").read_text())["loss"]
    only_val = json.loads(run_cli("evaluate", "--workdir", str(workdir), "--split", "val").stdout)
    assert list(only_val) == ["val"]


def test_score_words_and_other_files(workdir, tmp_path):
    result = run_cli("evaluate", "--workdir", str(workdir), "--score", "emma", "xqzzj")
    assert result.returncode == 0, result.stderr
    emma, odd = json.loads(result.stdout)
    assert emma["word"] == "emma" and emma["nll_per_char"] == pytest.approx(emma["nll"] / 5)
    assert emma["nll_per_char"] < odd["nll_per_char"]

    other = tmp_path / "other.txt"
    other.write_text("anna\nbob\n")
    scored = json.loads(run_cli("evaluate", "--workdir", str(workdir), "--data", str(other)).stdout)
    total = json.loads(
        run_cli("evaluate", "--workdir", str(workdir), "--score", "anna", "bob").stdout
    )
    assert scored["loss"] == pytest.approx(sum(s["nll"] for s in total) / 9, rel=1e-5)

    bad = run_cli("evaluate", "--workdir", str(workdir), "--score", "zoë")
    assert (
        bad.returncode == 2
        and "Traceback" not in bad.stderr
        and "'zoë' has characters not in the trained vocabulary: 'ë'" in bad.stderr
    )
