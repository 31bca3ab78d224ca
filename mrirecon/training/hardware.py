"""What this machine's processor offers the bf16 autocast of `hardware.amp`: whether the CPU
has native bf16 instructions (AVX512-BF16 or AMX-BF16 on x86, BF16 on Arm), which oneDNN's
bf16 convolutions need to be fast. Without them oneDNN emulates bf16 and a convolution is
slower than in float32 (docs/benchmarks.md: 2.5x with AVX-512 alone, 80x with AVX2).
Knows nothing about MRI or models."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import torch

# oneDNN's CPU ISA limits (ONEDNN_MAX_CPU_ISA) that keep its bf16 instructions
_BF16_ISA_WORDS = ("BF16", "AMX", "AVX10", "ALL", "DEFAULT")


def cpu_name() -> str:
    """The processor's model name (Linux /proc/cpuinfo, else the platform's), for messages."""
    for line in _cpuinfo().splitlines():
        if line.lower().startswith(("model name", "cpu model")):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown CPU"


def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return ""


def _cpu_flags() -> set[str] | None:
    """The CPU feature flags (x86 'flags', Arm 'Features' of /proc/cpuinfo), None if unknown."""
    for line in _cpuinfo().splitlines():
        if line.lower().startswith(("flags", "features")):
            return set(line.split(":", 1)[1].split())
    return None


def native_bf16() -> bool | None:
    """Whether oneDNN can run bf16 convolutions with native instructions here: True, False, or
    None when the CPU's features cannot be read (not Linux and no answer from torch). An ISA
    limit below bf16 in ONEDNN_MAX_CPU_ISA (e.g. AVX512_CORE, AVX2) counts as none."""
    limit = os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper()
    if limit and not any(word in limit for word in _BF16_ISA_WORDS):
        return False
    capability = getattr(torch._C._cpu, "_get_cpu_capability", None)  # torch's CPUID reading (x86)
    if capability is not None:
        found = capability()
        if isinstance(found, dict) and "avx512_bf16" in found:
            return bool(found.get("avx512_bf16") or found.get("amx_bf16"))
    flags = _cpu_flags()
    if flags is None:
        return None
    return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})
