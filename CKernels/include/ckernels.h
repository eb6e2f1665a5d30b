// ckernels.h — the optimized C kernels of ResNetFusion.
//
// float32, NCHW, row-major, contiguous. Every kernel is a function over caller-owned buffers. Memory:
//   - a kernel that needs scratch memory has a `..._workspace_size` companion that reports how many bytes
//     it wants; the caller passes that buffer in, and the kernel keeps nothing of it after returning;
//   - the one exception is our packed matrix product (gemm.c, AVX-512 or AVX2) under the convolutions and linear layers: each
//     thread that runs it allocates one packing buffer (about 670 KB) on its first call, keeps it for its
//     next calls and frees it when the thread exits. If that allocation fails the product runs through
//     OpenBLAS instead, whose working memory OpenBLAS itself manages. No other kernel allocates.
//
// Argument order (llm.c): outputs, then buffers saved for backward, then const inputs, then sizes,
// then the workspace.
//
// Gradient convention, one per kind:
//   - input gradients (dx) are OVERWRITTEN;
//   - parameter gradients (dweight, dbias, dgamma, dbeta) are ACCUMULATED (+=), so that a caller can sum
//     over micro-batches; zero them once before the first backward.
//
// Reference twins: every public kernel below that computes an op has a twin named `..._ref` in the
// CKernelsReference target (ckernels_reference.h): straightforward loops, no BLAS, no OpenMP, no workspace,
// compiled without FP contraction. A twin takes the same arguments (workspace ignored) and enforces the
// same argument checks (the ck_..._check functions below), so the tests can check one against the other and
// the Swift side can swap whole tables (ck_kernel_table, at the end) at run time. The two forward strategies
// ck_conv2d_forward_gemm_f32 and ck_conv2d_forward_winograd_f32 are ck_conv2d_forward_f32 with its choice
// forced; their twin is ck_conv2d_forward_f32_ref. The backward kernels' Winograd forms twin with the plain ones'
// twins.
//
// Threads: OpenMP is the only thread pool. OpenBLAS is kept single-threaded (ck_set_num_threads) and
// called from inside OpenMP regions on per-thread blocks, so the two never oversubscribe the cores.
//
// Instruction sets: compiled for x86-64-v3 (AVX2 + FMA); AVX-512 paths are chosen at run time through the
// CPUFeatures target (cpu_features.h), which also applies RESNETFUSION_ISA.
//
// Errors: every kernel returns CK_OK or a negative ck_status; bad arguments never crash.
#ifndef CKERNELS_H
#define CKERNELS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    CK_OK = 0,
    CK_ERR_NULL_POINTER = -1,   // a required pointer was NULL
    CK_ERR_BAD_SIZE = -2,       // a size was non-positive, or the output would be empty
    CK_ERR_WORKSPACE = -3,      // the workspace is NULL or smaller than ..._workspace_size reported
} ck_status;

/// A short English description of a status code ("ok", "null pointer", ...). Never NULL.
const char *ck_status_string(int status);

// ---------------------------------------------------------------------------------------------------
// Threads

/// Sets the number of OpenMP threads every optimized kernel uses, whichever thread calls it (n <= 0: all
/// cores); not to be changed while a kernel runs. A kernel called from inside another OpenMP parallel
/// region runs single-threaded in each caller: give each caller its own workspace. It also pins OpenBLAS to
/// one thread (the kernels split work across OpenMP threads and call a single-threaded sgemm on each
/// block) and shortens how long idle OpenMP workers spin, so that other threads of the process (the data
/// loader) get the cores. Kernels call it with n = 0 on first use if nobody did. Workspace sizes depend
/// on the thread count: query them after setting it.
void ck_set_num_threads(int n);
/// The number of threads optimized kernels use.
int ck_get_num_threads(void);

// ---------------------------------------------------------------------------------------------------
// conv2d (conv2d_shape.c: checks and workspace; conv2d_forward.c, conv2d_epilogue.c, winograd.c,
// winograd_avx512.c, winograd_avx2.c, conv2d_backward.c, im2col.c). Dilation 1, groups 1, zero padding.

typedef struct {
    int batch;          // N
    int in_channels;    // C
    int in_height;      // H
    int in_width;       // W
    int out_channels;   // K
    int kernel_height;  // R
    int kernel_width;   // S
    int stride_height;
    int stride_width;
    int pad_height;
    int pad_width;
} ck_conv2d_shape;

