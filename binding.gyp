# Fallback build for machines without CMake: CPU backend only, same source list as CMakeLists.txt
# (both read native/sources.json through scripts/native-sources.cjs).
{
  "targets": [
    {
      "target_name": "casspec",
      "sources": ["<!@(node scripts/native-sources.cjs cpp)"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti"],
      "cflags_cc": ["-std=c++17", "-O3", "-ffp-contract=off", "-fexceptions"],
      "ldflags": ["-pthread"]
    }
  ]
}
