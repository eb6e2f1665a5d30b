// Threads, status strings and the sgemm entry point.
#include "internal.h"
#include <cblas.h>
#include <pthread.h>

// libomp extension: milliseconds an idle worker spins before it sleeps (default 200).
void kmp_set_blocktime(int milliseconds);

#include <stdatomic.h>

// Read by every kernel, possibly on other threads than the one that set it.
static _Atomic int ck_threads = 0;
static pthread_once_t ck_threads_once = PTHREAD_ONCE_INIT;

const char *ck_status_string(int status) {
    switch (status) {
    case CK_OK: return "ok";
    case CK_ERR_NULL_POINTER: return "null pointer argument";
    case CK_ERR_BAD_SIZE: return "non-positive or inconsistent size";
    case CK_ERR_WORKSPACE: return "workspace missing or too small";
    default: return "unknown status";
    }
}

static void ck_default_threads(void) {
    if (ck_threads == 0) ck_set_num_threads(0);
}

void ck_ensure_threads(void) { pthread_once(&ck_threads_once, ck_default_threads); }

void ck_set_num_threads(int n) {
    static _Atomic int cores = 0;
    if (cores == 0) cores = omp_get_max_threads();
    ck_threads = n > 0 ? n : cores;
    // Every parallel region names its team size itself (num_threads), so this affects all threads.
    // A short spin keeps back-to-back kernels cheap without starving the loader threads.
    kmp_set_blocktime(1);
    openblas_set_num_threads(1);
}

int ck_get_num_threads(void) {
    ck_ensure_threads();
    return ck_threads;
}

void ck_set_blas_threads(int n) { openblas_set_num_threads(n > 0 ? n : 1); }

void ck_parallel_for(int count, void (*fn)(void *arg, int index), void *arg) {
    ck_ensure_threads();
    #pragma omp parallel for schedule(static) num_threads(ck_get_num_threads())
    for (int i = 0; i < count; i++) fn(arg, i);
}
