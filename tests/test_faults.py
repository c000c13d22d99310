"""The fault matrix, with real processes, real signals and real (small, full, read-only) file
systems: every stop ends with a status, an exit code and a status.json that tells the truth.
See the README's "What happens when things go wrong"."""
from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest
import torch

from conftest import FAST, read_json, run_script, train
from fault_helpers import USER_CODE, catches, finish, start, stop_with, tmpfs, wait_for

QUICK = (*FAST, "logger=none")


def hang(hook: str, marker: Path) -> tuple[str, ...]:
    return ("+callbacks.hang._target_=user_components.HangAt", f"+callbacks.hang.hook={hook}",
            f"+callbacks.hang.marker={marker}")


def one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if "error:" in line or "WARNING" in line and "stopped" in line]
    assert "Traceback" not in stderr, stderr[-4000:]
    assert lines, stderr[-4000:]
    return lines[-1]


# ---- signals outside the training loop ------------------------------------------------------------

def test_a_signal_while_starting_exits_75_and_says_start_again(tmp_path):
    proc = start("train.py", *QUICK, f"hydra.run.dir={tmp_path / 'run'}")
    wait_for(lambda: catches(proc.pid, signal.SIGUSR1), proc, "the entry point's handlers")  # first lines of train.py
    code, _, err = stop_with(proc, signal.SIGUSR1)

    assert code == 75, err[-3000:]
    assert "stopped by SIGUSR1" in err and "start again" in err and "Traceback" not in err


def test_a_run_owns_its_directory_and_a_signal_while_building_says_start_again(tmp_path):
    run_dir, marker = tmp_path / "run", tmp_path / "building"
    proc = start("train.py", *QUICK, f"hydra.run.dir={run_dir}", "model._target_=user_components.SlowModel",
                 f"+model.marker={marker}")
    wait_for(marker.exists, proc, "the model's constructor")

    status = read_json(run_dir / "status.json")  # written when the run started
    assert status["status"] == "running" and status["pid"] == proc.pid and status["attempt"] == 1
    assert status["host"] and status["started"]
    before = sorted((p.relative_to(run_dir), p.stat().st_mtime_ns) for p in run_dir.rglob("*"))
    second = train(*QUICK, f"hydra.run.dir={run_dir}", check=False)
    assert second.returncode == 2
    assert second.stderr.strip().splitlines() == [
        f"error: run directory {run_dir}: in use by another run (PID {proc.pid} on {status['host']}); "
        "wait for it to end or use another hydra.run.dir"]
    assert sorted((p.relative_to(run_dir), p.stat().st_mtime_ns) for p in run_dir.rglob("*")) == before

    code, _, err = stop_with(proc, signal.SIGTERM)
    assert code == 75, err[-3000:]
    assert "stopped by SIGTERM" in one_error_line(err) and "start again" in err
    status = read_json(run_dir / "status.json")
    assert status["status"] == "preempted" and status["checkpoint"] is None and "start again" in status["error"]


@pytest.mark.slow
def test_a_signal_in_the_final_test_records_the_checkpoint_and_resume_redoes_only_the_test(tmp_path):
    run_dir, marker = tmp_path / "run", tmp_path / "testing"
    proc = start("train.py", *QUICK, f"hydra.run.dir={run_dir}", *hang("on_test_end", marker))
    wait_for(marker.exists, proc, "the final test")
    code, _, err = stop_with(proc, signal.SIGUSR1)

    last = run_dir / "checkpoints" / "last.ckpt"
    assert code == 75, err[-3000:]
    assert f"resume with ckpt_path={last}" in err and "Traceback" not in err
    status = read_json(run_dir / "status.json")
    assert status["status"] == "preempted" and status["checkpoint"] == str(last)
    assert not (run_dir / "metrics.json").exists()

    train(*QUICK, f"hydra.run.dir={run_dir}", "ckpt_path=last")
    assert read_json(run_dir / "status.json")["attempt"] == 2
    assert "test/acc" in read_json(run_dir / "metrics.json")
    assert (run_dir / "train.log").read_text().count("epoch 0 done") == 1  # trained once, tested twice


