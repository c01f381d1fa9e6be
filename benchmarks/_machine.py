"""What every benchmark prints first (its command and the machine), and a plain-text table.

Imported by the scripts in this folder (``python benchmarks/<script>.py`` puts the folder on
``sys.path``); the frameworks are not imported here, only their installed versions read.
"""
from __future__ import annotations

import datetime
import os
import platform
import shlex
import sys
from collections.abc import Sequence
from importlib import metadata

PACKAGES = ("torch", "lightning", "transformers", "keras", "tensorflow")


def _version(name: str) -> str:
    for dist in (name, f"{name}-cpu"):  # tensorflow-cpu
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return "-"


def header(title: str) -> None:
    """Print the title, the command as typed, the date and the machine facts."""
    env = " ".join(f"{k}={os.environ[k]}" for k in ("KERAS_BACKEND", "OMP_NUM_THREADS") if k in os.environ)
    script = os.path.relpath(sys.argv[0]) if os.path.isabs(sys.argv[0]) else sys.argv[0]
    command = shlex.join(["python", script, *sys.argv[1:]])
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        usable = os.cpu_count()
    load = " ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "-"
    print(f"== {title}")
    print(f"command:  {env + ' ' if env else ''}{command}")
    print(f"date:     {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC")
    print(f"machine:  {platform.platform()} | {platform.machine()} | python {platform.python_version()} | "
          f"cpus {os.cpu_count()} (usable {usable}) | load average {load}")
    torch = sys.modules.get("torch")
    if torch is not None:
        gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
        print(f"torch:    threads {torch.get_num_threads()} | GPU {gpu}")
    print("versions: " + " ".join(f"{p} {_version(p)}" for p in PACKAGES), flush=True)


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Left-aligned first column, right-aligned others; floats as given (format them first)."""
    cells = [[str(c) for c in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(row: list[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))

    out = [line(cells[0]), "  ".join("-" * w for w in widths)]
    out += [line(r) for r in cells[1:]]
    return "\n".join(out)
