/* C test of libedgesr's ABI, run by ctest (tests/libedgesr/test_ctest.py sets the model).
 *
 * Without a model: version, status messages, NULL pointers, bad options, missing and corrupt
 * models. With EDGESR_TEST_MODEL (an edgesr ONNX file): padded strides and untouched padding,
 * 8 and 16 bit, bad buffers, progress and cancellation, and one session used from 4 threads at
 * once giving the same bytes as the same calls made one after another. Exit 77: no model given,
 * the model checks were skipped (the others passed). Outputs are compared with the Python path
 * in tests/libedgesr/test_upscale.py.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "edgesr.h"

static int failures = 0;

#define CHECK(cond)                                                                   \
    do {                                                                              \
        if (!(cond)) {                                                                \
            fprintf(stderr, "%s:%d: check failed: %s (last error: %s)\n", __FILE__,   \
                    __LINE__, #cond, edgesr_last_error(NULL));                        \
            ++failures;                                                               \
        }                                                                             \
    } while (0)

static int has_message(void) { return strlen(edgesr_last_error(NULL)) > 0; }

static void test_without_model(const char *tmpdir) {
    edgesr_session *session = (edgesr_session *)1;
    char path[1024];
    FILE *f;

    CHECK(strcmp(edgesr_version(), "0.1.0") == 0);
    CHECK(edgesr_abi_version() == EDGESR_ABI_VERSION);
    CHECK(strstr(edgesr_backends(), "openvino") != NULL);
    CHECK(strcmp(edgesr_status_message(EDGESR_SUCCESS), "success") == 0);
    CHECK(strcmp(edgesr_status_message(12345), "unknown status") == 0);

    CHECK(edgesr_session_create("model.onnx", NULL, NULL) == EDGESR_ERROR_ARGUMENT);
    CHECK(strstr(edgesr_last_error(NULL), "out is NULL") != NULL);
    CHECK(edgesr_session_create(NULL, NULL, &session) == EDGESR_ERROR_ARGUMENT);
    CHECK(session == NULL && has_message());
    CHECK(edgesr_session_create("", "", &session) == EDGESR_ERROR_ARGUMENT);
    CHECK(edgesr_session_create("m.onnx", "tile=abc", &session) == EDGESR_ERROR_OPTIONS);
    CHECK(strstr(edgesr_last_error(NULL), "tile=abc") != NULL);
    CHECK(edgesr_session_create("m.onnx", "colour=red", &session) == EDGESR_ERROR_OPTIONS);
    CHECK(strstr(edgesr_last_error(NULL), "unknown option 'colour'") != NULL);
    CHECK(edgesr_session_create("m.onnx", "tile", &session) == EDGESR_ERROR_OPTIONS);
    CHECK(edgesr_session_create("m.onnx", "tile=1;tile=2", &session) == EDGESR_ERROR_OPTIONS);
    CHECK(edgesr_session_create("m.onnx", "blend=box", &session) == EDGESR_ERROR_OPTIONS);
    CHECK(edgesr_session_create("m.onnx", "backend=ncnn", &session) == EDGESR_ERROR_BACKEND);
    CHECK(strstr(edgesr_last_error(NULL), "not built") != NULL);
    CHECK(edgesr_session_create("/nonexistent/m.onnx", "", &session) == EDGESR_ERROR_MODEL);
    CHECK(strstr(edgesr_last_error(NULL), "not found") != NULL && session == NULL);

    snprintf(path, sizeof path, "%s/corrupt.onnx", tmpdir);
    f = fopen(path, "wb");
    CHECK(f != NULL);
    if (f) {
        fputs("this is not a model\n", f);
        fclose(f);
        CHECK(edgesr_session_create(path, NULL, &session) == EDGESR_ERROR_MODEL);
        CHECK(strstr(edgesr_last_error(NULL), "cannot read") != NULL && session == NULL);
    }

    CHECK(edgesr_session_scale(NULL) == -1);
    CHECK(edgesr_session_set_progress(NULL, NULL, NULL) == EDGESR_ERROR_ARGUMENT);
    CHECK(edgesr_upscale_u8(NULL, (const uint8_t *)"", 1, 1, 1, 1, (uint8_t *)path, 16) ==
          EDGESR_ERROR_ARGUMENT);
    CHECK(strstr(edgesr_last_error(NULL), "session is NULL") != NULL);
    edgesr_session_destroy(NULL);
}

/* A deterministic test image: w x h x c bytes at the given stride (padding filled with 0xAB). */
static uint8_t *make_image(int w, int h, int c, size_t stride, unsigned seed) {
    uint8_t *img = malloc(stride * h);
    memset(img, 0xAB, stride * h);
    for (int y = 0; y < h; ++y)
        for (int x = 0; x < w * c; ++x) img[y * stride + x] = (uint8_t)((x * 7 + y * 13 + seed * 31) ^ (x * y));
    return img;
}

