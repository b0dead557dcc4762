// segnet/version.hpp: the library's version, as macros (for #if) and as constants.
//
//   #include <segnet/version.hpp>
//   static_assert(SEGNET_VERSION >= 100);               // 0.1.0 -> 100 (major*10000 + minor*100 + patch)
//   std::cout << "segnet " << segnet::version_string << "\n";   // "0.1.0"
//
// Kept by hand next to project(VERSION ...) in the top-level CMakeLists.txt; CMake refuses to
// configure when the two disagree (cmake/SegnetVersionCheck.cmake), so they cannot drift.
#pragma once

#define SEGNET_VERSION_MAJOR 0
#define SEGNET_VERSION_MINOR 1
#define SEGNET_VERSION_PATCH 0
#define SEGNET_VERSION_STRING "0.1.0"
#define SEGNET_VERSION (SEGNET_VERSION_MAJOR * 10000 + SEGNET_VERSION_MINOR * 100 + SEGNET_VERSION_PATCH)

namespace segnet {

inline constexpr int version_major = SEGNET_VERSION_MAJOR;
inline constexpr int version_minor = SEGNET_VERSION_MINOR;
inline constexpr int version_patch = SEGNET_VERSION_PATCH;
inline constexpr const char* version_string = SEGNET_VERSION_STRING;

}  // namespace segnet
