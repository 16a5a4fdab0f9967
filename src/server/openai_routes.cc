// The AI data plane, OpenAI-compatible, on https://{account}.openai.DOMAIN:PORT:
//
//   POST   /openai/files                 multipart/form-data {purpose, file}; streamed
//   GET    /openai/files                 ?purpose=&limit=&order=asc|desc&after={id}; paged
//   GET    /openai/files/{id}
//   GET    /openai/files/{id}/content    streamed; Range: bytes=a-b | a- | -n (206)
//   DELETE /openai/files/{id}
// (also under /openai/v1/..., the path of OpenAI's v1-style clients).
//
// Authentication, as Azure OpenAI: an `api-key` header holding one of the account's keys
// (refused with 401 when local auth is disabled, S11), or a bearer token for
// https://cognitiveservices.DOMAIN whose principal holds the data action (Cognitive Services
// User, ...) or may list the account's keys (Contributor, Owner: they could use a key anyway).
//
// Encryption: uploads are sealed under the account's active key generation; a download needs
// the generation its file names. When the customer's key is inaccessible the answer is 403
// KeyInaccessible naming the key and the reason (innererror.code: AccessDenied, KeyDisabled,
// ...); 503 when the vault cannot be reached. File uses are audited by the queued audit path.
#include <nlohmann/json.hpp>

#include "audit/audit_log.h"
#include "common/logging.h"
#include "common/strings.h"
#include "encryption/account_keys.h"
#include "foundry/accounts.h"
#include "foundry/files.h"
#include "http/multipart.h"
#include "server/services.h"

