// The design is in server.h. Here: HttpsServer::Impl (TLS context, acceptor, threads, the set
// of open connections, Stop) and Connection (one client connection's state machine).
#include "http/server.h"

#include <openssl/ssl.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <cstdio>
#include <ctime>
#include <future>
#include <limits>
#include <optional>
#include <span>
#include <thread>
#include <unordered_map>
#include <variant>
#include <vector>

#include "common/logging.h"
#include "common/mutex.h"
#include "crypto/random.h"
#include "http/url.h"

namespace keyfoundry::http {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
namespace ssl = boost::asio::ssl;
using tcp = boost::asio::ip::tcp;
using Clock = std::chrono::steady_clock;

// TLS 1.2 suites: ECDHE key exchange with AES-GCM only; TLS 1.3: the AES-GCM suites. All
// FIPS-approved (BRIEF §6), hence no ChaCha20-Poly1305.
constexpr char kTls12Ciphers[] =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
    "ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384";
constexpr char kTls13Suites[] = "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384";

constexpr size_t kReadChunk = size_t{16} * 1024;  // one TLS record
// The buffer of a streamed body, in each direction: large enough that per-piece costs (a
// handler call, a syscall) vanish beside the bytes, small enough to keep 1,000 transfers in
// 256 MiB.
constexpr size_t kStreamChunk = size_t{256} * 1024;
// A streamed body refused before its end (by the handler or its consumer) is read and dropped
// up to this many more bytes, so the client, still sending, gets the response rather than a
// connection reset; beyond it the connection is closed after the response.
constexpr uint64_t kMaxDrainBytes = uint64_t{64} << 20;
constexpr auto kLingerTimeout = std::chrono::seconds(1);
constexpr auto kAcceptRetryDelay = std::chrono::milliseconds(50);
constexpr auto kRefusalLogInterval = std::chrono::seconds(1);
constexpr size_t kMaxLoggedPath = 256;
constexpr size_t kMaxLoggedClientRequestId = 128;
constexpr char kUnmatchedRoute[] = "unmatched";

// Response headers the server sets itself; a handler's header of one of these names is dropped.
constexpr std::string_view kServerHeaders[] = {
    "content-length",
    "transfer-encoding",
    "connection",
    "date",
    "content-type",
    "x-ms-request-id",
    "x-ms-client-request-id",
    "keep-alive",
    "x-content-type-options",
    "access-control-allow-origin",
    "access-control-expose-headers",
};

bool IsTokenChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

bool IsValidHeader(std::string_view name, std::string_view value) {
  return !name.empty() && std::all_of(name.begin(), name.end(), IsTokenChar) &&
         value.find_first_of(std::string_view("\r\n\0", 3)) == std::string_view::npos;
}

std::string HttpDate() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char buf[40];
  const size_t n = std::strftime(buf, sizeof(buf), "%a, %d %b %Y %H:%M:%S GMT", &tm);
  return std::string(buf, n);
}

std::string ToString(beast::string_view s) { return std::string(s.data(), s.size()); }

// The Host header's host, lower-cased, without the port: a DNS name, an IPv4 address or a
// bracketed IPv6 address. nullopt when it is none of these.
std::optional<std::string> NormalizeHost(std::string_view value) {
  std::string_view host = value;
  std::string_view port;
  if (value.starts_with('[')) {
    const size_t close = value.find(']');
    if (close == std::string_view::npos) return std::nullopt;
    host = value.substr(0, close + 1);
    const std::string_view rest = value.substr(close + 1);
    if (!rest.empty() && !rest.starts_with(':')) return std::nullopt;
    port = rest.empty() ? rest : rest.substr(1);
    const std::string_view inner = host.substr(1, host.size() - 2);
    if (inner.empty() || inner.find_first_not_of("0123456789abcdefABCDEF:.") != inner.npos) {
      return std::nullopt;
    }
  } else {
    const size_t colon = value.find(':');
    host = value.substr(0, colon);
    if (colon != std::string_view::npos) port = value.substr(colon + 1);
    if (colon != std::string_view::npos && port.empty()) return std::nullopt;
    if (host.empty() ||
        host.find_first_not_of("abcdefghijklmnopqrstuvwxyz"
                               "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_") != host.npos) {
      return std::nullopt;
    }
  }
  if (port.size() > 5 || port.find_first_not_of("0123456789") != port.npos) return std::nullopt;
  std::string out(host);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

bool IsHttpParseError(const beast::error_code& ec) {
  return ec.category() == bhttp::make_error_code(bhttp::error::bad_method).category();
}

class Connection;

}  // namespace

class HttpsServer::Impl {
 public:
  Impl(ServerOptions options, std::shared_ptr<const Router> router)
      : options_(std::move(options)),
        router_(std::move(router)),
        metrics_(options_.metrics != nullptr ? options_.metrics : std::make_shared<Metrics>()),
        io_contexts_(MakeContexts(options_.io_threads)),
        acceptor_(*io_contexts_.front()),
        accept_retry_timer_(acceptor_.get_executor()) {
    for (auto& ioc : io_contexts_) work_.push_back(asio::make_work_guard(*ioc));
  }

  Status Listen();
  void Stop(std::chrono::milliseconds drain);

  // Where handlers run (they may block on the disk, SQLite or the HSM).
  asio::thread_pool& workers() { return *workers_; }

  enum class Admission { kAdmitted = 1, kFull = 2, kStopping = 3 };
  // Adds `connection` to the open set unless max_connections are open or the server stops.
  Admission Admit(const std::shared_ptr<Connection>& connection);
  void Remove(const Connection* connection);

  // Read by connections without locking. The private key is dropped once TLS is set up.
  ServerOptions options_;
  const std::shared_ptr<const Router> router_;
  const std::shared_ptr<Metrics> metrics_;
  std::atomic<bool> stopping_{false};
  ssl::context ssl_context_{ssl::context::tls_server};
  uint16_t port_ = 0;

 private:
  Status SetUpTls();
  void Accept();
  void OnAccept(beast::error_code ec, tcp::socket socket);
  void LogRefusal();
  std::vector<std::shared_ptr<Connection>> OpenConnections();

