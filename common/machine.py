"""The machine a number was measured on: the CPU's model and the feature flags that decide
its dense speed. Speeds here differ 2-3x between CPU kinds, so every benchmark figure and
every score record names the CPU it came from.
"""
import os
import platform
import subprocess

# The CPU features that decide dense speed here: AVX2 and AVX-512 vector widths, and the
# bfloat16 dot-product (AVX512_BF16) and matrix (AMX) instructions.
RELEVANT_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")


def cpu_flags(path="/proc/cpuinfo"):
    """The CPU's feature flags (`avx2`, `avx512f`, `avx512_bf16`, `amx_bf16`, ...) as a set;
    empty where /proc/cpuinfo cannot be read (not Linux)."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_model():
    """`lscpu`'s "Model name", else /proc/cpuinfo's "model name", else platform's guess."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_summary():
    """One line for a record: 'AMD EPYC, 2 cores (avx2, avx512f, avx512_bf16; no amx_bf16)'."""
    flags = cpu_flags()
    have = [f for f in RELEVANT_FLAGS if f in flags]
    missing = [f for f in RELEVANT_FLAGS if f not in flags]
    detail = ", ".join(have) + (f"; no {', '.join(missing)}" if missing else "")
    return f"{cpu_model()}, {os.cpu_count()} cores ({detail})"