/// CK_OK, CK_ERR_NULL_POINTER (no shape) or CK_ERR_BAD_SIZE: the shape rule every conv2d kernel, optimized
/// or reference, starts with (positive sizes, non-negative padding, a non-empty output, sizes whose
/// products fit the kernels' index types).
int ck_conv2d_check_shape(const ck_conv2d_shape *shape);
/// Output height (H + 2·pad − R) / stride + 1, or 0 when the shape is invalid.
int ck_conv2d_output_height(const ck_conv2d_shape *shape);
/// Output width, or 0 when the shape is invalid.
int ck_conv2d_output_width(const ck_conv2d_shape *shape);

/// Bytes of workspace the optimized forward, backward-input and backward-weight kernels need for this
/// shape at the current thread count (one size serves all three). 0 when the shape is invalid.
size_t ck_conv2d_workspace_size(const ck_conv2d_shape *shape);

/// y = conv(x, weight) + bias: a GEMM (implicit, im2col or none for 1x1 stride 1), or Winograd F(2x2, 3x3) or
/// F(4x4, 3x3) for 3x3 stride-1 padding-1 layers as ck_conv2d_set_winograd and ck_conv2d_set_winograd_tile say.
/// y is (N, K, P, Q); x is (N, C, H, W); weight is (K, C, R, S); bias is (K) or NULL.
int ck_conv2d_forward_f32(float *y, const float *x, const float *weight, const float *bias,
                          const ck_conv2d_shape *shape, void *workspace, size_t workspace_bytes);
/// y = relu?(conv(x, weight) + bias + residual): the inference path of a BatchNorm-folded ResNet, with
/// the epilogue applied to each output block while it is in cache. residual (N, K, P, Q) and bias may be
/// NULL; relu is 0 or 1. y must alias neither x nor residual.
int ck_conv2d_forward_fused_f32(float *y, const float *x, const float *weight, const float *bias,
                                const float *residual, int relu, const ck_conv2d_shape *shape,
                                void *workspace, size_t workspace_bytes);
/// Weights packed ahead, for a layer whose weights stay the same across calls (inference): the forward otherwise
/// packs them for the GEMM (and, for Winograd, transforms them) on every call. Bytes the packed form takes for
/// this shape with the current GEMM backend and Winograd choice; 0 when nothing is packed ahead (OpenBLAS).
size_t ck_conv2d_packed_weights_size(const ck_conv2d_shape *shape);
/// Packs weight (K, C, R, S) into packed (as many bytes as ck_conv2d_packed_weights_size said), with a header naming
/// what it was packed for. workspace as for the forward. CK_ERR_BAD_SIZE when there is nothing to pack.
int ck_conv2d_pack_weights_f32(void *packed, size_t packed_bytes, const float *weight, const ck_conv2d_shape *shape,
                               void *workspace, size_t workspace_bytes);
/// ck_conv2d_forward_fused_f32 with the weights packed ahead by ck_conv2d_pack_weights_f32 from these weights
/// (packed may be NULL). A buffer packed for another choice (the GEMM backend or the Winograd mode changed since)
/// is ignored, never misread: the forward then packs as usual.
int ck_conv2d_forward_fused_packed_f32(float *y, const float *x, const float *weight, const void *packed,
                                       size_t packed_bytes, const float *bias, const float *residual, int relu,
                                       const ck_conv2d_shape *shape, void *workspace, size_t workspace_bytes);
/// When ck_conv2d_forward_f32, ck_conv2d_backward_input_f32 and ck_conv2d_backward_weight_f32 use Winograd on the shapes it handles:
/// CK_WINOGRAD_AUTO (the default) where it measures faster — at least 7×7 outputs (every 3x3 stride-1 layer of
/// ResNet-50 at 224×224); CK_WINOGRAD_NEVER; CK_WINOGRAD_ALWAYS. Until
/// this is called, RESNETFUSION_WINOGRAD=never or =always in the environment sets the mode.
enum { CK_WINOGRAD_NEVER = 0, CK_WINOGRAD_ALWAYS = 1, CK_WINOGRAD_AUTO = 2 };
void ck_conv2d_set_winograd(int mode);
/// The output tile of the Winograd forward and backward-input: 2 (F(2x2, 3x3), 16 products, error within 1e-4
/// relative), 4 (F(4x4, 3x3), 36 products for 4x the outputs, about 6x the rounding, still within 1e-4 on
/// ResNet-50's shapes), or 0 (the default): chosen per shape where it measures faster. The weight gradient always
/// uses F(2x2, 3x3). A NaN or infinite input reaches the same outputs as the direct convolution's under F(2x2, 3x3);
/// under F(4x4, 3x3) it also reaches the rest of each 4x4 output tile whose 6x6 input window holds it (its
/// transforms add and subtract it where direct convolution would multiply by zero). Workspace sizes depend on it: call it before sizing workspaces (a workspace sized for another
/// tile is refused with CK_ERR_WORKSPACE). Until it is called, RESNETFUSION_WINOGRAD_TILE=2 or =4 in the
/// environment sets it.
void ck_conv2d_set_winograd_tile(int tile);
/// The same through im2col + sgemm for every shape.
int ck_conv2d_forward_gemm_f32(float *y, const float *x, const float *weight, const float *bias,
                               const ck_conv2d_shape *shape, void *workspace, size_t workspace_bytes);
