// segnet/export/protobuf.hpp: the part of Protocol Buffers' wire format a writer of ONNX files
// needs, no more: varints, 32-bit floats and length-delimited fields, appended in order.
//
//   proto::Message dim;  dim.varint(1, 360);                    // TensorShapeProto.Dimension.dim_value
//   proto::Message shape; shape.message(1, dim);                // TensorShapeProto.dim
//
// The encoding (https://protobuf.dev/programming-guides/encoding/): each field is a key, the
// varint (field_number << 3 | wire_type), then its value: wire type 0 a varint (base-128, low
// group first, negative int64 as its 64-bit two's complement), 2 a varint length and that many
// bytes (strings, bytes, nested messages), 5 four little-endian bytes (float). Repeated scalars
// are written one field per value (unpacked: what proto2, ONNX's syntax, writes by default).
#pragma once

#include <bit>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace segnet::onnx::proto {

static_assert(std::endian::native == std::endian::little,
              "segnet::onnx: the ONNX writer copies float tensors as little-endian bytes (a big-endian host needs a swap)");

/// A message being written: its fields' bytes in the order they were added.
class Message {
public:
    Message& varint(int field, std::uint64_t value) {
        key(field, 0);
        put_varint(value);
        return *this;
    }
    /// int64 and int32 fields: negative values as their 64-bit two's complement (10 bytes).
    Message& integer(int field, std::int64_t value) { return varint(field, std::uint64_t(value)); }
    Message& float32(int field, float value) {
        key(field, 5);
        char raw[4];
        std::memcpy(raw, &value, 4);
        bytes_.append(raw, 4);
        return *this;
    }
    Message& bytes(int field, std::string_view value) {
        key(field, 2);
        put_varint(value.size());
        bytes_.append(value);
        return *this;
    }
    Message& message(int field, const Message& value) { return bytes(field, value.bytes_); }
    const std::string& encoded() const { return bytes_; }

private:
    void key(int field, int wire_type) { put_varint(std::uint64_t(field) << 3 | std::uint64_t(wire_type)); }
    void put_varint(std::uint64_t v) {
        while (v >= 0x80) {
            bytes_.push_back(char((v & 0x7f) | 0x80));
            v >>= 7;
        }
        bytes_.push_back(char(v));
    }
    std::string bytes_;
};

}  // namespace segnet::onnx::proto
