"""A throw-away single-node Slurm (munged, slurmctld, slurmd from the Debian packages) for tests.

Everything lives under one temporary directory (key, sockets, state, spool, logs, a job completion log) and
the daemons listen on free ports, so it neither needs nor touches /etc/slurm or a system munged. Clients
find it through the SLURM_CONF variable in `SlurmCluster.env`.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

BINARIES = ("munged", "slurmctld", "slurmd", "slurmstepd", "sbatch", "srun", "squeue", "sinfo", "scontrol")


def unavailable() -> str | None:
    """Why a real Slurm cannot be started here (None if it can)."""
    if os.geteuid() != 0:
        return "starting slurmctld/slurmd as SlurmUser=root needs root"
    missing = [b for b in BINARIES if shutil.which(b) is None and not Path("/usr/sbin", b).exists()]
    if missing:
        return f"missing {', '.join(missing)}: install the Debian packages slurm-wlm and munge"
    if (os.cpu_count() or 1) < 2:
        return "the test cluster declares CPUs=2 and this host has fewer cores"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _binary(name: str) -> str:
    return shutil.which(name) or str(Path("/usr/sbin", name))


def _real_memory_mb() -> int:
    """The node's memory as slurmd itself measures it (`slurmd -C`), so the node registers without drain."""
    out = subprocess.run([_binary("slurmd"), "-C"], capture_output=True, text=True, check=True).stdout
    match = re.search(r"RealMemory=(\d+)", out)
    if not match:
        raise RuntimeError(f"`slurmd -C` printed no RealMemory: {out!r}")
    return int(match[1])