/// The same through Winograd (the tile ck_conv2d_set_winograd_tile says); CK_ERR_BAD_SIZE unless 3x3, stride 1,
/// padding 1.
int ck_conv2d_forward_winograd_f32(float *y, const float *x, const float *weight, const float *bias,
                                   const ck_conv2d_shape *shape, void *workspace, size_t workspace_bytes);

/// dx = conv_transpose(dy, weight). Overwrites dx.
/// dx is (N, C, H, W); dy is (N, K, P, Q); weight is (K, C, R, S).
int ck_conv2d_backward_input_f32(float *dx, const float *dy, const float *weight,
                                 const ck_conv2d_shape *shape, void *workspace, size_t workspace_bytes);

/// The same through Winograd, as the forward (a 3x3 stride-1 layer's backward-input is such a convolution, of dy
/// with the filters transposed and turned 180°); CK_ERR_BAD_SIZE unless 3x3, stride 1, padding 1.
int ck_conv2d_backward_input_winograd_f32(float *dx, const float *dy, const float *weight,
                                          const ck_conv2d_shape *shape, void *workspace, size_t workspace_bytes);

/// dweight += Σ_n dy_n ⋆ x_n; dbias += Σ_{n,p,q} dy. Accumulates.
/// dweight is (K, C, R, S); dbias is (K) or NULL; dy is (N, K, P, Q); x is (N, C, H, W).
int ck_conv2d_backward_weight_f32(float *dweight, float *dbias, const float *dy, const float *x,
                                  const ck_conv2d_shape *shape, void *workspace, size_t workspace_bytes);

/// The same through Winograd F(2x2, 3x3) (the forward's adjoint in the filters: 16 products that reduce over
/// tiles); CK_ERR_BAD_SIZE unless 3x3, stride 1, padding 1.
int ck_conv2d_backward_weight_winograd_f32(float *dweight, float *dbias, const float *dy, const float *x,
                                           const ck_conv2d_shape *shape, void *workspace, size_t workspace_bytes);

// ---------------------------------------------------------------------------------------------------
// batchnorm2d (batchnorm.c), PyTorch semantics: y = (x − mean) / sqrt(var + eps) · gamma + beta.

/// CK_OK or CK_ERR_BAD_SIZE: the size rule of every batchnorm2d kernel (positive, products in range).
int ck_batchnorm2d_check_sizes(int batch, int channels, int spatial);

/// Training forward (N·HW must exceed 1, as in PyTorch): normalises with the batch mean and the biased
/// batch variance over (N, H, W), saves
/// mean and 1/sqrt(var + eps) for backward, and when running_mean/running_var are not NULL updates them
/// in place: running = (1 − momentum)·running + momentum·batch, with the UNBIASED variance (÷ (N·HW − 1)).
/// y, x are (N, C, HW); save_mean, save_invstd, running_mean, running_var, gamma, beta are (C).
int ck_batchnorm2d_forward_train_f32(float *y, float *save_mean, float *save_invstd,
                                     float *running_mean, float *running_var,
                                     const float *x, const float *gamma, const float *beta,
                                     int batch, int channels, int spatial, float momentum, float eps);
/// The same followed by y = relu?(y + residual) while each channel is in cache: a ResNet block's
/// bn → (+ shortcut) → relu in one pass. residual is (N, C, H, W) or NULL; relu is 0 or 1.
int ck_batchnorm2d_forward_train_fused_f32(float *y, float *save_mean, float *save_invstd,
                                           float *running_mean, float *running_var,
                                           const float *x, const float *gamma, const float *beta,
                                           const float *residual, int relu,
                                           int batch, int channels, int spatial, float momentum, float eps);

