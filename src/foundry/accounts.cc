#include "foundry/accounts.h"

#include <algorithm>
#include <array>

#include "common/encoding.h"
#include "common/strings.h"
#include "crypto/digest.h"
#include "crypto/random.h"
#include "hsm/key_provider.h"
#include "keyvault/vault.h"

namespace keyfoundry::foundry {
namespace {

using Json = nlohmann::json;

constexpr std::string_view kTable = "cs_accounts";
constexpr std::string_view kApprovalTable = "cmk_approvals";
constexpr std::string_view kProjectTable = "cs_projects";
// Accounts kept by GetByName's cache; past this, the cache starts again empty.
constexpr size_t kMaxCachedAccounts = 4096;
constexpr size_t kApiKeySize = 32;
constexpr size_t kMinNameSize = 2;
constexpr size_t kMaxNameSize = 64;
constexpr std::string_view kApiKeysAad = "keyfoundry/account-api-keys/v1|";

constexpr std::array<std::string_view, 13> kKinds = {
    "AIServices",      "OpenAI",        "CognitiveServices", "SpeechServices",
    "ContentSafety",   "TextAnalytics", "ComputerVision",    "FormRecognizer",
    "TextTranslation", "Face",          "LanguageAuthoring", "ContentUnderstanding",
    "Personalizer"};
constexpr std::array<std::string_view, 2> kKindsNeedingApproval = {"SpeechServices",
                                                                   "ContentSafety"};
constexpr std::array<std::string_view, 5> kSkus = {"F0", "S0", "S", "S1", "DC0"};

Status BadField(std::string message) {
  return InvalidArgumentError(std::move(message)).WithReason("BadRequest");
}

std::optional<std::string_view> OneOf(std::string_view value,
                                      std::span<const std::string_view> allowed) {
  for (std::string_view a : allowed) {
    if (EqualsIgnoreCase(a, value)) return a;
  }
  return std::nullopt;
}

std::string Joined(std::span<const std::string_view> values) {
  std::string out;
  for (std::string_view v : values) out += (out.empty() ? "" : ", ") + std::string(v);
  return out;
}

// The encryption object of properties: {keySource, keyVaultProperties{...}}.
StatusOr<AccountEncryption> EncryptionFromArm(const Json& j) {
  if (!j.is_object()) return BadField("properties.encryption must be an object");
  AccountEncryption e;
  auto source = j.find("keySource");
  if (source == j.end() || !source->is_string()) {
    return BadField(
        "properties.encryption.keySource is required: Microsoft.CognitiveServices or "
        "Microsoft.KeyVault");
  }
  const std::string text = source->get<std::string>();
  if (EqualsIgnoreCase(text, kServiceManagedKeySource)) {
    e.key_source = std::string(kServiceManagedKeySource);
  } else if (EqualsIgnoreCase(text, kCustomerManagedKeySource)) {
    e.key_source = std::string(kCustomerManagedKeySource);
  } else {
    return BadField("properties.encryption.keySource '" + text +
                    "' is not Microsoft.CognitiveServices or Microsoft.KeyVault");
  }
  auto props = j.find("keyVaultProperties");
  if (props != j.end() && !props->is_null()) {
    if (!props->is_object()) {
      return BadField("properties.encryption.keyVaultProperties must be an object");
    }
    auto text_field = [&](const char* name, std::string& out) -> Status {
      auto it = props->find(name);
      if (it == props->end() || it->is_null()) return OkStatus();
      if (!it->is_string()) {
        return BadField(std::string("properties.encryption.keyVaultProperties.") + name +
                        " must be a string");
      }
      out = it->get<std::string>();
      return OkStatus();
    };
    RETURN_IF_ERROR(text_field("keyVaultUri", e.key_vault_uri));
    RETURN_IF_ERROR(text_field("keyName", e.key_name));
    RETURN_IF_ERROR(text_field("keyVersion", e.key_version));
    RETURN_IF_ERROR(text_field("identityClientId", e.identity_client_id));
  }
  if (e.customer_managed() && (e.key_vault_uri.empty() || e.key_name.empty())) {
    return BadField(
        "properties.encryption.keyVaultProperties needs keyVaultUri and keyName when keySource "
        "is Microsoft.KeyVault");
  }
  if (!e.customer_managed()) e = AccountEncryption();
  return e;
}

Json EncryptionToArm(const AccountEncryption& e) {
  if (!e.customer_managed()) return {{"keySource", kServiceManagedKeySource}};
  return {{"keySource", kCustomerManagedKeySource},
          {"keyVaultProperties",
           {{"keyVaultUri", e.key_vault_uri},
            {"keyName", e.key_name},
            {"keyVersion", e.key_version},
            {"identityClientId", e.identity_client_id}}}};
}

Json Encode(const Account& a) {
  return {{"v", 1},
          {"subscription_id", a.subscription_id},
          {"resource_group", a.resource_group},
          {"name", a.name},
          {"kind", a.kind},
          {"sku", a.sku},
          {"location", a.location},
          {"tags", a.tags},
          {"identity", a.system_assigned_identity},
          {"principal_id", a.principal_id},
          {"identity_tenant_id", a.identity_tenant_id},
          {"identity_client_id", a.identity_client_id},
          {"encryption", EncryptionToArm(a.encryption)},
          {"disable_local_auth", a.disable_local_auth},
          {"public_network_access", a.public_network_access},
          {"extra_properties", a.extra_properties},
          {"sealed_api_keys", Base64UrlEncode(a.sealed_api_keys)},
          {"api_key_digests", {a.api_key_digests[0], a.api_key_digests[1]}},
          {"created_at", a.created_at},
          {"created_by", a.created_by},
          {"updated_at", a.updated_at},
          {"updated_by", a.updated_by}};
}

StatusOr<Account> Decode(const storage::Record& record) {
  Json j = Json::parse(AsStringView(record.value), nullptr, false);
  auto corrupt = [&] {
    return DataLossError("the account record '" + record.key + "' is corrupt");
  };
  if (!j.is_object() || j.value("v", 0) != 1) return corrupt();
  Account a;
  try {
    a.subscription_id = j.at("subscription_id").get<std::string>();
    a.resource_group = j.at("resource_group").get<std::string>();
    a.name = j.at("name").get<std::string>();
    a.kind = j.at("kind").get<std::string>();
    a.sku = j.at("sku").get<std::string>();
    a.location = j.at("location").get<std::string>();
    a.tags = j.at("tags");
    a.system_assigned_identity = j.at("identity").get<bool>();
    a.principal_id = j.at("principal_id").get<std::string>();
    a.identity_tenant_id = j.at("identity_tenant_id").get<std::string>();
    a.identity_client_id = j.at("identity_client_id").get<std::string>();
    StatusOr<AccountEncryption> e = EncryptionFromArm(j.at("encryption"));
    if (!e.ok()) return corrupt();
    a.encryption = *std::move(e);
    a.disable_local_auth = j.at("disable_local_auth").get<bool>();
    a.public_network_access = j.at("public_network_access").get<std::string>();
    a.extra_properties = j.at("extra_properties");
    StatusOr<Bytes> sealed = Base64UrlDecode(j.at("sealed_api_keys").get<std::string>());
    if (!sealed.ok()) return corrupt();
    a.sealed_api_keys = *std::move(sealed);
    a.api_key_digests[0] = j.at("api_key_digests").at(0).get<std::string>();
    a.api_key_digests[1] = j.at("api_key_digests").at(1).get<std::string>();
    a.created_at = j.at("created_at").get<int64_t>();
    a.created_by = j.at("created_by").get<std::string>();
    a.updated_at = j.at("updated_at").get<int64_t>();
    a.updated_by = j.at("updated_by").get<std::string>();
  } catch (const Json::exception&) {
    return corrupt();
  }
  return a;
}

std::string HexDigest(ByteView data) {
  StatusOr<Bytes> digest = crypto::Sha256(data);
  return digest.ok() ? HexEncode(*digest) : std::string();
}

}  // namespace

std::string Account::ResourceId() const {
  return "/subscriptions/" + subscription_id + "/resourceGroups/" + resource_group +
         "/providers/Microsoft.CognitiveServices/accounts/" + name;
}

std::string Account::Key() const { return ToLowerAscii(ResourceId()); }

Status ValidateAccountName(std::string_view name) {
  const bool ok = name.size() >= kMinNameSize && name.size() <= kMaxNameSize &&
                  std::all_of(name.begin(), name.end(),
                              [](char c) {
                                return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                                       (c >= '0' && c <= '9') || c == '-';
                              }) &&
                  name.front() != '-' && name.back() != '-';
  if (ok) return OkStatus();
  return InvalidArgumentError("The account name '" + std::string(name) +
                              "' is invalid: use 2 to 64 letters, digits and hyphens, starting "
                              "and ending with a letter or digit.")
      .WithReason("InvalidAccountName");
}

bool KindNeedsCmkApproval(std::string_view kind) {
  return OneOf(kind, kKindsNeedingApproval).has_value();
}

StatusOr<Account> AccountFromArm(const Json& body, Account base, bool patch,
                                 std::optional<std::string>* identity_type) {
  if (!body.is_object()) {
    return InvalidArgumentError("the body must be a JSON object")
        .WithReason("InvalidRequestContent");
  }
  const bool existing = base.created_at != 0;
  if (auto kind = body.find("kind"); kind != body.end() && !kind->is_null()) {
    if (!kind->is_string()) return BadField("kind must be a string");
    auto known = OneOf(kind->get<std::string>(), kKinds);
    if (!known) {
      return BadField("kind '" + kind->get<std::string>() + "' is not supported; use one of " +
                      Joined(kKinds));
    }
    if (existing && !EqualsIgnoreCase(base.kind, *known)) {
      return BadField("kind cannot change: the account is " + base.kind);
    }
    base.kind = std::string(*known);
  } else if (!patch && !existing) {
    return BadField("kind is required, for example AIServices or OpenAI");
  }
  if (auto sku = body.find("sku"); sku != body.end() && !sku->is_null()) {
    if (!sku->is_object() || !sku->contains("name") || !(*sku)["name"].is_string()) {
      return BadField("sku must be an object with a name, for example {\"name\": \"S0\"}");
    }
    auto known = OneOf((*sku)["name"].get<std::string>(), kSkus);
    if (!known) return BadField("sku.name must be one of " + Joined(kSkus));
    base.sku = std::string(*known);
  }
  if (auto location = body.find("location"); location != body.end() && !location->is_null()) {
    if (!location->is_string() || location->get<std::string>().empty()) {
      return BadField("location must be a non-empty string");
    }
    const std::string value = location->get<std::string>();
    if (existing && !EqualsIgnoreCase(value, base.location)) {
      return FailedPreconditionError("The location of an account cannot change: it is '" +
                                     base.location + "'.")
          .WithReason("LocationNotAvailableForResourceType");
    }
    base.location = value;
  } else if (!patch && !existing) {
    return BadField("location is required");
  }
  if (auto tags = body.find("tags"); tags != body.end()) {
    if (tags->is_null()) {
      base.tags = Json::object();
    } else {
      RETURN_IF_ERROR(keyvault::ValidateArmTags(*tags));
      base.tags = *tags;
    }
  }
  if (auto identity = body.find("identity"); identity != body.end() && !identity->is_null()) {
    if (!identity->is_object() || !identity->contains("type") || !(*identity)["type"].is_string()) {
      return BadField("identity must be an object with a type: None or SystemAssigned");
    }
    const std::string type = (*identity)["type"].get<std::string>();
    if (EqualsIgnoreCase(type, "None")) {
      *identity_type = "None";
    } else if (EqualsIgnoreCase(type, "SystemAssigned")) {
      *identity_type = "SystemAssigned";
    } else {
      return BadField("identity.type '" + type +
                      "' is not supported: use None or SystemAssigned (user-assigned identities "
                      "are not offered)");
    }
  }
  auto props = body.find("properties");
  if (props != body.end() && !props->is_null()) {
    if (!props->is_object()) return BadField("properties must be an object");
    for (const auto& [name, value] : props->items()) {
      if (name == "encryption") {
        if (value.is_null()) continue;
        ASSIGN_OR_RETURN(base.encryption, EncryptionFromArm(value));
      } else if (name == "disableLocalAuth") {
        if (!value.is_boolean())
          return BadField("properties.disableLocalAuth must be true or false");
        base.disable_local_auth = value.get<bool>();
      } else if (name == "publicNetworkAccess") {
        if (!value.is_string() || (value != "Enabled" && value != "Disabled")) {
          return BadField("properties.publicNetworkAccess must be Enabled or Disabled");
        }
        base.public_network_access = value.get<std::string>();
      } else if (name == "customSubDomainName") {
        if (!value.is_null() &&
            (!value.is_string() || !EqualsIgnoreCase(value.get<std::string>(), base.name))) {
          return BadField("properties.customSubDomainName must be the account's name ('" +
                          base.name + "'): the name is the subdomain");
        }
      } else if (name == "provisioningState" || name == "endpoint" || name == "endpoints" ||
                 name == "dateCreated" || name == "internalId" || name == "capabilities") {
        // Read-only: ignored, as ARM does.
      } else {
        base.extra_properties[name] = value;
      }
    }
  }
  return base;
}

Json AccountToArm(const Account& a, std::string_view endpoint) {
  Json identity = {{"type", a.system_assigned_identity ? "SystemAssigned" : "None"}};
  if (a.system_assigned_identity) {
    identity["principalId"] = a.principal_id;
    identity["tenantId"] = a.identity_tenant_id;
  }
  Json properties = a.extra_properties;
  properties["provisioningState"] = "Succeeded";
  properties["endpoint"] = endpoint;
  properties["endpoints"] = {{"OpenAI Language Model Instance API", endpoint},
                             {"Azure OpenAI Legacy API - Latest moniker", endpoint}};
  properties["customSubDomainName"] = a.name;
  properties["disableLocalAuth"] = a.disable_local_auth;
  properties["publicNetworkAccess"] = a.public_network_access;
  properties["encryption"] = EncryptionToArm(a.encryption);
  properties["dateCreated"] = FormatIso8601(a.created_at);
  return {{"id", a.ResourceId()},
          {"name", a.name},
          {"type", "Microsoft.CognitiveServices/accounts"},
          {"kind", a.kind},
          {"sku", {{"name", a.sku}}},
          {"location", a.location},
          {"tags", a.tags},
          {"identity", identity},
          {"etag", "\"" + std::to_string(a.updated_at) + "\""},
          {"properties", properties}};
}

AccountStore::AccountStore(storage::MetadataStore& store, hsm::KeyProvider& hsm, const Clock& clock)
    : store_(store), hsm_(hsm), clock_(clock) {}

int64_t AccountStore::Now() const {
  return std::chrono::duration_cast<std::chrono::seconds>(clock_.Now().time_since_epoch()).count();
}

Status AccountStore::NewKeys(Account& account) {
  ASSIGN_OR_RETURN(SecretBytes keys, crypto::RandomSecret(2 * kApiKeySize));
  const ByteView raw = keys.Reveal(InsecureSecretAccess());
  const std::string aad = std::string(kApiKeysAad) + ToLowerAscii(account.name);
  ASSIGN_OR_RETURN(account.sealed_api_keys, hsm_.SealWithRoot(keys, AsBytes(aad)));
  for (int i = 0; i < 2; ++i) {
    const std::string hex = HexEncode(raw.subspan(i * kApiKeySize, kApiKeySize));
    account.api_key_digests[i] = HexDigest(AsBytes(hex));
  }
  return OkStatus();
}

StatusOr<Account> AccountStore::Put(Account account, bool* created) {
  RETURN_IF_ERROR(ValidateAccountName(account.name));
  const std::string key = ToLowerAscii(account.name);
  StatusOr<Account> existing = GetByName(account.name);
  if (!existing.ok() && existing.status().code() != StatusCode::kNotFound) {
    return existing.status();
  }
  const bool is_new = !existing.ok();
  if (!is_new) {
    if (!EqualsIgnoreCase(existing->resource_group, account.resource_group) ||
        !EqualsIgnoreCase(existing->subscription_id, account.subscription_id)) {
      return AlreadyExistsError("The subdomain name '" + account.name +
                                "' is already used by another account; choose another name.")
          .WithReason("CustomDomainInUse");
    }
    account.name = existing->name;
    account.resource_group = existing->resource_group;
    account.created_at = existing->created_at;
    account.created_by = existing->created_by;
    account.sealed_api_keys = existing->sealed_api_keys;
    account.api_key_digests[0] = existing->api_key_digests[0];
    account.api_key_digests[1] = existing->api_key_digests[1];
  } else {
    account.created_at = Now();
    RETURN_IF_ERROR(NewKeys(account));
  }
  account.updated_at = Now();
  const std::string value = Encode(account).dump();
  RETURN_IF_ERROR(WriteAccount(key, [&](storage::Transaction& txn) -> Status {
    if (is_new) return txn.Insert(kTable, key, AsBytes(value));
    return txn.Put(kTable, key, AsBytes(value));
  }));
  if (created != nullptr) *created = is_new;
  return account;
}

StatusOr<Account> AccountStore::GetByName(std::string_view name) const {
  const std::string key = ToLowerAscii(name);
  uint64_t writes = 0;
  {
    MutexLock lock(&cache_mu_);
    if (auto it = cache_.find(key); it != cache_.end()) return it->second;
    writes = writes_;
  }
  std::optional<storage::Record> record;
  if (ValidateAccountName(name).ok()) {
    RETURN_IF_ERROR(store_.Read([&](storage::Transaction& txn) -> Status {
      ASSIGN_OR_RETURN(record, txn.Get(kTable, key));
      return OkStatus();
    }));
  }
  if (!record.has_value()) {
    return NotFoundError("The account '" + std::string(name) + "' was not found.")
        .WithReason("ResourceNotFound");
  }
  ASSIGN_OR_RETURN(Account account, Decode(*record));
  MutexLock lock(&cache_mu_);
  if (writes_ == writes) {
    if (cache_.size() >= kMaxCachedAccounts) cache_.clear();
    cache_.emplace(key, account);
  }
  return account;
}

Status AccountStore::WriteAccount(const std::string& lower_name, const storage::TransactionFn& fn) {
  const Status written = store_.Write(fn);
  MutexLock lock(&cache_mu_);
  ++writes_;
  cache_.erase(lower_name);
  return written;
}

StatusOr<Account> AccountStore::Get(std::string_view subscription_id, std::string_view group,
                                    std::string_view name) const {
  StatusOr<Account> account = GetByName(name);
  if (account.ok() && EqualsIgnoreCase(account->subscription_id, subscription_id) &&
      EqualsIgnoreCase(account->resource_group, group)) {
    return account;
  }
  if (!account.ok() && account.status().code() != StatusCode::kNotFound) return account.status();
  return NotFoundError("The Resource 'Microsoft.CognitiveServices/accounts/" + std::string(name) +
                       "' under resource group '" + std::string(group) + "' was not found.")
      .WithReason("ResourceNotFound");
}

StatusOr<std::vector<Account>> AccountStore::List(std::string_view subscription_id,
                                                  std::string_view group) const {
  std::vector<storage::Record> records;
  RETURN_IF_ERROR(store_.Read([&](storage::Transaction& txn) -> Status {
    records.clear();
    for (std::string after;;) {
      ASSIGN_OR_RETURN(auto page, txn.Scan(kTable, "", after, storage::kMaxScanLimit));
      for (auto& r : page) records.push_back(std::move(r));
      if (page.size() < storage::kMaxScanLimit) break;
      after = records.back().key;
    }
    return OkStatus();
  }));
  std::vector<Account> out;
  for (const auto& r : records) {
    ASSIGN_OR_RETURN(Account a, Decode(r));
    if (!EqualsIgnoreCase(a.subscription_id, subscription_id)) continue;
    if (!group.empty() && !EqualsIgnoreCase(a.resource_group, group)) continue;
    out.push_back(std::move(a));
  }
  return out;
}

Status AccountStore::Delete(const Account& account) {
  const std::string key = ToLowerAscii(account.name);
  return WriteAccount(key,
                      [&](storage::Transaction& txn) -> Status { return txn.Delete(kTable, key); });
}

StatusOr<std::vector<SecretBytes>> AccountStore::ListKeys(const Account& account) {
  const std::string aad = std::string(kApiKeysAad) + ToLowerAscii(account.name);
  ASSIGN_OR_RETURN(SecretBytes keys, hsm_.OpenWithRoot(account.sealed_api_keys, AsBytes(aad)));
  const ByteView raw = keys.Reveal(InsecureSecretAccess());
  if (raw.size() != 2 * kApiKeySize) return DataLossError("the account's API keys are corrupt");
  std::vector<SecretBytes> out;
  for (int i = 0; i < 2; ++i) {
    const std::string hex = HexEncode(raw.subspan(i * kApiKeySize, kApiKeySize));
    out.emplace_back(AsBytes(hex), InsecureSecretAccess());
  }
  return out;
}

StatusOr<Account> AccountStore::RegenerateKey(const Account& account, int which) {
  if (which != 1 && which != 2) {
    return BadField("keyName must be Key1 or Key2");
  }
  ASSIGN_OR_RETURN(std::vector<SecretBytes> keys, ListKeys(account));
  ASSIGN_OR_RETURN(SecretBytes fresh, crypto::RandomSecret(kApiKeySize));
  // Rebuild the sealed pair: the kept key's 32 raw bytes (from its hex) and the new one.
  Bytes raw;
  for (int i = 1; i <= 2; ++i) {
    if (i == which) {
      const ByteView f = fresh.Reveal(InsecureSecretAccess());
      raw.insert(raw.end(), f.begin(), f.end());
    } else {
      ASSIGN_OR_RETURN(Bytes kept,
                       HexDecode(AsStringView(keys[i - 1].Reveal(InsecureSecretAccess()))));
      raw.insert(raw.end(), kept.begin(), kept.end());
    }
  }
  SecretBytes pair(raw, InsecureSecretAccess());
  std::fill(raw.begin(), raw.end(), 0);
  Account updated = account;
  const std::string aad = std::string(kApiKeysAad) + ToLowerAscii(account.name);
  ASSIGN_OR_RETURN(updated.sealed_api_keys, hsm_.SealWithRoot(pair, AsBytes(aad)));
  const ByteView p = pair.Reveal(InsecureSecretAccess());
  for (int i = 0; i < 2; ++i) {
    updated.api_key_digests[i] =
        HexDigest(AsBytes(HexEncode(p.subspan(i * kApiKeySize, kApiKeySize))));
  }
  updated.updated_at = Now();
  const std::string value = Encode(updated).dump();
  const std::string key = ToLowerAscii(account.name);
  RETURN_IF_ERROR(WriteAccount(key, [&](storage::Transaction& txn) -> Status {
    return txn.Put(kTable, key, AsBytes(value));
  }));
  return updated;
}

bool AccountStore::CheckApiKey(const Account& account, std::string_view api_key) {
  const std::string digest = HexDigest(AsBytes(api_key));
  bool match = false;
  for (const std::string& d : account.api_key_digests) {
    match |= !d.empty() && ConstantTimeEquals(AsBytes(digest), AsBytes(d));
  }
  return match;
}

Status AccountStore::GrantApproval(std::string_view subscription_id, std::string_view kind,
                                   std::string_view granted_by) {
  auto known = OneOf(kind, kKinds);
  if (!known) return BadField("kind '" + std::string(kind) + "' is not an account kind");
  const Json value = {
      {"v", 1}, {"kind", *known}, {"granted_by", granted_by}, {"granted_at", Now()}};
  const std::string key = ToLowerAscii(subscription_id) + "/" + ToLowerAscii(*known);
  return store_.Write([&](storage::Transaction& txn) -> Status {
    return txn.Put(kApprovalTable, key, AsBytes(value.dump()));
  });
}

Status AccountStore::RevokeApproval(std::string_view subscription_id, std::string_view kind) {
  const std::string key = ToLowerAscii(subscription_id) + "/" + ToLowerAscii(kind);
  return store_.Write([&](storage::Transaction& txn) -> Status {
    Status s = txn.Delete(kApprovalTable, key);
    if (s.code() == StatusCode::kNotFound) {
      return NotFoundError("no CMK approval for kind '" + std::string(kind) + "'")
          .WithReason("ResourceNotFound");
    }
    return s;
  });
}

StatusOr<bool> AccountStore::HasApproval(std::string_view subscription_id,
                                         std::string_view kind) const {
  std::optional<storage::Record> record;
  const std::string key = ToLowerAscii(subscription_id) + "/" + ToLowerAscii(kind);
  RETURN_IF_ERROR(store_.Read([&](storage::Transaction& txn) -> Status {
    ASSIGN_OR_RETURN(record, txn.Get(kApprovalTable, key));
    return OkStatus();
  }));
  return record.has_value();
}

StatusOr<Json> AccountStore::ListApprovals(std::string_view subscription_id) const {
  std::vector<storage::Record> records;
  RETURN_IF_ERROR(store_.Read([&](storage::Transaction& txn) -> Status {
    ASSIGN_OR_RETURN(records, txn.Scan(kApprovalTable, ToLowerAscii(subscription_id) + "/", "",
                                       storage::kMaxScanLimit));
    return OkStatus();
  }));
  Json out = Json::array();
  for (const auto& r : records) {
    Json j = Json::parse(AsStringView(r.value), nullptr, false);
    if (!j.is_object()) return DataLossError("a CMK approval record is corrupt");
    out.push_back({{"kind", j.value("kind", "")},
                   {"grantedBy", j.value("granted_by", "")},
                   {"grantedAt", FormatIso8601(j.value("granted_at", int64_t{0}))}});
  }
  return out;
}

namespace {

std::string ProjectKey(const Account& account, std::string_view name) {
  return ToLowerAscii(account.name) + "/" + ToLowerAscii(name);
}

Status ProjectNotFound(std::string_view name) {
  return NotFoundError("The project '" + std::string(name) + "' was not found.")
      .WithReason("ResourceNotFound");
}

}  // namespace

StatusOr<Json> AccountStore::PutProject(const Account& account, std::string_view name,
                                        const Json& body, bool* created) {
  if (!ValidateAccountName(name).ok()) {
    return InvalidArgumentError("The project name '" + std::string(name) +
                                "' is invalid: use 2 to 64 letters, digits and hyphens.")
        .WithReason("InvalidResourceName");
  }
  if (!body.is_object()) {
    return InvalidArgumentError("the body must be a JSON object")
        .WithReason("InvalidRequestContent");
  }
  Json properties = body.value("properties", Json::object());
  if (!properties.is_object()) return BadField("properties must be an object");
  for (const char* field : {"displayName", "description"}) {
    if (properties.contains(field) && !properties[field].is_string()) {
      return BadField(std::string("properties.") + field + " must be a string");
    }
  }
  if (body.contains("tags") && !body["tags"].is_null()) {
    RETURN_IF_ERROR(keyvault::ValidateArmTags(body["tags"]));
  }
  StatusOr<Json> existing = GetProject(account, name);
  if (!existing.ok() && existing.status().code() != StatusCode::kNotFound) return existing.status();
  properties["provisioningState"] = "Succeeded";
  Json project = {
      {"id", account.ResourceId() + "/projects/" +
                 (existing.ok() ? existing->value("name", std::string(name)) : std::string(name))},
      {"name", existing.ok() ? existing->value("name", std::string(name)) : std::string(name)},
      {"type", "Microsoft.CognitiveServices/accounts/projects"},
      {"location", body.value("location", account.location)},
      {"tags", body.contains("tags") && body["tags"].is_object() ? body["tags"] : Json::object()},
      {"identity", {{"type", "None"}}},
      {"properties", properties}};
  const std::string value = project.dump();
  RETURN_IF_ERROR(store_.Write([&](storage::Transaction& txn) -> Status {
    return txn.Put(kProjectTable, ProjectKey(account, name), AsBytes(value));
  }));
  if (created != nullptr) *created = !existing.ok();
  return project;
}

StatusOr<Json> AccountStore::GetProject(const Account& account, std::string_view name) const {
  std::optional<storage::Record> record;
  if (ValidateAccountName(name).ok()) {
    RETURN_IF_ERROR(store_.Read([&](storage::Transaction& txn) -> Status {
      ASSIGN_OR_RETURN(record, txn.Get(kProjectTable, ProjectKey(account, name)));
      return OkStatus();
    }));
  }
  if (!record.has_value()) return ProjectNotFound(name);
  Json project = Json::parse(AsStringView(record->value), nullptr, false);
  if (!project.is_object()) return DataLossError("a project record is corrupt");
  return project;
}

StatusOr<std::vector<Json>> AccountStore::ListProjects(const Account& account) const {
  std::vector<storage::Record> records;
  RETURN_IF_ERROR(store_.Read([&](storage::Transaction& txn) -> Status {
    ASSIGN_OR_RETURN(records, txn.Scan(kProjectTable, ToLowerAscii(account.name) + "/", "",
                                       storage::kMaxScanLimit));
    return OkStatus();
  }));
  std::vector<Json> out;
  for (const auto& r : records) {
    Json project = Json::parse(AsStringView(r.value), nullptr, false);
    if (!project.is_object()) return DataLossError("a project record is corrupt");
    out.push_back(std::move(project));
  }
  return out;
}

Status AccountStore::DeleteProject(const Account& account, std::string_view name) {
  return store_.Write([&](storage::Transaction& txn) -> Status {
    Status s = txn.Delete(kProjectTable, ProjectKey(account, name));
    return s.code() == StatusCode::kNotFound ? ProjectNotFound(name) : s;
  });
}

Status AccountStore::DeleteProjects(const Account& account) {
  return store_.Write([&](storage::Transaction& txn) -> Status {
    ASSIGN_OR_RETURN(auto records, txn.Scan(kProjectTable, ToLowerAscii(account.name) + "/", "",
                                            storage::kMaxScanLimit));
    for (const auto& r : records) RETURN_IF_ERROR(txn.Delete(kProjectTable, r.key));
    return OkStatus();
  });
}

}  // namespace keyfoundry::foundry
