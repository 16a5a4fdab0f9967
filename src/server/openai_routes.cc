// The AI data plane, OpenAI-compatible, on https://{account}.openai.DOMAIN:PORT:
//
//   POST   /openai/files                 multipart/form-data {purpose, file}; streamed
//   GET    /openai/files                 ?purpose=&limit=&order=asc|desc&after={id}; paged
//   GET    /openai/files/{id}
//   GET    /openai/files/{id}/content    streamed; Range: bytes=a-b | a- | -n (206)
//   DELETE /openai/files/{id}
//   POST   /openai/fine_tuning/jobs      {model, training_file, validation_file?, hyperparameters?,
//                                         suffix?, seed?}; GET lists (?limit=&after=)
//   GET    /openai/fine_tuning/jobs/{job}[/events | /checkpoints]; POST .../{job}/cancel
//   GET    /openai/models[/{model}]      base models and the account's fine-tuned ones
//   POST   /openai/deployments/{deployment}/chat/completions   (stream: server-sent events)
//   POST   /openai/deployments/{deployment}/completions
//   POST   /openai/chat/completions, /openai/completions        ("model" names the deployment)
// (also under /openai/v1/..., the path of OpenAI's v1-style clients, and every path also at
// https://HOST:PORT/accounts/{account}/openai/...).
//
// Inference runs on the deployment's model in memory: it needs no key, so a deployment keeps
// answering after its key is revoked (S7). Creating a fine-tuning job or a deployment of a
// fine-tuned model needs the keys of what they read (403 KeyInaccessible otherwise).
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
#include "common/clock.h"
#include "common/encoding.h"
#include "crypto/random.h"
#include "foundry/deployments.h"
#include "foundry/files.h"
#include "foundry/fine_tuning.h"
#include "foundry/models.h"
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
      return OpenAiError(404, status.reason().empty() ? "NotFound" : status.reason(),
                         status.message());
    case StatusCode::kFailedPrecondition:
    case StatusCode::kInvalidArgument:
      return OpenAiError(400, status.reason().empty() ? "invalidPayload" : status.reason(),
                         status.message());
    default:
      return InternalFailure(r, status);
  }
}

// A file the platform keeps for itself (a model's weights) is no file of the files API.
Response NoSuchFile(std::string_view id) {
  return OpenAiError(404, "NotFound", "No file '" + std::string(id) + "' in this account.");
}

// A use of the account's data (`resource` below the account's id) in the audit trail.
void AuditUse(const Services& s, const Request& r, const Authenticated& who,
              std::string_view operation, const std::string& resource, int status) {
  if (s.audit == nullptr) return;
  audit::AuditEvent event;
  event.operation = std::string(operation);
  event.category = "AIDataPlane";
  event.caller_object_id = who.object_id.empty() ? "api-key" : who.object_id;
  event.caller_app_id = who.app_id;
  event.client_address = r.remote_address;
  event.resource_id = who.account.ResourceId() + resource;
  event.result = status < 400 ? "Success" : "Failure";
  event.status = status;
  event.correlation_id = r.request_id;
  (void)s.audit->Record(std::move(event));
}

