// edgesr/upscaler.py's Upscaler in C++: the same tile plan, planes, batching, window, blend
// order, alpha handling and rounding, so outputs match the Python path.
#include "upscaler.hpp"

#include <algorithm>
#include <climits>
#include <cstdint>
#include <cstring>
#include <map>
#include <tuple>
#include <type_traits>

#include "edgesr_blend.h"
#include "error.hpp"
#include "plan.hpp"

namespace edgesr {
namespace {

// Below this upscaled alpha (half a 16-bit step) a pixel is invisible: its colour becomes 0.
// NumPy compares float32 arrays with it as a float32 (NEP 50).
const float kAlphaEps = static_cast<float>(0.5 / 65535);

void kernel(int status, const char *what) {
    if (status != EDGESR_OK)
        fail(EDGESR_ERROR_INTERNAL, std::string(what) + ": " + edgesr_status_string(status));
}

// Mean of three float32 values summed in float64, as upscaler._grey does.
inline float grey(float a, float b, float c) {
    return static_cast<float>((static_cast<double>(a) + b + c) / 3.0);
}

inline float clip01(float v) {  // np.clip: NaN stays NaN (to_uint maps it to 0)
    v = v < 0.0f ? 0.0f : v;
    return v > 1.0f ? 1.0f : v;
}

}  // namespace

Upscaler::Upscaler(std::unique_ptr<Engine> engine, const Options &options)
    : engine_(std::move(engine)), options_(options) {
    const EngineInfo &info = engine_->info();
    if ((info.in_channels != 1 && info.in_channels != 3) || info.out_channels != info.in_channels)
        fail(EDGESR_ERROR_MODEL, "models with " + std::to_string(info.in_channels) + " input and " +
                                     std::to_string(info.out_channels) + " output channels are "
                                     "not supported (need 1 -> 1 or 3 -> 3)");
    batch_ = options.batch > 0 ? options.batch : info.preferred_batch;
    if (info.max_batch > 0) batch_ = std::min(batch_, info.max_batch);
    if (!is_blend_kind(options.blend))
        fail(EDGESR_ERROR_OPTIONS, "unknown blend '" + options.blend + "'");
    const int m = info.size_multiple;
    const int smallest = info.fixed_h > 0 ? std::min(info.fixed_h, info.fixed_w)
                         : options.tile > 0 ? std::max(m, options.tile / m * m) : 0;
    if (smallest > 0 && options.overlap >= smallest)
        fail(EDGESR_ERROR_OPTIONS, "overlap " + std::to_string(options.overlap) +
                                       " must be smaller than the tile size " +
                                       std::to_string(smallest));
}

std::vector<float> Upscaler::run(const std::vector<float> &planes, int n_planes, int height,
                                 int width, const Progress &progress) {
    const EngineInfo &info = engine_->info();
    const int s = info.scale, c_in = info.in_channels, c_out = info.out_channels;
    const int m = info.size_multiple;
    std::vector<Tile> tiles;
    if (info.fixed_h > 0)
        tiles = plan_tiles(height, width, info.fixed_h, info.fixed_w, options_.overlap, 1, true);
    else if (options_.tile == 0)
        tiles = plan_tiles(height, width, round_up(height, m), round_up(width, m), 0, m, false);
    else {
        const int t = std::max(m, options_.tile / m * m);
        tiles = plan_tiles(height, width, t, t, options_.overlap, m, false);
    }
    const int th = tiles[0].h, tw = tiles[0].w;  // one size for every tile of a plan
    const int64_t out_h = int64_t{height} * s, out_w = int64_t{width} * s;
    const size_t plane = size_t(height) * width, in_size = size_t(c_in) * th * tw;
    const size_t out_size = size_t(c_out) * th * s * tw * s;
    const int64_t canvas_c = int64_t{n_planes} * c_out;
    std::vector<float> canvas(size_t(canvas_c) * out_h * out_w, 0.0f);
    std::vector<float> weight_sum(size_t(out_h) * out_w, 0.0f);
    std::vector<float> batch_in(size_t(batch_) * in_size);
    // Engine outputs: the planes of a tile the last batch left unfinished, then a batch.
    std::vector<float> outputs(size_t(batch_ + n_planes - 1) * out_size);
    size_t held = 0;  // outputs of unfinished tiles at the front of ``outputs``
    std::map<std::tuple<int, int, int, int, int, int>, std::vector<float>> weights;
    std::vector<float> crop;
    const int pad = options_.pad == "replicate" ? EDGESR_PAD_REPLICATE : EDGESR_PAD_REFLECT;
    const int jobs = static_cast<int>(tiles.size()) * n_planes;
    size_t finished = 0;

    for (int start = 0; start < jobs; start += batch_) {
        const int n = std::min(batch_, jobs - start);
        for (int k = 0; k < n; ++k) {
            const Tile &t = tiles[(start + k) / n_planes];
            const int p = (start + k) % n_planes;
            kernel(edgesr_extract_tile_f32(planes.data() + p * c_in * plane, c_in, height, width,
                                           t.y, t.x, t.h, t.w, pad,
                                           batch_in.data() + k * in_size),
                   "extract_tile");
        }
        engine_->infer(batch_in.data(), n, th, tw, outputs.data() + held * out_size);
        held += n;
        size_t used = 0;
        for (; held - used >= size_t(n_planes); used += n_planes) {  // a tile's planes are back
            const Tile &t = tiles[finished++];
            const int vh = t.valid_h * s, vw = t.valid_w * s;
            const auto key = std::make_tuple(vh, vw, t.overlap[0], t.overlap[1], t.overlap[2],
                                             t.overlap[3]);
            auto found = weights.find(key);
            if (found == weights.end()) {
                const std::array<int, 4> scaled{t.overlap[0] * s, t.overlap[1] * s,
                                                t.overlap[2] * s, t.overlap[3] * s};
                found = weights.emplace(key, tile_weight(vh, vw, scaled, options_.blend)).first;
            }
            // (planes * C, vh, vw): the outputs themselves when the whole tile is inside
            const float *part = outputs.data() + used * out_size;
            if (vh != th * s || vw != tw * s) {
                crop.resize(size_t(canvas_c) * vh * vw);
                for (int c = 0; c < canvas_c; ++c)  // plane p's channel k is output c = p*C + k
                    for (int y = 0; y < vh; ++y)
                        std::memcpy(crop.data() + (size_t(c) * vh + y) * vw,
                                    part + (size_t(c) * th * s + y) * tw * s,
                                    size_t(vw) * sizeof(float));
                part = crop.data();
            }
            kernel(edgesr_accumulate_f32(canvas.data(), weight_sum.data(), canvas_c, out_h, out_w,
                                         part, found->second.data(), vh, vw, int64_t{t.y} * s,
                                         int64_t{t.x} * s),
                   "accumulate");
        }
        held -= used;  // an unfinished tile's planes move to the front
        std::memmove(outputs.data(), outputs.data() + used * out_size,
                     held * out_size * sizeof(float));
        if (progress.callback && progress.callback(progress.user_data, start + n, jobs) != 0)
            fail(EDGESR_ERROR_CANCELLED, "cancelled by the progress callback after " +
                                             std::to_string(start + n) + " of " +
                                             std::to_string(jobs) + " tiles");
    }
    kernel(edgesr_normalize_f32(canvas.data(), weight_sum.data(), canvas_c, out_h, out_w,
                                canvas.data()),
           "normalize");
    return canvas;
}

void Upscaler::infer(const float *in, int n, int h, int w, float *out) {
    const EngineInfo &info = engine_->info();
    if (!in || !out) fail(EDGESR_ERROR_ARGUMENT, "infer: in or out is NULL");
    if (n < 1 || h < 1 || w < 1)
        fail(EDGESR_ERROR_ARGUMENT, "infer: count, height and width must be positive, got " +
                                        std::to_string(n) + ", " + std::to_string(h) + ", " +
                                        std::to_string(w));
    if (h % info.size_multiple || w % info.size_multiple)
        fail(EDGESR_ERROR_ARGUMENT, "infer: height and width must be multiples of " +
                                        std::to_string(info.size_multiple) + ", got " +
                                        std::to_string(h) + "x" + std::to_string(w));
    if (int64_t{w} * info.scale > INT_MAX / 4 || int64_t{h} * info.scale > INT_MAX / 4)
        fail(EDGESR_ERROR_MEMORY, "infer: tiles too large: " + std::to_string(w) + "x" +
                                      std::to_string(h) + " at scale " +
                                      std::to_string(info.scale));
    const size_t in_size = size_t(info.in_channels) * h * w;
    const size_t out_size = size_t(info.out_channels) * h * w * info.scale * info.scale;
    for (int start = 0; start < n; start += batch_)
        engine_->infer(in + start * in_size, std::min(batch_, n - start), h, w,
                       out + start * out_size);
}

template <typename T>
void Upscaler::upscale(const T *in, int width, int height, int channels, size_t in_stride,
                       T *out, size_t out_stride, const Progress &progress) {
    static_assert(std::is_same_v<T, uint8_t> || std::is_same_v<T, uint16_t>);
    const char *kind = sizeof(T) == 1 ? "u8" : "u16";
    if (!in || !out) fail(EDGESR_ERROR_ARGUMENT, std::string(kind) + ": in or out is NULL");
    if (width < 1 || height < 1)
        fail(EDGESR_ERROR_ARGUMENT, "image size must be positive, got " + std::to_string(width) +
                                        "x" + std::to_string(height));
    if (channels < 1 || channels > 4)
        fail(EDGESR_ERROR_ARGUMENT, "channels must be 1 (grey), 2 (grey + alpha), 3 (RGB) or "
                                    "4 (RGBA), got " + std::to_string(channels));
    const int s = scale();
    if (int64_t{width} * s > INT_MAX / 4 || int64_t{height} * s > INT_MAX / 4)
        fail(EDGESR_ERROR_MEMORY, "image too large: " + std::to_string(width) + "x" +
                                      std::to_string(height) + " at scale " + std::to_string(s));
    const int out_w = width * s, out_h = height * s;
    const size_t in_row = size_t(width) * channels * sizeof(T);
    const size_t out_row = size_t(out_w) * channels * sizeof(T);
    if (in_stride < in_row || out_stride < out_row)
        fail(EDGESR_ERROR_ARGUMENT, "stride too small: in " + std::to_string(in_stride) +
                                        " bytes (rows need " + std::to_string(in_row) + "), out " +
                                        std::to_string(out_stride) + " (rows need " +
                                        std::to_string(out_row) + ")");
    if (sizeof(T) > 1 && (in_stride % sizeof(T) || out_stride % sizeof(T) ||
                          reinterpret_cast<uintptr_t>(in) % sizeof(T) ||
                          reinterpret_cast<uintptr_t>(out) % sizeof(T)))
        fail(EDGESR_ERROR_ARGUMENT, "u16: buffers and strides must be 2-byte aligned");

    const T max_value = static_cast<T>(sizeof(T) == 1 ? 255 : 65535);
    const float scale_in = static_cast<float>(max_value);
    const size_t plane = size_t(height) * width;
    auto row_in = [&](int y) {
        return reinterpret_cast<const T *>(reinterpret_cast<const char *>(in) + y * in_stride);
    };
    // Opaque alpha (all at the maximum) is dropped and put back as 1 at the end.
    bool opaque = channels == 2 || channels == 4;
    for (int y = 0; opaque && y < height; ++y)
        for (int x = 0; x < width; ++x)
            if (row_in(y)[size_t(x) * channels + channels - 1] != max_value) {
                opaque = false;
                break;
            }
    const int cc = opaque ? channels - 1 : channels;  // channels upscaled
    const bool has_alpha = cc == 2 || cc == 4;
    const bool premultiplied = has_alpha && options_.premultiply_alpha;
    const int colour_n = has_alpha ? cc - 1 : cc;

    std::vector<float> chw(size_t(cc) * plane);
    for (int y = 0; y < height; ++y) {
        const T *row = row_in(y);
        for (int x = 0; x < width; ++x)
            for (int c = 0; c < cc; ++c)
                chw[c * plane + size_t(y) * width + x] =
                    static_cast<float>(row[size_t(x) * channels + c]) / scale_in;
    }
    if (premultiplied)
        for (int c = 0; c < colour_n; ++c)
            for (size_t i = 0; i < plane; ++i) chw[c * plane + i] *= chw[colour_n * plane + i];

    // Model inputs: a 1-channel model takes every channel on its own; a 3-channel one takes the
    // colour (grey replicated) and, with alpha, the alpha replicated as a second plane.
    const int c_in = engine_->info().in_channels;
    int n_planes = cc;
    std::vector<float> planes;
    if (c_in == 1) {
        planes = std::move(chw);
    } else {
        n_planes = has_alpha ? 2 : 1;
        planes.resize(size_t(n_planes) * 3 * plane);
        for (int c = 0; c < 3; ++c)
            std::memcpy(planes.data() + c * plane, chw.data() + (colour_n == 3 ? c : 0) * plane,
                        plane * sizeof(float));
        if (has_alpha)
            for (int c = 0; c < 3; ++c)
                std::memcpy(planes.data() + (3 + c) * plane, chw.data() + colour_n * plane,
                            plane * sizeof(float));
        std::vector<float>().swap(chw);
    }
    const std::vector<float> canvas = run(planes, n_planes, height, width, progress);
    std::vector<float>().swap(planes);

    const size_t out_plane = size_t(out_h) * out_w;
    std::vector<float> row(size_t(out_w) * channels);
    float v[4];
    for (int y = 0; y < out_h; ++y) {
        for (int x = 0; x < out_w; ++x) {
            const float *px = canvas.data() + size_t(y) * out_w + x;  // channel c at c*out_plane
            if (c_in == 1) {
                for (int c = 0; c < cc; ++c) v[c] = px[c * out_plane];
            } else {
                if (colour_n == 3)
                    for (int c = 0; c < 3; ++c) v[c] = px[c * out_plane];
                else
                    v[0] = grey(px[0], px[out_plane], px[2 * out_plane]);
                if (has_alpha)
                    v[colour_n] = grey(px[3 * out_plane], px[4 * out_plane], px[5 * out_plane]);
            }
            for (int c = 0; c < cc; ++c) v[c] = clip01(v[c]);
            if (premultiplied) {
                const float alpha = v[colour_n];
                for (int c = 0; c < colour_n; ++c) {
                    const float colour = alpha > kAlphaEps ? v[c] / alpha : 0.0f;
                    v[c] = colour > 1.0f ? 1.0f : colour;  // np.minimum: NaN stays NaN
                }
            }
            if (opaque) v[cc] = 1.0f;
            std::memcpy(row.data() + size_t(x) * channels, v, sizeof(float) * channels);
        }
        T *dst = reinterpret_cast<T *>(reinterpret_cast<char *>(out) + y * out_stride);
        if constexpr (std::is_same_v<T, uint8_t>)
            kernel(edgesr_to_u8(row.data(), int64_t(row.size()), dst), "to_u8");
        else
            kernel(edgesr_to_u16(row.data(), int64_t(row.size()), dst), "to_u16");
    }
}

template void Upscaler::upscale<uint8_t>(const uint8_t *, int, int, int, size_t, uint8_t *,
                                         size_t, const Progress &);
template void Upscaler::upscale<uint16_t>(const uint16_t *, int, int, int, size_t, uint16_t *,
                                          size_t, const Progress &);

}  // namespace edgesr
