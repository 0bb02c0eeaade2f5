"""The environment a measurement was taken in: CPU, ISA flags, cores, memory, OS and library versions."""

from __future__ import annotations

import os
import platform
from functools import lru_cache
from typing import Any

# The ISA features that decide which kernels a runtime picks.
INTERESTING_FLAGS = ("sse4_1", "sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512_vnni",
                     "avx_vnni", "amx_int8", "amx_bf16", "neon", "asimd", "asimddp", "sve", "sve2", "i8mm", "bf16",
                     "fphp", "asimdhp")


@lru_cache(maxsize=1)
def cpu_info() -> dict[str, Any]:
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip().lower()
                if key in ("model name", "hardware", "cpu model") and value.strip():
                    model = value.strip()
                elif key in ("flags", "features"):
                    flags.update(value.split())
    except OSError:
        pass
    return {"cpu": model, "isa": sorted(f for f in flags if f in INTERESTING_FLAGS)}


def ram_mb() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) // 1024
    except OSError:
        pass
    return None


def environment(runtime_versions: dict[str, str] | None = None) -> dict[str, Any]:
    from .. import __version__

    info = cpu_info()
    return {
        "cpu": info["cpu"],
        "isa": info["isa"],
        "arch": platform.machine(),
        "cores": os.cpu_count(),
        "ram_mb": ram_mb(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "toolkit": __version__,
        "runtime_versions": dict(runtime_versions or {}),
    }
