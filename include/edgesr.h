/* libedgesr: tiled super-resolution of camera buffers through a built engine, from C or C++.
 *
 * The same upscale as Python's edgesr.upscaler.Upscaler: tiles planned as edgesr.tiling plans
 * them, reflect padding past the border, the model's size multiple, batched inference, the
 * blend window (default hann8), alpha premultiplication, grey replicated for 3-channel models,
 * and rounding half to even as edgesr writes 8- and 16-bit images.
 *
 * Plain C ABI: opaque handles, int status codes, no C++ exception crosses it, nothing aborts
 * the host. Every function that can fail returns EDGESR_SUCCESS (0) or one of the
 * edgesr_status_code values; edgesr_last_error() then holds a one-line message.
 *
 * Threads: a session may be used from several threads at once. Calls run concurrently: each
 * call borrows its own inference requests from the session's pool (created on demand), so two
 * calls never share mutable state. edgesr_session_set_progress() may be called at any time; a
 * call uses the callback set when it started. edgesr_session_destroy() must not race with any
 * call on the same session. Messages are per thread (see edgesr_last_error).
 *
 * Compilation: the model is compiled for each tile shape on first use (static shapes take less
 * memory than dynamic ones; the last 4 shapes stay compiled), so the first call with
 * a new shape (an image smaller than the tile, or tile=0) also compiles. The model as read is
 * then dropped (its weights live on in the compiled model): a later new shape reads the model
 * file again (a file removed or changed since is an EDGESR_ERROR_MODEL), so keep it in place,
 * or pass keep_model=1.
 */
#ifndef EDGESR_H
#define EDGESR_H

#include <stddef.h>
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

/* Version of this header. edgesr_abi_version() returns the library's EDGESR_ABI_VERSION: a host
 * built against ABI n runs with a library of the same n only. */
#define EDGESR_VERSION_MAJOR 0
#define EDGESR_VERSION_MINOR 1
#define EDGESR_VERSION_PATCH 0
#define EDGESR_ABI_VERSION 1

/* Status codes: the return value of every function that can fail. */
enum edgesr_status_code {
    EDGESR_SUCCESS = 0,
    EDGESR_ERROR_ARGUMENT = 1,   /* null pointer, size < 1, stride too small, 0 or > 4 channels */
    EDGESR_ERROR_OPTIONS = 2,    /* options string: unknown key, bad value, malformed pair */
    EDGESR_ERROR_MODEL = 3,      /* model file missing, unreadable, corrupt or not an upscaler */
    EDGESR_ERROR_BACKEND = 4,    /* backend not built into this library, or device not present */
    EDGESR_ERROR_INFERENCE = 5,  /* the engine failed or returned an unexpected shape */
    EDGESR_ERROR_MEMORY = 6,     /* out of memory, or an image too large to address */
    EDGESR_ERROR_CANCELLED = 7,  /* the progress callback asked to stop; output is incomplete */
    EDGESR_ERROR_INTERNAL = 8    /* a bug in libedgesr: please report it with the message */
};

typedef struct edgesr_session edgesr_session;

/* Progress and cancellation: called on the calling thread after each batch of tiles with the
 * tiles done and the total of this call (done == total at the end). Return 0 to go on,
 * non-zero to stop: the call then returns EDGESR_ERROR_CANCELLED and the output buffer holds
 * no defined result. */
typedef int (*edgesr_progress_fn)(void *user_data, int tiles_done, int tiles_total);

/* Library version, e.g. "0.1.0", and ABI version (EDGESR_ABI_VERSION of the build). */
EDGESR_API const char *edgesr_version(void);
EDGESR_API int edgesr_abi_version(void);
/* Name of the backends built into this library, comma-separated, e.g. "openvino". */
EDGESR_API const char *edgesr_backends(void);
/* One-line description of a status code (never NULL). */
EDGESR_API const char *edgesr_status_message(int status);

