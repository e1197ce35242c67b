/* C test of the edgesr_blend C ABI: known answers for every kernel, run by ctest. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "edgesr_blend.h"

static int failures = 0;

#define CHECK(cond)                                                       \
    do {                                                                  \
        if (!(cond)) {                                                    \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
            ++failures;                                                   \
        }                                                                 \
    } while (0)

static void test_extract_tile(void) {
    const float image[2][3] = {{0, 1, 2}, {10, 11, 12}};
    float out[2 * 7];
    const float reflect[7] = {2, 1, 0, 1, 2, 1, 0}, replicate[7] = {0, 0, 0, 1, 2, 2, 2};
    CHECK(edgesr_extract_tile_f32(&image[0][0], 2, 1, 3, 0, -2, 1, 7, EDGESR_PAD_REFLECT, out) ==
          EDGESR_OK);
    CHECK(memcmp(out, reflect, sizeof reflect) == 0);
    for (int i = 0; i < 7; ++i) CHECK(out[7 + i] == reflect[i] + 10);
    CHECK(edgesr_extract_tile_f32(&image[0][0], 1, 2, 3, 1, -2, 1, 7, EDGESR_PAD_REPLICATE,
                                  out) == EDGESR_OK);
    for (int i = 0; i < 7; ++i) CHECK(out[i] == replicate[i] + 10);
    CHECK(edgesr_extract_tile_f32(&image[0][0], 1, 2, 3, 0, 0, 1, 7, 5, out) == EDGESR_EINVAL);
    CHECK(edgesr_extract_tile_f32(NULL, 1, 2, 3, 0, 0, 1, 1, 0, out) == EDGESR_EINVAL);
}

static void test_accumulate_normalize(void) {
    float canvas[2 * 1 * 3] = {0}, sum[3] = {0}, out[6];
    const float tile[2 * 2] = {1, 3, 5, 7}, weight[2] = {0.25f, 0.75f};
    CHECK(edgesr_accumulate_f32(canvas, sum, 2, 1, 3, tile, weight, 1, 2, 0, 0) == EDGESR_OK);
    CHECK(edgesr_normalize_f32(canvas, sum, 2, 1, 3, out) == EDGESR_EUNCOVERED);
    CHECK(edgesr_accumulate_f32(canvas, sum, 2, 1, 3, tile, weight, 1, 2, 0, 1) == EDGESR_OK);
    CHECK(sum[0] == 0.25f && sum[1] == 1.0f && sum[2] == 0.75f);
    CHECK(canvas[1] == 3 * 0.75f + 1 * 0.25f && canvas[3] == 1.25f);
    CHECK(edgesr_normalize_f32(canvas, sum, 2, 1, 3, out) == EDGESR_OK);
    CHECK(out[0] == 1 && out[1] == 2.5f && out[2] == 3);
    CHECK(out[3] == 5 && out[4] == 6.5f && out[5] == 7);
    CHECK(edgesr_accumulate_f32(canvas, sum, 2, 1, 3, tile, weight, 1, 2, 0, 2) == EDGESR_EINVAL);
}

static void test_to_uint(void) {
    const float in[7] = {-1.0f, NAN, 0.5f, 1.0f, 2.0f, 0.1f, 3.0f / 255};
    uint8_t u8[7];
    uint16_t u16[7];
    const uint8_t want8[7] = {0, 0, 128, 255, 255, 26, 3};
    const uint16_t want16[7] = {0, 0, 32768, 65535, 65535, 6554, 771};
    CHECK(edgesr_to_u8(in, 7, u8) == EDGESR_OK && memcmp(u8, want8, sizeof want8) == 0);
    CHECK(edgesr_to_u16(in, 7, u16) == EDGESR_OK && memcmp(u16, want16, sizeof want16) == 0);
    CHECK(edgesr_to_u8(in, -1, u8) == EDGESR_EINVAL);
}

int main(void) {
    printf("edgesr_blend %s\n", edgesr_blend_version());
    test_extract_tile();
    test_accumulate_normalize();
    test_to_uint();
    CHECK(strcmp(edgesr_status_string(EDGESR_EUNCOVERED), "unknown status") != 0);
    if (failures) fprintf(stderr, "%d check(s) failed\n", failures);
    else printf("all C ABI checks passed\n");
    return failures ? 1 : 0;
}
