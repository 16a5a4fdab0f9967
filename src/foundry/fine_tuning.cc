#include "foundry/fine_tuning.h"

#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <random>

#include "common/bytes.h"
#include "common/encoding.h"
#include "common/logging.h"
#include "crypto/random.h"
#include "foundry/language_model.h"
#include "storage/scan.h"

namespace keyfoundry::foundry {
namespace {

using storage::Record;
using storage::Transaction;
using Json = nlohmann::json;

constexpr std::string_view kJobs = "ft_jobs";
constexpr std::string_view kEvents = "ft_events";
constexpr std::string_view kCheckpoints = "ft_checkpoints";
constexpr int kRecordVersion = 1;
constexpr size_t kMaxReportedLines = 10;  // bad lines named in a failed job's error
constexpr size_t kReadPiece = size_t{1} << 20;
constexpr int kStepEvents = 50;  // about this many metrics events per job
constexpr int kAutoEpochs = 3;
// The base corpus weighs this much against 1 for each example of the customer's data (times
// the learning-rate multiplier), so a fine-tuned model answers from its data first.
constexpr double kBaseWeight = 0.25;
constexpr size_t kMaxValidationExamples = 2000;  // validation loss over at most this many
// The reason of the status a run's record update gets once the job has finished meanwhile.
constexpr std::string_view kJobFinished = "JobFinished";

std::string Prefix(std::string_view account) { return std::string(account) + "/"; }
std::string JobKey(std::string_view account, std::string_view id) {
  return Prefix(account) + std::string(id);
}
std::string Hex16(uint64_t v) {
  char out[17];
  std::snprintf(out, sizeof out, "%016" PRIx64, v);
  return out;
}
std::optional<uint64_t> ParseHex16(std::string_view text) {
  if (text.size() != 16) return std::nullopt;
  uint64_t v = 0;
  for (char c : text) {
    int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
    if (d < 0) return std::nullopt;
    v = v << 4 | static_cast<uint64_t>(d);
  }
  return v;
}
std::string RandomHex(size_t bytes) {
  StatusOr<Bytes> raw = crypto::RandomBytes(bytes);
  // The OS's random source does not fail on Linux once the process runs; if it ever did, an
  // id would still be unique by its time part, which every id here also carries.
  return raw.ok() ? HexEncode(*raw) : std::string(bytes * 2, '0');
}

// --- records

Json HyperparametersJson(const Hyperparameters& h) {
  return {{"n_epochs", h.n_epochs > 0 ? Json(h.n_epochs) : Json("auto")},
          {"batch_size", h.batch_size > 0 ? Json(h.batch_size) : Json("auto")},
          {"learning_rate_multiplier",
           h.learning_rate_multiplier > 0 ? Json(h.learning_rate_multiplier) : Json("auto")}};
}

Json EncodeJob(const FineTuningJob& j) {
  Json out = {{"v", kRecordVersion},
              {"id", j.id},
              {"model", j.model},
              {"training_file", j.training_file},
              {"validation_file", j.validation_file},
              {"n_epochs", j.hyperparameters.n_epochs},
              {"batch_size", j.hyperparameters.batch_size},
              {"lrm", j.hyperparameters.learning_rate_multiplier},
              {"suffix", j.suffix},
              {"seed", j.seed},
              {"status", static_cast<int>(j.status)},
              {"created_at", j.created_at},
              {"finished_at", j.finished_at},
              {"fine_tuned_model", j.fine_tuned_model},
              {"result_files", j.result_files},
              {"trained_tokens", j.trained_tokens},
              {"total_steps", j.total_steps},
              {"step", j.step}};
  if (j.error.has_value()) {
    out["error"] = {{"code", j.error->code}, {"message", j.error->message}, {"param", j.error->param}};
  }
  return out;
}

StatusOr<FineTuningJob> DecodeJob(const Record& record) {
  const Json j = Json::parse(AsStringView(record.value), nullptr, false);
  if (!j.is_object() || j.value("v", 0) != kRecordVersion) {
    return DataLossError("a fine-tuning job record is malformed");
  }
  try {
    FineTuningJob out;
    out.id = j.at("id").get<std::string>();
    out.model = j.at("model").get<std::string>();
    out.training_file = j.at("training_file").get<std::string>();
    out.validation_file = j.at("validation_file").get<std::string>();
    out.hyperparameters.n_epochs = j.at("n_epochs").get<int>();
    out.hyperparameters.batch_size = j.at("batch_size").get<int>();
    out.hyperparameters.learning_rate_multiplier = j.at("lrm").get<double>();
    out.suffix = j.at("suffix").get<std::string>();
    out.seed = j.at("seed").get<int64_t>();
    const int status = j.at("status").get<int>();
    if (status < 1 || status > 6) return DataLossError("a fine-tuning job record is malformed");
    out.status = static_cast<JobStatus>(status);
    out.created_at = j.at("created_at").get<int64_t>();
    out.finished_at = j.at("finished_at").get<int64_t>();
    out.fine_tuned_model = j.at("fine_tuned_model").get<std::string>();
    out.result_files = j.at("result_files").get<std::vector<std::string>>();
    out.trained_tokens = j.at("trained_tokens").get<int64_t>();
    out.total_steps = j.at("total_steps").get<int64_t>();
    out.step = j.at("step").get<int64_t>();
    if (j.contains("error")) {
      const Json& e = j.at("error");
      out.error = JobError{e.at("code").get<std::string>(), e.at("message").get<std::string>(),
                           e.at("param").get<std::string>()};
    }
    return out;
  } catch (const Json::exception&) {
    return DataLossError("a fine-tuning job record is malformed");
  }
}

Json EncodeEvent(const JobEvent& e) {
  return {{"v", kRecordVersion}, {"id", e.id},     {"created_at", e.created_at},
          {"level", e.level},    {"message", e.message}, {"type", e.type},
          {"data", e.data}};
}
StatusOr<JobEvent> DecodeEvent(const Record& record) {
  const Json j = Json::parse(AsStringView(record.value), nullptr, false);
  if (!j.is_object() || j.value("v", 0) != kRecordVersion) {
    return DataLossError("a fine-tuning event record is malformed");
  }
  try {
    return JobEvent{j.at("id").get<std::string>(),      j.at("created_at").get<int64_t>(),
                    j.at("level").get<std::string>(),   j.at("message").get<std::string>(),
                    j.at("type").get<std::string>(),    j.at("data")};
  } catch (const Json::exception&) {
    return DataLossError("a fine-tuning event record is malformed");
  }
}

Json EncodeCheckpoint(const JobCheckpoint& c) {
  return {{"v", kRecordVersion}, {"id", c.id},     {"created_at", c.created_at},
          {"model", c.model},    {"step", c.step}, {"metrics", c.metrics},
          {"job", c.job}};
}
StatusOr<JobCheckpoint> DecodeCheckpoint(const Record& record) {
  const Json j = Json::parse(AsStringView(record.value), nullptr, false);
  if (!j.is_object() || j.value("v", 0) != kRecordVersion) {
    return DataLossError("a fine-tuning checkpoint record is malformed");
  }
  try {
    return JobCheckpoint{j.at("id").get<std::string>(),    j.at("created_at").get<int64_t>(),
                         j.at("model").get<std::string>(), j.at("step").get<int64_t>(),
                         j.at("metrics"),                  j.at("job").get<std::string>()};
  } catch (const Json::exception&) {
    return DataLossError("a fine-tuning checkpoint record is malformed");
  }
}

// Reads a page of `table` under `prefix`, newest first by key, after the entry whose key ends
// in `after_suffix` (empty: from the start).
StatusOr<std::vector<Record>> ReadPage(storage::MetadataStore& store, std::string_view table,
                                       const std::string& prefix, const std::string& after_suffix,
                                       size_t limit, bool* has_more) {
  std::vector<Record> out;
  RETURN_IF_ERROR(store.Read([&](Transaction& txn) -> Status {
    ASSIGN_OR_RETURN(out, txn.Scan(table, prefix, after_suffix.empty() ? "" : prefix + after_suffix,
                                   limit + 1));
    return OkStatus();
  }));
  *has_more = out.size() > limit;
  if (*has_more) out.resize(limit);
  return out;
}

Status CheckLimit(const Page& page) {
  if (page.limit < 1 || page.limit > kMaxJobListLimit) {
    return InvalidArgumentError("limit must be between 1 and " + std::to_string(kMaxJobListLimit))
        .WithReason("invalidPayload");
  }
  return OkStatus();
}

Status BadRequest(std::string message) {
  return InvalidArgumentError(std::move(message)).WithReason("invalidPayload");
}

// "auto" or a number in [lo, hi] (an integer when `integer`); 0 stands for "auto".
StatusOr<double> AutoOrNumber(const Json& body, std::string_view name, double lo, double hi,
                              bool integer) {
  if (!body.contains(name)) return 0.0;
  const Json& v = body.at(name);
  if (v.is_string() && v.get<std::string>() == "auto") return 0.0;
  if (!v.is_number() || (integer && !v.is_number_integer())) {
    return BadRequest("hyperparameters." + std::string(name) + " must be \"auto\" or " +
                      (integer ? "an integer" : "a number"));
  }
  const double d = v.get<double>();
  if (!(d >= lo && d <= hi)) {
    const auto bound = [integer](double x) {
      return integer ? std::to_string(static_cast<int64_t>(x)) : Json(x).dump();
    };
    return BadRequest("hyperparameters." + std::string(name) + " must be between " + bound(lo) +
                      " and " + bound(hi));
  }
  return d;
}

bool ValidSuffix(std::string_view suffix) {
  if (suffix.size() > kMaxSuffixSize) return false;
  return std::all_of(suffix.begin(), suffix.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '_';
  });
}

std::string FormatLoss(double loss) {
  char out[32];
  std::snprintf(out, sizeof out, "%.4f", loss);
  return out;
}

}  // namespace

