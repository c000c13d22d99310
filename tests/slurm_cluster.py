"""A real one-node SLURM cluster for the tests, brought up and torn down by them.

``SlurmCluster.start(folder)`` installs Debian's ``slurm-wlm`` and ``munge`` when
``slurmctld`` is missing, writes a slurm.conf whose only node is this host, and starts
its own ``munged`` (own key and socket), ``slurmctld`` and ``slurmd`` in the foreground
as children of the test process, on free ports, with every state, spool, pid and log
file under ``folder``: nothing of the machine's own SLURM or munge setup is used or
changed. ``env()`` is what ``sbatch`` / ``sinfo`` (and submitit) need to talk to it.
``stop()`` ends the daemons it started, and nothing else.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from conftest import free_port

PARTITION = "expkit"
#: What the node offers; submitit's ``mem_gb`` must stay below it.
REAL_MEMORY_MB = 2048


class ClusterUnavailable(Exception):
    """SLURM cannot be installed here (not root, no package registry): the tests skip."""


def install_packages() -> None:
    """``apt-get install slurm-wlm munge`` when ``slurmctld`` is missing; ClusterUnavailable if impossible."""
    if shutil.which("slurmctld") and shutil.which("munged"):
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise ClusterUnavailable("slurmctld is not installed and this is not root with apt-get "
                                 "(apt-get install slurm-wlm munge)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-qq"],
                    ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "slurm-wlm", "munge"]):
        proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
        if proc.returncode != 0 and command[1] == "install":
            tail = " ".join(proc.stderr.split())[-300:]
            raise ClusterUnavailable(f"apt-get install slurm-wlm munge failed (exit {proc.returncode}): {tail}")
    if not shutil.which("slurmctld"):
        raise ClusterUnavailable("apt-get installed slurm-wlm, yet slurmctld is not on PATH")


def slurm_conf(folder: Path, host: str, cpus: int, ctld_port: int, slurmd_port: int, munge_socket: Path) -> str:
    return f"""\
ClusterName=expkit-test
SlurmctldHost={host}
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={munge_socket}
StateSaveLocation={folder}/state
SlurmdSpoolDir={folder}/spool
SlurmctldPidFile={folder}/slurmctld.pid
SlurmdPidFile={folder}/slurmd.pid
SlurmctldLogFile={folder}/slurmctld.log
SlurmdLogFile={folder}/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
MpiDefault=none
JobRequeue=1
ReturnToService=2
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
SwitchType=switch/none
KillWait=30
MinJobAge=300
SchedulerParameters=sched_interval=1
NodeName={host} CPUs={cpus} RealMemory={REAL_MEMORY_MB} State=UNKNOWN
PartitionName={PARTITION} Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""


class SlurmCluster:
    """The daemons of one test cluster (see the module docstring)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.host = socket.gethostname().split(".")[0]
        self.conf = folder / "slurm.conf"
        self.munge_socket = folder / "munge" / "munge.socket"
        self.daemons: dict[str, subprocess.Popen] = {}

    def env(self) -> dict[str, str]:
        """The variables SLURM's clients need to reach this cluster."""
        return {"SLURM_CONF": str(self.conf)}

    def start(self, timeout_s: float = 60) -> "SlurmCluster":
        install_packages()
        (self.folder / "munge").mkdir(parents=True, exist_ok=True)
        for sub in ("state", "spool"):
            (self.folder / sub).mkdir(exist_ok=True)
        key = self.folder / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o600)
        self.conf.write_text(slurm_conf(self.folder, self.host, os.cpu_count() or 2, free_port(), free_port(),
                                        self.munge_socket))
        munge = self.folder / "munge"
        self._daemon("munged", ["munged", "--foreground", "--force", f"--key-file={key}",
                                f"--socket={self.munge_socket}", f"--pid-file={munge}/munged.pid",
                                f"--log-file={munge}/munged.log", f"--seed-file={munge}/munged.seed"])
        self._wait(lambda: self.munge_socket.exists(), timeout_s, "munged did not create its socket")
        self._daemon("slurmctld", ["slurmctld", "-D", "-c", "-i", "-f", str(self.conf)])
        self._daemon("slurmd", ["slurmd", "-D", "-N", self.host, "-f", str(self.conf)])
        self._wait(self.node_idle, timeout_s, f"node {self.host} never became idle in sinfo")
        return self

    def _daemon(self, name: str, command: list[str]) -> None:
        log = open(self.folder / f"{name}.out", "w")
        self.daemons[name] = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=self._env(),
                                              start_new_session=True)
        log.close()

    def _env(self) -> dict[str, str]:
        return {**os.environ, **self.env()}

    def node_idle(self) -> bool:
        proc = self.run("sinfo", "-h", "-N", "-o", "%t", check=False)
        return proc.returncode == 0 and proc.stdout.split() == ["idle"]

    def _wait(self, ready, timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while not ready():
            for name, daemon in self.daemons.items():
                if daemon.poll() is not None:
                    self.fail(f"{name} exited with status {daemon.returncode} while starting")
            if time.monotonic() > deadline:
                self.fail(f"{what} within {timeout_s:g} s")
            time.sleep(0.3)

    def logs(self, lines: int = 30) -> str:
        """The last lines of every daemon's log, for failure messages."""
        parts = []
        for path in sorted(self.folder.glob("*.log")) + sorted(self.folder.glob("*.out")) + \
                sorted((self.folder / "munge").glob("*.log")):
            text = path.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"--- {path.name}\n" + "\n".join(text))
        return "\n".join(parts)

    def fail(self, message: str) -> None:
        raise RuntimeError(f"test SLURM cluster: {message}\n{self.logs()}")

    def run(self, *command: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
        """A SLURM client command (``scontrol``, ``squeue``...) against this cluster."""
        proc = subprocess.run(list(command), env=self._env(), capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            self.fail(f"{' '.join(command)} exited {proc.returncode}: {proc.stderr.strip()}")
        return proc

    def job_state(self, job_id: str) -> str:
        """The job's state (``PENDING``, ``RUNNING``, ``COMPLETED``...), '' once SLURM forgot it."""
        proc = self.run("scontrol", "show", "job", "-o", job_id, check=False)
        for field in proc.stdout.split():
            if field.startswith("JobState="):
                return field.split("=", 1)[1]
        return ""

    def stop(self) -> None:
        """End every job, then the daemons this cluster started (slurmd, slurmctld, munged)."""
        if "slurmctld" in self.daemons and self.daemons["slurmctld"].poll() is None:
            self.run("scancel", "--full", "--user=root", check=False)
        for name in ("slurmd", "slurmctld", "munged"):
            daemon = self.daemons.get(name)
            if daemon is None or daemon.poll() is not None:
                continue
            daemon.send_signal(signal.SIGTERM)
            try:
                daemon.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(daemon.pid, signal.SIGKILL)
                daemon.wait(timeout=10)
        self.daemons.clear()
