// Which implementation runs ck_sgemm (the packed GEMM of gemm.c with its AVX-512 or its AVX2 micro-kernel,
// or OpenBLAS), and whether the kernels with AVX-512 paths take them: chosen once per process from the CPU
// (cpu_features(), which applies RESNETFUSION_ISA) and RESNETFUSION_GEMM, changed by ck_set_gemm_backend and
// ck_set_avx512_allowed.
#include "gemm_pack.h"
#include "cpu_features.h"
#include <stdatomic.h>
#include <stdlib.h>

static _Atomic int gemm_backend = -1;   // -1: not decided yet

static _Atomic int avx512_allowed = 1;
static _Atomic int backend_set_by_disallow = 0;  // the AVX-512 GEMM was switched off by ck_set_avx512_allowed(0)

void ck_set_avx512_allowed(int allowed) {
    avx512_allowed = allowed != 0;
    if (!avx512_allowed && gemm_backend == CK_GEMM_AVX512) {
        // What CK_GEMM_AUTO picks on a CPU without AVX-512.
        gemm_backend = CK_GEMM_AVX2;
        backend_set_by_disallow = 1;
    } else if (avx512_allowed && backend_set_by_disallow) {
        gemm_backend = -1;  // choose again, as CK_GEMM_AUTO says
        backend_set_by_disallow = 0;
    }
}

int ck_cpu_has_avx512(void) {
    // cpu_features() applies RESNETFUSION_ISA=avx2 (an AVX2-only CPU, for benchmarks) once per process.
    return avx512_allowed && (cpu_features() & CPU_FEATURE_AVX512F) != 0;
}

int ck_set_gemm_backend(int backend) {
    if (backend == CK_GEMM_AUTO) {
        // RESNETFUSION_GEMM=openblas keeps OpenBLAS for a whole process (benchmarks compare the two).
        const char *forced = getenv("RESNETFUSION_GEMM");
        int want_openblas = forced && strcmp(forced, "openblas") == 0;
#ifdef CK_HAVE_PACKED_GEMM
        // AVX2 + FMA is the build floor (the start-up check refuses older CPUs), so the packed GEMM always runs.
        gemm_backend = want_openblas ? CK_GEMM_OPENBLAS : ck_cpu_has_avx512() ? CK_GEMM_AVX512 : CK_GEMM_AVX2;
#else
        (void)want_openblas;
        gemm_backend = CK_GEMM_OPENBLAS;
#endif
    } else if (backend == CK_GEMM_AVX512) {
        if (!ck_cpu_has_avx512()) return CK_ERR_BAD_SIZE;
        gemm_backend = CK_GEMM_AVX512;
    } else if (backend == CK_GEMM_AVX2) {
#ifndef CK_HAVE_PACKED_GEMM
        return CK_ERR_BAD_SIZE;
#endif
        gemm_backend = CK_GEMM_AVX2;
    } else if (backend == CK_GEMM_OPENBLAS) {
        gemm_backend = CK_GEMM_OPENBLAS;
    } else {
        return CK_ERR_BAD_SIZE;
    }
    backend_set_by_disallow = 0;  // an explicit choice stands
    return CK_OK;
}

int ck_get_gemm_backend(void) {
    if (gemm_backend < 0) ck_set_gemm_backend(CK_GEMM_AUTO);
    return gemm_backend;
}
