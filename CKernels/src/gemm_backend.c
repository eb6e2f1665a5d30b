// Which implementation runs ck_sgemm (OpenBLAS or the AVX-512 packed GEMM of gemm.c), and whether the
// kernels with AVX-512 paths take them: chosen once per process from the CPU (cpu_features(), which applies
// RESNETFUSION_ISA) and RESNETFUSION_GEMM, changed by ck_set_gemm_backend and ck_set_avx512_allowed.
#include "internal.h"
#include "cpu_features.h"
#include <stdatomic.h>
#include <stdlib.h>

static _Atomic int gemm_backend = -1;   // -1: not decided yet

static _Atomic int avx512_allowed = 1;
static _Atomic int backend_set_by_disallow = 0;  // the AVX-512 GEMM was switched off by ck_set_avx512_allowed(0)

void ck_set_avx512_allowed(int allowed) {
    avx512_allowed = allowed != 0;
    if (!avx512_allowed && gemm_backend == CK_GEMM_AVX512) {
        gemm_backend = CK_GEMM_OPENBLAS;
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
        gemm_backend = (!want_openblas && ck_cpu_has_avx512()) ? CK_GEMM_AVX512 : CK_GEMM_OPENBLAS;
    } else if (backend == CK_GEMM_AVX512) {
        if (!ck_cpu_has_avx512()) return CK_ERR_BAD_SIZE;
        gemm_backend = CK_GEMM_AVX512;
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
