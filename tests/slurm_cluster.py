"""A throwaway single-node SLURM cluster on localhost, for tests.

:func:`start_cluster` starts ``munged``, ``slurmctld`` and ``slurmd`` in the
foreground (no systemd needed) as children of the test process, with every
file (config, munge key and socket, state, spool, logs) in a temporary
directory and free TCP ports, so it touches nothing system-wide. Clients find
it through ``SLURM_CONF``, which :meth:`LocalSlurm.env` sets.

Needs root (daemons run as ``SlurmUser=root``) and the Debian packages
``slurm-wlm munge`` (``slurmctld slurmd slurm-client munge`` are enough).

If ``CASSLE_SLURM_EXTERNAL=1`` the tests use the cluster the environment
already points at (``SLURM_CONF`` or ``/etc/slurm/slurm.conf``) instead.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "sinfo", "squeue", "srun")
INSTALL_HINT = "apt-get install -y slurm-wlm munge"


def _which(name: str) -> str | None:
    return shutil.which(name) or next(
        (str(p) for d in ("/usr/sbin", "/sbin", "/usr/local/sbin") if (p := Path(d) / name).exists()), None
    )


def missing_requirements() -> str | None:
    """Why a local cluster cannot be started here, or ``None`` when it can."""
    absent = [n for n in CLIENTS + DAEMONS if _which(n) is None]
    if absent:
        return f"SLURM not installed ({', '.join(absent)} missing): {INSTALL_HINT}"
    if os.geteuid() != 0:
        return "starting a local SLURM cluster needs root (SlurmUser=root)"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


SLURM_CONF = """\
ClusterName=cassletest
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# cred_expire also holds a requeued job back (default 120 s: BeginTime = requeue + 121 s); 5 is the minimum
AuthInfo=socket={munge_socket},cred_expire=5
StateSaveLocation={dir}/state
SlurmdSpoolDir={dir}/spool
SlurmctldPidFile={dir}/slurmctld.pid
SlurmdPidFile={dir}/slurmd.pid
SlurmctldLogFile={dir}/slurmctld.log
SlurmdLogFile={dir}/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
# as on many clusters: a batch job is requeueable only when it asks (#SBATCH --requeue in job_launcher's script)
JobRequeue=0
SwitchType=switch/none
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=1,bf_interval=1
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmdParameters=config_overrides
ReturnToService=2
MaxArraySize=100
SlurmdTimeout=30
InactiveLimit=0
KillWait=2
MinJobAge=600
NodeName={node} NodeHostname={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory=1000 State=UNKNOWN
PartitionName=debug Nodes={node} Default=YES MaxTime=INFINITE State=UP
"""


@dataclass
class LocalSlurm:
    dir: Path
    conf: Path
    procs: dict = field(default_factory=dict)
    files: list = field(default_factory=list)

    def env(self) -> dict:
        return dict(os.environ, SLURM_CONF=str(self.conf))

    def logs(self) -> str:
        out = []
        for name in ("munged.log", "slurmctld.log", "slurmd.log"):
            p = self.dir / name
            if p.exists():
                out.append(f"--- {name} (tail)\n" + "\n".join(p.read_text(errors="replace").splitlines()[-25:]))
        return "\n".join(out)

    def stop(self) -> None:
        for name in reversed(list(self.procs)):
            proc = self.procs[name]
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=5)
        self.procs.clear()
        self._kill_orphan_steps()
        for f in self.files:
            f.close()
        self.files.clear()

    def _kill_orphan_steps(self) -> None:
        # slurmstepd processes of this cluster (found by our private config path) outlive slurmd, and so do the
        # job's own processes when a test fails mid-job (they hold ports the next cluster's job ids reuse)
        for pid_dir in Path("/proc").iterdir():
            if not pid_dir.name.isdigit():
                continue
            try:
                cmdline = (pid_dir / "cmdline").read_bytes().decode(errors="replace")
                environ = (pid_dir / "environ").read_bytes().decode(errors="replace")
            except OSError:
                continue
            ours = str(self.conf) in environ and ("slurmstepd" in cmdline or "SLURM_JOB_ID=" in environ)
            if ours and int(pid_dir.name) != os.getpid():
                try:
                    os.kill(int(pid_dir.name), 9)
                except OSError:
                    pass


def start_cluster(workdir: Path, timeout: float = 60.0) -> LocalSlurm:
    """Start munged + slurmctld + slurmd under ``workdir``; wait until the node is idle."""
    workdir = Path(workdir)
    for sub in ("state", "spool", "munge"):
        (workdir / sub).mkdir(parents=True, exist_ok=True)
    os.chmod(workdir / "munge", 0o700)
    host = socket.gethostname().split(".")[0]
    munge_socket = workdir / "munge" / "munge.socket"
    key = workdir / "munge" / "munge.key"
    key.write_bytes(os.urandom(1024))
    os.chmod(key, 0o600)
    conf = workdir / "slurm.conf"
    conf.write_text(
        SLURM_CONF.format(
            host=host,
            node=host,  # a node name that resolves: Lightning's main address is the first name in SLURM_NODELIST
            dir=workdir,
            cpus=os.cpu_count() or 1,
            munge_socket=munge_socket,
            ctld_port=_free_port(),
            slurmd_port=_free_port(),
        )
    )
    cluster = LocalSlurm(dir=workdir, conf=conf)
    env = cluster.env()

    def spawn(name: str, argv: list[str]) -> None:
        log = open(workdir / f"{name}.stdout", "wb")
        cluster.files.append(log)
        cluster.procs[name] = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=workdir)

    try:
        spawn(
            "munged",
            [
                _which("munged"),
                "-F",
                "--force",
                f"--key-file={key}",
                f"--socket={munge_socket}",
                f"--pid-file={workdir}/munge/munged.pid",
                f"--log-file={workdir}/munged.log",
                f"--seed-file={workdir}/munge/munged.seed",
            ],
        )
        _wait(lambda: munge_socket.exists(), 15, "munged socket", cluster)
        spawn("slurmctld", [_which("slurmctld"), "-D", "-c", "-i", "-f", str(conf)])
        _wait(lambda: _ok(["scontrol", "ping"], env, expect="UP"), timeout, "slurmctld", cluster)
        spawn("slurmd", [_which("slurmd"), "-D", "-f", str(conf), "-N", host])
        _wait(
            lambda: _ok(["sinfo", "-h", "-N", "-o", "%t"], env, expect="idle"), timeout, "slurmd (node idle)", cluster
        )
    except BaseException:
        cluster.stop()
        raise
    return cluster


def _ok(argv: list[str], env: dict, expect: str) -> bool:
    try:
        res = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return res.returncode == 0 and expect in res.stdout


def _wait(cond, timeout: float, what: str, cluster: LocalSlurm) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        for name, proc in cluster.procs.items():
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode} while waiting for {what}\n{cluster.logs()}")
        time.sleep(0.3)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}\n{cluster.logs()}")


def wait_for(cond, timeout: float, interval: float = 0.5) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(interval)
    return cond()
