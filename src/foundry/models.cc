#include "foundry/models.h"

#include <algorithm>

#include "common/bytes.h"
#include "common/logging.h"
#include "common/secret_bytes.h"
#include "storage/scan.h"

namespace keyfoundry::foundry {
namespace {

using storage::Record;
using storage::Transaction;
using Json = nlohmann::json;

constexpr std::string_view kTable = "ft_models";
constexpr int kRecordVersion = 1;
constexpr size_t kReadPiece = size_t{1} << 20;
constexpr int64_t kCatalogueTime = 1767225600;  // 2026-01-01, when this catalogue was written

std::string Prefix(std::string_view account) { return std::string(account) + "/"; }

Json Encode(const FineTunedModel& m) {
  return {{"v", kRecordVersion},
          {"id", m.id},
          {"base", m.base},
          {"job", m.job},
          {"checkpoint_step", m.checkpoint_step},
          {"weights_file", m.weights_file},
          {"created_at", m.created_at}};
}

StatusOr<FineTunedModel> Decode(const Record& record) {
  const Json j = Json::parse(AsStringView(record.value), nullptr, false);
  if (!j.is_object() || j.value("v", 0) != kRecordVersion) {
    return DataLossError("a fine-tuned model record is malformed");
  }
  try {
    FineTunedModel m;
    m.id = j.at("id").get<std::string>();
    m.base = j.at("base").get<std::string>();
    m.job = j.at("job").get<std::string>();
    m.checkpoint_step = j.at("checkpoint_step").get<int64_t>();
    m.weights_file = j.at("weights_file").get<std::string>();
    m.created_at = j.at("created_at").get<int64_t>();
    return m;
  } catch (const Json::exception&) {
    return DataLossError("a fine-tuned model record is malformed");
  }
}

template <typename Fn>
Status ForEachModel(Transaction& txn, std::string_view account, Fn fn) {
  return storage::ScanAll(txn, kTable, Prefix(account), [&](const Record& r) -> Status {
    ASSIGN_OR_RETURN(FineTunedModel m, Decode(r));
    return fn(r, m);
  });
}

}  // namespace

const std::vector<BaseModel>& BaseModels() {
  static const std::vector<BaseModel> models = [] {
    std::vector<BaseModel> out;
    for (auto [name, version] : std::initializer_list<std::pair<const char*, const char*>>{
             {"kf-ngram", "1"},
             {"gpt-4o-mini", "2024-07-18"},
             {"gpt-4o", "2024-08-06"},
             {"gpt-4.1", "2025-04-14"},
             {"gpt-4.1-mini", "2025-04-14"},
             {"gpt-4.1-nano", "2025-04-14"},
             {"gpt-35-turbo", "0125"}}) {
      out.push_back({name, version, std::string(name) + "-" + version, kCatalogueTime});
    }
    return out;
  }();
  return models;
}

StatusOr<BaseModel> FindBaseModel(std::string_view name, std::string_view version) {
  for (const BaseModel& m : BaseModels()) {
    if ((m.id == name && (version.empty() || version == m.version || version == "1")) ||
        (m.name == name && (version.empty() || version == m.version))) {
      return m;
    }
  }
  return NotFoundError("'" + std::string(name) +
                       (version.empty() ? "" : "' version '" + std::string(version)) +
                       "' is not a model of this deployment: GET /openai/models lists them")
      .WithReason("DeploymentModelNotSupported");
}

Json BaseModelToJson(const BaseModel& m) {
  return {{"id", m.id},
          {"object", "model"},
          {"created", m.created_at},
          {"created_at", m.created_at},
          {"owned_by", "system"},
          {"status", "succeeded"},
          {"lifecycle_status", "generally-available"},
          {"capabilities",
           {{"fine_tune", true},
            {"inference", true},
            {"completion", true},
            {"chat_completion", true},
            {"embeddings", false}}},
          {"deprecation", Json::object()}};
}

Json FineTunedModelToJson(const FineTunedModel& m) {
  return {{"id", m.id},
          {"object", "model"},
          {"created", m.created_at},
          {"created_at", m.created_at},
          {"owned_by", "organization-owner"},
          {"status", "succeeded"},
          {"lifecycle_status", "generally-available"},
          {"model", m.base},
          {"fine_tune", m.job},
          {"capabilities",
           {{"fine_tune", false},
            {"inference", true},
            {"completion", true},
            {"chat_completion", true},
            {"embeddings", false}}},
          {"deprecation", Json::object()}};
}

ModelCatalog::ModelCatalog(storage::MetadataStore& store, FileStore& files)
    : store_(store), files_(files) {}

Status ModelCatalog::Register(Transaction& txn, std::string_view account,
                              const FineTunedModel& model) {
  return txn.Insert(kTable, Prefix(account) + model.id, AsBytes(Encode(model).dump()));
}

StatusOr<std::vector<std::string>> ModelCatalog::UnregisterJob(Transaction& txn,
                                                               std::string_view account,
                                                               std::string_view job) {
  std::vector<std::string> keys;
  std::vector<std::string> weights;
  RETURN_IF_ERROR(ForEachModel(txn, account, [&](const Record& r, const FineTunedModel& m) {
    if (m.job == job) {
      keys.push_back(r.key);
      if (std::find(weights.begin(), weights.end(), m.weights_file) == weights.end()) {
        weights.push_back(m.weights_file);
      }
    }
    return OkStatus();
  }));
  for (const std::string& key : keys) RETURN_IF_ERROR(txn.Delete(kTable, key));
  return weights;
}

StatusOr<std::vector<FineTunedModel>> ModelCatalog::List(std::string_view account) const {
  std::vector<FineTunedModel> out;
  RETURN_IF_ERROR(store_.Read([&](Transaction& txn) {
    out.clear();
    return ForEachModel(txn, account, [&](const Record&, const FineTunedModel& m) {
      out.push_back(m);
      return OkStatus();
    });
  }));
  return out;
}

StatusOr<FineTunedModel> ModelCatalog::Get(std::string_view account, std::string_view id) const {
  std::optional<Record> record;
  RETURN_IF_ERROR(store_.Read([&](Transaction& txn) -> Status {
    ASSIGN_OR_RETURN(record, txn.Get(kTable, Prefix(account) + std::string(id)));
    return OkStatus();
  }));
  if (!record.has_value()) {
    return NotFoundError("The model '" + std::string(id) + "' does not exist in this account.")
        .WithReason("ModelNotFound");
  }
  return Decode(*record);
}

StatusOr<ModelRef> ModelCatalog::Resolve(std::string_view account, std::string_view name,
                                         std::string_view version) const {
  ModelRef ref;
  if (StatusOr<BaseModel> base = FindBaseModel(name, version); base.ok()) {
    ref.base = *std::move(base);
    return ref;
  }
  if (StatusOr<BaseModel> other = FindBaseModel(name); other.ok()) {
    return NotFoundError("The model '" + std::string(name) + "' has version '" + other->version +
                         "', not '" + std::string(version) + "'.")
        .WithReason("DeploymentModelNotSupported");
  }
  if (name.empty() || name.size() > 256) {
    return InvalidArgumentError("properties.model.name must name a model")
        .WithReason("InvalidRequestContent");
  }
  StatusOr<FineTunedModel> tuned = Get(account, name);
  if (tuned.status().code() == StatusCode::kNotFound) {
    return NotFoundError("The model '" + std::string(name) +
                         "' is neither a base model nor a fine-tuned model of this account: GET "
                         "/openai/models lists them.")
        .WithReason("DeploymentModelNotSupported");
  }
  RETURN_IF_ERROR(tuned);
  if (!version.empty() && version != "1") {
    return NotFoundError("A fine-tuned model has version '1' only; '" + std::string(version) +
                         "' was asked.")
        .WithReason("DeploymentModelNotSupported");
  }
  ref.fine_tuned = true;
  ref.fine_tune = *std::move(tuned);
  return ref;
}

StatusOr<std::shared_ptr<const LanguageModel>> ModelCatalog::Base() {
  MutexLock lock(&base_mu_);
  if (base_ != nullptr) return base_;
  ModelBuilder builder;
  RETURN_IF_ERROR(builder.AddJsonl(BaseCorpus()));
  ASSIGN_OR_RETURN(Bytes serialized, builder.Serialize());
  ASSIGN_OR_RETURN(base_, LanguageModel::Load(serialized));
  Log(LogLevel::kInfo, "models.base_built",
      {{"examples", std::to_string(builder.examples())},
       {"bytes", std::to_string(base_->memory_bytes())}});
  return base_;
}

StatusOr<std::shared_ptr<const LanguageModel>> ModelCatalog::Load(std::string_view account,
                                                                  const ModelRef& model) {
  if (!model.fine_tuned) return Base();
  ASSIGN_OR_RETURN(std::unique_ptr<FileReader> reader,
                   files_.Open(account, model.fine_tune.weights_file));
  const uint64_t size = reader->info().bytes;
  if (size > kMaxModelBytes) return DataLossError("the model's weights are too large");
  // Plain memory, zeroized below: weights may be far larger than what mlock allows.
  Bytes weights(static_cast<size_t>(size));
  uint64_t done = 0;
  Status read = OkStatus();
  while (done < size && read.ok()) {
    const size_t want = static_cast<size_t>(std::min<uint64_t>(kReadPiece, size - done));
    StatusOr<size_t> n = reader->ReadAt(done, std::span<uint8_t>(weights).subspan(done, want));
    if (!n.ok()) {
      read = n.status();
    } else if (*n == 0) {
      read = DataLossError("the model's weights ended early");
    } else {
      done += *n;
    }
  }
  StatusOr<std::shared_ptr<const LanguageModel>> loaded =
      read.ok() ? LanguageModel::Load(weights) : StatusOr<std::shared_ptr<const LanguageModel>>(read);
  SecureZero(std::span<uint8_t>(weights));
  return loaded;
}

Status ModelCatalog::DeleteAccount(std::string_view account) {
  return store_.Write([&](Transaction& txn) -> Status {
    std::vector<std::string> keys;
    RETURN_IF_ERROR(ForEachModel(txn, account, [&](const Record& r, const FineTunedModel&) {
      keys.push_back(r.key);
      return OkStatus();
    }));
    for (const std::string& key : keys) RETURN_IF_ERROR(txn.Delete(kTable, key));
    return OkStatus();
  });
}

}  // namespace keyfoundry::foundry
