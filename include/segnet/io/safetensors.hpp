// segnet/io/safetensors.hpp: read and write float32 tensors in the safetensors format.
//
//   segnet::write_safetensors("model.safetensors", {{"conv.weight", {64, 3, 7, 7}, w.data()}}, {{"arch", "SegNetBasic"}});
//   segnet::SafetensorsFile f = segnet::SafetensorsFile::load("model.safetensors");
//   std::vector<float> w2 = f.read("conv.weight", {64, 3, 7, 7});   // checks the shape
//
// Layout (https://github.com/huggingface/safetensors): 8-byte little-endian header length N,
// N bytes of JSON {"__metadata__": {str: str}, "name": {"dtype": "F32", "shape": [..],
// "data_offsets": [begin, end]}, ...}, then the data; offsets are relative to the data start.
// Files written here are readable by PyTorch's safetensors and vice versa (for F32 tensors).
//
// The reader treats its input as hostile: a strict JSON parser written here (no dependency),
// with a nesting limit instead of unbounded recursion, every length checked against the bytes
// actually present before use, and no allocation sized by a header value. Every message names
// the file and the problem ("segnet: cannot read safetensors file 'm.safetensors': tensor
// 'conv.weight' has dtype F16; only F32 is supported").
#pragma once

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <map>
#include <set>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "segnet/io/files.hpp"

namespace segnet {

// ---------------------------------------------------------------------------------------------
// A minimal strict JSON reader (RFC 8259), enough for safetensors headers.

namespace json {

struct Member;

struct Value {
    enum class Kind { null, boolean, number, string, array, object };
    Kind kind = Kind::null;
    bool boolean = false;
    std::string text;  ///< string contents (decoded), or the number exactly as written
    std::vector<Value> items;
    std::vector<Member> members;  ///< in file order, keys unique
};

/// An object member. Not std::pair<std::string, Value>: instantiating that while Value is
/// incomplete is undefined, and clang with libstdc++ rejects it.
struct Member {
    std::string first;
    Value second;
};

inline const char* kind_name(Value::Kind k) {
    switch (k) {
        case Value::Kind::null: return "null";
        case Value::Kind::boolean: return "a boolean";
        case Value::Kind::number: return "a number";
        case Value::Kind::string: return "a string";
        case Value::Kind::array: return "an array";
        case Value::Kind::object: return "an object";
    }
    return "?";
}

/// Thrown with a description and the byte offset; the caller adds the file name.
struct ParseError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

class Parser {
public:
    static constexpr int max_depth = 32;  // safetensors needs 3; bounded recursion

    explicit Parser(std::string_view text, std::size_t max_values = std::size_t(1) << 20)
        : s_(text), values_left_(max_values) {}