  Mutex mu_;
  std::unordered_map<const Connection*, std::weak_ptr<Connection>> connections_ GUARDED_BY(mu_);
  bool stop_started_ GUARDED_BY(mu_) = false;
  bool drained_set_ GUARDED_BY(mu_) = false;
  std::promise<void> drained_;  // set once stopping and no connection is open
  std::future<void> drained_future_ = drained_.get_future();
  std::atomic<int64_t> last_refusal_log_{0};

  static std::vector<std::unique_ptr<asio::io_context>> MakeContexts(int count) {
    std::vector<std::unique_ptr<asio::io_context>> out;
    const int n = count > 0 ? count : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    // A hint of 1: each context is run by exactly one thread.
    for (int i = 0; i < n; ++i) out.push_back(std::make_unique<asio::io_context>(1));
    return out;
  }
  asio::io_context& NextContext() {
    return *io_contexts_[next_context_++ % io_contexts_.size()];
  }

  // Destroyed before the members above: handlers still queued hold connections, which remove
  // themselves from connections_ and metrics_ when destroyed.
  std::vector<std::unique_ptr<asio::io_context>> io_contexts_;
  size_t next_context_ = 0;  // only the acceptor's thread uses it
  tcp::acceptor acceptor_;   // on the first context
  asio::steady_timer accept_retry_timer_;
  std::vector<asio::executor_work_guard<asio::io_context::executor_type>> work_;
  std::vector<std::thread> threads_;
  // Destroyed first: its tasks post to the contexts above.
  std::optional<asio::thread_pool> workers_;

  friend class HttpsServer;
};

namespace {

class Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(HttpsServer::Impl* server, tcp::socket socket, std::string remote_address)
      : server_(server),
        options_(server->options_),
        stream_(std::move(socket), server->ssl_context_),
        remote_address_(std::move(remote_address)) {}
  ~Connection() {
    if (admitted_) server_->Remove(this);
  }

  void MarkAdmitted() { admitted_ = true; }
  auto executor() { return stream_.get_executor(); }

  // Each runs on the connection's strand.
  void Start();
  void StopIfIdle();
  void Close();

 private:
  enum class Phase { kHandshake = 1, kIdle, kRequest, kHandler, kWrite, kClosing, kClosed };

  void OnHandshake(beast::error_code ec);
  void WaitForRequest();
  void OnFirstBytes(beast::error_code ec, size_t n);
  void StartRequest();
  void OnHeader(beast::error_code ec, size_t);
  void ReadBody();
  void OnBody(beast::error_code ec, size_t);
  void StartStreamingBody(bool has_body, bool expects_continue);
  // A piece of a streamed request body: which of body_buffers_ holds it, its size, and whether
  // it ends the body.
  struct Piece {
    int buffer = 0;
    size_t size = 0;
    bool last = false;
  };
  void ReadStreamPiece();
  void OnStreamPiece(beast::error_code ec, size_t);
  void Consume(Piece piece);
  void ConsumePiece(ByteView data, bool last);
  void RunStreamingWhole();
  void AfterPiece(Piece piece);
  void Drain(size_t n, bool last);
  bool KeepAlive() const { return stream_parser_->get().keep_alive() && !server_->stopping_; }
  void OnReadError(beast::error_code ec);
  void Respond(Response response, bool keep_alive);
  std::optional<Response> PreflightResponse() const;
  template <typename Message>
  void SetHeaders(Message& message, const Response& response, bool keep_alive);
  void AdvanceStream(bool keep_alive);
  void ReadSourcePiece(bool keep_alive);
  void OnSourcePiece(int buffer, bool keep_alive);
  void EndStream();
  // Runs work(*this) on a worker thread (inline for a runs_inline route), then then(*this)
  // back on the connection's thread. Meanwhile no read or write is pending, so nothing else
  // touches the connection's state; the one exception, a streamed response's next piece read
  // while the last is written, says what it touches (ReadSourcePiece).
  template <typename Work, typename Then>
  void Offload(Work work, Then then);
  template <typename Work, typename Then>
  void OnWorker(Work work, Then then);
  void OnStreamPieceWritten(bool keep_alive, beast::error_code ec, size_t);
  void OnWritten(bool keep_alive, beast::error_code ec, size_t);
  void Shutdown();
  void CloseSocket();
  void LogRequest(int status);

  beast::tcp_stream& tcp() { return beast::get_lowest_layer(stream_); }

  HttpsServer::Impl* const server_;
  const ServerOptions& options_;
  beast::ssl_stream<beast::tcp_stream> stream_;
  const std::string remote_address_;
  bool admitted_ = false;

  Phase phase_ = Phase::kHandshake;
  bool first_request_ = true;
  Clock::time_point handshake_done_;
  beast::flat_buffer buffer_;

  // The request in progress: its header is read by header_parser_, then its body by parser_
  // (a plain route) or stream_parser_ (a streaming route, into body_buffers_).
  std::optional<bhttp::request_parser<bhttp::empty_body>> header_parser_;
  std::optional<bhttp::request_parser<bhttp::string_body>> parser_;
  std::optional<bhttp::request_parser<bhttp::buffer_body>> stream_parser_;
  std::unique_ptr<BodyConsumer> consumer_;
  // What a handler run on a worker hands back (see Offload).
  std::optional<std::variant<Response, std::unique_ptr<BodyConsumer>>> started_;
  Response handler_response_;
  StatusOr<size_t> source_read_ = size_t{0};  // written by the worker reading a source piece
  std::optional<Response> refusal_;  // a refused streamed body is drained, then this is sent
  uint64_t drained_ = 0;
  // A streamed request body is read into one buffer while a worker hands the other to the
  // consumer: receiving (TLS) and consuming (sealing, writing) overlap.
  std::array<std::vector<uint8_t>, 2> body_buffers_;
  int filling_ = 0;        // the buffer the next or pending read fills
  bool reading_ = false;   // a read of the body is pending
  bool consuming_ = false;  // a worker has a piece
  std::optional<Piece> waiting_;  // read while the worker was busy: the next for the consumer
  beast::error_code read_error_;  // a read that failed while the worker was busy
  std::optional<Response> consumer_refusal_;  // written by the worker only (ConsumePiece)
  Clock::time_point request_start_;
  Request request_;
  RouteMatch match_;
  std::string method_label_;
  std::string client_request_id_;
  std::string cors_origin_;  // the request's Origin when CorsOptions::allow_origin allows it
  bhttp::response<bhttp::empty_body> continue_{bhttp::status::continue_, 11};
  bhttp::response<bhttp::string_body> response_;
  // A streamed response: its message, serializer, source and progress. Pieces of the source
  // alternate between two buffers of kStreamChunk bytes (the second made only for a body of
  // more than one piece): while one is written, a worker reads the next into the other.
  bhttp::response<bhttp::buffer_body> stream_response_;
  std::optional<bhttp::response_serializer<bhttp::buffer_body>> serializer_;
  std::shared_ptr<StreamedBody> body_source_;
  std::array<std::vector<uint8_t>, 2> stream_buffers_;
  int stream_next_ = 0;         // the buffer the next source read fills
  uint64_t body_read_ = 0;      // bytes the source has given
  uint64_t body_sent_ = 0;      // bytes handed to the serializer
  bool source_done_ = false;    // the source has nothing more to give (or failed)
  bool source_busy_ = false;    // a source read is running (on a worker)
  bool piece_writing_ = false;  // a write of the response is pending
  bool stream_ended_ = false;   // the response ended while a source read was running
  struct SourcePiece {
    int buffer = 0;
    StatusOr<size_t> read = size_t{0};
  };
  std::optional<SourcePiece> ready_;  // read, waiting for the write before it
  int response_status_ = 0;
};

