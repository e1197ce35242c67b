/* edgesr tile-blend kernels: plain C ABI over the C++ (and optional CUDA) implementations.
 *
 * Contract: kernels/blend.py (the NumPy reference). Layouts are planar and C-contiguous:
 * images, tiles and the canvas are (C, H, W) float32, weights and the weight sum (H, W) float32.
 * Every function returns EDGESR_OK or an error status; edgesr_status_string() names it.
 */
#ifndef EDGESR_BLEND_H
#define EDGESR_BLEND_H

#include <stdint.h>

#if defined(_WIN32)
#  define EDGESR_API __declspec(dllexport)
#elif defined(__GNUC__)
#  define EDGESR_API __attribute__((visibility("default")))
#else
#  define EDGESR_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

enum edgesr_status {
    EDGESR_OK = 0,
    EDGESR_EINVAL = 1,      /* null pointer, bad size or a tile outside the canvas */
    EDGESR_EUNCOVERED = 2,  /* normalize: some weight_sum pixel is not > 0 */
    EDGESR_ECUDA = 3        /* a CUDA runtime call failed (CUDA library only) */
};

enum edgesr_pad_mode { EDGESR_PAD_REFLECT = 0, EDGESR_PAD_REPLICATE = 1 };

/* Version string of the library, e.g. "0.1.0". */
EDGESR_API const char *edgesr_blend_version(void);
/* One-line description of a status code. */
EDGESR_API const char *edgesr_status_string(int status);

/* out (planes, h, w) = image (planes, height, width)[:, y0:y0+h, x0:x0+w], indices outside the
 * image mapped by pad_mode (EDGESR_PAD_REFLECT or EDGESR_PAD_REPLICATE). */
EDGESR_API int edgesr_extract_tile_f32(const float *image, int64_t planes, int64_t height,
                                       int64_t width, int64_t y0, int64_t x0, int64_t h,
                                       int64_t w, int pad_mode, float *out);

/* canvas (channels, height, width)[:, y:y+h, x:x+w] += tile (channels, h, w) * weight (h, w);
 * weight_sum (height, width)[y:y+h, x:x+w] += weight. Product rounded before the add. */
EDGESR_API int edgesr_accumulate_f32(float *canvas, float *weight_sum, int64_t channels,
                                     int64_t height, int64_t width, const float *tile,
                                     const float *weight, int64_t h, int64_t w, int64_t y,
                                     int64_t x);

/* out (channels, height, width) = canvas / weight_sum; EDGESR_EUNCOVERED (out untouched) when
 * some weight_sum pixel is not > 0. out may alias canvas. */
EDGESR_API int edgesr_normalize_f32(const float *canvas, const float *weight_sum,
                                    int64_t channels, int64_t height, int64_t width, float *out);

/* n floats to uint8 / uint16: clamp to [0, 1] (NaN -> 0), scale, round half to even. */
EDGESR_API int edgesr_to_u8(const float *in, int64_t n, uint8_t *out);
EDGESR_API int edgesr_to_u16(const float *in, int64_t n, uint16_t *out);

/* CUDA library (libedgesr_blend_cuda) only: same contracts, all pointers in device memory,
 * work queued on the default stream and waited for. */
EDGESR_API int edgesr_cuda_device_count(void);
EDGESR_API int edgesr_cuda_extract_tile_f32(const float *image, int64_t planes, int64_t height,
                                            int64_t width, int64_t y0, int64_t x0, int64_t h,
                                            int64_t w, int pad_mode, float *out);
EDGESR_API int edgesr_cuda_accumulate_f32(float *canvas, float *weight_sum, int64_t channels,
                                          int64_t height, int64_t width, const float *tile,
                                          const float *weight, int64_t h, int64_t w, int64_t y,
                                          int64_t x);
EDGESR_API int edgesr_cuda_normalize_f32(const float *canvas, const float *weight_sum,
                                         int64_t channels, int64_t height, int64_t width,
                                         float *out);
EDGESR_API int edgesr_cuda_to_u8(const float *in, int64_t n, uint8_t *out);
EDGESR_API int edgesr_cuda_to_u16(const float *in, int64_t n, uint16_t *out);

#ifdef __cplusplus
}
#endif

#endif /* EDGESR_BLEND_H */
