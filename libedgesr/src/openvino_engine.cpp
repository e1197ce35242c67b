// OpenVINO engine: compiles an edgesr ONNX model or an IR (.xml + .bin) as
// runtimes/openvino_runtime.py does (same compile properties, same metadata, same probe for
// models without metadata) and deals the images of a batch round-robin to async infer requests.
#include <openvino/frontend/manager.hpp>
#include <openvino/openvino.hpp>

#include <cstring>
#include <fstream>
#include <set>
#include <vector>

#include "engine.hpp"
#include "error.hpp"

namespace edgesr {
namespace {

std::string first_line(const std::exception &exc) {
    std::string text = exc.what();
    // OpenVINO prefixes messages with "Exception from src/...:LINE:" lines: skip those.
    size_t start = 0;
    while (start < text.size()) {
        size_t end = text.find('\n', start);
        if (end == std::string::npos) end = text.size();
        std::string line = text.substr(start, end - start);
        start = end + 1;
        if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
        if (line.rfind("Exception from ", 0) == 0 || line.rfind("Check '", 0) == 0) continue;
        return line;
    }
    return text.empty() ? "unknown error" : text.substr(0, text.find('\n'));
}

const std::map<std::string, std::string> kPrecisionHints = {
    {"fp32", "f32"}, {"fp16", "f16"}, {"bf16", "bf16"}};

// edgesr metadata key -> value: ONNX metadata_props land in rt_info "framework" as
// "edgesr.<key>", IRs written by `edgesr build` carry them under "edgesr".
std::map<std::string, std::string> read_metadata(const std::shared_ptr<ov::Model> &model) {
    std::map<std::string, std::string> meta;
    for (const char *key : {"scale", "in_channels", "out_channels", "size_multiple"}) {
        for (const std::vector<std::string> &path :
             {std::vector<std::string>{"framework", std::string("edgesr.") + key},
              std::vector<std::string>{"edgesr", key}}) {
            if (model->has_rt_info(path)) {
                meta[key] = model->get_rt_info<ov::Any>(path).as<std::string>();
                break;
            }
        }
    }
    return meta;
}

// Scale, channels and size multiple of a model without metadata, by shape inference at probe
// sizes (64 + m must pass for size multiple m), as openvino_runtime.probe_metadata does.
std::map<std::string, std::string> probe_metadata(const std::string &path,
                                                  const std::shared_ptr<ov::Model> &model) {
    const auto channels = model->input(0).get_partial_shape();
    if (channels.rank().is_dynamic() || channels.rank().get_length() != 4 ||
        channels[1].is_dynamic())
        fail(EDGESR_ERROR_MODEL, path + ": input channels are dynamic and no edgesr metadata "
                                        "says how many; export the model with `edgesr export`");
    const int64_t c = channels[1].get_length();
    for (int64_t multiple : {1, 2, 4, 8}) {
        auto probe = model->clone();
        try {
            probe->reshape({{probe->input(0), ov::PartialShape{1, c, 64 + multiple, 64}}});
        } catch (const std::exception &) {
            continue;
        }
        const auto out = probe->output(0).get_partial_shape();
        if (out.is_static() && out.size() == 4 && out[2].get_length() % (64 + multiple) == 0)
            return {{"scale", std::to_string(out[2].get_length() / (64 + multiple))},
                    {"in_channels", std::to_string(c)},
                    {"out_channels", std::to_string(out[1].get_length())},
                    {"size_multiple", std::to_string(multiple)}};
    }
    fail(EDGESR_ERROR_MODEL, path + ": cannot tell its scale (no edgesr metadata, and shape "
                                    "inference fails); export the model with `edgesr export`");
}

int meta_int(const std::map<std::string, std::string> &meta, const std::string &key,
             const std::string &path, int fallback) {
    const auto it = meta.find(key);
    if (it == meta.end()) return fallback;
    try {
        size_t used = 0;
        const int v = std::stoi(it->second, &used);
        if (used == it->second.size() && v >= 1) return v;
    } catch (const std::exception &) {
    }
    fail(EDGESR_ERROR_MODEL, path + ": metadata " + key + "=" + it->second + " is not a " +
                                 "positive integer");
}

class OpenVINOEngine final : public Engine {
public:
    OpenVINOEngine(const std::string &path, const Options &options) : options_(options) {
        check_device();
        std::shared_ptr<ov::Model> model = read(path);
        auto meta = read_metadata(model);
        if (!meta.count("scale") || !meta.count("in_channels") || !meta.count("out_channels"))
            meta = probe_metadata(path, model);
        info_.scale = meta_int(meta, "scale", path, 1);
        info_.in_channels = meta_int(meta, "in_channels", path, 3);
        info_.out_channels = meta_int(meta, "out_channels", path, 3);
        info_.size_multiple = meta_int(meta, "size_multiple", path, 1);
        const auto shape = model->input(0).get_partial_shape();
        if (shape.rank().is_static() && shape.rank().get_length() == 4 && shape[2].is_static() &&
            shape[3].is_static()) {
            info_.fixed_h = static_cast<int>(shape[2].get_length());
            info_.fixed_w = static_cast<int>(shape[3].get_length());
        }
        try {
            compiled_ = core_.compile_model(model, options.device, properties(*model));
            info_.preferred_batch = options.requests > 0
                ? options.requests
                : static_cast<int>(compiled_.get_property(ov::optimal_number_of_infer_requests));
        } catch (const std::exception &exc) {
            fail(EDGESR_ERROR_BACKEND, "openvino: compiling for " + options.device +
                                           " failed: " + first_line(exc));
        }
        if (info_.preferred_batch < 1) info_.preferred_batch = 1;
    }