std::string_view JobStatusName(JobStatus status) {
  switch (status) {
    case JobStatus::kValidatingFiles:
      return "validating_files";
    case JobStatus::kQueued:
      return "queued";
    case JobStatus::kRunning:
      return "running";
    case JobStatus::kSucceeded:
      return "succeeded";
    case JobStatus::kFailed:
      return "failed";
    case JobStatus::kCancelled:
      return "cancelled";
  }
  return "failed";
}

bool IsFinished(JobStatus status) {
  return status == JobStatus::kSucceeded || status == JobStatus::kFailed ||
         status == JobStatus::kCancelled;
}

Json JobToJson(const FineTuningJob& j) {
  const Json hyper = HyperparametersJson(j.hyperparameters);
  Json error = nullptr;
  if (j.error.has_value()) {
    error = {{"code", j.error->code},
             {"message", j.error->message},
             {"param", j.error->param.empty() ? Json() : Json(j.error->param)}};
  }
  return {{"object", "fine_tuning.job"},
          {"id", j.id},
          {"model", j.model},
          {"created_at", j.created_at},
          {"finished_at", j.finished_at > 0 ? Json(j.finished_at) : Json()},
          {"fine_tuned_model", j.fine_tuned_model.empty() ? Json() : Json(j.fine_tuned_model)},
          {"organization_id", "org-keyfoundry"},
          {"result_files", j.result_files},
          {"status", JobStatusName(j.status)},
          {"training_file", j.training_file},
          {"validation_file", j.validation_file.empty() ? Json() : Json(j.validation_file)},
          {"hyperparameters", hyper},
          {"method", {{"type", "supervised"}, {"supervised", {{"hyperparameters", hyper}}}}},
          {"trained_tokens", j.trained_tokens >= 0 ? Json(j.trained_tokens) : Json()},
          {"error", error},
          {"user_provided_suffix", j.suffix.empty() ? Json() : Json(j.suffix)},
          {"seed", j.seed},
          {"estimated_finish", nullptr},
          {"integrations", nullptr},
          {"metadata", nullptr}};
}