/// Inference forward with the running statistics. y may alias x.
int ck_batchnorm2d_forward_infer_f32(float *y, const float *x, const float *gamma, const float *beta,
                                     const float *running_mean, const float *running_var,
                                     int batch, int channels, int spatial, float eps);

/// Backward of the training forward. Overwrites dx (may be NULL: not wanted); accumulates dgamma and
/// dbeta (each may be NULL). save_mean/save_invstd are what the training forward wrote.
int ck_batchnorm2d_backward_f32(float *dx, float *dgamma, float *dbeta,
                                const float *dy, const float *x, const float *save_mean,
                                const float *save_invstd, const float *gamma,
                                int batch, int channels, int spatial);

/// Backward of ck_batchnorm2d_forward_train_fused_f32 in one pass over the data: y is that forward's output when it
/// applied relu (the gradient passes where y > 0, as relu's backward), NULL when it did not; dz, when not NULL,
/// receives the gradient after the relu (what the residual's input gets). dx, dgamma, dbeta as in
/// ck_batchnorm2d_backward_f32, which is this with y and dz NULL.
int ck_batchnorm2d_backward_fused_f32(float *dx, float *dgamma, float *dbeta, float *dz,
                                      const float *dy, const float *y, const float *x, const float *save_mean,
                                      const float *save_invstd, const float *gamma,
                                      int batch, int channels, int spatial);

/// Backward of the inference forward (statistics are constants): dx = dy·gamma/sqrt(var + eps),
/// dgamma += Σ dy·x̂, dbeta += Σ dy. dx overwritten; any output may be NULL.
int ck_batchnorm2d_backward_infer_f32(float *dx, float *dgamma, float *dbeta,
                                      const float *dy, const float *x, const float *gamma,
                                      const float *running_mean, const float *running_var,
                                      int batch, int channels, int spatial, float eps);

/// Folds an inference BatchNorm into the convolution before it: w' = w·s, b' = (b − mean)·s + beta with
/// s = gamma/sqrt(var + eps). folded_weight/weight are (K, per_channel); folded_bias, bias (may be NULL:
/// zero), gamma, beta, mean, var are (K). Outputs may alias inputs.
int ck_batchnorm2d_fold_into_conv_f32(float *folded_weight, float *folded_bias,
                                      const float *weight, const float *bias,
                                      const float *gamma, const float *beta,
                                      const float *running_mean, const float *running_var,
                                      int out_channels, int per_channel, float eps);

// ---------------------------------------------------------------------------------------------------
// pooling (pool.c)

typedef struct {
    int batch, channels, in_height, in_width;
    int kernel_height, kernel_width, stride_height, stride_width, pad_height, pad_width;
} ck_pool2d_shape;

/// CK_OK, CK_ERR_NULL_POINTER (no shape) or CK_ERR_BAD_SIZE: the shape rule of both max-pooling kernels
/// (including padding at most half the kernel, as PyTorch requires).
int ck_pool2d_check_shape(const ck_pool2d_shape *shape);
/// Output height, floor mode (PyTorch's default), or 0 when the shape is invalid.
int ck_pool2d_output_height(const ck_pool2d_shape *shape);
int ck_pool2d_output_width(const ck_pool2d_shape *shape);

/// Max pooling; padding counts as −∞. argmax (may be NULL) receives, for each output, the flat index
/// h·W + w of the winning input inside its (n, c) plane; ties go to the first in row-major order.
/// y, argmax are (N, C, P, Q); x is (N, C, H, W).
int ck_maxpool2d_forward_f32(float *y, int32_t *argmax, const float *x, const ck_pool2d_shape *shape);

/// dx = scatter of dy to the argmax positions. Overwrites dx.
int ck_maxpool2d_backward_f32(float *dx, const float *dy, const int32_t *argmax,
                              const ck_pool2d_shape *shape);

/// CK_OK or CK_ERR_BAD_SIZE: the size rule of both global-average-pool kernels.
int ck_global_avgpool_check_sizes(int batch, int channels, int spatial);
/// Global average pool: y[n, c] = mean over the plane. y is (N, C); x is (N, C, HW).
int ck_global_avgpool_forward_f32(float *y, const float *x, int batch, int channels, int spatial);
/// dx[n, c, i] = dy[n, c] / HW. Overwrites dx.
int ck_global_avgpool_backward_f32(float *dx, const float *dy, int batch, int channels, int spatial);

