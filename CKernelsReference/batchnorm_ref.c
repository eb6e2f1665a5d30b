// Reference batchnorm2d: training forward (plain and fused with residual + relu), inference forward, both
// backwards and the fold into a convolution. Two-pass statistics in double, PyTorch's semantics: the biased
// variance normalises, the unbiased one (÷ (M − 1), M = N·HW) feeds the running statistics.
#include "reference.h"
#include <math.h>

// running = (1 − momentum)·running + momentum·batch, with the unbiased variance.
static void ref_update_running(float *running_mean, float *running_var, int c, double mean, double biased_var,
                               double count, float momentum) {
    const double unbiased = count > 1 ? biased_var * count / (count - 1) : biased_var;
    if (running_mean) running_mean[c] = (float)((1.0 - momentum) * running_mean[c] + momentum * mean);
    if (running_var) running_var[c] = (float)((1.0 - momentum) * running_var[c] + momentum * unbiased);
}

int ck_batchnorm2d_forward_train_f32_ref(float *y, float *save_mean, float *save_invstd,
                                         float *running_mean, float *running_var,
                                         const float *x, const float *gamma, const float *beta,
                                         int batch, int channels, int spatial, float momentum, float eps) {
    int status = ck_batchnorm2d_check_sizes(batch, channels, spatial);
    if (status != CK_OK) return status;
    CK_REQUIRE(y && save_mean && save_invstd && x && gamma && beta, CK_ERR_NULL_POINTER);
    CK_REQUIRE((long long)batch * spatial > 1, CK_ERR_BAD_SIZE);
    const double count = (double)batch * spatial;
    for (int c = 0; c < channels; c++) {
        double mean = 0.0;
        for (int n = 0; n < batch; n++)
            for (int i = 0; i < spatial; i++) mean += x[((size_t)n * channels + c) * spatial + i];
        mean /= count;
        double var = 0.0;
        for (int n = 0; n < batch; n++)
            for (int i = 0; i < spatial; i++) {
                const double centered = x[((size_t)n * channels + c) * spatial + i] - mean;
                var += centered * centered;
            }
        var /= count;
        const double invstd = 1.0 / sqrt(var + eps);
        save_mean[c] = (float)mean;
        save_invstd[c] = (float)invstd;
        ref_update_running(running_mean, running_var, c, mean, var, count, momentum);
        for (int n = 0; n < batch; n++)
            for (int i = 0; i < spatial; i++) {
                const size_t at = ((size_t)n * channels + c) * spatial + i;
                y[at] = (float)((x[at] - mean) * invstd * gamma[c] + beta[c]);
            }
    }
    return CK_OK;
}

int ck_batchnorm2d_forward_train_fused_f32_ref(float *y, float *save_mean, float *save_invstd,
                                               float *running_mean, float *running_var,
                                               const float *x, const float *gamma, const float *beta,
                                               const float *residual, int relu,
                                               int batch, int channels, int spatial, float momentum, float eps) {
    int status = ck_batchnorm2d_forward_train_f32_ref(y, save_mean, save_invstd, running_mean, running_var, x, gamma,
                                                      beta, batch, channels, spatial, momentum, eps);
    if (status != CK_OK) return status;
    const size_t count = (size_t)batch * channels * spatial;
    for (size_t i = 0; i < count; i++) {
        const float v = y[i] + (residual ? residual[i] : 0.0f);
        y[i] = relu && v < 0.0f ? 0.0f : v;
    }
    return CK_OK;
}

int ck_batchnorm2d_forward_infer_f32_ref(float *y, const float *x, const float *gamma, const float *beta,
                                         const float *running_mean, const float *running_var,
                                         int batch, int channels, int spatial, float eps) {
    int status = ck_batchnorm2d_check_sizes(batch, channels, spatial);
    if (status != CK_OK) return status;
    CK_REQUIRE(y && x && gamma && beta && running_mean && running_var, CK_ERR_NULL_POINTER);
    for (int n = 0; n < batch; n++)
        for (int c = 0; c < channels; c++)
            for (int i = 0; i < spatial; i++) {
                const size_t at = ((size_t)n * channels + c) * spatial + i;
                y[at] = (float)((x[at] - (double)running_mean[c]) / sqrt((double)running_var[c] + eps) * gamma[c] +
                                beta[c]);
            }
    return CK_OK;
}

int ck_batchnorm2d_backward_f32_ref(float *dx, float *dgamma, float *dbeta,
                                    const float *dy, const float *x, const float *save_mean,
                                    const float *save_invstd, const float *gamma,
                                    int batch, int channels, int spatial) {
    return ck_batchnorm2d_backward_fused_f32_ref(dx, dgamma, dbeta, NULL, dy, NULL, x, save_mean, save_invstd, gamma,
                                                 batch, channels, spatial);
}

