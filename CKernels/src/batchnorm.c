// batchnorm2d: training forward, inference forward, backward, and folding into a convolution.
// PyTorch semantics (torch.nn.BatchNorm2d): the batch variance that normalises is biased (÷ M), the one
// that feeds the running statistics is unbiased (÷ (M − 1)), M = N·HW.
// Optimized kernels: one channel per OpenMP iteration, sums in double (M reaches 10^5 and more). The size check
// is shared with the reference twins (CKernelsReference/batchnorm_ref.c).
#include "internal.h"
#include <math.h>
#include <stdint.h>

int ck_batchnorm2d_check_sizes(int batch, int channels, int spatial) {
    if (batch <= 0 || channels <= 0 || spatial <= 0) return CK_ERR_BAD_SIZE;
    // Plane indices are int; the summing loops step spatial in runs of 1024.
    if ((long long)batch * channels > INT32_MAX || spatial > INT32_MAX - 1024) return CK_ERR_BAD_SIZE;
    if (!ck_mul_size(ck_mul_size((size_t)batch, (size_t)channels), (size_t)spatial)) return CK_ERR_BAD_SIZE;
    return CK_OK;
}

// Mean and biased variance of one channel in one pass. The values are shifted by a pivot (the channel's
// first value) before summing, so E[d²] − E[d]² does not cancel when the mean is large next to the
// spread; short float runs keep the loop cheap, their totals go into doubles.
static void channel_moments(const float *x, int batch, int channels, int spatial, int c,
                            double *mean_out, double *variance_out) {
    const float pivot = x[(size_t)c * spatial];
    double sum = 0.0, sum_squares = 0.0;
    for (int n = 0; n < batch; n++) {
        const float *plane = x + ((size_t)n * channels + c) * spatial;
        for (int i0 = 0; i0 < spatial; i0 += 1024) {
            const int i1 = spatial < i0 + 1024 ? spatial : i0 + 1024;
            float s = 0.0f, ss = 0.0f;
            // simd reduction: these sums may be reordered into vector lanes (strict FP would keep them scalar).
            #pragma omp simd reduction(+ : s, ss)
            for (int i = i0; i < i1; i++) {
                const float d = plane[i] - pivot;
                s += d;
                ss += d * d;
            }
            sum += s;
            sum_squares += ss;
        }
    }
    const double count = (double)batch * spatial, shifted_mean = sum / count;
    const double variance = sum_squares / count - shifted_mean * shifted_mean;
    *mean_out = pivot + shifted_mean;
    *variance_out = variance > 0 ? variance : 0;
}

static void update_running(float *running_mean, float *running_var, int c, double mean, double biased_var,
                           double count, float momentum) {
    const double unbiased = count > 1 ? biased_var * count / (count - 1) : biased_var;
    if (running_mean) running_mean[c] = (float)((1.0 - momentum) * running_mean[c] + momentum * mean);
    if (running_var) running_var[c] = (float)((1.0 - momentum) * running_var[c] + momentum * unbiased);
}

int ck_batchnorm2d_forward_train_f32(float *y, float *save_mean, float *save_invstd,
                                     float *running_mean, float *running_var,
                                     const float *x, const float *gamma, const float *beta,
                                     int batch, int channels, int spatial, float momentum, float eps) {
    return ck_batchnorm2d_forward_train_fused_f32(y, save_mean, save_invstd, running_mean, running_var, x, gamma, beta,
                                                  NULL, 0, batch, channels, spatial, momentum, eps);
}

// One plane of the training forward: out = relu?((in − center)·scale + shift + res), res optional, in one pass (with
// the relu as a second pass over each plane the kernel took 2.2–2.4 ms on 8x64x112x112 against 1.7–1.9 ms in one,
// make bench-kernels). `relu` is a constant at each call, so each loop compiles without the test. NaN passes the
// relu, as in PyTorch's.
__attribute__((always_inline))
static inline void normalize_plane(const int relu, float *out, const float *in, const float *res, float center,
                                   float scale, float shift, int spatial) {
    if (res) {
        #pragma omp simd
        for (int i = 0; i < spatial; i++) {
            const float v = (in[i] - center) * scale + shift + res[i];
            out[i] = relu && v < 0.0f ? 0.0f : v;
        }
    } else {
        #pragma omp simd
        for (int i = 0; i < spatial; i++) {
            const float v = (in[i] - center) * scale + shift;
            out[i] = relu && v < 0.0f ? 0.0f : v;
        }
    }
}

