// Tile plan and blend windows: C++ ports of edgesr/tiling.py (plan_tiles) and
// kernels/blend.py (window_1d, tile_weight), same integer arithmetic and float64 windows.
#pragma once

#include <array>
#include <string>
#include <vector>

namespace edgesr {

struct Tile {
    int y, x, h, w;                // model input: image[y:y+h, x:x+w], padded past the border
    int valid_h, valid_w;          // the part inside the image
    std::array<int, 4> overlap;    // top, bottom, left, right; 0 on sides at the image border
};

int round_up(int value, int multiple);

// Tiles covering a height x width image, row-major. tile_h/tile_w must be multiples of
// ``multiple`` and > overlap; fixed_shape: every tile is exactly tile_h x tile_w.
std::vector<Tile> plan_tiles(int height, int width, int tile_h, int tile_w, int overlap,
                             int multiple, bool fixed_shape);

// True when ``kind`` names a blend window.
bool is_blend_kind(const std::string &kind);

// (h, w) float32 weights of a tile with the given (top, bottom, left, right) overlaps.
std::vector<float> tile_weight(int h, int w, const std::array<int, 4> &overlaps,
                               const std::string &kind);

}  // namespace edgesr