class SlurmCluster:
    """munged + slurmctld + slurmd on this host, one partition, no accounting; start() then stop()."""

    def __init__(self, partition: str = "pytest", cpus: int = 2, min_job_age: int = 3600) -> None:
        # a short path: unix socket paths are limited to 108 bytes
        self.root = Path(tempfile.mkdtemp(prefix="slurm-", dir="/tmp"))
        self.partition = partition
        self.cpus = cpus
        self.min_job_age = min_job_age
        self.host = socket.gethostname().split(".")[0]
        self.real_memory = _real_memory_mb()
        self.conf = self.root / "slurm.conf"
        self.jobcomp = self.root / "jobcomp.txt"
        self.bin = self.root / "bin"
        self.env = {**os.environ, "SLURM_CONF": str(self.conf), "PATH": f"{self.bin}:{os.environ['PATH']}"}
        self._procs: list[subprocess.Popen] = []

    # ---- set-up -------------------------------------------------------------------------------------------
    def _write_munge(self) -> Path:
        d = self.root / "munge"
        d.mkdir(mode=0o700)
        key = d / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o600)
        return d

    def _write_conf(self, munge_socket: Path) -> None:
        for sub in ("state", "spool", "log"):
            (self.root / sub).mkdir()
        r = self.root
        self.conf.write_text(f"""\
ClusterName=pytest
SlurmctldHost={self.host}(127.0.0.1)
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={munge_socket}
StateSaveLocation={r}/state
SlurmdSpoolDir={r}/spool
SlurmctldPidFile={r}/slurmctld.pid
SlurmdPidFile={r}/slurmd.pid
SlurmctldLogFile={r}/log/slurmctld.log
SlurmdLogFile={r}/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SwitchType=switch/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc={self.jobcomp}
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
MinJobAge={self.min_job_age}
ReturnToService=2
InactiveLimit=0
KillWait=5
NodeName={self.host} NodeAddr=127.0.0.1 CPUs={self.cpus} RealMemory={self.real_memory} State=UNKNOWN
PartitionName={self.partition} Nodes={self.host} Default=YES MaxTime=INFINITE State=UP
""")

    def _write_srun_shim(self) -> None:
        """`srun` that finds this cluster's slurm.conf: the slurm-jobstep plugin strips every SLURM_* variable
        but the allocation ids (SLURM_CONF included) before it calls srun inside a job, and a real cluster
        keeps its slurm.conf at /etc/slurm, which this test leaves alone."""
        self.bin.mkdir()
        shim = self.bin / "srun"
        shim.write_text(f'#!/bin/sh\nSLURM_CONF={self.conf} exec {_binary("srun")} "$@"\n')
        shim.chmod(0o755)

    def _spawn(self, name: str, *cmd: str) -> None:
        log = open(self.root / "log" / f"{name}.out", "wb")  # noqa: SIM115 - kept open for the daemon's lifetime
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True)
        proc.name = name  # type: ignore[attr-defined]
        self._procs.append(proc)

    def start(self, timeout: float = 60.0) -> SlurmCluster:
        """Start the three daemons and wait until the node is idle; on failure stop them and raise with logs."""
        munge = self._write_munge()
        sock = munge / "munge.socket.2"
        self._write_conf(sock)
        self._write_srun_shim()
        try:
            self._spawn("munged", _binary("munged"), "--foreground", "--force", f"--socket={sock}",
                        f"--key-file={munge / 'munge.key'}", f"--pid-file={munge / 'munged.pid'}",
                        f"--log-file={munge / 'munged.log'}", f"--seed-file={munge / 'munged.seed'}")
            self._wait(lambda: sock.exists(), timeout, "munged socket")
            self._spawn("slurmctld", _binary("slurmctld"), "-D", "-f", str(self.conf))
            self._spawn("slurmd", _binary("slurmd"), "-D", "-f", str(self.conf), "-N", self.host)
            self._wait(self.node_idle, timeout, "node idle in sinfo")
        except BaseException:
            self.stop()
            raise
        return self

    def _wait(self, ready, timeout: float, what: str) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            dead = [p for p in self._procs if p.poll() is not None]
            if dead:
                raise RuntimeError(f"{dead[0].name} exited with {dead[0].returncode}:\n{self.logs()}")
            if ready():
                return
            time.sleep(0.5)
        raise TimeoutError(f"no {what} after {timeout:.0f} s:\n{self.logs()}")

    # ---- queries ------------------------------------------------------------------------------------------
    def run(self, *cmd: str, check: bool = True) -> str:
        """Run a Slurm client command against this cluster; its stdout."""
        proc = subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=30)
        if check and proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr}")
        return proc.stdout

    def node_idle(self) -> bool:
        out = self.run("sinfo", "--noheader", "--format=%t", "--nodes", self.host, check=False)
        return out.strip() == "idle"

    def jobs(self) -> list[dict[str, str]]:
        """Every job slurmctld still remembers (younger than MinJobAge), as `scontrol show job` key=value maps."""
        out = self.run("scontrol", "--oneliner", "show", "job")
        if "No jobs in the system" in out:
            return []
        return [dict(re.findall(r"(\w+)=(\S*)", line)) for line in out.splitlines() if line.strip()]

    def completion_records(self) -> list[dict[str, str]]:
        """The job completion log (jobcomp/filetxt): one key=value record per finished job."""
        if not self.jobcomp.exists():
            return []
        return [dict(re.findall(r"(\w+)=(\S*)", line)) for line in self.jobcomp.read_text().splitlines() if line]

    def logs(self, tail: int = 3000) -> str:
        files = sorted((self.root / "log").glob("*")) + [self.root / "munge" / "munged.log"]
        return "\n".join(f"== {p.name}\n{p.read_text(errors='replace')[-tail:]}" for p in files if p.exists())

    # ---- tear-down ----------------------------------------------------------------------------------------
    def stop(self) -> None:
        """Cancel jobs still in this cluster's queue, stop the daemons this object started, remove the dir."""
        if len(self._procs) == 3 and all(p.poll() is None for p in self._procs):  # all up: cancel jobs cleanly
            ids = self.run("squeue", "--noheader", "--format=%i", check=False).split()
            if ids:
                self.run("scancel", *ids, check=False)
                end = time.monotonic() + 20
                while time.monotonic() < end and self.run("squeue", "--noheader", check=False).strip():
                    time.sleep(0.5)
        for proc in reversed(self._procs):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in reversed(self._procs):
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        self._procs.clear()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> SlurmCluster:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
