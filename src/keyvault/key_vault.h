// KeyVault: the keys of every vault of the deployment, and every operation the Azure Key Vault
// keys API offers on them. The data-plane routes and the encryption engine both call it; it
// checks access, does the work, publishes the change and audits the outcome, so no caller can
// skip a step.
//
// Each call runs, in this order (as Azure's front end does; authentication happened before):
//   1. the vault must exist and be live                        NotFound    VaultNotFound
//   2. the firewall must admit the origin                      PermissionDenied ForbiddenByFirewall
//   3. the caller needs the operation's permission: in access-policy mode a policy of the
//      vault for its object id; in RBAC mode a role assignment granting the data action at the
//      key, the vault or above                                 PermissionDenied AccessDenied |
//                                                                                ForbiddenByRbac
//   4. the operation's own checks: the key exists (KeyNotFound), is not soft-deleted (a create
//      on a deleted name: AlreadyExists ObjectIsDeletedButRecoverable), is enabled, within
//      nbf/exp and allows the operation in key_ops (PermissionDenied KeyDisabled | KeyExpired |
//      KeyNotYetValid | KeyOperationForbidden), the algorithm fits the key (InvalidArgument)
//   5. the change commits in one MetadataStore transaction, then an event is published
//   6. one audit record (operation, caller, origin, kid, result, status), success or failure.
//      A change (create, import, update, delete, recover, purge, backup, restore, rotate,
//      policy) returns once its record is durable; a use (get, list, crypto) queues its record
//      for the next group commit (AuditLog::Record), so the disk's commit rate does not bound
//      key use. A crash can lose the uses of the batch in flight, never a change's record.
// The Status's reason() carries the Azure code named above; routes turn it into the envelope.
//
// Keys and versions. A key is a name (1-127 letters, digits and '-', case-insensitive, kept as
// first created) with versions (32 lower-case hex characters, random). The latest version is
// the one created last (create, import, rotate); restore brings back the versions of a backup.
// Versions are immutable apart from their attributes, key_ops and tags.
//
// Key material at rest:
//   RSA, EC            the private key as a private JWK, sealed by the HSM root key
//                      (KeyProvider::SealWithRoot) with associated data
//                      "keyfoundry.key.v1|{vault}|{name}|{version}" (lower case), so a sealed
//                      blob cannot be moved to another key's record;
//   RSA-HSM, EC-HSM    a handle to a non-extractable key pair in the token.
// Public components are kept in clear. Unsealed private keys are cached in memory, parsed, per
// version (an LRU of kKeyCacheSize entries): versions never change their material, so the cache
// is only emptied by purges.
//
// Soft delete. Delete marks the key deleted (all versions) with deletedDate and
// scheduledPurgeDate = deletedDate + the vault's retention. A deleted key is invisible to key
// operations, listed under /deletedkeys, recovered whole, or purged (forbidden under purge
// protection: only the scheduler purges, at scheduledPurgeDate). Purge destroys the material:
// the sealed blobs are deleted and HSM objects destroyed.
//
// Backup blobs (format "KFKB", version 1), documented in docs/api.md: the magic, a version byte,
// then KeyProvider::SealWithRoot over a JSON document holding every version (public parts,
// attributes, tags and, for software keys, the private JWK; for HSM keys the token handle) with
// associated data "keyfoundry.backup.v1". Only a deployment holding the same root key can open
// one; a changed byte fails to open. HSM keys restore only while the token still holds their
// objects (the token never lets the private key out): a restored HSM key shares the pair with
// its original, and a purge destroys a pair only when no version refers to it any more.
//
// Rotation policy (api-version 7.3+): lifetime actions "Rotate" or "Notify" triggered
// timeAfterCreate or timeBeforeExpiry (ISO 8601 durations), and expiryTime, the lifetime given
// to versions made by rotation. RunScheduledTasks applies due actions and purges deleted keys
// past their scheduled purge date; the server calls it periodically.
//
// Thread safety: every method may be called from many threads at once.
#ifndef KEYFOUNDRY_KEYVAULT_KEY_VAULT_H_
#define KEYFOUNDRY_KEYVAULT_KEY_VAULT_H_

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "audit/audit_log.h"
#include "common/clock.h"
#include "common/secret_bytes.h"
#include "common/status.h"
#include "crypto/ecdsa.h"
#include "crypto/rsa.h"
#include "hsm/key_provider.h"
#include "identity/authorization.h"
#include "keyvault/events.h"
#include "keyvault/lru_cache.h"
#include "keyvault/vault.h"
#include "storage/metadata_store.h"