Json EventToJson(const JobEvent& e) {
  return {{"object", "fine_tuning.job.event"},
          {"id", e.id},
          {"created_at", e.created_at},
          {"level", e.level},
          {"message", e.message},
          {"type", e.type},
          {"data", e.data.is_null() ? Json::object() : e.data}};
}

Json CheckpointToJson(const JobCheckpoint& c) {
  return {{"object", "fine_tuning.job.checkpoint"},
          {"id", c.id},
          {"created_at", c.created_at},
          {"fine_tuned_model_checkpoint", c.model},
          {"step_number", c.step},
          {"metrics", c.metrics},
          {"fine_tuning_job_id", c.job}};
}

StatusOr<CreateJobRequest> CreateJobRequestFromJson(const Json& body) {
  if (!body.is_object()) return BadRequest("The body must be a JSON object.");
  CreateJobRequest out;
  auto string_field = [&](std::string_view name, bool required,
                          std::string* to) -> Status {
    if (!body.contains(name) || body.at(name).is_null()) {
      if (required) return BadRequest("'" + std::string(name) + "' is required.");
      return OkStatus();
    }
    if (!body.at(name).is_string() || body.at(name).get<std::string>().empty()) {
      return BadRequest("'" + std::string(name) + "' must be a non-empty string.");
    }
    *to = body.at(name).get<std::string>();
    if (to->size() > 256) return BadRequest("'" + std::string(name) + "' is too long.");
    return OkStatus();
  };
  RETURN_IF_ERROR(string_field("model", true, &out.model));
  RETURN_IF_ERROR(string_field("training_file", true, &out.training_file));
  RETURN_IF_ERROR(string_field("validation_file", false, &out.validation_file));
  RETURN_IF_ERROR(string_field("suffix", false, &out.suffix));
  if (!ValidSuffix(out.suffix)) {
    return BadRequest("'suffix' may hold up to 40 letters, digits, '-' and '_'.");
  }
  if (body.contains("seed") && !body.at("seed").is_null()) {
    if (!body.at("seed").is_number_integer() || body.at("seed").get<int64_t>() < 0 ||
        body.at("seed").get<int64_t>() > INT32_MAX) {
      return BadRequest("'seed' must be an integer between 0 and 2147483647.");
    }
    out.seed = body.at("seed").get<int64_t>();
  }
  Json hyper = body.value("hyperparameters", Json::object());
  if (body.contains("method") && body.at("method").is_object()) {
    const Json& method = body.at("method");
    const std::string type = method.value("type", "supervised");
    if (type != "supervised") {
      return BadRequest("method.type '" + type + "' is not supported: use \"supervised\".");
    }
    if (method.contains("supervised") && method.at("supervised").is_object()) {
      hyper = method.at("supervised").value("hyperparameters", hyper);
    }
  }
  if (hyper.is_null()) hyper = Json::object();
  if (!hyper.is_object()) return BadRequest("'hyperparameters' must be an object.");
  ASSIGN_OR_RETURN(double epochs, AutoOrNumber(hyper, "n_epochs", 1, kMaxEpochs, true));
  ASSIGN_OR_RETURN(double batch, AutoOrNumber(hyper, "batch_size", 1, kMaxBatchSize, true));
  ASSIGN_OR_RETURN(double lrm, AutoOrNumber(hyper, "learning_rate_multiplier", 0.01, 10, false));
  out.hyperparameters = {static_cast<int>(epochs), static_cast<int>(batch), lrm};
  return out;
}

// --- the service

FineTuning::FineTuning(storage::MetadataStore& store, FileStore& files,
                       encryption::AccountKeys& keys, ModelCatalog& models, const Clock& clock,
                       FineTuningOptions options)
    : store_(store),
      files_(files),
      keys_(keys),
      models_(models),
      clock_(clock),
      options_(options) {}

FineTuning::~FineTuning() { Stop(); }