namespace keyfoundry::server {
namespace {

using foundry::Account;
using http::Request;
using http::Response;
using Json = nlohmann::json;

constexpr uint64_t kMaxUploadBytes = uint64_t{64} << 30;
constexpr size_t kMaxPurposeSize = 64;

struct Authenticated {
  Account account;
  std::string object_id;  // empty for an api-key caller
  std::string app_id;
};

Response OpenAiError(int status, std::string code, std::string message) {
  return http::AzureError(status, std::move(code), std::move(message));
}

// The bearer token's principal must hold `data_action` on the account (or may list its keys).
std::variant<Authenticated, Response> Authenticate(const Services& s, const Request& r,
                                                   std::string_view data_action) {
  if (!s.ready.load(std::memory_order_acquire)) {
    return OpenAiError(503, "ServiceUnavailable", "keyfoundryd is starting; retry shortly");
  }
  StatusOr<Account> account = s.accounts->GetByName(r.params.at("account"));
  if (!account.ok()) {
    if (account.status().code() != StatusCode::kNotFound) {
      return InternalFailure(r, account.status());
    }
    return OpenAiError(404, "ResourceNotFound",
                       "No account is served at " + r.host + ": check the endpoint.");
  }
  Authenticated out{*std::move(account), "", ""};
  if (std::optional<std::string_view> key = r.Header("api-key")) {
    if (out.account.disable_local_auth) {
      return OpenAiError(401, "AuthenticationTypeDisabled",
                         "Key based authentication is disabled for this resource: use a "
                         "Microsoft Entra token.");
    }
    if (!foundry::AccountStore::CheckApiKey(out.account, *key)) {
      return OpenAiError(401, "401",
                         "Access denied due to invalid subscription key or wrong API endpoint. "
                         "Make sure to provide a valid key for an active subscription and use a "
                         "correct regional API endpoint for your resource.");
    }
    return out;
  }
  std::optional<std::string_view> header = r.Header("Authorization");
  if (!header || header->size() < 8 || !EqualsIgnoreCase(header->substr(0, 7), "bearer ")) {
    return OpenAiError(401, "401",
                       "Access denied due to missing subscription key or token. Send an "
                       "'api-key' header or 'Authorization: Bearer' with a token for " +
                           s.Audience(identity::Service::kCognitiveServices) + ".");
  }
  identity::TokenVerifyFailure failure;
  StatusOr<identity::Caller> caller = s.verifier->Verify(
      header->substr(7), s.Audience(identity::Service::kCognitiveServices), &failure);
  if (!caller.ok()) return OpenAiError(401, "401", caller.status().message());
  const std::string scope = out.account.ResourceId();
  StatusOr<identity::Decision> decision = s.authorizer->Decide(
      caller->object_id, scope, data_action, identity::ActionType::kDataAction);
  bool allowed = decision.ok() && decision->allowed;
  if (!allowed) {
    decision = s.authorizer->Decide(caller->object_id, scope,
                                    "Microsoft.CognitiveServices/accounts/listKeys/action",
                                    identity::ActionType::kAction);
    allowed = decision.ok() && decision->allowed;
  }
  if (!decision.ok()) return InternalFailure(r, decision.status());
  if (!allowed) {
    return OpenAiError(403, "PermissionDenied",
                       "The principal `" + caller->object_id +
                           "` lacks the required data action `" + std::string(data_action) +
                           "` on " + scope + ".");
  }
  out.object_id = caller->object_id;
  out.app_id = caller->app_id;
  return out;
}

// The answer to a key-engine or file-store failure.
Response FailureResponse(const Request& r, const Status& status) {
  switch (status.code()) {
    case StatusCode::kPermissionDenied:
      return http::AzureError(403, "KeyInaccessible", status.message(),
                              Json{{"code", status.reason()}});
    case StatusCode::kNotFound:
      return OpenAiError(404, "NotFound", status.message());
    case StatusCode::kInvalidArgument:
      return OpenAiError(400, status.reason().empty() ? "invalidPayload" : status.reason(),
                         status.message());
    default:
      return InternalFailure(r, status);
  }
}

void AuditFileUse(const Services& s, const Request& r, const Authenticated& who,
                  std::string_view operation, std::string_view file_id, int status) {
  if (s.audit == nullptr) return;
  audit::AuditEvent event;
  event.operation = std::string(operation);
  event.category = "AIDataPlane";
  event.caller_object_id = who.object_id.empty() ? "api-key" : who.object_id;
  event.caller_app_id = who.app_id;
  event.client_address = r.remote_address;
  event.resource_id = who.account.ResourceId() + "/files/" + std::string(file_id);
  event.result = status < 400 ? "Success" : "Failure";
  event.status = status;
  event.correlation_id = r.request_id;
  (void)s.audit->Record(std::move(event));
}

// --- upload

class UploadConsumer final : public http::BodyConsumer {
 public:
  UploadConsumer(const Services& s, const Request& r, Authenticated who,
                 std::unique_ptr<foundry::FileUpload> upload)
      : s_(s),
        request_id_(r.request_id),
        remote_(r.remote_address),
        who_(std::move(who)),
        upload_(std::move(upload)) {}

  Status Start(std::string_view boundary) {
    http::MultipartCallbacks callbacks;
    callbacks.on_part_begin = [this](const http::MultipartPart& part) -> Status {
      current_ = part.name;
      if (part.name == "file") {
        if (seen_file_) return InvalidArgumentError("the body has more than one 'file' part");
        seen_file_ = true;
        filename_ = part.filename.value_or("");
      } else if (part.name == "purpose") {
        purpose_.clear();
      }
      return OkStatus();
    };
    callbacks.on_part_data = [this](ByteView data) -> Status {
      if (current_ == "file") return upload_->Write(data);
      if (current_ == "purpose") {
        if (purpose_.size() + data.size() > kMaxPurposeSize) {
          return InvalidArgumentError("'purpose' is too long");
        }
        purpose_.append(AsStringView(data));
      }
      return OkStatus();
    };
    callbacks.on_part_end = [this]() -> Status {
      current_.clear();
      return OkStatus();
    };
    ASSIGN_OR_RETURN(parser_, http::MultipartParser::New(boundary, std::move(callbacks)));
    return OkStatus();
  }

  Status Consume(ByteView data) override { return parser_->Feed(data); }