    Value parse_document() {
        skip_space();
        Value v = parse_value(0);
        skip_space();
        if (i_ != s_.size()) fail("unexpected data after the JSON value");
        return v;
    }

private:
    [[noreturn]] void fail(const std::string& what) const {
        throw ParseError(what + " at header byte " + std::to_string(i_));
    }
    bool at_end() const { return i_ >= s_.size(); }
    char peek() const { return at_end() ? '\0' : s_[i_]; }
    void expect(char c) {
        if (at_end() || s_[i_] != c) fail(std::string("expected '") + c + "'");
        ++i_;
    }
    void skip_space() {
        while (!at_end() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\n' || s_[i_] == '\r')) ++i_;
    }
    bool consume_literal(std::string_view lit) {
        if (s_.substr(i_, lit.size()) != lit) return false;
        i_ += lit.size();
        return true;
    }

    Value parse_value(int depth) {
        if (depth > max_depth) fail("nesting deeper than " + std::to_string(max_depth) + " levels");
        // Each Value costs ~100 bytes, so a header of tiny values ("[0,0,0,...]") could cost far
        // more memory than its size; cap the count.
        if (values_left_ == 0) fail("too many JSON values");
        --values_left_;
        Value v;
        if (at_end()) fail("unexpected end of JSON");
        const char c = s_[i_];
        if (c == '{') {
            v.kind = Value::Kind::object;
            std::set<std::string> keys;  // decoded, so "a" and "\u0061" count as the same key
            ++i_;
            skip_space();
            if (peek() == '}') {
                ++i_;
                return v;
            }
            for (;;) {
                skip_space();
                if (peek() != '"') fail("expected a string key");
                const std::size_t key_at = i_;
                std::string key = parse_string();
                if (!keys.insert(key).second) {
                    i_ = key_at;
                    fail("duplicate key \"" + printable(key) + "\"");
                }
                skip_space();
                expect(':');
                skip_space();
                v.members.push_back(Member{std::move(key), parse_value(depth + 1)});
                skip_space();
                if (peek() == ',') {
                    ++i_;
                    continue;
                }
                expect('}');
                return v;
            }
        }
        if (c == '[') {
            v.kind = Value::Kind::array;
            ++i_;
            skip_space();
            if (peek() == ']') {
                ++i_;
                return v;
            }
            for (;;) {
                skip_space();
                v.items.push_back(parse_value(depth + 1));
                skip_space();
                if (peek() == ',') {
                    ++i_;
                    continue;
                }
                expect(']');
                return v;
            }
        }
        if (c == '"') {
            v.kind = Value::Kind::string;
            v.text = parse_string();
            return v;
        }
        if (c == '-' || (c >= '0' && c <= '9')) {
            v.kind = Value::Kind::number;
            v.text = parse_number();
            return v;
        }
        if (consume_literal("true")) {
            v.kind = Value::Kind::boolean;
            v.boolean = true;
            return v;
        }
        if (consume_literal("false")) {
            v.kind = Value::Kind::boolean;
            return v;
        }
        if (consume_literal("null")) return v;
        fail("unexpected character " + describe_char(c));
    }

    static std::string describe_char(char c) {
        const auto u = static_cast<unsigned char>(c);
        if (u >= 0x20 && u < 0x7f) return std::string("'") + c + "'";
        static const char* hex = "0123456789abcdef";
        return std::string("0x") + hex[u >> 4] + hex[u & 15];
    }

    std::string parse_number() {
        const std::size_t start = i_;
        auto digits = [&] {
            const std::size_t d = i_;
            while (!at_end() && s_[i_] >= '0' && s_[i_] <= '9') ++i_;
            return i_ - d;
        };
        if (peek() == '-') ++i_;
        if (peek() == '0') {
            ++i_;
        } else if (digits() == 0) {
            fail("invalid number");
        }
        if (peek() == '.') {
            ++i_;
            if (digits() == 0) fail("invalid number (no digits after '.')");
        }
        if (peek() == 'e' || peek() == 'E') {
            ++i_;
            if (peek() == '+' || peek() == '-') ++i_;
            if (digits() == 0) fail("invalid number (no exponent digits)");
        }
        return std::string(s_.substr(start, i_ - start));
    }

    unsigned hex4() {
        if (s_.size() - i_ < 4) fail("truncated \\u escape");
        unsigned v = 0;
        for (int k = 0; k < 4; ++k) {
            const char h = s_[i_++];
            v <<= 4;
            if (h >= '0' && h <= '9') v |= unsigned(h - '0');
            else if (h >= 'a' && h <= 'f') v |= unsigned(h - 'a' + 10);
            else if (h >= 'A' && h <= 'F') v |= unsigned(h - 'A' + 10);
            else fail("invalid \\u escape");
        }
        return v;
    }

    static void append_utf8(std::string& out, unsigned cp) {
        if (cp < 0x80) {
            out += char(cp);
        } else if (cp < 0x800) {
            out += char(0xC0 | (cp >> 6));
            out += char(0x80 | (cp & 0x3F));
        } else if (cp < 0x10000) {
            out += char(0xE0 | (cp >> 12));
            out += char(0x80 | ((cp >> 6) & 0x3F));
            out += char(0x80 | (cp & 0x3F));
        } else {
            out += char(0xF0 | (cp >> 18));
            out += char(0x80 | ((cp >> 12) & 0x3F));
            out += char(0x80 | ((cp >> 6) & 0x3F));
            out += char(0x80 | (cp & 0x3F));
        }
    }

    /// Length of the valid UTF-8 sequence at s_[i_], or 0 (overlongs, surrogates, > U+10FFFF).
    std::size_t utf8_length() const {
        auto byte = [&](std::size_t k) -> unsigned {
            return i_ + k < s_.size() ? static_cast<unsigned char>(s_[i_ + k]) : 0u;
        };
        auto cont = [&](std::size_t k) { return (byte(k) & 0xC0) == 0x80; };
        const unsigned b0 = byte(0);
        if (b0 >= 0xC2 && b0 <= 0xDF) return cont(1) ? 2 : 0;
        if (b0 >= 0xE0 && b0 <= 0xEF) {
            const unsigned b1 = byte(1);
            if (!cont(1) || !cont(2)) return 0;
            if (b0 == 0xE0 && b1 < 0xA0) return 0;   // overlong
            if (b0 == 0xED && b1 >= 0xA0) return 0;  // UTF-16 surrogate
            return 3;
        }
        if (b0 >= 0xF0 && b0 <= 0xF4) {
            const unsigned b1 = byte(1);
            if (!cont(1) || !cont(2) || !cont(3)) return 0;
            if (b0 == 0xF0 && b1 < 0x90) return 0;  // overlong
            if (b0 == 0xF4 && b1 >= 0x90) return 0;  // above U+10FFFF
            return 4;
        }
        return 0;
    }

    std::string parse_string() {
        expect('"');
        std::string out;
        for (;;) {
            if (at_end()) fail("unterminated string");
            const auto c = static_cast<unsigned char>(s_[i_]);
            if (c == '"') {
                ++i_;
                return out;
            }
            if (c < 0x20) fail("control character in string");
            if (c == '\\') {
                ++i_;
                if (at_end()) fail("unterminated string");
                const char e = s_[i_++];
                switch (e) {
                    case '"': out += '"'; break;
                    case '\\': out += '\\'; break;
                    case '/': out += '/'; break;
                    case 'b': out += '\b'; break;
                    case 'f': out += '\f'; break;
                    case 'n': out += '\n'; break;
                    case 'r': out += '\r'; break;
                    case 't': out += '\t'; break;
                    case 'u': {
                        unsigned cp = hex4();
                        if (cp >= 0xDC00 && cp <= 0xDFFF) fail("unpaired UTF-16 surrogate in \\u escape");
                        if (cp >= 0xD800 && cp <= 0xDBFF) {
                            if (!consume_literal("\\u")) fail("unpaired UTF-16 surrogate in \\u escape");
                            const unsigned lo = hex4();
                            if (lo < 0xDC00 || lo > 0xDFFF) fail("unpaired UTF-16 surrogate in \\u escape");
                            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                        }
                        append_utf8(out, cp);
                        break;
                    }
                    default: --i_; fail("invalid escape '\\" + std::string(1, e) + "'");
                }
                continue;
            }
            if (c < 0x80) {
                out += char(c);
                ++i_;
                continue;
            }
            const std::size_t n = utf8_length();
            if (n == 0) fail("invalid UTF-8 in string");
            out.append(s_.substr(i_, n));
            i_ += n;
        }
    }

public:
    /// For messages: keeps them on one line and short whatever the input holds.
    static std::string printable(std::string_view s) {
        std::string out;
        for (char c : s.substr(0, 80)) out += (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) ? '?' : c;
        if (s.size() > 80) out += "...";
        return out;
    }

    /// True if `s` is valid UTF-8 (the writer checks names and metadata with it).
    static bool valid_utf8(std::string_view s) {
        Parser p(s);
        while (!p.at_end()) {
            if (static_cast<unsigned char>(p.s_[p.i_]) < 0x80) {
                ++p.i_;
                continue;
            }
            const std::size_t n = p.utf8_length();
            if (n == 0) return false;
            p.i_ += n;
        }
        return true;
    }

private:
    std::string_view s_;
    std::size_t i_ = 0;
    std::size_t values_left_;
};

inline Value parse(std::string_view text, std::size_t max_values = std::size_t(1) << 20) {
    return Parser(text, max_values).parse_document();
}

/// Writes `s` as a JSON string literal.
inline void append_quoted(std::string& out, std::string_view s) {
    static const char* hex = "0123456789abcdef";
    out += '"';
    for (char c : s) {
        const auto u = static_cast<unsigned char>(c);
        if (c == '"') out += "\\\"";
        else if (c == '\\') out += "\\\\";
        else if (u < 0x20) {
            out += "\\u00";
            out += hex[u >> 4];
            out += hex[u & 15];
        } else out += c;
    }
    out += '"';
}

}  // namespace json

// ---------------------------------------------------------------------------------------------
// Writing

/// One tensor to write: float32, row-major, `shape` in PyTorch order.
struct SafetensorsEntry {
    std::string name;
    std::vector<std::int64_t> shape;
    const float* data = nullptr;
};

namespace safetensors_detail {

inline std::uint64_t element_count(const std::vector<std::int64_t>& shape, const std::string& name) {
    std::uint64_t n = 1;
    for (std::int64_t d : shape) {
        if (d < 0) throw std::invalid_argument("segnet::write_safetensors: tensor '" + name + "' has a negative dimension");
        if (d != 0 && n > (std::uint64_t(1) << 60) / std::uint64_t(d))
            throw std::invalid_argument("segnet::write_safetensors: tensor '" + name + "' is too large");
        n *= std::uint64_t(d);
    }
    return n;
}

inline void write_le_u64(unsigned char* out, std::uint64_t v) {
    for (int k = 0; k < 8; ++k) out[k] = static_cast<unsigned char>(v >> (8 * k));
}

}  // namespace safetensors_detail

/// Writes tensors and string metadata to `path` atomically (temporary file, then rename): an
/// existing file is replaced only by a complete new one. Names must be unique, non-empty,
/// valid UTF-8 and not "__metadata__".
inline void write_safetensors(const std::filesystem::path& path, const std::vector<SafetensorsEntry>& tensors,
                              const std::map<std::string, std::string>& metadata = {}) {
    // Validate everything before creating any file.
    std::vector<std::uint64_t> counts;
    for (std::size_t i = 0; i < tensors.size(); ++i) {
        const SafetensorsEntry& t = tensors[i];
        if (t.name.empty() || t.name == "__metadata__" || !json::Parser::valid_utf8(t.name))
            throw std::invalid_argument("segnet::write_safetensors: invalid tensor name '" + t.name + "'");
        for (std::size_t j = 0; j < i; ++j)
            if (tensors[j].name == t.name)
                throw std::invalid_argument("segnet::write_safetensors: duplicate tensor name '" + t.name + "'");
        counts.push_back(safetensors_detail::element_count(t.shape, t.name));
        if (counts.back() > 0 && !t.data)
            throw std::invalid_argument("segnet::write_safetensors: tensor '" + t.name + "' has no data");
    }
    for (const auto& [k, v] : metadata)
        if (!json::Parser::valid_utf8(k) || !json::Parser::valid_utf8(v))
            throw std::invalid_argument("segnet::write_safetensors: metadata '" + k + "' is not valid UTF-8");

    std::string header = "{";
    bool first = true;
    if (!metadata.empty()) {
        header += "\"__metadata__\":{";
        for (const auto& [k, v] : metadata) {
            if (!first) header += ',';
            first = false;
            json::append_quoted(header, k);
            header += ':';
            json::append_quoted(header, v);
        }
        header += '}';
        first = false;
    }
    std::uint64_t offset = 0;
    for (std::size_t i = 0; i < tensors.size(); ++i) {
        if (!first) header += ',';
        first = false;
        json::append_quoted(header, tensors[i].name);
        header += ":{\"dtype\":\"F32\",\"shape\":[";
        for (std::size_t d = 0; d < tensors[i].shape.size(); ++d) {
            if (d) header += ',';
            header += std::to_string(tensors[i].shape[d]);
        }
        const std::uint64_t end = offset + counts[i] * 4;
        header += "],\"data_offsets\":[" + std::to_string(offset) + "," + std::to_string(end) + "]}";
        offset = end;
    }
    header += '}';
    // Pad with spaces to a multiple of 8 so the data starts aligned (as the reference writer).
    while ((8 + header.size()) % 8 != 0) header += ' ';

    write_file_atomically(path, [&](FileSink& out) {
        unsigned char len[8];
        safetensors_detail::write_le_u64(len, header.size());
        out.write(len, 8);
        out.write(header);
        for (std::size_t i = 0; i < tensors.size(); ++i) {
            const std::size_t n = std::size_t(counts[i]);
            if constexpr (std::endian::native == std::endian::little) {
                out.write(tensors[i].data, n * 4);
            } else {
                std::vector<unsigned char> buf(n * 4);
                for (std::size_t e = 0; e < n; ++e) {
                    const auto bits = std::bit_cast<std::uint32_t>(tensors[i].data[e]);
                    for (int k = 0; k < 4; ++k) buf[e * 4 + std::size_t(k)] = static_cast<unsigned char>(bits >> (8 * k));
                }
                out.write(buf.data(), buf.size());
            }
        }
    });
}

// ---------------------------------------------------------------------------------------------
// Reading

struct SafetensorsLimits {
    std::uint64_t max_header_bytes = 100'000'000;  ///< as the reference implementation
    std::uint64_t max_file_bytes = 16ull << 30;
    std::size_t max_rank = 16;
    std::size_t max_json_values = std::size_t(1) << 20;  ///< bounds parser memory (~100 MB)
};

/// What the header says about one tensor (validated).
struct SafetensorsTensorInfo {
    std::string name;
    std::string dtype;  ///< always "F32" after validation
    std::vector<std::int64_t> shape;
    std::uint64_t begin = 0;  ///< byte offsets into the data section
    std::uint64_t end = 0;
    std::uint64_t elements() const { return (end - begin) / 4; }
};

inline std::string shape_to_string(const std::vector<std::int64_t>& shape) {
    std::string s = "[";
    for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
    return s + "]";
}

/// A parsed, validated safetensors file held in memory.
class SafetensorsFile {
public:
    /// Reads and validates `path`; throws DataError naming the file and the problem.
    static SafetensorsFile load(const std::filesystem::path& path, const SafetensorsLimits& limits = {}) {
        return parse(read_file_bytes(path, limits.max_file_bytes, "read safetensors file"), path.string(), limits);
    }