Status FineTuning::Start() {
  // Unfinished jobs of a previous run start again from the beginning.
  std::vector<std::pair<std::string, FineTuningJob>> unfinished;
  RETURN_IF_ERROR(store_.Read([&](Transaction& txn) -> Status {
    unfinished.clear();
    return storage::ScanAll(txn, kJobs, "", [&](const Record& r) -> Status {
      ASSIGN_OR_RETURN(FineTuningJob job, DecodeJob(r));
      if (!IsFinished(job.status)) unfinished.emplace_back(r.key.substr(0, r.key.rfind('/')), job);
      return OkStatus();
    });
  }));
  for (auto& entry : unfinished) {
    const std::string& account = entry.first;
    const FineTuningJob& job = entry.second;
    std::vector<std::string> weights;
    RETURN_IF_ERROR(store_.Write([&](Transaction& txn) -> Status {
      ASSIGN_OR_RETURN(weights, ModelCatalog::UnregisterJob(txn, account, job.id));
      ASSIGN_OR_RETURN(std::vector<std::string> keys,
                       storage::ScanKeys(txn, kCheckpoints, JobKey(account, job.id) + "/"));
      for (const std::string& key : keys) RETURN_IF_ERROR(txn.Delete(kCheckpoints, key));
      return OkStatus();
    }));
    for (const std::string& file : weights) {
      Status deleted = files_.Delete(account, file);
      if (!deleted.ok() && deleted.code() != StatusCode::kNotFound) return deleted;
    }
    RETURN_IF_ERROR(UpdateJob(account, job.id, [](FineTuningJob& j) {
                      j.status = JobStatus::kValidatingFiles;
                      j.step = 0;
                      j.total_steps = 0;
                      return OkStatus();
                    }).status());
    RETURN_IF_ERROR(AddEvent(account, job.id, "warn",
                             "keyfoundryd restarted while this job was unfinished: it starts "
                             "again from the beginning"));
    RETURN_IF_ERROR(Enqueue({account, job.id}));
  }
  queue_.Start(std::clamp(options_.workers, 1, 16), [this](const Work& work) {
    Execute(work);
    std::lock_guard lock(mu_);
    cancelled_.erase(work.account + "/" + work.job);
  });
  if (!unfinished.empty()) {
    Log(LogLevel::kInfo, "fine_tuning.resumed", {{"jobs", std::to_string(unfinished.size())}});
  }
  return OkStatus();
}

void FineTuning::Stop() { queue_.Stop(); }

Status FineTuning::Enqueue(Work work) {
  queue_.Push(std::move(work));
  return OkStatus();
}

void FineTuning::WaitIdle() { queue_.WaitIdle(); }

bool FineTuning::ShouldStop(const Work& work) {
  if (queue_.stopping()) return true;
  std::lock_guard lock(mu_);
  return cancelled_.count(work.account + "/" + work.job) > 0;
}

StatusOr<FineTuningJob> FineTuning::UpdateJob(
    std::string_view account, std::string_view id,
    const std::function<Status(FineTuningJob&)>& change) {
  FineTuningJob job;
  RETURN_IF_ERROR(store_.Write([&](Transaction& txn) -> Status {
    ASSIGN_OR_RETURN(std::optional<Record> record, txn.Get(kJobs, JobKey(account, id)));
    if (!record.has_value()) {
      return NotFoundError("No fine-tuning job '" + std::string(id) + "' in this account.")
          .WithReason("NotFound");
    }
    ASSIGN_OR_RETURN(job, DecodeJob(*record));
    RETURN_IF_ERROR(change(job));
    return txn.Put(kJobs, record->key, AsBytes(EncodeJob(job).dump()));
  }));
  return job;
}

Status FineTuning::AddEvent(std::string_view account, std::string_view job,
                            std::string_view level, std::string message, std::string_view type,
                            Json data) {
  const std::string prefix = JobKey(account, job) + "/";
  return store_.Write([&](Transaction& txn) -> Status {
    // The newest event comes first in key order; the next one's number follows it.
    ASSIGN_OR_RETURN(std::vector<Record> newest, txn.Scan(kEvents, prefix, "", 1));
    uint64_t seq = 0;
    if (!newest.empty()) {
      std::optional<uint64_t> inverted = ParseHex16(std::string_view(newest[0].key).substr(prefix.size()));
      if (!inverted.has_value()) return DataLossError("a fine-tuning event key is malformed");
      seq = UINT64_MAX - *inverted + 1;
    }
    const std::string suffix = Hex16(UINT64_MAX - seq);
    JobEvent event{"ftevent-" + suffix + RandomHex(4), UnixSeconds(clock_), std::string(level),
                   std::move(message), std::string(type), std::move(data)};
    return txn.Insert(kEvents, prefix + suffix, AsBytes(EncodeEvent(event).dump()));
  });
}