void AuditFileUse(const Services& s, const Request& r, const Authenticated& who,
                  std::string_view operation, std::string_view file_id, int status) {
  AuditUse(s, r, who, operation, "/files/" + std::string(file_id), status);
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
    LogDeferred(LogLevel::kInfo, "file.uploaded",
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
  if (foundry::IsInternalPurpose(file->purpose)) return NoSuchFile(r.params.at("id"));
  return http::Json(200, foundry::FileToJson(*file));
}

Response DeleteFile(const Services& s, Request& r) {
  auto auth = Authenticate(s, r, "Microsoft.CognitiveServices/accounts/OpenAI/files/delete");
  if (auto* denied = std::get_if<Response>(&auth)) return std::move(*denied);
  const Authenticated& who = std::get<Authenticated>(auth);
  const std::string id = r.params.at("id");
  if (StatusOr<foundry::FileInfo> file = s.files->Get(who.account.Key(), id);
      file.ok() && foundry::IsInternalPurpose(file->purpose)) {
    return NoSuchFile(id);
  }
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
  // Unwrapping a key not in the cache may mean a round trip to a remote vault: not on the I/O
  // thread, whose other connections would wait.
  StatusOr<std::unique_ptr<foundry::FileReader>> opened = s.files->Open(
      who.account.Key(), id,
      r.on_io_thread ? foundry::FileStore::KeyWait::kNever : foundry::FileStore::KeyWait::kMay);
  if (!opened.ok() && opened.status().reason() == "KeyNotCached") return http::RunOnWorker();
  if (!opened.ok()) {
    AuditFileUse(s, r, who, "FileDownload", id,
                 opened.status().code() == StatusCode::kPermissionDenied ? 403 : 404);
    return FailureResponse(r, opened.status());
  }
  std::shared_ptr<foundry::FileReader> reader = *std::move(opened);
  if (foundry::IsInternalPurpose(reader->info().purpose)) return NoSuchFile(id);
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


// --- fine-tuning

// ?limit=&after= of a list: OpenAI's default page is 20.
std::variant<foundry::Page, Response> ReadPage(const Request& r) {
  foundry::Page page;
  if (auto it = r.query.find("limit"); it != r.query.end()) {
    const std::optional<int64_t> n = ParseInt64(it->second);
    if (!n.has_value() || *n < 1 || *n > static_cast<int64_t>(foundry::kMaxJobListLimit)) {
      return OpenAiError(400, "invalidPayload",
                         "limit must be between 1 and " +
                             std::to_string(foundry::kMaxJobListLimit));
    }
    page.limit = static_cast<size_t>(*n);
  }
  if (auto it = r.query.find("after"); it != r.query.end()) page.after = it->second;
  return page;
}

Response ListJson(Json data, bool has_more) {
  Json out = {{"object", "list"}, {"data", std::move(data)}, {"has_more", has_more}};
  if (!out["data"].empty()) {
    out["first_id"] = out["data"].front()["id"];
    out["last_id"] = out["data"].back()["id"];
  }
  return http::Json(200, out);
}

void AuditJobUse(const Services& s, const Request& r, const Authenticated& who,
                 std::string_view operation, std::string_view job, int status) {
  AuditUse(s, r, who, operation, "/fineTuningJobs/" + std::string(job), status);
}

Response CreateJob(const Services& s, Request& r) {
  auto auth = Authenticate(s, r, "Microsoft.CognitiveServices/accounts/OpenAI/fine-tunes/write");
  if (auto* denied = std::get_if<Response>(&auth)) return std::move(*denied);
  const Authenticated& who = std::get<Authenticated>(auth);
  const Json body = Json::parse(r.body, nullptr, false);
  if (body.is_discarded()) {
    return OpenAiError(400, "invalidPayload", "The body must be a JSON object.");
  }
  StatusOr<foundry::CreateJobRequest> request = foundry::CreateJobRequestFromJson(body);
  if (!request.ok()) return FailureResponse(r, request.status());
  StatusOr<foundry::FineTuningJob> job = s.fine_tuning->Create(who.account.Key(), *request);
  if (!job.ok()) {
    const Response failure = FailureResponse(r, job.status());
    AuditJobUse(s, r, who, "FineTuningJobCreate", "", failure.status);
    return failure;
  }
  AuditJobUse(s, r, who, "FineTuningJobCreate", job->id, 200);
  return http::Json(200, foundry::JobToJson(*job));
}

Response ListJobs(const Services& s, Request& r) {
  auto auth = Authenticate(s, r, "Microsoft.CognitiveServices/accounts/OpenAI/fine-tunes/read");
  if (auto* denied = std::get_if<Response>(&auth)) return std::move(*denied);
  auto page = ReadPage(r);
  if (auto* bad = std::get_if<Response>(&page)) return std::move(*bad);
  bool more = false;
  auto jobs = s.fine_tuning->List(std::get<Authenticated>(auth).account.Key(),
                                  std::get<foundry::Page>(page), &more);
  if (!jobs.ok()) return FailureResponse(r, jobs.status());
  Json data = Json::array();
  for (const auto& job : *jobs) data.push_back(foundry::JobToJson(job));
  return ListJson(std::move(data), more);
}

Response GetJob(const Services& s, Request& r) {
  auto auth = Authenticate(s, r, "Microsoft.CognitiveServices/accounts/OpenAI/fine-tunes/read");
  if (auto* denied = std::get_if<Response>(&auth)) return std::move(*denied);
  auto job = s.fine_tuning->Get(std::get<Authenticated>(auth).account.Key(), r.params.at("job"));
  if (!job.ok()) return FailureResponse(r, job.status());
  return http::Json(200, foundry::JobToJson(*job));
}

Response JobEvents(const Services& s, Request& r) {
  auto auth = Authenticate(s, r, "Microsoft.CognitiveServices/accounts/OpenAI/fine-tunes/read");
  if (auto* denied = std::get_if<Response>(&auth)) return std::move(*denied);
  auto page = ReadPage(r);
  if (auto* bad = std::get_if<Response>(&page)) return std::move(*bad);
  bool more = false;
  auto events = s.fine_tuning->Events(std::get<Authenticated>(auth).account.Key(),
                                      r.params.at("job"), std::get<foundry::Page>(page), &more);
  if (!events.ok()) return FailureResponse(r, events.status());
  Json data = Json::array();
  for (const auto& e : *events) data.push_back(foundry::EventToJson(e));
  return ListJson(std::move(data), more);
}

Response JobCheckpoints(const Services& s, Request& r) {
  auto auth = Authenticate(s, r, "Microsoft.CognitiveServices/accounts/OpenAI/fine-tunes/read");
  if (auto* denied = std::get_if<Response>(&auth)) return std::move(*denied);
  auto page = ReadPage(r);
  if (auto* bad = std::get_if<Response>(&page)) return std::move(*bad);
  bool more = false;
  auto checkpoints =
      s.fine_tuning->Checkpoints(std::get<Authenticated>(auth).account.Key(), r.params.at("job"),
                                 std::get<foundry::Page>(page), &more);
  if (!checkpoints.ok()) return FailureResponse(r, checkpoints.status());
  Json data = Json::array();
  for (const auto& c : *checkpoints) data.push_back(foundry::CheckpointToJson(c));
  return ListJson(std::move(data), more);
}

Response CancelJob(const Services& s, Request& r) {
  auto auth = Authenticate(s, r, "Microsoft.CognitiveServices/accounts/OpenAI/fine-tunes/write");
  if (auto* denied = std::get_if<Response>(&auth)) return std::move(*denied);
  const Authenticated& who = std::get<Authenticated>(auth);
  auto job = s.fine_tuning->Cancel(who.account.Key(), r.params.at("job"));
  const Response out =
      job.ok() ? http::Json(200, foundry::JobToJson(*job)) : FailureResponse(r, job.status());
  AuditJobUse(s, r, who, "FineTuningJobCancel", r.params.at("job"), out.status);
  return out;
}

// --- models

Response ListModels(const Services& s, Request& r) {
  auto auth = Authenticate(s, r, "Microsoft.CognitiveServices/accounts/OpenAI/models/read");
  if (auto* denied = std::get_if<Response>(&auth)) return std::move(*denied);
  auto tuned = s.models->List(std::get<Authenticated>(auth).account.Key());
  if (!tuned.ok()) return FailureResponse(r, tuned.status());
  Json data = Json::array();
  for (const auto& m : foundry::BaseModels()) data.push_back(foundry::BaseModelToJson(m));
  for (const auto& m : *tuned) data.push_back(foundry::FineTunedModelToJson(m));
  return http::Json(200, {{"object", "list"}, {"data", std::move(data)}});
}

Response GetModel(const Services& s, Request& r) {
  auto auth = Authenticate(s, r, "Microsoft.CognitiveServices/accounts/OpenAI/models/read");
  if (auto* denied = std::get_if<Response>(&auth)) return std::move(*denied);
  const std::string id = r.params.at("model");
  if (auto base = foundry::FindBaseModel(id); base.ok()) {
    return http::Json(200, foundry::BaseModelToJson(*base));
  }
  auto tuned = s.models->Get(std::get<Authenticated>(auth).account.Key(), id);
  if (!tuned.ok()) return FailureResponse(r, tuned.status());
  return http::Json(200, foundry::FineTunedModelToJson(*tuned));
}

// --- inference

// A chat or completion request's options, as OpenAI names them. `chat` picks the default
// length: a chat reply runs to its natural end; a plain completion is short, as OpenAI's.
struct Inference {
  std::vector<foundry::ChatMessage> messages;  // chat
  std::string prompt;                          // completion
  foundry::GenerateOptions options;
  bool stream = false;
  bool include_usage = false;
};

std::optional<Response> ReadOptions(const Json& body, bool chat, Inference& out) {
  out.options.max_tokens = chat ? 1024 : 16;
  for (const char* field : {"max_tokens", "max_completion_tokens"}) {
    if (!body.contains(field) || body.at(field).is_null()) continue;
    const Json& v = body.at(field);
    if (!v.is_number_integer() || v.get<int64_t>() < 1 ||
        v.get<int64_t>() > static_cast<int64_t>(foundry::kMaxGenerationTokens)) {
      return OpenAiError(400, "invalid_value",
                         std::string(field) + " must be an integer from 1 to " +
                             std::to_string(foundry::kMaxGenerationTokens) + ".");
    }
    out.options.max_tokens = static_cast<size_t>(v.get<int64_t>());
  }
  if (body.contains("temperature") && !body.at("temperature").is_null()) {
    const Json& v = body.at("temperature");
    if (!v.is_number() || v.get<double>() < 0 || v.get<double>() > foundry::kMaxTemperature) {
      return OpenAiError(400, "invalid_value", "temperature must be a number from 0 to 2.");
    }
    out.options.temperature = v.get<double>();
  }
  if (body.contains("seed") && !body.at("seed").is_null()) {
    if (!body.at("seed").is_number_integer()) {
      return OpenAiError(400, "invalid_value", "seed must be an integer.");
    }
    out.options.seed = static_cast<uint64_t>(body.at("seed").get<int64_t>());
  }
  if (body.contains("n") && !body.at("n").is_null() &&
      (!body.at("n").is_number_integer() || body.at("n").get<int64_t>() != 1)) {
    return OpenAiError(400, "invalid_value", "n must be 1: one choice per request.");
  }
  if (body.contains("stop") && !body.at("stop").is_null()) {
    const Json& stop = body.at("stop");
    std::vector<std::string> stops;
    if (stop.is_string()) {
      stops.push_back(stop.get<std::string>());
    } else if (stop.is_array() && stop.size() <= foundry::kMaxStopStrings &&
               std::all_of(stop.begin(), stop.end(), [](const Json& x) { return x.is_string(); })) {
      for (const Json& x : stop) stops.push_back(x.get<std::string>());
    } else {
      return OpenAiError(400, "invalid_value",
                         "stop must be a string or an array of up to 4 strings.");
    }
    out.options.stop = std::move(stops);
  }
  if (Status valid = foundry::ValidateGenerateOptions(out.options); !valid.ok()) {
    return OpenAiError(400, "invalid_value", valid.message());
  }
  if (body.contains("stream") && !body.at("stream").is_null()) {
    if (!body.at("stream").is_boolean()) {
      return OpenAiError(400, "invalid_value", "stream must be true or false.");
    }
    out.stream = body.at("stream").get<bool>();
  }
  if (body.contains("stream_options") && body.at("stream_options").is_object()) {
    out.include_usage = body.at("stream_options").value("include_usage", false);
  }
  return std::nullopt;
}

std::optional<Response> ReadMessages(const Json& body, Inference& out) {
  if (!body.contains("messages") || !body.at("messages").is_array() ||
      body.at("messages").empty()) {
    return OpenAiError(400, "invalid_value", "messages must be a non-empty array.");
  }
  if (body.at("messages").size() > foundry::kMaxMessagesPerExample) {
    return OpenAiError(400, "invalid_value", "messages holds too many messages.");
  }
  size_t index = 0;
  for (const Json& m : body.at("messages")) {
    const std::string where = "messages[" + std::to_string(index++) + "]";
    if (!m.is_object() || !m.contains("role") || !m.at("role").is_string()) {
      return OpenAiError(400, "invalid_value", where + " needs a 'role'.");
    }
    foundry::ChatMessage message;
    message.role = m.at("role").get<std::string>();
    if (message.role == "developer") message.role = "system";
    if (message.role != "system" && message.role != "user" && message.role != "assistant" &&
        message.role != "tool") {
      return OpenAiError(400, "invalid_value",
                         where + ".role must be system, developer, user, assistant or tool.");
    }
    const Json content = m.value("content", Json());
    if (content.is_string()) {
      message.content = content.get<std::string>();
    } else if (content.is_array()) {
      for (const Json& part : content) {
        if (!part.is_object() || part.value("type", "") != "text" || !part.contains("text") ||
            !part.at("text").is_string()) {
          return OpenAiError(400, "invalid_value",
                             where + ".content: only text parts {type: \"text\", text} are "
                                     "supported.");
        }
        if (!message.content.empty()) message.content += "\n";
        message.content += part.at("text").get<std::string>();
      }
    } else if (!content.is_null() || message.role != "assistant") {
      return OpenAiError(400, "invalid_value", where + ".content must be a string or text parts.");
    }
    if (message.role == "tool") message.role = "user";  // a tool's answer is more input
    out.messages.push_back(std::move(message));
  }
  return std::nullopt;
}

std::string NewId(std::string_view prefix) {
  StatusOr<Bytes> raw = crypto::RandomBytes(12);
  return std::string(prefix) + (raw.ok() ? HexEncode(*raw) : "0");
}

// The body of a stream of server-sent events, sent one chunk per event as they are read.
Response EventStream(std::vector<std::string> events) {
  Response response = http::Text(200, "", "text/event-stream");
  response.headers.emplace_back("Cache-Control", "no-cache");
  response.stream = std::make_shared<http::StreamedBody>();
  response.stream->chunked = true;
  response.stream->read = [events = std::move(events), next = size_t{0}](
                              std::span<uint8_t> out) mutable -> StatusOr<size_t> {
    if (next == events.size()) return size_t{0};
    const std::string& e = events[next++];
    const size_t n = std::min(e.size(), out.size());  // events are far below a buffer
    std::copy_n(e.begin(), n, out.begin());
    return n;
  };
  return response;
}

std::string Sse(const Json& data) { return "data: " + data.dump() + "\n\n"; }

// POST /openai/deployments/{deployment}/chat/completions and .../completions, and the v1 form
// where the body's "model" names the deployment.
Response Infer(const Services& s, Request& r, bool chat) {
  auto auth = Authenticate(s, r,
                           chat ? "Microsoft.CognitiveServices/accounts/OpenAI/deployments/chat/"
                                  "completions/action"
                                : "Microsoft.CognitiveServices/accounts/OpenAI/deployments/"
                                  "completions/action");
  if (auto* denied = std::get_if<Response>(&auth)) return std::move(*denied);
  const Authenticated& who = std::get<Authenticated>(auth);
  const Json body = Json::parse(r.body, nullptr, false);
  if (!body.is_object()) {
    return OpenAiError(400, "invalid_value", "The body must be a JSON object.");
  }
  std::string deployment;
  if (auto it = r.params.find("deployment"); it != r.params.end()) {
    deployment = it->second;
  } else if (body.contains("model") && body.at("model").is_string()) {
    deployment = body.at("model").get<std::string>();
  } else {
    return OpenAiError(400, "invalid_value", "'model' must name a deployment of this account.");
  }
  Inference in;
  if (auto bad = ReadOptions(body, chat, in)) return *bad;
  if (chat) {
    if (auto bad = ReadMessages(body, in)) return *bad;
  } else {
    const Json prompt = body.value("prompt", Json());
    if (prompt.is_string()) {
      in.prompt = prompt.get<std::string>();
    } else if (prompt.is_array() && prompt.size() == 1 && prompt[0].is_string()) {
      in.prompt = prompt[0].get<std::string>();
    } else {
      return OpenAiError(400, "invalid_value", "prompt must be a string (one prompt per request).");
    }
  }
  foundry::Deployment d;
  StatusOr<std::shared_ptr<const foundry::LanguageModel>> model =
      s.deployments->Model(who.account.Key(), deployment, &d);
  if (!model.ok()) {
    if (model.status().code() == StatusCode::kNotFound &&
        model.status().reason() == "DeploymentNotFound") {
      return OpenAiError(404, "DeploymentNotFound",
                         "The API deployment '" + deployment +
                             "' does not exist in this resource: create it first "
                             "(kf cognitiveservices account deployment create).");
    }
    return FailureResponse(r, model.status());
  }
  const std::string id = NewId(chat ? "chatcmpl-" : "cmpl-");
  const int64_t created = UnixSeconds(Clock::Real());
  const std::string object = chat ? "chat.completion" : "text_completion";
  std::vector<std::string> pieces;
  std::function<bool(std::string_view)> collect;
  if (in.stream) {
    collect = [&](std::string_view piece) {
      pieces.emplace_back(piece);
      return true;
    };
  }
  const foundry::Generation g =
      chat ? (*model)->Chat(in.messages, in.options, collect)
           : (*model)->Complete(in.prompt, in.options, collect);
  const Json usage = {{"prompt_tokens", g.prompt_tokens},
                      {"completion_tokens", g.completion_tokens},
                      {"total_tokens", g.prompt_tokens + g.completion_tokens}};
  if (!in.stream) {
    Json choice = {{"index", 0}, {"finish_reason", g.finish_reason}, {"logprobs", nullptr}};
    if (chat) {
      choice["message"] = {{"role", "assistant"}, {"content", g.text}, {"refusal", nullptr}};
    } else {
      choice["text"] = g.text;
    }
    return http::Json(200, {{"id", id},
                            {"object", object},
                            {"created", created},
                            {"model", d.model_id},
                            {"system_fingerprint", "fp_keyfoundry"},
                            {"choices", Json::array({choice})},
                            {"usage", usage}});
  }
  const std::string chunk_object = chat ? "chat.completion.chunk" : "text_completion";
  auto chunk = [&](Json choices) {
    return Json{{"id", id},
                {"object", chunk_object},
                {"created", created},
                {"model", d.model_id},
                {"system_fingerprint", "fp_keyfoundry"},
                {"choices", std::move(choices)}};
  };
  std::vector<std::string> events;
  if (chat) {
    events.push_back(Sse(chunk(Json::array({{{"index", 0},
                                              {"delta", {{"role", "assistant"}, {"content", ""}}},
                                              {"finish_reason", nullptr},
                                              {"logprobs", nullptr}}}))));
  }
  for (const std::string& piece : pieces) {
    Json choice = {{"index", 0}, {"finish_reason", nullptr}, {"logprobs", nullptr}};
    if (chat) {
      choice["delta"] = {{"content", piece}};
    } else {
      choice["text"] = piece;
    }
    events.push_back(Sse(chunk(Json::array({choice}))));
  }
  Json last = {{"index", 0}, {"finish_reason", g.finish_reason}, {"logprobs", nullptr}};
  if (chat) {
    last["delta"] = Json::object();
  } else {
    last["text"] = "";
  }
  events.push_back(Sse(chunk(Json::array({last}))));
  if (in.include_usage) {
    Json tail = chunk(Json::array());
    tail["usage"] = usage;
    events.push_back(Sse(tail));
  }
  events.push_back("data: [DONE]\n\n");
  return EventStream(std::move(events));
}

}  // namespace

void AddOpenAiRoutes(http::Router& router, std::shared_ptr<Services> services) {
  const auto& s = services;
  // Each account's data plane is at its own host and, for clients that cannot resolve such
  // names, under /accounts/{account} on the server's own address.
  const std::string account_host = "{account}.openai." + s->config.domain;
  for (const auto& [host, base] :
       {std::pair<std::string, std::string>{account_host, ""}, {"*", "/accounts/{account}"}}) {
    for (const std::string& prefix : {base + "/openai", base + "/openai/v1"}) {
      // Metrics labels stay those of the host form: one label per route, whatever the form.
      const std::string label = prefix.substr(base.size());
      router.AddStreaming(
          "POST", host, prefix + "/files", [s](Request& r) { return UploadFile(*s, r); },
          {.max_body_bytes = kMaxUploadBytes, .metrics_name = label + "/files (upload)"});
      router.Add("GET", host, prefix + "/files", [s](Request& r) { return ListFiles(*s, r); },
                 {.metrics_name = label + "/files"});
      // Reads of one file run inline (http::RouteOptions::runs_inline): metadata reads and a
      // queued audit record; a download whose key is not cached goes to a worker
      // (RunOnWorker).
      router.Add("GET", host, prefix + "/files/{id}", [s](Request& r) { return GetFile(*s, r); },
                 {.metrics_name = label + "/files/{id}", .runs_inline = true});
      router.Add("DELETE", host, prefix + "/files/{id}",
                 [s](Request& r) { return DeleteFile(*s, r); },
                 {.metrics_name = label + "/files/{id}"});
      router.Add("GET", host, prefix + "/files/{id}/content",
                 [s](Request& r) { return DownloadFile(*s, r); },
                 {.metrics_name = label + "/files/{id}/content", .runs_inline = true});

      const std::string jobs = prefix + "/fine_tuning/jobs";
      router.Add("POST", host, jobs, [s](Request& r) { return CreateJob(*s, r); },
                 {.metrics_name = label + "/fine_tuning/jobs"});
      router.Add("GET", host, jobs, [s](Request& r) { return ListJobs(*s, r); },
                 {.metrics_name = label + "/fine_tuning/jobs"});
      router.Add("GET", host, jobs + "/{job}", [s](Request& r) { return GetJob(*s, r); },
                 {.metrics_name = label + "/fine_tuning/jobs/{job}"});
      router.Add("GET", host, jobs + "/{job}/events", [s](Request& r) { return JobEvents(*s, r); },
                 {.metrics_name = label + "/fine_tuning/jobs/{job}/events"});
      router.Add("GET", host, jobs + "/{job}/checkpoints",
                 [s](Request& r) { return JobCheckpoints(*s, r); },
                 {.metrics_name = label + "/fine_tuning/jobs/{job}/checkpoints"});
      router.Add("POST", host, jobs + "/{job}/cancel", [s](Request& r) { return CancelJob(*s, r); },
                 {.metrics_name = label + "/fine_tuning/jobs/{job}/cancel"});

      router.Add("GET", host, prefix + "/models", [s](Request& r) { return ListModels(*s, r); },
                 {.metrics_name = label + "/models"});
      router.Add("GET", host, prefix + "/models/{model}",
                 [s](Request& r) { return GetModel(*s, r); },
                 {.metrics_name = label + "/models/{model}"});

      router.Add("POST", host, prefix + "/deployments/{deployment}/chat/completions",
                 [s](Request& r) { return Infer(*s, r, true); },
                 {.metrics_name = label + "/deployments/{deployment}/chat/completions"});
      router.Add("POST", host, prefix + "/deployments/{deployment}/completions",
                 [s](Request& r) { return Infer(*s, r, false); },
                 {.metrics_name = label + "/deployments/{deployment}/completions"});
      router.Add("POST", host, prefix + "/chat/completions",
                 [s](Request& r) { return Infer(*s, r, true); },
                 {.metrics_name = label + "/chat/completions"});
      router.Add("POST", host, prefix + "/completions",
                 [s](Request& r) { return Infer(*s, r, false); },
                 {.metrics_name = label + "/completions"});
    }
  }
}

}  // namespace keyfoundry::server
