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

/// Layers applied in order. (What it holds is checked once, by the Network: well_formed_v.)
template <class... Elements>
struct Block {
    template <class F>
    static constexpr void each(F&& f) {
        (f.template operator()<Elements>(), ...);
    }
};

/// A body (a layer or a Block), then a pooling layer (PoolingLayer: MaxPool<2>).
template <class Body, class Pool>
struct Encoder {
    using body = Body;
    using pool = Pool;
};

/// Layers and Blocks, at least one (its upsampler).
template <class... Elements>
struct Decoder {
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

/// Whether S, a stage or an element of one, holds layers where layers belong: a Block's and a
/// Decoder's elements and an Encoder's body are layers or well-formed Blocks, an Encoder's pool is
/// a PoolingLayer, a Decoder is not empty. Read without instantiating the stage, so that the
/// Network reports a fault once (compose/diagnostics.hpp, stage_check) and nothing cascades.
template <class S>
inline constexpr bool well_formed_v = Layer<S>;
template <class... E>
inline constexpr bool well_formed_v<Block<E...>> = (well_formed_v<E> && ...);
template <class B, class P>
inline constexpr bool well_formed_v<Encoder<B, P>> = well_formed_v<B> && PoolingLayer<P>;
template <class... E>
inline constexpr bool well_formed_v<Decoder<E...>> = sizeof...(E) > 0 && (well_formed_v<E> && ...);

/// The position (1-based, after Input) of the first stage that is not well formed; 0: none.
template <class... Stages>
constexpr int first_malformed_stage() {
    int position = 0, found = 0;
    ((++position, found = found == 0 && !well_formed_v<Stages> ? position : found), ...);
    return found;
}

enum class StageKind { encoder, decoder, other };

}  // namespace segnet