namespace keyfoundry::keyvault {

enum class KeyType {
  kRsa = 1,     // "RSA"
  kRsaHsm = 2,  // "RSA-HSM"
  kEc = 3,      // "EC"
  kEcHsm = 4,   // "EC-HSM"
};
std::string_view KeyTypeName(KeyType type);
std::optional<KeyType> ParseKeyType(std::string_view name);  // exact, as Azure
bool IsHsm(KeyType type);
bool IsRsa(KeyType type);

// JSON Web Key operations ("key_ops").
enum class KeyOperation {
  kEncrypt = 1,
  kDecrypt = 2,
  kSign = 3,
  kVerify = 4,
  kWrapKey = 5,
  kUnwrapKey = 6,
  kImport = 7,
};
std::string_view KeyOperationName(KeyOperation op);  // "encrypt", "wrapKey", ...
std::optional<KeyOperation> ParseKeyOperation(std::string_view name);

struct KeyAttributes {
  bool enabled = true;
  std::optional<int64_t> not_before;  // unix seconds
  std::optional<int64_t> expires;
  int64_t created = 0;
  int64_t updated = 0;
  bool exportable = false;
};

// One version of a key, as stored (without the private material, which only this class sees).
struct KeyVersion {
  std::string vault;  // the vault's name as created
  std::string name;   // as first created
  std::string version;
  KeyType type{};
  crypto::RsaPublicComponents rsa;       // RSA types
  std::optional<crypto::EcCurve> curve;  // EC types
  crypto::EcCoordinates ec;              // EC types
  std::vector<KeyOperation> key_ops;     // what the version allows
  KeyAttributes attributes;
  nlohmann::json tags = nlohmann::json::object();
  std::string hsm_platform;  // HSM types: KeyProvider::Platform()
};

struct DeletedKey {
  KeyVersion latest;
  int64_t deleted_date = 0;
  int64_t scheduled_purge_date = 0;
};

// Where the caller's settings for a key's recoverability come from.
struct Recovery {
  std::string level;  // Vault::RecoveryLevel()
  int days = 0;       // the retention
};

struct LifetimeAction {
  std::string action;              // "Rotate" | "Notify"
  std::string time_after_create;   // ISO 8601 duration, or empty
  std::string time_before_expiry;  // ISO 8601 duration, or empty
};

struct RotationPolicy {
  std::vector<LifetimeAction> lifetime_actions;
  std::string expiry_time;  // ISO 8601 duration, or empty
  int64_t created = 0;      // 0: never set (the default policy)
  int64_t updated = 0;
};

// The HTTP status the keys API answers a Status with (200 for OK; 400, 403, 404, 409, 429,
// 503; 500 for the rest).
int HttpStatusFor(const Status& status);

// Seconds in an ISO 8601 duration "PnYnMnWnDTnHnMnS" (a year is 365 days, a month 30), or
// InvalidArgument.
StatusOr<int64_t> ParseIsoDuration(std::string_view text);

// Who is asking and from where. The routes fill it from the request; the encryption engine
// from the managed identity it acts as.
struct AccessContext {
  std::string object_id;  // the caller's oid
  std::string app_id;
  std::string tenant_id;
  NetworkOrigin origin;
  std::string correlation_id;
  // "https://{vault}.vault.DOMAIN:PORT" as the caller reached the vault (from its Host): the
  // base of kids and nextLinks.
  std::string base_url;
};

struct CreateKeyParams {
  KeyType type = KeyType::kRsa;
  int key_size = 0;                                  // RSA: 2048 (default), 3072, 4096
  std::optional<crypto::EcCurve> curve;              // EC: default P-256
  std::optional<int64_t> public_exponent;            // RSA: only 65537
  std::optional<std::vector<KeyOperation>> key_ops;  // default: all the type allows
  std::optional<bool> enabled;
  std::optional<int64_t> not_before;
  std::optional<int64_t> expires;
  nlohmann::json tags = nlohmann::json::object();
};

struct ImportKeyParams {
  SecretBytes jwk;   // the JSON Web Key text with its private members
  bool hsm = false;  // "Hsm": true, or a kty of RSA-HSM / EC-HSM
  std::optional<std::vector<KeyOperation>> key_ops;
  std::optional<bool> enabled;
  std::optional<int64_t> not_before;
  std::optional<int64_t> expires;
  nlohmann::json tags = nlohmann::json::object();
};

struct UpdateKeyParams {
  std::optional<bool> enabled;
  std::optional<std::optional<int64_t>> not_before;  // set to a value, or cleared (null)
  std::optional<std::optional<int64_t>> expires;
  std::optional<std::vector<KeyOperation>> key_ops;
  std::optional<nlohmann::json> tags;
};

template <typename T>
struct Page {
  std::vector<T> items;
  std::string next_token;  // empty on the last page
};

// The JOSE algorithm names of the crypto operations.
enum class EncryptionAlgorithm { kRsaOaep = 1, kRsaOaep256 = 2, kRsa15 = 3 };
std::optional<EncryptionAlgorithm> ParseEncryptionAlgorithm(std::string_view name);
enum class SignatureAlgorithm {
  kRs256 = 1,
  kRs384,
  kRs512,
  kPs256,
  kPs384,
  kPs512,
  kEs256,
  kEs384,
  kEs512,
};
std::optional<SignatureAlgorithm> ParseSignatureAlgorithm(std::string_view name);

struct KeyOperationOutput {
  KeyVersion key;  // the version used (for its kid)
  Bytes value;
};

class KeyVault {
 public:
  static constexpr size_t kKeyCacheSize = 4096;
  static constexpr int kMaxPageSize = 25;  // Azure's maxresults limit

