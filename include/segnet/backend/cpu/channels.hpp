// segnet/backend/cpu/channels.hpp: copying a block of channels between NCHW tensors, the
// kernel of channel concatenation (Concat's forward) and its split (Concat's backward).
//
//   segnet::backend::cpu::copy_channels(a, 64, 0, y, 128, 0, 64, n, plane, false);   // y[:, 0:64]  = a
//   segnet::backend::cpu::copy_channels(b, 64, 0, y, 128, 64, 64, n, plane, false);  // y[:, 64:128] = b
//   segnet::backend::cpu::copy_channels(dy, 128, 64, db, 64, 0, 64, n, plane, true); // db += dy[:, 64:128]
#pragma once

#include <algorithm>
#include <cstdint>

#include "segnet/backend/cpu/thread_pool.hpp"

namespace segnet::backend::cpu {

/// dst[i, dst_c0 + c] = (or += when accumulate) src[i, src_c0 + c] for c < count, every image i;
/// src has src_c channels, dst has dst_c, both `plane` values per channel.
inline void copy_channels(const float* src, int src_c, int src_c0, float* dst, int dst_c, int dst_c0, int count,
                          int batch, std::int64_t plane, bool accumulate) {
    parallel_for(0, std::int64_t(batch) * count, [&](std::int64_t b, std::int64_t e, int) {
        for (std::int64_t item = b; item < e; ++item) {
            const std::int64_t n = item / count, c = item % count;
            const float* s = src + (n * src_c + src_c0 + c) * plane;
            float* d = dst + (n * dst_c + dst_c0 + c) * plane;
            if (accumulate)
                for (std::int64_t i = 0; i < plane; ++i) d[i] += s[i];
            else
                std::copy_n(s, plane, d);
        }
    });
}

}  // namespace segnet::backend::cpu
