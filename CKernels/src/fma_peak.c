// fma_peak.c — this machine's FMA peak, measured: the rate every other benchmark number is a fraction of.
//
// Each OpenMP thread runs a loop of independent vector FMAs on registers only (no loads or stores inside),
// so that nothing but the FMA units limits it. One FMA must not wait for another: an FMA's result is
// ready a few cycles (its latency) after it starts, and two or more start every cycle, so the loop keeps
// more independent accumulator chains than latency × FMAs per cycle (4 × 2 = 8 on current x86 cores).
// The AVX-512 loop keeps 16 chains in zmm registers (of 32), the AVX2 loop 12 in ymm (of 16), both
// leaving room for the two constant operands so that nothing spills to the stack.
#include "internal.h"
#include <immintrin.h>
#include <time.h>

enum { AVX512_CHAINS = 16, AVX2_CHAINS = 12 };

// Keeps the accumulators' sum alive: a store to a volatile object cannot be removed, so neither can the
// FMAs that feed it.
static volatile float fma_peak_sink;

static double monotonic_seconds(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec + (double)now.tv_nsec * 1e-9;
}

// The chains start at different values, so that the compiler cannot merge identical chains into one;
// acc·multiplier + addend with multiplier < 1 settles at a finite value, so no chain overflows or goes
// denormal however long it runs. Returns the sum of all lanes.
__attribute__((target("avx512f"), noinline))
static float fma_loop_avx512(long iterations, float multiplier, float addend) {
    const __m512 m = _mm512_set1_ps(multiplier), a = _mm512_set1_ps(addend);
    __m512 acc[AVX512_CHAINS];
    #pragma clang loop unroll(full)
    for (int j = 0; j < AVX512_CHAINS; j++) acc[j] = _mm512_set1_ps((float)j * addend);
    for (long i = 0; i < iterations; i++) {
        #pragma clang loop unroll(full)
        for (int j = 0; j < AVX512_CHAINS; j++) acc[j] = _mm512_fmadd_ps(acc[j], m, a);
    }
    __m512 sum = acc[0];
    #pragma clang loop unroll(full)
    for (int j = 1; j < AVX512_CHAINS; j++) sum = _mm512_add_ps(sum, acc[j]);
    return _mm512_reduce_add_ps(sum);
}

__attribute__((noinline))
static float fma_loop_avx2(long iterations, float multiplier, float addend) {
    const __m256 m = _mm256_set1_ps(multiplier), a = _mm256_set1_ps(addend);
    __m256 acc[AVX2_CHAINS];
    #pragma clang loop unroll(full)
    for (int j = 0; j < AVX2_CHAINS; j++) acc[j] = _mm256_set1_ps((float)j * addend);
    for (long i = 0; i < iterations; i++) {
        #pragma clang loop unroll(full)
        for (int j = 0; j < AVX2_CHAINS; j++) acc[j] = _mm256_fmadd_ps(acc[j], m, a);
    }
    __m256 sum = acc[0];
    #pragma clang loop unroll(full)
    for (int j = 1; j < AVX2_CHAINS; j++) sum = _mm256_add_ps(sum, acc[j]);
    float lanes[8];
    _mm256_storeu_ps(lanes, sum);
    return lanes[0] + lanes[1] + lanes[2] + lanes[3] + lanes[4] + lanes[5] + lanes[6] + lanes[7];
}

int ck_measure_fma_peak(ck_fma_peak *result, long iterations_per_thread) {
    CK_REQUIRE(result, CK_ERR_NULL_POINTER);
    CK_REQUIRE(iterations_per_thread > 0, CK_ERR_BAD_SIZE);
    const int use_avx512 = ck_cpu_has_avx512();
    const int chains = use_avx512 ? AVX512_CHAINS : AVX2_CHAINS, lanes = use_avx512 ? 16 : 8;
    // Run-time operands: constants would let the compiler evaluate the chains while compiling.
    const float multiplier = 0.999f + 1e-4f * (float)(iterations_per_thread & 1), addend = 1e-3f;
    double start = 0, end = 0;
    float checksum = 0;
    int team = 1;
    #pragma omp parallel num_threads(ck_get_num_threads())
    {
        // The clock runs from when the whole team is awake to when its last thread finishes.
        #pragma omp barrier
        #pragma omp master
        start = monotonic_seconds();
        const float sum = use_avx512 ? fma_loop_avx512(iterations_per_thread, multiplier, addend)
                                     : fma_loop_avx2(iterations_per_thread, multiplier, addend);
        #pragma omp barrier
        #pragma omp master
        {
            end = monotonic_seconds();
            team = omp_get_num_threads();
        }
        #pragma omp atomic
        checksum += sum;
    }
    fma_peak_sink = checksum;
    const double seconds = end - start;
    const double flops = 2.0 * lanes * chains * (double)iterations_per_thread * team;
    result->flops_per_second = seconds > 0 ? flops / seconds : 0;
    result->seconds = seconds;
    result->threads = team;
    result->vector_bits = 32 * lanes;
    return CK_OK;
}
