// CPU feature detection (cpuid + xgetbv) and the start-up check; see cpu_features.h.
// Compiled for baseline x86-64: it must run, and report, on the CPUs it rejects.
#include "cpu_features.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && (defined(__clang__) || defined(__GNUC__))
#include <cpuid.h>
#define CPU_FEATURES_X86 1
#endif

// cpuid(1).ecx
#define LEAF1_FMA (1u << 12)
#define LEAF1_OSXSAVE (1u << 27)
#define LEAF1_AVX (1u << 28)
// cpuid(7, 0).ebx
#define LEAF7_AVX2 (1u << 5)
#define LEAF7_AVX512F (1u << 16)
#define LEAF7_AVX512BW (1u << 30)
// xgetbv(0): register state the OS saves on a context switch.
#define XCR0_SSE_AVX 0x6ull        // XMM and YMM halves
#define XCR0_AVX512 0xe0ull        // opmask, ZMM_Hi256, Hi16_ZMM

unsigned cpu_features_from_cpuid(unsigned leaf1_ecx, unsigned leaf7_ebx, unsigned long long xcr0) {
    if (!(leaf1_ecx & LEAF1_OSXSAVE)) return 0;  // the OS saves no vector state beyond SSE
    unsigned features = 0;
    const int ymm = (xcr0 & XCR0_SSE_AVX) == XCR0_SSE_AVX && (leaf1_ecx & LEAF1_AVX);
    if (ymm && (leaf7_ebx & LEAF7_AVX2)) features |= CPU_FEATURE_AVX2;
    if (ymm && (leaf1_ecx & LEAF1_FMA)) features |= CPU_FEATURE_FMA;
    const int zmm = ymm && (xcr0 & XCR0_AVX512) == XCR0_AVX512;
    if (zmm && (leaf7_ebx & LEAF7_AVX512F)) {
        features |= CPU_FEATURE_AVX512F;
        if (leaf7_ebx & LEAF7_AVX512BW) features |= CPU_FEATURE_AVX512BW;
    }
    return features;
}

unsigned cpu_features_apply_environment(unsigned detected, const char *isa, const char *simulate) {
    if (simulate && strcmp(simulate, "baseline") == 0) return 0;
    if (isa && strcmp(isa, "avx2") == 0) detected &= ~(unsigned)(CPU_FEATURE_AVX512F | CPU_FEATURE_AVX512BW);
    return detected;
}

static unsigned detect(void) {
#ifdef CPU_FEATURES_X86
    unsigned eax, ebx, ecx, edx;
    if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return 0;
    const unsigned leaf1_ecx = ecx;
    unsigned leaf7_ebx = 0;
    if (__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) leaf7_ebx = ebx;
    unsigned long long xcr0 = 0;
    if (leaf1_ecx & LEAF1_OSXSAVE) {
        // xgetbv by its encoding: the _xgetbv intrinsic would need -mxsave on this baseline target.
        unsigned low, high;
        __asm__ volatile(".byte 0x0f, 0x01, 0xd0" : "=a"(low), "=d"(high) : "c"(0));
        xcr0 = ((unsigned long long)high << 32) | low;
    }
    return cpu_features_from_cpuid(leaf1_ecx, leaf7_ebx, xcr0);
#else
    return 0;
#endif
}

unsigned cpu_features(void) {
    // -1: not detected yet. Threads that race here compute and store the same value.
    static _Atomic long cached = -1;
    long features = cached;
    if (features < 0) {
        features = cpu_features_apply_environment(detect(), getenv("RESNETFUSION_ISA"),
                                                  getenv("RESNETFUSION_SIMULATE_CPU"));
        cached = features;
    }
    return (unsigned)features;
}

int cpu_features_missing_required(unsigned features, char *buffer, size_t size) {
    static const struct { unsigned bit; const char *name; } required[] = {
        {CPU_FEATURE_AVX2, "AVX2"},
        {CPU_FEATURE_FMA, "FMA"},
    };
    int missing = 0;
    size_t used = 0;
    if (buffer && size > 0) buffer[0] = '\0';
    for (size_t i = 0; i < sizeof required / sizeof required[0]; i++) {
        if (features & required[i].bit) continue;
        if (buffer && used < size) {
            int written = snprintf(buffer + used, size - used, "%s%s", missing ? ", " : "", required[i].name);
            if (written > 0) used += (size_t)written;
        }
        missing++;
    }
    return missing;
}

void cpu_features_require_x86_64_v3(const char *program) {
    char names[64];
    if (cpu_features_missing_required(cpu_features(), names, sizeof names) == 0) return;
    fprintf(stderr, "%s: this build needs a CPU with AVX2 and FMA (x86-64-v3); this CPU lacks: %s\n",
            program ? program : "resnetfusion", names);
    exit(1);
}
