#include "encryption/account_keys.h"

#include <cstdio>
#include <future>
#include <nlohmann/json.hpp>
#include <utility>

#include "common/encoding.h"
#include "common/logging.h"
#include "crypto/random.h"
#include "hsm/key_provider.h"

namespace keyfoundry::encryption {
namespace {

using nlohmann::json;

constexpr std::string_view kStateTable = "account_keys";
constexpr std::string_view kGenerationTable = "account_generations";
constexpr std::string_view kUsageTable = "generation_usage";
constexpr size_t kGenerationKeySize = 32;
constexpr int kFormatVersion = 1;

std::string GenerationKeyOf(std::string_view account, uint64_t number) {
  char digits[24];
  (void)std::snprintf(digits, sizeof(digits), "%020llu", static_cast<unsigned long long>(number));
  return std::string(account) + "/" + digits;
}

std::string_view SourceName(GenerationSource source) {
  switch (source) {
    case GenerationSource::kServiceManaged:
      return "Microsoft.CognitiveServices";
    case GenerationSource::kCustomerManaged:
      return "Microsoft.KeyVault";
  }
  return "";
}

// The lower-case host of a URI "https://host[:port]/...", or "" when it has none.
std::string HostOf(std::string_view uri) {
  constexpr std::string_view kScheme = "https://";
  if (!uri.starts_with(kScheme)) return "";
  uri.remove_prefix(kScheme.size());
  std::string host(uri.substr(0, uri.find_first_of(":/")));
  for (char& c : host) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return host;
}

std::string Serialize(const json& j) { return j.dump(); }

StatusOr<json> Parse(ByteView value, std::string_view what) {
  json j = json::parse(value.begin(), value.end(), nullptr, false);
  if (!j.is_object() || j.value("v", 0) != kFormatVersion) {
    return DataLossError("a stored " + std::string(what) + " record is unreadable");
  }
  return j;
}

json GenerationToJson(const Generation& g) {
  json j = {{"v", kFormatVersion},
            {"number", g.number},
            {"source", SourceName(g.source)},
            {"wrapped", Base64UrlEncode(g.wrapped)},
            {"created", g.created}};
  if (g.source == GenerationSource::kCustomerManaged) {
    j["kid"] = g.kid;
    j["alg"] = g.algorithm;
    j["identity"] = {{"oid", g.identity.object_id},
                     {"appid", g.identity.client_id},
                     {"tid", g.identity.tenant_id},
                     {"resource", g.identity.resource_id}};
  }
  return j;
}

StatusOr<Generation> GenerationFromJson(const json& j) {
  Generation g;
  try {
    g.number = j.at("number").get<uint64_t>();
    const std::string source = j.at("source").get<std::string>();
    g.source = source == SourceName(GenerationSource::kCustomerManaged)
                   ? GenerationSource::kCustomerManaged
                   : GenerationSource::kServiceManaged;
    ASSIGN_OR_RETURN(g.wrapped, Base64UrlDecode(j.at("wrapped").get<std::string>()));
    g.created = j.at("created").get<int64_t>();
    if (g.source == GenerationSource::kCustomerManaged) {
      g.kid = j.at("kid").get<std::string>();
      g.algorithm = j.at("alg").get<std::string>();
      const json& id = j.at("identity");
      g.identity = {id.at("oid").get<std::string>(), id.at("appid").get<std::string>(),
                    id.at("tid").get<std::string>(), id.at("resource").get<std::string>()};
    }
  } catch (const json::exception&) {
    return DataLossError("a stored account key generation is unreadable");
  }
  return g;
}

std::string ServiceManagedAad(std::string_view account, uint64_t number) {
  return "keyfoundry/account-key/v1|" + std::string(account) + "|" + std::to_string(number);
}

// The algorithm for a customer key: RSA-OAEP-256 where the key's platform supports it.
// SoftHSM2 2.6 has no OAEP with SHA-256 for token keys, so HSM keys use RSA-OAEP (SHA-1
// OAEP, still approved for key transport).
std::string_view WrapAlgorithmFor(std::string_view kty) {
  return kty == "RSA-HSM" ? "RSA-OAEP" : "RSA-OAEP-256";
}

// The status a caller sees for a generation that cannot be unwrapped: 403 material (the vault
// refused), or Unavailable (it could not be asked).
Status InaccessibleStatus(std::string_view kid, std::string_view reason,
                          std::string_view vault_message, bool unavailable) {
  std::string message = "The customer-managed key " + std::string(kid) + " cannot be used (" +
                        std::string(reason) + ")";
  if (!vault_message.empty()) message += ": " + std::string(vault_message);
  if (unavailable) return UnavailableError(message).WithReason(std::string(reason));
  return PermissionDeniedError(message).WithReason(std::string(reason));
}

}  // namespace

std::string_view GenerationStateName(GenerationState state) {
  switch (state) {
    case GenerationState::kAccessible:
      return "Accessible";
    case GenerationState::kInaccessible:
      return "KeyInaccessible";
    case GenerationState::kUnknown:
      return "Unknown";
  }
  return "";
}

AccountKeys::AccountKeys(storage::MetadataStore& store, hsm::KeyProvider& hsm, VaultResolver vaults,
                         const Clock& clock, AccountKeysOptions options)
    : store_(store), hsm_(hsm), vaults_(std::move(vaults)), clock_(clock), options_(options) {}

StatusOr<Bytes> AccountKeys::SealServiceManaged(std::string_view account, uint64_t number,
                                                const SecretBytes& key) {
  return hsm_.SealWithRoot(key, AsBytes(ServiceManagedAad(account, number)));
}

StatusOr<SecretBytes> AccountKeys::OpenServiceManaged(std::string_view account, uint64_t number,
                                                      ByteView wrapped) {
  return hsm_.OpenWithRoot(wrapped, AsBytes(ServiceManagedAad(account, number)));
}

StatusOr<Generation> AccountKeys::NewServiceManaged(std::string_view account, uint64_t number) {
  ASSIGN_OR_RETURN(SecretBytes key, crypto::RandomSecret(kGenerationKeySize));
  Generation g;
  g.number = number;
  g.source = GenerationSource::kServiceManaged;
  g.created = UnixSeconds(clock_);
  ASSIGN_OR_RETURN(g.wrapped, SealServiceManaged(account, number, key));
  return g;
}

Status AccountKeys::CreateServiceManaged(std::string_view account) {
  ASSIGN_OR_RETURN(Generation g, NewServiceManaged(account, 1));
  const std::string state = Serialize({{"v", kFormatVersion}, {"active", 1}, {"next", 2}});
  const std::string record = Serialize(GenerationToJson(g));
  return store_.Write([&](storage::Transaction& txn) -> Status {
    RETURN_IF_ERROR(txn.Insert(kStateTable, account, AsBytes(state)));
    return txn.Insert(kGenerationTable, GenerationKeyOf(account, 1), AsBytes(record));
  });
}

StatusOr<Generation> AccountKeys::RotateServiceManaged(std::string_view account) {
  // The number is sealed into the wrapped key's associated data, so it is chosen first and the
  // write checks that no other generation took it meanwhile (then it tries again).
  for (int attempt = 0; attempt < 8; ++attempt) {
    AccountState state;
    ASSIGN_OR_RETURN(auto record, ReadState(account, &state));
    if (!record.has_value()) return NotFoundError("the account has no keys");
    ASSIGN_OR_RETURN(Generation active, ReadGeneration(account, state.active));
    if (active.source != GenerationSource::kServiceManaged) {
      return FailedPreconditionError(
                 "the account's data is under a customer-managed key: rotate that key, or update "
                 "the account to another key of its vault")
          .WithReason("CmkToServiceManagedNotSupported");
    }
    ASSIGN_OR_RETURN(Generation g, NewServiceManaged(account, state.next));
    Status stored = store_.Write([&](storage::Transaction& txn) -> Status {
      ASSIGN_OR_RETURN(auto current, txn.Get(kStateTable, account));
      if (!current.has_value()) return NotFoundError("the account has no keys");
      ASSIGN_OR_RETURN(json j, Parse(current->value, "account key state"));
      if (j.value("next", uint64_t{1}) != g.number) return AbortedError("raced");
      j["active"] = g.number;
      j["next"] = g.number + 1;
      RETURN_IF_ERROR(txn.Update(kStateTable, account, AsBytes(Serialize(j)), current->version));
      return txn.Insert(kGenerationTable, GenerationKeyOf(account, g.number),
                        AsBytes(Serialize(GenerationToJson(g))));
    });
    if (stored.code() == StatusCode::kAborted) continue;
    RETURN_IF_ERROR(stored);
    Log(LogLevel::kInfo, "account_keys.generation_added",
        {{"account", std::string(account)},
         {"generation", std::to_string(g.number)},
         {"source", std::string(SourceName(g.source))}});
    return g;
  }
  return AbortedError("the account's keys kept changing; try again");
}

StatusOr<std::optional<storage::Record>> AccountKeys::ReadState(std::string_view account,
                                                                AccountState* out) {
  std::optional<storage::Record> record;
  RETURN_IF_ERROR(store_.Read([&](storage::Transaction& txn) -> Status {
    ASSIGN_OR_RETURN(record, txn.Get(kStateTable, account));
    return OkStatus();
  }));
  if (!record.has_value()) return record;
  ASSIGN_OR_RETURN(json j, Parse(record->value, "account key state"));
  out->active = j.value("active", uint64_t{0});
  out->next = j.value("next", uint64_t{1});
  out->follow.reset();
  if (j.contains("follow")) {
    out->follow =
        KeyReference{j["follow"].value("vault_uri", ""), j["follow"].value("name", ""), ""};
  }
  return record;
}

StatusOr<Generation> AccountKeys::ReadGeneration(std::string_view account, uint64_t number) {
  std::optional<storage::Record> record;
  RETURN_IF_ERROR(store_.Read([&](storage::Transaction& txn) -> Status {
    ASSIGN_OR_RETURN(record, txn.Get(kGenerationTable, GenerationKeyOf(account, number)));
    return OkStatus();
  }));
  if (!record.has_value()) {
    return NotFoundError("the account has no key generation " + std::to_string(number));
  }
  ASSIGN_OR_RETURN(json j, Parse(record->value, "account key generation"));
  return GenerationFromJson(j);
}

StatusOr<Generation> AccountKeys::ActiveGeneration(std::string_view account) {
  AccountState state;
  ASSIGN_OR_RETURN(auto record, ReadState(account, &state));
  if (!record.has_value()) return NotFoundError("the account has no keys");
  return ReadGeneration(account, state.active);
}

StatusOr<Generation> AccountKeys::AddCustomerManaged(std::string_view account,
                                                     const ActingIdentity& who,
                                                     const KeyReference& key) {
  VaultClient* client = vaults_(key.vault_uri);
  if (client == nullptr) {
    return InvalidArgumentError("no key vault is reachable at " + key.vault_uri)
        .WithReason("VaultNotFound");
  }
  ASSIGN_OR_RETURN(VaultKeyInfo info, client->GetKey(who, key));
  const std::string algorithm(WrapAlgorithmFor(info.kty));
  ASSIGN_OR_RETURN(SecretBytes secret, crypto::RandomSecret(kGenerationKeySize));
  ASSIGN_OR_RETURN(WrappedKey wrapped, client->WrapKey(who, key, algorithm, secret));
  // The probe: the identity must also be able to unwrap, or the data would be unreadable.
  ASSIGN_OR_RETURN(SecretBytes back, client->UnwrapKey(who, wrapped.kid, algorithm, wrapped.value));
  if (!(back == secret)) {
    return InternalError("the key vault's unwrapkey did not return what wrapkey wrapped");
  }

  Generation g;
  g.source = GenerationSource::kCustomerManaged;
  g.kid = wrapped.kid;
  g.algorithm = algorithm;
  g.identity = who;
  g.wrapped = std::move(wrapped.value);
  g.created =
      std::chrono::duration_cast<std::chrono::seconds>(clock_.Now().time_since_epoch()).count();
  std::optional<KeyReference> follow;
  if (key.version.empty()) follow = KeyReference{key.vault_uri, key.name, ""};
  ASSIGN_OR_RETURN(Generation stored, StoreGeneration(account, std::move(g), follow));

  ASSIGN_OR_RETURN(GenerationKey generation_key,
                   GenerationKey::New(stored.number, std::move(secret)));
  CacheEntry entry;
  entry.key = std::make_shared<const GenerationKey>(std::move(generation_key));
  entry.vault_host = HostOf(stored.kid);
  entry.checked_at = stored.created;
  entry.expires = clock_.Now() + options_.cache_ttl;
  MutexLock lock(&mutex_);
  cache_[GenerationKeyOf(account, stored.number)] = std::move(entry);
  follow_checks_[std::string(account)] = clock_.Now() + options_.cache_ttl;
  return stored;
}

StatusOr<Generation> AccountKeys::StoreGeneration(std::string_view account, Generation generation,
                                                  std::optional<KeyReference> follow) {
  RETURN_IF_ERROR(store_.Write([&](storage::Transaction& txn) -> Status {
    ASSIGN_OR_RETURN(auto record, txn.Get(kStateTable, account));
    if (!record.has_value()) return NotFoundError("the account has no keys");
    ASSIGN_OR_RETURN(json state, Parse(record->value, "account key state"));
    generation.number = state.value("next", uint64_t{1});
    state["active"] = generation.number;
    state["next"] = generation.number + 1;
    state.erase("follow");
    if (follow.has_value())
      state["follow"] = {{"vault_uri", follow->vault_uri}, {"name", follow->name}};
    RETURN_IF_ERROR(txn.Update(kStateTable, account, AsBytes(Serialize(state)), record->version));
    return txn.Insert(kGenerationTable, GenerationKeyOf(account, generation.number),
                      AsBytes(Serialize(GenerationToJson(generation))));
  }));
  Log(LogLevel::kInfo, "account_keys.generation_added",
      {{"account", std::string(account)},
       {"generation", std::to_string(generation.number)},
       {"source", std::string(SourceName(generation.source))},
       {"kid", generation.kid}});
  return generation;
}

Status AccountKeys::FollowLatest(std::string_view account, const AccountState& state) {
  const auto now = clock_.Now();
  {
    MutexLock lock(&mutex_);
    auto it = follow_checks_.find(std::string(account));
    if (it != follow_checks_.end() && it->second > now) return OkStatus();
    follow_checks_[std::string(account)] = now + options_.cache_ttl;
  }
  ASSIGN_OR_RETURN(Generation active, ReadGeneration(account, state.active));
  if (active.source != GenerationSource::kCustomerManaged) return OkStatus();
  VaultClient* client = vaults_(state.follow->vault_uri);
  if (client == nullptr) return OkStatus();
  StatusOr<VaultKeyInfo> latest = client->GetKey(active.identity, *state.follow);
  // An inaccessible key shows when the active generation is unwrapped; nothing to follow.
  if (!latest.ok() || latest->kid == active.kid) return OkStatus();
  StatusOr<Generation> added = AddCustomerManaged(account, active.identity, *state.follow);
  if (!added.ok()) {
    Log(LogLevel::kWarning, "account_keys.follow_failed",
        {{"account", std::string(account)}, {"error", added.status().ToString()}});
  }
  return OkStatus();
}

StatusOr<std::shared_ptr<const GenerationKey>> AccountKeys::Active(std::string_view account) {
  AccountState state;
  ASSIGN_OR_RETURN(auto record, ReadState(account, &state));
  if (!record.has_value()) return NotFoundError("the account has no keys");
  if (state.follow.has_value()) {
    RETURN_IF_ERROR(FollowLatest(account, state));
    ASSIGN_OR_RETURN(record, ReadState(account, &state));
  }
  return Get(account, state.active);
}

StatusOr<std::shared_ptr<const GenerationKey>> AccountKeys::Get(std::string_view account,
                                                                uint64_t number) {
  const std::string cache_key = GenerationKeyOf(account, number);
  std::shared_future<KeyResult> running;
  std::promise<KeyResult> mine;
  {
    MutexLock lock(&mutex_);
    auto it = cache_.find(cache_key);
    if (it != cache_.end() && it->second.expires > clock_.Now()) {
      if (it->second.key != nullptr) return it->second.key;
    }
    auto [flight, first] = in_flight_.try_emplace(cache_key, mine.get_future().share());
    if (!first) running = flight->second;
  }
  if (running.valid()) return running.get();  // another request is unwrapping it: its answer

  KeyResult result = InternalError("the unwrap failed unexpectedly");
  // Ends the flight and hands waiters `result`, also when an exception leaves (the caller
  // then gets the exception, the waiters the failure).
  const auto land = [&] {
    {
      MutexLock lock(&mutex_);
      in_flight_.erase(cache_key);
    }
    mine.set_value(result);
  };
  try {
    StatusOr<Generation> generation = ReadGeneration(account, number);
    result = generation.ok() ? Unwrap(account, *generation) : KeyResult(generation.status());
  } catch (...) {
    land();
    throw;
  }
  land();
  return result;
}

bool AccountKeys::IsCached(std::string_view account, uint64_t number) {
  MutexLock lock(&mutex_);
  auto it = cache_.find(GenerationKeyOf(account, number));
  return it != cache_.end() && it->second.expires > clock_.Now();
}

StatusOr<std::shared_ptr<const GenerationKey>> AccountKeys::Unwrap(std::string_view account,
                                                                   const Generation& generation) {
  const std::string cache_key = GenerationKeyOf(account, generation.number);
  const auto now = clock_.Now();
  const int64_t now_seconds =
      std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count();
  CacheEntry entry;
  entry.checked_at = now_seconds;

  StatusOr<SecretBytes> secret = InternalError("unreachable");
  if (generation.source == GenerationSource::kServiceManaged) {
    secret = OpenServiceManaged(account, generation.number, generation.wrapped);
    if (!secret.ok()) return secret.status();
  } else {
    entry.vault_host = HostOf(generation.kid);
    {
      // A recent refusal is answered from the cache.
      MutexLock lock(&mutex_);
      auto it = cache_.find(cache_key);
      if (it != cache_.end() && it->second.key == nullptr && it->second.expires > now) {
        return InaccessibleStatus(generation.kid, it->second.reason, it->second.message,
                                  it->second.reason == "VaultUnavailable");
      }
    }
    StatusOr<KeyReference> ref = ParseKid(generation.kid);
    VaultClient* client = ref.ok() ? vaults_(ref->vault_uri) : nullptr;
    if (client == nullptr) {
      secret = NotFoundError("no key vault is reachable at this key's address")
                   .WithReason("VaultNotFound");
    } else {
      secret = client->UnwrapKey(generation.identity, generation.kid, generation.algorithm,
                                 generation.wrapped);
    }
    if (!secret.ok()) {
      const Status& s = secret.status();
      const bool unavailable =
          s.code() == StatusCode::kUnavailable || s.code() == StatusCode::kDeadlineExceeded;
      entry.reason = unavailable                                ? "VaultUnavailable"
                     : !s.reason().empty()                      ? s.reason()
                     : s.code() == StatusCode::kUnauthenticated ? "Unauthenticated"
                                                                : "KeyInaccessible";
      entry.message = s.message();
      entry.expires = now + options_.negative_ttl;
      Status result = InaccessibleStatus(generation.kid, entry.reason, entry.message, unavailable);
      Log(LogLevel::kWarning, "account_keys.key_inaccessible",
          {{"account", std::string(account)},
           {"generation", std::to_string(generation.number)},
           {"kid", generation.kid},
           {"reason", entry.reason}});
      MutexLock lock(&mutex_);
      cache_[cache_key] = std::move(entry);
      return result;
    }
  }
  ASSIGN_OR_RETURN(GenerationKey key, GenerationKey::New(generation.number, *std::move(secret)));
  entry.key = std::make_shared<const GenerationKey>(std::move(key));
  entry.expires = now + options_.cache_ttl;
  std::shared_ptr<const GenerationKey> result = entry.key;
  MutexLock lock(&mutex_);
  cache_[cache_key] = std::move(entry);
  return result;
}

StatusOr<std::vector<GenerationReport>> AccountKeys::Report(std::string_view account, bool check) {
  AccountState state;
  ASSIGN_OR_RETURN(auto record, ReadState(account, &state));
  if (!record.has_value()) return NotFoundError("the account has no keys");
  std::vector<storage::Record> generations;
  std::vector<storage::Record> usage;
  const std::string prefix = std::string(account) + "/";
  RETURN_IF_ERROR(store_.Read([&](storage::Transaction& txn) -> Status {
    generations.clear();
    usage.clear();
    for (std::string after;;) {
      ASSIGN_OR_RETURN(auto page,
                       txn.Scan(kGenerationTable, prefix, after, storage::kMaxScanLimit));
      for (auto& r : page) generations.push_back(std::move(r));
      if (page.size() < storage::kMaxScanLimit) break;
      after = generations.back().key;
    }
    for (std::string after;;) {
      ASSIGN_OR_RETURN(auto page, txn.Scan(kUsageTable, prefix, after, storage::kMaxScanLimit));
      for (auto& r : page) usage.push_back(std::move(r));
      if (page.size() < storage::kMaxScanLimit) break;
      after = usage.back().key;
    }
    return OkStatus();
  }));
  std::map<std::string, json> usage_by_key;
  for (const auto& r : usage) {
    ASSIGN_OR_RETURN(usage_by_key[r.key], Parse(r.value, "generation usage"));
  }

  std::vector<GenerationReport> out;
  for (const auto& r : generations) {
    ASSIGN_OR_RETURN(json j, Parse(r.value, "account key generation"));
    GenerationReport report;
    ASSIGN_OR_RETURN(report.generation, GenerationFromJson(j));
    report.active = report.generation.number == state.active;
    if (auto it = usage_by_key.find(r.key); it != usage_by_key.end()) {
      report.objects = it->second.value("objects", int64_t{0});
      report.bytes = it->second.value("bytes", int64_t{0});
    }
    const auto now = clock_.Now();
    std::optional<CacheEntry> cached;
    {
      MutexLock lock(&mutex_);
      auto it = cache_.find(r.key);
      if (it != cache_.end() && it->second.expires > now) cached = it->second;
    }
    if (!cached.has_value() && check) {
      (void)Unwrap(account, report.generation);
      MutexLock lock(&mutex_);
      if (auto it = cache_.find(r.key); it != cache_.end()) cached = it->second;
    }
    if (cached.has_value()) {
      report.state =
          cached->key != nullptr ? GenerationState::kAccessible : GenerationState::kInaccessible;
      report.reason = cached->reason;
      report.message = cached->message;
      report.checked_at = cached->checked_at;
    }
    out.push_back(std::move(report));
  }
  return out;
}

void AccountKeys::Invalidate(std::string_view vault_host) {
  MutexLock lock(&mutex_);
  for (auto it = cache_.begin(); it != cache_.end();) {
    const bool customer = !it->second.vault_host.empty();
    if (customer && (vault_host.empty() || it->second.vault_host == vault_host)) {
      it = cache_.erase(it);
    } else {
      ++it;
    }
  }
  follow_checks_.clear();
}

StatusOr<int> AccountKeys::RecheckInaccessible() {
  std::vector<std::string> keys;
  {
    MutexLock lock(&mutex_);
    for (const auto& [key, entry] : cache_) {
      if (entry.key == nullptr) keys.push_back(key);
    }
  }
  int recovered = 0;
  for (const std::string& key : keys) {
    const size_t slash = key.rfind('/');
    const std::string account = key.substr(0, slash);
    const uint64_t number = std::stoull(key.substr(slash + 1));
    {
      MutexLock lock(&mutex_);
      auto it = cache_.find(key);
      if (it == cache_.end() || it->second.key != nullptr) continue;
      cache_.erase(it);  // retry now, whatever the negative TTL says
    }
    if (Get(account, number).ok()) {
      ++recovered;
      Log(LogLevel::kInfo, "account_keys.key_accessible_again",
          {{"account", account}, {"generation", std::to_string(number)}});
    }
  }
  return recovered;
}

Status AccountKeys::Retire(std::string_view account, uint64_t number) {
  const std::string key = GenerationKeyOf(account, number);
  RETURN_IF_ERROR(store_.Write([&](storage::Transaction& txn) -> Status {
    ASSIGN_OR_RETURN(auto state, txn.Get(kStateTable, account));
    if (!state.has_value()) return NotFoundError("the account has no keys");
    ASSIGN_OR_RETURN(json j, Parse(state->value, "account key state"));
    if (j.value("active", uint64_t{0}) == number) {
      return FailedPreconditionError("Generation " + std::to_string(number) +
                                     " is the active one: new data is sealed under it.")
          .WithReason("GenerationInUse");
    }
    ASSIGN_OR_RETURN(auto generation, txn.Get(kGenerationTable, key));
    if (!generation.has_value()) {
      return NotFoundError("The account has no key generation " + std::to_string(number) + ".")
          .WithReason("GenerationNotFound");
    }
    ASSIGN_OR_RETURN(auto usage, txn.Get(kUsageTable, key));
    if (usage.has_value()) {
      ASSIGN_OR_RETURN(json u, Parse(usage->value, "generation usage"));
      const int64_t objects = u.value("objects", int64_t{0});
      if (objects > 0) {
        return FailedPreconditionError("Generation " + std::to_string(number) + " still protects " +
                                       std::to_string(objects) +
                                       " objects: reprocess them to the active generation first.")
            .WithReason("GenerationInUse");
      }
      RETURN_IF_ERROR(txn.Delete(kUsageTable, key));
    }
    return txn.Delete(kGenerationTable, key);
  }));
  {
    MutexLock lock(&mutex_);
    cache_.erase(key);
  }
  Log(LogLevel::kInfo, "account_keys.generation_retired",
      {{"account", std::string(account)}, {"generation", std::to_string(number)}});
  return OkStatus();
}

Status AccountKeys::DeleteAccount(std::string_view account) {
  const std::string prefix = std::string(account) + "/";
  RETURN_IF_ERROR(store_.Write([&](storage::Transaction& txn) -> Status {
    for (std::string_view table : {kGenerationTable, kUsageTable}) {
      while (true) {
        ASSIGN_OR_RETURN(auto page, txn.Scan(table, prefix, "", storage::kMaxScanLimit));
        for (const auto& r : page) RETURN_IF_ERROR(txn.Delete(table, r.key));
        if (page.size() < storage::kMaxScanLimit) break;
      }
    }
    ASSIGN_OR_RETURN(auto state, txn.Get(kStateTable, account));
    if (state.has_value()) RETURN_IF_ERROR(txn.Delete(kStateTable, account));
    return OkStatus();
  }));
  MutexLock lock(&mutex_);
  for (auto it = cache_.lower_bound(prefix); it != cache_.end() && it->first.starts_with(prefix);) {
    it = cache_.erase(it);
  }
  follow_checks_.erase(std::string(account));
  return OkStatus();
}

Status AccountKeys::AddUsage(storage::Transaction& txn, std::string_view account, uint64_t number,
                             int64_t objects, int64_t bytes) {
  const std::string key = GenerationKeyOf(account, number);
  ASSIGN_OR_RETURN(auto record, txn.Get(kUsageTable, key));
  if (objects > 0 && !record.has_value()) {
    // The first object of a generation: it must exist (not retired meanwhile).
    ASSIGN_OR_RETURN(auto generation, txn.Get(kGenerationTable, key));
    if (!generation.has_value()) {
      return FailedPreconditionError("key generation " + std::to_string(number) +
                                     " was retired: upload again");
    }
  }
  json usage = {{"v", kFormatVersion}, {"objects", 0}, {"bytes", 0}};
  if (record.has_value()) {
    ASSIGN_OR_RETURN(usage, Parse(record->value, "generation usage"));
  }
  usage["objects"] = usage.value("objects", int64_t{0}) + objects;
  usage["bytes"] = usage.value("bytes", int64_t{0}) + bytes;
  return txn.Put(kUsageTable, key, AsBytes(Serialize(usage)));
}

}  // namespace keyfoundry::encryption