int ck_batchnorm2d_backward_fused_f32_ref(float *dx, float *dgamma, float *dbeta, float *dz,
                                          const float *dy, const float *y, const float *x, const float *save_mean,
                                          const float *save_invstd, const float *gamma,
                                          int batch, int channels, int spatial) {
    int status = ck_batchnorm2d_check_sizes(batch, channels, spatial);
    if (status != CK_OK) return status;
    CK_REQUIRE(dy && x && save_mean && save_invstd && gamma, CK_ERR_NULL_POINTER);
    const double count = (double)batch * spatial;
    const size_t total = (size_t)batch * channels * spatial;
    // relu's backward first (the gradient passes where the forward's output is positive), as its own step.
    if (dz)
        for (size_t at = 0; at < total; at++) dz[at] = y && !(y[at] > 0.0f) ? 0.0f : dy[at];
    for (int c = 0; c < channels; c++) {
        double sum_dy = 0.0, sum_dy_xhat = 0.0;
        for (int n = 0; n < batch; n++)
            for (int i = 0; i < spatial; i++) {
                const size_t at = ((size_t)n * channels + c) * spatial + i;
                const float g = y && !(y[at] > 0.0f) ? 0.0f : dy[at];
                sum_dy += g;
                sum_dy_xhat += (double)g * (x[at] - save_mean[c]) * save_invstd[c];
            }
        if (dgamma) dgamma[c] += (float)sum_dy_xhat;
        if (dbeta) dbeta[c] += (float)sum_dy;
        if (!dx) continue;
        for (int n = 0; n < batch; n++)
            for (int i = 0; i < spatial; i++) {
                const size_t at = ((size_t)n * channels + c) * spatial + i;
                const float g = y && !(y[at] > 0.0f) ? 0.0f : dy[at];
                const double xhat = (x[at] - save_mean[c]) * (double)save_invstd[c];
                dx[at] = (float)(gamma[c] * save_invstd[c] * (g - sum_dy / count - xhat * sum_dy_xhat / count));
            }
    }
    return CK_OK;
}

int ck_batchnorm2d_backward_infer_f32_ref(float *dx, float *dgamma, float *dbeta,
                                          const float *dy, const float *x, const float *gamma,
                                          const float *running_mean, const float *running_var,
                                          int batch, int channels, int spatial, float eps) {
    int status = ck_batchnorm2d_check_sizes(batch, channels, spatial);
    if (status != CK_OK) return status;
    CK_REQUIRE(dy && x && gamma && running_mean && running_var, CK_ERR_NULL_POINTER);
    for (int c = 0; c < channels; c++) {
        const double invstd = 1.0 / sqrt((double)running_var[c] + eps);
        double sum_dy = 0.0, sum_dy_xhat = 0.0;
        for (int n = 0; n < batch; n++)
            for (int i = 0; i < spatial; i++) {
                const size_t at = ((size_t)n * channels + c) * spatial + i;
                sum_dy += dy[at];
                sum_dy_xhat += (double)dy[at] * (x[at] - running_mean[c]) * invstd;
                if (dx) dx[at] = (float)(dy[at] * gamma[c] * invstd);
            }
        if (dgamma) dgamma[c] += (float)sum_dy_xhat;
        if (dbeta) dbeta[c] += (float)sum_dy;
    }
    return CK_OK;
}

int ck_batchnorm2d_fold_into_conv_f32_ref(float *folded_weight, float *folded_bias,
                                          const float *weight, const float *bias,
                                          const float *gamma, const float *beta,
                                          const float *running_mean, const float *running_var,
                                          int out_channels, int per_channel, float eps) {
    CK_REQUIRE(out_channels > 0 && per_channel > 0, CK_ERR_BAD_SIZE);
    CK_REQUIRE(folded_weight && folded_bias && weight && gamma && beta && running_mean && running_var,
               CK_ERR_NULL_POINTER);
    for (int k = 0; k < out_channels; k++) {
        const double scale = gamma[k] / sqrt((double)running_var[k] + eps);
        const double b = bias ? bias[k] : 0.0;
        for (int i = 0; i < per_channel; i++)
            folded_weight[(size_t)k * per_channel + i] = (float)(weight[(size_t)k * per_channel + i] * scale);
        folded_bias[k] = (float)((b - running_mean[k]) * scale + beta[k]);
    }
    return CK_OK;
}
