// segnet/data/list_file.hpp: parse CamVid-style list files ("image_path label_path" per line).
//
//   segnet::SampleList list = segnet::read_list_file("/data/camvid/train.txt");
//   segnet::check_list_files_exist(list);                // "train.txt:17: image '...' not found"
//   for (const auto& s : list.samples) std::cout << s.image << " " << s.label << "\n";
//
// One sample per line: the image path, whitespace, the label path. Relative paths are resolved
// against a root folder, by default the list file's own folder (as CamVid ships it). Blank lines
// and lines starting with '#' are skipped; paths cannot contain spaces. Every error names the
// list file and the line, because lists are hand-edited and typos are the usual failure.
#pragma once

#include <cstddef>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "segnet/io/files.hpp"

namespace segnet {

/// One line of a list file, with paths already resolved against the root.
struct ListEntry {
    std::filesystem::path image;
    std::filesystem::path label;
    int line = 0;  ///< 1-based line in the list file, for messages
};

struct SampleList {
    std::string source;            ///< the list file's path as given, or a name for in-memory text
    std::filesystem::path root;    ///< folder that relative paths were resolved against
    std::vector<ListEntry> samples;

    std::size_t size() const { return samples.size(); }
    /// "train.txt:17", the prefix of every message about one sample.
    std::string where(const ListEntry& e) const { return source + ":" + std::to_string(e.line); }
};

namespace list_detail {

inline bool is_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f'; }

/// Splits on runs of whitespace.
inline std::vector<std::string_view> fields(std::string_view line) {
    std::vector<std::string_view> out;
    std::size_t i = 0;
    while (i < line.size()) {
        while (i < line.size() && is_space(line[i])) ++i;
        const std::size_t start = i;
        while (i < line.size() && !is_space(line[i])) ++i;
        if (i > start) out.push_back(line.substr(start, i - start));
    }
    return out;
}

/// Keeps messages to one readable line even when the input is binary garbage or very long.
inline std::string printable(std::string_view s) {
    std::string out;
    for (char c : s.substr(0, 120)) out += (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) ? '?' : c;
    if (s.size() > 120) out += "...";
    return out;
}

}  // namespace list_detail

/// Parses list text. `source` names it in messages; relative paths are taken from `root`.
inline SampleList parse_list(std::string_view text, const std::string& source,
                             const std::filesystem::path& root) {
    SampleList list;
    list.source = source;
    list.root = root;
    int line_no = 0;
    std::size_t pos = 0;
    while (pos < text.size()) {
        std::size_t end = text.find('\n', pos);
        if (end == std::string_view::npos) end = text.size();
        const std::string_view line = text.substr(pos, end - pos);
        pos = end + 1;
        ++line_no;
        const auto f = list_detail::fields(line);
        if (f.empty() || f[0].front() == '#') continue;
        if (f.size() != 2)
            throw DataError("segnet: " + source + ":" + std::to_string(line_no) + ": expected 'image label', got '" +
                            list_detail::printable(line.substr(0, line.find_last_not_of(" \t\r") + 1)) + "' (" +
                            std::to_string(f.size()) + (f.size() == 1 ? " field)" : " fields)"));
        list.samples.push_back({root / std::string(f[0]), root / std::string(f[1]), line_no});
    }
    return list;
}

/// Reads a list file. Relative paths are resolved against `root`, or the list's folder if none.
inline SampleList read_list_file(const std::filesystem::path& list_file,
                                 const std::optional<std::filesystem::path>& root = std::nullopt) {
    const auto bytes = read_file_bytes(list_file, 64ull << 20, "read list file");
    const std::string_view text(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    return parse_list(text, list_file.string(), root ? *root : list_file.parent_path());
}

/// Throws DataError for the first sample whose image or label file is missing, naming the list
/// line ("train.txt:17: label 'trainannot/x.png' not found"). Does not decode anything.
inline void check_list_files_exist(const SampleList& list) {
    for (const ListEntry& e : list.samples) {
        std::error_code ec;
        if (!std::filesystem::is_regular_file(e.image, ec))
            throw DataError("segnet: " + list.where(e) + ": image " + io_detail::quoted(e.image) + " not found");
        if (!std::filesystem::is_regular_file(e.label, ec))
            throw DataError("segnet: " + list.where(e) + ": label " + io_detail::quoted(e.label) + " not found");
    }
}

}  // namespace segnet