// ---------------------------------------------------------------------------------------------------
// Elementwise (activation.c). count is the number of floats.

/// y = max(x, 0), NaN kept (as PyTorch). y may alias x.
int ck_relu_forward_f32(float *y, const float *x, size_t count);
/// dx = dy where y > 0 else 0 (y is the forward output). Overwrites dx; dx may alias dy.
int ck_relu_backward_f32(float *dx, const float *dy, const float *y, size_t count);
/// y = a + b. y may alias a or b.
int ck_add_f32(float *y, const float *a, const float *b, size_t count);
/// y += x.
int ck_accumulate_f32(float *y, const float *x, size_t count);

// ---------------------------------------------------------------------------------------------------
// Optimizer (optimizer.c): PyTorch's torch.optim.Adam and AdamW (amsgrad off), one parameter tensor per call.

/// One Adam step's scalars for one parameter tensor at step t. The bias corrections depend on t only, so the
/// caller works them out once per tensor (in double, as PyTorch does).
typedef struct {
    float learning_rate;                  // lr
    float beta1, beta2;                   // β₁, β₂
    float eps;                            // ε
    float weight_decay;                   // λ; 0 for none
    int decoupled;                        // 1: AdamW's p ·= 1 − lr·λ; 0: Adam's g += λ·p
    float step_size;                      // lr / (1 − β₁ᵗ)
    float inverse_bias_correction2_sqrt;  // 1 / √(1 − β₂ᵗ)
} ck_adam_step;

/// One Adam update in place on count elements of param, exp_avg (m) and exp_avg_sq (v), from grad (g):
///   g += λ·p (Adam, λ ≠ 0) or p ·= 1 − lr·λ (AdamW, λ ≠ 0);
///   m += (g − m)·(1 − β₁);   v = v·β₂ + (1 − β₂)·g·g;   p −= step_size·m / (√v·inverse_bias_correction2_sqrt + ε).
/// The thread count changes no bit; the reference twin, which never fuses a multiply and an add, agrees to a few
/// units in the last place. Subnormals are flushed to zero while it runs (FTZ and DAZ, set and restored on each thread
/// that works): a dead unit's moments decay by β₁ a step into the subnormal range, where every multiply takes a
/// microcode assist; the update a flushed value would make is far below a weight's last bit. A NaN or infinite
/// gradient spreads to that element's moments and weight, as in PyTorch. No array may overlap another.
/// CK_ERR_NULL_POINTER when an array or step is NULL (count 0 needs only step).
int ck_adam_update_f32(float *param, float *exp_avg, float *exp_avg_sq, const float *grad, size_t count,
                       const ck_adam_step *step);

// ---------------------------------------------------------------------------------------------------
// Linear (linear.c), PyTorch layout: y = x · weightᵀ + bias.

/// CK_OK or CK_ERR_BAD_SIZE: the size rule of both linear kernels (all positive).
int ck_linear_check_sizes(int batch, int in_features, int out_features);
/// y is (B, OUT); x is (B, IN); weight is (OUT, IN); bias is (OUT) or NULL.
int ck_linear_forward_f32(float *y, const float *x, const float *weight, const float *bias,
                          int batch, int in_features, int out_features);
/// dx = dy · weight (overwritten; dx may be NULL); dweight += dyᵀ · x; dbias += Σ_b dy (each may be NULL).
int ck_linear_backward_f32(float *dx, float *dweight, float *dbias, const float *dy, const float *x,
                           const float *weight, int batch, int in_features, int out_features);

// ---------------------------------------------------------------------------------------------------
// Matrix product used by the kernels and benchmarks (gemm.c; the backend choice in gemm_backend.c, packing
// in gemm_pack.c): C = alpha·op(A)·op(B) + beta·C, row-major; beta == 0 overwrites C without reading it.
// Runs on the calling thread with the backend below (OpenBLAS: threaded as ck_set_num_threads left it,
// i.e. one thread).
void ck_sgemm(int transpose_a, int transpose_b, int m, int n, int k, float alpha,
              const float *a, int lda, const float *b, int ldb, float beta, float *c, int ldc);