typedef struct {
    edgesr_session *session;
    const uint8_t *in;
    int w, h;
    uint8_t *out;
    int status;
} job;

static void *run_job(void *arg) {
    job *j = arg;
    j->status = edgesr_upscale_u8(j->session, j->in, j->w, j->h, 3, (size_t)j->w * 3, j->out,
                                  (size_t)j->w * 3 * edgesr_session_scale(j->session));
    return NULL;
}

static int progress_calls, progress_last, progress_total;
static int count_progress(void *user, int done, int total) {
    (void)user;
    ++progress_calls;
    progress_last = done;
    progress_total = total;
    return 0;
}
static int cancel_now(void *user, int done, int total) {
    (void)done;
    (void)total;
    ++*(int *)user;
    return 1;
}

static void test_with_model(const char *model) {
    edgesr_session *session = NULL;
    const int w = 37, h = 29, c = 3;
    const size_t in_stride = w * c + 5;
    int s, cancelled = 0;

    CHECK(edgesr_session_create(model, "tile=16;overlap=4;threads=1", &session) == 0);
    if (!session) return;
    CHECK(strcmp(edgesr_last_error(session), "") == 0);
    s = edgesr_session_scale(session);
    CHECK(s >= 1);
    {
        const size_t out_stride = (size_t)w * s * c + 11;
        uint8_t *in = make_image(w, h, c, in_stride, 1);
        uint8_t *out = malloc(out_stride * h * s), *tight = malloc((size_t)w * s * c * h * s);
        memset(out, 0xCD, out_stride * h * s);
        CHECK(edgesr_session_set_progress(session, count_progress, NULL) == 0);
        CHECK(edgesr_upscale_u8(session, in, w, h, c, in_stride, out, out_stride) == 0);
        CHECK(progress_calls > 0 && progress_last == progress_total && progress_total >= 4);
        for (int y = 0; y < h * s; ++y)
            for (size_t x = (size_t)w * s * c; x < out_stride; ++x)
                CHECK(out[y * out_stride + x] == 0xCD); /* row padding untouched */
        /* the same image with tight strides gives the same pixels */
        uint8_t *packed = malloc((size_t)w * c * h);
        for (int y = 0; y < h; ++y) memcpy(packed + (size_t)y * w * c, in + y * in_stride, (size_t)w * c);
        CHECK(edgesr_upscale_u8(session, packed, w, h, c, (size_t)w * c, tight, (size_t)w * s * c) == 0);
        for (int y = 0; y < h * s; ++y)
            CHECK(memcmp(out + y * out_stride, tight + (size_t)y * w * s * c, (size_t)w * s * c) == 0);

        /* bad buffers and sizes */
        CHECK(edgesr_upscale_u8(session, NULL, w, h, c, in_stride, out, out_stride) == EDGESR_ERROR_ARGUMENT);
        CHECK(edgesr_upscale_u8(session, in, w, h, c, in_stride, NULL, out_stride) == EDGESR_ERROR_ARGUMENT);
        CHECK(edgesr_upscale_u8(session, in, 0, h, c, in_stride, out, out_stride) == EDGESR_ERROR_ARGUMENT);
        CHECK(edgesr_upscale_u8(session, in, w, -1, c, in_stride, out, out_stride) == EDGESR_ERROR_ARGUMENT);
        CHECK(edgesr_upscale_u8(session, in, w, h, 5, in_stride, out, out_stride) == EDGESR_ERROR_ARGUMENT);
        CHECK(strstr(edgesr_last_error(session), "got 5") != NULL);
        CHECK(edgesr_upscale_u8(session, in, w, h, 0, in_stride, out, out_stride) == EDGESR_ERROR_ARGUMENT);
        CHECK(edgesr_upscale_u8(session, in, w, h, c, w * c - 1, out, out_stride) == EDGESR_ERROR_ARGUMENT);
        CHECK(strstr(edgesr_last_error(session), "stride too small") != NULL);
        CHECK(edgesr_upscale_u16(session, (const uint16_t *)(in + 1), w, h, c, in_stride * 2,
                                 (uint16_t *)out, out_stride) == EDGESR_ERROR_ARGUMENT);

        /* cancellation: the first progress report stops the call */
        CHECK(edgesr_session_set_progress(session, cancel_now, &cancelled) == 0);
        CHECK(edgesr_upscale_u8(session, in, w, h, c, in_stride, out, out_stride) == EDGESR_ERROR_CANCELLED);
        CHECK(cancelled == 1 && strstr(edgesr_last_error(session), "cancelled") != NULL);
        CHECK(edgesr_session_set_progress(session, NULL, NULL) == 0);
        {   /* the session works as before after a cancel */
            uint8_t *again = malloc((size_t)w * s * c * h * s);
            CHECK(edgesr_upscale_u8(session, packed, w, h, c, (size_t)w * c, again,
                                    (size_t)w * s * c) == 0);
            CHECK(memcmp(again, tight, (size_t)w * s * c * h * s) == 0);
            free(again);
        }
        free(in);
        free(out);
        free(tight);
        free(packed);
    }
    {   /* 16 bit: an 8-bit image scaled by 257 gives the 8-bit result scaled by 257, +-257 */
        uint16_t *in16 = malloc(sizeof(uint16_t) * w * c * h), *out16 = malloc(sizeof(uint16_t) * w * s * c * h * s);
        uint8_t *in8 = make_image(w, h, c, (size_t)w * c, 2), *out8 = malloc((size_t)w * s * c * h * s);
        for (int i = 0; i < w * c * h; ++i) in16[i] = (uint16_t)(in8[i] * 257);
        CHECK(edgesr_upscale_u8(session, in8, w, h, c, (size_t)w * c, out8, (size_t)w * s * c) == 0);
        CHECK(edgesr_upscale_u16(session, in16, w, h, c, sizeof(uint16_t) * w * c, out16,
                                 sizeof(uint16_t) * w * s * c) == 0);
        int worst = 0;
        for (int i = 0; i < w * s * c * h * s; ++i) {
            const int d = abs((int)out16[i] - (int)out8[i] * 257);
            worst = d > worst ? d : worst;
        }
        CHECK(worst <= 257);
        free(in16);
        free(out16);
        free(in8);
        free(out8);
    }
    {   /* 4 threads at once on one session: the bytes of the same calls made one by one */
        enum { N = 4 };
        job jobs[N];
        pthread_t threads[N];
        uint8_t *expected[N];
        for (int i = 0; i < N; ++i) {
            const int jw = 20 + 9 * i, jh = 17 + 5 * i;
            const size_t bytes = (size_t)jw * s * 3 * jh * s;
            jobs[i] = (job){session, make_image(jw, jh, 3, (size_t)jw * 3, 10 + i), jw, jh,
                            malloc(bytes), -1};
            expected[i] = malloc(bytes);
            CHECK(edgesr_upscale_u8(session, jobs[i].in, jw, jh, 3, (size_t)jw * 3, expected[i],
                                    (size_t)jw * s * 3) == 0);
        }
        for (int i = 0; i < N; ++i) CHECK(pthread_create(&threads[i], NULL, run_job, &jobs[i]) == 0);
        for (int i = 0; i < N; ++i) pthread_join(threads[i], NULL);
        for (int i = 0; i < N; ++i) {
            CHECK(jobs[i].status == 0);
            CHECK(memcmp(jobs[i].out, expected[i], (size_t)jobs[i].w * s * 3 * jobs[i].h * s) == 0);
            free((void *)jobs[i].in);
            free(jobs[i].out);
            free(expected[i]);
        }
    }
    edgesr_session_destroy(session);
}

int main(void) {
    const char *model = getenv("EDGESR_TEST_MODEL");
    const char *tmpdir = getenv("TMPDIR");
    printf("libedgesr %s (ABI %d), backends: %s\n", edgesr_version(), edgesr_abi_version(),
           edgesr_backends());
    test_without_model(tmpdir && *tmpdir ? tmpdir : "/tmp");
    if (model && *model) test_with_model(model);
    if (failures) {
        printf("%d check(s) failed\n", failures);
        return 1;
    }
    if (!(model && *model)) {
        printf("model checks skipped: set EDGESR_TEST_MODEL to an edgesr ONNX file\n");
        return 77;
    }
    printf("all checks passed\n");
    return 0;
}
