#include "foundry/deployments.h"

#include "common/bytes.h"
#include "common/logging.h"
#include "common/strings.h"
#include "storage/scan.h"

namespace keyfoundry::foundry {
namespace {

using storage::Record;
using storage::Transaction;
using Json = nlohmann::json;

constexpr std::string_view kTable = "cs_deployments";
constexpr int kRecordVersion = 1;
constexpr int64_t kMaxCapacity = 10000;

std::string Key(std::string_view account, std::string_view name) {
  return std::string(account) + "/" + ToLowerAscii(name);
}

Status BadContent(std::string message) {
  return InvalidArgumentError(std::move(message)).WithReason("InvalidRequestContent");
}

Json Encode(const Deployment& d) {
  return {{"v", kRecordVersion},
          {"account", d.account},
          {"name", d.name},
          {"format", d.model_format},
          {"model_name", d.model_name},
          {"model_version", d.model_version},
          {"model_id", d.model_id},
          {"sku_name", d.sku_name},
          {"sku_capacity", d.sku_capacity},
          {"extra", d.extra_properties},
          {"created_at", d.created_at},
          {"created_by", d.created_by},
          {"updated_at", d.updated_at},
          {"updated_by", d.updated_by}};
}

StatusOr<Deployment> Decode(const Record& record) {
  const Json j = Json::parse(AsStringView(record.value), nullptr, false);
  if (!j.is_object() || j.value("v", 0) != kRecordVersion) {
    return DataLossError("a deployment record is malformed");
  }
  try {
    Deployment d;
    d.account = j.at("account").get<std::string>();
    d.name = j.at("name").get<std::string>();
    d.model_format = j.at("format").get<std::string>();
    d.model_name = j.at("model_name").get<std::string>();
    d.model_version = j.at("model_version").get<std::string>();
    d.model_id = j.at("model_id").get<std::string>();
    d.sku_name = j.at("sku_name").get<std::string>();
    d.sku_capacity = j.at("sku_capacity").get<int64_t>();
    d.extra_properties = j.at("extra");
    d.created_at = j.at("created_at").get<int64_t>();
    d.created_by = j.at("created_by").get<std::string>();
    d.updated_at = j.at("updated_at").get<int64_t>();
    d.updated_by = j.at("updated_by").get<std::string>();
    return d;
  } catch (const Json::exception&) {
    return DataLossError("a deployment record is malformed");
  }
}


}  // namespace

Status ValidateDeploymentName(std::string_view name) {
  const bool ok = name.size() >= 2 && name.size() <= 64 &&
                  std::all_of(name.begin(), name.end(), [](char c) {
                    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                           (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.';
                  });
  if (ok) return OkStatus();
  return InvalidArgumentError("A deployment name holds 2 to 64 letters, digits, '-', '_' and '.'.")
      .WithReason("InvalidResourceName");
}

StatusOr<Deployment> DeploymentFromArm(const Json& body, Deployment base) {
  if (!body.is_object()) return BadContent("The body must be a JSON object.");
  if (body.contains("sku") && !body.at("sku").is_null()) {
    const Json& sku = body.at("sku");
    if (!sku.is_object()) return BadContent("'sku' must be an object {name, capacity}.");
    if (sku.contains("name")) {
      if (!sku.at("name").is_string() || sku.at("name").get<std::string>().empty()) {
        return BadContent("sku.name must be a string such as \"Standard\".");
      }
      base.sku_name = sku.at("name").get<std::string>();
    }
    if (sku.contains("capacity")) {
      if (!sku.at("capacity").is_number_integer() || sku.at("capacity").get<int64_t>() < 1 ||
          sku.at("capacity").get<int64_t>() > kMaxCapacity) {
        return BadContent("sku.capacity must be an integer from 1 to 10000.");
      }
      base.sku_capacity = sku.at("capacity").get<int64_t>();
    }
  }
  const Json properties = body.value("properties", Json::object());
  if (!properties.is_object()) return BadContent("'properties' must be an object.");
  if (!properties.contains("model") || !properties.at("model").is_object()) {
    return BadContent("properties.model {format, name, version} is required.");
  }
  const Json& model = properties.at("model");
  auto text = [&](std::string_view field, bool required, std::string* to) -> Status {
    if (!model.contains(field) || model.at(field).is_null()) {
      if (required) return BadContent("properties.model." + std::string(field) + " is required.");
      return OkStatus();
    }
    if (!model.at(field).is_string() || model.at(field).get<std::string>().size() > 256) {
      return BadContent("properties.model." + std::string(field) + " must be a string.");
    }
    *to = model.at(field).get<std::string>();
    return OkStatus();
  };
  base.model_format = "OpenAI";
  base.model_version.clear();
  RETURN_IF_ERROR(text("format", false, &base.model_format));
  RETURN_IF_ERROR(text("name", true, &base.model_name));
  RETURN_IF_ERROR(text("version", false, &base.model_version));
  if (base.model_format != "OpenAI") {
    return BadContent("properties.model.format '" + base.model_format +
                      "' is not served here: use \"OpenAI\".");
  }
  Json extra = Json::object();
  for (const auto& [k, v] : properties.items()) {
    if (k != "model" && k != "provisioningState" && k != "servingState" && k != "servingError" &&
        k != "capabilities") {
      extra[k] = v;
    }
  }
  base.extra_properties = std::move(extra);
  return base;
}

Json DeploymentToArm(const Deployment& d, std::string_view account_id, const ServingState& state) {
  Json properties = d.extra_properties.is_object() ? d.extra_properties : Json::object();
  properties["model"] = {{"format", d.model_format},
                         {"name", d.model_name},
                         {"version", d.model_version}};
  properties["provisioningState"] = "Succeeded";
  properties["capabilities"] = {{"chatCompletion", "true"}, {"completion", "true"}};
  properties["servingState"] = state.serving ? "Serving" : "CannotLoad";
  if (!state.serving) {
    properties["servingError"] = {{"code", state.code}, {"message", state.message}};
  }
  return {{"id", std::string(account_id) + "/deployments/" + d.name},
          {"type", "Microsoft.CognitiveServices/accounts/deployments"},
          {"name", d.name},
          {"sku", {{"name", d.sku_name}, {"capacity", d.sku_capacity}}},
          {"properties", properties},
          {"systemData",
           {{"createdBy", d.created_by},
            {"createdByType", "User"},
            {"createdAt", FormatIso8601(d.created_at)},
            {"lastModifiedBy", d.updated_by},
            {"lastModifiedByType", "User"},
            {"lastModifiedAt", FormatIso8601(d.updated_at)}}}};
}

Deployments::Deployments(storage::MetadataStore& store, ModelCatalog& models, const Clock& clock)
    : store_(store), models_(models), clock_(clock) {}

StatusOr<std::shared_ptr<const LanguageModel>> Deployments::LoadModel(const Deployment& d) {
  ASSIGN_OR_RETURN(ModelRef ref, models_.Resolve(d.account, d.model_name, d.model_version));
  return models_.Load(d.account, ref);
}

StatusOr<Deployment> Deployments::Put(Deployment d, bool* created) {
  RETURN_IF_ERROR(ValidateDeploymentName(d.name));
  ASSIGN_OR_RETURN(ModelRef ref, models_.Resolve(d.account, d.model_name, d.model_version));
  if (!ref.fine_tuned && d.model_version.empty()) d.model_version = ref.base.version;
  if (ref.fine_tuned && d.model_version.empty()) d.model_version = "1";
  d.model_id = ref.id();
  // The model first: nothing is stored for a deployment that cannot serve.
  ASSIGN_OR_RETURN(std::shared_ptr<const LanguageModel> model, models_.Load(d.account, ref));
  const std::string key = Key(d.account, d.name);
  const int64_t now = UnixSeconds(clock_);
  RETURN_IF_ERROR(store_.Write([&](Transaction& txn) -> Status {
    ASSIGN_OR_RETURN(std::optional<Record> existing, txn.Get(kTable, key));
    *created = !existing.has_value();
    if (existing.has_value()) {
      ASSIGN_OR_RETURN(Deployment old, Decode(*existing));
      d.name = old.name;
      d.created_at = old.created_at;
      d.created_by = old.created_by;
    } else {
      d.created_at = now;
      if (d.created_by.empty()) d.created_by = d.updated_by;
    }
    d.updated_at = now;
    return txn.Put(kTable, key, AsBytes(Encode(d).dump()));
  }));
  {
    MutexLock lock(&mu_);
    loaded_[key] = {d, std::move(model), OkStatus()};
  }
  Log(LogLevel::kInfo, "deployment.loaded",
      {{"account", d.account}, {"deployment", d.name}, {"model", d.model_id}});
  return d;
}

StatusOr<Deployment> Deployments::Get(std::string_view account, std::string_view name) const {
  std::optional<Record> record;
  RETURN_IF_ERROR(store_.Read([&](Transaction& txn) -> Status {
    ASSIGN_OR_RETURN(record, txn.Get(kTable, Key(account, name)));
    return OkStatus();
  }));
  if (!record.has_value()) {
    return NotFoundError("The deployment '" + std::string(name) +
                         "' does not exist in this account.")
        .WithReason("DeploymentNotFound");
  }
  return Decode(*record);
}

StatusOr<std::vector<Deployment>> Deployments::List(std::string_view account) const {
  std::vector<Deployment> out;
  RETURN_IF_ERROR(store_.Read([&](Transaction& txn) -> Status {
    out.clear();
    return storage::ScanAll(txn, kTable, std::string(account) + "/", [&](const Record& r) -> Status {
      ASSIGN_OR_RETURN(Deployment d, Decode(r));
      out.push_back(std::move(d));
      return OkStatus();
    });
  }));
  return out;
}

Status Deployments::Delete(std::string_view account, std::string_view name) {
  const std::string key = Key(account, name);
  RETURN_IF_ERROR(store_.Write([&](Transaction& txn) -> Status {
    Status deleted = txn.Delete(kTable, key);
    if (deleted.code() == StatusCode::kNotFound) {
      return NotFoundError("The deployment '" + std::string(name) +
                           "' does not exist in this account.")
          .WithReason("DeploymentNotFound");
    }
    return deleted;
  }));
  MutexLock lock(&mu_);
  loaded_.erase(key);
  return OkStatus();
}

Status Deployments::DeleteAccount(std::string_view account) {
  ASSIGN_OR_RETURN(std::vector<Deployment> all, List(account));
  for (const Deployment& d : all) {
    Status deleted = Delete(account, d.name);
    if (!deleted.ok() && deleted.code() != StatusCode::kNotFound) return deleted;
  }
  return OkStatus();
}

StatusOr<std::shared_ptr<const LanguageModel>> Deployments::Model(std::string_view account,
                                                                  std::string_view name,
                                                                  Deployment* deployment) {
  const std::string key = Key(account, name);
  {
    MutexLock lock(&mu_);
    auto it = loaded_.find(key);
    if (it != loaded_.end() && it->second.model != nullptr) {
      if (deployment != nullptr) *deployment = it->second.deployment;
      return it->second.model;
    }
  }
  // Not in memory: a restart, or an earlier load that failed. Try again now.
  ASSIGN_OR_RETURN(Deployment d, Get(account, name));
  StatusOr<std::shared_ptr<const LanguageModel>> model = LoadModel(d);
  MutexLock lock(&mu_);
  loaded_[key] = {d, model.ok() ? *model : nullptr, model.status()};
  if (deployment != nullptr) *deployment = std::move(d);
  return model;
}

ServingState Deployments::State(std::string_view account, std::string_view name) {
  MutexLock lock(&mu_);
  auto it = loaded_.find(Key(account, name));
  if (it == loaded_.end()) return {false, "NotLoaded", "The deployment's model is not loaded yet."};
  if (it->second.model != nullptr) return {true, "", ""};
  const Status& e = it->second.error;
  std::string code = e.code() == StatusCode::kPermissionDenied ? "KeyInaccessible"
                     : e.reason().empty()                      ? std::string(StatusCodeName(e.code()))
                                                               : e.reason();
  return {false, code, "The deployment's model cannot be loaded: " + e.message()};
}

StatusOr<int> Deployments::LoadAll() {
  std::vector<Deployment> all;
  RETURN_IF_ERROR(store_.Read([&](Transaction& txn) -> Status {
    all.clear();
    return storage::ScanAll(txn, kTable, "", [&](const Record& r) -> Status {
      ASSIGN_OR_RETURN(Deployment d, Decode(r));
      all.push_back(std::move(d));
      return OkStatus();
    });
  }));
  int failed = 0;
  for (const Deployment& d : all) {
    StatusOr<std::shared_ptr<const LanguageModel>> model = LoadModel(d);
    if (!model.ok()) {
      ++failed;
      Log(LogLevel::kWarning, "deployment.cannot_load",
          {{"account", d.account}, {"deployment", d.name}, {"error", model.status().ToString()}});
    }
    MutexLock lock(&mu_);
    loaded_[Key(d.account, d.name)] = {d, model.ok() ? *model : nullptr, model.status()};
  }
  return failed;
}

}  // namespace keyfoundry::foundry
