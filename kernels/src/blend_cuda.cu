// CUDA tile-blend kernels behind the edgesr_cuda_* C ABI of edgesr_blend.h.
// Same contract as kernels/blend.py: explicit __fmul_rn/__fadd_rn/__fdiv_rn (never contracted
// into FMA), round half to even with __float2uint_rn. Pointers are device memory.
#include <cuda_runtime.h>

#include "edgesr_blend.h"

namespace {

constexpr int kThreads = 256;

__device__ int64_t source_index(int64_t i, int64_t n, int pad_mode) {
    if (pad_mode == EDGESR_PAD_REPLICATE) return i < 0 ? 0 : (i >= n ? n - 1 : i);
    if (n == 1) return 0;
    const int64_t period = 2 * (n - 1);
    int64_t j = i % period;
    if (j < 0) j += period;
    return j >= n ? period - j : j;
}

__global__ void extract_kernel(const float *image, int64_t total, int64_t height, int64_t width,
                               int64_t y0, int64_t x0, int64_t h, int64_t w, int pad_mode,
                               float *out) {
    for (int64_t k = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; k < total;
         k += int64_t(gridDim.x) * blockDim.x) {
        const int64_t i = k % w, j = (k / w) % h, p = k / (w * h);
        const int64_t sy = source_index(y0 + j, height, pad_mode);
        const int64_t sx = source_index(x0 + i, width, pad_mode);
        out[k] = image[(p * height + sy) * width + sx];
    }
}

__global__ void accumulate_kernel(float *canvas, float *weight_sum, int64_t channels,
                                  int64_t height, int64_t width, const float *tile,
                                  const float *weight, int64_t h, int64_t w, int64_t y,
                                  int64_t x) {
    const int64_t plane = h * w;
    for (int64_t k = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; k < plane;
         k += int64_t(gridDim.x) * blockDim.x) {
        const int64_t i = k % w, j = k / w, at = (y + j) * width + x + i;
        const float wt = weight[k];
        for (int64_t c = 0; c < channels; ++c) {
            float *dst = canvas + c * height * width + at;
            *dst = __fadd_rn(*dst, __fmul_rn(tile[c * plane + k], wt));
        }
        weight_sum[at] = __fadd_rn(weight_sum[at], wt);
    }
}

__global__ void uncovered_kernel(const float *weight_sum, int64_t n, int *flag) {
    for (int64_t k = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; k < n;
         k += int64_t(gridDim.x) * blockDim.x)
        if (!(weight_sum[k] > 0.0f)) *flag = 1;
}

__global__ void normalize_kernel(const float *canvas, const float *weight_sum, int64_t total,
                                 int64_t plane, float *out) {
    for (int64_t k = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; k < total;
         k += int64_t(gridDim.x) * blockDim.x)
        out[k] = __fdiv_rn(canvas[k], weight_sum[k % plane]);
}

template <typename T>
__global__ void to_uint_kernel(const float *in, int64_t n, float scale, T *out) {
    for (int64_t k = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; k < n;
         k += int64_t(gridDim.x) * blockDim.x) {
        const float v = fminf(fmaxf(in[k], 0.0f), 1.0f);  // fmaxf(NaN, 0) = 0
        out[k] = static_cast<T>(__float2uint_rn(__fmul_rn(v, scale)));
    }
}

unsigned blocks(int64_t n) {
    const int64_t b = (n + kThreads - 1) / kThreads;
    return static_cast<unsigned>(b < 65535 ? (b > 0 ? b : 1) : 65535);
}

int finish() {
    if (cudaGetLastError() != cudaSuccess) return EDGESR_ECUDA;
    return cudaDeviceSynchronize() == cudaSuccess ? EDGESR_OK : EDGESR_ECUDA;
}

template <typename T>
int to_uint(const float *in, int64_t n, T *out, float scale) {
    if (n < 0 || (n > 0 && (!in || !out))) return EDGESR_EINVAL;
    if (n == 0) return EDGESR_OK;
    to_uint_kernel<T><<<blocks(n), kThreads>>>(in, n, scale, out);
    return finish();
}

}  // namespace

extern "C" {

int edgesr_cuda_device_count(void) {
    int count = 0;
    return cudaGetDeviceCount(&count) == cudaSuccess ? count : 0;
}

int edgesr_cuda_extract_tile_f32(const float *image, int64_t planes, int64_t height,
                                 int64_t width, int64_t y0, int64_t x0, int64_t h, int64_t w,
                                 int pad_mode, float *out) {
    if (!image || !out || planes < 0 || height < 1 || width < 1 || h < 1 || w < 1 ||
        (pad_mode != EDGESR_PAD_REFLECT && pad_mode != EDGESR_PAD_REPLICATE))
        return EDGESR_EINVAL;
    const int64_t total = planes * h * w;
    if (total == 0) return EDGESR_OK;
    extract_kernel<<<blocks(total), kThreads>>>(image, total, height, width, y0, x0, h, w,
                                                pad_mode, out);
    return finish();
}

int edgesr_cuda_accumulate_f32(float *canvas, float *weight_sum, int64_t channels,
                               int64_t height, int64_t width, const float *tile,
                               const float *weight, int64_t h, int64_t w, int64_t y, int64_t x) {
    if (!canvas || !weight_sum || !tile || !weight || channels < 0 || h < 0 || w < 0 || y < 0 ||
        x < 0 || y + h > height || x + w > width)
        return EDGESR_EINVAL;
    if (h * w == 0) return EDGESR_OK;
    accumulate_kernel<<<blocks(h * w), kThreads>>>(canvas, weight_sum, channels, height, width,
                                                   tile, weight, h, w, y, x);
    return finish();
}

int edgesr_cuda_normalize_f32(const float *canvas, const float *weight_sum, int64_t channels,
                              int64_t height, int64_t width, float *out) {
    if (!canvas || !weight_sum || !out || channels < 0 || height < 0 || width < 0)
        return EDGESR_EINVAL;
    const int64_t plane = height * width, total = channels * plane;
    if (plane == 0) return EDGESR_OK;
    int *flag = nullptr, uncovered = 0;
    if (cudaMalloc(&flag, sizeof(int)) != cudaSuccess) return EDGESR_ECUDA;
    cudaMemset(flag, 0, sizeof(int));
    uncovered_kernel<<<blocks(plane), kThreads>>>(weight_sum, plane, flag);
    const bool copied = cudaMemcpy(&uncovered, flag, sizeof(int), cudaMemcpyDeviceToHost) ==
                        cudaSuccess;
    cudaFree(flag);
    if (!copied) return EDGESR_ECUDA;
    if (uncovered) return EDGESR_EUNCOVERED;
    if (total == 0) return EDGESR_OK;
    normalize_kernel<<<blocks(total), kThreads>>>(canvas, weight_sum, total, plane, out);
    return finish();
}

int edgesr_cuda_to_u8(const float *in, int64_t n, uint8_t *out) {
    return to_uint<uint8_t>(in, n, out, 255.0f);
}

int edgesr_cuda_to_u16(const float *in, int64_t n, uint16_t *out) {
    return to_uint<uint16_t>(in, n, out, 65535.0f);
}

}  // extern "C"
