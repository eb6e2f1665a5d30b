// Reference Adam update: the formula of ck_adam_update_f32, one element at a time, each operation rounded as
// written (this target compiles with -ffp-contract=off), subnormals flushed as the optimized kernel flushes them.
#include "reference.h"
#include <math.h>
#include <xmmintrin.h>

int ck_adam_update_f32_ref(float *param, float *exp_avg, float *exp_avg_sq, const float *grad, size_t count,
                           const ck_adam_step *step) {
    CK_REQUIRE(step, CK_ERR_NULL_POINTER);
    if (count == 0) return CK_OK;
    CK_REQUIRE(param && exp_avg && exp_avg_sq && grad, CK_ERR_NULL_POINTER);
    const unsigned saved_mode = _mm_getcsr();
    _mm_setcsr(saved_mode | 0x8040);  // bit 15 flush-to-zero, bit 6 denormals-are-zero
    const float lr = step->learning_rate, wd = step->weight_decay;
    const float one_minus_beta1 = 1.0f - step->beta1, one_minus_beta2 = 1.0f - step->beta2;
    for (size_t i = 0; i < count; i++) {
        float g = grad[i];
        if (wd != 0.0f) {
            if (step->decoupled) param[i] *= 1.0f - lr * wd;
            else g += wd * param[i];
        }
        exp_avg[i] += (g - exp_avg[i]) * one_minus_beta1;
        exp_avg_sq[i] = exp_avg_sq[i] * step->beta2 + one_minus_beta2 * g * g;
        const float denominator = sqrtf(exp_avg_sq[i]) * step->inverse_bias_correction2_sqrt + step->eps;
        param[i] -= step->step_size * exp_avg[i] / denominator;
    }
    _mm_setcsr(saved_mode);
    return CK_OK;
}
