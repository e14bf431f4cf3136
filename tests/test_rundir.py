"""The run directory's typed readers read what the writers write."""

from __future__ import annotations

import json

from jax_makemore import rundir


def test_readers_return_what_was_written(tmp_path):
    assert rundir.read_metrics(tmp_path) == [] and not rundir.has_results(tmp_path)
    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "loss": 3.0}\n\n{"step": 2}\n')
    assert rundir.read_metrics(tmp_path) == [{"step": 1, "loss": 3.0}, {"step": 2}]
    rundir.write_json_atomic(tmp_path / "results.json", {"steps": 2, "loss": {"val": 2.5}})
    assert rundir.has_results(tmp_path)
    assert rundir.read_results(tmp_path) == {"steps": 2, "loss": {"val": 2.5}}
    assert not (tmp_path / "results.json.tmp").exists()
    (tmp_path / "diagnostics.jsonl").write_text('{"step": 0}\n')
    assert rundir.read_diagnostics(tmp_path) == [{"step": 0}]


def test_a_sweep_dir_is_one_with_sweep_json(tmp_path):
    assert not rundir.is_sweep_dir(tmp_path)
    record = {"config": "mlp", "members": [{"name": "seed=0", "workdir": "members/seed=0"}]}
    (tmp_path / "sweep.json").write_text(json.dumps(record))
    assert rundir.is_sweep_dir(tmp_path) and rundir.read_sweep(tmp_path) == record
    assert rundir.members_dir(tmp_path) == tmp_path / "members"
    assert rundir.checkpoints_dir(tmp_path) == tmp_path.resolve() / "checkpoints"


def test_trim_jsonl_keeps_the_steps_up_to_the_checkpoint(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(json.dumps({"step": s}) + "\n" for s in (10, 20, 30)))
    rundir.trim_jsonl(path, 20)
    assert [r["step"] for r in rundir.read_jsonl(path)] == [10, 20]
