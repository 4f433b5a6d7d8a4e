"""Measuring one benchmark step: wall time, CPU time and peak resident memory.

A single-process step runs under a fresh intermediate Python process that reads
``getrusage(RUSAGE_CHILDREN)`` once the step has ended: its ``ru_maxrss`` is then the
step's own peak (the largest process it waited for), untouched by earlier steps. A
multi-process step (DDP ranks) is polled instead: psutil sums the RSS of the whole
process tree every 50 ms.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")  # set by --threads


class StepFailed(RuntimeError):
    """A measured step exited with an error or ran past its timeout."""


# The intermediate process: runs the step as its only child, then reports on it.
_MEASURE = """
import json, resource, subprocess, sys, time
start = time.perf_counter()
with open(sys.argv[1], "wb") as out, open(sys.argv[2], "wb") as err:
    try:  # on timeout, subprocess.run kills the step itself
        rc = subprocess.run(sys.argv[4:], stdout=out, stderr=err, timeout=float(sys.argv[3]))
        rc = rc.returncode
    except subprocess.TimeoutExpired:
        rc = 124
seconds = time.perf_counter() - start
usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # of the step only: nothing else ran
peak = usage.ru_maxrss * (1 if sys.platform == "darwin" else 1024)  # KiB on Linux
cpu = usage.ru_utime + usage.ru_stime
print(json.dumps({"rc": rc, "seconds": seconds, "cpu_seconds": cpu, "peak_bytes": peak}))
"""


def cli(*args: object) -> list[str]:
    """A `crossfuse` command: the console script next to this Python, else `-m crossfuse`."""
    script = Path(sys.executable).parent / "crossfuse"
    head = [str(script)] if script.is_file() else [sys.executable, "-m", "crossfuse"]
    return [*head, *map(str, args)]


def py(code: str, *args: object) -> list[str]:
    """A `python -c CODE ARGS...` command."""
    return [sys.executable, "-c", code, *map(str, args)]


@dataclass
class Runner:
    """Runs measured steps: logs folder, timeout, repeats (the fastest is kept), environment."""

    logs: Path
    timeout: float
    repeats: int = 1
    env: dict[str, str] | None = None  # None: this process's environment

    def __call__(
        self, cmd: list[str], name: str, before: Callable[[], None] | None = None
    ) -> tuple[dict[str, Any], str]:
        """Wall s and peak MiB of the fastest of ``repeats`` runs, and its stdout.

        ``before`` runs (unmeasured) ahead of every repeat, e.g. to empty the cache.
        """
        runs = []
        for _ in range(self.repeats):
            if before is not None:
                before()
            runs.append(self.once(cmd, name))
        best = min(runs, key=lambda r: r[0]["seconds"])
        record = dict(best[0])
        if self.repeats > 1:
            record["all_seconds"] = [r[0]["seconds"] for r in runs]
            record["all_peak_mib"] = [r[0]["peak_mib"] for r in runs]
        return record, best[1]

    def once(self, cmd: list[str], name: str) -> tuple[dict[str, Any], str]:
        self.logs.mkdir(parents=True, exist_ok=True)
        out, err = self.logs / f"{name}.out", self.logs / f"{name}.err"
        load = os.getloadavg()[0]
        done = subprocess.run(
            py(_MEASURE, out, err, self.timeout, *cmd), capture_output=True, text=True, env=self.env
        )
        result = json.loads(done.stdout) if done.returncode == 0 else {"rc": done.returncode}
        if result["rc"] != 0:
            tail = err.read_text(errors="replace")[-2000:] + done.stderr[-500:]
            why = "ran past the timeout" if result["rc"] == 124 else f"exit {result['rc']}"
            raise StepFailed(f"step {name} failed ({why}): {' '.join(cmd)}\n{tail}")
        record = {
            "seconds": round(result["seconds"], 2),
            "cpu_seconds": round(result["cpu_seconds"], 2),
            "peak_mib": round(result["peak_bytes"] / 2**20, 1),
            "load_before": round(load, 2),
        }
        return record, out.read_text(errors="replace")


def tree_measured(cmd: list[str], name: str, run: Runner) -> dict[str, Any]:
    """Run ``cmd``; sum the RSS of its whole process tree every 50 ms (DDP ranks)."""
    logs, timeout = run.logs, run.timeout
    logs.mkdir(parents=True, exist_ok=True)
    load, peak, most = os.getloadavg()[0], 0, 0
    with (logs / f"{name}.out").open("wb") as out, (logs / f"{name}.err").open("wb") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=run.env)
        root = psutil.Process(proc.pid)
        while proc.poll() is None:
            if time.perf_counter() - start > timeout:
                for p in [*root.children(recursive=True), root]:
                    with contextlib.suppress(psutil.NoSuchProcess):
                        p.kill()
                proc.wait()
                raise StepFailed(f"step {name} ran past {timeout} s")
            total, procs = 0, 0
            try:
                tree = [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                tree = []
            for p in tree:
                try:
                    total += p.memory_info().rss
                    procs += 1
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    continue
            peak, most = max(peak, total), max(most, procs)
            time.sleep(0.05)
        seconds = time.perf_counter() - start
    if proc.returncode != 0:
        tail = (logs / f"{name}.err").read_text(errors="replace")[-2000:]
        raise StepFailed(f"step {name} failed (exit {proc.returncode}): {' '.join(cmd)}\n{tail}")
    return {
        "seconds": round(seconds, 2),
        "peak_tree_mib": round(peak / 2**20, 1),
        "max_processes": most,
        "load_before": round(load, 2),
    }
