// pybind11 module edgesr.kernels._blend_native: thin wrappers over the C ABI.
// Arguments are checked by kernels/native.py (which raises TilingError); here only dtype and
// C-contiguity are enforced, since a silent copy would lose in-place accumulation.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "edgesr_blend.h"

namespace py = pybind11;
using F32 = py::array_t<float, py::array::c_style>;

namespace {

template <typename A>
A checked(const py::array &a, const char *name) {
    if (!A::check_(a)) throw std::invalid_argument(std::string(name) + ": need a C-contiguous array"
                                                   " of the kernel's dtype");
    return py::reinterpret_borrow<A>(a);
}

void raise_on(int status) {
    if (status != EDGESR_OK) throw std::invalid_argument(edgesr_status_string(status));
}

py::array_t<float> extract_tile(const py::array &image_arg, int64_t y0, int64_t x0, int64_t h,
                                int64_t w, int pad_mode) {
    const F32 image = checked<F32>(image_arg, "image");
    const int64_t height = image.shape(image.ndim() - 2), width = image.shape(image.ndim() - 1);
    std::vector<py::ssize_t> shape(image.shape(), image.shape() + image.ndim());
    shape[shape.size() - 2] = h;
    shape[shape.size() - 1] = w;
    py::array_t<float> out(shape);
    const int64_t planes = (height * width) != 0 ? image.size() / (height * width) : 0;
    int status;
    {
        py::gil_scoped_release release;
        status = edgesr_extract_tile_f32(image.data(), planes, height, width, y0, x0, h, w,
                                         pad_mode, out.mutable_data());
    }
    raise_on(status);
    return out;
}

void accumulate(const py::array &canvas_arg, const py::array &sum_arg, const py::array &tile_arg,
                const py::array &weight_arg, int64_t y, int64_t x) {
    F32 canvas = checked<F32>(canvas_arg, "canvas"), sum = checked<F32>(sum_arg, "weight_sum");
    const F32 tile = checked<F32>(tile_arg, "tile_out");
    const F32 weight = checked<F32>(weight_arg, "weight");
    int status;
    {
        py::gil_scoped_release release;
        status = edgesr_accumulate_f32(canvas.mutable_data(), sum.mutable_data(), canvas.shape(0),
                                       canvas.shape(1), canvas.shape(2), tile.data(),
                                       weight.data(), tile.shape(1), tile.shape(2), y, x);
    }
    raise_on(status);
}

int normalize(const py::array &canvas_arg, const py::array &sum_arg, const py::array &out_arg) {
    const F32 canvas = checked<F32>(canvas_arg, "canvas");
    const F32 sum = checked<F32>(sum_arg, "weight_sum");
    F32 out = checked<F32>(out_arg, "out");
    py::gil_scoped_release release;
    return edgesr_normalize_f32(canvas.data(), sum.data(), canvas.shape(0), canvas.shape(1),
                                canvas.shape(2), out.mutable_data());
}

template <typename T>
void to_uint(const py::array &in_arg, const py::array &out_arg) {
    using Out = py::array_t<T, py::array::c_style>;
    const F32 in = checked<F32>(in_arg, "image");
    Out out = checked<Out>(out_arg, "out");
    if (in.size() != out.size()) throw std::invalid_argument("to_uint: sizes differ");
    int status;
    {
        py::gil_scoped_release release;
        if constexpr (sizeof(T) == 1)
            status = edgesr_to_u8(in.data(), in.size(), out.mutable_data());
        else
            status = edgesr_to_u16(in.data(), in.size(), out.mutable_data());
    }
    raise_on(status);
}

}  // namespace

PYBIND11_MODULE(_blend_native, m) {
    m.doc() = "edgesr native tile-blend kernels (C++17, see kernels/include/edgesr_blend.h)";
    m.attr("__version__") = edgesr_blend_version();
    m.attr("PAD_REFLECT") = static_cast<int>(EDGESR_PAD_REFLECT);
    m.attr("PAD_REPLICATE") = static_cast<int>(EDGESR_PAD_REPLICATE);
    m.attr("UNCOVERED") = static_cast<int>(EDGESR_EUNCOVERED);
    m.def("extract_tile", &extract_tile, "Tile (..., h, w) with reflect/replicate padding.");
    m.def("accumulate", &accumulate, "canvas += tile * weight; weight_sum += weight (in place).");
    m.def("normalize", &normalize, "out = canvas / weight_sum; returns a status code.");
    m.def("to_u8", &to_uint<uint8_t>, "float32 -> uint8 into out.");
    m.def("to_u16", &to_uint<uint16_t>, "float32 -> uint16 into out.");
}