    /// Validates bytes already in memory; `source` names them in messages (the fuzzing entry).
    static SafetensorsFile parse(std::vector<unsigned char> bytes, const std::string& source,
                                 const SafetensorsLimits& limits = {}) {
        SafetensorsFile f;
        f.source_ = source;
        f.bytes_ = std::move(bytes);
        f.validate(limits);
        return f;
    }

    const std::string& source() const { return source_; }
    const std::map<std::string, std::string>& metadata() const { return metadata_; }
    /// Tensors in order of their data offsets.
    const std::vector<SafetensorsTensorInfo>& tensors() const { return tensors_; }
    bool contains(std::string_view name) const { return find(name) != nullptr; }

    const SafetensorsTensorInfo& info(std::string_view name) const {
        const SafetensorsTensorInfo* t = find(name);
        if (!t) fail("no tensor named '" + json::Parser::printable(name) + "'");
        return *t;
    }

    /// The tensor's values; throws if it is missing.
    std::vector<float> read(std::string_view name) const {
        const SafetensorsTensorInfo& t = info(name);
        std::vector<float> out(std::size_t(t.elements()));
        copy_out(t, out.data());
        return out;
    }
    /// The tensor's values; throws if it is missing or its shape is not `expected_shape`.
    std::vector<float> read(std::string_view name, const std::vector<std::int64_t>& expected_shape) const {
        check_shape(info(name), expected_shape);
        return read(name);
    }
    /// Copies the tensor into `dst`, which must hold exactly its elements (shape checked).
    void read_into(std::string_view name, std::span<float> dst, const std::vector<std::int64_t>& expected_shape) const {
        const SafetensorsTensorInfo& t = info(name);
        check_shape(t, expected_shape);
        if (dst.size() != t.elements())
            fail("tensor '" + t.name + "' has " + std::to_string(t.elements()) + " elements, the destination holds " +
                 std::to_string(dst.size()));
        copy_out(t, dst.data());
    }

private:
    [[noreturn]] void fail(const std::string& what) const {
        throw DataError("segnet: cannot read safetensors file '" + source_ + "': " + what);
    }

