// Session options: parsed from "key=value;key=value" (see include/edgesr.h for the keys).
#pragma once

#include <string>

namespace edgesr {

struct Options {
    std::string backend = "openvino";
    std::string device = "CPU";
    int tile = 256;  // 0: whole image
    int overlap = 32;
    int batch = 0;  // 0: the engine's preferred batch
    std::string blend = "hann8";
    std::string pad = "reflect";
    bool premultiply_alpha = true;
    int threads = 0;
    std::string precision;  // "": the IR's recorded hint, else fp32
    std::string performance = "latency";
    int requests = 0;  // 0: the device's optimal number
    bool keep_model = false;  // keep the read model for later compiles (else read it again)
};

// Parse ``text`` (NULL or "" gives the defaults); throws Error(EDGESR_ERROR_OPTIONS) naming the
// bad key or value.
Options parse_options(const char *text);

}  // namespace edgesr
