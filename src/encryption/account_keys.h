// AccountKeys: the middle of the key hierarchy (BRIEF §4) — each account's key generations,
// the cache of unwrapped generation keys, rotation, revocation and the key-usage report.
//
// Generations. An account has generations 1, 2, ...; exactly one is active (new data is sealed
// under it). Each is a random AES-256 key, stored only wrapped:
//   service-managed  sealed under the HSM root key (KeyProvider::SealWithRoot), with associated
//                    data "keyfoundry/account-key/v1|{account}|{generation}";
//   customer-managed wrapped by the customer's RSA key through the vault's wrapkey, acting as
//                    the account's managed identity, with the exact key version (kid) and the
//                    algorithm kept beside it.
// Rotation (a new key or key version) adds a generation and makes it active; older ones stay
// wrapped under their own keys, so old data keeps needing the old key (S6) until reprocessed.
// When the account follows its key's latest version (keyVersion empty), a new version of that
// key adds a generation at the next use (at once in the built-in vault, through its event
// bus; within the cache TTL for a remote vault).
//
// Cache and revocation. An unwrapped generation key is cached (in locked memory, zeroized when
// dropped) for `cache_ttl`; at expiry the next use unwraps again through the vault, which is
// where a revocation is noticed. A failed unwrap marks the generation KeyInaccessible with the
// vault's reason (AccessDenied, KeyDisabled, KeyNotFound, ForbiddenByFirewall, ...) and is
// itself cached for `negative_ttl`, so a revoked key does not cost a vault call per request.
// One unwrap per generation is in flight at a time: requests that miss the cache while it runs
// wait for its result rather than each asking the vault (so a busy account costs one unwrapkey
// per TTL, not one per thread at every expiry).
// Invalidate (called from the built-in vault's event bus) drops both, so revocation and
// restoration there take effect at the next use. RecheckInaccessible retries every
// inaccessible generation (the scheduler calls it) so that the status recovers by itself.
//
// Usage. Every object records which generation seals it (its key block names it); the owner
// of the objects keeps per-generation counts with AddUsage, in the same transaction as the
// object's metadata, and Report reads them back (the key-usage report).
//
// Storage (MetadataStore tables; JSON values with "v": 1):
//   account_keys        {account}                  {active, next, follow{vault_uri, name}}
//   account_generations {account}/{generation:020} the Generation
//   generation_usage    {account}/{generation:020} {objects, bytes}
//
// Errors: PermissionDenied (reason from the vault, message naming the key) when a generation
// cannot be unwrapped because of the customer's key or its access rules; NotFound for an
// unknown account or generation; Unavailable when the vault cannot be reached.
//
// Thread safety: all methods may be called from many threads at once.
#ifndef KEYFOUNDRY_ENCRYPTION_ACCOUNT_KEYS_H_
#define KEYFOUNDRY_ENCRYPTION_ACCOUNT_KEYS_H_

#include <chrono>
#include <cstdint>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/clock.h"
#include "common/mutex.h"
#include "common/status.h"
#include "encryption/envelope.h"
#include "encryption/vault_client.h"
#include "storage/metadata_store.h"

namespace keyfoundry::hsm {
class KeyProvider;
}  // namespace keyfoundry::hsm

namespace keyfoundry::encryption {

enum class GenerationSource {
  kServiceManaged = 1,   // keySource Microsoft.CognitiveServices
  kCustomerManaged = 2,  // keySource Microsoft.KeyVault
};

struct Generation {
  uint64_t number = 0;
  GenerationSource source{};
  // Customer-managed: the key version that wraps it, the algorithm, and who unwraps it.
  std::string kid;
  std::string algorithm;
  ActingIdentity identity;
  Bytes wrapped;
  int64_t created = 0;  // unix seconds
};

enum class GenerationState {
  kAccessible = 1,    // unwrapped (now or within the cache TTL)
  kInaccessible = 2,  // the vault refused: see reason
  kUnknown = 3,       // not checked yet
};

struct GenerationReport {
  Generation generation;
  bool active = false;
  GenerationState state = GenerationState::kUnknown;
  std::string reason;   // kInaccessible: Azure's reason ("AccessDenied", "KeyDisabled", ...)
  std::string message;  // kInaccessible: the vault's message
  int64_t checked_at = 0;
  int64_t objects = 0;  // what it protects
  int64_t bytes = 0;
};

// "KeyInaccessible", "Accessible", "Unknown".
std::string_view GenerationStateName(GenerationState state);

struct AccountKeysOptions {
  std::chrono::seconds cache_ttl{60};
  std::chrono::seconds negative_ttl{5};
};

class AccountKeys {
 public:
  // Which client reaches the vault at a vault URI; nullptr when none does (the URI is then
  // refused with InvalidArgument, reason "VaultNotFound").
  using VaultResolver = std::function<VaultClient*(std::string_view vault_uri)>;

  // Every reference must outlive this object.
  AccountKeys(storage::MetadataStore& store, hsm::KeyProvider& hsm, VaultResolver vaults,
              const Clock& clock, AccountKeysOptions options = {});

  // An account's first generation, service-managed and active. AlreadyExists when it has one.
  Status CreateServiceManaged(std::string_view account);

