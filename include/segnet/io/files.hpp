// segnet/io/files.hpp: the error type of data and file I/O, whole-file reads, atomic writes.
//
//   std::vector<unsigned char> bytes = segnet::read_file_bytes("model.safetensors", 1 << 30);
//   segnet::write_file_atomically("out.bin", [&](segnet::FileSink& f) { f.write(p, n); });
//   segnet::require_regular_file("palette.txt", "read palette");   // a FIFO would block fopen
//   segnet::remove_stale_temporaries("runs/a", "last.safetensors");  // left by a killed writer
//   try { ... } catch (const segnet::DataError& e) { std::cerr << e.what() << "\n"; }
//
// Every message names the file and the problem on one line ("segnet: cannot load 'a.png':
// file not found"), so a failure deep inside a training run can be fixed without a debugger.
// Atomic writes go to a temporary file in the target's folder and are renamed over the target
// only when complete: a crash, a full disk or a throwing writer never leaves a truncated model
// or mask behind, and an existing file survives a failed write.
#pragma once

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#if defined(__unix__) || defined(__APPLE__)
#include <csignal>
#include <unistd.h>
#endif

namespace segnet {

/// A problem with a data file: missing, unreadable, corrupt, or inconsistent with its list.
struct DataError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

/// A value as a message shows it: control characters as '?', and a long value cut in the
/// middle to its first 100 and last 57 characters around "..." (the end of a path is the file
/// name, which identifies it), so that one bad input line cannot make a 3 MB message.
inline std::string shortened(std::string_view text, std::size_t max_chars = 160) {
    auto printable = [](std::string_view s) {
        std::string out;
        for (char c : s) out += (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) ? '?' : c;
        return out;
    };
    if (text.size() <= max_chars) return printable(text);
    const std::size_t tail = (max_chars - 3) * 3 / 8, head = max_chars - 3 - tail;
    return printable(text.substr(0, head)) + "..." + printable(text.substr(text.size() - tail));
}

namespace io_detail {

inline std::string quoted(const std::filesystem::path& p) { return "'" + shortened(p.string()) + "'"; }

inline std::string errno_text(int err) {
    if (err == ENOENT) return "file not found";
    if (err == EACCES) return "permission denied";
    return std::strerror(err);
}

}  // namespace io_detail

/// Why `path` is not a regular file (or a link to one) that can be read: "file not found", "is a
/// directory", "is a FIFO (named pipe), not a regular file", ...; "" when it is one.
inline std::string regular_file_problem(const std::filesystem::path& path) {
    namespace fs = std::filesystem;
    std::error_code ec;
    const fs::file_status st = fs::status(path, ec);
    switch (st.type()) {
        case fs::file_type::regular: return {};
        case fs::file_type::not_found: return "file not found";
        case fs::file_type::directory: return "is a directory";
        case fs::file_type::fifo: return "is a FIFO (named pipe), not a regular file";
        case fs::file_type::none: return ec ? ec.message() : "cannot be read";
        default: return "is not a regular file (a device or socket)";
    }
}

/// Throws DataError ("segnet: cannot <what> 'p': is a FIFO ...") unless `path` is a regular
/// file. Checked before opening: fopen on a FIFO blocks until a writer comes, which for a
/// mistyped path is forever; a device or socket is never data.
inline void require_regular_file(const std::filesystem::path& path, const char* what = "read") {
    if (const std::string problem = regular_file_problem(path); !problem.empty())
        throw DataError(std::string("segnet: cannot ") + what + " " + io_detail::quoted(path) + ": " + problem);
}

/// Reads a whole file; `what` is the verb of the message ("load", "read").
/// Refuses files larger than max_bytes, and anything but a regular file, before reading.
inline std::vector<unsigned char> read_file_bytes(const std::filesystem::path& path,
                                                  std::uint64_t max_bytes,
                                                  const char* what = "read") {
    const std::string head = std::string("segnet: cannot ") + what + " " + io_detail::quoted(path) + ": ";
    require_regular_file(path, what);
    std::FILE* f = std::fopen(path.c_str(), "rb");
    if (!f) throw DataError(head + io_detail::errno_text(errno));
    struct Closer {
        std::FILE* f;
        ~Closer() { std::fclose(f); }
    } closer{f};
    std::vector<unsigned char> bytes;
    // Size from the file itself rather than trusting anything inside it.
    if (std::fseek(f, 0, SEEK_END) != 0) throw DataError(head + "cannot seek");
    const long size = std::ftell(f);
    if (size < 0) throw DataError(head + "cannot determine the file size");
    if (std::uint64_t(size) > max_bytes)
        throw DataError(head + "file is " + std::to_string(size) + " bytes, over the limit of " +
                        std::to_string(max_bytes));
    std::rewind(f);
    bytes.resize(std::size_t(size));
    if (size > 0 && std::fread(bytes.data(), 1, bytes.size(), f) != bytes.size())
        throw DataError(head + "read error");
    return bytes;
}

/// The output side of write_file_atomically: throws DataError on any write error.
class FileSink {
public:
    FileSink(std::FILE* f, std::filesystem::path target) : f_(f), target_(std::move(target)) {}
    void write(const void* data, std::size_t bytes) {
        if (bytes == 0) return;
        if (std::fwrite(data, 1, bytes, f_) != bytes)
            throw DataError("segnet: cannot write " + io_detail::quoted(target_) + ": " +
                            io_detail::errno_text(errno));
        written_ += bytes;
    }
    void write(const std::string& s) { write(s.data(), s.size()); }
    std::uint64_t bytes_written() const { return written_; }

private:
    std::FILE* f_;
    std::filesystem::path target_;
    std::uint64_t written_ = 0;
};

/// Writes `target` through `write_contents(FileSink&)` into a temporary file in the same folder
/// (so the rename stays on one file system and is atomic), syncs it, and renames it over the
/// target. On any failure, including an exception from write_contents, the temporary file is
/// removed, the target is left as it was, and the exception propagates (DataError for I/O).
template <class WriteContents>
void write_file_atomically(const std::filesystem::path& target, WriteContents&& write_contents) {
    namespace fs = std::filesystem;
    static std::atomic<unsigned> counter{0};
    const std::string head = "segnet: cannot write " + io_detail::quoted(target) + ": ";
    if (target.filename().empty()) throw DataError(head + "the path names no file");
    const fs::path dir = target.parent_path();
    std::error_code ec;
    if (!dir.empty() && !fs::is_directory(dir, ec))
        throw DataError(head + "folder " + io_detail::quoted(dir) + " does not exist");
#if defined(__unix__) || defined(__APPLE__)
    const long pid = long(::getpid());
#else
    const long pid = 0;
#endif
    // Hidden, unique per process and call, so concurrent writers never share a temporary; "x"
    // (exclusive) never reuses a stale one left by a crashed process that had the same pid.
    fs::path temp;
    std::FILE* f = nullptr;
    for (int attempt = 0; attempt < 100 && !f; ++attempt) {
        temp = dir / ("." + target.filename().string() + ".tmp-" + std::to_string(pid) + "-" +
                      std::to_string(counter.fetch_add(1)));
        f = std::fopen(temp.c_str(), "wbx");
        if (!f && errno != EEXIST) break;
    }
    if (!f) throw DataError(head + "cannot create a temporary file in its folder: " +
                            io_detail::errno_text(errno));
    try {
        FileSink sink(f, target);
        write_contents(sink);
        if (std::fflush(f) != 0) throw DataError(head + io_detail::errno_text(errno));
#if defined(__unix__) || defined(__APPLE__)
        // Without the sync, a power loss after the rename can leave an empty file behind.
        if (::fsync(::fileno(f)) != 0) throw DataError(head + "fsync failed: " + io_detail::errno_text(errno));
#endif
        const int rc = std::fclose(f);
        f = nullptr;
        if (rc != 0) throw DataError(head + io_detail::errno_text(errno));
        fs::rename(temp, target, ec);
        if (ec) throw DataError(head + ec.message());
    } catch (...) {
        if (f) std::fclose(f);
        std::error_code ignored;
        fs::remove(temp, ignored);
        throw;
    }
}

/// Removes the hidden temporaries of write_file_atomically(folder / target_name) whose writing
/// process is gone (killed during a save: SIGKILL or power loss leave them; nothing else can).
/// A temporary of a live process is kept, so a concurrent writer is never disturbed. Returns
/// how many were removed.
inline int remove_stale_temporaries(const std::filesystem::path& folder, const std::string& target_name) {
    namespace fs = std::filesystem;
    const std::string prefix = "." + target_name + ".tmp-";
    int removed = 0;
    std::error_code ec;
    for (fs::directory_iterator it(folder, ec), end; !ec && it != end; it.increment(ec)) {
        const std::string name = it->path().filename().string();
        if (name.rfind(prefix, 0) != 0) continue;
        // "<prefix><pid>-<counter>"
        const long pid = std::strtol(name.c_str() + prefix.size(), nullptr, 10);
#if defined(__unix__) || defined(__APPLE__)
        if (pid > 0 && (::kill(pid_t(pid), 0) == 0 || errno == EPERM)) continue;
#endif
        std::error_code ignored;
        if (fs::remove(it->path(), ignored)) ++removed;
    }
    return removed;
}

/// The regular files of `folder` for which keep(path) holds, sorted. An entry whose type cannot
/// be read (a symlink loop, a dangling link, no permission) is skipped, and skipped(path,
/// reason) is told, so that one bad entry neither aborts the folder nor is lost without a word.
/// keep: bool(const path&); skipped: void(const path&, const std::string&).
template <class Keep, class Skipped>
std::vector<std::filesystem::path> regular_files_in(const std::filesystem::path& folder, Keep keep, Skipped skipped) {
    namespace fs = std::filesystem;
    std::vector<fs::path> files;
    std::error_code ec;
    fs::directory_iterator it(folder, ec), end;
    if (ec) throw DataError("segnet: cannot read folder " + io_detail::quoted(folder) + ": " + ec.message());
    for (; it != end; it.increment(ec)) {
        if (!keep(it->path())) continue;
        std::error_code type_ec;
        const bool regular = it->is_regular_file(type_ec);
        if (type_ec) skipped(it->path(), type_ec.message());
        else if (regular) files.push_back(it->path());
    }
    if (ec) throw DataError("segnet: cannot read folder " + io_detail::quoted(folder) + ": " + ec.message());
    std::sort(files.begin(), files.end());
    return files;
}

}  // namespace segnet
