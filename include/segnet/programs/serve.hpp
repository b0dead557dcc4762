// segnet/programs/serve.hpp: the segnet-serve program as a function, serve_main(argc, argv, samples):
// a web demo and an HTTP API around one trained checkpoint (docs/serve.md).
//
//   segnet-serve --weights models/segnet-basic-camvid.safetensors        # then open http://127.0.0.1:8080/
//   curl -s --data-binary @image.png -H 'Content-Type: image/png' http://127.0.0.1:8080/api/segment > labels.png
//
// Routes: GET / (the page, embedded below), GET /samples/<name> (the images compiled into the
// program), GET /api/samples, GET /api/model, GET /healthz, POST /api/segment (an image as the
// body or as the multipart field "image", or ?sample=<name>; a label PNG or, with
// ?format=json or Accept: application/json, the classes and their pixel shares). With --samples T
// (a Bayesian model) the labels are those of the mean of T dropout samples and the JSON adds the
// mean uncertainty (and, with ?images=1, the uncertainty map the page shows).
//
// Needs cpp-httplib (Debian's libcpp-httplib-dev): examples/CMakeLists.txt builds segnet-serve
// only where it is found. Nothing a client sends is written to disk.
#pragma once

#include <httplib.h>

#include "segnet/programs/evaluate.hpp"  // class names (evaluate_detail::class_name), json_number
#include "segnet/programs/segment.hpp"   // segment_image: the labels segnet-segment writes

#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <mutex>
#include <optional>
#include <pthread.h>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace segnet::programs {

/// An image compiled into segnet-serve (the page's samples); the bytes live as long as the program.
struct ServeSample {
    std::string_view name;
    std::span<const unsigned char> bytes;
};