template <typename Work, typename Then>
void Connection::Offload(Work work, Then then) {
  if (match_.route != nullptr && match_.route->options.runs_inline) {
    work(*this);
    return then(*this);
  }
  OnWorker(std::move(work), std::move(then));
}

// As Offload, always on a worker.
template <typename Work, typename Then>
void Connection::OnWorker(Work work, Then then) {
  asio::post(server_->workers(), [self = shared_from_this(), work, then] {
    work(*self);
    asio::post(self->executor(), [self, then] { then(*self); });
  });
}

void Connection::Start() {
  tcp().expires_after(options_.handshake_timeout);
  stream_.async_handshake(ssl::stream_base::server,
                          beast::bind_front_handler(&Connection::OnHandshake, shared_from_this()));
}

void Connection::StopIfIdle() {
  if (phase_ == Phase::kHandshake || phase_ == Phase::kIdle) CloseSocket();
}

void Connection::Close() { CloseSocket(); }

void Connection::OnHandshake(beast::error_code ec) {
  if (ec || phase_ == Phase::kClosed) return CloseSocket();
  handshake_done_ = Clock::now();
  WaitForRequest();
}

// Waits for the first byte of the next request without starting its read deadline, so that
// keep-alive connections may idle longer than a request may take.
void Connection::WaitForRequest() {
  phase_ = Phase::kIdle;
  if (server_->stopping_) return Shutdown();
  if (buffer_.size() > 0) return StartRequest();  // a pipelined request is already here
  if (first_request_) {
    tcp().expires_at(handshake_done_ + options_.read_timeout);
  } else {
    tcp().expires_after(options_.idle_timeout);
  }
  stream_.async_read_some(buffer_.prepare(kReadChunk),
                          beast::bind_front_handler(&Connection::OnFirstBytes, shared_from_this()));
}

void Connection::OnFirstBytes(beast::error_code ec, size_t n) {
  if (ec || phase_ == Phase::kClosed) return CloseSocket();  // idle timeout, or the peer left
  buffer_.commit(n);
  StartRequest();
}

void Connection::StartRequest() {
  phase_ = Phase::kRequest;
  request_start_ = Clock::now();
  // The first request's clock started at the handshake: a new connection has read_timeout to
  // deliver a whole request.
  tcp().expires_at(first_request_ ? handshake_done_ + options_.read_timeout
                                  : request_start_ + options_.read_timeout);
  first_request_ = false;
  request_ = Request();
  request_.remote_address = remote_address_;
  match_ = RouteMatch();
  method_label_ = "OTHER";
  client_request_id_.clear();
  cors_origin_.clear();
  parser_.reset();
  stream_parser_.reset();
  consumer_.reset();
  refusal_.reset();
  drained_ = 0;
  filling_ = 0;
  reading_ = false;
  consuming_ = false;
  waiting_.reset();
  read_error_ = {};
  consumer_refusal_.reset();
  header_parser_.emplace();
  header_parser_->header_limit(static_cast<uint32_t>(
      std::min<size_t>(options_.max_header_bytes, std::numeric_limits<uint32_t>::max())));
  header_parser_->body_limit(boost::none);  // set from the route once the header is read
  auto id = crypto::NewUuid();
  if (!id.ok()) {
    Log(LogLevel::kError, "http.request_id_failed", {{"error", id.status().ToString()}});
    return Respond(AzureError(500, "InternalServerError", "The server cannot serve requests."),
                   false);
  }
  request_.request_id = *std::move(id);
  bhttp::async_read_header(stream_, buffer_, *header_parser_,
                           beast::bind_front_handler(&Connection::OnHeader, shared_from_this()));
}

