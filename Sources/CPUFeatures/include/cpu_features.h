// cpu_features.h — what this CPU (and its operating system) can run, decided once per process.
//
// One detector for every C target: CKernels picks its AVX-512 paths with it, CImaging its AVX-512BW
// resampler, and the executables call cpu_features_require_x86_64_v3 first thing, so that a CPU without
// AVX2 and FMA gets one clear line on stderr instead of SIGILL. This target is compiled for baseline
// x86-64 (no -march) for that reason: nothing in it may use an instruction the check is about.
//
// Two environment variables, read once, on the first call:
//   RESNETFUSION_ISA=avx2               treat the CPU as AVX2-only: AVX-512F/BW are reported missing
//                                       (benchmarks and tests: what such a CPU gets);
//   RESNETFUSION_SIMULATE_CPU=baseline  report no AVX2, FMA or AVX-512 at all (tests of the start-up check).
#ifndef CPU_FEATURES_H
#define CPU_FEATURES_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

enum {
    CPU_FEATURE_AVX2 = 1u << 0,
    CPU_FEATURE_FMA = 1u << 1,
    CPU_FEATURE_AVX512F = 1u << 2,
    CPU_FEATURE_AVX512BW = 1u << 3,
    // What the Swift modules and CKernels are compiled for (x86-64-v3's vector part).
    CPU_FEATURES_REQUIRED = CPU_FEATURE_AVX2 | CPU_FEATURE_FMA,
};

/// The features of this CPU that the OS also saves and restores (cpuid + xgetbv), after the environment
/// variables above. Detected on the first call, then cached; safe to call from any thread.
unsigned cpu_features(void);

/// The pure decision under cpu_features, for tests: the features the raw cpuid/xgetbv words grant.
/// leaf1_ecx is cpuid(1).ecx; leaf7_ebx is cpuid(7, 0).ebx (0 when leaf 7 does not exist); xcr0 is
/// xgetbv(0) (0 when leaf1_ecx lacks OSXSAVE).
unsigned cpu_features_from_cpuid(unsigned leaf1_ecx, unsigned leaf7_ebx, unsigned long long xcr0);

/// The environment's part, for tests: `detected` narrowed by the values of RESNETFUSION_ISA and
/// RESNETFUSION_SIMULATE_CPU (either may be NULL: unset).
unsigned cpu_features_apply_environment(unsigned detected, const char *isa, const char *simulate);

/// Writes the names of the CPU_FEATURES_REQUIRED that `features` lacks, comma separated ("AVX2, FMA"),
/// into `buffer` (always NUL-terminated when size > 0). Returns how many are missing.
int cpu_features_missing_required(unsigned features, char *buffer, size_t size);

/// The start-up check of an executable: when cpu_features() lacks any of CPU_FEATURES_REQUIRED, prints
/// "<program>: this build needs a CPU with AVX2 and FMA (x86-64-v3); this CPU lacks: <names>" to stderr
/// and exits with status 1. Call it before anything that may run AVX2 code.
void cpu_features_require_x86_64_v3(const char *program);

#ifdef __cplusplus
}
#endif
#endif