  // Adds a new service-managed generation and makes it active (rotation of the platform's
  // key for an account that does not use a customer-managed key). FailedPrecondition when the
  // active generation is customer-managed: such an account rotates its own key (S5, S6).
  StatusOr<Generation> RotateServiceManaged(std::string_view account);

  // Wraps a new generation under `key` as `who`, unwraps it again (the probe that proves the
  // identity holds get, wrapKey and unwrapKey), then stores it as the active one. With an empty
  // key.version the account follows the key's latest version from now on. Fails (storing
  // nothing) with the vault's status when the wrap or the probe fails.
  StatusOr<Generation> AddCustomerManaged(std::string_view account, const ActingIdentity& who,
                                          const KeyReference& key);

  // The active generation's key, unwrapping it if the cache has none. When the account
  // follows a key's latest version and a newer version exists, a generation under it is added
  // first.
  StatusOr<std::shared_ptr<const GenerationKey>> Active(std::string_view account);
  // The key of generation `number` (to read an object sealed under it).
  StatusOr<std::shared_ptr<const GenerationKey>> Get(std::string_view account, uint64_t number);
  // Whether Get(account, number) would answer from the cache (the key, or a recent refusal)
  // rather than ask the vault. Never blocks on the vault.
  bool IsCached(std::string_view account, uint64_t number);

  // Every generation with its state and usage; `check` unwraps those whose state is not
  // cached (so the report is current), otherwise states come from the cache only.
  StatusOr<std::vector<GenerationReport>> Report(std::string_view account, bool check);

  // The active generation's number and whether the account is customer-managed.
  StatusOr<Generation> ActiveGeneration(std::string_view account);

  // Drops cached keys and states of generations wrapped by keys in `vault_host` (lower-case
  // host of the vault URI; empty: all), and marks followed keys there for a version check.
  void Invalidate(std::string_view vault_host);

  // Tries every generation known to be inaccessible again; returns how many recovered.
  StatusOr<int> RecheckInaccessible();

  // Retires generation `number` once it protects nothing: its wrapped key and usage are
  // deleted (crypto-shredding what it protected, which is nothing), and it leaves the report.
  // FailedPrecondition (reason "GenerationInUse") while it is active or protects objects;
  // NotFound (reason "GenerationNotFound") for an unknown one. From then on an object can no
  // longer be committed under it (AddUsage refuses), so an upload racing a rotation fails
  // rather than landing under a retired key.
  Status Retire(std::string_view account, uint64_t number);

  // Deletes an account's generations and usage, and drops its cache entries.
  Status DeleteAccount(std::string_view account);

  // Adds to the usage counts of a generation, in the caller's transaction. FailedPrecondition
  // when objects are added to a generation that does not exist (retired).
  static Status AddUsage(storage::Transaction& txn, std::string_view account, uint64_t number,
                         int64_t objects, int64_t bytes);

 private:
  struct CacheEntry {
    std::shared_ptr<const GenerationKey> key;  // null when inaccessible
    std::string vault_host;                    // customer-managed: where its key lives
    std::string reason;
    std::string message;
    int64_t checked_at = 0;
    std::chrono::system_clock::time_point expires;  // by clock_
  };
  struct AccountState {
    uint64_t active = 0;
    uint64_t next = 1;
    std::optional<KeyReference> follow;  // versionless: the key whose latest version is used
  };

  StatusOr<std::optional<storage::Record>> ReadState(std::string_view account, AccountState* out);
  StatusOr<Generation> ReadGeneration(std::string_view account, uint64_t number);
  StatusOr<std::shared_ptr<const GenerationKey>> Unwrap(std::string_view account,
                                                        const Generation& generation);
  StatusOr<Generation> StoreGeneration(std::string_view account, Generation generation,
                                       std::optional<KeyReference> follow);
  // Adds a generation under the followed key's latest version when it changed.
  Status FollowLatest(std::string_view account, const AccountState& state);
  // A new random service-managed generation `number`, sealed under the HSM root (not stored).
  StatusOr<Generation> NewServiceManaged(std::string_view account, uint64_t number);
  StatusOr<Bytes> SealServiceManaged(std::string_view account, uint64_t number,
                                     const SecretBytes& key);
  StatusOr<SecretBytes> OpenServiceManaged(std::string_view account, uint64_t number,
                                           ByteView wrapped);

  storage::MetadataStore& store_;
  hsm::KeyProvider& hsm_;
  VaultResolver vaults_;
  const Clock& clock_;
  const AccountKeysOptions options_;

  using KeyResult = StatusOr<std::shared_ptr<const GenerationKey>>;

  Mutex mutex_;
  std::map<std::string, CacheEntry> cache_ GUARDED_BY(mutex_);  // "{account}/{generation}"
  // The unwraps running now, by cache key; Get's misses wait on them.
  std::map<std::string, std::shared_future<KeyResult>> in_flight_ GUARDED_BY(mutex_);
  // Accounts whose followed key must be checked for a newer version, by when.
  std::map<std::string, std::chrono::system_clock::time_point> follow_checks_ GUARDED_BY(mutex_);
};

}  // namespace keyfoundry::encryption

#endif  // KEYFOUNDRY_ENCRYPTION_ACCOUNT_KEYS_H_