  // Every reference must outlive the KeyVault. `audit` may be null (tests of other things).
  KeyVault(storage::MetadataStore& store, VaultStore& vaults, identity::Authorizer& authorizer,
           hsm::KeyProvider& hsm, EventBus& events, audit::AuditLog* audit,
           const Clock& clock = Clock::Real());
  ~KeyVault();

  StatusOr<KeyVersion> CreateKey(const AccessContext& ctx, std::string_view vault,
                                 std::string_view name, const CreateKeyParams& params);
  StatusOr<KeyVersion> ImportKey(const AccessContext& ctx, std::string_view vault,
                                 std::string_view name, const ImportKeyParams& params);
  // `version` empty: the latest.
  StatusOr<KeyVersion> GetKey(const AccessContext& ctx, std::string_view vault,
                              std::string_view name, std::string_view version);
  // The latest version of each live key, by name. `max_results` 1..25 (0: 25).
  StatusOr<Page<KeyVersion>> ListKeys(const AccessContext& ctx, std::string_view vault,
                                      int max_results, std::string_view token);
  StatusOr<Page<KeyVersion>> ListVersions(const AccessContext& ctx, std::string_view vault,
                                          std::string_view name, int max_results,
                                          std::string_view token);
  // `version` empty: the latest.
  StatusOr<KeyVersion> UpdateKey(const AccessContext& ctx, std::string_view vault,
                                 std::string_view name, std::string_view version,
                                 const UpdateKeyParams& params);
  StatusOr<DeletedKey> DeleteKey(const AccessContext& ctx, std::string_view vault,
                                 std::string_view name);
  StatusOr<DeletedKey> GetDeletedKey(const AccessContext& ctx, std::string_view vault,
                                     std::string_view name);
  StatusOr<Page<DeletedKey>> ListDeletedKeys(const AccessContext& ctx, std::string_view vault,
                                             int max_results, std::string_view token);
  StatusOr<KeyVersion> RecoverDeletedKey(const AccessContext& ctx, std::string_view vault,
                                         std::string_view name);
  Status PurgeDeletedKey(const AccessContext& ctx, std::string_view vault, std::string_view name);
  // The backup blob (raw bytes; the API sends it base64url).
  StatusOr<Bytes> BackupKey(const AccessContext& ctx, std::string_view vault,
                            std::string_view name);
  StatusOr<KeyVersion> RestoreKey(const AccessContext& ctx, std::string_view vault,
                                  ByteView backup);
  StatusOr<KeyVersion> RotateKey(const AccessContext& ctx, std::string_view vault,
                                 std::string_view name);
  StatusOr<RotationPolicy> GetRotationPolicy(const AccessContext& ctx, std::string_view vault,
                                             std::string_view name);
  StatusOr<RotationPolicy> SetRotationPolicy(const AccessContext& ctx, std::string_view vault,
                                             std::string_view name, RotationPolicy policy);

  StatusOr<KeyOperationOutput> Encrypt(const AccessContext& ctx, std::string_view vault,
                                       std::string_view name, std::string_view version,
                                       EncryptionAlgorithm alg, ByteView plaintext);
  StatusOr<KeyOperationOutput> Decrypt(const AccessContext& ctx, std::string_view vault,
                                       std::string_view name, std::string_view version,
                                       EncryptionAlgorithm alg, ByteView ciphertext);
  StatusOr<KeyOperationOutput> WrapKey(const AccessContext& ctx, std::string_view vault,
                                       std::string_view name, std::string_view version,
                                       EncryptionAlgorithm alg, ByteView key);
  StatusOr<KeyOperationOutput> UnwrapKey(const AccessContext& ctx, std::string_view vault,
                                         std::string_view name, std::string_view version,
                                         EncryptionAlgorithm alg, ByteView wrapped);
  StatusOr<KeyOperationOutput> Sign(const AccessContext& ctx, std::string_view vault,
                                    std::string_view name, std::string_view version,
                                    SignatureAlgorithm alg, ByteView digest);
  // value: true or false, as Azure's KeyVerifyResult (a bad signature is not an error).
  StatusOr<bool> Verify(const AccessContext& ctx, std::string_view vault, std::string_view name,
                        std::string_view version, SignatureAlgorithm alg, ByteView digest,
                        ByteView signature);

