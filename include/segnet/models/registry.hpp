// segnet/models/registry.hpp: every built-in model by its kebab-case name, for programs that
// choose a model at run time (segnet-train --model fcn-basic --classes 11).
//
//   segnet::models::with_model("fcn-basic", 11, [&]<class Net>() {
//       segnet::Model<Net, segnet::Cpu> model(42);   // Net = models::FcnBasic<11>
//       return train(model); });
//   for (std::string_view n : segnet::models::model_names) std::puts(n.data());
//
// with_model() compiles the callable once per model and supported class count, so a program's
// compile time grows with the list: about 0.2 s of CPU per (model, count) for Model + forward,
// 0.45 s for the trainer (docs/models.md#compile-time). The default list is the class counts
// of the common datasets; a build can choose its own with -DSEGNET_CLASS_COUNTS=11,19. The
// callable must return the same type for every model.
#pragma once

#include <array>
#include <functional>
#include <map>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "segnet/compose/model.hpp"
#include "segnet/models/bayesian.hpp"
#include "segnet/models/deconvnet.hpp"
#include "segnet/models/deeplab_largefov.hpp"
#include "segnet/models/fcn_vgg16.hpp"
#include "segnet/models/segnet.hpp"
#include "segnet/models/segnet_basic.hpp"
#include "segnet/models/unet.hpp"
#include "segnet/models/variants.hpp"
// issue 19: the ResNet-50 peers
#include "segnet/models/deeplabv3.hpp"
#include "segnet/models/pspnet.hpp"