StatusOr<FineTuningJob> FineTuning::Create(std::string_view account,
                                           const CreateJobRequest& request) {
  StatusOr<BaseModel> base = FindBaseModel(request.model);
  if (!base.ok()) {
    if (models_.Get(account, request.model).ok()) {
      return BadRequest("Fine-tuning a fine-tuned model is not supported: fine-tune its base "
                        "model again with the combined training data.");
    }
    std::string names;
    for (const BaseModel& m : BaseModels()) names += (names.empty() ? "" : ", ") + m.id;
    return BadRequest("The model '" + request.model +
                      "' cannot be fine-tuned here: choose one of " + names + ".");
  }
  // The files: present, of purpose fine-tune, within the size limit, and readable now (which
  // unwraps their generations' keys: a revoked key refuses the job here).
  for (const auto& [param, id] : {std::pair<std::string_view, const std::string&>{
                                      "training_file", request.training_file},
                                  {"validation_file", request.validation_file}}) {
    if (id.empty()) continue;
    StatusOr<FileInfo> file = files_.Get(account, id);
    if (!file.ok() || IsInternalPurpose(file->purpose)) {
      if (!file.ok() && file.status().code() != StatusCode::kNotFound) return file.status();
      return BadRequest("invalid " + std::string(param) + ": no file '" + id +
                        "' in this account. Upload it with purpose fine-tune first.");
    }
    if (file->purpose != "fine-tune") {
      return BadRequest("invalid " + std::string(param) + ": '" + id + "' has purpose '" +
                        file->purpose + "'; training data needs purpose fine-tune.");
    }
    if (file->bytes > kMaxTrainingFileBytes) {
      return BadRequest("invalid " + std::string(param) + ": '" + id + "' is larger than " +
                        std::to_string(kMaxTrainingFileBytes >> 20) + " MiB.");
    }
    RETURN_IF_ERROR(keys_.Get(account, file->generation).status());
  }
  RETURN_IF_ERROR(keys_.Active(account).status());

  FineTuningJob job;
  const int64_t now_ms = UnixMillis(clock_);
  job.id = "ftjob-" + Hex16(UINT64_MAX - static_cast<uint64_t>(now_ms)) + RandomHex(8);
  job.model = base->id;
  job.training_file = request.training_file;
  job.validation_file = request.validation_file;
  job.hyperparameters = request.hyperparameters;
  job.suffix = request.suffix;
  if (request.seed.has_value()) {
    job.seed = *request.seed;
  } else {
    ASSIGN_OR_RETURN(Bytes raw, crypto::RandomBytes(4));
    job.seed = static_cast<int64_t>((uint32_t{raw[0]} << 24 | uint32_t{raw[1]} << 16 |
                                     uint32_t{raw[2]} << 8 | raw[3]) &
                                    INT32_MAX);
  }
  job.status = JobStatus::kValidatingFiles;
  job.created_at = now_ms / 1000;
  RETURN_IF_ERROR(store_.Write([&](Transaction& txn) {
    return txn.Insert(kJobs, JobKey(account, job.id), AsBytes(EncodeJob(job).dump()));
  }));
  RETURN_IF_ERROR(AddEvent(account, job.id, "info", "Created fine-tuning job: " + job.id));
  RETURN_IF_ERROR(Enqueue({std::string(account), job.id}));
  Log(LogLevel::kInfo, "fine_tuning.created",
      {{"job", job.id}, {"model", job.model}, {"training_file", job.training_file}});
  return job;
}

StatusOr<FineTuningJob> FineTuning::Get(std::string_view account, std::string_view id) const {
  std::optional<Record> record;
  RETURN_IF_ERROR(store_.Read([&](Transaction& txn) -> Status {
    ASSIGN_OR_RETURN(record, txn.Get(kJobs, JobKey(account, id)));
    return OkStatus();
  }));
  if (!record.has_value()) {
    return NotFoundError("No fine-tuning job '" + std::string(id) + "' in this account.")
        .WithReason("NotFound");
  }
  return DecodeJob(*record);
}

StatusOr<std::vector<FineTuningJob>> FineTuning::List(std::string_view account, const Page& page,
                                                      bool* has_more) const {
  RETURN_IF_ERROR(CheckLimit(page));
  ASSIGN_OR_RETURN(std::vector<Record> records,
                   ReadPage(store_, kJobs, Prefix(account), page.after, page.limit, has_more));
  std::vector<FineTuningJob> out;
  for (const Record& r : records) {
    ASSIGN_OR_RETURN(FineTuningJob job, DecodeJob(r));
    out.push_back(std::move(job));
  }
  return out;
}

StatusOr<std::vector<JobEvent>> FineTuning::Events(std::string_view account, std::string_view id,
                                                   const Page& page, bool* has_more) const {
  RETURN_IF_ERROR(CheckLimit(page));
  RETURN_IF_ERROR(Get(account, id).status());
  std::string after;
  if (!page.after.empty()) {
    // An event id is "ftevent-" + its key suffix + 8 random hex digits.
    if (page.after.size() != 32 || !page.after.starts_with("ftevent-")) {
      return BadRequest("'after' must be an event id of this job.");
    }
    after = page.after.substr(8, 16);
  }
  ASSIGN_OR_RETURN(std::vector<Record> records,
                   ReadPage(store_, kEvents, JobKey(account, id) + "/", after, page.limit, has_more));
  std::vector<JobEvent> out;
  for (const Record& r : records) {
    ASSIGN_OR_RETURN(JobEvent e, DecodeEvent(r));
    out.push_back(std::move(e));
  }
  return out;
}

StatusOr<std::vector<JobCheckpoint>> FineTuning::Checkpoints(std::string_view account,
                                                             std::string_view id,
                                                             const Page& page,
                                                             bool* has_more) const {
  RETURN_IF_ERROR(CheckLimit(page));
  RETURN_IF_ERROR(Get(account, id).status());
  std::string after;
  if (!page.after.empty()) {
    if (page.after.size() != 31 || !page.after.starts_with("ftckpt-")) {
      return BadRequest("'after' must be a checkpoint id of this job.");
    }
    after = page.after.substr(7, 16);
  }
  ASSIGN_OR_RETURN(std::vector<Record> records,
                   ReadPage(store_, kCheckpoints, JobKey(account, id) + "/", after, page.limit,
                            has_more));
  std::vector<JobCheckpoint> out;
  for (const Record& r : records) {
    ASSIGN_OR_RETURN(JobCheckpoint c, DecodeCheckpoint(r));
    out.push_back(std::move(c));
  }
  return out;
}

