"""Dynamic int8 graphs for ONNX Runtime on CPU: the settings, the CPUs they are right for,
and the quantization itself.

Why the settings matter: ONNX Runtime's CPU kernels for ``MatMulInteger`` with uint8
activations and **signed** int8 weights (u8s8) use ``vpmaddubsw`` on x86-64 CPUs without
VNNI (AVX2, and AVX-512 before VNNI). That instruction adds pairs of products into a
saturating 16-bit sum, so full-range signed weights overflow and give wrong results: on
an AMD EPYC with AVX2 and no VNNI the tiny model's int8 graph agreed with float32 on
33% of tokens. VNNI (``vpdpbusd``) and ARM's dot-product kernels accumulate in 32 bits
and are exact. Two settings avoid the overflow everywhere: 7-bit signed weights
(``reduce_range``) or **unsigned** weights (u8u8), whose x86 kernel widens to 16 bits
before multiplying and never saturates.

Measured on the bundled default, 30 s of real speech, this 2-core AMD EPYC (AVX2, no
VNNI), ``bench/onnx_parity.py`` and the comparison recorded in README:

=====================  ===========================  =====================
weights                tokens equal to float32      step time vs float32
=====================  ===========================  =====================
s8, per channel        93.2 % (saturates)           0.96
s8, 7-bit, per channel 95.3 %                       0.97
s8, 7-bit, per tensor  94.2 %                       0.95
**u8, per channel**    **98.3 %**                   0.98
u8, per tensor         96.2 %                       0.95
s8 7-bit + Conv        30.5 %                       1.75
=====================  ===========================  =====================

So the export writes u8u8 per-channel MatMuls (:data:`DEFAULT`): the most faithful, and
exact on every CPU ONNX Runtime supports. Graphs record their settings in
``metadata_props`` (``int8_*`` keys); :func:`int8_fault` names graphs whose settings are
known to be wrong for the CPU at hand (older exports recorded nothing and used s8 full
range), and the ONNX backend refuses them with the fix.

Torch-free: the runtime side needs only the standard library.
"""
from __future__ import annotations

import platform
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

# metadata_props keys of an int8 graph
WEIGHT_KEY, ACT_KEY = "int8_weight_type", "int8_activation_type"
RANGE_KEY, CHANNEL_KEY, OPS_KEY = "int8_reduce_range", "int8_per_channel", "int8_ops"
# CPU flags (Linux /proc/cpuinfo) of x86 integer dot products that accumulate in 32 bits
VNNI_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})
X86 = frozenset({"x86_64", "amd64", "i386", "i686", "x86"})


@dataclass(frozen=True)
class Int8Settings:
    """How a graph's MatMuls were quantized (activations are always uint8, per call)."""

    weight_type: str = "uint8"  # "uint8" | "int8"
    reduce_range: bool = False  # 7-bit weights
    per_channel: bool = True
    ops: tuple[str, ...] = ("MatMul",)

    def __post_init__(self) -> None:
        if self.weight_type not in ("uint8", "int8"):
            raise ValueError(f"int8 weight_type must be 'uint8' or 'int8', got {self.weight_type!r}")

    @property
    def scheme(self) -> str:
        """``u8u8`` or ``u8s8`` (activations, weights), with ``-7bit`` for reduced range."""
        return ("u8u8" if self.weight_type == "uint8" else "u8s8") + ("-7bit" if self.reduce_range else "")

    def to_props(self) -> dict[str, str]:
        return {WEIGHT_KEY: self.weight_type, ACT_KEY: "uint8", RANGE_KEY: str(int(self.reduce_range)),
                CHANNEL_KEY: str(int(self.per_channel)), OPS_KEY: ",".join(self.ops)}

    @classmethod
    def from_props(cls, props: dict[str, str]) -> "Int8Settings | None":
        """The recorded settings; None for a graph that recorded none (exports before
        the ``int8_*`` keys, which all used full-range signed weights)."""
        if WEIGHT_KEY not in props:
            return None
        return cls(weight_type=props[WEIGHT_KEY], reduce_range=props.get(RANGE_KEY, "0") == "1",
                   per_channel=props.get(CHANNEL_KEY, "1") == "1",
                   ops=tuple(o for o in props.get(OPS_KEY, "MatMul").split(",") if o))