    const SafetensorsTensorInfo* find(std::string_view name) const {
        for (const auto& t : tensors_)
            if (t.name == name) return &t;
        return nullptr;
    }

    void check_shape(const SafetensorsTensorInfo& t, const std::vector<std::int64_t>& expected) const {
        if (t.shape != expected)
            fail("tensor '" + t.name + "' has shape " + shape_to_string(t.shape) + ", expected " +
                 shape_to_string(expected));
    }

    void copy_out(const SafetensorsTensorInfo& t, float* dst) const {
        const unsigned char* src = bytes_.data() + data_start_ + t.begin;
        const std::size_t n = std::size_t(t.elements());
        if constexpr (std::endian::native == std::endian::little) {
            if (n) std::memcpy(dst, src, n * 4);  // memcpy: the data need not be 4-byte aligned
        } else {
            for (std::size_t e = 0; e < n; ++e) {
                std::uint32_t bits = 0;
                for (int k = 0; k < 4; ++k) bits |= std::uint32_t(src[e * 4 + std::size_t(k)]) << (8 * k);
                dst[e] = std::bit_cast<float>(bits);
            }
        }
    }

    /// A non-negative JSON integer that fits `max`, or a message.
    std::uint64_t to_uint(const json::Value& v, std::uint64_t max, const std::string& what) const {
        if (v.kind != json::Value::Kind::number) fail(what + " must be a number, got " + json::kind_name(v.kind));
        if (v.text.empty() || v.text.find_first_not_of("0123456789") != std::string::npos)
            fail(what + " must be a non-negative integer, got " + json::Parser::printable(v.text));
        if (v.text.size() > 19) fail(what + " " + json::Parser::printable(v.text) + " is too large");
        const std::uint64_t x = std::stoull(v.text);
        if (x > max) fail(what + " " + v.text + " is too large");
        return x;
    }