  // The recoverability of keys in `vault` (for rendering); NotFound for an unknown vault.
  StatusOr<Recovery> RecoveryOf(std::string_view vault) const;

  // Would `ctx` pass the firewall and hold `permission` on key `name` of `vault` (access policy
  // or RBAC, as the vault says)? OK, or the status the operation itself would fail with
  // (ForbiddenByFirewall, AccessDenied, ForbiddenByRbac, VaultNotFound). Not audited: a
  // pre-flight check for the platform's own validation (enabling CMK).
  Status CheckAccess(const AccessContext& ctx, std::string_view vault, std::string_view name,
                     KeyPermission permission) const;

  // Scheduler: rotations and notifications due by policy, and purges of deleted keys and
  // deleted vaults past their date. Returns the number of actions taken.
  StatusOr<int> RunScheduledTasks();

  // Destroys every key of `vault` (live and deleted), for a vault purge.
  Status PurgeAllKeys(std::string_view vault);

 private:
  struct LoadedKey;
  struct PublicKey;

  // Steps 1-3 of the file comment; returns the vault.
  StatusOr<Vault> Authorize(const AccessContext& ctx, std::string_view vault,
                            KeyPermission permission, std::string_view key_name) const;
  // One audit record; `resource` is the vault's resource id (its name when the vault is
  // unknown). `durable`: wait for the record to commit (changes); else queue it (key uses).
  void Audit(const AccessContext& ctx, std::string_view operation, std::string_view resource,
             std::string_view key_id, const Status& status, bool durable) const;
  template <typename T, typename Fn>
  StatusOr<T> Run(const AccessContext& ctx, std::string_view operation, std::string_view vault,
                  std::string_view name, KeyPermission permission, Fn fn);

  StatusOr<KeyVersion> NewVersion(const Vault& vault, std::string_view name,
                                  const CreateKeyParams& params);
  // A new version like the latest one (type, size or curve, key_ops, tags), with the rotation
  // policy's expiryTime; no access check (the callers made it, or are the scheduler).
  StatusOr<KeyVersion> RotateNow(const Vault& vault, std::string_view name);
  StatusOr<KeyVersion> StoreNewVersion(const Vault& vault, std::string_view name,
                                       KeyVersion version, Bytes sealed, std::string hsm_handle,
                                       bool allow_existing,
                                       const std::optional<RotationPolicy>& policy);
  StatusOr<std::shared_ptr<const LoadedKey>> Load(const KeyVersion& version);
  StatusOr<std::shared_ptr<const PublicKey>> LoadPublic(const KeyVersion& version);
  StatusOr<Bytes> PublicEncrypt(const KeyVersion& version, EncryptionAlgorithm alg,
                                ByteView plaintext);
  StatusOr<KeyVersion> UsableVersion(std::string_view vault, std::string_view name,
                                     std::string_view version, KeyOperation op,
                                     std::string_view op_name);
  Status DestroyMaterial(std::string_view vault, std::string_view name);

  storage::MetadataStore& store_;
  VaultStore& vaults_;
  identity::Authorizer& authorizer_;
  hsm::KeyProvider& hsm_;
  EventBus& events_;
  audit::AuditLog* audit_;
  const Clock& clock_;

  // Parsed keys by "{vault}/{name}/{version}" (lower case): private ones (unsealed), and
  // public ones (validated). Versions never change their material; purges erase entries.
  LruCache<LoadedKey> private_keys_{kKeyCacheSize};
  LruCache<PublicKey> public_keys_{kKeyCacheSize};

  // Every key write goes through Write, which bumps generation_ before and after; the cache of
  // versions read for crypto operations (UsableVersion) trusts only entries of the current
  // generation, for at most kVersionCacheTtl.
  Status Write(const storage::TransactionFn& fn);
  static constexpr std::chrono::seconds kVersionCacheTtl{1};
  struct CachedVersion {
    KeyVersion version;
    uint64_t generation = 0;
    std::chrono::steady_clock::time_point loaded;
  };
  std::atomic<uint64_t> generation_{0};
  LruCache<CachedVersion> versions_{kKeyCacheSize};
};

}  // namespace keyfoundry::keyvault

#endif  // KEYFOUNDRY_KEYVAULT_KEY_VAULT_H_