    std::unique_ptr<Context> context() override {
        try {
            return std::make_unique<RequestContext>(compiled_, info_, info_.preferred_batch);
        } catch (const Error &) {
            throw;
        } catch (const std::exception &exc) {
            fail(EDGESR_ERROR_INFERENCE, "openvino: cannot create infer requests: " +
                                             first_line(exc));
        }
    }

private:
    class RequestContext final : public Context {
    public:
        RequestContext(ov::CompiledModel &compiled, const EngineInfo &info, int jobs)
            : info_(info) {
            for (int i = 0; i < jobs; ++i) requests_.push_back(compiled.create_infer_request());
        }

        void infer(const float *in, int n, int h, int w, float *out) override {
            const size_t in_size = size_t(info_.in_channels) * h * w;
            const size_t out_size = size_t(info_.out_channels) * h * w * info_.scale * info_.scale;
            const int jobs = static_cast<int>(requests_.size());
            const ov::Shape shape{1, size_t(info_.in_channels), size_t(h), size_t(w)};
            try {
                // request i % jobs takes image i once it has handed back image i - jobs
                for (int i = 0; i < n; ++i) {
                    ov::InferRequest &request = requests_[i % jobs];
                    if (i >= jobs) collect(request, out + (i - jobs) * out_size, h, w, out_size);
                    request.set_input_tensor(ov::Tensor(ov::element::f32, shape,
                                                        const_cast<float *>(in + i * in_size)));
                    request.start_async();
                }
                for (int i = n > jobs ? n - jobs : 0; i < n; ++i)
                    collect(requests_[i % jobs], out + i * out_size, h, w, out_size);
            } catch (...) {
                for (auto &request : requests_) {  // none may still read ``in`` once we return
                    try {
                        request.wait();
                    } catch (...) {
                    }
                }
                try {
                    throw;
                } catch (const Error &) {
                    throw;
                } catch (const std::exception &exc) {
                    fail(EDGESR_ERROR_INFERENCE, "openvino: inference failed: " +
                                                     first_line(exc));
                }
            }
        }

