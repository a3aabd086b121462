"""Helpers shared by ``corpus_vs_reference.py`` and ``cold_start.py``: run a timed child
process and collect its resource usage, build the environments of the two sides, and
describe the machine. Standard library only, so the scripts run under any Python.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
DEFAULT_REF_PYTHON = os.environ.get("PLUREL_REF_PYTHON", "/work/refvenv/bin/python")
RESULT_PREFIX = "@@RESULT "


def default_ours_python() -> str:
    """This checkout's virtualenv (``.venv`` at the repository root) if there is one,
    else the Python running the script."""
    venv = REPO / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


def ours_cli(ours_python: str) -> list[str]:
    """The ``plurel-fast`` command of that Python's environment: its console script when
    it sits next to the interpreter, else the same entry point through ``-c``."""
    script = Path(ours_python).parent / "plurel-fast"
    if script.exists():
        return [str(script)]
    return [ours_python, "-c", "import sys; from plurel_fast.cli import main; "
            "sys.exit(main(sys.argv[1:]))"]


@dataclass
class ChildRun:
    """A finished child: exit code, wall seconds (fork to reap, measured by the parent),
    CPU seconds and peak RSS from ``wait4`` (the child and the descendants it reaped;
    ``maxrss`` is the largest single process, not a sum), and its output files."""

    returncode: int
    wall_s: float
    cpu_s: float
    maxrss_mb: float
    stdout: Path
    stderr: Path
    timed_out: bool = False

    def text(self) -> str:
        return self.stdout.read_text(errors="replace")

    def result(self) -> dict | None:
        """The JSON of the child's last ``@@RESULT`` line, if any."""
        found = None
        for line in self.text().splitlines():
            if line.startswith(RESULT_PREFIX):
                found = json.loads(line[len(RESULT_PREFIX):])
        return found

    def tail(self, n: int = 15) -> str:
        lines = (self.stdout.read_text(errors="replace").splitlines()[-n:]
                 + self.stderr.read_text(errors="replace").splitlines()[-n:])
        return "\n".join(lines)


def run_child(cmd: list[str], env: dict[str, str], log_prefix: Path, *,
              cwd: str | os.PathLike | None = None, timeout: float | None = None) -> ChildRun:
    """Run ``cmd`` in a new session, stdout/stderr to ``<log_prefix>.out/.err``, and
    reap it with ``os.wait4``. After ``timeout`` seconds its whole process group (this
    child and the workers it started) is killed."""
    out_path = log_prefix.with_name(log_prefix.name + ".out")
    err_path = log_prefix.with_name(log_prefix.name + ".err")
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=err, cwd=cwd,
                                start_new_session=True)
        reaped: dict = {}

        def reap():
            _, status, usage = os.wait4(proc.pid, 0)
            reaped.update(status=status, usage=usage, t=time.perf_counter())

        waiter = threading.Thread(target=reap, daemon=True)
        waiter.start()
        waiter.join(timeout)
        timed_out = waiter.is_alive()
        if timed_out:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            waiter.join()
        proc.returncode = os.waitstatus_to_exitcode(reaped["status"])  # already reaped
    usage = reaped["usage"]
    return ChildRun(
        returncode=proc.returncode, wall_s=reaped["t"] - t0,
        cpu_s=usage.ru_utime + usage.ru_stime, maxrss_mb=usage.ru_maxrss / 1024,
        stdout=out_path, stderr=err_path, timed_out=timed_out,
    )


