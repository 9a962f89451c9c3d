"""Reading the CPU: model name and the ISA extensions that decide which integer kernels run."""

from __future__ import annotations

import os
import platform
from pathlib import Path

__all__ = ["cpu_description", "has_bf16", "has_int8_dot", "integer_kernels"]

# /proc/cpuinfo flag -> the name we report. VNNI and AMX are what make INT8 pay off on x86.
_ISA_FLAGS = {
    "avx2": "avx2",
    "fma": "fma",
    "avx512f": "avx512",
    "avx512_vnni": "avx512-vnni",
    "avx512_bf16": "avx512-bf16",
    "avx_vnni": "avx-vnni",
    "amx_int8": "amx-int8",
    "amx_bf16": "amx-bf16",
    "asimd": "neon",
    "asimddp": "dotprod",
}


def cpu_description() -> tuple[str, tuple[str, ...], int]:
    """(CPU model, ISA flags we care about, logical cores).

    Linux's /proc/cpuinfo answers at once; elsewhere (macOS, Windows) py-cpuinfo reads the CPU
    (about a second). Flags it cannot find are left out: an empty ISA means "unknown", and targets
    then offer every precision and let measurement decide (`integer_kernels`).
    """
    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key in ("model name", "Model") and model in ("", platform.machine(), platform.processor()):
                model = value.strip()
            elif key in ("flags", "Features"):
                flags |= set(value.split())
    except OSError:
        pass
    if not flags:
        info = _cpuinfo()
        flags = set(info.get("flags", ()))
        model = info.get("brand_raw") or model
    isa = tuple(sorted(name for flag, name in _ISA_FLAGS.items() if flag in flags))
    return model, isa, os.cpu_count() or 1


def _cpuinfo() -> dict:
    try:
        import cpuinfo

        return cpuinfo.get_cpu_info()
    except Exception:  # an unknown platform: nothing is known, which targets treat as "measure"
        return {}


def integer_kernels(isa: tuple[str, ...]) -> bool:
    """Whether the runtime has integer GEMM kernels here: x86 from AVX2 on, ARM NEON; when the ISA
    could not be read (empty), assumed so: a candidate the CPU runs slowly loses on latency when
    it is measured, while a precision dropped silently can never win."""
    return not isa or bool({"avx2", "avx512", "neon", "dotprod"} & set(isa))


def has_int8_dot(isa: tuple[str, ...]) -> bool:
    """An INT8 dot-product instruction that accumulates in int32 (VNNI, AMX, ARM dotprod)."""
    return bool({"avx512-vnni", "avx-vnni", "amx-int8", "dotprod"} & set(isa))


def has_bf16(isa: tuple[str, ...]) -> bool:
    """BF16 arithmetic (AVX512-BF16 or AMX): OpenVINO then runs float parts in BF16 when asked."""
    return bool({"avx512-bf16", "amx-bf16"} & set(isa))