    void validate(const SafetensorsLimits& limits) {
        const std::uint64_t size = bytes_.size();
        if (size < 8) fail("file is " + std::to_string(size) + " bytes, too short for the 8-byte header length");
        std::uint64_t n = 0;
        for (int k = 7; k >= 0; --k) n = (n << 8) | bytes_[std::size_t(k)];
        if (n > size - 8)
            fail("header length " + std::to_string(n) + " runs past the end of the file (" + std::to_string(size) +
                 " bytes; truncated or not a safetensors file)");
        if (n > limits.max_header_bytes)
            fail("header length " + std::to_string(n) + " exceeds the limit of " +
                 std::to_string(limits.max_header_bytes) + " bytes");
        if (n < 2) fail("header length " + std::to_string(n) + " is too short for a JSON object");
        data_start_ = 8 + n;
        const std::uint64_t data_bytes = size - data_start_;

        json::Value root;
        try {
            root = json::parse(std::string_view(reinterpret_cast<const char*>(bytes_.data() + 8), std::size_t(n)),
                               limits.max_json_values);
        } catch (const json::ParseError& e) {
            fail(std::string("invalid JSON header: ") + e.what());
        }
        if (root.kind != json::Value::Kind::object)
            fail(std::string("the JSON header must be an object, got ") + json::kind_name(root.kind));

        for (auto& [key, value] : root.members) {
            if (key == "__metadata__") {
                if (value.kind != json::Value::Kind::object)
                    fail(std::string("__metadata__ must be an object, got ") + json::kind_name(value.kind));
                for (auto& [mk, mv] : value.members) {
                    if (mv.kind != json::Value::Kind::string)
                        fail("__metadata__ value for '" + json::Parser::printable(mk) + "' must be a string, got " +
                             json::kind_name(mv.kind));
                    metadata_[mk] = std::move(mv.text);
                }
                continue;
            }
            tensors_.push_back(parse_tensor(key, value, data_bytes, limits));
        }

        // Tensors must not share bytes: a crafted file could alias one tensor into another.
        std::sort(tensors_.begin(), tensors_.end(),
                  [](const auto& a, const auto& b) { return a.begin != b.begin ? a.begin < b.begin : a.end < b.end; });
        const SafetensorsTensorInfo* last = nullptr;  // the non-empty tensor reaching furthest so far
        for (const SafetensorsTensorInfo& t : tensors_) {
            if (t.end == t.begin) continue;  // empty tensors occupy no bytes
            if (last && t.begin < last->end)
                fail("tensors '" + json::Parser::printable(last->name) + "' and '" + json::Parser::printable(t.name) +
                     "' overlap (data_offsets [" + std::to_string(last->begin) + ", " + std::to_string(last->end) +
                     "] and [" + std::to_string(t.begin) + ", " + std::to_string(t.end) + "])");
            if (!last || t.end > last->end) last = &t;
        }
    }