void Connection::OnHeader(beast::error_code ec, size_t) {
  if (ec) return OnReadError(ec);
  const auto& header = header_parser_->get();
  request_.method = ToString(header.method_string());
  if (header.method() != bhttp::verb::unknown) method_label_ = request_.method;
  request_.target = ToString(header.target());
  if (auto id = header.find("x-ms-client-request-id"); id != header.end()) {
    client_request_id_ = ToString(id->value());
  }
  if (options_.cors.allow_origin && header.count(bhttp::field::origin) == 1) {
    std::string origin = ToString(header[bhttp::field::origin]);
    if (options_.cors.allow_origin(origin)) cors_origin_ = std::move(origin);
  }
  auto bad_request = [&](std::string message) {
    Respond(AzureError(400, "BadRequest", std::move(message)), false);
  };

  std::optional<std::string> host;
  if (header.count(bhttp::field::host) == 1) host = NormalizeHost(header[bhttp::field::host]);
  if (!host.has_value()) return bad_request("The request must carry one valid Host header.");
  request_.host = *std::move(host);
  const std::string_view target = request_.target;
  const size_t question = target.find('?');
  request_.path = std::string(target.substr(0, question));
  if (Status s = ValidateRequestPath(request_.path); !s.ok()) return bad_request(s.message());
  if (question != std::string_view::npos) {
    auto query = ParseFormUrlEncoded(target.substr(question + 1));
    if (!query.ok()) return bad_request("Invalid query string: " + query.status().message());
    request_.query = *std::move(query);
  }

  match_ = server_->router_->Match(request_.method, request_.host, request_.path);
  const size_t limit = match_.kind == MatchKind::kFound ? match_.route->options.max_body_bytes
                                                        : kDefaultMaxBodyBytes;
  if (header_parser_->content_length().value_or(0) > limit) {
    return Respond(AzureError(413, "RequestBodyTooLarge",
                              "The request body exceeds the limit of " + std::to_string(limit) +
                                  " bytes for this operation."),
                   false);
  }
  const auto expect = header.find(bhttp::field::expect);
  const bool expects_continue =
      expect != header.end() && EqualsIgnoreCase(ToString(expect->value()), "100-continue");
  const bool has_body = !header_parser_->is_done();
  // A streaming route's body that is small and will come unasked is read whole first, so that
  // the handler, the consumer and its response take one trip to a worker (see OnBody).
  const bool small_body = header_parser_->content_length().value_or(kStreamChunk + 1) <=
                              kStreamChunk &&
                          !expects_continue;
  if (match_.kind == MatchKind::kFound && match_.route->streaming && !small_body) {
    stream_parser_.emplace(std::move(*header_parser_));
    stream_parser_->body_limit(limit);
    header_parser_.reset();
    return StartStreamingBody(has_body, expects_continue);
  }
  parser_.emplace(std::move(*header_parser_));
  parser_->body_limit(limit);
  header_parser_.reset();
  if (!has_body) return OnBody({}, 0);

  if (expects_continue) {
    bhttp::async_write(stream_, continue_,
                       [self = shared_from_this()](beast::error_code write_ec, size_t) {
                         if (write_ec) return self->CloseSocket();
                         self->ReadBody();
                       });
    return;
  }
  ReadBody();
}

void Connection::ReadBody() {
  bhttp::async_read(stream_, buffer_, *parser_,
                    beast::bind_front_handler(&Connection::OnBody, shared_from_this()));
}

// A streaming route: its handler runs once the header is read (and before 100 Continue is
// answered, so a refused upload is never sent), then its consumer gets the body piece by piece.
void Connection::StartStreamingBody(bool has_body, bool expects_continue) {
  phase_ = Phase::kHandler;
  for (const auto& field : stream_parser_->get()) {
    request_.headers.emplace_back(ToString(field.name_string()), ToString(field.value()));
  }
  request_.params = match_.params;
  Offload([](Connection& c) { c.started_ = InvokeStreamingHandler(*c.match_.route, c.request_); },
          [has_body, expects_continue](Connection& c) {
            auto started = *std::move(c.started_);
            c.started_.reset();
            const bool keep_alive = c.stream_parser_->get().keep_alive() && !c.server_->stopping_;
            if (auto* response = std::get_if<Response>(&started)) {
              if (!has_body) return c.Respond(std::move(*response), keep_alive);
              // A client waiting for 100 Continue sends no body: answer and close. Otherwise
              // drain.
              if (expects_continue) return c.Respond(std::move(*response), false);
              c.refusal_ = std::move(*response);
              return c.ReadStreamPiece();
            }
            c.consumer_ = std::move(std::get<std::unique_ptr<BodyConsumer>>(started));
            if (!has_body) return c.Consume(Piece{0, 0, true});
            if (!expects_continue) return c.ReadStreamPiece();
            bhttp::async_write(c.stream_, c.continue_,
                               [self = c.shared_from_this()](beast::error_code write_ec, size_t) {
                                 if (write_ec) return self->CloseSocket();
                                 self->ReadStreamPiece();
                               });
          });
}

void Connection::ReadStreamPiece() {
  phase_ = Phase::kRequest;
  auto& buffer = body_buffers_[filling_];
  buffer.resize(kStreamChunk);
  auto& body = stream_parser_->get().body();
  body.data = buffer.data();
  body.size = buffer.size();
  reading_ = true;
  tcp().expires_after(options_.read_timeout);  // progress, not the whole body, is bounded
  bhttp::async_read(stream_, buffer_, *stream_parser_,
                    beast::bind_front_handler(&Connection::OnStreamPiece, shared_from_this()));
}

void Connection::OnStreamPiece(beast::error_code ec, size_t) {
  reading_ = false;
  if (ec == bhttp::error::need_buffer) ec = {};
  if (ec) {
    if (consuming_) {
      read_error_ = ec;  // AfterPiece ends the request once the worker is done
      return;
    }
    consumer_.reset();  // discards what the consumer wrote
    return OnReadError(ec);
  }
  const Piece piece{filling_, kStreamChunk - stream_parser_->get().body().size,
                    stream_parser_->is_done()};
  if (refusal_.has_value()) return Drain(piece.size, piece.last);
  if (consuming_) {
    waiting_ = piece;
    return;
  }
  Consume(piece);
}

// Hands a piece to a worker and, unless it ends the body, reads the next into the other buffer.
void Connection::Consume(Piece piece) {
  phase_ = Phase::kHandler;
  consuming_ = true;
  Offload(
      [piece](Connection& c) {
        c.ConsumePiece(ByteView(c.body_buffers_[piece.buffer].data(), piece.size), piece.last);
      },
          [piece](Connection& c) { c.AfterPiece(piece); });
  if (!piece.last) {
    filling_ = 1 - piece.buffer;
    ReadStreamPiece();
  }
}

// On a worker: a streaming route whose body was read whole (small): its handler, then its
// consumer with the whole body, then the response (in handler_response_).
void Connection::RunStreamingWhole() {
  const std::string body = std::move(request_.body);
  request_.body.clear();
  auto started = InvokeStreamingHandler(*match_.route, request_);
  if (auto* response = std::get_if<Response>(&started)) {
    handler_response_ = std::move(*response);
    return;
  }
  consumer_ = std::move(std::get<std::unique_ptr<BodyConsumer>>(started));
  ConsumePiece(AsBytes(body), true);
  if (consumer_refusal_.has_value()) handler_response_ = *std::exchange(consumer_refusal_, {});
}

