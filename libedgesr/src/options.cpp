// Options parsing: strict (unknown keys, repeated keys, bad numbers and choices are errors).
#include "options.hpp"

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <functional>
#include <map>
#include <set>
#include <vector>

#include "error.hpp"

namespace edgesr {
namespace {

std::string trim(const std::string &s) {
    const auto begin = s.find_first_not_of(" \t\r\n");
    if (begin == std::string::npos) return "";
    return s.substr(begin, s.find_last_not_of(" \t\r\n") - begin + 1);
}

int to_int(const std::string &key, const std::string &value, int min, int max) {
    errno = 0;
    char *end = nullptr;
    const long v = std::strtol(value.c_str(), &end, 10);
    if (value.empty() || *end != '\0' || errno == ERANGE || v < min || v > max)
        fail(EDGESR_ERROR_OPTIONS, "option " + key + "=" + value + ": expected an integer from " +
                                       std::to_string(min) + " to " + std::to_string(max));
    return static_cast<int>(v);
}

std::string choice(const std::string &key, const std::string &value,
                   const std::vector<std::string> &choices) {
    for (const auto &c : choices)
        if (value == c) return value;
    std::string list;
    for (const auto &c : choices) list += (list.empty() ? "" : ", ") + c;
    fail(EDGESR_ERROR_OPTIONS, "option " + key + "=" + value + ": choose from " + list);
}

bool to_bool(const std::string &key, const std::string &value) {
    if (value == "1" || value == "true" || value == "yes" || value == "on") return true;
    if (value == "0" || value == "false" || value == "no" || value == "off") return false;
    fail(EDGESR_ERROR_OPTIONS, "option " + key + "=" + value + ": expected 1 or 0");
}

using Setter = std::function<void(Options &, const std::string &, const std::string &)>;

const std::map<std::string, Setter> &setters() {
    static const std::map<std::string, Setter> table = {
        {"backend", [](Options &o, auto &k, auto &v) {
             if (v.empty()) fail(EDGESR_ERROR_OPTIONS, "option " + k + " is empty");
             o.backend = v;
         }},
        {"device", [](Options &o, auto &k, auto &v) {
             if (v.empty()) fail(EDGESR_ERROR_OPTIONS, "option " + k + " is empty");
             o.device = v;
         }},
        {"tile", [](Options &o, auto &k, auto &v) { o.tile = to_int(k, v, 0, 1 << 16); }},
        {"overlap", [](Options &o, auto &k, auto &v) { o.overlap = to_int(k, v, 0, 1 << 15); }},
        {"batch", [](Options &o, auto &k, auto &v) { o.batch = to_int(k, v, 0, 4096); }},
        {"blend", [](Options &o, auto &k, auto &v) {
             o.blend = choice(k, v, {"linear", "cosine", "hann", "hann2", "hann4", "hann8"});
         }},
        {"pad", [](Options &o, auto &k, auto &v) { o.pad = choice(k, v, {"reflect", "replicate"}); }},
        {"premultiply_alpha",
         [](Options &o, auto &k, auto &v) { o.premultiply_alpha = to_bool(k, v); }},
        {"threads", [](Options &o, auto &k, auto &v) { o.threads = to_int(k, v, 0, 4096); }},
        {"precision", [](Options &o, auto &k, auto &v) {
             o.precision = choice(k, v, {"fp32", "fp16", "bf16"});
         }},
        {"performance", [](Options &o, auto &k, auto &v) {
             o.performance = choice(k, v, {"latency", "throughput"});
         }},
        {"requests", [](Options &o, auto &k, auto &v) { o.requests = to_int(k, v, 0, 1024); }},
        {"keep_model", [](Options &o, auto &k, auto &v) { o.keep_model = to_bool(k, v); }},
    };
    return table;
}

}  // namespace

Options parse_options(const char *text) {
    Options options;
    if (text == nullptr) return options;
    const std::string all(text);
    std::set<std::string> seen;
    size_t start = 0;
    while (start <= all.size()) {
        size_t end = all.find(';', start);
        if (end == std::string::npos) end = all.size();
        const std::string pair = trim(all.substr(start, end - start));
        start = end + 1;
        if (pair.empty()) continue;
        const size_t eq = pair.find('=');
        if (eq == std::string::npos)
            fail(EDGESR_ERROR_OPTIONS, "option '" + pair + "' is not key=value");
        const std::string key = trim(pair.substr(0, eq)), value = trim(pair.substr(eq + 1));
        const auto setter = setters().find(key);
        if (setter == setters().end()) {
            std::string known;
            for (const auto &entry : setters()) known += (known.empty() ? "" : ", ") + entry.first;
            fail(EDGESR_ERROR_OPTIONS, "unknown option '" + key + "'; known: " + known);
        }
        if (!seen.insert(key).second)
            fail(EDGESR_ERROR_OPTIONS, "option '" + key + "' is given twice");
        setter->second(options, key, value);
    }
    return options;
}

}  // namespace edgesr