namespace segnet::models {

/// The models with_model() knows, as templates over the class count, in the paper's order.
template <template <int> class... Models>
struct ModelList {
    static constexpr std::size_t size = sizeof...(Models);
};
using BuiltinModels =
    ModelList<SegNet, SegNetBasic, BilinearInterpolation, SegNetBasicEncoderAddition, SegNetBasicSingleChannelDecoder,
              FcnBasic, FcnBasicNoAddition, FcnBasicNoDimReduction, FcnBasicNoAdditionNoDimReduction, SegNetBasicCaffe,
              BayesianSegNet, BayesianSegNetBasic, UNet,
              // issue 19: the VGG peers
              DeepLabLargeFov, FcnVgg16, DeconvNet,
              // issue 19: the ResNet-50 peers (pspnet exports to ONNX only with a static size)
              DeepLabV3, PspNet>;

/// Class counts with_model() supports. Default: 2 to 5 (binary and small tasks, tests), 11
/// (CamVid), 12 (CamVid with void as a class), 19 (Cityscapes), 21 (PASCAL VOC), 37 (SUN
/// RGB-D, the paper's indoor benchmark), 150 (ADE20K). Every count in 1..32 (+150, 182) would
/// cost a program using with_model() 2.6 times the compile time of this list (measured for
/// Model + forward of every model: 75 s of CPU and 1.2 GB instead of 29 s and 0.7 GB).
#ifdef SEGNET_CLASS_COUNTS
using SupportedClasses = std::integer_sequence<int, SEGNET_CLASS_COUNTS>;
#else
using SupportedClasses = std::integer_sequence<int, 2, 3, 4, 5, 11, 12, 19, 21, 37, 150>;
#endif

namespace detail {
template <template <int> class... M>
constexpr std::array<std::string_view, sizeof...(M)> names_of(ModelList<M...>) {
    return {M<1>::name...};
}
template <int... C>
constexpr std::array<int, sizeof...(C)> classes_of(std::integer_sequence<int, C...>) {
    return {C...};
}
}  // namespace detail

/// A model's registry name as a template argument: model_named_t<"fcn-basic", 11>.
template <std::size_t N>
struct ModelName {
    char text[N]{};
    constexpr ModelName(const char (&s)[N]) {
        for (std::size_t i = 0; i < N; ++i) text[i] = s[i];
    }
    constexpr std::string_view view() const { return {text, N - 1}; }
};

namespace detail {
template <ModelName Name, int Classes, template <int> class First, template <int> class... Rest>
constexpr auto find_model(ModelList<First, Rest...>) {
    if constexpr (First<Classes>::name == Name.view()) {
        return std::type_identity<First<Classes>>{};
    } else {
        static_assert(sizeof...(Rest) > 0, "segnet: model_named_t: no built-in model has this name (see model_names)");
        if constexpr (sizeof...(Rest) > 0) return find_model<Name, Classes>(ModelList<Rest...>{});
    }
}
}  // namespace detail

/// The built-in model called Name with Classes classes, found at compile time:
/// model_named_t<"segnet-basic", 11> is models::SegNetBasic<11>.
template <ModelName Name, int Classes>
using model_named_t = typename decltype(detail::find_model<Name, Classes>(BuiltinModels{}))::type;

/// Every built-in model's name: "segnet", "segnet-basic", "bilinear-interpolation", ...
inline constexpr auto model_names = detail::names_of(BuiltinModels{});
/// Every class count with_model() accepts, ascending.
inline constexpr auto supported_classes = detail::classes_of(SupportedClasses{});

constexpr bool is_model_name(std::string_view name) {
    for (std::string_view n : model_names)
        if (n == name) return true;
    return false;
}
constexpr bool is_supported_classes(int classes) {
    for (int c : supported_classes)
        if (c == classes) return true;
    return false;
}

namespace detail {
inline std::string joined_names() {
    std::string s;
    for (std::string_view n : model_names) s += (s.empty() ? "" : ", ") + std::string(n);
    return s;
}
inline std::string classes_text() {
    std::string s;
    for (int c : supported_classes) s += (s.empty() ? "" : ", ") + std::to_string(c);
    return s;
}

/// The one message for a name that is no model (the built-ins, then those a program registered).
inline std::invalid_argument unknown_model(std::string_view name, const std::vector<std::string_view>& registered = {}) {
    std::string names = joined_names();
    for (std::string_view n : registered) names += ", " + std::string(n);
    return std::invalid_argument("segnet: unknown model '" + std::string(name) + "'; the models are: " + names);
}
/// The one message for a class count with_model() was not compiled for.
inline std::invalid_argument unsupported_classes(int classes) {
    return std::invalid_argument("segnet: " + std::to_string(classes) + " classes is not a supported class count (" +
                                 classes_text() + "; add it to segnet::models::SupportedClasses or -DSEGNET_CLASS_COUNTS)");
}

template <class Net, class F>
decltype(auto) call_with(F& f) {
    return f.template operator()<Net>();
}

template <template <int> class M, class F, int... C>
decltype(auto) dispatch_classes(int classes, F& f, std::integer_sequence<int, C...>) {
    using R = decltype(f.template operator()<M<1>>());
    static_assert((std::is_same_v<R, decltype(f.template operator()<M<C>>())> && ...),
                  "with_model: the callable must return the same type for every model and class count");
    using Fn = R (*)(F&);
    static constexpr Fn table[] = {&call_with<M<C>, F>...};
    static constexpr int counts[] = {C...};
    for (std::size_t i = 0; i < sizeof...(C); ++i)
        if (counts[i] == classes) return table[i](f);
    throw unsupported_classes(classes);
}

template <class F, template <int> class First, template <int> class... Rest>
decltype(auto) dispatch_models(std::string_view name, int classes, F& f, ModelList<First, Rest...>) {
    if (name == First<1>::name) return dispatch_classes<First>(classes, f, SupportedClasses{});
    if constexpr (sizeof...(Rest) > 0) {
        return dispatch_models(name, classes, f, ModelList<Rest...>{});
    } else {
        throw unknown_model(name);
        return dispatch_classes<First>(classes, f, SupportedClasses{});  // not reached: fixes the type
    }
}
}  // namespace detail

/// Calls f.template operator()<Net>() with Net the built-in model called `name` for `classes`
/// classes (e.g. models::FcnBasic<11>), and returns what it returns. Throws
/// std::invalid_argument naming the valid models (unknown name) or the supported counts.
template <class F>
decltype(auto) with_model(std::string_view name, int classes, F&& f) {
    if (!is_model_name(name)) throw detail::unknown_model(name);
    if (!is_supported_classes(classes)) throw detail::unsupported_classes(classes);
    return detail::dispatch_models(name, classes, f, BuiltinModels{});
}

/// How a program builds a model it knows by name (its own designs, next to the built-ins).
template <class Device>
using ModelFactory = std::function<std::unique_ptr<AnyModel<Device>>(int classes, std::uint64_t seed)>;

template <class Device>
struct RegisteredNetwork {
    int classes = 0;
    ModelFactory<Device> make;
    Analysis (*analyse)(Dims input) = nullptr;  ///< Net::analyse: the shape walk, without building the model
};

/// The networks registered with register_network(), by name.
template <class Device = Cpu>
std::map<std::string, RegisteredNetwork<Device>, std::less<>>& registered_networks() {
    static std::map<std::string, RegisteredNetwork<Device>, std::less<>> networks;
    return networks;
}

/// Makes a network type of your own a `--model` choice of the programs (programs/*.hpp) and of
/// make_model(), under `name` (default: Net::name). Its class count is the one in its type.
///   struct MyNet : Network<...> { static constexpr std::string_view name = "my-net"; };
///   segnet::models::register_network<MyNet>();
template <NetworkType Net, class Device = Cpu>
void register_network(std::string name = std::string(Net::name)) {
    registered_networks<Device>()[name] = {Net::analysis.output.c, [](int, std::uint64_t seed) -> std::unique_ptr<AnyModel<Device>> {
        return std::make_unique<Model<Net, Device>>(seed);
    }, &Net::analyse};
}

/// Throws std::invalid_argument (naming the valid models, or the supported class counts) unless
/// make_model(name, classes) would succeed.
template <class Device = Cpu>
void check_model(std::string_view name, int classes) {
    if (const auto it = registered_networks<Device>().find(name); it != registered_networks<Device>().end()) {
        if (classes != it->second.classes)
            throw std::invalid_argument("segnet: model '" + std::string(name) + "' has " +
                                        std::to_string(it->second.classes) + " classes, not " + std::to_string(classes));
        return;
    }
    if (!is_model_name(name)) {
        std::vector<std::string_view> registered;
        for (const auto& entry : registered_networks<Device>()) registered.push_back(entry.first);
        throw detail::unknown_model(name, registered);
    }
    if (!is_supported_classes(classes)) throw detail::unsupported_classes(classes);
}

/// The model called `name` (registered with register_network(), or built in) with `classes`
/// classes, built on Device and initialised with `seed`, behind the type-erased AnyModel
/// interface (what programs and the trainer take).
template <class Device = Cpu>
std::unique_ptr<AnyModel<Device>> make_model(std::string_view name, int classes, std::uint64_t seed = 0) {
    check_model<Device>(name, classes);
    if (const auto it = registered_networks<Device>().find(name); it != registered_networks<Device>().end())
        return it->second.make(classes, seed);
    return with_model(name, classes, [&]<class Net>() -> std::unique_ptr<AnyModel<Device>> {
        return std::make_unique<Model<Net, Device>>(seed);
    });
}

/// The shape walk of the model called `name` with `classes` classes for an input of `input`
/// (channels, height, width), without building it: whether that size fits the network
/// (Analysis::ok(), else Analysis::diag) and the activation memory it needs. Throws as make_model.
template <class Device = Cpu>
Analysis analyse_model(std::string_view name, int classes, Dims input) {
    check_model<Device>(name, classes);
    if (const auto it = registered_networks<Device>().find(name); it != registered_networks<Device>().end())
        return it->second.analyse(input);
    return with_model(name, classes, [&]<class Net>() { return Net::analyse(input); });
}

}  // namespace segnet::models
