// The upscale itself: edgesr/upscaler.py's Upscaler over an Engine, on interleaved integer
// buffers with row strides. Thread-safe as its engine is: calls share nothing else.
#pragma once

#include <cstddef>
#include <memory>
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
    int channels() const { return engine_->info().in_channels; }

    // The engine alone on n NCHW float32 tiles of (channels, h, w), in rounds of the batch
    // ``upscale`` uses; out gets n tiles of (channels, h * scale, w * scale).
    void infer(const float *in, int n, int h, int w, float *out);

    // ``in``/``out``: interleaved samples of type T (uint8_t or uint16_t), rows ``*_stride``
    // bytes apart; out is (scale * height) x (scale * width) x channels.
    template <typename T>
    void upscale(const T *in, int width, int height, int channels, size_t in_stride, T *out,
                 size_t out_stride, const Progress &progress);

private:
    // Upscale (planes, C, H, W) float planes into the normalised (planes * C, sH, sW) canvas.
    std::vector<float> run(const std::vector<float> &planes, int n_planes, int height, int width,
                           const Progress &progress);

    std::unique_ptr<Engine> engine_;
    Options options_;
    int batch_;
};

}  // namespace edgesr
