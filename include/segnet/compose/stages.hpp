// segnet/compose/stages.hpp: the words a network type is written in.
//
//   using Net = Network<Input<3, dyn, dyn>,
//       Encoder<Block<Conv<64, 7>, BatchNorm, ReLU>, MaxPool<2>>,
//       Decoder<Unpool<2>, Block<Conv<64, 7, Bias::without>, BatchNorm>>, Classifier<11>>;
//
// Input<C, H, W>: the input shape (H, W static or dyn). Block<L...>: layers applied in order.
// Encoder<Body, Pool>: a body (layer or Block) then a pooling layer; its pre-pool feature map
// and pooling indices are kept for its Decoder. Decoder<E...>: layers/Blocks; its paired
// layers (Unpool, Add, BilinearUpsample, TransposedConv) read the Encoder it pairs with.
// Decoders pair with encoders like brackets: the last Encoder with the first Decoder.
#pragma once

#include <type_traits>

#include "segnet/core/shape.hpp"
#include "segnet/layers/layer.hpp"

namespace segnet {

template <int C, int H = dyn, int W = dyn>
struct Input : Shape<C, H, W> {};

template <class T>
inline constexpr bool is_input_v = false;
template <int C, int H, int W>
inline constexpr bool is_input_v<Input<C, H, W>> = true;

template <class... Elements>
struct Block;
template <class T>
inline constexpr bool is_block_v = false;
template <class... E>
inline constexpr bool is_block_v<Block<E...>> = true;

/// Something a Block, an Encoder body or a Decoder can hold: a layer or a Block of them.
template <class E>
concept Element = Layer<E> || is_block_v<E>;

template <class... Elements>
struct Block {
    static_assert((Element<Elements> && ...),
                  "Block<...>: every element must be a segnet layer (Conv, BatchNorm, ReLU, ...) or a Block");
    template <class F>
    static constexpr void each(F&& f) {
        (f.template operator()<Elements>(), ...);
    }
};

template <class Body, class Pool>
struct Encoder {
    static_assert(Element<Body>, "Encoder<Body, Pool>: Body must be a layer or a Block<...> of layers");
    static_assert(PoolingLayer<Pool>,
                  "Encoder<Body, Pool>: Pool must be a pooling layer such as MaxPool<2> (one that declares "
                  "geometry {k, k, 1}, k >= 2)");
    using body = Body;
    using pool = Pool;
};

template <class... Elements>
struct Decoder {
    static_assert(sizeof...(Elements) > 0, "Decoder<...>: a decoder needs at least an upsampling layer");
    static_assert((Element<Elements> && ...),
                  "Decoder<...>: every element must be a segnet layer (Unpool, Add, Conv, ...) or a Block");
    template <class F>
    static constexpr void each(F&& f) {
        (f.template operator()<Elements>(), ...);
    }
};

template <class T>
inline constexpr bool is_encoder_v = false;
template <class B, class P>
inline constexpr bool is_encoder_v<Encoder<B, P>> = true;
template <class T>
inline constexpr bool is_decoder_v = false;
template <class... E>
inline constexpr bool is_decoder_v<Decoder<E...>> = true;

/// What a Network may list after its Input.
template <class S>
concept Stage = is_encoder_v<S> || is_decoder_v<S> || Element<S>;

enum class StageKind { encoder, decoder, other };

}  // namespace segnet