    private:
        void collect(ov::InferRequest &request, float *dst, int h, int w, size_t size) {
            request.wait();
            const ov::Tensor result = request.get_output_tensor(0);
            const ov::Shape expected{1, size_t(info_.out_channels), size_t(h) * info_.scale,
                                     size_t(w) * info_.scale};
            if (result.get_shape() != expected || result.get_element_type() != ov::element::f32)
                fail(EDGESR_ERROR_INFERENCE, "openvino: a 1x" +
                                                 std::to_string(info_.in_channels) + "x" +
                                                 std::to_string(h) + "x" + std::to_string(w) +
                                                 " input gave output " +
                                                 result.get_shape().to_string() + ", expected " +
                                                 expected.to_string());
            std::memcpy(dst, result.data<const float>(), size * sizeof(float));
        }

        EngineInfo info_;
        std::vector<ov::InferRequest> requests_;
    };

    void check_device() {
        const std::string base = options_.device.substr(0, options_.device.find_first_of(".:"));
        if (base == "AUTO" || base == "HETERO" || base == "MULTI" || base == "BATCH") return;
        std::vector<std::string> devices;
        try {
            devices = core_.get_available_devices();
        } catch (const std::exception &exc) {
            fail(EDGESR_ERROR_BACKEND, std::string("openvino: cannot list devices: ") +
                                           first_line(exc));
        }
        std::string names;
        for (const auto &d : devices) {
            if (d.substr(0, d.find('.')) == base) return;
            names += (names.empty() ? "" : ", ") + d;
        }
        fail(EDGESR_ERROR_BACKEND, "openvino: device '" + options_.device +
                                       "' not found; available: " + names);
    }

    // Read with the frontend the suffix names (.onnx or .xml) only, so a corrupt file gets
    // one error instead of every other frontend's attempt (and its logging).
    std::shared_ptr<ov::Model> read(const std::string &path) {
        const size_t dot = path.find_last_of('.');
        const std::string suffix = dot == std::string::npos ? "" : path.substr(dot);
        const char *framework = suffix == ".onnx" ? "onnx" : suffix == ".xml" ? "ir" : nullptr;
        if (!framework)
            fail(EDGESR_ERROR_MODEL, path + ": expected an ONNX model (.onnx) or an OpenVINO IR "
                                            "(.xml beside its .bin)");
        if (!std::ifstream(path, std::ios::binary).good())
            fail(EDGESR_ERROR_MODEL, path + ": model file not found or not readable");
        try {
            const auto frontend = frontends_.load_by_framework(framework);
            const auto input = frontend ? frontend->load(path) : nullptr;
            if (!input) fail(EDGESR_ERROR_MODEL, path + ": OpenVINO cannot read it");
            return frontend->convert(input);
        } catch (const Error &) {
            throw;
        } catch (const std::exception &exc) {
            fail(EDGESR_ERROR_MODEL, path + ": OpenVINO cannot read it: " + first_line(exc));
        }
    }

    ov::AnyMap properties(const ov::Model &model) const {
        std::string hint = "f32";  // explicit: OpenVINO would pick bf16 by itself on AMX CPUs
        const std::vector<std::string> recorded{"runtime_options", "INFERENCE_PRECISION_HINT"};
        if (!options_.precision.empty())
            hint = kPrecisionHints.at(options_.precision);
        else if (model.has_rt_info(recorded))
            hint = model.get_rt_info<ov::Any>(recorded).as<std::string>();
        ov::AnyMap props{{"PERFORMANCE_HINT",
                          options_.performance == "throughput" ? "THROUGHPUT" : "LATENCY"},
                         {"INFERENCE_PRECISION_HINT", hint}};
        if (options_.threads > 0) props["INFERENCE_NUM_THREADS"] = options_.threads;
        return props;
    }

    Options options_;
    ov::frontend::FrontEndManager frontends_;  // outlives the models its frontends made
    ov::Core core_;
    ov::CompiledModel compiled_;
};

}  // namespace

std::unique_ptr<Engine> create_openvino_engine(const std::string &model_path,
                                               const Options &options) {
    try {
        return std::make_unique<OpenVINOEngine>(model_path, options);
    } catch (const Error &) {
        throw;
    } catch (const std::bad_alloc &) {
        throw;
    } catch (const std::exception &exc) {
        fail(EDGESR_ERROR_BACKEND, std::string("openvino: ") + first_line(exc));
    }
}

}  // namespace edgesr
