// OpenVINO engine: runs an edgesr ONNX model or an IR (.xml + .bin) as
// runtimes/openvino_runtime.py does: same compile properties, metadata and probe for models
// without metadata, a compile per static tile shape on first use (static shapes take less
// memory on CPU than dynamic ones), the same number of infer requests, and the images
// of a batch dealt round-robin to them.
#include <openvino/frontend/manager.hpp>
#include <openvino/openvino.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <list>
#include <mutex>
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

// Compiled static shapes kept per engine (tiles of one image have one shape; a few sizes of
// image stay compiled), as runtimes/openvino_runtime.py keeps SHAPES_KEPT.
constexpr size_t kShapesKept = 4;

class OpenVINOEngine final : public Engine {
public:
    OpenVINOEngine(const std::string &path, const Options &options)
        : options_(options), path_(path) {
        check_device();
        files_ = stamp();
        model_ = read(path);
        auto meta = read_metadata(model_);
        if (!meta.count("scale") || !meta.count("in_channels") || !meta.count("out_channels"))
            meta = probe_metadata(path, model_);
        info_.scale = meta_int(meta, "scale", path, 1);
        info_.in_channels = meta_int(meta, "in_channels", path, 3);
        info_.out_channels = meta_int(meta, "out_channels", path, 3);
        info_.size_multiple = meta_int(meta, "size_multiple", path, 1);
        properties_ = properties(*model_);
        const auto shape = model_->input(0).get_partial_shape();
        if (shape.is_static() && shape.size() == 4) {  // one shape: compile it now
            info_.fixed_h = static_cast<int>(shape[2].get_length());
            info_.fixed_w = static_cast<int>(shape[3].get_length());
            const auto compiled = compiled_for(info_.fixed_h, info_.fixed_w);
            info_.preferred_batch = compiled->jobs;
            model_.reset();  // nothing else is compiled from it
        } else {
            info_.preferred_batch = options.requests > 0 ? options.requests : optimal_requests();
        }
    }

    void infer(const float *in, int n, int h, int w, float *out) override {
        if (info_.fixed_h > 0 && (h != info_.fixed_h || w != info_.fixed_w))
            fail(EDGESR_ERROR_ARGUMENT, "openvino: the model takes " +
                                            std::to_string(info_.fixed_h) + "x" +
                                            std::to_string(info_.fixed_w) + " inputs only, got " +
                                            std::to_string(h) + "x" + std::to_string(w));
        const std::shared_ptr<Compiled> compiled = compiled_for(h, w);
        std::vector<ov::InferRequest> requests = compiled->borrow();
        run(requests, in, n, h, w, out);  // throws: the requests are dropped, not reused
        compiled->give_back(std::move(requests));
    }

private:
    // The model compiled for one static input shape, with its idle sets of infer requests
    // (one set per concurrent call).
    struct Compiled {
        ov::CompiledModel model;
        int jobs = 1;
        std::mutex mutex;
        std::vector<std::vector<ov::InferRequest>> idle;

        std::vector<ov::InferRequest> borrow() {
            {
                std::lock_guard<std::mutex> lock(mutex);
                if (!idle.empty()) {
                    auto requests = std::move(idle.back());
                    idle.pop_back();
                    return requests;
                }
            }
            try {
                std::vector<ov::InferRequest> requests;
                for (int i = 0; i < jobs; ++i) requests.push_back(model.create_infer_request());
                return requests;
            } catch (const std::exception &exc) {
                fail(EDGESR_ERROR_INFERENCE, "openvino: cannot create infer requests: " +
                                                 first_line(exc));
            }
        }

        void give_back(std::vector<ov::InferRequest> requests) {
            std::lock_guard<std::mutex> lock(mutex);
            idle.push_back(std::move(requests));
        }
    };

    // The model compiled for (h, w) inputs: once per shape, the last kShapesKept kept (an
    // evicted one lives on until the calls using it return).
    std::shared_ptr<Compiled> compiled_for(int h, int w) {
        const std::pair<int, int> key{h, w};
        auto find = [&]() -> std::shared_ptr<Compiled> {
            std::lock_guard<std::mutex> lock(shapes_mutex_);
            for (auto it = shapes_.begin(); it != shapes_.end(); ++it)
                if (it->first == key) {
                    shapes_.splice(shapes_.begin(), shapes_, it);  // most recent first
                    return it->second;
                }
            return nullptr;
        };
        if (auto found = find()) return found;
        std::lock_guard<std::mutex> compiling(compile_mutex_);  // one compile of a shape
        if (auto found = find()) return found;
        auto compiled = compile(h, w);
        std::lock_guard<std::mutex> lock(shapes_mutex_);
        shapes_.emplace_front(key, compiled);
        if (shapes_.size() > kShapesKept) shapes_.pop_back();
        return compiled;
    }

