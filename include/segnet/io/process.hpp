// segnet/io/process.hpp: what the operating system says about this process (Linux /proc).
//
//   double mb = segnet::peak_rss_bytes() / 1048576.0;   // high-water mark of resident memory
//   double now = segnet::current_rss_bytes() / 1048576.0;
//   std::int64_t free = segnet::available_memory_bytes();  // what a new allocation can still get
//
// Returns 0 where /proc is not available (the programs then print 0, not a guess).
#pragma once

#include <algorithm>
#include <cstdint>
#include <fstream>
#include <sstream>
#include <string>

namespace segnet {

namespace process_detail {
/// The number after `key` on the first line of `text` that starts with it, or -1.
inline std::int64_t number_after(const std::string& text, const std::string& key) {
    std::istringstream in(text);
    std::string line;
    while (std::getline(in, line))
        if (line.rfind(key, 0) == 0) {
            std::istringstream s(line.substr(key.size()));
            std::int64_t v = -1;
            s >> v;
            return s ? v : -1;
        }
    return -1;
}
inline std::string file_text(const char* path) {
    std::ifstream in(path);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}
inline std::int64_t status_kb(const std::string& key) {
    return std::max<std::int64_t>(0, number_after(file_text("/proc/self/status"), key));
}
}  // namespace process_detail

/// Peak resident set size (VmHWM) in bytes.
inline std::int64_t peak_rss_bytes() { return process_detail::status_kb("VmHWM:") * 1024; }
/// Current resident set size (VmRSS) in bytes.
inline std::int64_t current_rss_bytes() { return process_detail::status_kb("VmRSS:") * 1024; }

/// The memory this process can still allocate, from the texts of /proc/meminfo and, in a
/// container, the cgroup's limit and usage (v2: memory.max and memory.current; "max" or empty:
/// no limit): the smaller of MemAvailable and limit - usage. -1 when neither says anything.
inline std::int64_t available_memory_bytes(const std::string& meminfo, const std::string& cgroup_max,
                                           const std::string& cgroup_current) {
    std::int64_t available = -1;
    if (const std::int64_t kb = process_detail::number_after(meminfo, "MemAvailable:"); kb >= 0) available = kb * 1024;
    std::istringstream max_in(cgroup_max), current_in(cgroup_current);
    std::int64_t limit = -1, used = 0;
    if ((max_in >> limit) && limit > 0) {
        current_in >> used;
        const std::int64_t left = std::max<std::int64_t>(0, limit - used);
        available = available < 0 ? left : std::min(available, left);
    }
    return available;
}
/// The memory this process can still allocate on this machine (see above), -1 if unknown.
inline std::int64_t available_memory_bytes() {
    using process_detail::file_text;
    return available_memory_bytes(file_text("/proc/meminfo"), file_text("/sys/fs/cgroup/memory.max"),
                                  file_text("/sys/fs/cgroup/memory.current"));
}

}  // namespace segnet
