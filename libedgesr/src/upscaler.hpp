// The upscale itself: edgesr/upscaler.py's Upscaler over an Engine, on interleaved integer
// buffers with row strides. Thread-safe: every call borrows its own engine context.
#pragma once

#include <cstddef>
#include <memory>
#include <mutex>
#include <vector>

#include "edgesr.h"
#include "engine.hpp"
#include "options.hpp"

namespace edgesr {

struct Progress {
    edgesr_progress_fn callback = nullptr;
    void *user_data = nullptr;
};

class Upscaler {
public:
    // Checks tile, overlap and blend against the engine's shape rules (Error on mismatch).
    Upscaler(std::unique_ptr<Engine> engine, const Options &options);

    int scale() const { return engine_->info().scale; }

    // ``in``/``out``: interleaved samples of type T (uint8_t or uint16_t), rows ``*_stride``
    // bytes apart; out is (scale * height) x (scale * width) x channels.
    template <typename T>
    void upscale(const T *in, int width, int height, int channels, size_t in_stride, T *out,
                 size_t out_stride, const Progress &progress);

private:
    std::unique_ptr<Engine::Context> acquire();
    void release(std::unique_ptr<Engine::Context> context);
    // Upscale (planes, C, H, W) float planes into the normalised (planes * C, sH, sW) canvas.
    std::vector<float> run(const std::vector<float> &planes, int n_planes, int height, int width,
                           const Progress &progress);

    std::unique_ptr<Engine> engine_;
    Options options_;
    int batch_;
    std::mutex pool_mutex_;
    std::vector<std::unique_ptr<Engine::Context>> pool_;
};

}  // namespace edgesr
