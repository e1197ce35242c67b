// Tile plan (edgesr/tiling.py) and blend windows (kernels/blend.py): see those for the why.
#include "plan.hpp"

#include <algorithm>
#include <cmath>
#include <map>

namespace edgesr {
namespace {

struct Span {
    int start, size, valid, before, after;
};


std::vector<Span> plan_axis(int length, int tile, int overlap, int multiple, bool fixed_shape) {
    const int extent = round_up(length, multiple);
    if (extent <= tile) return {Span{0, fixed_shape ? tile : extent, length, 0, 0}};
    const int stride = tile - overlap;
    const int count = (extent - tile + stride - 1) / stride + 1;
    std::vector<int> starts(count);
    for (int i = 0; i < count; ++i)
        starts[i] = static_cast<int>(int64_t{i} * (extent - tile) / (count - 1));
    std::vector<Span> spans;
    for (int i = 0; i < count; ++i) {
        const int before = i > 0 ? starts[i - 1] + tile - starts[i] : 0;
        const int after = i < count - 1 ? starts[i] + tile - starts[i + 1] : 0;
        spans.push_back(Span{starts[i], tile, std::min(tile, length - starts[i]), before, after});
    }
    return spans;
}

struct Kind {
    bool cosine;      // shape "cosine" (else "linear")
    bool whole_tile;  // ramp over half the tile (else over the overlap)
    int power;
};

const std::map<std::string, Kind> &kinds() {
    static const std::map<std::string, Kind> table = {
        {"linear", {false, false, 1}}, {"cosine", {true, false, 1}}, {"hann", {true, true, 1}},
        {"hann2", {true, true, 2}},    {"hann4", {true, true, 4}},   {"hann8", {true, true, 8}},
    };
    return table;
}

constexpr double kWeightFloor = 0x1p-100;  // kernels/blend.py WEIGHT_FLOOR
constexpr double kPi = 3.141592653589793;               // numpy.pi

std::vector<float> window_1d(int length, int before, int after, const Kind &kind) {
    std::vector<float> out(length);
    for (int i = 0; i < length; ++i) {
        double u = 1.0;
        const double sides[2][2] = {{double(before), i + 0.5}, {double(after), length - i - 0.5}};
        for (const auto &side : sides) {
            if (side[0] > 0) {
                const double ramp = kind.whole_tile ? length / 2.0 : side[0];
                u = std::min(u, side[1] / ramp);
            }
        }
        const double f = kind.cosine ? 0.5 - 0.5 * std::cos(kPi * u) : u;
        double w = f;
        for (int p = 1; p < kind.power; ++p) w = w * f;
        out[i] = static_cast<float>(std::max(w, kWeightFloor));
    }
    return out;
}

}  // namespace

int round_up(int value, int multiple) { return (value + multiple - 1) / multiple * multiple; }

std::vector<Tile> plan_tiles(int height, int width, int tile_h, int tile_w, int overlap,
                             int multiple, bool fixed_shape) {
    const auto rows = plan_axis(height, tile_h, overlap, multiple, fixed_shape);
    const auto cols = plan_axis(width, tile_w, overlap, multiple, fixed_shape);
    std::vector<Tile> tiles;
    tiles.reserve(rows.size() * cols.size());
    for (const auto &r : rows)
        for (const auto &c : cols)
            tiles.push_back(Tile{r.start, c.start, r.size, c.size, r.valid, c.valid,
                                 {r.before, r.after, c.before, c.after}});
    return tiles;
}

bool is_blend_kind(const std::string &kind) { return kinds().count(kind) > 0; }

std::vector<float> tile_weight(int h, int w, const std::array<int, 4> &overlaps,
                               const std::string &kind) {
    const Kind &k = kinds().at(kind);
    const auto wy = window_1d(h, overlaps[0], overlaps[1], k);
    const auto wx = window_1d(w, overlaps[2], overlaps[3], k);
    const float floor = static_cast<float>(kWeightFloor);
    std::vector<float> out(static_cast<size_t>(h) * w);
    for (int y = 0; y < h; ++y)
        for (int x = 0; x < w; ++x) {
            const float v = wy[y] * wx[x];
            out[static_cast<size_t>(y) * w + x] = v > floor ? v : floor;
        }
    return out;
}

}  // namespace edgesr