/* Load a model and compile it. model_path: an ONNX file written by `edgesr export`, or an
 * OpenVINO IR (.xml beside its .bin) written by `edgesr build`. options: NULL or "" for the
 * defaults, else "key=value;key=value" (spaces around keys and values ignored):
 *   backend=openvino          engine (edgesr_backends() lists those built)
 *   device=CPU                OpenVINO device string passed through: CPU, GPU, GPU.1, NPU, ...
 *   tile=256                  tile size in input pixels, rounded down to the model's size
 *                             multiple; 0 = the whole image in one piece
 *   overlap=32                least overlap between neighbouring tiles, input pixels
 *   batch=0                   tiles per engine round (0 = the engine's preferred number)
 *   blend=hann8               tile window: linear, cosine, hann, hann2, hann4, hann8
 *   pad=reflect               padding past the border: reflect or replicate
 *   premultiply_alpha=1       1: colour premultiplied by alpha before upscaling; 0: independent
 *   threads=0                 engine threads per inference (0 = the engine's default)
 *   precision=                fp32, fp16 or bf16 (default: the precision an IR records, else fp32)
 *   performance=latency       latency or throughput (OpenVINO performance hint)
 *   requests=0                concurrent inference requests per call (0 = the device's optimum)
 *   keep_model=0              1: keep the model as read, for compiling new tile shapes without
 *                             the file (costs memory: about the size of the weights)
 * On success *out is a new session (free it with edgesr_session_destroy); on failure *out is
 * set to NULL when out is not NULL. */
EDGESR_API int edgesr_session_create(const char *model_path, const char *options,
                                     edgesr_session **out);
/* Free a session; NULL is a no-op. No call on it may be running. */
EDGESR_API void edgesr_session_destroy(edgesr_session *session);
/* The model's integer scale, e.g. 4; -1 when session is NULL. */
EDGESR_API int edgesr_session_scale(const edgesr_session *session);
/* The model's input channels: 3 (RGB) or 1 (each channel upscaled alone); -1 when session is
 * NULL. */
EDGESR_API int edgesr_session_channels(const edgesr_session *session);
/* Set (or clear, with callback NULL) the progress callback of calls that start after this. */
EDGESR_API int edgesr_session_set_progress(edgesr_session *session, edgesr_progress_fn callback,
                                           void *user_data);

/* Upscale one interleaved image: channels 1 (grey), 2 (grey + alpha), 3 (RGB) or 4 (RGBA);
 * row i of the input starts at (const uint8_t *)in + i * in_stride_bytes, and row i of the
 * caller-owned output (scale * width x scale * height, same channels) at
 * (uint8_t *)out + i * out_stride_bytes. Strides are in bytes, at least width * channels *
 * sizeof(sample); 16-bit rows must start on 2-byte boundaries. */
EDGESR_API int edgesr_upscale_u8(edgesr_session *session, const uint8_t *in, int width,
                                 int height, int channels, size_t in_stride_bytes, uint8_t *out,
                                 size_t out_stride_bytes);
EDGESR_API int edgesr_upscale_u16(edgesr_session *session, const uint16_t *in, int width,
                                  int height, int channels, size_t in_stride_bytes,
                                  uint16_t *out, size_t out_stride_bytes);

/* The engine alone, for hosts that cut their own tiles and for benchmarks: count NCHW float32
 * tiles of (edgesr_session_channels(), height, width) from in, run through the session's
 * compiled model, requests and batch exactly as edgesr_upscale_* runs its tiles; out receives
 * count tiles of (channels, scale * height, scale * width). Values go in as they are (no
 * clipping); no padding, blending or progress callback. height and width must be multiples of
 * the model's size multiple (and its fixed shape, if it has one). */
EDGESR_API int edgesr_infer_f32(edgesr_session *session, const float *in, int count, int height,
                                int width, float *out);

/* The message of the last call on this thread that returned a non-zero status ("" when the
 * last call succeeded). Per thread: valid until the next libedgesr call on the same thread.
 * session may be NULL (as after a failed edgesr_session_create) and does not change the answer. */
EDGESR_API const char *edgesr_last_error(const edgesr_session *session);

#ifdef __cplusplus
}
#endif

#endif /* EDGESR_H */