def test_a_second_ctrl_c_stops_at_once_and_status_says_interrupted(tmp_path):
    run_dir, marker = tmp_path / "run", tmp_path / "step"
    proc = start("train.py", *QUICK, f"hydra.run.dir={run_dir}", *hang("on_train_batch_end", marker))
    wait_for(marker.exists, proc, "the first training step")
    proc.send_signal(signal.SIGINT)  # noted: a save at the step's end, which the hang delays
    while proc.poll() is None:  # the next one stops at once (again only if two arrived as one)
        try:
            proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGINT)
    code, _, err = finish(proc)

    assert code == 130, err[-3000:]
    assert "Traceback" not in err
    assert read_json(run_dir / "status.json")["status"] == "interrupted"


# ---- checkpoints: integrity and failed writes -----------------------------------------------------

@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("trained")
    train(*QUICK, f"hydra.run.dir={run_dir}")
    return run_dir


def flip_bytes_in_a_tensor(good: Path, bad: Path, count: int = 16) -> None:
    import zipfile

    data = bytearray(good.read_bytes())
    with zipfile.ZipFile(good) as archive:
        record = max((i for i in archive.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    start_at = record.header_offset + 30 + len(record.filename) + len(record.extra) + record.file_size // 2
    for i in range(count):
        data[start_at + i] ^= 0x5A
    bad.write_bytes(bytes(data))


@pytest.mark.parametrize("script", ["train.py", "eval.py"])
def test_a_checkpoint_with_flipped_bytes_is_refused_in_one_line(trained, tmp_path, script):
    bad = tmp_path / "flipped.ckpt"
    flip_bytes_in_a_tensor(trained / "checkpoints" / "best.ckpt", bad)
    proc = run_script(script, *QUICK, f"ckpt_path={bad}", f"hydra.run.dir={tmp_path / 'run'}", check=False)

    assert proc.returncode == 2, proc.stderr[-3000:]
    line = one_error_line(proc.stderr)
    assert str(bad) in line and "damaged" in line, line


def test_a_checkpoint_saved_before_checksums_still_loads_with_a_warning(trained, tmp_path):
    old = tmp_path / "old.ckpt"
    torch.save(torch.load(trained / "checkpoints" / "best.ckpt", weights_only=True), old)  # no checksum record
    proc = run_script("eval.py", f"ckpt_path={old}", "logger=none", f"hydra.run.dir={tmp_path / 'run'}")

    warnings = [line for line in proc.stderr.splitlines() if "has no checksum" in line]
    assert len(warnings) == 1 and str(old) in warnings[0]
    assert "test/acc" in read_json(tmp_path / "run" / "metrics.json")


def test_a_failed_background_write_names_the_file_and_keeps_the_earlier_checkpoint(tmp_path):
    from expkit.engine import checkpoint as ckpt

    state = {"format": ckpt.FORMAT, "format_version": ckpt.FORMAT_VERSION, "model": {"w": torch.arange(1000.0)}}
    with tmpfs(tmp_path / "disk", size="700k") as disk:
        path = disk / "last.ckpt"
        saved: list[Path] = []
        ckpt.save_atomic(state, path, background=True, on_saved=saved.append)
        ckpt.wait_for_saves()
        assert saved == [path]
        with open(disk / "filler", "wb") as f:  # fill the disk
            try:
                while True:
                    f.write(b"\0" * 65536)
                    f.flush()
            except OSError:
                pass
        bigger = {**state, "model": {"w": torch.arange(50_000.0)}}
        ckpt.save_atomic(bigger, path, background=True, on_saved=saved.append)
        with pytest.raises(ckpt.CheckpointWriteError) as error:
            while True:  # non-blocking: polled as a training loop would at each step
                ckpt.raise_if_save_failed()
        message = str(error.value)
        assert message.startswith(f"checkpoint {path}: not written (No space left on device") and "\n" not in message
        assert saved == [path]  # "saved" was never reported for the failed write
        assert torch.equal(ckpt.load(path)["model"]["w"], state["model"]["w"])  # the earlier one is intact
        assert not list(disk.glob(".*.tmp"))


def test_a_full_checkpoint_disk_fails_the_run_in_one_line(tmp_path):
    run_dir = tmp_path / "run"
    with tmpfs(run_dir / "checkpoints", size="400k") as folder:  # room for one checkpoint (~250 KB), not two
        proc = train(*QUICK, f"hydra.run.dir={run_dir}", check=False)
        assert proc.returncode == 1, proc.stderr[-3000:]
        line = one_error_line(proc.stderr)
        assert f"checkpoint {folder / 'last.ckpt'}: not written (No space left on device" in line, line
        assert read_json(run_dir / "status.json")["status"] == "failed"
        from expkit.engine.checkpoint import load

        assert load(folder / "best.ckpt")["loop"]["epoch"] == 0  # the one that fitted is whole
        assert not (folder / "last.ckpt").exists() and not list(folder.glob(".*.tmp"))


# ---- the run directory -----------------------------------------------------------------------------

@pytest.mark.parametrize("case, reason", [("read-only", "Read-only file system"), ("full", "No space left")])
def test_an_unusable_run_directory_is_one_line_before_anything_starts(tmp_path, case, reason):
    with tmpfs(tmp_path / "fs", size="700k", read_only=case == "read-only") as fs:
        proc = train(*QUICK, f"hydra.run.dir={fs / 'run'}", check=False)
        assert proc.returncode == 2, proc.stderr[-3000:]
        assert proc.stderr.strip().count("\n") == 0 and reason in proc.stderr, proc.stderr[-3000:]
        assert proc.stderr.startswith(f"error: run directory {fs / 'run'}")


# ---- sweeps ----------------------------------------------------------------------------------------

def test_a_sweep_with_a_failed_job_exits_1_unless_switched_off(tmp_path):
    failing = ("-m", *QUICK, "trainer.max_epochs=-1")
    proc = train(*failing, f"hydra.sweep.dir={tmp_path / 'a'}", check=False)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "error: 1 of 1 sweep jobs failed or crashed" in proc.stderr

    assert train(*failing, "sweep_fail_exit=false", f"hydra.sweep.dir={tmp_path / 'b'}").returncode == 0


def test_a_stopped_sweep_leaves_a_final_summary(tmp_path):
    import csv

    marker = tmp_path / "building"
    proc = start("train.py", "-m", *QUICK, f"hydra.sweep.dir={tmp_path}", "model._target_=user_components.SlowModel",
                 f"+model.marker={marker}", "seed=1,2,3")
    wait_for(marker.exists, proc, "the first job's model")
    code, _, err = stop_with(proc, signal.SIGTERM)

    assert code == 75, err[-3000:]
    with open(tmp_path / "summary.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["status"] for r in rows] == ["preempted", "cancelled", "cancelled"]
    assert "start again" in rows[0]["error"] and "sweep ended before" in rows[1]["error"]


def test_one_job_per_config_shows_its_value_not_plus_minus_nan(tmp_path):
    from expkit.files import write_json_atomic
    from expkit.sweep import summary

    for number, (lr, seed, acc) in enumerate([("0.1", 1, 0.5), ("0.1", 2, 0.7), ("0.2", 1, 0.9)]):
        job = tmp_path / str(number)
        job.mkdir()
        write_json_atomic(job / "job.json", {"num": number, "overrides": [f"optimizer.lr={lr}", f"seed={seed}"]})
        write_json_atomic(job / "status.json", {"status": "ok"})
        write_json_atomic(job / "metrics.json", {"val/acc": acc})
    text = summary.report(summary.update(tmp_path, finished=True), tmp_path)

    assert "nan" not in text
    assert "0.6000 ± 0.1414" in text and "0.9000" in text.splitlines()[-1]


def test_a_write_into_an_immutable_folder_names_the_file_and_the_reason(tmp_path):
    from expkit.engine import checkpoint as ckpt

    folder = tmp_path / "checkpoints"
    folder.mkdir()
    state = {"format": ckpt.FORMAT, "format_version": ckpt.FORMAT_VERSION, "model": {"w": torch.zeros(3)}}
    ckpt.save_atomic(state, folder / "best.ckpt")
    if subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not available on this file system")
    try:
        with pytest.raises(ckpt.CheckpointWriteError) as error:
            ckpt.save_atomic(state, folder / "last.ckpt")
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)
    assert str(error.value).startswith(f"checkpoint {folder / 'last.ckpt'}: not written (Operation not permitted)")
    assert ckpt.load(folder / "best.ckpt")["model"]["w"].shape == (3,)
