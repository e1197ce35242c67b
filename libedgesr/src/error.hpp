// The one exception type inside libedgesr: a status code and a one-line message. The C ABI
// (api.cpp) turns it, and anything else thrown, into a status and edgesr_last_error().
#pragma once

#include <stdexcept>
#include <string>

#include "edgesr.h"

namespace edgesr {

class Error : public std::runtime_error {
public:
    Error(int status, const std::string &message) : std::runtime_error(message), status(status) {}
    int status;
};

[[noreturn]] inline void fail(int status, const std::string &message) {
    throw Error(status, message);
}

}  // namespace edgesr