    SafetensorsTensorInfo parse_tensor(const std::string& key, const json::Value& value, std::uint64_t data_bytes,
                                       const SafetensorsLimits& limits) const {
        const std::string name = "tensor '" + json::Parser::printable(key) + "'";
        if (value.kind != json::Value::Kind::object)
            fail(name + " must be an object, got " + json::kind_name(value.kind));
        const json::Value *dtype = nullptr, *shape = nullptr, *offsets = nullptr;
        for (const auto& [k, v] : value.members) {
            if (k == "dtype") dtype = &v;
            else if (k == "shape") shape = &v;
            else if (k == "data_offsets") offsets = &v;
            else fail(name + " has an unknown field '" + json::Parser::printable(k) + "'");
        }
        if (!dtype) fail(name + " has no 'dtype'");
        if (!shape) fail(name + " has no 'shape'");
        if (!offsets) fail(name + " has no 'data_offsets'");

        SafetensorsTensorInfo t;
        t.name = key;
        if (dtype->kind != json::Value::Kind::string)
            fail(name + " dtype must be a string, got " + json::kind_name(dtype->kind));
        if (dtype->text != "F32")
            fail(name + " has dtype " + json::Parser::printable(dtype->text) + "; only F32 is supported");
        t.dtype = dtype->text;

        if (shape->kind != json::Value::Kind::array)
            fail(name + " shape must be an array, got " + json::kind_name(shape->kind));
        if (shape->items.size() > limits.max_rank)
            fail(name + " has " + std::to_string(shape->items.size()) + " dimensions, more than " +
                 std::to_string(limits.max_rank));
        // Size in bytes, compared against the data actually present at each step so that a
        // hostile shape cannot overflow the product.
        std::uint64_t bytes = 4;
        bool zero = false, too_large = false;
        for (const json::Value& d : shape->items) {
            const std::uint64_t dim = to_uint(d, std::uint64_t(1) << 53, name + " shape dimension");
            t.shape.push_back(std::int64_t(dim));
            if (dim == 0) zero = true;
            else if (bytes > data_bytes / dim) too_large = true;
            else bytes *= dim;
        }
        if (zero) bytes = 0, too_large = false;

        if (offsets->kind != json::Value::Kind::array || offsets->items.size() != 2)
            fail(name + " data_offsets must be an array [begin, end]");
        t.begin = to_uint(offsets->items[0], ~std::uint64_t(0), name + " data_offsets begin");
        t.end = to_uint(offsets->items[1], ~std::uint64_t(0), name + " data_offsets end");
        const std::string range = "[" + std::to_string(t.begin) + ", " + std::to_string(t.end) + "]";
        if (t.end < t.begin) fail(name + " data_offsets " + range + " end before begin");
        if (t.end > data_bytes)
            fail(name + " data_offsets " + range + " run past the data section (" + std::to_string(data_bytes) +
                 " bytes)");
        if (too_large || t.end - t.begin != bytes)
            fail(name + " data_offsets " + range + " hold " + std::to_string(t.end - t.begin) + " bytes, but shape " +
                 shape_to_string(t.shape) + " of F32 needs " +
                 (too_large ? std::string("more than the file holds") : std::to_string(bytes)));
        return t;
    }

    std::string source_;
    std::vector<unsigned char> bytes_;
    std::uint64_t data_start_ = 0;
    std::map<std::string, std::string> metadata_;
    std::vector<SafetensorsTensorInfo> tensors_;
};

}  // namespace segnet