DEFAULT = Int8Settings()
LEGACY = Int8Settings(weight_type="int8", reduce_range=False, per_channel=True)  # before the keys


@dataclass(frozen=True)
class CpuInt8:
    """What this CPU's integer dot products do: ``machine`` as ``platform.machine()``,
    ``vnni`` whether an x86 CPU accumulates u8s8 products in 32 bits (None: unknown)."""

    machine: str
    vnni: bool | None

    @property
    def x86(self) -> bool:
        return self.machine.lower() in X86

    @property
    def saturates_u8s8(self) -> bool:
        """Full-range signed weights overflow here (x86 without VNNI, or x86 whose flags
        cannot be read: treated as the unsafe case)."""
        return self.x86 and not self.vnni

    def describe(self) -> str:
        if not self.x86:
            return f"{self.machine} CPU"
        return f"x86-64 CPU {'with' if self.vnni else 'without' if self.vnni is False else 'of unknown'} VNNI"


def cpu_flags(cpuinfo: str) -> set[str]:
    """The ``flags`` of the first processor in a ``/proc/cpuinfo`` text."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return set(value.split())
    return set()


@lru_cache(maxsize=1)
def this_cpu() -> CpuInt8:
    """This machine's CPU (Linux reads ``/proc/cpuinfo``; elsewhere VNNI is unknown)."""
    machine = platform.machine() or "unknown"
    vnni: bool | None = None
    info = Path("/proc/cpuinfo")
    if machine.lower() in X86 and info.is_file():
        flags = cpu_flags(info.read_text(errors="replace"))
        vnni = bool(flags & VNNI_FLAGS) if flags else None
    return CpuInt8(machine, vnni)


def int8_fault(settings: Int8Settings | None, cpu: CpuInt8) -> str | None:
    """Why a graph quantized with ``settings`` gives wrong results on ``cpu`` (None: it is fine)."""
    s = LEGACY if settings is None else settings
    if s.weight_type == "int8" and not s.reduce_range and cpu.saturates_u8s8:
        how = "recorded no quantization settings (an older export: full-range int8 weights)" \
            if settings is None else "has full-range signed int8 weights (u8s8)"
        return (f"it {how}, whose integer sums saturate on this {cpu.describe()} and give wrong "
                f"tokens; re-export with `llmcodec export --int8` (writes u8u8 graphs, exact on every CPU)")
    return None


# ---- making the graphs (needs onnx + onnxruntime.quantization) ----------------------------
def quantize_int8(src: str | Path, dst: str | Path, *, exclude: list[str] | tuple[str, ...] = (),
                  settings: Int8Settings = DEFAULT) -> Path:
    """Dynamic int8 quantization of ``src``'s ``settings.ops`` (weights quantized once,
    activations per call) into ``dst``, leaving the nodes named in ``exclude`` in float32;
    records ``variant=int8``, the settings and the number of excluded nodes in
    ``metadata_props``."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    dst = Path(dst)
    weight = QuantType.QUInt8 if settings.weight_type == "uint8" else QuantType.QInt8
    quantize_dynamic(str(src), str(dst), weight_type=weight, per_channel=settings.per_channel,
                     reduce_range=settings.reduce_range, op_types_to_quantize=list(settings.ops),
                     nodes_to_exclude=list(exclude))
    m = onnx.load(str(dst))  # quantize_dynamic keeps metadata_props; record the variant
    props = {p.key: p.value for p in m.metadata_props}
    props.update(variant="int8", int8_excluded_nodes=str(len(exclude)), **settings.to_props())
    onnx.helper.set_model_props(m, props)
    onnx.save(m, str(dst))
    return dst


__all__ = ["CpuInt8", "DEFAULT", "Int8Settings", "LEGACY", "cpu_flags", "int8_fault",
           "quantize_int8", "this_cpu"]
