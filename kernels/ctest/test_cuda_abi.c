/* CUDA kernels vs the C++ kernels through the C ABI, bit for bit; exits 77 (ctest: skipped)
 * when no CUDA device is present. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cuda_runtime_api.h>

#include "edgesr_blend.h"

static unsigned state = 12345u;
static float uniform(void) { /* LCG in [-0.25, 1.25): exercises the clamps */
    state = state * 1664525u + 1013904223u;
    return (float)(state >> 8) / 16777216.0f * 1.5f - 0.25f;
}

static void *to_device(const void *host, size_t bytes) {
    void *dev = NULL;
    if (cudaMalloc(&dev, bytes) != cudaSuccess) exit(2);
    if (host) cudaMemcpy(dev, host, bytes, cudaMemcpyHostToDevice);
    else cudaMemset(dev, 0, bytes);
    return dev;
}

static int same(const void *dev, const void *host, size_t bytes, const char *what) {
    void *back = malloc(bytes);
    cudaMemcpy(back, dev, bytes, cudaMemcpyDeviceToHost);
    const int ok = memcmp(back, host, bytes) == 0;
    if (!ok) fprintf(stderr, "CUDA and C++ differ: %s\n", what);
    free(back);
    return ok;
}

int main(void) {
    if (edgesr_cuda_device_count() < 1) {
        printf("no CUDA device: skipped\n");
        return 77;
    }
    enum { C = 3, H = 37, W = 53, S = 2, T = 24, OUT_H = H * S, OUT_W = W * S };
    static float image[C * H * W], tile[C * T * T], canvas[C * OUT_H * OUT_W],
        sum[OUT_H * OUT_W], out[C * OUT_H * OUT_W], weight[T * S * T * S],
        up[C * T * S * T * S];
    static uint8_t u8[C * OUT_H * OUT_W];
    static uint16_t u16[C * OUT_H * OUT_W];
    for (int i = 0; i < C * H * W; ++i) image[i] = uniform();
    for (int i = 0; i < T * S * T * S; ++i) weight[i] = 0.05f + fabsf(uniform());
    float *d_image = to_device(image, sizeof image), *d_tile = to_device(NULL, sizeof tile);
    float *d_canvas = to_device(NULL, sizeof canvas), *d_sum = to_device(NULL, sizeof sum);
    float *d_up = to_device(NULL, sizeof up), *d_weight = to_device(weight, sizeof weight);
    float *d_out = to_device(NULL, sizeof out);
    uint8_t *d_u8 = to_device(NULL, sizeof u8);
    uint16_t *d_u16 = to_device(NULL, sizeof u16);
    int ok = 1;
    /* tiles start before the image, inside it and run past its far border; they cover it */
    const int ys[3] = {-5, 10, H - 7}, xs[3] = {-5, 14, W - 17};
    for (int a = 0; a < 3; ++a) {
        for (int b = 0; b < 3; ++b) {
            const int y = ys[a], x = xs[b], mode = (a + b) % 2;
            edgesr_extract_tile_f32(image, C, H, W, y, x, T, T, mode, tile);
            ok &= edgesr_cuda_extract_tile_f32(d_image, C, H, W, y, x, T, T, mode, d_tile) ==
                  EDGESR_OK;
            ok &= same(d_tile, tile, sizeof tile, "extract_tile");
            for (int i = 0; i < C * T * S * T * S; ++i) up[i] = tile[i % (C * T * T)] * 1.01f;
            cudaMemcpy(d_up, up, sizeof up, cudaMemcpyHostToDevice);
            const int oy = (y < 0 ? 0 : y) * S, ox = (x < 0 ? 0 : x) * S;
            const int th = oy + T * S > OUT_H ? OUT_H - oy : T * S;
            const int tw = ox + T * S > OUT_W ? OUT_W - ox : T * S;
            /* both read `up` as (C, th, tw) and `weight` as (th, tw), clipped to the canvas */
            edgesr_accumulate_f32(canvas, sum, C, OUT_H, OUT_W, up, weight, th, tw, oy, ox);
            ok &= edgesr_cuda_accumulate_f32(d_canvas, d_sum, C, OUT_H, OUT_W, d_up, d_weight,
                                             th, tw, oy, ox) == EDGESR_OK;
        }
    }
    ok &= same(d_canvas, canvas, sizeof canvas, "accumulate canvas");
    ok &= same(d_sum, sum, sizeof sum, "accumulate weight sum");
    ok &= edgesr_normalize_f32(canvas, sum, C, OUT_H, OUT_W, out) == EDGESR_OK;
    ok &= edgesr_cuda_normalize_f32(d_canvas, d_sum, C, OUT_H, OUT_W, d_out) == EDGESR_OK;
    ok &= same(d_out, out, sizeof out, "normalize");
    cudaMemcpy(d_out, canvas, sizeof canvas, cudaMemcpyHostToDevice);
    edgesr_to_u8(canvas, C * OUT_H * OUT_W, u8);
    edgesr_to_u16(canvas, C * OUT_H * OUT_W, u16);
    ok &= edgesr_cuda_to_u8(d_out, C * OUT_H * OUT_W, d_u8) == EDGESR_OK;
    ok &= edgesr_cuda_to_u16(d_out, C * OUT_H * OUT_W, d_u16) == EDGESR_OK;
    ok &= same(d_u8, u8, sizeof u8, "to_u8") && same(d_u16, u16, sizeof u16, "to_u16");
    printf(ok ? "CUDA kernels match the C++ kernels\n" : "CUDA kernels differ\n");
    return ok ? 0 : 1;
}