namespace serve_detail {

inline constexpr const char* usage = R"(usage: segnet-serve --weights CKPT [options]

Serves a web page (pick a sample image or upload one; see the overlay, the colour mask and each
class's share) and an HTTP API: POST /api/segment, GET /api/model, GET /api/samples, GET /healthz.
Runs until SIGTERM or SIGINT, then finishes the requests in flight and exits 0.
  --weights CKPT        a checkpoint written by segnet-train (the model comes from it)
  --host ADDR           address to listen on (default 127.0.0.1: this machine only)
  --port N              TCP port (default 8080; 0: any free port, printed on start)
  --threads T           CPU threads the network runs on (default: all)
  --size HxW            run the network at this size and resize the labels back (default: image size)
  --precision P         fp32 | bf16 | auto (default auto, as segnet-segment)
  --samples T           Bayesian SegNet (a model with dropout, e.g. bayesian-segnet-basic): label
                        by the mean softmax of T dropout samples (1-1000) and show the predictive
                        entropy / log K as an uncertainty map (as segnet-segment --uncertainty)
  --queue N             requests admitted at once (decoding, waiting, running); more get
                        503 with Retry-After (default 8)
  --timeout S           longest a request may take from its arrival to the network's answer
                        (waiting and running), seconds; a run still going then is cut short;
                        503 with Retry-After (default 30)
  --io-timeout S        longest a read from or write to a client may stall, seconds (default 5)
  --max-upload-bytes N  refuse larger request bodies before reading them, 413 (default 16000000)
  --max-image-pixels N  refuse larger images from their header, before decoding, 413 (default 4000000)
)";

struct Options {
    std::string host = "127.0.0.1";
    int port = 8080;
    std::optional<std::pair<int, int>> size;
    int samples = 0;  // > 0: Monte-Carlo dropout with this many samples
    int queue = 8;
    int timeout_seconds = 30;
    int io_timeout_seconds = 5;
    std::size_t max_upload_bytes = 16'000'000;
    ImageLimits limits;
};

inline std::string json_string(std::string_view text) {
    std::string out = "\"";
    for (const char ch : text) {
        const auto c = static_cast<unsigned char>(ch);
        if (c == '"' || c == '\\') (out += '\\') += ch;
        else if (c < 0x20) {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\u%04x", c);
            out += buf;
        } else out += ch;
    }
    return out + "\"";
}

inline std::string base64(const std::vector<unsigned char>& bytes) {
    static constexpr char digits[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    out.reserve((bytes.size() + 2) / 3 * 4);
    for (std::size_t i = 0; i < bytes.size(); i += 3) {
        const std::uint32_t n = std::uint32_t(bytes[i]) << 16 | (i + 1 < bytes.size() ? bytes[i + 1] << 8 : 0) |
                                (i + 2 < bytes.size() ? bytes[i + 2] : 0);
        out += digits[n >> 18 & 63];
        out += digits[n >> 12 & 63];
        out += i + 1 < bytes.size() ? digits[n >> 6 & 63] : '=';
        out += i + 2 < bytes.size() ? digits[n & 63] : '=';
    }
    return out;
}

/// A request refused: the HTTP status and one line saying why.
struct Refusal {
    int status;
    std::string message;
};

/// One loaded model behind one lock. A lock, not a pool of models: the CPU kernels share one
/// thread pool per process (backend/cpu/thread_pool.hpp), which runs one parallel_for at a time
/// and already spreads each request over every --threads core. Decoding and encoding PNGs run
/// outside the lock, overlapping other requests' inference (docs/serve.md measures both).
class Segmenter {
public:
    Segmenter(const std::filesystem::path& weights, const CheckpointInfo& info, Precision precision,
              const Options& options)
        : info_(info), options_(options), model_(models::make_model<Cpu>(info.model, info.classes)) {
        load_checkpoint(weights, *model_, info.model);
        model_->set_precision(precision);
    }

    const CheckpointInfo& info() const { return info_; }

    /// Admits a request unless --queue are already in; the ticket releases its place.
    class Ticket {
    public:
        explicit Ticket(std::atomic<int>& in) : in_(&in) {}
        Ticket(Ticket&& other) noexcept : in_(std::exchange(other.in_, nullptr)) {}
        Ticket(const Ticket&) = delete;
        Ticket& operator=(const Ticket&) = delete;
        ~Ticket() {
            if (in_) in_->fetch_sub(1);
        }

    private:
        std::atomic<int>* in_;
    };
    std::optional<Ticket> admit() {
        if (admitted_.fetch_add(1) >= options_.queue) {
            admitted_.fetch_sub(1);
            return std::nullopt;
        }
        return Ticket(admitted_);
    }

    /// Checks an upload's header against the limits and the network, then decodes it.
    ImageU8 decode(const std::vector<unsigned char>& bytes) const {
        const std::filesystem::path name = "the upload";
        ImageInfo header;
        try {
            header = image_detail::probe(bytes, name);
        } catch (const DataError& e) {
            throw Refusal{400, e.what()};
        }
        try {
            image_detail::check_limits(header, options_.limits, name);
        } catch (const DataError& e) {
            throw Refusal{413, e.what()};
        }
        const auto run = options_.size.value_or(std::pair{header.height, header.width});
        try {
            cli::require_input_size<Cpu>(info_.model, info_.classes, run.first, run.second, "the upload");
        } catch (const DataError& e) {
            throw Refusal{422, e.what()};
        }
        try {
            return decode_rgb(bytes, name, options_.limits);
        } catch (const DataError& e) {
            throw Refusal{400, e.what()};
        }
    }

    struct Result {
        Tensor<Cpu, std::uint8_t> labels;
        Tensor<Cpu> uncertainty;  // with --samples: {H, W} in [0, 1]; empty otherwise
        double wait_ms = 0, inference_ms = 0;
    };
    /// The labels segnet-segment would write for `rgb`, once the network is free; 503 when it is
    /// not free by `deadline`, or when the run is still going at `deadline` (cut short between
    /// layers by a CancelToken; the model then serves the next request as if it had finished).
    Result segment(const ImageU8& rgb, std::chrono::steady_clock::time_point deadline) {
        using clock = std::chrono::steady_clock;
        const auto queued = clock::now();
        std::unique_lock lock(network_, deadline);
        if (!lock.owns_lock())
            throw Refusal{503, "the network stayed busy for --timeout " + std::to_string(options_.timeout_seconds) + " s"};
        const auto started = clock::now();
        const CancelToken past_deadline(deadline);
        struct CancelTokenSet {  // the token lives on this stack: unset it however the run ends
            AnyModel<Cpu>& model;
            ~CancelTokenSet() { model.set_cancel_token(nullptr); }
        } token_set{*model_};
        model_->set_cancel_token(&past_deadline);
        Result r;
        try {
            if (options_.samples > 0) {
                SampledSegmentation sampled = segment_image_sampled(*model_, info_.normalization, rgb, options_.size,
                                                                    options_.samples);
                r.labels = std::move(sampled.labels);
                r.uncertainty = std::move(sampled.uncertainty);
            } else {
                r.labels = segment_image(*model_, staging_, info_.normalization, rgb, options_.size);
            }
        } catch (const Cancelled&) {
            throw Refusal{503, "the network run passed --timeout " + std::to_string(options_.timeout_seconds) +
                                   " s and was cut short"};
        }
        const auto ms = [](auto d) { return std::chrono::duration<double, std::milli>(d).count(); };
        r.wait_ms = ms(started - queued);
        r.inference_ms = ms(clock::now() - started);
        return r;
    }

private:
    CheckpointInfo info_;
    Options options_;
    std::unique_ptr<AnyModel<Cpu>> model_;
    backend::Staging<Cpu> staging_;
    std::timed_mutex network_;
    std::atomic<int> admitted_{0};
};

/// One client connection as httplib's Stream, for HttpServer below. httplib 0.11.4's own
/// (detail::SocketStream) peeks before every write whether the client's side has ended and
/// refuses to write when it has: a client that half-closes (shutdown(SHUT_WR)) after a whole
/// request, which HTTP allows, was never answered. This one writes while the socket takes data,
/// and sends with MSG_NOSIGNAL (httplib's CPPHTTPLIB_SEND_FLAGS is 0): a write to a client that
/// has gone fails with EPIPE or ECONNRESET instead of raising SIGPIPE, which ends a process.
class ConnectionStream final : public httplib::Stream {
public:
    ConnectionStream(socket_t sock, std::chrono::microseconds read_timeout, std::chrono::microseconds write_timeout)
        : sock_(sock), read_timeout_(read_timeout), write_timeout_(write_timeout) {}

    bool is_readable() const override { return begin_ < end_ || ready(POLLIN, read_timeout_); }
    bool is_writable() const override { return ready(POLLOUT, write_timeout_); }

    ssize_t read(char* ptr, std::size_t size) override {
        if (begin_ == end_) {  // through a buffer: httplib reads the request line and headers byte by byte
            if (!ready(POLLIN, read_timeout_)) return -1;
            ssize_t got;
            do got = ::recv(sock_, buffer_.data(), buffer_.size(), 0);
            while (got < 0 && errno == EINTR);
            if (got <= 0) return got;
            begin_ = 0;
            end_ = std::size_t(got);
        }
        const std::size_t n = std::min(size, end_ - begin_);
        std::memcpy(ptr, buffer_.data() + begin_, n);
        begin_ += n;
        return ssize_t(n);
    }

    ssize_t write(const char* ptr, std::size_t size) override {
        if (!is_writable()) return -1;
        ssize_t sent;
        do sent = ::send(sock_, ptr, size, MSG_NOSIGNAL);
        while (sent < 0 && errno == EINTR);
        return sent;
    }

    void get_remote_ip_and_port(std::string& ip, int& port) const override { address(::getpeername, ip, port); }
    void get_local_ip_and_port(std::string& ip, int& port) const override { address(::getsockname, ip, port); }
    socket_t socket() const override { return sock_; }

    /// Whether a next request (or the client's end of the stream, which the request's read then
    /// meets) arrives within `timeout`; polled in 10 ms steps, as httplib does, so that `stopped`
    /// is seen while a client idles.
    bool next_request_arrives(std::chrono::seconds timeout, const std::function<bool()>& stopped) const {
        const auto until = std::chrono::steady_clock::now() + timeout;
        while (!stopped()) {
            if (begin_ < end_ || ready(POLLIN, std::chrono::milliseconds(10))) return true;
            if (std::chrono::steady_clock::now() >= until) return false;
        }
        return false;
    }

private:
    bool ready(short events, std::chrono::microseconds timeout) const {
        pollfd p{sock_, events, 0};
        const auto ms = int(std::chrono::ceil<std::chrono::milliseconds>(timeout).count());
        int r;
        do r = ::poll(&p, 1, ms);
        while (r < 0 && errno == EINTR);
        return r > 0;
    }

    void address(int (*query)(int, sockaddr*, socklen_t*), std::string& ip, int& port) const {
        sockaddr_storage addr{};
        socklen_t length = sizeof addr;
        char host[NI_MAXHOST], service[NI_MAXSERV];
        if (query(sock_, reinterpret_cast<sockaddr*>(&addr), &length) != 0 ||
            ::getnameinfo(reinterpret_cast<sockaddr*>(&addr), length, host, sizeof host, service, sizeof service,
                          NI_NUMERICHOST | NI_NUMERICSERV) != 0)
            return;
        ip = host;
        port = std::atoi(service);
    }

    socket_t sock_;
    std::chrono::microseconds read_timeout_, write_timeout_;
    std::array<char, 4096> buffer_{};
    std::size_t begin_ = 0, end_ = 0;
};

/// httplib's Server with each connection served through a ConnectionStream (above); the rest,
/// parsing, routing, limits and timeouts, is httplib's. The keep-alive loop is httplib's
/// process_server_socket: up to keep_alive_max_count requests, each within the keep-alive
/// timeout of the last, none once stop() has closed the listening socket.
class HttpServer final : public httplib::Server {
private:
    bool process_and_close_socket(socket_t sock) override {
        bool ok = false;
        {
            using std::chrono::microseconds, std::chrono::seconds;
            ConnectionStream stream(sock, seconds(read_timeout_sec_) + microseconds(read_timeout_usec_),
                                    seconds(write_timeout_sec_) + microseconds(write_timeout_usec_));
            const auto stopped = [this] { return svr_sock_ == INVALID_SOCKET; };
            for (std::size_t left = keep_alive_max_count_;
                 left > 0 && stream.next_request_arrives(seconds(keep_alive_timeout_sec_), stopped); --left) {
                bool connection_closed = false;
                ok = process_request(stream, left == 1, connection_closed, nullptr);
                if (!ok || connection_closed) break;
            }
        }
        ::shutdown(sock, SHUT_RDWR);
        ::close(sock);
        return ok;
    }
};

inline std::string model_json(const CheckpointInfo& info, const Palette& palette, const Options& options) {
    std::string classes;
    for (int c = 0; c < info.classes; ++c) {
        const auto rgb = palette[c];
        classes += std::string(c ? "," : "") + "{\"index\":" + std::to_string(c) +
                   ",\"name\":" + json_string(evaluate_detail::class_name(c, info.classes)) + ",\"color\":[" +
                   std::to_string(rgb[0]) + "," + std::to_string(rgb[1]) + "," + std::to_string(rgb[2]) + "]}";
    }
    const std::string size = options.size ? "[" + std::to_string(options.size->first) + "," +
                                                std::to_string(options.size->second) + "]"
                                          : "null";
    return "{\"name\":" + json_string(info.model) + ",\"classes\":[" + classes +
           "],\"samples\":" + std::to_string(options.samples) + ",\"input\":{\"channels\":3,\"run_size\":" + size + ",\"max_pixels\":" +
           std::to_string(options.limits.max_pixels) + ",\"max_upload_bytes\":" +
           std::to_string(options.max_upload_bytes) + "}}";
}

/// The JSON answer of /api/segment: size, timings, each class's share of the pixels, and (with
/// ?images=1, for the page) the colour mask and the overlay as PNG data URLs; with --samples, the
/// mean uncertainty and (with ?images=1) the uncertainty map in viridis.
inline std::string result_json(const Segmenter::Result& r, const ImageU8& rgb, const Palette& palette, int classes,
                               double total_ms, bool with_images) {
    std::vector<std::int64_t> counts(std::size_t(classes), 0);
    const std::int64_t pixels = std::int64_t(rgb.width) * rgb.height;
    for (std::int64_t i = 0; i < pixels; ++i)
        if (const int label = r.labels.data()[i]; label < classes) ++counts[std::size_t(label)];
    std::string shares;
    for (int c = 0; c < classes; ++c)
        shares += std::string(c ? "," : "") + "{\"index\":" + std::to_string(c) +
                  ",\"name\":" + json_string(evaluate_detail::class_name(c, classes)) +
                  ",\"pixels\":" + std::to_string(counts[std::size_t(c)]) +
                  ",\"share\":" + evaluate_detail::json_number(double(counts[std::size_t(c)]) / double(pixels)) + "}";
    std::string json = "{\"width\":" + std::to_string(rgb.width) + ",\"height\":" + std::to_string(rgb.height) +
                       ",\"milliseconds\":{\"wait\":" + evaluate_detail::json_number(r.wait_ms) +
                       ",\"inference\":" + evaluate_detail::json_number(r.inference_ms) +
                       ",\"total\":" + evaluate_detail::json_number(total_ms) + "},\"classes\":[" + shares + "]";
    const bool sampled = r.uncertainty.size() > 0;
    if (sampled) {
        double sum = 0;
        for (const float v : r.uncertainty.span()) sum += v;
        json += ",\"uncertainty\":{\"measure\":\"predictive entropy / log K\",\"mean\":" +
                evaluate_detail::json_number(sum / double(r.uncertainty.size())) + "}";
    }
    if (with_images) {
        json += ",\"mask\":\"data:image/png;base64," + base64(encode_rgb_png(colorize(r.labels.view(), palette))) + "\"";
        json += ",\"overlay\":\"data:image/png;base64," +
                base64(encode_rgb_png(overlay(rgb, r.labels.view(), palette))) + "\"";
        if (sampled)
            json += ",\"uncertainty_map\":\"data:image/png;base64," + base64(encode_rgb_png(viridis(r.uncertainty.view()))) + "\"";
    }
    return json + "}";
}

inline void refuse(httplib::Response& res, const Refusal& refusal) {
    res.status = refusal.status;
    std::string message = refusal.message;
    if (message.rfind("segnet: ", 0) == 0) message = message.substr(8);
    if (refusal.status == 503) res.set_header("Retry-After", "1");
    res.set_content("{\"error\":" + json_string(message) + "}\n", "application/json");
}

inline bool wants_json(const httplib::Request& req) {
    if (req.has_param("format")) return req.get_param_value("format") == "json";
    return req.get_header_value("Accept").find("application/json") != std::string::npos;
}

inline const char* page_html();

/// The POST /api/segment handler.
inline void segment_request(Segmenter& segmenter, const Palette& palette, std::span<const ServeSample> samples,
                            const Options& options, const httplib::Request& req, httplib::Response& res) {
    using clock = std::chrono::steady_clock;
    const auto arrived = clock::now();
    auto ticket = segmenter.admit();
    if (!ticket) throw Refusal{503, "the server is busy: --queue " + std::to_string(options.queue) + " requests are in"};
    if (req.has_param("format") && req.get_param_value("format") != "json" && req.get_param_value("format") != "png")
        throw Refusal{400, "format must be png or json, not '" + shortened(req.get_param_value("format"), 40) + "'"};
    std::vector<unsigned char> bytes;
    if (req.has_param("sample")) {
        const std::string name = req.get_param_value("sample");
        const auto it = std::find_if(samples.begin(), samples.end(), [&](const ServeSample& s) { return s.name == name; });
        if (it == samples.end()) throw Refusal{404, "no sample named '" + shortened(name, 60) + "' (see /api/samples)"};
        bytes.assign(it->bytes.begin(), it->bytes.end());
    } else if (req.is_multipart_form_data()) {
        if (!req.has_file("image")) throw Refusal{400, "the multipart body has no field named 'image'"};
        const std::string& content = req.get_file_value("image").content;
        bytes.assign(content.begin(), content.end());
    } else {
        bytes.assign(req.body.begin(), req.body.end());
    }
    if (bytes.empty()) throw Refusal{400, "no image: send PNG or JPEG bytes as the body or the multipart field 'image'"};
    const ImageU8 rgb = segmenter.decode(bytes);
    const auto result = segmenter.segment(rgb, arrived + std::chrono::seconds(options.timeout_seconds));
    if (wants_json(req)) {
        const double total_ms = std::chrono::duration<double, std::milli>(clock::now() - arrived).count();
        const bool with_images = req.has_param("images") && req.get_param_value("images") == "1";
        res.set_content(result_json(result, rgb, palette, segmenter.info().classes, total_ms, with_images),
                        "application/json");
    } else {
        const auto png = encode_label_png(result.labels.view());
        res.set_content(reinterpret_cast<const char*>(png.data()), png.size(), "image/png");
    }
}

inline void add_routes(httplib::Server& server, Segmenter& segmenter, const Palette& palette,
                       std::span<const ServeSample> samples, const Options& options) {
    const std::string model = model_json(segmenter.info(), palette, options);
    std::string sample_list;
    for (const ServeSample& s : samples) sample_list += std::string(sample_list.empty() ? "" : ",") + json_string(s.name);
    sample_list = "{\"samples\":[" + sample_list + "]}";

    server.Get("/", [](const httplib::Request&, httplib::Response& res) { res.set_content(page_html(), "text/html; charset=utf-8"); });
    server.Get("/healthz", [](const httplib::Request&, httplib::Response& res) { res.set_content("ok\n", "text/plain"); });
    server.Get("/api/model", [model](const httplib::Request&, httplib::Response& res) { res.set_content(model, "application/json"); });
    server.Get("/api/samples", [sample_list](const httplib::Request&, httplib::Response& res) {
        res.set_content(sample_list, "application/json");
    });
    // Samples are looked up by name among the compiled-in images: no path ever reaches the file system.
    server.Get(R"(/samples/(.+))", [samples](const httplib::Request& req, httplib::Response& res) {
        const std::string name = req.matches[1];
        for (const ServeSample& s : samples)
            if (s.name == name) {
                res.set_content(reinterpret_cast<const char*>(s.bytes.data()), s.bytes.size(),
                                name.ends_with(".png") ? "image/png" : "image/jpeg");
                return;
            }
        refuse(res, {404, "no sample named '" + shortened(name, 60) + "'"});
    });
    server.Post("/api/segment", [&segmenter, &palette, samples, &options](const httplib::Request& req, httplib::Response& res) {
        try {
            segment_request(segmenter, palette, samples, options, req, res);
        } catch (const Refusal& refusal) {
            refuse(res, refusal);
        } catch (const std::bad_alloc&) {
            refuse(res, {503, "out of memory for this image; try a smaller one"});
        } catch (const std::exception& e) {
            refuse(res, {500, e.what()});
        }
    });
    // An error status set by httplib itself (a bad multipart body, 413, 404) gets a JSON body too.
    server.set_error_handler([](const httplib::Request&, httplib::Response& res) {
        if (res.body.empty())
            res.set_content("{\"error\":" + json_string("refused with HTTP status " + std::to_string(res.status)) + "}\n", "application/json");
    });
}

inline int run(int argc, char** argv, std::span<const ServeSample> samples) {
    // SIGTERM and SIGINT are taken by one thread (sigwait) and blocked in every other, first
    // thing: every thread started later (the kernels' pool, the HTTP threads) inherits the mask,
    // so a signal never ends the process with a request half-way.
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

    cli::Args args(argc, argv, "segnet-serve", usage);
    const std::filesystem::path weights = args.required("--weights");
    Options options;
    options.host = args.text("--host", options.host);
    options.port = int(args.integer("--port", options.port, 0, 65535));
    if (const auto t = args.integer("--threads", 1, 1024)) segnet::set_num_threads(int(*t));
    options.size = args.size("--size");
    const std::string precision_requested = cli::precision_request(args, "auto");
    options.samples = int(args.integer("--samples", 0, 1, max_monte_carlo_samples));
    options.queue = int(args.integer("--queue", options.queue, 1, 1024));
    options.timeout_seconds = int(args.integer("--timeout", options.timeout_seconds, 1, 3600));
    options.io_timeout_seconds = int(args.integer("--io-timeout", options.io_timeout_seconds, 1, 3600));
    options.max_upload_bytes = std::size_t(args.integer("--max-upload-bytes", std::int64_t(options.max_upload_bytes), 1, 1LL << 31));
    options.limits.max_pixels = args.integer("--max-image-pixels", 4'000'000, 1, 1'000'000'000);
    options.limits.max_file_bytes = options.max_upload_bytes;
    args.finish();
    const Precision precision = cli::resolve_precision("segnet-serve", precision_requested, "cpu");
    const CheckpointInfo info = read_checkpoint_info(weights);
    cli::require_sampling(options.samples, "cpu", info.model, info.classes);
    if (options.size)
        cli::require_input_size<Cpu, cli::UsageError>(info.model, info.classes, options.size->first,
                                                      options.size->second, "--size");

    const Palette palette = Palette::for_classes(info.classes);
    Segmenter segmenter(weights, info, precision, options);

    HttpServer server;
    // More HTTP threads than --queue, so that a full queue is answered 503 at once (and /healthz
    // still answers) instead of connections waiting unseen in httplib's own task queue.
    const std::size_t http_threads = std::size_t(options.queue) + 4;
    server.new_task_queue = [http_threads] { return new httplib::ThreadPool(http_threads); };
    // SO_REUSEADDR only: httplib's default adds SO_REUSEPORT, with which a second segnet-serve on
    // the same port would start and silently share the connections instead of failing.
    server.set_socket_options([](socket_t sock) {
        const int yes = 1;
        setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
    });
    server.set_payload_max_length(options.max_upload_bytes);
    server.set_read_timeout(options.io_timeout_seconds, 0);
    server.set_write_timeout(options.io_timeout_seconds, 0);
    server.set_keep_alive_timeout(options.io_timeout_seconds);
    add_routes(server, segmenter, palette, samples, options);

    int port = options.port;
    if (port == 0) port = server.bind_to_any_port(options.host);
    else if (!server.bind_to_port(options.host, port)) port = -1;
    if (port < 0)
        throw DataError("segnet-serve: cannot listen on " + options.host + ":" + std::to_string(options.port) +
                        " (address in use, or not an address of this machine)");

    std::atomic<int> stop_signal{0};
    std::atomic<bool> listen_ended{false};
    std::thread signal_thread([&] {
        int signal = 0;
        sigwait(&stop_signals, &signal);
        if (listen_ended) return;  // the wake-up below
        stop_signal = signal;
        std::fprintf(stderr, "segnet-serve: %s, finishing the requests in flight\n", signal == SIGTERM ? "SIGTERM" : "SIGINT");
        // A signal sent while the model loaded is taken before listen runs, when stop() would do nothing.
        while (!server.is_running() && !listen_ended) std::this_thread::sleep_for(std::chrono::milliseconds(5));
        server.stop();
    });
    std::printf("segnet-serve: %s (%d classes, precision %s) on http://%s:%d/\n", info.model.c_str(), info.classes,
                to_string(precision), options.host.c_str(), port);
    std::fflush(stdout);
    const bool listened = server.listen_after_bind();
    listen_ended = true;
    if (stop_signal == 0) pthread_kill(signal_thread.native_handle(), SIGTERM);  // ended by itself: end the signal thread
    signal_thread.join();
    if (!listened && stop_signal == 0) throw DataError("segnet-serve: the server stopped accepting connections");
    std::printf("segnet-serve: stopped\n");
    return 0;
}

// The page: one HTML file with its CSS and JavaScript, no external resources.
inline const char* page_html() {
    return R"PAGE(<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>segnet-serve</title>
<style>
  body { font-family: system-ui, sans-serif; margin: 1.5rem; color: #222; background: #fafafa; }
  h1 { font-size: 1.4rem; margin: 0 0 .2rem; }
  #model { color: #555; margin-bottom: 1rem; }
  #controls { display: flex; gap: 1rem; align-items: center; flex-wrap: wrap; }
  #drop { border: 2px dashed #999; border-radius: 8px; padding: .8rem 1.2rem; color: #555; }
  #drop.over { border-color: #2a6; background: #efe; }
  #views { display: flex; gap: 1rem; flex-wrap: wrap; margin-top: 1rem; }
  figure { margin: 0; } figcaption { font-size: .85rem; color: #555; }
  figure img { max-width: 480px; width: 100%; border: 1px solid #ccc; background: #eee; min-height: 60px; }
  #legend td { padding: .1rem .6rem .1rem 0; font-size: .9rem; }
  .swatch { display: inline-block; width: 1rem; height: 1rem; border: 1px solid #666; vertical-align: middle; }
  #status { margin-top: .8rem; min-height: 1.2rem; } #status.error { color: #b00; }
</style>
</head>
<body>
<h1>SegNet: semantic segmentation</h1>
<div id="model">loading the model...</div>
<div id="controls">
  <label>Sample: <select id="sample"><option value="">choose...</option></select></label>
  <label>or upload a PNG/JPEG: <input type="file" id="file" accept="image/png,image/jpeg"></label>
  <div id="drop">or drop an image here</div>
</div>
<div id="status"></div>
<div id="views">
  <figure><img id="image" alt="image"><figcaption>image</figcaption></figure>
  <figure><img id="overlay" alt="overlay"><figcaption>overlay</figcaption></figure>
  <figure><img id="mask" alt="colour mask"><figcaption>colour mask</figcaption></figure>
  <figure id="uncertainty-view" hidden><img id="uncertainty" alt="uncertainty"><figcaption id="uncertainty-caption">uncertainty</figcaption></figure>
</div>
<h2 style="font-size:1.1rem">Classes</h2>
<table id="legend"></table>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
let model = null;

function status(text, error) { $("status").textContent = text; $("status").className = error ? "error" : ""; }

function legend(shares) {
  const rows = model.classes.map((c) => {
    const share = shares ? shares[c.index].share : null;
    return "<tr data-class=\"" + c.index + "\"><td><span class=\"swatch\" style=\"background:rgb(" + c.color.join(",") +
      ")\"></span></td><td>" + c.name + "</td><td class=\"share\">" + (share === null ? "" : (100 * share).toFixed(1) + " %") + "</td></tr>";
  });
  $("legend").innerHTML = rows.join("");
}

async function segment(url, body, type) {
  status("segmenting...");
  $("overlay").removeAttribute("src"); $("mask").removeAttribute("src"); $("uncertainty").removeAttribute("src");
  const started = performance.now();
  try {
    const options = { method: "POST", headers: { "Accept": "application/json" } };
    if (body) { options.body = body; options.headers["Content-Type"] = type || "application/octet-stream"; }
    const response = await fetch(url, options);
    const answer = await response.json();
    if (!response.ok) { status("refused (" + response.status + "): " + answer.error, true); return; }
    $("overlay").src = answer.overlay;
    $("mask").src = answer.mask;
    if (answer.uncertainty_map) {
      $("uncertainty").src = answer.uncertainty_map;
      $("uncertainty-caption").textContent = "uncertainty (" + model.samples + " dropout samples; dark: sure, yellow: unsure; mean " +
        answer.uncertainty.mean.toFixed(3) + ")";
    }
    legend(answer.classes);
    const ms = answer.milliseconds;
    status(answer.width + "x" + answer.height + ": network " + ms.inference.toFixed(0) + " ms, server " +
      ms.total.toFixed(0) + " ms, round trip " + (performance.now() - started).toFixed(0) + " ms");
  } catch (e) { status("failed: " + e, true); }
}

function upload(file) {
  if (!file) return;
  $("sample").value = "";
  $("image").src = URL.createObjectURL(file);
  segment("/api/segment?format=json&images=1", file, file.type);
}

async function start() {
  try {
    model = await (await fetch("/api/model")).json();
    const size = model.input.run_size ? " (run at " + model.input.run_size.join("x") + ")" : "";
    const sampling = model.samples > 0 ? ", mean of " + model.samples + " dropout samples" : "";
    $("model").textContent = model.name + ", " + model.classes.length + " classes" + size + sampling;
    $("uncertainty-view").hidden = !(model.samples > 0);
    legend(null);
    const samples = (await (await fetch("/api/samples")).json()).samples;
    for (const name of samples) { const o = document.createElement("option"); o.value = o.textContent = name; $("sample").appendChild(o); }
  } catch (e) { status("cannot load the model description: " + e, true); }
}

$("sample").addEventListener("change", () => {
  const name = $("sample").value;
  if (!name) return;
  $("image").src = "/samples/" + encodeURIComponent(name);
  segment("/api/segment?format=json&images=1&sample=" + encodeURIComponent(name));
});
$("file").addEventListener("change", () => upload($("file").files[0]));
const drop = $("drop");
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => { e.preventDefault(); drop.classList.remove("over"); upload(e.dataTransfer.files[0]); });
start();
</script>
</body>
</html>
)PAGE";
}

}  // namespace serve_detail

/// The segnet-serve program: parses argv, serves until SIGTERM/SIGINT, returns the exit status
/// (0 after a signal, 1 error, 2 usage); errors are printed as one line on stderr. `samples` are
/// the images the page offers (examples/segnet_serve.cpp compiles data/camvid/val's in).
inline int serve_main(int argc, char** argv, std::span<const ServeSample> samples) {
    return cli::run_program("segnet-serve", [&] { return serve_detail::run(argc, argv, samples); });
}

}  // namespace segnet::programs
