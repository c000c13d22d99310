"""Config UX: schemas reject typos and wrong types while composing (before torch), --help
lists every group, the config tree, progress lines and train.log."""
from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import termios

import pytest

from conftest import FAST, ROOT, run_script, train

from expkit.config.schema import SCHEMAS


def _fails_at_compose(*overrides: str) -> str:
    """Run train.py with -X importtime: it must fail while composing, before torch is imported."""
    proc = run_script("train.py", *overrides, check=False, env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert proc.returncode != 0, proc.stdout
    imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
    assert imported, "no import-time lines: PYTHONPROFILEIMPORTTIME had no effect"
    assert not any(name == "torch" or name.startswith("torch.") for name in imported), "torch was imported"
    return "\n".join(line for line in proc.stderr.splitlines() if not line.startswith("import time:"))


@pytest.mark.slow
def test_typo_and_wrong_type_fail_at_compose_naming_the_key():
    typo = _fails_at_compose("trainer.max_epoch=5")
    assert "trainer.max_epoch" in typo and "TrainerSchema" in typo
    wrong_type = _fails_at_compose("optimizer.lr=abc")
    assert "optimizer.lr" in wrong_type and "abc" in wrong_type
    sgd = _fails_at_compose("optimizer=sgd", "optimizer.nesterov=maybe")
    assert "optimizer.nesterov" in sgd
    callback = _fails_at_compose("callbacks.early_stopping.patience=1.5")
    assert "callbacks.early_stopping.patience" in callback


@pytest.mark.slow
def test_added_key_on_a_schema_node_is_one_line_error(tmp_path):
    proc = train("+data.batch_sise=32", f"hydra.run.dir={tmp_path}", check=False)
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and "data.batch_sise" in errors[0] and "did you mean batch_size" in errors[0]


def _groups() -> dict[str, list[str]]:
    groups = {}
    for folder in sorted((ROOT / "conf").iterdir()):
        if folder.is_dir() and folder.name not in ("hydra", "local"):
            options = sorted(p.stem for p in folder.glob("*.yaml"))
            if options:
                groups[folder.name] = options
    return groups


@pytest.mark.slow
def test_help_lists_every_group_and_option_and_no_schema():
    text = run_script("train.py", "--help").stdout
    for group, options in _groups().items():
        line = next((l for l in text.splitlines() if l.startswith(f"{group}:")), None)
        assert line is not None, f"group {group} missing from --help"
        assert sorted(o.strip() for o in line.split(":", 1)[1].split(",")) == options
    assert "schema" not in text
    assert len(re.findall(r"^\s+python train\.py ", text, flags=re.M)) == 3
    assert "Hydra-composed PyTorch experiment template" in text


def test_schemas_are_root_configs_outside_every_group():
    """The --help listing comes from config groups; schemas are stored at the root."""
    from hydra.core.config_store import ConfigStore

    from expkit.config.schema import register

    register()
    repo = ConfigStore.instance().repo
    for name in SCHEMAS:
        assert f"{name}.yaml" in repo, name
    for yaml in (ROOT / "conf").rglob("*.yaml"):
        for ref in re.findall(r"^\s+- /(schema_\w+)@", yaml.read_text(), flags=re.M):
            assert ref in SCHEMAS, f"{yaml}: unknown schema {ref}"


@pytest.mark.slow
def test_tree_progress_lines_and_train_log(tmp_path):
    proc = train(*FAST, "trainer.max_epochs=2", "callbacks.progress_bar.log_every_n_steps=5",
                 f"hydra.run.dir={tmp_path}")
    # the config tree: stdout (not a terminal here) and config_tree.txt, groups in a fixed order
    tree = (tmp_path / "config_tree.txt").read_text()
    assert tree.strip() in proc.stdout
    top = [line[4:] for line in tree.splitlines() if line[:4] in ("├── ", "└── ")]
    groups = [t.split(":")[0] for t in top]
    assert groups[:9] == ["data", "model", "task", "optimizer", "scheduler", "trainer", "callbacks", "logger",
                          "paths"]
    assert "│   ├── max_epochs: 2" in tree
    # plain progress lines every 5 steps (stdout is a pipe), with loss, rate and ETA
    log_text = (tmp_path / "train.log").read_text()
    steps = re.findall(r"epoch (\d) step (\d+): loss [\d.]+, \d+ samples/s, epoch ETA \d+s", log_text)
    assert [int(s) for _, s in steps][:3] == [5, 10, 15]
    assert "\r" not in proc.stderr + proc.stdout  # no bar redraws in a log
    # train.log: epoch lines, each line once, and the same lines as the console
    lines = log_text.splitlines()
    assert len(lines) == len(set(lines)), "duplicated lines in train.log"
    assert re.search(r"epoch 0 done: .*val/acc=", log_text) and re.search(r"epoch 1 done: ", log_text)
    console = [l for l in proc.stderr.splitlines() if l.startswith("[")]
    assert console == lines


@pytest.mark.slow
def test_progress_bar_on_a_terminal(tmp_path):
    """Under a pseudo-terminal the tqdm bar is drawn, with loss, samples/s and ETA."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 200, 0, 0))  # a 200-column terminal
    env = {**os.environ, "HYDRA_FULL_ERROR": "0"}
    proc = subprocess.Popen([sys.executable, str(ROOT / "train.py"), *FAST, "trainer.max_epochs=2",
                             "logger=none", "print_config=false",
                             f"hydra.run.dir={tmp_path}"], cwd=ROOT, env=env, stdout=follower,
                            stderr=follower)
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    assert proc.wait(timeout=120) == 0
    os.close(leader)
    screen = b"".join(chunks).decode(errors="replace")
    bars = [seg for seg in re.split(r"[\r\n]", screen) if seg.startswith("epoch 1:")]
    assert bars, screen[-2000:]
    final = bars[-1]  # e.g. epoch 1: 100%|####| 20/20 [00:00<00:00, 90.1it/s, loss=0.31, val/acc=0.82, ...]
    assert re.search(r"100%.*\d+/\d+ \[\d+:\d+<\d+:\d+", final), final  # steps, elapsed<ETA
    for field in ("loss=", "val/acc=", "samples_s="):  # val/acc: the latest validation (epoch 0)
        assert field in final, final


def test_other_ranks_log_only_warnings_and_write_no_file(tmp_path):
    """What a rank > 0 keeps of Hydra's job logging (console + train.log): warnings on the console."""
    script = f"""
import logging, sys
logging.basicConfig(level=logging.INFO, handlers=[logging.FileHandler({str(tmp_path / 'train.log')!r}),
                                                  logging.StreamHandler(sys.stderr)])
from expkit.logging_setup import quiet_other_ranks
quiet_other_ranks(int(sys.argv[1]))
logging.getLogger("expkit.progress").info("epoch 0 done")
logging.getLogger("expkit").warning("disk almost full")
"""
    for rank, expected_file, expected_console in ((0, 2, 2), (1, 0, 1)):
        (tmp_path / "train.log").unlink(missing_ok=True)
        proc = subprocess.run([sys.executable, "-c", script, str(rank)], capture_output=True, text=True,
                              env={**os.environ, "PYTHONPATH": str(ROOT / "src")}, check=True)
        assert len((tmp_path / "train.log").read_text().splitlines()) == expected_file, rank
        assert len(proc.stderr.splitlines()) == expected_console, proc.stderr