def side_env(cache_home: Path | None, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The caller's environment with ``XDG_CACHE_HOME`` pointed at ``cache_home`` (a
    fresh folder means empty caches) and ``NUMBA_CACHE_DIR`` removed, so plurel_fast's
    kernel cache is ``$XDG_CACHE_HOME/plurel_fast`` (``kernels/__init__.py``)."""
    env = dict(os.environ)
    env.pop("NUMBA_CACHE_DIR", None)
    env.pop("PYTHONPATH", None)
    if cache_home is not None:
        env["XDG_CACHE_HOME"] = str(cache_home)
    env.update(extra or {})
    return env


def fresh_dir(parent: Path, name: str) -> Path:
    path = parent / name
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def dir_summary(path: Path) -> tuple[int, float]:
    """(files, MB) under ``path``."""
    files, size = 0, 0
    for p in path.rglob("*"):
        if p.is_file():
            files += 1
            size += p.stat().st_size
    return files, size / 2**20


def prime_page_cache(ref_python: str, ours_python: str, scratch: Path) -> None:
    """Import both packages once, untimed, so neither side's first timed run pays for
    reading its libraries from disk. Uses a throwaway cache folder: no kernel cache and
    no reference cache survives into the timed runs."""
    cache = fresh_dir(scratch, "prime-cache")
    for exe, mod in ((ref_python, "plurel"), (ours_python, "plurel_fast")):
        subprocess.run([exe, "-c", f"import {mod}"], env=side_env(cache), cwd="/tmp",
                       capture_output=True, timeout=600)
    shutil.rmtree(cache, ignore_errors=True)


def machine_info(ref_python: str, ours_python: str) -> dict:
    info = dict(
        date=dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        host=platform.node(), cpus=os.cpu_count(), loadavg_start=os.getloadavg(),
        ref_python=ref_python, ours_python=ours_python,
    )
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        info["commit"] = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                                        capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--",
                                "plurel_fast", "kernels", "pyproject.toml"],
                               capture_output=True, text=True).stdout.split("\n")
        info["dirty_files"] = [ln[3:] for ln in dirty if ln.strip()]
    except OSError:
        info["commit"], info["dirty_files"] = None, []
    probe = ("import importlib.metadata as m, platform;"
             "print(platform.python_version(), *[m.version(p) for p in {pkgs}])")
    for key, exe, pkgs in (
        ("ours_versions", ours_python, ["plurel-fast", "numba", "numpy", "polars", "pandas"]),
        ("ref_versions", ref_python, ["plurel", "torch", "numpy", "pandas", "relbench"]),
    ):
        try:
            out = subprocess.run([exe, "-c", probe.format(pkgs=pkgs)], capture_output=True,
                                 text=True, timeout=120, cwd="/tmp").stdout.split()
            info[key] = dict(zip(["python", *pkgs], out)) or None
        except (OSError, subprocess.SubprocessError):
            info[key] = None
    return info


def print_header(title: str, info: dict, extra: list[str]) -> None:
    print(f"## {title}\n")
    print(f"- {info['date']}, host {info['host']}, {info['cpus']} CPUs "
          f"({info.get('cpu', '?')}), load average at start "
          f"{' / '.join(f'{x:.2f}' for x in info['loadavg_start'])}")
    print(f"- plurel_fast: commit {info.get('commit')}, {info.get('ours_versions')} "
          f"({info['ours_python']})")
    print(f"- reference: {info.get('ref_versions')} ({info['ref_python']})")
    if info.get("dirty_files"):
        print(f"- WARNING: uncommitted changes to the package ({', '.join(info['dirty_files'])})")
    for line in extra:
        print(f"- {line}")
    print()


def make_scratch(work_dir: Path | None, prefix: str) -> Path:
    if work_dir is None:
        return Path(tempfile.mkdtemp(prefix=prefix))
    work_dir = work_dir.resolve()
    work_dir.mkdir(parents=True, exist_ok=True)
    return work_dir


def start_run(args, prefix: str) -> tuple[Path, dict]:
    """A two-sided benchmark's start: its scratch folder (``args.work_dir`` or a new
    temporary one named ``prefix``...), the machine and versions (`machine_info`),
    and, unless ``args.prime`` is false, both packages imported once untimed."""
    scratch = make_scratch(args.work_dir, prefix)
    log(f"work dir {scratch}")
    info = machine_info(args.ref_python, args.ours_python)
    if args.prime:
        log("priming: importing both packages once (untimed)")
        prime_page_cache(args.ref_python, args.ours_python, scratch)
    return scratch, info


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)
