// Adam's update (ckernels.h). Twin: CKernelsReference/optimizer_ref.c.
//
// One AVX2 path serves both tiers: the update streams 7 floats of memory per element (p, m, v, g read; p, m, v
// written) for about 10 arithmetic operations, so memory bandwidth bounds it, not vector width. ResNet-50's
// 25.6 M parameters are 0.7 GB of traffic per step.
//
// The target compiles with -ffp-contract=fast, so a product and the sum it feeds may round once (a fused
// multiply-add) where the reference twin rounds twice: the two agree to a few units in the last place, not bit for
// bit. The thread count changes nothing: threads split the elements at multiples of 16, so the same elements go
// through the 8-wide loop and the same last 1–7 through the masked tail whatever the split.
#include "internal.h"
#include <immintrin.h>

// Below this many elements one thread does the whole update; a parallel region costs more than it saves.
#define ADAM_PARALLEL_MIN 65536

typedef struct {
    __m256 weight_decay, one_minus_decay, one_minus_beta1, beta2, one_minus_beta2;
    __m256 step_size, inverse_bias_correction2_sqrt, eps;
    int decay;  // 0 none, 1 Adam's L2 term, 2 AdamW's decoupled decay
} adam_constants;

// The update of 8 elements held in registers (the formula of ckernels.h, in its order of operations).
static inline void adam_lanes(__m256 *p, __m256 *m, __m256 *v, __m256 g, const adam_constants *k) {
    if (k->decay == 1) g = g + k->weight_decay * *p;
    else if (k->decay == 2) *p = *p * k->one_minus_decay;
    *m = *m + (g - *m) * k->one_minus_beta1;
    *v = *v * k->beta2 + k->one_minus_beta2 * g * g;
    const __m256 denominator = _mm256_sqrt_ps(*v) * k->inverse_bias_correction2_sqrt + k->eps;
    *p = *p - k->step_size * *m / denominator;
}

static void adam_range(float *param, float *exp_avg, float *exp_avg_sq, const float *grad, size_t begin,
                       size_t end, const adam_constants *constants) {
    // A local copy: the stores below could alias *constants as far as the compiler knows, which would reload every
    // constant and retest the decay mode on each iteration.
    const adam_constants local = *constants, *k = &local;
    size_t i = begin;
    for (; i + 8 <= end; i += 8) {
        __m256 p = _mm256_loadu_ps(param + i), m = _mm256_loadu_ps(exp_avg + i), v = _mm256_loadu_ps(exp_avg_sq + i);
        adam_lanes(&p, &m, &v, _mm256_loadu_ps(grad + i), k);
        _mm256_storeu_ps(param + i, p);
        _mm256_storeu_ps(exp_avg + i, m);
        _mm256_storeu_ps(exp_avg_sq + i, v);
    }
    if (i == end) return;
    // The last 1–7 elements through masked loads and stores: the same lanes, no second (scalar) formula.
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(end - i)), lane);
    __m256 p = _mm256_maskload_ps(param + i, mask), m = _mm256_maskload_ps(exp_avg + i, mask);
    __m256 v = _mm256_maskload_ps(exp_avg_sq + i, mask);
    adam_lanes(&p, &m, &v, _mm256_maskload_ps(grad + i, mask), k);
    _mm256_maskstore_ps(param + i, mask, p);
    _mm256_maskstore_ps(exp_avg + i, mask, m);
    _mm256_maskstore_ps(exp_avg_sq + i, mask, v);
}

int ck_adam_update_f32(float *param, float *exp_avg, float *exp_avg_sq, const float *grad, size_t count,
                       const ck_adam_step *step) {
    CK_REQUIRE(step, CK_ERR_NULL_POINTER);
    if (count == 0) return CK_OK;
    CK_REQUIRE(param && exp_avg && exp_avg_sq && grad, CK_ERR_NULL_POINTER);
    const float lr = step->learning_rate, wd = step->weight_decay;
    const adam_constants k = {
        .weight_decay = _mm256_set1_ps(wd),
        .one_minus_decay = _mm256_set1_ps(1.0f - lr * wd),
        .one_minus_beta1 = _mm256_set1_ps(1.0f - step->beta1),
        .beta2 = _mm256_set1_ps(step->beta2),
        .one_minus_beta2 = _mm256_set1_ps(1.0f - step->beta2),
        .step_size = _mm256_set1_ps(step->step_size),
        .inverse_bias_correction2_sqrt = _mm256_set1_ps(step->inverse_bias_correction2_sqrt),
        .eps = _mm256_set1_ps(step->eps),
        .decay = wd == 0.0f ? 0 : step->decoupled ? 2 : 1,
    };
    ck_ensure_threads();
    // Blocks of 16 floats (a cache line) per thread, so that only the last thread has a masked tail and no two
    // threads write one line.
    const size_t blocks = (count + 15) / 16;
    #pragma omp parallel num_threads(ck_get_num_threads()) if (count >= ADAM_PARALLEL_MIN)
    {
        // MXCSR is per thread: each thread that works flushes subnormals, and puts its mode back.
        const unsigned saved_mode = _mm_getcsr();
        _mm_setcsr(saved_mode | 0x8040);  // bit 15 flush-to-zero, bit 6 denormals-are-zero
        const size_t team = (size_t)omp_get_num_threads(), t = (size_t)omp_get_thread_num();
        const size_t begin = blocks * t / team * 16, end = blocks * (t + 1) / team * 16;
        adam_range(param, exp_avg, exp_avg_sq, grad, begin, end < count ? end : count, &k);
        _mm_setcsr(saved_mode);
    }
    return CK_OK;
}
