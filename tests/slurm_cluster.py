"""A throwaway one-node SLURM cluster (Debian slurm-wlm + munge) for tests.

Usage::

    reason = slurm_unavailable_reason()
    if reason:
        pytest.skip(reason)
    with slurm_cluster(tmp_path) as cluster:
        subprocess.run(["sbatch", "--wrap", "true"], env=cluster.env, check=True)

The cluster lives under ``<workdir>/slurm`` (state, spool, pid files, logs,
job-completion file) plus a short-lived munge directory under the system temp
dir (munged runs as user ``munge``, which cannot traverse pytest's 0700 temp
dirs). Daemons run in the foreground as children of this process on free
ports, so several clusters can coexist with each other and with a system
SLURM.

``cluster.env`` puts ``<workdir>/slurm/bin`` first on PATH: wrappers around
the SLURM clients that set SLURM_CONF, because
snakemake-executor-plugin-slurm-jobstep 0.6.1 drops SLURM_CONF from the
environment of the ``srun`` it runs inside each job.

On exit all jobs are cancelled, exactly the daemons started here are stopped,
and state, spool, pid, wrapper and munge files are removed; ``log/`` and
``jobcomp.txt`` stay for post-mortems.
"""

from __future__ import annotations

import contextlib
import fcntl
import grp
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

APT_PACKAGES = ("slurm-wlm", "munge")
DAEMONS = ("slurmctld", "slurmd", "munged")
CLIENTS = ("sbatch", "squeue", "sinfo", "scontrol", "scancel", "srun")
WRAPPED_CLIENTS = CLIENTS + ("salloc", "sacct", "sacctmgr", "sshare", "sstat")
SBIN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
INSTALL_LOCK = Path(tempfile.gettempdir()) / "repshift-slurm-install.lock"
POLICY_RC_D = Path("/usr/sbin/policy-rc.d")

APT_TIMEOUT_S = 900
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0
CANCEL_TIMEOUT_S = 30.0


class SlurmHarnessError(RuntimeError):
    pass


def _which(name: str) -> str | None:
    return shutil.which(name, path=os.environ.get("PATH", "") + os.pathsep + SBIN_PATH)


def _missing_binaries() -> list[str]:
    return [name for name in DAEMONS + CLIENTS if _which(name) is None]


def slurm_unavailable_reason() -> str | None:
    """Why a local SLURM cluster is not started here, or None if it is: it runs in CI (CI=true) or on request."""
    if os.environ.get("CI") != "true" and os.environ.get("REPSHIFT_SLURM_TEST") != "1":
        return ("the SLURM test installs slurm-wlm and munge with apt-get and starts daemons as root: run it with "
                "REPSHIFT_SLURM_TEST=1 python3 -m pytest tests/test_slurm.py (CI runs it)")
    if os.uname().sysname != "Linux":
        return "the SLURM test cluster needs Linux"
    if os.geteuid() != 0:
        return "the SLURM test cluster needs root (to run slurmd and munged)"
    missing = _missing_binaries()
    if missing and _which("apt-get") is None:
        return f"SLURM binaries missing ({', '.join(missing)}) and no apt-get to install them"
    return None


def _apt_install() -> None:
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive", PATH=SBIN_PATH)
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *APT_PACKAGES]
    made_policy = False
    if not POLICY_RC_D.exists():
        POLICY_RC_D.write_text("#!/bin/sh\nexit 101\n")
        POLICY_RC_D.chmod(0o755)
        made_policy = True
    try:
        result = subprocess.run(install, env=env, capture_output=True, text=True, timeout=APT_TIMEOUT_S)
        if result.returncode != 0:
            update = subprocess.run(
                ["apt-get", "update", "-q"], env=env, capture_output=True, text=True, timeout=APT_TIMEOUT_S
            )
            if update.returncode != 0:
                raise SlurmHarnessError(
                    f"apt-get update failed (rc {update.returncode}): {update.stderr.strip()[-2000:]}"
                )
            result = subprocess.run(install, env=env, capture_output=True, text=True, timeout=APT_TIMEOUT_S)
        if result.returncode != 0:
            raise SlurmHarnessError(
                f"apt-get install {' '.join(APT_PACKAGES)} failed (rc {result.returncode}): "
                f"{result.stderr.strip()[-2000:]}"
            )
    finally:
        if made_policy:
            POLICY_RC_D.unlink(missing_ok=True)