int ck_batchnorm2d_forward_train_fused_f32(float *y, float *save_mean, float *save_invstd,
                                           float *running_mean, float *running_var,
                                           const float *x, const float *gamma, const float *beta,
                                           const float *residual, int relu,
                                           int batch, int channels, int spatial, float momentum, float eps) {
    int status = ck_batchnorm2d_check_sizes(batch, channels, spatial);
    if (status != CK_OK) return status;
    CK_REQUIRE(y && save_mean && save_invstd && x && gamma && beta, CK_ERR_NULL_POINTER);
    // One value per channel has no variance; PyTorch refuses it too.
    CK_REQUIRE((long long)batch * spatial > 1, CK_ERR_BAD_SIZE);
    ck_ensure_threads();
    const double count = (double)batch * spatial;
    #pragma omp parallel for schedule(static) num_threads(ck_get_num_threads())
    for (int c = 0; c < channels; c++) {
        double mean, var;
        channel_moments(x, batch, channels, spatial, c, &mean, &var);
        const float invstd = (float)(1.0 / sqrt(var + eps));
        save_mean[c] = (float)mean;
        save_invstd[c] = invstd;
        update_running(running_mean, running_var, c, mean, var, count, momentum);
        const float scale = gamma[c] * invstd, center = (float)mean, shift = beta[c];
        for (int n = 0; n < batch; n++) {
            const size_t offset = ((size_t)n * channels + c) * spatial;
            const float *res = residual ? residual + offset : NULL;
            if (relu) normalize_plane(1, y + offset, x + offset, res, center, scale, shift, spatial);
            else normalize_plane(0, y + offset, x + offset, res, center, scale, shift, spatial);
        }
    }
    return CK_OK;
}

int ck_batchnorm2d_forward_infer_f32(float *y, const float *x, const float *gamma, const float *beta,
                                     const float *running_mean, const float *running_var,
                                     int batch, int channels, int spatial, float eps) {
    int status = ck_batchnorm2d_check_sizes(batch, channels, spatial);
    if (status != CK_OK) return status;
    CK_REQUIRE(y && x && gamma && beta && running_mean && running_var, CK_ERR_NULL_POINTER);
    ck_ensure_threads();
    const int planes = batch * channels;
    #pragma omp parallel for schedule(static) num_threads(ck_get_num_threads())
    for (int plane = 0; plane < planes; plane++) {
        const int c = plane % channels;
        const float scale = gamma[c] / sqrtf(running_var[c] + eps);
        const float shift = beta[c] - running_mean[c] * scale;
        const float *in = x + (size_t)plane * spatial;
        float *out = y + (size_t)plane * spatial;
        for (int i = 0; i < spatial; i++) out[i] = in[i] * scale + shift;
    }
    return CK_OK;
}

// dx = gamma·invstd·(dy − mean(dy) − x̂·mean(dy·x̂)), x̂ = (x − mean)·invstd.
int ck_batchnorm2d_backward_f32(float *dx, float *dgamma, float *dbeta,
                                const float *dy, const float *x, const float *save_mean,
                                const float *save_invstd, const float *gamma,
                                int batch, int channels, int spatial) {
    return ck_batchnorm2d_backward_fused_f32(dx, dgamma, dbeta, NULL, dy, NULL, x, save_mean, save_invstd, gamma, batch,
                                             channels, spatial);
}

// One channel of the fused backward; `relu` is a constant at each call, so each loop compiles without the test.
// g = relu ? (y > 0 ? dy : 0) : dy is the gradient at bn's output (after the shortcut's add, which passes it on).
__attribute__((always_inline))
static inline void backward_channel(const int relu, float *dx, float *dgamma, float *dbeta, float *dz, const float *dy,
                                    const float *y, const float *x, float mean, float invstd, float gamma, int batch,
                                    int channels, int spatial, int c) {
    const double count = (double)batch * spatial;
    double sum_g = 0.0, sum_g_xhat = 0.0;
    for (int n = 0; n < batch; n++) {
        const size_t offset = ((size_t)n * channels + c) * spatial;
        float s = 0.0f, sx = 0.0f;
        #pragma omp simd reduction(+ : s, sx)
        for (int i = 0; i < spatial; i++) {
            const float g = relu ? (y[offset + i] > 0.0f ? dy[offset + i] : 0.0f) : dy[offset + i];
            if (dz) dz[offset + i] = g;
            s += g;
            sx += g * (x[offset + i] - mean);
        }
        sum_g += s;
        sum_g_xhat += sx;
    }
    sum_g_xhat *= invstd;
    if (dgamma) dgamma[c] += (float)sum_g_xhat;
    if (dbeta) dbeta[c] += (float)sum_g;
    if (!dx) return;
    const float mean_g = (float)(sum_g / count), mean_g_xhat = (float)(sum_g_xhat / count);
    const float scale = gamma * invstd;
    for (int n = 0; n < batch; n++) {
        const size_t offset = ((size_t)n * channels + c) * spatial;
        #pragma omp simd
        for (int i = 0; i < spatial; i++) {
            const float g = relu ? (y[offset + i] > 0.0f ? dy[offset + i] : 0.0f) : dy[offset + i];
            const float xhat = (x[offset + i] - mean) * invstd;
            dx[offset + i] = scale * (g - mean_g - xhat * mean_g_xhat);
        }
    }
}

