"""The fork command: on a copy of the repository, rename the package, then the copy's own
quick training run and import work under the new name."""
from __future__ import annotations

import importlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

from expkit import fork as fork_module

OLD = fork_module.OLD
NEW = "lab_of_mine"


def copy_repository(target: Path) -> Path:
    """The files git would commit (tracked, and new files not ignored), as in a fresh clone."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout.split("\0")
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


def run_in(copy: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(copy / "src"), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run([sys.executable, *args], cwd=copy, env=env, capture_output=True, text=True, timeout=240)
    if check:
        assert proc.returncode == 0, f"{args} exited {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def importable(target: str) -> bool:
    """``target`` names an attribute of a module that imports here (torch, torchvision, timm, ...)."""
    module, _, name = target.rpartition(".")
    try:
        return hasattr(importlib.import_module(module), name)
    except ImportError:
        return False


def readme_files(readme: str) -> dict[str, str]:
    """The README's code blocks that start with a ``# <path>`` line under src/ or conf/."""
    return {path: f"# {path}\n{body}" for path, body in
            re.findall(r"```(?:python|yaml)\n# ((?:src|conf)/\S+)\n(.*?)```", readme, flags=re.DOTALL)}


def git(copy: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=copy, check=True,
                          capture_output=True, text=True).stdout


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_fork_renames_everything_and_the_copy_trains(tmp_path):
    copy = copy_repository(tmp_path / "clone")
    git(copy, "init", "-q")
    git(copy, "add", "-A")
    git(copy, "commit", "-qm", "clone")

    proc = run_in(copy, "-m", f"{OLD}.fork", NEW)
    assert f"{OLD} -> {NEW}" in proc.stdout

    # the package moved, and the old name is gone from every file and path
    assert (copy / "src" / NEW / "__init__.py").is_file() and not (copy / "src" / OLD).exists()
    left = [f"{path.relative_to(copy)}: {line.strip()}"
            for path in copy.rglob("*") if path.is_file() and ".git" not in path.parts
            for line in path.read_text(errors="ignore").splitlines() if OLD in line.lower()]
    assert left == []
    assert not [p for p in copy.rglob("*") if OLD in p.name.lower()]
    assert f'name = "{NEW}"' in (copy / "pyproject.toml").read_text()
    targets = re.findall(r"_target_: (\S+)", "".join(p.read_text() for p in (copy / "conf").rglob("*.yaml")))
    assert any(t.startswith(f"{NEW}.") for t in targets)
    # any importable target; timm is an optional extra (model=timm), not installed by the dev extra
    assert all(t.startswith((f"{NEW}.", "timm.")) or importable(t) for t in targets), targets

    # a clean tree: besides the edits, only the package's files at their new place
    status = git(copy, "status", "--porcelain", "--untracked-files=all").splitlines()
    untracked = [line[3:] for line in status if line.startswith("??")]
    assert untracked and all(path.startswith(f"src/{NEW}/") for path in untracked), untracked
    deleted = [line[3:] for line in status if line.startswith(" D")]
    assert len(deleted) == len(untracked)

    # the copy works under its new name (its src on PYTHONPATH stands in for a reinstall)
    run_in(copy, "-c", f"import {NEW}, {NEW}.engine, {NEW}.callbacks; print({NEW}.__file__)")
    run = run_in(copy, "train.py", "debug=fast", "print_config=false")
    assert f"[{NEW}]" in run.stderr and list((copy / "outputs" / "debug").glob("*/metrics.json"))
    quick = run_in(copy, "-m", "pytest", "-q", "-m", "not slow", "-p", "no:cacheprovider", "tests/test_fork.py",
                   "tests/test_config_ux.py", "tests/test_tensorboard_images.py")
    assert re.search(r"\d+ passed", quick.stdout) and "failed" not in quick.stdout


@pytest.mark.parametrize("name, message", [("1st-lab", "must be a Python identifier"),
                                           ("class", "must be a Python identifier"),
                                           (OLD, "already called")])
def test_bad_names_are_refused_before_anything_changes(tmp_path, name, message):
    root = tmp_path / "clone"
    (root / "src" / OLD).mkdir(parents=True)
    (root / "src" / OLD / "__init__.py").write_text("")
    (root / "pyproject.toml").write_text(f'name = "{OLD}"\n')
    before = sorted(p.relative_to(root) for p in root.rglob("*"))
    proc = subprocess.run([sys.executable, "-m", f"{OLD}.fork", name], cwd=root, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and message in proc.stderr
    assert sorted(p.relative_to(root) for p in root.rglob("*")) == before


def test_refused_outside_the_project_root_and_when_the_name_exists(tmp_path):
    with pytest.raises(fork_module.ForkError, match="run this at the root"):
        fork_module.check_name("new_lab", tmp_path)
    (tmp_path / "src" / OLD).mkdir(parents=True)
    (tmp_path / "src" / OLD / "__init__.py").write_text("")
    (tmp_path / "pyproject.toml").write_text("")
    (tmp_path / "src" / "new_lab").mkdir()
    with pytest.raises(fork_module.ForkError, match="already exists"):
        fork_module.check_name("new_lab", tmp_path)


@pytest.mark.slow
def test_a_fork_gains_a_data_set_a_task_and_a_model_the_way_the_readme_says(tmp_path):
    copy = copy_repository(tmp_path / "clone")
    run_in(copy, "-m", f"{OLD}.fork", NEW)
    files = readme_files((copy / "README.md").read_text())  # renamed by the fork, like everything else
    assert {"src/lab_of_mine/data/sine.py", "conf/data/sine.yaml", "src/lab_of_mine/tasks/huber.py",
            "conf/task/huber.yaml", "src/lab_of_mine/models/sine_net.py", "conf/model/sine_net.yaml"} == set(files)
    for path, text in files.items():
        (copy / path).write_text(text)

    run_dir = tmp_path / "run"
    run_in(copy, "train.py", "data=sine", "task=huber", "model=sine_net", "optimizer.lr=0.01", "trainer.max_epochs=25",
           "print_config=false", f"hydra.run.dir={run_dir}")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert {"val/loss", "val/mae", "test/loss", "test/mae"} <= set(metrics)
    assert metrics["test/mae"] < 0.3  # predicting the mean of sin(x) on [-3, 3] is off by about 0.6
    config = (run_dir / "config.yaml").read_text()
    assert "monitor: val/mae" in config and "mode: min" in config  # the checkpoint follows the task

    bad = run_in(copy, "train.py", "data=sine", "task=huber", "model=sine_net", "data.noise=-1", check=False)
    assert bad.returncode == 2 and "data.noise=-1: must be a finite number >= 0" in bad.stderr