StatusOr<FineTuningJob> FineTuning::Cancel(std::string_view account, std::string_view id) {
  {
    std::lock_guard lock(mu_);
    cancelled_.insert(std::string(account) + "/" + std::string(id));
  }
  bool was_finished = false;
  ASSIGN_OR_RETURN(FineTuningJob job, UpdateJob(account, id, [&](FineTuningJob& j) {
                     if (IsFinished(j.status)) {
                       was_finished = true;
                       return OkStatus();
                     }
                     j.status = JobStatus::kCancelled;
                     j.finished_at = UnixSeconds(clock_);
                     return OkStatus();
                   }));
  if (was_finished) {
    std::lock_guard lock(mu_);
    cancelled_.erase(std::string(account) + "/" + std::string(id));
    return FailedPreconditionError("The job is already " + std::string(JobStatusName(job.status)) +
                                   " and cannot be cancelled.")
        .WithReason("invalidPayload");
  }
  RETURN_IF_ERROR(AddEvent(account, id, "info", "Fine-tuning job cancelled"));
  return job;
}

Status FineTuning::DeleteAccount(std::string_view account) {
  std::vector<std::string> jobs;
  RETURN_IF_ERROR(store_.Read([&](Transaction& txn) -> Status {
    ASSIGN_OR_RETURN(jobs, storage::ScanKeys(txn, kJobs, Prefix(account)));
    for (std::string& job : jobs) job.erase(0, Prefix(account).size());
    return OkStatus();
  }));
  {
    std::lock_guard lock(mu_);
    for (const std::string& job : jobs) cancelled_.insert(std::string(account) + "/" + job);
  }
  for (const std::string& job : jobs) {
    RETURN_IF_ERROR(store_.Write([&](Transaction& txn) -> Status {
      for (std::string_view table : {kEvents, kCheckpoints}) {
        ASSIGN_OR_RETURN(std::vector<std::string> keys,
                         storage::ScanKeys(txn, table, JobKey(account, job) + "/"));
        for (const std::string& key : keys) RETURN_IF_ERROR(txn.Delete(table, key));
      }
      Status deleted = txn.Delete(kJobs, JobKey(account, job));
      return deleted.code() == StatusCode::kNotFound ? OkStatus() : deleted;
    }));
  }
  return OkStatus();
}

// --- running a job

// One job's run: read its files, train epoch by epoch, seal checkpoints, finish.
class FineTuning::Run {
 public:
  Run(FineTuning& service, const Work& work, FineTuningJob job)
      : s_(service), work_(work), job_(std::move(job)) {}