def ensure_slurm_installed() -> None:
    """Install slurm-wlm and munge with apt-get if any binary is missing."""
    if not _missing_binaries():
        return
    with open(INSTALL_LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _missing_binaries():
            _apt_install()
    missing = _missing_binaries()
    if missing:
        raise SlurmHarnessError(f"still missing after apt-get install: {', '.join(missing)}")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _real_memory_mb() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                total_mb = int(line.split()[1]) // 1024
                return max(256, int(total_mb * 0.9))
    raise SlurmHarnessError("cannot read MemTotal from /proc/meminfo")


def _tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError as exc:
        return f"  ({path}: {exc.strerror})"
    return "\n".join("  " + line for line in text[-lines:]) or f"  ({path} is empty)"


@dataclass
class SlurmCluster:
    root: Path
    conf: Path
    env: dict[str, str]
    partition: str
    node: str
    cpus: int
    mem_mb: int
    jobcomp: Path
    log_dir: Path
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)

    @property
    def pids(self) -> dict[str, int]:
        return {name: proc.pid for name, proc in self.procs.items()}

    def run(self, *args: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
        return subprocess.run(
            list(args), env=self.env, capture_output=True, text=True, check=check, timeout=timeout
        )

    def jobcomp_records(self) -> dict[str, str]:
        """Finished jobs from the job-completion file: {job id: JobState}."""
        if not self.jobcomp.exists():
            return {}
        records = {}
        for line in self.jobcomp.read_text().splitlines():
            job = re.search(r"\bJobId=(\d+)", line)
            state = re.search(r"\bJobState=(\S+)", line)
            if job:
                records[job.group(1)] = state.group(1) if state else ""
        return records

    def node_state(self) -> str:
        out = self.run("sinfo", "-h", "-N", "-n", self.node, "-o", "%T", check=False)
        return out.stdout.strip() if out.returncode == 0 else ""

    def diagnostics(self) -> str:
        parts = []
        for name in ("slurmctld", "slurmd"):
            parts.append(f"--- {name}.log (tail) ---\n{_tail(self.log_dir / f'{name}.log')}")
        for name in ("slurmctld", "slurmd", "munged"):
            parts.append(f"--- {name} stdout/stderr (tail) ---\n{_tail(self.log_dir / f'{name}.out', 15)}")
        return "\n".join(parts)


def _write_slurm_conf(cluster: SlurmCluster, munge_socket: Path) -> None:
    r = cluster.root
    ctld_port, slurmd_port = _free_port(), _free_port()
    while slurmd_port == ctld_port:
        slurmd_port = _free_port()
    cluster.conf.write_text(
        f"""\
ClusterName=repshift
SlurmctldHost={cluster.node}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={munge_socket}
StateSaveLocation={r}/state
SlurmdSpoolDir={r}/spool
SlurmctldPidFile={r}/run/slurmctld.pid
SlurmdPidFile={r}/run/slurmd.pid
SlurmctldLogFile={cluster.log_dir}/slurmctld.log
SlurmdLogFile={cluster.log_dir}/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
PlugStackConfig={r}/plugstack.conf
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/filetxt
JobCompLoc={cluster.jobcomp}
MinJobAge=600
ReturnToService=2
SlurmdParameters=config_overrides
SlurmdTimeout=60
NodeName={cluster.node} NodeAddr=127.0.0.1 CPUs={cluster.cpus} RealMemory={cluster.mem_mb} State=UNKNOWN
PartitionName={cluster.partition} Nodes={cluster.node} Default=YES MaxTime=INFINITE State=UP
"""
    )
    (r / "plugstack.conf").write_text("")


def _write_client_wrappers(bin_dir: Path, conf: Path) -> None:
    bin_dir.mkdir(parents=True, exist_ok=True)
    for name in WRAPPED_CLIENTS:
        real = _which(name)
        if real is None:
            continue
        wrapper = bin_dir / name
        wrapper.write_text(f"#!/bin/sh\nSLURM_CONF={shlex.quote(str(conf))} exec {shlex.quote(real)} \"$@\"\n")
        wrapper.chmod(0o755)


def _start(cluster: SlurmCluster, name: str, argv: list[str], **kwargs) -> None:
    out = open(cluster.log_dir / f"{name}.out", "wb")
    try:
        cluster.procs[name] = subprocess.Popen(
            argv,
            env=cluster.env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            **kwargs,
        )
    finally:
        out.close()


def _wait_for(cluster: SlurmCluster, what: str, ready, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for name, proc in cluster.procs.items():
            if proc.poll() is not None:
                raise SlurmHarnessError(
                    f"{name} exited with code {proc.returncode} while waiting for {what}\n"
                    + cluster.diagnostics()
                )
        if ready():
            return
        time.sleep(0.5)
    raise SlurmHarnessError(f"timed out after {timeout:.0f}s waiting for {what}\n" + cluster.diagnostics())


def _start_munged(cluster: SlurmCluster, munge_dir: Path) -> Path:
    munged = _which("munged")
    try:
        user = pwd.getpwnam("munge")
        group = grp.getgrgid(user.pw_gid)
    except KeyError:
        user = group = None
    key = munge_dir / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o600)
    sock = munge_dir / "munge.socket"
    argv = [
        munged,
        "--foreground",
        f"--key-file={key}",
        f"--socket={sock}",
        f"--pid-file={munge_dir / 'munged.pid'}",
        f"--seed-file={munge_dir / 'munged.seed'}",
    ]
    munge_dir.chmod(0o711)
    kwargs = {}
    if user is not None:
        for path in (munge_dir, key):
            os.chown(path, user.pw_uid, user.pw_gid)
        kwargs = {"user": user.pw_uid, "group": group.gr_gid, "extra_groups": []}
    else:
        argv.append("--force")
    _start(cluster, "munged", argv, **kwargs)
    _wait_for(cluster, "munged socket", sock.exists, 20)
    return sock


def _cancel_all_jobs(cluster: SlurmCluster) -> None:
    if "slurmctld" not in cluster.procs or cluster.procs["slurmctld"].poll() is not None:
        return
    with contextlib.suppress(Exception):
        cluster.run("scancel", "--full", "--partition", cluster.partition, check=False)
        deadline = time.monotonic() + CANCEL_TIMEOUT_S
        while time.monotonic() < deadline:
            out = cluster.run("squeue", "-h", "-t", "PD,R,CG,S,CF", "-o", "%i", check=False)
            if out.returncode != 0 or not out.stdout.strip():
                return
            time.sleep(0.5)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=STOP_TIMEOUT_S)