int ck_batchnorm2d_backward_fused_f32(float *dx, float *dgamma, float *dbeta, float *dz,
                                      const float *dy, const float *y, const float *x, const float *save_mean,
                                      const float *save_invstd, const float *gamma,
                                      int batch, int channels, int spatial) {
    int status = ck_batchnorm2d_check_sizes(batch, channels, spatial);
    if (status != CK_OK) return status;
    CK_REQUIRE(dy && x && save_mean && save_invstd && gamma, CK_ERR_NULL_POINTER);
    ck_ensure_threads();
    #pragma omp parallel for schedule(static) num_threads(ck_get_num_threads())
    for (int c = 0; c < channels; c++) {
        if (y) backward_channel(1, dx, dgamma, dbeta, dz, dy, y, x, save_mean[c], save_invstd[c], gamma[c], batch,
                                channels, spatial, c);
        else backward_channel(0, dx, dgamma, dbeta, dz, dy, y, x, save_mean[c], save_invstd[c], gamma[c], batch,
                              channels, spatial, c);
    }
    return CK_OK;
}

int ck_batchnorm2d_backward_infer_f32(float *dx, float *dgamma, float *dbeta,
                                      const float *dy, const float *x, const float *gamma,
                                      const float *running_mean, const float *running_var,
                                      int batch, int channels, int spatial, float eps) {
    int status = ck_batchnorm2d_check_sizes(batch, channels, spatial);
    if (status != CK_OK) return status;
    CK_REQUIRE(dy && x && gamma && running_mean && running_var, CK_ERR_NULL_POINTER);
    ck_ensure_threads();
    #pragma omp parallel for schedule(static) num_threads(ck_get_num_threads())
    for (int c = 0; c < channels; c++) {
        const float invstd = 1.0f / sqrtf(running_var[c] + eps), mean = running_mean[c];
        double sum_dy = 0.0, sum_dy_xhat = 0.0;
        for (int n = 0; n < batch; n++) {
            const size_t offset = ((size_t)n * channels + c) * spatial;
            float s = 0.0f, sx = 0.0f;
            #pragma omp simd reduction(+ : s, sx)
            for (int i = 0; i < spatial; i++) {
                s += dy[offset + i];
                sx += dy[offset + i] * (x[offset + i] - mean) * invstd;
                if (dx) dx[offset + i] = dy[offset + i] * gamma[c] * invstd;
            }
            sum_dy += s;
            sum_dy_xhat += sx;
        }
        if (dgamma) dgamma[c] += (float)sum_dy_xhat;
        if (dbeta) dbeta[c] += (float)sum_dy;
    }
    return CK_OK;
}

int ck_batchnorm2d_fold_into_conv_f32(float *folded_weight, float *folded_bias,
                                      const float *weight, const float *bias,
                                      const float *gamma, const float *beta,
                                      const float *running_mean, const float *running_var,
                                      int out_channels, int per_channel, float eps) {
    CK_REQUIRE(out_channels > 0 && per_channel > 0, CK_ERR_BAD_SIZE);
    CK_REQUIRE(folded_weight && folded_bias && weight && gamma && beta && running_mean && running_var,
               CK_ERR_NULL_POINTER);
    for (int k = 0; k < out_channels; k++) {
        const float scale = (float)(gamma[k] / sqrt((double)running_var[k] + eps));
        const float b = bias ? bias[k] : 0.0f;
        for (int i = 0; i < per_channel; i++)
            folded_weight[(size_t)k * per_channel + i] = weight[(size_t)k * per_channel + i] * scale;
        folded_bias[k] = (b - running_mean[k]) * scale + beta[k];
    }
    return CK_OK;
}