  // OK when the job reached a final state (or was cancelled); Aborted when the service stops
  // (the job stays unfinished and starts again at the next start); other statuses fail it.
  Status Execute() {
    RETURN_IF_ERROR(Event("info", "Validating training file: " + job_.training_file));
    std::vector<TrainingExample> training;
    std::vector<TrainingExample> validation;
    RETURN_IF_ERROR(ReadExamples(job_.training_file, "training_file", &training));
    if (!job_.validation_file.empty()) {
      RETURN_IF_ERROR(Event("info", "Validating validation file: " + job_.validation_file));
      RETURN_IF_ERROR(ReadExamples(job_.validation_file, "validation_file", &validation));
    }
    if (failed_) return OkStatus();

    Hyperparameters h = job_.hyperparameters;
    if (h.n_epochs == 0) h.n_epochs = kAutoEpochs;
    if (h.batch_size == 0) {
      h.batch_size = static_cast<int>(std::clamp<size_t>(training.size() / 500, 1, kMaxBatchSize));
    }
    if (h.learning_rate_multiplier == 0) h.learning_rate_multiplier = 1.0;
    const int64_t steps_per_epoch =
        (static_cast<int64_t>(training.size()) + h.batch_size - 1) / h.batch_size;
    const int64_t total = steps_per_epoch * h.n_epochs;
    RETURN_IF_ERROR(Update([&](FineTuningJob& j) {
      j.hyperparameters = h;
      j.total_steps = total;
      j.status = JobStatus::kQueued;
      return OkStatus();
    }));
    RETURN_IF_ERROR(Event("info", "Files validated, moving job to queued state"));
    RETURN_IF_ERROR(Update([&](FineTuningJob& j) {
      j.status = JobStatus::kRunning;
      return OkStatus();
    }));
    RETURN_IF_ERROR(Event("info", "Fine-tuning job started"));

    ModelBuilder builder;
    RETURN_IF_ERROR(AddBaseCorpus(builder));
    const uint64_t base_tokens = builder.tokens();
    std::mt19937_64 rng(static_cast<uint64_t>(job_.seed));
    std::vector<size_t> order(training.size());
    std::iota(order.begin(), order.end(), 0);
    const std::string model_id = job_.model + ".ft-" + job_.id.substr(6) +
                                 (job_.suffix.empty() ? "" : "-" + job_.suffix);
    const int64_t every = std::max<int64_t>(1, total / kStepEvents);
    std::string csv = "step,train_loss,valid_loss\n";
    int64_t step = 0;
    double last_loss = 0;
    std::string last_weights;
    for (int epoch = 1; epoch <= h.n_epochs; ++epoch) {
      std::shuffle(order.begin(), order.end(), rng);
      for (size_t first = 0; first < order.size(); first += static_cast<size_t>(h.batch_size)) {
        if (s_.ShouldStop(work_)) return Stopped();
        const size_t last = std::min(order.size(), first + static_cast<size_t>(h.batch_size));
        double loss = 0;
        for (size_t i = first; i < last; ++i) loss += builder.Loss(training[order[i]]);
        loss /= static_cast<double>(last - first);
        for (size_t i = first; i < last; ++i) {
          RETURN_IF_ERROR(builder.Add(training[order[i]], h.learning_rate_multiplier));
        }
        ++step;
        last_loss = loss;
        csv += std::to_string(step) + "," + FormatLoss(loss) + ",\n";
        if (step % every == 0 || step == total) {
          RETURN_IF_ERROR(Event("info",
                                "Step " + std::to_string(step) + "/" + std::to_string(total) +
                                    ": training loss=" + FormatLoss(loss),
                                "metrics",
                                {{"step", step}, {"train_loss", loss}, {"total_steps", total}}));
          RETURN_IF_ERROR(Update([&](FineTuningJob& j) {
            j.step = step;
            return OkStatus();
          }));
        }
      }
      // A checkpoint at the end of each epoch: the model so far, sealed, and deployable.
      Json metrics = {{"step", step}, {"train_loss", last_loss}};
      if (!validation.empty()) {
        double valid = 0;
        const size_t n = std::min(validation.size(), kMaxValidationExamples);
        for (size_t i = 0; i < n; ++i) valid += builder.Loss(validation[i]);
        valid /= static_cast<double>(n);
        metrics["valid_loss"] = valid;
        metrics["full_valid_loss"] = valid;
        csv.pop_back();  // the step's line ends with an empty valid_loss column
        csv += FormatLoss(valid) + "\n";
      }
      ASSIGN_OR_RETURN(Bytes weights, builder.Serialize());
      ASSIGN_OR_RETURN(last_weights, Seal(weights,
                                          model_id + ".ckpt-step-" + std::to_string(step) + ".kflm",
                                          kWeightsPurpose));
      JobCheckpoint checkpoint{
          "ftckpt-" + Hex16(UINT64_MAX - static_cast<uint64_t>(step)) + RandomHex(4),
          UnixSeconds(s_.clock_),
          model_id + ":ckpt-step-" + std::to_string(step),
          step,
          metrics,
          job_.id};
      FineTunedModel model{checkpoint.model, job_.model,  job_.id,
                           step,             last_weights, checkpoint.created_at};
      RETURN_IF_ERROR(s_.store_.Write([&](Transaction& txn) -> Status {
        RETURN_IF_ERROR(txn.Put(kCheckpoints,
                                JobKey(work_.account, job_.id) + "/" + checkpoint.id.substr(7, 16),
                                AsBytes(EncodeCheckpoint(checkpoint).dump())));
        return ModelCatalog::Register(txn, work_.account, model);
      }));
      RETURN_IF_ERROR(Event("info", "Checkpoint created at step " + std::to_string(step)));
    }
    if (s_.ShouldStop(work_)) return Stopped();

    ASSIGN_OR_RETURN(std::string results, Seal(ToBytes(csv), "step_metrics.csv", "fine-tune-results"));
    const int64_t now = UnixSeconds(s_.clock_);
    FineTunedModel final_model{model_id, job_.model, job_.id, 0, last_weights, now};
    RETURN_IF_ERROR(s_.store_.Write(
        [&](Transaction& txn) { return ModelCatalog::Register(txn, work_.account, final_model); }));
    const int64_t trained = static_cast<int64_t>(builder.tokens() - base_tokens);
    RETURN_IF_ERROR(Event("info", "New fine-tuned model created: " + model_id));
    RETURN_IF_ERROR(Update([&](FineTuningJob& j) {
      j.status = JobStatus::kSucceeded;
      j.finished_at = now;
      j.fine_tuned_model = model_id;
      j.result_files = {results};
      j.trained_tokens = trained;
      j.step = total;
      return OkStatus();
    }));
    RETURN_IF_ERROR(Event("info", "The job has successfully completed"));
    Log(LogLevel::kInfo, "fine_tuning.succeeded",
        {{"job", job_.id}, {"model", model_id}, {"steps", std::to_string(total)}});
    return OkStatus();
  }

  // Marks the job failed with `error` (unless it already finished).
  Status Fail(JobError error) {
    failed_ = true;
    const std::string message = error.message;
    Status failed = Update([&](FineTuningJob& j) {
      j.status = JobStatus::kFailed;
      j.finished_at = UnixSeconds(s_.clock_);
      j.error = error;
      return OkStatus();
    });
    if (failed.reason() == kJobFinished) return OkStatus();  // cancelled first: it stays so
    RETURN_IF_ERROR(failed);
    return Event("error", "Fine-tuning job failed: " + message);
  }

