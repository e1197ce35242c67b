// Engines: what the upscaler needs from a backend (scale, channels, shape rules, inference),
// and the registry that creates one by backend name. A backend is one .cpp file that adds
// itself to the registry table in engine_registry.cpp under its EDGESR_WITH_* macro.
#pragma once

#include <map>
#include <memory>
#include <string>

#include "options.hpp"

namespace edgesr {

struct EngineInfo {
    int scale = 1;
    int in_channels = 3;
    int out_channels = 3;
    int size_multiple = 1;
    int fixed_h = 0, fixed_w = 0;  // > 0: the only input size the engine takes
    int preferred_batch = 1;
    int max_batch = 0;  // 0: unlimited
};

class Engine {
public:
    virtual ~Engine() = default;
    const EngineInfo &info() const { return info_; }
    // Run n NCHW float32 images of (in_channels, h, w) from ``in``; write n outputs of
    // (out_channels, h * scale, w * scale) to ``out``. Thread-safe: concurrent calls run on
    // inference state of their own. Throws Error on failure.
    virtual void infer(const float *in, int n, int h, int w, float *out) = 0;

protected:
    EngineInfo info_;
};

using EngineFactory = std::unique_ptr<Engine> (*)(const std::string &model_path,
                                                  const Options &options);

// Backend name -> factory, for the backends built into this library.
const std::map<std::string, EngineFactory> &engine_registry();

// Create the engine ``options.backend`` names; throws Error(EDGESR_ERROR_BACKEND) when unknown.
std::unique_ptr<Engine> create_engine(const std::string &model_path, const Options &options);

#ifdef EDGESR_WITH_OPENVINO
std::unique_ptr<Engine> create_openvino_engine(const std::string &model_path,
                                               const Options &options);
#endif

}  // namespace edgesr