// On a worker: hands a piece of the body to the consumer and, after the last, gets its
// response (in handler_response_). A failed piece leaves the refusal in consumer_refusal_.
void Connection::ConsumePiece(ByteView data, bool last) {
  if (!data.empty()) {
    Status consumed = OkStatus();
    try {
      consumed = consumer_->Consume(data);
    } catch (const std::exception& e) {
      consumed = InternalError(std::string("the body consumer threw: ") + e.what());
    }
    if (!consumed.ok()) {
      consumer_refusal_ = consumer_->Fail(consumed);
      consumer_.reset();
      return;
    }
  }
  if (!last) return;
  handler_response_ = InvokeFinish(*match_.route, request_, *consumer_);
  consumer_.reset();
}

// Back from the worker: answer, pass it the piece read meanwhile, or wait for the read.
void Connection::AfterPiece(Piece piece) {
  consuming_ = false;
  if (read_error_) {
    consumer_.reset();
    consumer_refusal_.reset();
    return OnReadError(std::exchange(read_error_, {}));
  }
  if (consumer_refusal_.has_value()) {
    // Refused: the rest of the body is drained, then the refusal sent.
    refusal_ = std::move(consumer_refusal_);
    consumer_refusal_.reset();
    if (waiting_.has_value()) {
      const Piece next = *std::exchange(waiting_, std::nullopt);
      return Drain(next.size, next.last);
    }
    if (reading_) return;  // its completion drains
    if (piece.last) return Respond(*std::move(refusal_), KeepAlive());
    return ReadStreamPiece();
  }
  if (piece.last) {
    body_buffers_ = {};
    return Respond(std::move(handler_response_), KeepAlive());
  }
  if (waiting_.has_value()) Consume(*std::exchange(waiting_, std::nullopt));
  // Otherwise the read in progress brings the next piece.
}

// A refused body: its pieces are counted and dropped, up to kMaxDrainBytes.
void Connection::Drain(size_t n, bool last) {
  drained_ += n;
  if (last) return Respond(*std::move(refusal_), KeepAlive());
  if (drained_ > kMaxDrainBytes) return Respond(*std::move(refusal_), false);
  ReadStreamPiece();
}

void Connection::OnBody(beast::error_code ec, size_t) {
  if (ec) return OnReadError(ec);
  phase_ = Phase::kHandler;
  auto& message = parser_->get();
  for (const auto& field : message) {
    request_.headers.emplace_back(ToString(field.name_string()), ToString(field.value()));
  }
  request_.body = std::move(message.body());
  const bool keep_alive = message.keep_alive();
  if (std::optional<Response> preflight = PreflightResponse()) {
    return Respond(*std::move(preflight), keep_alive && !server_->stopping_);
  }
  Response response;
  switch (match_.kind) {
    case MatchKind::kFound:
      request_.params = std::move(match_.params);
      if (match_.route->streaming) {
        return Offload([](Connection& c) { c.RunStreamingWhole(); },
                       [keep_alive](Connection& c) {
                         c.Respond(std::move(c.handler_response_),
                                   keep_alive && !c.server_->stopping_);
                       });
      }
      if (match_.route->options.runs_inline) {
        request_.on_io_thread = true;
        Response inline_response = InvokeHandler(*match_.route, request_);
        request_.on_io_thread = false;
        if (!inline_response.run_on_worker) {
          return Respond(std::move(inline_response), keep_alive && !server_->stopping_);
        }
      }
      return OnWorker(
          [](Connection& c) { c.handler_response_ = InvokeHandler(*c.match_.route, c.request_); },
          [keep_alive](Connection& c) {
            c.Respond(std::move(c.handler_response_), keep_alive && !c.server_->stopping_);
          });
    case MatchKind::kMethodNotAllowed:
      response = MethodNotAllowedResponse(request_.method, match_.allowed_methods);
      break;
    case MatchKind::kNotFound:
      response = NotFoundResponse(request_.method, request_.path);
      break;
  }
  Respond(std::move(response), keep_alive && !server_->stopping_);
}

// The answer to a CORS preflight (server.h): an OPTIONS request, with no OPTIONS route of its
// own, from an allowed origin, asking for a method routed on this host and path. nullopt for
// anything else, which is then routed as usual.
std::optional<Response> Connection::PreflightResponse() const {
  if (cors_origin_.empty() || request_.method != "OPTIONS" || match_.kind == MatchKind::kFound) {
    return std::nullopt;
  }
  const std::optional<std::string_view> asked = request_.Header("Access-Control-Request-Method");
  if (!asked.has_value() ||
      server_->router_->Match(*asked, request_.host, request_.path).kind != MatchKind::kFound) {
    return std::nullopt;
  }
  Response response = Text(204, "", "");
  response.headers = {
      {"Access-Control-Allow-Methods", std::string(*asked)},
      {"Access-Control-Allow-Headers", options_.cors.allow_headers},
      {"Access-Control-Max-Age", std::to_string(options_.cors.max_age.count())},
  };
  return response;
}

// A read failed: answer what can be answered, then close. The stream cannot be resynchronised
// after an unread or unparsable request.
void Connection::OnReadError(beast::error_code ec) {
  if (ec == bhttp::error::header_limit) {
    return Respond(AzureError(431, "RequestHeaderFieldsTooLarge",
                              "The request line and headers exceed " +
                                  std::to_string(options_.max_header_bytes) + " bytes."),
                   false);
  }
  if (ec == bhttp::error::body_limit) {
    return Respond(AzureError(413, "RequestBodyTooLarge",
                              "The request body exceeds the limit of " +
                                  std::to_string(match_.kind == MatchKind::kFound
                                                     ? match_.route->options.max_body_bytes
                                                     : kDefaultMaxBodyBytes) +
                                  " bytes for this operation."),
                   false);
  }
  if (IsHttpParseError(ec) && ec != bhttp::error::end_of_stream &&
      ec != bhttp::error::partial_message) {
    return Respond(AzureError(400, "BadRequest", "The request is malformed: " + ec.message() + "."),
                   false);
  }
  if (ec == beast::error::timeout) {
    Log(LogLevel::kInfo, "http.request_timeout",
        {{"remote", remote_address_}, {"request_id", request_.request_id}});
  }
  CloseSocket();
}

