// The C ABI of include/edgesr.h: every entry point catches everything, turning it into a status
// code and a per-thread message, so no exception crosses into the host.
#include <memory>
#include <mutex>
#include <new>
#include <string>

#include "edgesr.h"
#include "engine.hpp"
#include "error.hpp"
#include "options.hpp"
#include "upscaler.hpp"

#ifndef EDGESR_VERSION
#define EDGESR_VERSION "0.0.0"
#endif

struct edgesr_session {
    std::unique_ptr<edgesr::Upscaler> upscaler;
    std::mutex progress_mutex;
    edgesr::Progress progress;
};

namespace {

thread_local std::string last_error;

// Run ``body``; on any exception record its message and return its status.
template <typename Body>
int guarded(Body &&body) noexcept {
    try {
        body();
        last_error.clear();
        return EDGESR_SUCCESS;
    } catch (const edgesr::Error &err) {
        try {
            last_error = err.what();
        } catch (...) {
        }
        return err.status;
    } catch (const std::bad_alloc &) {
        try {
            last_error = "out of memory";
        } catch (...) {
        }
        return EDGESR_ERROR_MEMORY;
    } catch (const std::exception &exc) {
        try {
            last_error = std::string("internal error: ") + exc.what();
        } catch (...) {
        }
        return EDGESR_ERROR_INTERNAL;
    } catch (...) {
        try {
            last_error = "internal error: unknown exception";
        } catch (...) {
        }
        return EDGESR_ERROR_INTERNAL;
    }
}

edgesr_session *require(edgesr_session *session) {
    if (!session) edgesr::fail(EDGESR_ERROR_ARGUMENT, "session is NULL");
    return session;
}

template <typename T>
int upscale(edgesr_session *session, const T *in, int width, int height, int channels,
            size_t in_stride, T *out, size_t out_stride) noexcept {
    return guarded([&] {
        require(session);
        edgesr::Progress progress;
        {
            std::lock_guard<std::mutex> lock(session->progress_mutex);
            progress = session->progress;
        }
        session->upscaler->upscale(in, width, height, channels, in_stride, out, out_stride,
                                   progress);
    });
}

}  // namespace

extern "C" {

const char *edgesr_version(void) { return EDGESR_VERSION; }

int edgesr_abi_version(void) { return EDGESR_ABI_VERSION; }

const char *edgesr_backends(void) {
    static const std::string names = [] {
        std::string out;
        for (const auto &entry : edgesr::engine_registry())
            out += (out.empty() ? "" : ",") + entry.first;
        return out;
    }();
    return names.c_str();
}

const char *edgesr_status_message(int status) {
    switch (status) {
        case EDGESR_SUCCESS: return "success";
        case EDGESR_ERROR_ARGUMENT: return "invalid argument";
        case EDGESR_ERROR_OPTIONS: return "invalid options";
        case EDGESR_ERROR_MODEL: return "model missing, unreadable or unsupported";
        case EDGESR_ERROR_BACKEND: return "backend or device unavailable";
        case EDGESR_ERROR_INFERENCE: return "inference failed";
        case EDGESR_ERROR_MEMORY: return "out of memory";
        case EDGESR_ERROR_CANCELLED: return "cancelled by the progress callback";
        case EDGESR_ERROR_INTERNAL: return "internal error";
        default: return "unknown status";
    }
}

int edgesr_session_create(const char *model_path, const char *options, edgesr_session **out) {
    if (out) *out = nullptr;
    return guarded([&] {
        if (!out) edgesr::fail(EDGESR_ERROR_ARGUMENT, "out is NULL");
        if (!model_path || !*model_path)
            edgesr::fail(EDGESR_ERROR_ARGUMENT, "model_path is NULL or empty");
        const edgesr::Options parsed = edgesr::parse_options(options);
        auto session = std::make_unique<edgesr_session>();
        session->upscaler = std::make_unique<edgesr::Upscaler>(
            edgesr::create_engine(model_path, parsed), parsed);
        *out = session.release();
    });
}

void edgesr_session_destroy(edgesr_session *session) { delete session; }

int edgesr_session_scale(const edgesr_session *session) {
    return session ? session->upscaler->scale() : -1;
}

int edgesr_session_channels(const edgesr_session *session) {
    return session ? session->upscaler->channels() : -1;
}

int edgesr_session_set_progress(edgesr_session *session, edgesr_progress_fn callback,
                                void *user_data) {
    return guarded([&] {
        require(session);
        std::lock_guard<std::mutex> lock(session->progress_mutex);
        session->progress = edgesr::Progress{callback, user_data};
    });
}

int edgesr_upscale_u8(edgesr_session *session, const uint8_t *in, int width, int height,
                      int channels, size_t in_stride_bytes, uint8_t *out,
                      size_t out_stride_bytes) {
    return upscale(session, in, width, height, channels, in_stride_bytes, out, out_stride_bytes);
}

int edgesr_upscale_u16(edgesr_session *session, const uint16_t *in, int width, int height,
                       int channels, size_t in_stride_bytes, uint16_t *out,
                       size_t out_stride_bytes) {
    return upscale(session, in, width, height, channels, in_stride_bytes, out, out_stride_bytes);
}

int edgesr_infer_f32(edgesr_session *session, const float *in, int count, int height, int width,
                     float *out) {
    return guarded([&] { require(session)->upscaler->infer(in, count, height, width, out); });
}

const char *edgesr_last_error(const edgesr_session *) { return last_error.c_str(); }

}  // extern "C"
