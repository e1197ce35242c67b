// The backends built into this library, by name.
#include "engine.hpp"

#include "error.hpp"

namespace edgesr {

const std::map<std::string, EngineFactory> &engine_registry() {
    static const std::map<std::string, EngineFactory> table = {
#ifdef EDGESR_WITH_OPENVINO
        {"openvino", &create_openvino_engine},
#endif
    };
    return table;
}

std::unique_ptr<Engine> create_engine(const std::string &model_path, const Options &options) {
    const auto &table = engine_registry();
    const auto entry = table.find(options.backend);
    if (entry == table.end()) {
        std::string built;
        for (const auto &e : table) built += (built.empty() ? "" : ", ") + e.first;
        fail(EDGESR_ERROR_BACKEND, "backend '" + options.backend + "' is not built into " +
                                       "libedgesr; built: " + (built.empty() ? "none" : built));
    }
    return entry->second(model_path, options);
}

}  // namespace edgesr
