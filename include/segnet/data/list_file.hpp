// segnet/data/list_file.hpp: parse CamVid-style list files ("image_path label_path" per line).
//
//   segnet::SampleList list = segnet::read_list_file("/data/camvid/train.txt");
//   segnet::check_list_files_exist(list);                // "train.txt:17: image '...' not found"
//   for (const auto& s : list.samples) std::cout << s.image << " " << s.label << "\n";
//
// One sample per line: the image path, whitespace, the label path. Relative paths are resolved
// against a root folder, by default the list file's own folder (as CamVid ships it). Blank lines
// and lines starting with '#' are skipped; paths cannot contain spaces; a list file without any
// sample is an error. Every error names the
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
    std::string where(const ListEntry& e) const { return shortened(source) + ":" + std::to_string(e.line); }
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

}  // namespace list_detail

/// Whether a list line must name a label: training and evaluation need one; segnet-segment
/// reads only the first column, so a list of images alone serves it.
enum class ListLabels { required, optional };

/// Parses list text. `source` names it in messages; relative paths are taken from `root`.
/// With ListLabels::optional, a line may be the image alone (its label is then empty).
inline SampleList parse_list(std::string_view text, const std::string& source,
                             const std::filesystem::path& root, ListLabels labels = ListLabels::required) {
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
        if (f.size() == 1 && labels == ListLabels::optional) {
            list.samples.push_back({root / std::string(f[0]), {}, line_no});
            continue;
        }
        if (f.size() != 2)
            throw DataError("segnet: " + shortened(source) + ":" + std::to_string(line_no) + ": expected 'image label', got '" +
                            shortened(line.substr(0, line.find_last_not_of(" \t\r") + 1)) + "' (" +
                            std::to_string(f.size()) + (f.size() == 1 ? " field)" : " fields)"));
        list.samples.push_back({root / std::string(f[0]), root / std::string(f[1]), line_no});
    }
    return list;
}

/// Reads a list file. Relative paths are resolved against `root`, or the list's folder if none.
/// A list without a sample (empty, or only blank and comment lines) is an error: every program
/// that reads one would otherwise succeed on nothing.
inline SampleList read_list_file(const std::filesystem::path& list_file,
                                 const std::optional<std::filesystem::path>& root = std::nullopt,
                                 ListLabels labels = ListLabels::required) {
    const auto bytes = read_file_bytes(list_file, 64ull << 20, "read list file");
    const std::string_view text(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    SampleList list = parse_list(text, list_file.string(), root ? *root : list_file.parent_path(), labels);
    if (list.samples.empty())
        throw DataError("segnet: list file " + io_detail::quoted(list_file) +
                        " is empty (no 'image label' line, only blank or comment lines)");
    return list;
}

/// Throws DataError for the first sample whose image or label file is missing, naming the list
/// line ("train.txt:17: label 'trainannot/x.png' not found"). Does not decode anything.
inline void check_list_files_exist(const SampleList& list) {
    for (const ListEntry& e : list.samples)
        for (const auto& [kind, file] : {std::pair{"image ", &e.image}, std::pair{"label ", &e.label}}) {
            const std::string problem = regular_file_problem(*file);
            if (problem == "file not found")
                throw DataError("segnet: " + list.where(e) + ": " + kind + io_detail::quoted(*file) + " not found");
            if (!problem.empty())
                throw DataError("segnet: " + list.where(e) + ": " + kind + io_detail::quoted(*file) + " " + problem);
        }
}

}  // namespace segnet