void Connection::Respond(Response response, bool keep_alive) {
  phase_ = Phase::kWrite;
  bool valid = response.status >= 200 && response.status <= 599 &&
               !((response.status == 204 || response.status == 304) && !response.body.empty());
  for (const auto& [name, value] : response.headers) valid = valid && IsValidHeader(name, value);
  valid = valid && IsValidHeader("Content-Type", response.content_type);
  if (response.stream != nullptr) {
    valid = valid && response.body.empty() && static_cast<bool>(response.stream->read);
  }
  valid = valid && !response.run_on_worker;  // only an inline handler may ask that
  if (!valid) {
    Log(LogLevel::kError, "http.invalid_response",
        {{"request_id", request_.request_id},
         {"route", match_.route != nullptr ? match_.route->label : kUnmatchedRoute}});
    response = AzureError(500, "InternalServerError",
                          "The server failed to process the request. Quote the "
                          "x-ms-request-id response header when reporting this.");
  }
  response_status_ = response.status;
  tcp().expires_after(options_.write_timeout);

  if (response.stream != nullptr && request_.method != "HEAD") {
    stream_response_ = {};
    SetHeaders(stream_response_, response, keep_alive);
    if (response.stream->chunked) {
      stream_response_.chunked(true);
    } else {
      stream_response_.content_length(response.stream->size);
    }
    body_source_ = std::move(response.stream);
    stream_next_ = 0;
    body_read_ = 0;
    body_sent_ = 0;
    source_done_ = false;
    stream_ended_ = false;
    ready_.reset();
    stream_response_.body().data = nullptr;
    stream_response_.body().more = true;
    serializer_.emplace(stream_response_);
    // The header goes out with the first piece.
    return ReadSourcePiece(keep_alive);
  }

  response_ = {};
  SetHeaders(response_, response, keep_alive);
  if (request_.method == "HEAD") {
    // The size a GET would have, no body.
    if (response.stream != nullptr && response.stream->chunked) {
      // No length to announce; a GET would send Transfer-Encoding: chunked.
    } else {
      response_.content_length(response.stream != nullptr ? response.stream->size
                                                          : response.body.size());
    }
  } else {
    response_.body() = std::move(response.body);
    response_.prepare_payload();
  }
  bhttp::async_write(
      stream_, response_,
      beast::bind_front_handler(&Connection::OnWritten, shared_from_this(), keep_alive));
}

template <typename Message>
void Connection::SetHeaders(Message& message, const Response& response, bool keep_alive) {
  message.version(11);
  message.result(static_cast<unsigned>(response.status));
  for (const auto& header : response.headers) {
    const bool reserved =
        std::any_of(std::begin(kServerHeaders), std::end(kServerHeaders),
                    [&](std::string_view h) { return EqualsIgnoreCase(h, header.first); });
    if (!reserved) message.insert(header.first, header.second);
  }
  if (!response.content_type.empty()) {
    message.set(bhttp::field::content_type, response.content_type);
  }
  message.set(bhttp::field::date, HttpDate());
  message.set("x-content-type-options", "nosniff");
  message.set("x-ms-request-id", request_.request_id);
  if (!client_request_id_.empty()) message.set("x-ms-client-request-id", client_request_id_);
  if (options_.cors.allow_origin) message.insert(bhttp::field::vary, "Origin");
  if (!cors_origin_.empty()) {
    message.set(bhttp::field::access_control_allow_origin, cors_origin_);
    message.set(bhttp::field::access_control_expose_headers, options_.cors.expose_headers);
  }
  message.keep_alive(keep_alive);
}

// A streamed response: reads the next piece from its source, into the buffer not being
// written. The first piece is read as the handler ran (inline for a runs_inline route, so a
// small file takes no trip to a worker); later ones on a worker, overlapping the write of the
// piece before. A source that fails or does not add up to the announced size ends the
// connection: the client sees a body shorter than Content-Length, never bytes that are wrong.
void Connection::ReadSourcePiece(bool keep_alive) {
  const int buffer = stream_next_;
  stream_next_ = 1 - stream_next_;
  const bool chunked = body_source_->chunked;
  const size_t want =
      chunked
          ? kStreamChunk
          : static_cast<size_t>(std::min<uint64_t>(kStreamChunk, body_source_->size - body_read_));
  if (!chunked && want == 0) {  // an empty body: nothing to read
    source_read_ = size_t{0};
    return OnSourcePiece(buffer, keep_alive);
  }
  if (stream_buffers_[buffer].size() < want) stream_buffers_[buffer].resize(kStreamChunk);
  source_busy_ = true;
  auto work = [buffer, want, chunked](Connection& c) {
    // Touches only the source, this buffer and source_read_: the connection's thread, which
    // may be writing the other buffer meanwhile, leaves them alone until OnSourcePiece.
    c.source_read_ = InternalError("the body source threw");
    try {
      c.source_read_ =
          c.body_source_->read(std::span<uint8_t>(c.stream_buffers_[buffer].data(), want));
    } catch (const std::exception&) {
    }
    // A chunked body ends when read returns 0; a sized one must give what it announced.
    if (c.source_read_.ok() && ((*c.source_read_ == 0 && !chunked) || *c.source_read_ > want)) {
      c.source_read_ = InternalError("the source ended early");
    }
  };
  auto then = [buffer, keep_alive](Connection& c) { c.OnSourcePiece(buffer, keep_alive); };
  if (body_read_ == 0) return Offload(work, then);
  OnWorker(work, then);
}

void Connection::OnSourcePiece(int buffer, bool keep_alive) {
  source_busy_ = false;
  if (stream_ended_) return EndStream();  // the response was cut short meanwhile
  if (source_read_.ok()) {
    body_read_ += *source_read_;
    source_done_ = body_source_->chunked ? *source_read_ == 0 : body_read_ == body_source_->size;
  } else {
    source_done_ = true;
  }
  ready_ = SourcePiece{buffer, std::move(source_read_)};
  AdvanceStream(keep_alive);
}

// Writes the piece read, once the write before it is done, and starts reading the next.
void Connection::AdvanceStream(bool keep_alive) {
  if (!piece_writing_ && ready_.has_value()) {
    SourcePiece piece = *std::exchange(ready_, std::nullopt);
    if (!piece.read.ok()) {
      Log(LogLevel::kError, "http.stream_aborted",
          {{"request_id", request_.request_id},
           {"sent", std::to_string(body_sent_)},
           {"size", std::to_string(body_source_->size)},
           {"error", piece.read.status().ToString()}});
      LogRequest(response_status_);
      return CloseSocket();
    }
    const size_t n = *piece.read;
    body_sent_ += n;
    auto& body = stream_response_.body();
    body.data = n > 0 ? stream_buffers_[piece.buffer].data() : nullptr;
    body.size = n;
    body.more = body_source_->chunked ? n > 0 : body_sent_ < body_source_->size;
    piece_writing_ = true;
    tcp().expires_after(options_.write_timeout);  // progress, not the whole body, is bounded
    bhttp::async_write(stream_, *serializer_,
                       beast::bind_front_handler(&Connection::OnStreamPieceWritten,
                                                 shared_from_this(), keep_alive));
  }
  if (!source_busy_ && !source_done_ && !ready_.has_value()) ReadSourcePiece(keep_alive);
}

