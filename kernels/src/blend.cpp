// C++17 tile-blend kernels behind the C ABI of edgesr_blend.h (contract: kernels/blend.py).
//
// Loops are written so GCC/Clang vectorise them at -O3 with baseline SSE2/NEON: no libm calls
// in inner loops, branch-free clamps, round-half-even by the 2^23 trick. OpenMP (when built
// with it) splits rows across threads once a call touches enough pixels to pay for it.
// Build without -ffast-math and with -ffp-contract=off: results must match NumPy bit for bit.
#include "edgesr_blend.h"

#include <cstring>
#include <vector>

#ifndef EDGESR_VERSION
#define EDGESR_VERSION "0.0.0"
#endif

namespace {

constexpr int64_t kParallelMin = 1 << 20;  // elements below which threads cost more than they save

// Python-style mapping of index i into [0, n) for reflect / replicate padding.
int64_t source_index(int64_t i, int64_t n, int pad_mode) {
    if (pad_mode == EDGESR_PAD_REPLICATE) return i < 0 ? 0 : (i >= n ? n - 1 : i);
    if (n == 1) return 0;
    const int64_t period = 2 * (n - 1);
    int64_t j = i % period;
    if (j < 0) j += period;
    return j >= n ? period - j : j;
}

// round half to even for 0 <= v <= 2^22, in the default rounding mode, without libm
inline float round_even(float v) {
    constexpr float magic = 8388608.0f;  // 2^23: adding it drops the fraction, rounding to even
    return (v + magic) - magic;          // not folded: no -ffast-math / -fassociative-math
}

template <typename T, int Max>
int to_uint(const float *in, int64_t n, T *out) {
    if ((n > 0 && (in == nullptr || out == nullptr)) || n < 0) return EDGESR_EINVAL;
    constexpr int64_t block = 1 << 14;
    const int64_t blocks = (n + block - 1) / block;
#pragma omp parallel for if (n >= kParallelMin) schedule(static)
    for (int64_t b = 0; b < blocks; ++b) {
        const int64_t end = b * block + block < n ? b * block + block : n;
        const float scale = static_cast<float>(Max);
        for (int64_t i = b * block; i < end; ++i) {
            const float x = in[i];
            float v = x > 0.0f ? x : 0.0f;  // NaN compares false: NaN -> 0, as C99 fmax(NaN, 0)
            v = v < 1.0f ? v : 1.0f;
            out[i] = static_cast<T>(static_cast<int32_t>(round_even(v * scale)));
        }
    }
    return EDGESR_OK;
}

}  // namespace

extern "C" {

const char *edgesr_blend_version(void) { return EDGESR_VERSION; }

const char *edgesr_status_string(int status) {
    switch (status) {
        case EDGESR_OK: return "ok";
        case EDGESR_EINVAL: return "invalid argument: null pointer, bad size or tile outside canvas";
        case EDGESR_EUNCOVERED: return "some output pixels were covered by no tile (weight sum 0)";
        case EDGESR_ECUDA: return "a CUDA runtime call failed";
        default: return "unknown status";
    }
}

int edgesr_extract_tile_f32(const float *image, int64_t planes, int64_t height, int64_t width,
                            int64_t y0, int64_t x0, int64_t h, int64_t w, int pad_mode,
                            float *out) {
    if (!image || !out || planes < 0 || height < 1 || width < 1 || h < 1 || w < 1 ||
        (pad_mode != EDGESR_PAD_REFLECT && pad_mode != EDGESR_PAD_REPLICATE))
        return EDGESR_EINVAL;
    const bool inside_x = x0 >= 0 && x0 + w <= width;
    std::vector<int64_t> cols(inside_x ? 0 : w);
    for (int64_t i = 0; i < static_cast<int64_t>(cols.size()); ++i)
        cols[i] = source_index(x0 + i, width, pad_mode);
    const int64_t rows = planes * h;
#pragma omp parallel for if (rows * w >= kParallelMin) schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
        const int64_t p = r / h, j = r % h;
        const float *src = image + (p * height + source_index(y0 + j, height, pad_mode)) * width;
        float *dst = out + r * w;
        if (inside_x) {
            std::memcpy(dst, src + x0, static_cast<size_t>(w) * sizeof(float));
        } else {
            for (int64_t i = 0; i < w; ++i) dst[i] = src[cols[i]];
        }
    }
    return EDGESR_OK;
}

int edgesr_accumulate_f32(float *canvas, float *weight_sum, int64_t channels, int64_t height,
                          int64_t width, const float *tile, const float *weight, int64_t h,
                          int64_t w, int64_t y, int64_t x) {
    if (!canvas || !weight_sum || !tile || !weight || channels < 0 || h < 0 || w < 0 || y < 0 ||
        x < 0 || y + h > height || x + w > width)
        return EDGESR_EINVAL;
    const int64_t rows = channels * h;
#pragma omp parallel if (rows * w >= kParallelMin)
    {
#pragma omp for schedule(static) nowait
        for (int64_t r = 0; r < rows; ++r) {
            const int64_t c = r / h, j = r % h;
            float *dst = canvas + (c * height + y + j) * width + x;
            const float *src = tile + r * w;
            const float *wt = weight + j * w;
#pragma omp simd
            for (int64_t i = 0; i < w; ++i) {
                const float product = src[i] * wt[i];  // rounded to float32, then added
                dst[i] = dst[i] + product;
            }
        }
#pragma omp for schedule(static)
        for (int64_t j = 0; j < h; ++j) {
            float *dst = weight_sum + (y + j) * width + x;
            const float *wt = weight + j * w;
#pragma omp simd
            for (int64_t i = 0; i < w; ++i) dst[i] = dst[i] + wt[i];
        }
    }
    return EDGESR_OK;
}

int edgesr_normalize_f32(const float *canvas, const float *weight_sum, int64_t channels,
                         int64_t height, int64_t width, float *out) {
    if (!canvas || !weight_sum || !out || channels < 0 || height < 0 || width < 0)
        return EDGESR_EINVAL;
    const int64_t plane = height * width;
    int uncovered = 0;
#pragma omp parallel for simd if (plane >= kParallelMin) reduction(| : uncovered)
    for (int64_t i = 0; i < plane; ++i) uncovered |= !(weight_sum[i] > 0.0f);
    if (uncovered) return EDGESR_EUNCOVERED;
    const int64_t rows = channels * height;
#pragma omp parallel for if (rows * width >= kParallelMin) schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
        const float *src = canvas + r * width;
        const float *ws = weight_sum + (r % height) * width;
        float *dst = out + r * width;
#pragma omp simd
        for (int64_t i = 0; i < width; ++i) dst[i] = src[i] / ws[i];
    }
    return EDGESR_OK;
}

int edgesr_to_u8(const float *in, int64_t n, uint8_t *out) {
    return to_uint<uint8_t, 255>(in, n, out);
}

int edgesr_to_u16(const float *in, int64_t n, uint16_t *out) {
    return to_uint<uint16_t, 65535>(in, n, out);
}

}  // extern "C"
