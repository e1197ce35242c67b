"""The CPU capability module: /proc/cpuinfo parsing, capability properties, simulation."""

from edgesr import cpu

XEON = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu sse2 avx2 avx512f avx512_vnni avx512_bf16 amx_bf16 amx_int8

processor\t: 1
model name\t: ignored
"""
EPYC_AVX2 = "model name\t: AMD EPYC 7B12\nflags\t\t: fpu sse2 avx2 fma\n"
ARM = "processor\t: 0\nFeatures\t: fp asimd asimdhp i8mm bf16\nCPU part\t: 0xd40\n"


def test_parse_x86_and_capabilities():
    model, flags = cpu.parse_cpuinfo(XEON)
    info = cpu.CpuInfo(model=model, flags=flags, cores=2)
    assert model == "Intel(R) Xeon(R) Platinum 8480+"
    assert info.bf16 and info.vnni and not info.fp16
    assert info.reported_flags() == ["avx2", "avx512f", "avx512_vnni", "avx512_bf16",
                                     "amx_bf16", "amx_int8"]


def test_avx2_only_has_no_reduced_precision():
    info = cpu.CpuInfo(model="epyc", flags=cpu.parse_cpuinfo(EPYC_AVX2)[1])
    assert not (info.bf16 or info.fp16 or info.vnni)
    assert info.key() == "epyc|avx2"


def test_arm_features():
    _, flags = cpu.parse_cpuinfo(ARM)
    info = cpu.CpuInfo(model="arm", flags=flags)
    assert info.bf16 and info.fp16 and info.vnni


def test_detect_reads_this_machine_and_simulate_overrides_it():
    real = cpu.detect()
    assert real.model and real.cores >= 1
    fake = cpu.CpuInfo(model="fake", flags=frozenset({"avx2"}))
    with cpu.simulate(fake):
        assert cpu.detect() is fake
    assert cpu.detect() == real