  Response Finish() override {
    if (Status done = parser_->Finish(); !done.ok()) return Fail(done);
    if (!seen_file_) {
      return OpenAiError(400, "invalidPayload", "The body has no 'file' part: send the file.");
    }
    if (purpose_.empty()) {
      return OpenAiError(400, "invalidPayload",
                         "The body has no 'purpose' part: send purpose=fine-tune, for example.");
    }
    StatusOr<foundry::FileInfo> file = upload_->Finish(filename_, purpose_);
    Request r;
    r.request_id = request_id_;
    r.remote_address = remote_;
    if (!file.ok()) {
      AuditFileUse(s_, r, who_, "FileUpload", "", 400);
      return FailureResponse(r, file.status());
    }
    AuditFileUse(s_, r, who_, "FileUpload", file->id, 200);
    Log(LogLevel::kInfo, "file.uploaded",
        {{"request_id", request_id_},
         {"file", file->id},
         {"bytes", std::to_string(file->bytes)},
         {"generation", std::to_string(file->generation)}});
    return http::Json(200, foundry::FileToJson(*file));
  }

  Response Fail(const Status& status) override {
    if (status.code() == StatusCode::kInvalidArgument) {
      return OpenAiError(400, "invalidPayload", status.message());
    }
    Request r;
    r.request_id = request_id_;
    return InternalFailure(r, status);
  }

