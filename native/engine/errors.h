// Errors raised by native code. Every failure becomes a casspec::Error with a stable code;
// the N-API layer turns it into a JS Error whose `code` property is that string.
#pragma once
#include <stdexcept>
#include <string>

namespace casspec {

struct Error : std::runtime_error {
  std::string code;  // e.g. "E_INVALID_ARG", "E_SHAPE", "E_OOM", "E_CUDA", "E_CONTEXT_FULL", "E_DISPOSED"
  Error(std::string c, const std::string& msg) : std::runtime_error(msg), code(std::move(c)) {}
};

[[noreturn]] inline void fail(const char* code, const std::string& msg) { throw Error(code, msg); }
inline void require(bool ok, const char* code, const std::string& msg) {
  if (!ok) fail(code, msg);
}

}  // namespace casspec
