// segnet/layers/traits.hpp: what the compile-time analysis asks of a layer beyond the Layer
// concept: what a decoder's paired layer needs its Encoder to keep (storage, memory), and how a
// layer widens the receptive field.
//
//   constexpr segnet::SkipStorage s = segnet::skip_storage_of<segnet::Add>({64, 45, 60}, skip);
//   // s.channels == 64: the encoder's whole 64-channel map is kept until the decoder runs
//   constexpr segnet::LayerGeometry g = segnet::geometry_of<segnet::MaxPool<2>>;  // window 2, down 2
//
// A new layer states both by members (`static constexpr SkipStorage skip_storage(Dims, SkipDims)`,
// `static constexpr LayerGeometry geometry`); the defaults cover the existing layers through the
// members they already have (`kernel`, `factor`) and the specialisations below. Depends on
// core/ and layers/layer.hpp only (no backend).
#pragma once

#include "segnet/core/shape_rule.hpp"
#include "segnet/layers/layer.hpp"

namespace segnet {

/// What a paired layer reads from its Encoder, i.e. what the encoder must keep until the
/// decoder runs.
struct SkipStorage {
    bool indices = false;        // the pooling indices (SegNet's unpooling)
    int channels = 0;            // float maps per pre-pool pixel kept for the decoder (a feature
                                 // map: its channels; FCN's reduced map: the reduced channels)
    bool reads_feature = false;  // the decoder's output depends on the encoder's values (skip)
};

/// How a layer maps its input grid to its output grid, for the receptive field: an output
/// value reads `window` consecutive input values per axis; `down` is the stride (pooling),
/// `up` the upsampling factor (unpooling, transposed convolution).
struct LayerGeometry {
    int window = 1;
    int down = 1;
    int up = 1;
};

// The existing layers, declared (not defined) here so this header need not include them.
template <int K>
struct Unpool;
struct Add;
template <int Classes, int KernelSize>
struct Classifier;
enum class UpsampleInit;
template <int OutC, int K, int Stride, UpsampleInit Init>
struct TransposedConv;

namespace detail {
constexpr int ceil_div(int a, int b) { return (a + b - 1) / b; }

template <class L>
struct skip_storage_rule {
    static constexpr SkipStorage get(Dims in, SkipDims skip) {
        if constexpr (requires { { L::skip_storage(Dims{}, SkipDims{}) } -> std::same_as<SkipStorage>; })
            return L::skip_storage(in, skip);
        else
            return {};
    }
};
template <int K>
struct skip_storage_rule<Unpool<K>> {
    static constexpr SkipStorage get(Dims, SkipDims) { return {true, 0, false}; }
};
template <>
struct skip_storage_rule<Add> {
    static constexpr SkipStorage get(Dims, SkipDims skip) { return {false, skip.feature.c, true}; }
};

template <class L>
struct geometry_rule {
    static constexpr LayerGeometry get() {
        if constexpr (requires { { L::geometry } -> std::convertible_to<LayerGeometry>; }) {
            return L::geometry;
        } else if constexpr (PairedLayer<L> && requires { L::factor; }) {
            // An upsampler: a kernel of size k with stride f reads ceil(k / f) inputs per axis.
            if constexpr (requires { L::kernel; }) return {ceil_div(L::kernel, L::factor), 1, L::factor};
            else return {1, 1, L::factor};  // unpooling: one pooled value per output
        } else if constexpr (requires { L::factor; }) {
            return {L::factor, L::factor, 1};  // pooling: window = stride = factor
        } else if constexpr (requires { L::kernel; }) {
            return {L::kernel, 1, 1};
        } else {
            return {};
        }
    }
};
template <int Classes, int KernelSize>
struct geometry_rule<Classifier<Classes, KernelSize>> {
    static constexpr LayerGeometry get() { return {KernelSize, 1, 1}; }
};
template <int OutC, int K, int Stride, UpsampleInit Init>
struct geometry_rule<TransposedConv<OutC, K, Stride, Init>> {
    static constexpr LayerGeometry get() { return {ceil_div(K, Stride), 1, Stride}; }
};
}  // namespace detail

/// What the paired layer L needs its Encoder to keep (nothing for plain layers).
template <class L>
constexpr SkipStorage skip_storage_of(Dims in, SkipDims skip) {
    return detail::skip_storage_rule<L>::get(in, skip);
}

/// L's effect on the receptive field.
template <class L>
inline constexpr LayerGeometry geometry_of = detail::geometry_rule<L>::get();

}  // namespace segnet