/// C_i = alpha·op(A)·B_i + beta·C_i for i < count, with B_i = b + i·stride_b (k × n, row stride ldb) and
/// C_i = c + i·stride_c (m × n, row stride ldc): one weight matrix applied to several images. The packed
/// backends (AVX-512, AVX2) run it as one product with the images' columns side by side, so A is packed once and
/// images with few pixels (7×7) still fill whole register tiles.
void ck_sgemm_images(int transpose_a, int m, int n, int k, float alpha, const float *a, int lda, const float *b,
                     int ldb, size_t stride_b, float beta, float *c, int ldc, size_t stride_c, int count);

typedef enum {
    CK_GEMM_AUTO = 0,      // OpenBLAS when RESNETFUSION_GEMM is "openblas"; else AVX-512 when the CPU has it
                           // (and RESNETFUSION_ISA is not "avx2"), else AVX2
    CK_GEMM_OPENBLAS = 1,  // cblas_sgemm, with whatever kernels OpenBLAS chose (OPENBLAS_CORETYPE)
    CK_GEMM_AVX512 = 2,    // our packed GEMM with an AVX-512 micro-kernel
    CK_GEMM_AVX2 = 3,      // the same packed GEMM with an AVX2 + FMA micro-kernel (any x86-64-v3 CPU)
} ck_gemm_backend;
/// The packing buffers of the AVX-512 and AVX2 backends are the per-thread allocation described at the top of
/// this file (one buffer per thread, shared by both).
/// Chooses the backend of ck_sgemm for the whole process; not while a kernel runs. CK_ERR_BAD_SIZE when
/// the CPU lacks what the backend needs (the current one is kept).
int ck_set_gemm_backend(int backend);
/// With 0, every kernel takes its AVX2 path as if the CPU had no AVX-512 (an AVX-512 sgemm backend becomes AVX2);
/// with 1 (the default) AVX-512 is used where the CPU has it. For tests and benchmarks; not while a kernel
/// runs. RESNETFUSION_ISA=avx2 in the environment does the same for a whole process.
void ck_set_avx512_allowed(int allowed);
/// The backend in use (CK_GEMM_OPENBLAS, CK_GEMM_AVX512 or CK_GEMM_AVX2); decided on first use as CK_GEMM_AUTO says.
int ck_get_gemm_backend(void);
/// Tests only: with 1, every thread's packing buffer counts as missing (as if its allocation had failed), so every
/// kernel takes the path it falls back to then: OpenBLAS for the products, its own lowering and packing for the
/// convolutions. 0 (the default) restores the buffers. Not while a kernel runs.
void ck_gemm_simulate_missing_packing_buffers(int missing);

/// Runs fn(arg, i) for i in [0, count) on the OpenMP pool (static schedule).
void ck_parallel_for(int count, void (*fn)(void *arg, int index), void *arg);

/// Lets OpenBLAS use n threads of its own (benchmarks only: it measures OpenBLAS's own threaded rate).
/// Kernels must not run while it is above 1; call ck_set_num_threads again to restore.
void ck_set_blas_threads(int n);

// ---------------------------------------------------------------------------------------------------
// Measurement (fma_peak.c). Not a kernel: it computes no op, so it is outside the kernel tables and has no
// _ref twin (there is no result to check a twin against, only a rate; a plain-loop twin would measure
// nothing of interest).

typedef struct {
    double flops_per_second;  // 2 FLOPs per lane per FMA, all threads together
    double seconds;           // wall time of the timed loop
    int threads;              // threads that ran it (ck_get_num_threads(), or 1 inside another parallel region)
    int vector_bits;          // 512 (AVX-512, zmm) or 256 (AVX2 + FMA, ymm)
} ck_fma_peak;

/// This machine's FMA peak: every thread of the OpenMP pool runs iterations_per_thread rounds of independent
/// vector FMAs on registers only (16 zmm per round where AVX-512 is allowed, as ck_set_avx512_allowed and
/// RESNETFUSION_ISA say, else 12 ymm), timed together. The ceiling a compute-bound kernel's GFLOP/s is a
/// fraction of. CK_ERR_NULL_POINTER without result, CK_ERR_BAD_SIZE unless iterations_per_thread > 0.
int ck_measure_fma_peak(ck_fma_peak *result, long iterations_per_thread);

// ---------------------------------------------------------------------------------------------------
// Kernel tables: ck_kernel_table, one function pointer per op, and ck_optimized_kernels() (ck_kernel_table.h).
#include "ck_kernel_table.h"

#ifdef __cplusplus
}
#endif
#endif
