"""Running the project's commands as subprocesses and reading their results back."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import jax_makemore
from claims.budget import Budget
from claims.helpers import register_helpers, write_helper_configs
from jax_makemore.config import resolve
from jax_makemore.data import dataset_from_config

#: Written into each run's folder: the seconds its command took.
SECONDS_FILE = "seconds.json"
PACKAGE_ROOT = Path(jax_makemore.__file__).resolve().parents[1]
#: Where `claims` itself lives: the helper configs import it in the commands' processes.
CLAIMS_ROOT = Path(__file__).resolve().parents[1]


class Runner:
    """Runs the package's commands as subprocesses (the package this process imports, so a
    checkout or a snapshot of it is used consistently), keeps each command line for the report,
    and caches sweeps by name so that several claims can share one."""

    def __init__(self, out: Path, data: Path, budget: Budget, reuse: bool) -> None:
        self.out, self.data, self.budget, self.reuse = out, data, budget, reuse
        self.records: dict[str, dict[str, Any]] = {}
        self.helpers = write_helper_configs(out)

    def env(self) -> dict[str, str]:
        """The environment of a command: the package this process imports (and `claims`)
        first on PYTHONPATH."""
        env = dict(os.environ)
        roots = dict.fromkeys((str(PACKAGE_ROOT), str(CLAIMS_ROOT), env.get("PYTHONPATH", "")))
        env["PYTHONPATH"] = os.pathsep.join(p for p in roots if p)
        return env

    def call(self, args: list[str]) -> str:
        """Run `python -m jax_makemore.<args>`; its stdout, or a RuntimeError with its stderr."""
        proc = subprocess.run(
            [sys.executable, "-m", *args], capture_output=True, text=True, cwd=PACKAGE_ROOT,
            env=self.env(),
        )  # fmt: skip
        if proc.returncode != 0:
            raise RuntimeError(
                f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}"
            )
        return proc.stdout

    def call_twice(self, args: list[str]) -> str:
        """`call`, once more from scratch if it fails: on a heavily loaded CPU, XLA's
        cross-device rendezvous of a 2-device sweep can time out (40 s) and abort the process;
        the runs are deterministic, so a second attempt gives the same results."""
        try:
            return self.call(args)
        except RuntimeError as err:
            first = str(err).splitlines()
            print(f"  failed, trying once more: {first[0][:200]}", file=sys.stderr, flush=True)
            return self.call(args)

    def loop(self, num_steps: int) -> dict[str, str]:
        """The config keys every run sets: its steps, one evaluation and checkpoint at the end."""
        return {
            "num_steps": str(num_steps),
            "eval_every": str(num_steps),
            "checkpoint_every": str(num_steps),
            "steps_per_call": str(min(1000, num_steps)),
            "num_samples": "0",
            "data_path": str(self.data),
        }

    def shown(self, module: str, config: str, flags: list[str]) -> str:
        """The command line as the report prints it: DIR for the output folder, and no
        `--config.data_path` when it is the shipped file (the default)."""
        if self.data == Path(jax_makemore.DEFAULT_DATA_PATH).resolve():
            flags = [f for f in flags if not f.startswith("--config.data_path=")]
        config = config.replace(str(self.out), "DIR")
        rest = " ".join(f.replace(str(self.out), "DIR") for f in flags)
        return f"python -m jax_makemore.{module} --config {config} {rest}"

    def sweep(self, name: str, config: str, swept: dict[str, str], keys: dict[str, str]) -> dict:
        """`python -m jax_makemore.sweep` over `swept` x seeds 0..seeds-1 into DIR/runs/<name>;
        returns sweep.json with the command line under 'command'."""
        if name in self.records:
            return self.records[name]
        workdir = self.out / "runs" / name
        swept = {**swept, "seed": f"0:{self.budget.seeds}"}
        flags = [f"--sweep.{k}={v}" for k, v in swept.items()]
        flags += [f"--config.{k}={v}" for k, v in keys.items()]
        path = workdir / "sweep.json"
        done = path.is_file() and all(
            m["status"] in ("done", "diverged") for m in json.loads(path.read_text())["members"]
        )
        if not (self.reuse and done):
            t0 = time.perf_counter()
            args = ["jax_makemore.sweep", "--config", config, "--workdir", str(workdir), *flags]
            self.call_twice([*args, "--overwrite"])
            seconds = time.perf_counter() - t0
            (workdir / SECONDS_FILE).write_text(json.dumps({"seconds": seconds}) + "\n")
            print(f"  sweep {name}: {seconds:.0f} s", file=sys.stderr, flush=True)
        record = json.loads(path.read_text())
        record["command"] = self.shown("sweep", config, flags + [f"--workdir DIR/runs/{name}"])
        record["root"] = str(workdir)
        self.records[name] = record
        return record

    def train(self, name: str, config: str, keys: dict[str, str]) -> dict[str, Any]:
        """`python -m jax_makemore.train` into DIR/runs/<name>; results.json plus 'command'."""
        workdir = self.out / "runs" / name
        flags = [f"--config.{k}={v}" for k, v in keys.items()]
        if not (self.reuse and (workdir / "results.json").is_file()):
            t0 = time.perf_counter()
            self.call(["jax_makemore.train", "--config", config, "--workdir", str(workdir),
                       "--overwrite", *flags])  # fmt: skip
            seconds = time.perf_counter() - t0
            (workdir / SECONDS_FILE).write_text(json.dumps({"seconds": seconds}) + "\n")
        results = json.loads((workdir / "results.json").read_text())
        results["command"] = self.shown("train", config, flags + [f"--workdir DIR/runs/{name}"])
        return results

    def sample(self, workdir: Path, num: int) -> list[str]:
        """`python -m jax_makemore.sample --workdir W --num N --seed 0`: the words."""
        out = self.call(["jax_makemore.sample", "--workdir", str(workdir), "--num", str(num),
                         "--seed", "0"])  # fmt: skip
        return [w for w in out.splitlines() if w]


def members(record: dict[str, Any], **where: Any) -> list[dict[str, Any]]:
    """The finished members of a sweep whose overrides match `where` (a dotted key is written
    with '__': model__block_size=3), in seed order, each with its 'dir'."""
    want = {k.replace("__", "."): v for k, v in where.items()}

    def match(m: dict) -> bool:
        for key, value in want.items():
            got = m["overrides"][key]
            if isinstance(value, float) and not math.isclose(got, value, rel_tol=1e-6):
                return False
            if not isinstance(value, float) and got != value:
                return False
        return m["status"] == "done"

    found = sorted((m for m in record["members"] if match(m)), key=lambda m: m["overrides"]["seed"])
    return [{**m, "dir": Path(record["root"]) / m["workdir"]} for m in found]


def losses(record: dict[str, Any], split: str = "val", **where: Any) -> list[float]:
    """One split's loss of each matching finished member, in seed order."""
    return [m["loss"][split] for m in members(record, **where)]


def load_member(member: dict[str, Any]) -> Any:
    """The trained model of a member (restore.load_trained; helpers registered first)."""
    from jax_makemore.restore import load_trained

    register_helpers()
    return load_trained(member["dir"])


def dataset(data: Path, block_size: int, split_fractions: str | None = None) -> Any:
    """The package's dataset of the `mlp` config on `data` with windows of `block_size`."""
    keys = [("data_path", str(data)), ("model.block_size", str(block_size))]
    if split_fractions:
        keys.append(("split_fractions", split_fractions))
    config, _ = resolve("mlp", keys)
    return dataset_from_config(config)