 private:
  const Services& s_;
  std::string request_id_;
  std::string remote_;
  Authenticated who_;
  std::unique_ptr<foundry::FileUpload> upload_;
  std::unique_ptr<http::MultipartParser> parser_;
  std::string current_;
  std::string filename_;
  std::string purpose_;
  bool seen_file_ = false;
};

std::variant<Response, std::unique_ptr<http::BodyConsumer>> UploadFile(const Services& s,
                                                                       Request& r) {
  auto auth = Authenticate(s, r, "Microsoft.CognitiveServices/accounts/OpenAI/files/write");
  if (auto* denied = std::get_if<Response>(&auth)) return std::move(*denied);
  Authenticated who = std::get<Authenticated>(std::move(auth));
  StatusOr<std::string> boundary = http::MultipartBoundary(r.Header("Content-Type").value_or(""));
  if (!boundary.ok()) {
    return OpenAiError(400, "invalidPayload",
                       "Upload the file as multipart/form-data with 'purpose' and 'file' parts: " +
                           boundary.status().message());
  }
  // The active key first: a revoked key refuses the upload before its body is sent.
  StatusOr<std::unique_ptr<foundry::FileUpload>> upload = s.files->BeginUpload(who.account.Key());
  if (!upload.ok()) {
    AuditFileUse(s, r, who, "FileUpload", "",
                 upload.status().code() == StatusCode::kPermissionDenied ? 403 : 500);
    return FailureResponse(r, upload.status());
  }
  auto consumer = std::make_unique<UploadConsumer>(s, r, std::move(who), *std::move(upload));
  if (Status started = consumer->Start(*boundary); !started.ok()) {
    return OpenAiError(400, "invalidPayload", started.message());
  }
  return consumer;
}

// --- reads

Response ListFiles(const Services& s, Request& r) {
  auto auth = Authenticate(s, r, "Microsoft.CognitiveServices/accounts/OpenAI/files/read");
  if (auto* denied = std::get_if<Response>(&auth)) return std::move(*denied);
  const Authenticated& who = std::get<Authenticated>(auth);
  foundry::ListFilesOptions options;
  if (auto it = r.query.find("limit"); it != r.query.end()) {
    const std::optional<int64_t> n = ParseInt64(it->second);
    if (!n.has_value() || *n < 1 || *n > static_cast<int64_t>(foundry::kMaxListLimit)) {
      return OpenAiError(400, "invalidPayload", "limit must be between 1 and 10000");
    }
    options.limit = static_cast<size_t>(*n);
  }
  if (auto it = r.query.find("order"); it != r.query.end()) {
    if (it->second == "asc") {
      options.order = foundry::ListOrder::kOldestFirst;
    } else if (it->second != "desc") {
      return OpenAiError(400, "invalidPayload", "order must be 'asc' or 'desc'");
    }
  }
  if (auto it = r.query.find("purpose"); it != r.query.end()) options.purpose = it->second;
  if (auto it = r.query.find("after"); it != r.query.end()) options.after = it->second;
  StatusOr<foundry::FileList> list = s.files->List(who.account.Key(), options);
  if (!list.ok()) return FailureResponse(r, list.status());
  Json data = Json::array();
  for (const auto& f : list->files) data.push_back(foundry::FileToJson(f));
  const Json first = list->files.empty() ? Json() : Json(list->files.front().id);
  const Json last = list->files.empty() ? Json() : Json(list->files.back().id);
  return http::Json(200, {{"object", "list"},
                          {"data", std::move(data)},
                          {"first_id", first},
                          {"last_id", last},
                          {"has_more", list->has_more}});
}

Response GetFile(const Services& s, Request& r) {
  auto auth = Authenticate(s, r, "Microsoft.CognitiveServices/accounts/OpenAI/files/read");
  if (auto* denied = std::get_if<Response>(&auth)) return std::move(*denied);
  const Authenticated& who = std::get<Authenticated>(auth);
  StatusOr<foundry::FileInfo> file = s.files->Get(who.account.Key(), r.params.at("id"));
  if (!file.ok()) return FailureResponse(r, file.status());
  return http::Json(200, foundry::FileToJson(*file));
}

Response DeleteFile(const Services& s, Request& r) {
  auto auth = Authenticate(s, r, "Microsoft.CognitiveServices/accounts/OpenAI/files/delete");
  if (auto* denied = std::get_if<Response>(&auth)) return std::move(*denied);
  const Authenticated& who = std::get<Authenticated>(auth);
  const std::string id = r.params.at("id");
  Status deleted = s.files->Delete(who.account.Key(), id);
  AuditFileUse(s, r, who, "FileDelete", id, deleted.ok() ? 200 : 404);
  if (!deleted.ok()) return FailureResponse(r, deleted);
  return http::Json(200, {{"id", id}, {"object", "file"}, {"deleted", true}});
}

// "bytes=a-b", "bytes=a-", "bytes=-n" against `size`: [first, last], or nullopt when
// unsatisfiable. A malformed or multi-range header is ignored (the whole file), as RFC 9110
// allows.
struct ByteRange {
  uint64_t first = 0;
  uint64_t last = 0;
};
std::optional<std::optional<ByteRange>> ParseRange(std::string_view header, uint64_t size) {
  constexpr std::string_view kUnit = "bytes=";
  if (!header.starts_with(kUnit) || header.find(',') != std::string_view::npos) {
    return std::optional<ByteRange>();  // ignored
  }
  header.remove_prefix(kUnit.size());
  const size_t dash = header.find('-');
  if (dash == std::string_view::npos) return std::optional<ByteRange>();
  const std::string_view a = header.substr(0, dash);
  const std::string_view b = header.substr(dash + 1);
  const std::optional<int64_t> first = a.empty() ? std::nullopt : ParseInt64(a);
  const std::optional<int64_t> last = b.empty() ? std::nullopt : ParseInt64(b);
  if ((!a.empty() && (!first || *first < 0)) || (!b.empty() && (!last || *last < 0)) ||
      (a.empty() && b.empty())) {
    return std::optional<ByteRange>();
  }
  ByteRange range;
  if (a.empty()) {  // the last n bytes
    if (*last == 0 || size == 0) return std::nullopt;
    range.first = size - std::min<uint64_t>(size, static_cast<uint64_t>(*last));
    range.last = size - 1;
    return std::optional<ByteRange>(range);
  }
  if (static_cast<uint64_t>(*first) >= size) return std::nullopt;
  if (last.has_value() && *last < *first) return std::optional<ByteRange>();
  range.first = static_cast<uint64_t>(*first);
  range.last =
      last.has_value() ? std::min<uint64_t>(static_cast<uint64_t>(*last), size - 1) : size - 1;
  return std::optional<ByteRange>(range);
}

Response DownloadFile(const Services& s, Request& r) {
  auto auth = Authenticate(s, r, "Microsoft.CognitiveServices/accounts/OpenAI/files/read");
  if (auto* denied = std::get_if<Response>(&auth)) return std::move(*denied);
  const Authenticated& who = std::get<Authenticated>(auth);
  const std::string id = r.params.at("id");
  if (r.on_io_thread) {
    // Unwrapping a key not in the cache may mean a round trip to a remote vault: not on the
    // I/O thread, whose other connections would wait.
    StatusOr<foundry::FileInfo> info = s.files->Get(who.account.Key(), id);
    if (info.ok() && !s.account_keys->IsCached(who.account.Key(), info->generation)) {
      return http::RunOnWorker();
    }
  }
  StatusOr<std::unique_ptr<foundry::FileReader>> opened = s.files->Open(who.account.Key(), id);
  if (!opened.ok()) {
    AuditFileUse(s, r, who, "FileDownload", id,
                 opened.status().code() == StatusCode::kPermissionDenied ? 403 : 404);
    return FailureResponse(r, opened.status());
  }
  std::shared_ptr<foundry::FileReader> reader = *std::move(opened);
  const uint64_t size = reader->info().bytes;
  uint64_t first = 0;
  uint64_t length = size;
  int status = 200;
  std::vector<std::pair<std::string, std::string>> headers = {{"Accept-Ranges", "bytes"}};
  if (std::optional<std::string_view> range_header = r.Header("Range")) {
    auto range = ParseRange(*range_header, size);
    if (!range.has_value()) {
      Response unsatisfiable =
          OpenAiError(416, "RangeNotSatisfiable",
                      "The range is outside the file of " + std::to_string(size) + " bytes.");
      unsatisfiable.headers.emplace_back("Content-Range", "bytes */" + std::to_string(size));
      return unsatisfiable;
    }
    if (range->has_value()) {
      first = (*range)->first;
      length = (*range)->last - first + 1;
      status = 206;
      headers.emplace_back("Content-Range", "bytes " + std::to_string(first) + "-" +
                                                std::to_string((*range)->last) + "/" +
                                                std::to_string(size));
    }
  }
  AuditFileUse(s, r, who, "FileDownload", id, status);
  Response response = http::Text(status, "", "application/octet-stream");
  response.headers = std::move(headers);
  response.stream = std::make_shared<http::StreamedBody>();
  response.stream->size = length;
  response.stream->read = [reader,
                           offset = first](std::span<uint8_t> out) mutable -> StatusOr<size_t> {
    ASSIGN_OR_RETURN(size_t n, reader->ReadAt(offset, out));
    offset += n;
    return n;
  };
  return response;
}

}  // namespace

void AddOpenAiRoutes(http::Router& router, std::shared_ptr<Services> services) {
  const auto& s = services;
  const std::string host = "{account}.openai." + s->config.domain;
  for (const std::string prefix : {"/openai", "/openai/v1"}) {
    router.AddStreaming(
        "POST", host, prefix + "/files", [s](Request& r) { return UploadFile(*s, r); },
        {.max_body_bytes = kMaxUploadBytes, .metrics_name = "/openai/files (upload)"});
    router.Add("GET", host, prefix + "/files", [s](Request& r) { return ListFiles(*s, r); },
               {.metrics_name = "/openai/files"});
    // Reads of one file run inline (http::RouteOptions::runs_inline): metadata reads and a
    // queued audit record; a download whose key is not cached goes to a worker (RunOnWorker).
    router.Add("GET", host, prefix + "/files/{id}", [s](Request& r) { return GetFile(*s, r); },
               {.metrics_name = "/openai/files/{id}", .runs_inline = true});
    router.Add("DELETE", host, prefix + "/files/{id}",
               [s](Request& r) { return DeleteFile(*s, r); },
               {.metrics_name = "/openai/files/{id}"});
    router.Add("GET", host, prefix + "/files/{id}/content",
               [s](Request& r) { return DownloadFile(*s, r); },
               {.metrics_name = "/openai/files/{id}/content", .runs_inline = true});
  }
}

}  // namespace keyfoundry::server
