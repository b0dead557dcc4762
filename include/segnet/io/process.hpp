// segnet/io/process.hpp: what the operating system says about this process (Linux /proc).
//
//   double mb = segnet::peak_rss_bytes() / 1048576.0;   // high-water mark of resident memory
//   double now = segnet::current_rss_bytes() / 1048576.0;
//
// Returns 0 where /proc is not available (the programs then print 0, not a guess).
#pragma once

#include <cstdint>
#include <fstream>
#include <sstream>
#include <string>

namespace segnet {

namespace process_detail {
inline std::int64_t status_kb(const std::string& key) {
    std::ifstream in("/proc/self/status");
    std::string line;
    while (std::getline(in, line))
        if (line.rfind(key, 0) == 0) {
            std::istringstream s(line.substr(key.size()));
            std::int64_t kb = 0;
            s >> kb;
            return kb;
        }
    return 0;
}
}  // namespace process_detail

/// Peak resident set size (VmHWM) in bytes.
inline std::int64_t peak_rss_bytes() { return process_detail::status_kb("VmHWM:") * 1024; }
/// Current resident set size (VmRSS) in bytes.
inline std::int64_t current_rss_bytes() { return process_detail::status_kb("VmRSS:") * 1024; }

}  // namespace segnet
