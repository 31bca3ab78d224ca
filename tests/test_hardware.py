"""What the processor offers hardware.amp: native bf16 or not."""

from __future__ import annotations

import pytest

from mrirecon.training import hardware


def test_native_bf16_follows_the_cpu_flags(monkeypatch):
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    monkeypatch.setattr(hardware.torch._C._cpu, "_get_cpu_capability", lambda: {"avx512_bf16": False, "amx_bf16": True})
    assert hardware.native_bf16() is True
    monkeypatch.setattr(
        hardware.torch._C._cpu, "_get_cpu_capability", lambda: {"avx512_bf16": False, "amx_bf16": False}
    )
    assert hardware.native_bf16() is False
    monkeypatch.setattr(hardware.torch._C._cpu, "_get_cpu_capability", dict)  # no x86 answer: /proc/cpuinfo
    monkeypatch.setattr(hardware, "_cpuinfo", lambda: "model name\t: Some Arm\nFeatures\t: fp asimd bf16 sve\n")
    assert hardware.native_bf16() is True and hardware.cpu_name() == "Some Arm"
    monkeypatch.setattr(hardware, "_cpuinfo", lambda: "")
    assert hardware.native_bf16() is None  # cannot tell


@pytest.mark.parametrize(
    "isa, native", [("AVX2", False), ("AVX512_CORE", False), ("AVX512_CORE_BF16", True), ("ALL", True)]
)
def test_a_onednn_isa_limit_below_bf16_counts_as_none(monkeypatch, isa, native):
    """ONEDNN_MAX_CPU_ISA limits what oneDNN uses (docs/benchmarks.md emulates CPUs with it)."""
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", isa)
    monkeypatch.setattr(hardware.torch._C._cpu, "_get_cpu_capability", lambda: {"avx512_bf16": True})
    assert hardware.native_bf16() is native