void Connection::OnStreamPieceWritten(bool keep_alive, beast::error_code ec, size_t) {
  piece_writing_ = false;
  if (ec == bhttp::error::need_buffer) ec = {};
  if (!ec && phase_ != Phase::kClosed && !serializer_->is_done()) {
    return AdvanceStream(keep_alive);
  }
  serializer_.reset();
  EndStream();
  OnWritten(keep_alive, ec, 0);
}

// Frees the source and its buffers, once no worker reads into them.
void Connection::EndStream() {
  if (source_busy_) {
    stream_ended_ = true;
    return;
  }
  stream_ended_ = false;
  ready_.reset();
  body_source_.reset();
  stream_buffers_ = {};
}

void Connection::OnWritten(bool keep_alive, beast::error_code ec, size_t) {
  LogRequest(response_status_);
  if (ec || phase_ == Phase::kClosed) return CloseSocket();
  if (!keep_alive) return Shutdown();
  parser_.reset();
  stream_parser_.reset();
  WaitForRequest();
}

// Sends close_notify and waits, briefly, for the peer to close: closing with unread input
// would make the kernel send a reset, which can destroy the response before the client reads
// it. Input that arrives meanwhile is discarded.
void Connection::Shutdown() {
  phase_ = Phase::kClosing;
  tcp().expires_after(kLingerTimeout);
  stream_.async_shutdown([self = shared_from_this()](beast::error_code) { self->CloseSocket(); });
}

void Connection::CloseSocket() {
  phase_ = Phase::kClosed;
  tcp().close();
}

void Connection::LogRequest(int status) {
  const auto duration = Clock::now() - request_start_;
  const std::string& route = match_.route != nullptr ? match_.route->label : kUnmatchedRoute;
  server_->metrics_->RecordRequest(route, method_label_, status, duration);
  char millis[32];
  (void)std::snprintf(millis, sizeof(millis), "%.3f",
                      std::chrono::duration<double, std::milli>(duration).count());
  const std::string status_text = std::to_string(status);
  const std::string_view path = std::string_view(request_.path).substr(0, kMaxLoggedPath);
  const std::string_view client_id =
      std::string_view(client_request_id_).substr(0, kMaxLoggedClientRequestId);
  LogDeferred(LogLevel::kInfo, "http.request",
      {{"request_id", request_.request_id},
       {"method", request_.method},
       {"route", route},
       {"host", request_.host},
       {"path", path},
       {"status", status_text},
       {"duration_ms", millis},
       {"remote", remote_address_},
       {"client_request_id", client_id}});
}

}  // namespace

Status HttpsServer::Impl::SetUpTls() {
  SSL_CTX* ctx = ssl_context_.native_handle();
  ssl_context_.set_options(ssl::context::default_workarounds | ssl::context::no_compression |
                           ssl::context::no_sslv2 | ssl::context::no_sslv3 |
                           ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1 |
                           ssl::context::single_dh_use);
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
  if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 ||
      SSL_CTX_set_cipher_list(ctx, kTls12Ciphers) != 1 ||
      SSL_CTX_set_ciphersuites(ctx, kTls13Suites) != 1) {
    return InternalError("configuring TLS failed");
  }
  beast::error_code ec;
  ssl_context_.use_certificate_chain(asio::buffer(options_.certificate_pem), ec);
  if (ec) return InvalidArgumentError("the server certificate is not usable: " + ec.message());
  const ByteView key = options_.private_key_pem.Reveal(InsecureSecretAccess());
  ssl_context_.use_private_key(asio::buffer(key.data(), key.size()), ssl::context::pem, ec);
  if (ec || SSL_CTX_check_private_key(ctx) != 1) {
    return InvalidArgumentError("the server key is not usable or does not match the certificate");
  }
  options_.private_key_pem = SecretBytes();  // OpenSSL holds its own copy
  return OkStatus();
}

Status HttpsServer::Impl::Listen() {
  if (router_ == nullptr) return InvalidArgumentError("the server needs a router");
  if (options_.threads < 1 || options_.io_threads < 0 || options_.max_connections < 1 ||
      options_.max_header_bytes < 1 ||
      options_.handshake_timeout.count() <= 0 || options_.read_timeout.count() <= 0 ||
      options_.write_timeout.count() <= 0 || options_.idle_timeout.count() <= 0) {
    return InvalidArgumentError("the server's limits, timeouts and threads must be positive");
  }
  RETURN_IF_ERROR(SetUpTls());

  const std::string where = options_.listen_host + ":" + std::to_string(options_.listen_port);
  beast::error_code ec;
  tcp::endpoint endpoint;
  const auto address = asio::ip::make_address(options_.listen_host, ec);
  if (!ec) {
    endpoint = tcp::endpoint(address, options_.listen_port);
  } else {
    tcp::resolver resolver(*io_contexts_.front());
    auto results = resolver.resolve(options_.listen_host, std::to_string(options_.listen_port),
                                    tcp::resolver::passive, ec);
    if (ec || results.empty()) return UnavailableError("cannot resolve " + where);
    endpoint = results.begin()->endpoint();
  }
  if (acceptor_.open(endpoint.protocol(), ec) ||
      acceptor_.set_option(asio::socket_base::reuse_address(true), ec) ||
      acceptor_.bind(endpoint, ec) ||
      acceptor_.listen(asio::socket_base::max_listen_connections, ec)) {
    return UnavailableError("cannot listen on " + where + ": " + ec.message());
  }
  port_ = acceptor_.local_endpoint(ec).port();
  if (ec) return UnavailableError("cannot listen on " + where + ": " + ec.message());

  workers_.emplace(static_cast<size_t>(options_.threads));
  Accept();
  for (auto& context : io_contexts_) {
    threads_.emplace_back([&ioc = *context] {
      // An exception escaping a completion handler (e.g. bad_alloc) ends only that handler.
      while (true) {
        try {
          ioc.run();
          return;
        } catch (const std::exception& e) {
          Log(LogLevel::kError, "http.io_exception", {{"exception", e.what()}});
        }
      }
    });
  }
  Log(LogLevel::kInfo, "http.listening",
      {{"address", endpoint.address().to_string()}, {"port", std::to_string(port_)}});
  return OkStatus();
}