    std::shared_ptr<Compiled> compile(int h, int w) {
        auto compiled = std::make_shared<Compiled>();
        const std::string shape = "1x" + std::to_string(info_.in_channels) + "x" +
                                  std::to_string(h) + "x" + std::to_string(w);
        if (!model_) {  // dropped after the last compile: read it again, if it is the same
            if (stamp() != files_)
                fail(EDGESR_ERROR_MODEL, path_ + ": removed or changed since the session was "
                                                 "created, and a new tile shape (" + shape +
                                                 ") needs it (keep it in place, or create the "
                                                 "session with keep_model=1)");
            model_ = read(path_);
        }
        std::shared_ptr<ov::Model> model = model_;
        if (info_.fixed_h == 0) {
            try {
                model = model_->clone();
                model->reshape({{model->input(0),
                                 ov::PartialShape{1, info_.in_channels, h, w}}});
            } catch (const std::exception &exc) {
                fail(EDGESR_ERROR_INFERENCE, "openvino: the model does not take a " + shape +
                                                 " input: " + first_line(exc));
            }
        }
        try {
            compiled->model = core_.compile_model(model, options_.device, properties_);
            compiled->jobs = options_.requests > 0
                ? options_.requests
                : static_cast<int>(
                      compiled->model.get_property(ov::optimal_number_of_infer_requests));
        } catch (const std::exception &exc) {
            fail(EDGESR_ERROR_BACKEND, "openvino: compiling for " + options_.device +
                                           " failed: " + first_line(exc));
        }
        compiled->jobs = std::max(compiled->jobs, 1);
        model.reset();
        if (!options_.keep_model) model_.reset();  // its weights live on in the compiled model
        const ov::PartialShape expected{1, info_.out_channels, int64_t{h} * info_.scale,
                                        int64_t{w} * info_.scale};
        const auto &output = compiled->model.output(0);
        if (output.get_partial_shape() != expected || output.get_element_type() != ov::element::f32)
            fail(EDGESR_ERROR_INFERENCE, "openvino: a " + shape + " input gives a " +
                                             output.get_element_type().get_type_name() + " " +
                                             output.get_partial_shape().to_string() +
                                             " output, expected f32 " + expected.to_string());
        return compiled;
    }

    // The device's optimal number of infer requests under the compile properties: 1 under a
    // latency hint (as openvino_runtime._optimal_requests).
    int optimal_requests() {
        if (options_.performance != "throughput") return 1;
        try {
            return std::max(1, static_cast<int>(core_.get_property(
                                   options_.device, ov::optimal_number_of_infer_requests,
                                   {ov::hint::performance_mode(
                                       ov::hint::PerformanceMode::THROUGHPUT)})));
        } catch (const std::exception &exc) {
            fail(EDGESR_ERROR_BACKEND, "openvino: cannot query " + options_.device + ": " +
                                           first_line(exc));
        }
    }

    // Deal the n images round-robin to the requests: request i % jobs takes image i once it
    // has handed back image i - jobs. Outputs are written straight into ``out``.
    void run(std::vector<ov::InferRequest> &requests, const float *in, int n, int h, int w,
             float *out) {
        const size_t in_size = size_t(info_.in_channels) * h * w;
        const size_t out_size = size_t(info_.out_channels) * h * w * info_.scale * info_.scale;
        const ov::Shape in_shape{1, size_t(info_.in_channels), size_t(h), size_t(w)};
        const ov::Shape out_shape{1, size_t(info_.out_channels), size_t(h) * info_.scale,
                                  size_t(w) * info_.scale};
        const int jobs = static_cast<int>(requests.size());
        try {
            for (int i = 0; i < n; ++i) {
                ov::InferRequest &request = requests[i % jobs];
                if (i >= jobs) request.wait();
                request.set_input_tensor(ov::Tensor(ov::element::f32, in_shape,
                                                    const_cast<float *>(in + i * in_size)));
                request.set_output_tensor(ov::Tensor(ov::element::f32, out_shape,
                                                     out + i * out_size));
                request.start_async();
            }
            for (int i = n > jobs ? n - jobs : 0; i < n; ++i) requests[i % jobs].wait();
        } catch (const std::exception &exc) {
            for (auto &request : requests) {  // none may still touch in or out once we return
                try {
                    request.wait();
                } catch (...) {
                }
            }
            fail(EDGESR_ERROR_INFERENCE, "openvino: inference failed: " + first_line(exc));
        }
    }

    // Size and modification time of the model's files (an IR's .xml and .bin), to tell
    // whether a re-read would read the model the session was created from.
    std::vector<std::pair<uintmax_t, std::filesystem::file_time_type>> stamp() const {
        std::vector<std::filesystem::path> files{path_};
        if (files[0].extension() == ".xml")
            files.push_back(std::filesystem::path(path_).replace_extension(".bin"));
        std::vector<std::pair<uintmax_t, std::filesystem::file_time_type>> out;
        for (const auto &file : files) {
            std::error_code size_error, time_error;
            const auto size = std::filesystem::file_size(file, size_error);
            const auto time = std::filesystem::last_write_time(file, time_error);
            out.emplace_back(size_error ? uintmax_t(-1) : size,
                             time_error ? std::filesystem::file_time_type::min() : time);
        }
        return out;
    }

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
    std::string path_;
    std::vector<std::pair<uintmax_t, std::filesystem::file_time_type>> files_;  // stamp()
    ov::frontend::FrontEndManager frontends_;  // outlives the models its frontends made
    ov::Core core_;
    // What the next shape is compiled from: kept with keep_model=1, else read when needed.
    std::shared_ptr<ov::Model> model_;
    ov::AnyMap properties_;
    std::mutex shapes_mutex_, compile_mutex_;
    std::list<std::pair<std::pair<int, int>, std::shared_ptr<Compiled>>> shapes_;
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