@contextlib.contextmanager
def slurm_cluster(workdir: os.PathLike | str, partition: str = "debug") -> Iterator[SlurmCluster]:
    """Start munged, slurmctld and slurmd for a one-node cluster; stop them on exit."""
    reason = slurm_unavailable_reason()
    if reason:
        raise SlurmHarnessError(reason)
    ensure_slurm_installed()

    root = Path(workdir).resolve() / "slurm"
    if root.exists():
        shutil.rmtree(root)
    for sub in ("state", "spool", "run", "log", "bin"):
        (root / sub).mkdir(parents=True)
    munge_dir = Path(tempfile.mkdtemp(prefix="repshift-munge-"))

    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SBATCH_", "SRUN_", "SALLOC_"))}
    env["PATH"] = os.pathsep.join([str(root / "bin"), env.get("PATH", ""), SBIN_PATH])
    env["SLURM_CONF"] = str(root / "slurm.conf")
    cluster = SlurmCluster(
        root=root,
        conf=root / "slurm.conf",
        env=env,
        partition=partition,
        node=socket.gethostname().split(".")[0],
        cpus=len(os.sched_getaffinity(0)),
        mem_mb=_real_memory_mb(),
        jobcomp=root / "jobcomp.txt",
        log_dir=root / "log",
    )
    try:
        munge_socket = _start_munged(cluster, munge_dir)
        _write_slurm_conf(cluster, munge_socket)
        _write_client_wrappers(root / "bin", cluster.conf)
        _start(cluster, "slurmctld", [_which("slurmctld"), "-D", "-c", "-f", str(cluster.conf)])
        _start(cluster, "slurmd", [_which("slurmd"), "-D", "-N", cluster.node, "-f", str(cluster.conf)])
        _wait_for(cluster, f"node {cluster.node} idle in sinfo", lambda: cluster.node_state() == "idle", READY_TIMEOUT_S)
        yield cluster
    finally:
        _cancel_all_jobs(cluster)
        for name in ("slurmd", "slurmctld", "munged"):
            if name in cluster.procs:
                with contextlib.suppress(Exception):
                    _stop(cluster.procs[name])
        for sub in ("state", "spool", "run", "bin"):
            shutil.rmtree(root / sub, ignore_errors=True)
        shutil.rmtree(munge_dir, ignore_errors=True)