void HttpsServer::Impl::Accept() {
  acceptor_.async_accept(NextContext(), beast::bind_front_handler(&Impl::OnAccept, this));
}

void HttpsServer::Impl::OnAccept(beast::error_code ec, tcp::socket socket) {
  if (!acceptor_.is_open() || ec == asio::error::operation_aborted) return;
  if (ec) {
    // Out of file descriptors, typically: wait a little rather than spin.
    Log(LogLevel::kWarning, "http.accept_failed", {{"error", ec.message()}});
    accept_retry_timer_.expires_after(kAcceptRetryDelay);
    accept_retry_timer_.async_wait([this](beast::error_code wait_ec) {
      if (!wait_ec) Accept();
    });
    return;
  }
  const tcp::endpoint peer = socket.remote_endpoint(ec);
  if (ec) return Accept();  // the peer is already gone
  // Responses are written whole; Nagle's algorithm would only hold back their last segment
  // (with the TLS close_notify, up to a delayed-ACK timeout of 40 ms).
  socket.set_option(tcp::no_delay(true), ec);
  auto connection =
      std::make_shared<Connection>(this, std::move(socket), peer.address().to_string());
  switch (Admit(connection)) {
    case Admission::kAdmitted:
      asio::dispatch(connection->executor(), [connection] { connection->Start(); });
      break;
    case Admission::kFull:
      metrics_->ConnectionRefused();
      LogRefusal();
      break;  // dropping the connection closes its socket
    case Admission::kStopping:
      break;
  }
  Accept();
}

HttpsServer::Impl::Admission HttpsServer::Impl::Admit(const std::shared_ptr<Connection>& c) {
  MutexLock lock(&mu_);
  if (stop_started_) return Admission::kStopping;
  if (connections_.size() >= options_.max_connections) return Admission::kFull;
  connections_.emplace(c.get(), c);
  c->MarkAdmitted();
  metrics_->ConnectionOpened();
  return Admission::kAdmitted;
}

void HttpsServer::Impl::Remove(const Connection* connection) {
  MutexLock lock(&mu_);
  connections_.erase(connection);
  metrics_->ConnectionClosed();
  if (stop_started_ && connections_.empty() && !drained_set_) {
    drained_set_ = true;
    drained_.set_value();
  }
}

void HttpsServer::Impl::LogRefusal() {
  const int64_t now = Clock::now().time_since_epoch().count();
  int64_t last = last_refusal_log_.load();
  const int64_t interval = std::chrono::duration_cast<Clock::duration>(kRefusalLogInterval).count();
  if (now - last < interval || !last_refusal_log_.compare_exchange_strong(last, now)) return;
  Log(LogLevel::kWarning, "http.connections_refused",
      {{"max_connections", std::to_string(options_.max_connections)}});
}

std::vector<std::shared_ptr<Connection>> HttpsServer::Impl::OpenConnections() {
  std::vector<std::shared_ptr<Connection>> out;
  MutexLock lock(&mu_);
  for (const auto& [key, weak] : connections_) {
    if (auto c = weak.lock()) out.push_back(std::move(c));
  }
  return out;
}

void HttpsServer::Impl::Stop(std::chrono::milliseconds drain) {
  {
    MutexLock lock(&mu_);
    if (stop_started_) return;
    stop_started_ = true;
    stopping_ = true;
    if (connections_.empty()) {
      drained_set_ = true;
      drained_.set_value();
    }
  }
  const auto deadline = Clock::now() + drain;
  // The acceptor is closed on its strand (it is not thread-safe), and before Stop goes on, so
  // that the port refuses connections as soon as Stop returns.
  auto close_acceptor = [this] {
    beast::error_code ignored;
    acceptor_.close(ignored);
    accept_retry_timer_.cancel();
  };
  if (threads_.empty()) {
    close_acceptor();  // Listen failed: nothing runs concurrently
  } else {
    std::promise<void> closed;
    asio::post(acceptor_.get_executor(), [&] {
      close_acceptor();
      closed.set_value();
    });
    closed.get_future().wait();
  }
  for (auto& c : OpenConnections()) asio::post(c->executor(), [c] { c->StopIfIdle(); });

  if (drained_future_.wait_until(deadline) != std::future_status::ready) {
    for (auto& c : OpenConnections()) asio::post(c->executor(), [c] { c->Close(); });
    // Closing completes every pending operation at once; a handler still running delays this.
    (void)drained_future_.wait_for(kLingerTimeout);
  }
  work_.clear();
  for (auto& ioc : io_contexts_) ioc->stop();
  if (threads_.empty()) return;
  for (std::thread& t : threads_) t.join();
  threads_.clear();
  workers_->join();  // handlers still running finish; what they post back is dropped
  Log(LogLevel::kInfo, "http.stopped", {{"port", std::to_string(port_)}});
}

StatusOr<std::unique_ptr<HttpsServer>> HttpsServer::Start(ServerOptions options,
                                                          std::shared_ptr<const Router> router) {
  try {
    auto impl = std::make_unique<Impl>(std::move(options), std::move(router));
    if (Status s = impl->Listen(); !s.ok()) {
      impl->Stop(std::chrono::milliseconds(0));
      return s;
    }
    return std::unique_ptr<HttpsServer>(new HttpsServer(std::move(impl)));
  } catch (const std::exception& e) {
    return InternalError(std::string("starting the HTTPS server failed: ") + e.what());
  }
}

HttpsServer::HttpsServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

HttpsServer::~HttpsServer() { Stop(std::chrono::milliseconds(0)); }

uint16_t HttpsServer::port() const { return impl_->port_; }

void HttpsServer::Stop(std::chrono::milliseconds drain) { impl_->Stop(drain); }

Metrics& HttpsServer::metrics() { return *impl_->metrics_; }

}  // namespace keyfoundry::http