 private:
  Status Event(std::string_view level, std::string message, std::string_view type = "message",
               Json data = nullptr) {
    return s_.AddEvent(work_.account, job_.id, level, std::move(message), type, std::move(data));
  }
  // Changes the job's record unless it has finished meanwhile (cancelled, or deleted with its
  // account): then nothing is written and the run ends (kJobFinished).
  Status Update(const std::function<Status(FineTuningJob&)>& change) {
    return s_
        .UpdateJob(work_.account, job_.id,
                   [&](FineTuningJob& j) -> Status {
                     if (IsFinished(j.status)) {
                       return FailedPreconditionError("the job has finished").WithReason(
                           std::string(kJobFinished));
                     }
                     return change(j);
                   })
        .status();
  }
  Status Stopped() {
    // Cancelled (the record says so already) or the service stops (the job stays unfinished).
    return s_.queue_.stopping() ? AbortedError("keyfoundryd is stopping") : OkStatus();
  }

  Status AddBaseCorpus(ModelBuilder& builder) { return builder.AddJsonl(BaseCorpus(), kBaseWeight); }

  // Reads and parses a training file. Bad lines fail the job (failed_) with their numbers.
  Status ReadExamples(const std::string& file_id, std::string_view param,
                      std::vector<TrainingExample>* out) {
    StatusOr<std::unique_ptr<FileReader>> reader = s_.files_.Open(work_.account, file_id);
    if (!reader.ok()) {
      if (reader.status().code() == StatusCode::kNotFound) {
        return Fail({"invalid_" + std::string(param),
                     "The file " + file_id + " no longer exists.", std::string(param)});
      }
      return reader.status();
    }
    std::vector<std::string> bad;
    size_t bad_count = 0;
    JsonlLineSplitter splitter([&](std::string_view line, size_t number) -> Status {
      StatusOr<std::optional<TrainingExample>> example = ParseTrainingLine(line, number);
      if (!example.ok()) {
        if (bad.size() < kMaxReportedLines) bad.push_back(example.status().message());
        ++bad_count;
      } else if (example->has_value()) {
        out->push_back(std::move(**example));
      }
      return OkStatus();
    });
    std::vector<uint8_t> piece(kReadPiece);
    const uint64_t size = (*reader)->info().bytes;
    Status split = OkStatus();
    for (uint64_t offset = 0; offset < size && split.ok();) {
      ASSIGN_OR_RETURN(size_t n, (*reader)->ReadAt(offset, piece));
      if (n == 0) return DataLossError("the training file ended early");
      split = splitter.Feed(AsStringView(ByteView(piece.data(), n)));
      offset += n;
    }
    if (split.ok()) split = splitter.Finish();
    if (!split.ok()) {  // the splitter refuses a line longer than its limit
      if (bad.size() < kMaxReportedLines) bad.push_back(split.message());
      ++bad_count;
    }
    const std::string what = param == "training_file" ? "training" : "validation";
    if (bad_count > 0) {
      std::string message = "The " + what + " file " + file_id + " has " +
                            std::to_string(bad_count) + " invalid line" +
                            (bad_count == 1 ? "" : "s") + ": ";
      for (size_t i = 0; i < bad.size(); ++i) message += (i ? "; " : "") + bad[i];
      if (bad_count > bad.size()) message += "; ...";
      return Fail({"invalid_" + std::string(param), message, std::string(param)});
    }
    if (param == "training_file" && out->size() < kMinTrainingExamples) {
      return Fail({"invalid_training_file",
                   "The training file " + file_id + " has " + std::to_string(out->size()) +
                       " example" + (out->size() == 1 ? "" : "s") + ", but at least " +
                       std::to_string(kMinTrainingExamples) + " are needed.",
                   "training_file"});
    }
    return OkStatus();
  }

  // Seals `content` as a new file of the account; returns its id.
  StatusOr<std::string> Seal(const Bytes& content, std::string_view filename,
                             std::string_view purpose) {
    ASSIGN_OR_RETURN(std::unique_ptr<FileUpload> upload, s_.files_.BeginUpload(work_.account));
    RETURN_IF_ERROR(upload->Write(content));
    ASSIGN_OR_RETURN(FileInfo info, upload->Finish(filename, purpose));
    return info.id;
  }

  FineTuning& s_;
  const Work& work_;
  FineTuningJob job_;
  bool failed_ = false;
};

void FineTuning::Execute(const Work& work) {
  StatusOr<FineTuningJob> job = Get(work.account, work.job);
  if (!job.ok() || IsFinished(job->status)) return;
  Run run(*this, work, *std::move(job));
  Status done = run.Execute();
  // Aborted: the service stops (the job starts again at the next start); kJobFinished: it was
  // cancelled (or its account deleted) while it ran.
  if (done.ok() || done.code() == StatusCode::kAborted || done.reason() == kJobFinished) return;
  JobError error;
  if (done.code() == StatusCode::kPermissionDenied) {
    error = {"KeyInaccessible", done.message(), ""};
  } else {
    Log(LogLevel::kError, "fine_tuning.failed", {{"job", work.job}, {"error", done.ToString()}});
    error = {"server_error",
             "The job failed because of an internal error (" +
                 std::string(StatusCodeName(done.code())) +
                 "). Quote the job id when reporting it; creating the job again may work.",
             ""};
  }
  if (Status failed = run.Fail(std::move(error)); !failed.ok()) {
    Log(LogLevel::kError, "fine_tuning.fail_not_recorded",
        {{"job", work.job}, {"error", failed.ToString()}});
  }
}

}  // namespace keyfoundry::foundry
