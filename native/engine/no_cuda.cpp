// CPU-only builds: there is no CUDA backend to offer.
#ifndef CASSPEC_WITH_CUDA
#include "backend.h"

namespace casspec {
bool cudaUsable(std::string& why) {
  why = "this build of casspec was compiled without CUDA (no nvcc at build time)";
  return false;
}
}  // namespace casspec
#endif
