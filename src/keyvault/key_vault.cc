#include "keyvault/key_vault.h"

#include <algorithm>
#include <charconv>
#include <variant>

#include "common/encoding.h"
#include "common/logging.h"
#include "common/strings.h"
#include "crypto/jwk.h"
#include "crypto/random.h"

namespace keyfoundry::keyvault {
namespace {

constexpr std::string_view kKeysTable = "kv_keys";
constexpr std::string_view kVersionsTable = "kv_key_versions";
// "{hsm handle}/{vault}/{name}/{version}" -> "": which versions use a token key pair. A restore
// into another vault shares the pair (the token never lets it out), so a purge destroys the
// pair only when no other version refers to it.
constexpr std::string_view kHsmRefsTable = "kv_hsm_refs";
constexpr std::string_view kBackupMagic = "KFKB";
constexpr uint8_t kBackupVersion = 1;
constexpr std::string_view kBackupAad = "keyfoundry.backup.v1";
constexpr size_t kMaxKeyNameSize = 127;
constexpr size_t kMaxKeyTags = 15;  // Azure's limit on tags per key
constexpr size_t kMaxVersionsPerBackup = 1000;

Status KeyNotFound(std::string_view name, std::string_view version = {}) {
  std::string what =
      version.empty() ? std::string(name) : std::string(name) + "/" + std::string(version);
  return NotFoundError("A key with (name/id) " + what +
                       " was not found in this key vault. If you recently deleted this key you "
                       "may be able to recover it using the correct recovery command.")
      .WithReason("KeyNotFound");
}

Status BadParameter(std::string message) {
  return InvalidArgumentError(std::move(message)).WithReason("BadParameter");
}

Status ValidateKeyName(std::string_view name) {
  if (name.empty() || name.size() > kMaxKeyNameSize) {
    return BadParameter("A key name is 1 to 127 characters long.");
  }
  for (char c : name) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-') {
      return BadParameter("The key name '" + std::string(name) +
                          "' is invalid: use only letters, digits and '-'.");
    }
  }
  return OkStatus();
}

Status ValidateVersion(std::string_view version) {
  if (version.size() != 32 || !std::all_of(version.begin(), version.end(), [](char c) {
        return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
      })) {
    return NotFoundError("A key version is 32 hexadecimal characters; '" +
                         std::string(version.substr(0, 64)) + "' is not one.")
        .WithReason("KeyNotFound");
  }
  return OkStatus();
}

std::string RecordKey(std::string_view vault, std::string_view name) {
  return ToLowerAscii(vault) + "/" + ToLowerAscii(name);
}
std::string VersionKey(std::string_view vault, std::string_view name, std::string_view version) {
  return RecordKey(vault, name) + "/" + ToLowerAscii(version);
}
std::string SealAad(std::string_view vault, std::string_view name, std::string_view version) {
  return "keyfoundry.key.v1|" + ToLowerAscii(vault) + "|" + ToLowerAscii(name) + "|" +
         ToLowerAscii(version);
}

const char* CurveName(crypto::EcCurve curve) { return crypto::EcCurveName(curve); }
std::optional<crypto::EcCurve> ParseCurve(std::string_view name) {
  if (name == "P-256") return crypto::EcCurve::kP256;
  if (name == "P-384") return crypto::EcCurve::kP384;
  if (name == "P-521") return crypto::EcCurve::kP521;
  return std::nullopt;
}

std::vector<KeyOperation> DefaultOps(KeyType type) {
  if (IsRsa(type)) {
    return {KeyOperation::kEncrypt, KeyOperation::kDecrypt, KeyOperation::kSign,
            KeyOperation::kVerify,  KeyOperation::kWrapKey, KeyOperation::kUnwrapKey};
  }
  return {KeyOperation::kSign, KeyOperation::kVerify};
}

Status CheckOps(KeyType type, const std::vector<KeyOperation>& ops) {
  for (KeyOperation op : ops) {
    bool fits = IsRsa(type) || op == KeyOperation::kSign || op == KeyOperation::kVerify ||
                op == KeyOperation::kImport;
    if (!fits) {
      return BadParameter("The key operation '" + std::string(KeyOperationName(op)) +
                          "' is not supported by key type " + std::string(KeyTypeName(type)) + ".");
    }
  }
  return OkStatus();
}

// --- stored JSON

nlohmann::json AttributesToJson(const KeyAttributes& a) {
  nlohmann::json j = {{"enabled", a.enabled},
                      {"created", a.created},
                      {"updated", a.updated},
                      {"exportable", a.exportable}};
  if (a.not_before) j["nbf"] = *a.not_before;
  if (a.expires) j["exp"] = *a.expires;
  return j;
}

KeyAttributes AttributesFromJson(const nlohmann::json& j) {
  KeyAttributes a;
  a.enabled = j.value("enabled", true);
  a.created = j.value("created", int64_t{0});
  a.updated = j.value("updated", int64_t{0});
  a.exportable = j.value("exportable", false);
  if (j.contains("nbf")) a.not_before = j["nbf"].get<int64_t>();
  if (j.contains("exp")) a.expires = j["exp"].get<int64_t>();
  return a;
}

nlohmann::json OpsToJson(const std::vector<KeyOperation>& ops) {
  nlohmann::json out = nlohmann::json::array();
  for (KeyOperation op : ops) out.push_back(KeyOperationName(op));
  return out;
}

std::vector<KeyOperation> OpsFromJson(const nlohmann::json& j) {
  std::vector<KeyOperation> ops;
  for (const auto& v : j) {
    if (auto op = ParseKeyOperation(v.get<std::string>())) ops.push_back(*op);
  }
  return ops;
}

// The stored form of a version: the public parts, and the material reference.
struct StoredVersion {
  KeyVersion version;
  Bytes sealed;            // software keys
  std::string hsm_handle;  // HSM keys
};

nlohmann::json VersionToJson(const StoredVersion& s) {
  const KeyVersion& v = s.version;
  nlohmann::json j = {{"v", 1},
                      {"vault", v.vault},
                      {"name", v.name},
                      {"version", v.version},
                      {"kty", KeyTypeName(v.type)},
                      {"key_ops", OpsToJson(v.key_ops)},
                      {"attributes", AttributesToJson(v.attributes)},
                      {"tags", v.tags}};
  if (IsRsa(v.type)) {
    j["n"] = Base64UrlEncode(v.rsa.n);
    j["e"] = Base64UrlEncode(v.rsa.e);
  } else if (v.curve) {
    j["crv"] = CurveName(*v.curve);
    j["x"] = Base64UrlEncode(v.ec.x);
    j["y"] = Base64UrlEncode(v.ec.y);
  }
  if (!s.sealed.empty()) j["sealed"] = Base64UrlEncode(s.sealed);
  if (!s.hsm_handle.empty()) {
    j["hsm"] = s.hsm_handle;
    j["hsmPlatform"] = v.hsm_platform;
  }
  return j;
}

StatusOr<StoredVersion> VersionFromJson(const nlohmann::json& j) {
  if (!j.is_object() || j.value("v", 0) != 1) return DataLossError("unknown key version record");
  try {
    StoredVersion s;
    KeyVersion& v = s.version;
    v.vault = j.at("vault").get<std::string>();
    v.name = j.at("name").get<std::string>();
    v.version = j.at("version").get<std::string>();
    auto type = ParseKeyType(j.at("kty").get<std::string>());
    if (!type) return DataLossError("unknown key type in a stored key");
    v.type = *type;
    v.key_ops = OpsFromJson(j.at("key_ops"));
    v.attributes = AttributesFromJson(j.at("attributes"));
    v.tags = j.value("tags", nlohmann::json::object());
    if (IsRsa(v.type)) {
      ASSIGN_OR_RETURN(v.rsa.n, Base64UrlDecode(j.at("n").get<std::string>()));
      ASSIGN_OR_RETURN(v.rsa.e, Base64UrlDecode(j.at("e").get<std::string>()));
    } else {
      v.curve = ParseCurve(j.at("crv").get<std::string>());
      if (!v.curve) return DataLossError("unknown curve in a stored key");
      ASSIGN_OR_RETURN(v.ec.x, Base64UrlDecode(j.at("x").get<std::string>()));
      ASSIGN_OR_RETURN(v.ec.y, Base64UrlDecode(j.at("y").get<std::string>()));
    }
    if (j.contains("sealed")) {
      ASSIGN_OR_RETURN(s.sealed, Base64UrlDecode(j["sealed"].get<std::string>()));
    }
    if (j.contains("hsm")) {
      s.hsm_handle = j["hsm"].get<std::string>();
      v.hsm_platform = j.value("hsmPlatform", "");
    }
    return s;
  } catch (const nlohmann::json::exception&) {
    return DataLossError("malformed key version record");
  }
}

}  // namespace

namespace {

// The per-name record: which version is latest, deletion, rotation policy.
struct KeyRecord {
  std::string vault;
  std::string name;
  std::string latest;
  std::optional<int64_t> deleted_date;
  int64_t scheduled_purge_date = 0;
  std::optional<RotationPolicy> policy;
  int64_t last_notified = 0;  // the latest version's Notify action, when done

  nlohmann::json ToJson() const {
    nlohmann::json j = {{"v", 1}, {"vault", vault}, {"name", name}, {"latest", latest}};
    if (deleted_date) {
      j["deletedDate"] = *deleted_date;
      j["scheduledPurgeDate"] = scheduled_purge_date;
    }
    if (policy) {
      nlohmann::json actions = nlohmann::json::array();
      for (const LifetimeAction& a : policy->lifetime_actions) {
        actions.push_back({{"action", a.action},
                           {"timeAfterCreate", a.time_after_create},
                           {"timeBeforeExpiry", a.time_before_expiry}});
      }
      j["policy"] = {{"actions", actions},
                     {"expiryTime", policy->expiry_time},
                     {"created", policy->created},
                     {"updated", policy->updated}};
    }
    if (last_notified != 0) j["lastNotified"] = last_notified;
    return j;
  }

  static StatusOr<KeyRecord> FromBytes(ByteView bytes) {
    nlohmann::json j = nlohmann::json::parse(AsStringView(bytes), nullptr, false);
    if (!j.is_object() || j.value("v", 0) != 1) return DataLossError("unknown key record");
    try {
      KeyRecord r;
      r.vault = j.at("vault").get<std::string>();
      r.name = j.at("name").get<std::string>();
      r.latest = j.at("latest").get<std::string>();
      if (j.contains("deletedDate")) {
        r.deleted_date = j["deletedDate"].get<int64_t>();
        r.scheduled_purge_date = j.value("scheduledPurgeDate", int64_t{0});
      }
      if (j.contains("policy")) {
        RotationPolicy p;
        for (const auto& a : j["policy"].at("actions")) {
          p.lifetime_actions.push_back({a.at("action").get<std::string>(),
                                        a.value("timeAfterCreate", ""),
                                        a.value("timeBeforeExpiry", "")});
        }
        p.expiry_time = j["policy"].value("expiryTime", "");
        p.created = j["policy"].value("created", int64_t{0});
        p.updated = j["policy"].value("updated", int64_t{0});
        r.policy = std::move(p);
      }
      r.last_notified = j.value("lastNotified", int64_t{0});
      return r;
    } catch (const nlohmann::json::exception&) {
      return DataLossError("malformed key record");
    }
  }
};

}  // namespace

// An unsealed private key, parsed, or a handle to one in the token.
struct KeyVault::LoadedKey {
  std::variant<std::monostate, crypto::RsaPrivateKey, crypto::EcPrivateKey> software;
  std::string hsm_handle;
};

// A version's public key, parsed and validated.
struct KeyVault::PublicKey {
  std::variant<std::monostate, crypto::RsaPublicKey, crypto::EcPublicKey> key;
};

namespace {

StatusOr<std::optional<KeyRecord>> ReadRecord(storage::Transaction& tx, std::string_view vault,
                                              std::string_view name) {
  ASSIGN_OR_RETURN(auto rec, tx.Get(kKeysTable, RecordKey(vault, name)));
  if (!rec) return std::optional<KeyRecord>();
  ASSIGN_OR_RETURN(auto record, KeyRecord::FromBytes(rec->value));
  return std::optional<KeyRecord>(std::move(record));
}

StatusOr<std::optional<StoredVersion>> ReadVersion(storage::Transaction& tx, std::string_view vault,
                                                   std::string_view name,
                                                   std::string_view version) {
  ASSIGN_OR_RETURN(auto rec, tx.Get(kVersionsTable, VersionKey(vault, name, version)));
  if (!rec) return std::optional<StoredVersion>();
  nlohmann::json j = nlohmann::json::parse(AsStringView(rec->value), nullptr, false);
  ASSIGN_OR_RETURN(StoredVersion s, VersionFromJson(j));
  return std::optional<StoredVersion>(std::move(s));
}

Status WriteJson(storage::Transaction& tx, std::string_view table, std::string_view key,
                 const nlohmann::json& j) {
  std::string text = j.dump();
  return tx.Put(table, key, AsBytes(text));
}

std::string_view PermissionAction(KeyPermission permission) {
  switch (permission) {
    case KeyPermission::kEncrypt:
      return "Microsoft.KeyVault/vaults/keys/encrypt/action";
    case KeyPermission::kDecrypt:
      return "Microsoft.KeyVault/vaults/keys/decrypt/action";
    case KeyPermission::kWrapKey:
      return "Microsoft.KeyVault/vaults/keys/wrap/action";
    case KeyPermission::kUnwrapKey:
      return "Microsoft.KeyVault/vaults/keys/unwrap/action";
    case KeyPermission::kSign:
      return "Microsoft.KeyVault/vaults/keys/sign/action";
    case KeyPermission::kVerify:
      return "Microsoft.KeyVault/vaults/keys/verify/action";
    case KeyPermission::kGet:
    case KeyPermission::kList:
      return "Microsoft.KeyVault/vaults/keys/read";
    case KeyPermission::kCreate:
      return "Microsoft.KeyVault/vaults/keys/create/action";
    case KeyPermission::kUpdate:
      return "Microsoft.KeyVault/vaults/keys/update/action";
    case KeyPermission::kImport:
      return "Microsoft.KeyVault/vaults/keys/import/action";
    case KeyPermission::kDelete:
      return "Microsoft.KeyVault/vaults/keys/delete";
    case KeyPermission::kBackup:
      return "Microsoft.KeyVault/vaults/keys/backup/action";
    case KeyPermission::kRestore:
      return "Microsoft.KeyVault/vaults/keys/restore/action";
    case KeyPermission::kRecover:
      return "Microsoft.KeyVault/vaults/keys/recover/action";
    case KeyPermission::kPurge:
      return "Microsoft.KeyVault/vaults/keys/purge/action";
    case KeyPermission::kRelease:
      return "Microsoft.KeyVault/vaults/keys/release/action";
    case KeyPermission::kRotate:
      return "Microsoft.KeyVault/vaults/keys/rotate/action";
    case KeyPermission::kGetRotationPolicy:
      return "Microsoft.KeyVault/vaults/keyrotationpolicies/read";
    case KeyPermission::kSetRotationPolicy:
      return "Microsoft.KeyVault/vaults/keyrotationpolicies/write";
  }
  return "";
}

// Whether an operation needing `permission` changes the vault (its audit record must be
// durable before the answer) or only uses a key.
bool IsChange(KeyPermission permission) {
  switch (permission) {
    case KeyPermission::kEncrypt:
    case KeyPermission::kDecrypt:
    case KeyPermission::kWrapKey:
    case KeyPermission::kUnwrapKey:
    case KeyPermission::kSign:
    case KeyPermission::kVerify:
    case KeyPermission::kGet:
    case KeyPermission::kList:
    case KeyPermission::kGetRotationPolicy:
      return false;
    case KeyPermission::kCreate:
    case KeyPermission::kUpdate:
    case KeyPermission::kImport:
    case KeyPermission::kDelete:
    case KeyPermission::kBackup:
    case KeyPermission::kRestore:
    case KeyPermission::kRecover:
    case KeyPermission::kPurge:
    case KeyPermission::kRelease:
    case KeyPermission::kRotate:
    case KeyPermission::kSetRotationPolicy:
      return true;
  }
  return true;
}

std::string CallerText(const AccessContext& ctx) {
  return "appid=" + (ctx.app_id.empty() ? std::string("-") : ctx.app_id) + ";oid=" + ctx.object_id +
         ";iss=tenant/" + ctx.tenant_id;
}

bool Allows(const KeyVersion& v, KeyOperation op) {
  return std::find(v.key_ops.begin(), v.key_ops.end(), op) != v.key_ops.end();
}

crypto::RsaPadding Padding(EncryptionAlgorithm alg) {
  switch (alg) {
    case EncryptionAlgorithm::kRsaOaep:
      return crypto::RsaPadding::kOaepSha1;
    case EncryptionAlgorithm::kRsaOaep256:
      return crypto::RsaPadding::kOaepSha256;
    case EncryptionAlgorithm::kRsa15:
      return crypto::RsaPadding::kPkcs1v15;
  }
  return crypto::RsaPadding::kOaepSha256;
}

struct SignatureParams {
  bool rsa = true;
  crypto::RsaSignatureScheme scheme = crypto::RsaSignatureScheme::kPkcs1v15;
  crypto::HashAlgorithm hash = crypto::HashAlgorithm::kSha256;
  std::optional<crypto::EcCurve> curve;  // ES*: the curve JOSE pairs with it
};

SignatureParams ParamsOf(SignatureAlgorithm alg) {
  using crypto::HashAlgorithm;
  using crypto::RsaSignatureScheme;
  switch (alg) {
    case SignatureAlgorithm::kRs256:
      return {true, RsaSignatureScheme::kPkcs1v15, HashAlgorithm::kSha256, std::nullopt};
    case SignatureAlgorithm::kRs384:
      return {true, RsaSignatureScheme::kPkcs1v15, HashAlgorithm::kSha384, std::nullopt};
    case SignatureAlgorithm::kRs512:
      return {true, RsaSignatureScheme::kPkcs1v15, HashAlgorithm::kSha512, std::nullopt};
    case SignatureAlgorithm::kPs256:
      return {true, RsaSignatureScheme::kPss, HashAlgorithm::kSha256, std::nullopt};
    case SignatureAlgorithm::kPs384:
      return {true, RsaSignatureScheme::kPss, HashAlgorithm::kSha384, std::nullopt};
    case SignatureAlgorithm::kPs512:
      return {true, RsaSignatureScheme::kPss, HashAlgorithm::kSha512, std::nullopt};
    case SignatureAlgorithm::kEs256:
      return {false, RsaSignatureScheme::kPkcs1v15, HashAlgorithm::kSha256, crypto::EcCurve::kP256};
    case SignatureAlgorithm::kEs384:
      return {false, RsaSignatureScheme::kPkcs1v15, HashAlgorithm::kSha384, crypto::EcCurve::kP384};
    case SignatureAlgorithm::kEs512:
      return {false, RsaSignatureScheme::kPkcs1v15, HashAlgorithm::kSha512, crypto::EcCurve::kP521};
  }
  return {};
}

}  // namespace

// --------------------------------------------------------------------------- names

std::string_view KeyTypeName(KeyType type) {
  switch (type) {
    case KeyType::kRsa:
      return "RSA";
    case KeyType::kRsaHsm:
      return "RSA-HSM";
    case KeyType::kEc:
      return "EC";
    case KeyType::kEcHsm:
      return "EC-HSM";
  }
  return "";
}

std::optional<KeyType> ParseKeyType(std::string_view name) {
  if (name == "RSA") return KeyType::kRsa;
  if (name == "RSA-HSM") return KeyType::kRsaHsm;
  if (name == "EC") return KeyType::kEc;
  if (name == "EC-HSM") return KeyType::kEcHsm;
  return std::nullopt;
}

bool IsHsm(KeyType type) { return type == KeyType::kRsaHsm || type == KeyType::kEcHsm; }
bool IsRsa(KeyType type) { return type == KeyType::kRsa || type == KeyType::kRsaHsm; }

std::string_view KeyOperationName(KeyOperation op) {
  switch (op) {
    case KeyOperation::kEncrypt:
      return "encrypt";
    case KeyOperation::kDecrypt:
      return "decrypt";
    case KeyOperation::kSign:
      return "sign";
    case KeyOperation::kVerify:
      return "verify";
    case KeyOperation::kWrapKey:
      return "wrapKey";
    case KeyOperation::kUnwrapKey:
      return "unwrapKey";
    case KeyOperation::kImport:
      return "import";
  }
  return "";
}

std::optional<KeyOperation> ParseKeyOperation(std::string_view name) {
  for (KeyOperation op :
       {KeyOperation::kEncrypt, KeyOperation::kDecrypt, KeyOperation::kSign, KeyOperation::kVerify,
        KeyOperation::kWrapKey, KeyOperation::kUnwrapKey, KeyOperation::kImport}) {
    if (EqualsIgnoreCase(name, KeyOperationName(op))) return op;
  }
  return std::nullopt;
}

std::optional<EncryptionAlgorithm> ParseEncryptionAlgorithm(std::string_view name) {
  if (name == "RSA-OAEP") return EncryptionAlgorithm::kRsaOaep;
  if (name == "RSA-OAEP-256") return EncryptionAlgorithm::kRsaOaep256;
  if (name == "RSA1_5") return EncryptionAlgorithm::kRsa15;
  return std::nullopt;
}

std::optional<SignatureAlgorithm> ParseSignatureAlgorithm(std::string_view name) {
  static constexpr std::pair<std::string_view, SignatureAlgorithm> kNames[] = {
      {"RS256", SignatureAlgorithm::kRs256}, {"RS384", SignatureAlgorithm::kRs384},
      {"RS512", SignatureAlgorithm::kRs512}, {"PS256", SignatureAlgorithm::kPs256},
      {"PS384", SignatureAlgorithm::kPs384}, {"PS512", SignatureAlgorithm::kPs512},
      {"ES256", SignatureAlgorithm::kEs256}, {"ES384", SignatureAlgorithm::kEs384},
      {"ES512", SignatureAlgorithm::kEs512}};
  for (const auto& [n, alg] : kNames) {
    if (n == name) return alg;
  }
  return std::nullopt;
}

int HttpStatusFor(const Status& status) {
  switch (status.code()) {
    case StatusCode::kOk:
      return 200;
    case StatusCode::kInvalidArgument:
    case StatusCode::kOutOfRange:
      return 400;
    case StatusCode::kUnauthenticated:
      return 401;
    case StatusCode::kPermissionDenied:
      return 403;
    case StatusCode::kNotFound:
      return 404;
    case StatusCode::kAlreadyExists:
    case StatusCode::kAborted:
    case StatusCode::kFailedPrecondition:
      return 409;
    case StatusCode::kResourceExhausted:
      return 429;
    case StatusCode::kUnavailable:
    case StatusCode::kDeadlineExceeded:
      return 503;
    case StatusCode::kCancelled:
    case StatusCode::kUnknown:
    case StatusCode::kUnimplemented:
    case StatusCode::kInternal:
    case StatusCode::kDataLoss:
      return 500;
  }
  return 500;
}

StatusOr<int64_t> ParseIsoDuration(std::string_view text) {
  const Status bad = BadParameter("'" + std::string(text.substr(0, 64)) +
                                  "' is not an ISO 8601 duration such as P90D, P1Y or PT12H.");
  if (text.size() < 3 || text.size() > 64 || text[0] != 'P') return bad;
  int64_t total = 0;
  bool in_time = false;
  bool any = false;
  bool any_time = false;
  size_t i = 1;
  while (i < text.size()) {
    if (text[i] == 'T') {
      if (in_time) return bad;
      in_time = true;
      ++i;
      continue;
    }
    size_t start = i;
    while (i < text.size() && text[i] >= '0' && text[i] <= '9') ++i;
    if (i == start || i == text.size() || i - start > 9) return bad;
    int64_t n = 0;
    std::from_chars(text.data() + start, text.data() + i, n);
    int64_t unit = 0;
    switch (text[i]) {
      case 'Y':
        unit = in_time ? 0 : 365 * 86400;
        break;
      case 'M':
        unit = in_time ? 60 : 30 * 86400;
        break;
      case 'W':
        unit = in_time ? 0 : 7 * 86400;
        break;
      case 'D':
        unit = in_time ? 0 : 86400;
        break;
      case 'H':
        unit = in_time ? 3600 : 0;
        break;
      case 'S':
        unit = in_time ? 1 : 0;
        break;
      default:
        return bad;
    }
    if (unit == 0) return bad;
    total += n * unit;
    any = true;
    any_time = any_time || in_time;
    ++i;
  }
  if (!any || (in_time && !any_time)) return bad;
  return total;
}

// --------------------------------------------------------------------------- KeyVault

KeyVault::KeyVault(storage::MetadataStore& store, VaultStore& vaults,
                   identity::Authorizer& authorizer, hsm::KeyProvider& hsm, EventBus& events,
                   audit::AuditLog* audit, const Clock& clock)
    : store_(store),
      vaults_(vaults),
      authorizer_(authorizer),
      hsm_(hsm),
      events_(events),
      audit_(audit),
      clock_(clock) {}

KeyVault::~KeyVault() = default;

Status KeyVault::Write(const storage::TransactionFn& fn) {
  generation_.fetch_add(1, std::memory_order_acq_rel);
  Status status = store_.Write(fn);
  generation_.fetch_add(1, std::memory_order_acq_rel);
  return status;
}

StatusOr<Vault> KeyVault::Authorize(const AccessContext& ctx, std::string_view vault_name,
                                    KeyPermission permission, std::string_view key_name) const {
  ASSIGN_OR_RETURN(Vault vault, vaults_.Get(vault_name));
  RETURN_IF_ERROR(CheckFirewall(vault, ctx.origin));
  if (vault.rbac_authorization) {
    std::string scope = vault.ResourceId();
    if (!key_name.empty()) scope += "/keys/" + std::string(key_name);
    const std::string_view action = PermissionAction(permission);
    ASSIGN_OR_RETURN(
        identity::Decision decision,
        authorizer_.Decide(ctx.object_id, scope, action, identity::ActionType::kDataAction));
    if (!decision.allowed) {
      return PermissionDeniedError(
                 "Caller is not authorized to perform action on resource.\r\n"
                 "If role assignments were changed recently, retry in a moment.\r\n"
                 "Caller: " +
                 CallerText(ctx) + "\r\nAction: '" + std::string(action) + "'\r\nResource: '" +
                 ToLowerAscii(scope) +
                 "'\r\nAssignment: (not found)\r\n"
                 "Vault: " +
                 vault.name + ";location=" + vault.location)
          .WithReason("ForbiddenByRbac");
    }
    return vault;
  }
  if (!PolicyGrants(vault, ctx.object_id, permission)) {
    // set-policy replaces the principal's permissions: the hint keeps the ones it has.
    std::string permissions;
    for (const AccessPolicy& policy : vault.access_policies) {
      if (!EqualsIgnoreCase(policy.object_id, ctx.object_id) || !policy.application_id.empty()) {
        continue;
      }
      for (KeyPermission p : policy.keys) permissions += std::string(KeyPermissionName(p)) + " ";
    }
    permissions += std::string(KeyPermissionName(permission));
    return PermissionDeniedError(
               "The user, group or application '" + CallerText(ctx) + "' does not have keys " +
               std::string(KeyPermissionName(permission)) + " permission on key vault '" +
               vault.name + ";location=" + vault.location +
               "'. Grant it with an access policy (kf keyvault set-policy --name " + vault.name +
               " --object-id " + ctx.object_id + " --key-permissions " + permissions + ").")
        .WithReason("AccessDenied");
  }
  return vault;
}

Status KeyVault::CheckAccess(const AccessContext& ctx, std::string_view vault,
                             std::string_view name, KeyPermission permission) const {
  return Authorize(ctx, vault, permission, name).status();
}

void KeyVault::Audit(const AccessContext& ctx, std::string_view operation,
                     std::string_view resource, std::string_view key_id, const Status& status,
                     bool durable) const {
  if (audit_ == nullptr) return;
  audit::AuditEvent event;
  event.operation = std::string(operation);
  event.category = "KeyVaultDataPlane";
  event.caller_object_id = ctx.object_id;
  event.caller_app_id = ctx.app_id;
  event.client_address = ctx.origin.client_address;
  event.resource_id = std::string(resource);
  event.key_id = std::string(key_id);
  event.result = status.ok() ? "Success" : "Failure";
  event.status = HttpStatusFor(status);
  event.correlation_id = ctx.correlation_id;
  if (!status.ok()) {
    event.detail =
        status.reason().empty() ? std::string(StatusCodeName(status.code())) : status.reason();
  }
  // Changes wait for their record to commit; uses (reads, crypto) queue theirs, so the disk's
  // commit rate does not bound them (AuditLog::Record).
  Status appended = durable ? audit_->Append(std::move(event)) : audit_->Record(std::move(event));
  if (!appended.ok()) {
    Log(LogLevel::kError, "audit.append_failed",
        {{"operation", std::string(operation)}, {"error", appended.ToString()}});
  }
}

namespace {
std::string KidOf(const AccessContext& ctx, const KeyVersion& v) {
  return ctx.base_url + "/keys/" + v.name + "/" + v.version;
}
}  // namespace

template <typename T, typename Fn>
StatusOr<T> KeyVault::Run(const AccessContext& ctx, std::string_view operation,
                          std::string_view vault, std::string_view name, KeyPermission permission,
                          Fn fn) {
  std::string resource_id;
  StatusOr<T> result = [&]() -> StatusOr<T> {
    if (!name.empty()) RETURN_IF_ERROR(ValidateKeyName(name));
    ASSIGN_OR_RETURN(Vault v, Authorize(ctx, vault, permission, name));
    resource_id = v.ResourceId();
    return fn(v);
  }();
  std::string kid;
  if constexpr (std::is_same_v<T, KeyVersion>) {
    if (result.ok()) kid = KidOf(ctx, *result);
  } else if constexpr (std::is_same_v<T, KeyOperationOutput>) {
    if (result.ok()) kid = KidOf(ctx, result->key);
  } else if constexpr (std::is_same_v<T, DeletedKey>) {
    if (result.ok()) kid = KidOf(ctx, result->latest);
  }
  if (kid.empty() && !name.empty()) kid = ctx.base_url + "/keys/" + std::string(name);
  Audit(ctx, operation, resource_id.empty() ? vault : std::string_view(resource_id), kid,
        result.status(), IsChange(permission));
  return result;
}

StatusOr<Recovery> KeyVault::RecoveryOf(std::string_view vault) const {
  ASSIGN_OR_RETURN(Vault v, vaults_.GetAny(vault));
  return Recovery{v.RecoveryLevel(), v.soft_delete_retention_days};
}

// Makes the key material of a new version (not yet stored).
StatusOr<KeyVersion> KeyVault::NewVersion(const Vault& vault, std::string_view name,
                                          const CreateKeyParams& params) {
  if (IsHsm(params.type) && !EqualsIgnoreCase(vault.sku, "premium")) {
    return BadParameter("The vault '" + vault.name +
                        "' has the standard sku: " + std::string(KeyTypeName(params.type)) +
                        " keys need a premium vault (kf keyvault update --sku premium).");
  }
  KeyVersion v;
  v.vault = vault.name;
  v.name = std::string(name);
  v.type = params.type;
  std::vector<KeyOperation> ops = params.key_ops.value_or(DefaultOps(params.type));
  RETURN_IF_ERROR(CheckOps(params.type, ops));
  v.key_ops = ops;
  const int64_t now = UnixSeconds(clock_);
  v.attributes.enabled = params.enabled.value_or(true);
  v.attributes.not_before = params.not_before;
  v.attributes.expires = params.expires;
  v.attributes.created = now;
  v.attributes.updated = now;
  if (params.tags.is_object() && params.tags.size() > kMaxKeyTags) {
    return BadParameter("A key has at most 15 tags.");
  }
  v.tags = params.tags.is_object() ? params.tags : nlohmann::json::object();
  ASSIGN_OR_RETURN(Bytes id, crypto::RandomBytes(16));
  v.version = HexEncode(id);
  return v;
}

StatusOr<KeyVersion> KeyVault::StoreNewVersion(const Vault& vault, std::string_view name,
                                               KeyVersion version, Bytes sealed,
                                               std::string hsm_handle, bool allow_existing,
                                               const std::optional<RotationPolicy>& policy) {
  StoredVersion stored{version, std::move(sealed), std::move(hsm_handle)};
  Status written = Write([&](storage::Transaction& tx) -> Status {
    ASSIGN_OR_RETURN(auto record, ReadRecord(tx, vault.name, name));
    if (record && record->deleted_date) {
      return AlreadyExistsError("Key " + std::string(name) +
                                " is currently in a deleted but recoverable state, and its name "
                                "cannot be reused; in this state, the key can only be recovered "
                                "or purged.")
          .WithReason("ObjectIsDeletedButRecoverable");
    }
    if (record && !allow_existing) return KeyNotFound(name);
    KeyRecord r = record ? *record : KeyRecord{};
    if (!record) {
      r.vault = vault.name;
      r.name = std::string(name);
    }
    stored.version.name = r.name;
    r.latest = stored.version.version;
    if (policy) r.policy = policy;
    RETURN_IF_ERROR(WriteJson(tx, kVersionsTable,
                              VersionKey(vault.name, name, stored.version.version),
                              VersionToJson(stored)));
    if (!stored.hsm_handle.empty()) {
      RETURN_IF_ERROR(tx.Put(
          kHsmRefsTable,
          stored.hsm_handle + "/" + VersionKey(vault.name, name, stored.version.version), {}));
    }
    return WriteJson(tx, kKeysTable, RecordKey(vault.name, name), r.ToJson());
  });
  if (!written.ok()) {
    // The new material is not referenced by anything: destroy it.
    if (!stored.hsm_handle.empty()) (void)hsm_.Destroy(stored.hsm_handle);
    return written;
  }
  events_.Publish({VaultEventType::kKeyVersionCreated, ToLowerAscii(vault.name), ToLowerAscii(name),
                   stored.version.version});
  return stored.version;
}

namespace {

// Fills v's public part and material from a private key made or imported here: sealed by the
// root key for software types, moved into the token (non-extractable) for HSM types.
Status Adopt(hsm::KeyProvider& hsm, const crypto::RsaPrivateKey& key, KeyVersion& v, Bytes& sealed,
             std::string& handle) {
  if (IsHsm(v.type)) {
    ASSIGN_OR_RETURN(crypto::RsaPrivateComponents parts, key.Components());
    ASSIGN_OR_RETURN(hsm::HsmKeyInfo info, hsm.ImportRsa(parts));
    if (!info.rsa) return InternalError("the HSM returned no RSA public key");
    v.rsa = *info.rsa;
    v.hsm_platform = hsm.Platform();
    handle = info.handle;
    return OkStatus();
  }
  ASSIGN_OR_RETURN(crypto::RsaPublicKey pub, key.PublicKey());
  ASSIGN_OR_RETURN(v.rsa, pub.Components());
  ASSIGN_OR_RETURN(SecretBytes jwk, crypto::ToJwk(key));
  ASSIGN_OR_RETURN(sealed, hsm.SealWithRoot(jwk, AsBytes(SealAad(v.vault, v.name, v.version))));
  return OkStatus();
}

Status Adopt(hsm::KeyProvider& hsm, const crypto::EcPrivateKey& key, KeyVersion& v, Bytes& sealed,
             std::string& handle) {
  v.curve = key.curve();
  ASSIGN_OR_RETURN(crypto::EcPublicKey pub, key.PublicKey());
  ASSIGN_OR_RETURN(v.ec, pub.Coordinates());
  if (IsHsm(v.type)) {
    ASSIGN_OR_RETURN(SecretBytes d, key.PrivateScalar());
    ASSIGN_OR_RETURN(hsm::HsmKeyInfo info, hsm.ImportEc(key.curve(), v.ec, d));
    v.hsm_platform = hsm.Platform();
    handle = info.handle;
    return OkStatus();
  }
  ASSIGN_OR_RETURN(SecretBytes jwk, crypto::ToJwk(key));
  ASSIGN_OR_RETURN(sealed, hsm.SealWithRoot(jwk, AsBytes(SealAad(v.vault, v.name, v.version))));
  return OkStatus();
}

// Creates the key pair for `v` (type and size from params) and returns the sealed private
// JWK (software) or fills the HSM handle.
Status MakeMaterial(hsm::KeyProvider& hsm, const CreateKeyParams& params, KeyVersion& v,
                    Bytes& sealed, std::string& handle) {
  if (IsRsa(params.type)) {
    int bits = params.key_size == 0 ? 2048 : params.key_size;
    if (bits != 2048 && bits != 3072 && bits != 4096) {
      return BadParameter("key_size must be 2048, 3072 or 4096 for RSA keys; got " +
                          std::to_string(bits) + ".");
    }
    if (params.public_exponent && *params.public_exponent != 65537) {
      return BadParameter("public_exponent must be 65537.");
    }
    if (params.type == KeyType::kRsaHsm) {
      ASSIGN_OR_RETURN(hsm::HsmKeyInfo info, hsm.GenerateRsa(bits));
      if (!info.rsa) return InternalError("the HSM returned no RSA public key");
      v.rsa = *info.rsa;
      v.hsm_platform = hsm.Platform();
      handle = info.handle;
      return OkStatus();
    }
    ASSIGN_OR_RETURN(crypto::RsaPrivateKey key, crypto::RsaPrivateKey::Generate(bits));
    return Adopt(hsm, key, v, sealed, handle);
  }
  if (params.key_size != 0) return BadParameter("key_size applies to RSA keys only.");
  crypto::EcCurve curve = params.curve.value_or(crypto::EcCurve::kP256);
  v.curve = curve;
  if (params.type == KeyType::kEcHsm) {
    ASSIGN_OR_RETURN(hsm::HsmKeyInfo info, hsm.GenerateEc(curve));
    if (!info.ec_point) return InternalError("the HSM returned no EC public key");
    v.ec = *info.ec_point;
    v.hsm_platform = hsm.Platform();
    handle = info.handle;
    return OkStatus();
  }
  ASSIGN_OR_RETURN(crypto::EcPrivateKey key, crypto::EcPrivateKey::Generate(curve));
  return Adopt(hsm, key, v, sealed, handle);
}

}  // namespace

namespace {

// maxresults as a page size: 1..kMaxPageSize, 0 for the default (the most).
StatusOr<size_t> PageLimit(int max_results) {
  if (max_results < 0 || max_results > KeyVault::kMaxPageSize) {
    return BadParameter("maxresults must be between 1 and 25.");
  }
  return max_results == 0 ? size_t{KeyVault::kMaxPageSize} : static_cast<size_t>(max_results);
}

// One page of a vault's keys, live or soft-deleted (`deleted`), in name order after `token`:
// `make` turns each key's record and latest version into an item. The next token is the
// lower-case name of the page's last key, set only when another key follows.
template <typename Item, typename Make>
Status PageKeyRecords(storage::Transaction& tx, std::string_view vault, std::string_view token,
                      size_t limit, bool deleted, Page<Item>& page, Make make) {
  constexpr size_t kChunk = 200;
  page.items.clear();
  page.next_token.clear();
  const std::string prefix = ToLowerAscii(vault) + "/";
  std::string cursor = token.empty() ? "" : prefix + ToLowerAscii(token);
  std::string last_taken;
  for (;;) {
    ASSIGN_OR_RETURN(auto records, tx.Scan(kKeysTable, prefix, cursor, kChunk));
    for (const auto& rec : records) {
      cursor = rec.key;
      ASSIGN_OR_RETURN(KeyRecord r, KeyRecord::FromBytes(rec.value));
      if (r.deleted_date.has_value() != deleted) continue;
      if (page.items.size() == limit) {
        page.next_token = last_taken;
        return OkStatus();
      }
      ASSIGN_OR_RETURN(auto stored, ReadVersion(tx, vault, r.name, r.latest));
      if (!stored) continue;
      page.items.push_back(make(r, std::move(stored->version)));
      last_taken = rec.key.substr(prefix.size());
    }
    if (records.size() < kChunk) return OkStatus();
  }
}

}  // namespace

StatusOr<KeyVersion> KeyVault::CreateKey(const AccessContext& ctx, std::string_view vault,
                                         std::string_view name, const CreateKeyParams& params) {
  return Run<KeyVersion>(ctx, "KeyCreate", vault, name, KeyPermission::kCreate,
                         [&](const Vault& v) -> StatusOr<KeyVersion> {
                           ASSIGN_OR_RETURN(KeyVersion version, NewVersion(v, name, params));
                           Bytes sealed;
                           std::string handle;
                           RETURN_IF_ERROR(MakeMaterial(hsm_, params, version, sealed, handle));
                           return StoreNewVersion(v, name, std::move(version), std::move(sealed),
                                                  std::move(handle), true, std::nullopt);
                         });
}

StatusOr<KeyVersion> KeyVault::ImportKey(const AccessContext& ctx, std::string_view vault,
                                         std::string_view name, const ImportKeyParams& params) {
  return Run<KeyVersion>(
      ctx, "KeyImport", vault, name, KeyPermission::kImport,
      [&](const Vault& v) -> StatusOr<KeyVersion> {
        StatusOr<crypto::Jwk> parsed =
            crypto::ParseJwk(AsStringView(params.jwk.Reveal(InsecureSecretAccess())));
        if (!parsed.ok())
          return BadParameter("The key is not a valid JSON Web Key: " + parsed.status().message());
        CreateKeyParams base;
        base.key_ops = params.key_ops;
        base.enabled = params.enabled;
        base.not_before = params.not_before;
        base.expires = params.expires;
        base.tags = params.tags;
        const auto* rsa = std::get_if<crypto::RsaPrivateKey>(&*parsed);
        const auto* ec = std::get_if<crypto::EcPrivateKey>(&*parsed);
        if (rsa != nullptr || ec != nullptr) {
          if (rsa != nullptr) {
            base.type = params.hsm ? KeyType::kRsaHsm : KeyType::kRsa;
          } else {
            base.type = params.hsm ? KeyType::kEcHsm : KeyType::kEc;
          }
          ASSIGN_OR_RETURN(KeyVersion version, NewVersion(v, name, base));
          Bytes sealed;
          std::string handle;
          RETURN_IF_ERROR(rsa != nullptr ? Adopt(hsm_, *rsa, version, sealed, handle)
                                         : Adopt(hsm_, *ec, version, sealed, handle));
          return StoreNewVersion(v, name, std::move(version), std::move(sealed), std::move(handle),
                                 true, std::nullopt);
        }
        return BadParameter(
            "The JSON Web Key has no private members (d, p, q, ...): import needs the private "
            "key.");
      });
}

StatusOr<KeyVersion> KeyVault::GetKey(const AccessContext& ctx, std::string_view vault,
                                      std::string_view name, std::string_view version) {
  return Run<KeyVersion>(
      ctx, "KeyGet", vault, name, KeyPermission::kGet, [&](const Vault& v) -> StatusOr<KeyVersion> {
        if (!version.empty()) RETURN_IF_ERROR(ValidateVersion(version));
        KeyVersion out;
        RETURN_IF_ERROR(store_.Read([&](storage::Transaction& tx) -> Status {
          ASSIGN_OR_RETURN(auto record, ReadRecord(tx, v.name, name));
          if (!record || record->deleted_date) return KeyNotFound(name);
          ASSIGN_OR_RETURN(auto stored, ReadVersion(tx, v.name, name,
                                                    version.empty() ? record->latest : version));
          if (!stored) return KeyNotFound(name, version);
          out = std::move(stored->version);
          return OkStatus();
        }));
        return out;
      });
}

StatusOr<Page<KeyVersion>> KeyVault::ListKeys(const AccessContext& ctx, std::string_view vault,
                                              int max_results, std::string_view token) {
  return Run<Page<KeyVersion>>(
      ctx, "KeyList", vault, "", KeyPermission::kList,
      [&](const Vault& v) -> StatusOr<Page<KeyVersion>> {
        ASSIGN_OR_RETURN(size_t limit, PageLimit(max_results));
        Page<KeyVersion> page;
        RETURN_IF_ERROR(store_.Read([&](storage::Transaction& tx) -> Status {
          return PageKeyRecords(tx, v.name, token, limit, /*deleted=*/false, page,
                                [](const KeyRecord&, KeyVersion latest) { return latest; });
        }));
        return page;
      });
}

StatusOr<Page<KeyVersion>> KeyVault::ListVersions(const AccessContext& ctx, std::string_view vault,
                                                  std::string_view name, int max_results,
                                                  std::string_view token) {
  return Run<Page<KeyVersion>>(
      ctx, "KeyListVersions", vault, name, KeyPermission::kList,
      [&](const Vault& v) -> StatusOr<Page<KeyVersion>> {
        ASSIGN_OR_RETURN(size_t limit, PageLimit(max_results));
        const std::string prefix = RecordKey(v.name, name) + "/";
        Page<KeyVersion> page;
        RETURN_IF_ERROR(store_.Read([&](storage::Transaction& tx) -> Status {
          page.items.clear();
          ASSIGN_OR_RETURN(auto record, ReadRecord(tx, v.name, name));
          if (!record || record->deleted_date) return KeyNotFound(name);
          ASSIGN_OR_RETURN(auto records,
                           tx.Scan(kVersionsTable, prefix,
                                   token.empty() ? "" : prefix + ToLowerAscii(token), limit + 1));
          for (size_t i = 0; i < records.size() && i < limit; ++i) {
            nlohmann::json j =
                nlohmann::json::parse(AsStringView(records[i].value), nullptr, false);
            ASSIGN_OR_RETURN(StoredVersion s, VersionFromJson(j));
            page.items.push_back(std::move(s.version));
          }
          if (records.size() > limit) page.next_token = page.items.back().version;
          return OkStatus();
        }));
        return page;
      });
}

StatusOr<KeyVersion> KeyVault::UpdateKey(const AccessContext& ctx, std::string_view vault,
                                         std::string_view name, std::string_view version,
                                         const UpdateKeyParams& params) {
  bool enabled_changed = false;
  StatusOr<KeyVersion> out = Run<KeyVersion>(
      ctx, "KeyUpdate", vault, name, KeyPermission::kUpdate,
      [&](const Vault& v) -> StatusOr<KeyVersion> {
        if (!version.empty()) RETURN_IF_ERROR(ValidateVersion(version));
        if (params.tags && (!params.tags->is_object() || params.tags->size() > kMaxKeyTags)) {
          return BadParameter("tags must be an object of at most 15 string values.");
        }
        KeyVersion result;
        RETURN_IF_ERROR(Write([&](storage::Transaction& tx) -> Status {
          ASSIGN_OR_RETURN(auto record, ReadRecord(tx, v.name, name));
          if (!record || record->deleted_date) return KeyNotFound(name);
          const std::string ver = version.empty() ? record->latest : ToLowerAscii(version);
          ASSIGN_OR_RETURN(auto stored, ReadVersion(tx, v.name, name, ver));
          if (!stored) return KeyNotFound(name, version);
          KeyVersion& k = stored->version;
          if (params.key_ops) {
            RETURN_IF_ERROR(CheckOps(k.type, *params.key_ops));
            k.key_ops = *params.key_ops;
          }
          if (params.enabled) {
            enabled_changed = *params.enabled != k.attributes.enabled;
            k.attributes.enabled = *params.enabled;
          }
          if (params.not_before) k.attributes.not_before = *params.not_before;
          if (params.expires) k.attributes.expires = *params.expires;
          if (params.tags) k.tags = *params.tags;
          k.attributes.updated = UnixSeconds(clock_);
          RETURN_IF_ERROR(
              WriteJson(tx, kVersionsTable, VersionKey(v.name, name, ver), VersionToJson(*stored)));
          result = k;
          return OkStatus();
        }));
        return result;
      });
  if (out.ok()) {
    events_.Publish(
        {VaultEventType::kKeyUpdated, ToLowerAscii(vault), ToLowerAscii(name), out->version});
  }
  (void)enabled_changed;
  return out;
}

StatusOr<DeletedKey> KeyVault::DeleteKey(const AccessContext& ctx, std::string_view vault,
                                         std::string_view name) {
  StatusOr<DeletedKey> out = Run<DeletedKey>(
      ctx, "KeyDelete", vault, name, KeyPermission::kDelete,
      [&](const Vault& v) -> StatusOr<DeletedKey> {
        DeletedKey deleted;
        RETURN_IF_ERROR(Write([&](storage::Transaction& tx) -> Status {
          ASSIGN_OR_RETURN(auto record, ReadRecord(tx, v.name, name));
          if (!record || record->deleted_date) return KeyNotFound(name);
          const int64_t now = UnixSeconds(clock_);
          record->deleted_date = now;
          record->scheduled_purge_date = v.ScheduledPurgeDate(now);
          ASSIGN_OR_RETURN(auto stored, ReadVersion(tx, v.name, name, record->latest));
          if (!stored)
            return DataLossError("the latest version of key " + record->name + " is missing");
          deleted.latest = std::move(stored->version);
          deleted.deleted_date = now;
          deleted.scheduled_purge_date = record->scheduled_purge_date;
          return WriteJson(tx, kKeysTable, RecordKey(v.name, name), record->ToJson());
        }));
        return deleted;
      });
  if (out.ok()) {
    events_.Publish({VaultEventType::kKeyDeleted, ToLowerAscii(vault), ToLowerAscii(name), ""});
  }
  return out;
}

StatusOr<DeletedKey> KeyVault::GetDeletedKey(const AccessContext& ctx, std::string_view vault,
                                             std::string_view name) {
  return Run<DeletedKey>(
      ctx, "KeyGetDeleted", vault, name, KeyPermission::kGet,
      [&](const Vault& v) -> StatusOr<DeletedKey> {
        DeletedKey deleted;
        RETURN_IF_ERROR(store_.Read([&](storage::Transaction& tx) -> Status {
          ASSIGN_OR_RETURN(auto record, ReadRecord(tx, v.name, name));
          if (!record || !record->deleted_date) {
            return NotFoundError("Deleted Key not found: " + std::string(name))
                .WithReason("KeyNotFound");
          }
          ASSIGN_OR_RETURN(auto stored, ReadVersion(tx, v.name, name, record->latest));
          if (!stored) return DataLossError("the latest version of a deleted key is missing");
          deleted.latest = std::move(stored->version);
          deleted.deleted_date = *record->deleted_date;
          deleted.scheduled_purge_date = record->scheduled_purge_date;
          return OkStatus();
        }));
        return deleted;
      });
}

StatusOr<Page<DeletedKey>> KeyVault::ListDeletedKeys(const AccessContext& ctx,
                                                     std::string_view vault, int max_results,
                                                     std::string_view token) {
  return Run<Page<DeletedKey>>(
      ctx, "KeyListDeleted", vault, "", KeyPermission::kList,
      [&](const Vault& v) -> StatusOr<Page<DeletedKey>> {
        ASSIGN_OR_RETURN(size_t limit, PageLimit(max_results));
        Page<DeletedKey> page;
        RETURN_IF_ERROR(store_.Read([&](storage::Transaction& tx) -> Status {
          return PageKeyRecords(
              tx, v.name, token, limit, /*deleted=*/true, page,
              [](const KeyRecord& r, KeyVersion latest) {
                return DeletedKey{std::move(latest), *r.deleted_date, r.scheduled_purge_date};
              });
        }));
        return page;
      });
}

StatusOr<KeyVersion> KeyVault::RecoverDeletedKey(const AccessContext& ctx, std::string_view vault,
                                                 std::string_view name) {
  StatusOr<KeyVersion> out = Run<KeyVersion>(
      ctx, "KeyRecover", vault, name, KeyPermission::kRecover,
      [&](const Vault& v) -> StatusOr<KeyVersion> {
        KeyVersion latest;
        RETURN_IF_ERROR(Write([&](storage::Transaction& tx) -> Status {
          ASSIGN_OR_RETURN(auto record, ReadRecord(tx, v.name, name));
          if (!record || !record->deleted_date) {
            return NotFoundError("Deleted Key not found: " + std::string(name))
                .WithReason("KeyNotFound");
          }
          record->deleted_date.reset();
          record->scheduled_purge_date = 0;
          ASSIGN_OR_RETURN(auto stored, ReadVersion(tx, v.name, name, record->latest));
          if (!stored) return DataLossError("the latest version of a deleted key is missing");
          latest = std::move(stored->version);
          return WriteJson(tx, kKeysTable, RecordKey(v.name, name), record->ToJson());
        }));
        return latest;
      });
  if (out.ok()) {
    events_.Publish({VaultEventType::kKeyRecovered, ToLowerAscii(vault), ToLowerAscii(name), ""});
  }
  return out;
}

// Deletes every record of the key and destroys its material (HSM objects, cached keys).
Status KeyVault::DestroyMaterial(std::string_view vault, std::string_view name) {
  std::vector<std::string> handles;
  std::vector<std::string> versions;
  RETURN_IF_ERROR(Write([&](storage::Transaction& tx) -> Status {
    handles.clear();
    versions.clear();
    const std::string prefix = RecordKey(vault, name) + "/";
    for (;;) {
      ASSIGN_OR_RETURN(auto records, tx.Scan(kVersionsTable, prefix, "", storage::kMaxScanLimit));
      for (const auto& rec : records) {
        nlohmann::json j = nlohmann::json::parse(AsStringView(rec.value), nullptr, false);
        StatusOr<StoredVersion> s = VersionFromJson(j);
        if (s.ok()) {
          if (!s->hsm_handle.empty()) {
            Status unref = tx.Delete(kHsmRefsTable, s->hsm_handle + "/" + rec.key);
            if (!unref.ok() && unref.code() != StatusCode::kNotFound) return unref;
            handles.push_back(s->hsm_handle);
          }
          versions.push_back(rec.key);
        }
        RETURN_IF_ERROR(tx.Delete(kVersionsTable, rec.key));
      }
      if (records.size() < storage::kMaxScanLimit) break;
    }
    // A pair another vault's restored copy still uses stays in the token.
    std::vector<std::string> unreferenced;
    for (const std::string& handle : handles) {
      ASSIGN_OR_RETURN(int64_t refs, tx.Count(kHsmRefsTable, handle + "/"));
      if (refs == 0) unreferenced.push_back(handle);
    }
    handles = std::move(unreferenced);
    Status removed = tx.Delete(kKeysTable, RecordKey(vault, name));
    if (!removed.ok() && removed.code() != StatusCode::kNotFound) return removed;
    return OkStatus();
  }));
  for (const std::string& key : versions) {
    private_keys_.Erase(key);
    public_keys_.Erase(key);
  }
  // The records are gone, so nothing refers to these objects any more. A handle that is
  // already gone (NotFound) was destroyed by an earlier, interrupted purge.
  Status first_failure;
  for (const std::string& handle : handles) {
    Status destroyed = hsm_.Destroy(handle);
    if (!destroyed.ok() && destroyed.code() != StatusCode::kNotFound && first_failure.ok()) {
      first_failure = destroyed;
    }
  }
  return first_failure;
}

Status KeyVault::PurgeDeletedKey(const AccessContext& ctx, std::string_view vault,
                                 std::string_view name) {
  StatusOr<bool> out = Run<bool>(
      ctx, "KeyPurge", vault, name, KeyPermission::kPurge, [&](const Vault& v) -> StatusOr<bool> {
        bool deleted = false;
        RETURN_IF_ERROR(store_.Read([&](storage::Transaction& tx) -> Status {
          ASSIGN_OR_RETURN(auto record, ReadRecord(tx, v.name, name));
          deleted = record && record->deleted_date;
          return OkStatus();
        }));
        if (!deleted) {
          return NotFoundError("Deleted Key not found: " + std::string(name))
              .WithReason("KeyNotFound");
        }
        if (v.purge_protection) {
          return PermissionDeniedError(
                     "Operation \"purge\" is not allowed because purge protection is enabled for "
                     "this vault. The key is purged automatically at its scheduled purge date.")
              .WithReason("PurgeProtected");
        }
        RETURN_IF_ERROR(DestroyMaterial(v.name, name));
        return true;
      });
  if (out.ok()) {
    events_.Publish({VaultEventType::kKeyPurged, ToLowerAscii(vault), ToLowerAscii(name), ""});
  }
  return out.status();
}

StatusOr<std::shared_ptr<const KeyVault::LoadedKey>> KeyVault::Load(const KeyVersion& version) {
  const std::string cache_key = VersionKey(version.vault, version.name, version.version);
  if (auto cached = private_keys_.Get(cache_key)) return cached;
  std::optional<StoredVersion> stored;
  RETURN_IF_ERROR(store_.Read([&](storage::Transaction& tx) -> Status {
    ASSIGN_OR_RETURN(stored, ReadVersion(tx, version.vault, version.name, version.version));
    return OkStatus();
  }));
  if (!stored) return KeyNotFound(version.name, version.version);
  auto loaded = std::make_shared<LoadedKey>();
  if (!stored->hsm_handle.empty()) {
    loaded->hsm_handle = stored->hsm_handle;
  } else {
    ASSIGN_OR_RETURN(SecretBytes jwk,
                     hsm_.OpenWithRoot(stored->sealed, AsBytes(SealAad(version.vault, version.name,
                                                                       version.version))));
    ASSIGN_OR_RETURN(crypto::Jwk parsed,
                     crypto::ParseJwk(AsStringView(jwk.Reveal(InsecureSecretAccess()))));
    if (auto* rsa = std::get_if<crypto::RsaPrivateKey>(&parsed)) {
      loaded->software = std::move(*rsa);
    } else if (auto* ec = std::get_if<crypto::EcPrivateKey>(&parsed)) {
      loaded->software = std::move(*ec);
    } else {
      return DataLossError("a stored private key has no private part");
    }
  }
  std::shared_ptr<const LoadedKey> shared = std::move(loaded);
  private_keys_.Put(cache_key, shared);
  return shared;
}

StatusOr<std::shared_ptr<const KeyVault::PublicKey>> KeyVault::LoadPublic(
    const KeyVersion& version) {
  const std::string cache_key = VersionKey(version.vault, version.name, version.version);
  if (auto cached = public_keys_.Get(cache_key)) return cached;
  auto loaded = std::make_shared<PublicKey>();
  if (IsRsa(version.type)) {
    ASSIGN_OR_RETURN(crypto::RsaPublicKey rsa, crypto::RsaPublicKey::FromComponents(version.rsa));
    loaded->key = std::move(rsa);
  } else {
    if (!version.curve) return DataLossError("an EC key without a curve");
    ASSIGN_OR_RETURN(crypto::EcPublicKey ec, crypto::EcPublicKey::FromCoordinates(
                                                 *version.curve, version.ec.x, version.ec.y));
    loaded->key = std::move(ec);
  }
  std::shared_ptr<const PublicKey> shared = std::move(loaded);
  public_keys_.Put(cache_key, shared);
  return shared;
}

// The version to use for a crypto operation: it exists, is live, enabled, in its validity
// period and allows `op`.
StatusOr<KeyVersion> KeyVault::UsableVersion(std::string_view vault, std::string_view name,
                                             std::string_view version, KeyOperation op,
                                             std::string_view op_name) {
  if (!version.empty()) RETURN_IF_ERROR(ValidateVersion(version));
  // Crypto operations read the same few versions over and over: a cache of what was read,
  // used while no key write of this process happened since (the generation) and for at most
  // kVersionCacheTtl (another node's change).
  const std::string cache_key = VersionKey(vault, name, version);
  const uint64_t generation = generation_.load(std::memory_order_acquire);
  const auto read_at = std::chrono::steady_clock::now();
  std::shared_ptr<const CachedVersion> cached = versions_.Get(cache_key);
  KeyVersion out;
  if (cached && cached->generation == generation && read_at - cached->loaded < kVersionCacheTtl) {
    out = cached->version;
  } else {
    RETURN_IF_ERROR(store_.Read([&](storage::Transaction& tx) -> Status {
      ASSIGN_OR_RETURN(auto record, ReadRecord(tx, vault, name));
      if (!record || record->deleted_date) return KeyNotFound(name);
      ASSIGN_OR_RETURN(auto stored,
                       ReadVersion(tx, vault, name, version.empty() ? record->latest : version));
      if (!stored) return KeyNotFound(name, version);
      out = std::move(stored->version);
      return OkStatus();
    }));
    if (generation_.load(std::memory_order_acquire) == generation) {
      versions_.Erase(cache_key);
      versions_.Put(cache_key,
                    std::make_shared<const CachedVersion>(CachedVersion{out, generation, read_at}));
    }
  }
  const std::string what = "Operation " + std::string(op_name);
  if (!out.attributes.enabled) {
    return PermissionDeniedError(what + " is not allowed on a disabled key.")
        .WithReason("KeyDisabled");
  }
  const int64_t now = UnixSeconds(clock_);
  if (out.attributes.expires && now >= *out.attributes.expires) {
    return PermissionDeniedError(what + " is not allowed on an expired key.")
        .WithReason("KeyExpired");
  }
  if (out.attributes.not_before && now < *out.attributes.not_before) {
    return PermissionDeniedError(what + " is not allowed on a key before its activation date.")
        .WithReason("KeyNotYetValid");
  }
  if (!Allows(out, op)) {
    return PermissionDeniedError(what +
                                 " is not permitted on this key: its key_ops do not "
                                 "include it.")
        .WithReason("KeyOperationForbidden");
  }
  return out;
}

namespace {

Status CheckEncryptionKey(const KeyVersion& v) {
  if (!IsRsa(v.type)) {
    return BadParameter(
        "Encryption algorithms RSA-OAEP, RSA-OAEP-256 and RSA1_5 need an RSA "
        "key; key " +
        v.name + " is " + std::string(KeyTypeName(v.type)) + ".");
  }
  return OkStatus();
}

}  // namespace

StatusOr<Bytes> KeyVault::PublicEncrypt(const KeyVersion& v, EncryptionAlgorithm alg,
                                        ByteView plaintext) {
  RETURN_IF_ERROR(CheckEncryptionKey(v));
  ASSIGN_OR_RETURN(auto pub, LoadPublic(v));
  const auto* rsa = std::get_if<crypto::RsaPublicKey>(&pub->key);
  if (rsa == nullptr) return InternalError("an RSA key without its RSA public key");
  StatusOr<Bytes> out = rsa->Encrypt(Padding(alg), plaintext);
  if (!out.ok() && out.status().code() == StatusCode::kInvalidArgument) {
    return BadParameter("The value is too long for this key and algorithm.");
  }
  return out;
}

StatusOr<KeyOperationOutput> KeyVault::Encrypt(const AccessContext& ctx, std::string_view vault,
                                               std::string_view name, std::string_view version,
                                               EncryptionAlgorithm alg, ByteView plaintext) {
  return Run<KeyOperationOutput>(
      ctx, "KeyEncrypt", vault, name, KeyPermission::kEncrypt,
      [&](const Vault& v) -> StatusOr<KeyOperationOutput> {
        ASSIGN_OR_RETURN(KeyVersion k,
                         UsableVersion(v.name, name, version, KeyOperation::kEncrypt, "encrypt"));
        ASSIGN_OR_RETURN(Bytes out, PublicEncrypt(k, alg, plaintext));
        return KeyOperationOutput{std::move(k), std::move(out)};
      });
}

StatusOr<KeyOperationOutput> KeyVault::WrapKey(const AccessContext& ctx, std::string_view vault,
                                               std::string_view name, std::string_view version,
                                               EncryptionAlgorithm alg, ByteView key) {
  return Run<KeyOperationOutput>(
      ctx, "KeyWrap", vault, name, KeyPermission::kWrapKey,
      [&](const Vault& v) -> StatusOr<KeyOperationOutput> {
        ASSIGN_OR_RETURN(KeyVersion k,
                         UsableVersion(v.name, name, version, KeyOperation::kWrapKey, "wrapKey"));
        ASSIGN_OR_RETURN(Bytes out, PublicEncrypt(k, alg, key));
        return KeyOperationOutput{std::move(k), std::move(out)};
      });
}

namespace {

StatusOr<SecretBytes> PrivateDecrypt(
    hsm::KeyProvider& hsm, const KeyVersion& k,
    const std::variant<std::monostate, crypto::RsaPrivateKey, crypto::EcPrivateKey>& software,
    const std::string& handle, EncryptionAlgorithm alg, ByteView ciphertext) {
  RETURN_IF_ERROR(CheckEncryptionKey(k));
  const size_t modulus_size = k.rsa.n.size();
  if (ciphertext.size() != modulus_size) {
    return BadParameter("The value must be " + std::to_string(modulus_size) +
                        " bytes (the key's modulus size); got " +
                        std::to_string(ciphertext.size()) + ".");
  }
  StatusOr<SecretBytes> out = DataLossError("");
  if (!handle.empty()) {
    out = hsm.RsaDecrypt(handle, Padding(alg), ciphertext);
  } else if (auto* rsa = std::get_if<crypto::RsaPrivateKey>(&software)) {
    out = rsa->Decrypt(Padding(alg), ciphertext);
  } else {
    return InternalError("the key has no RSA private part");
  }
  if (!out.ok() && out.status().code() == StatusCode::kUnimplemented) {
    // SoftHSM2 before 2.7 has no OAEP with SHA-256 in the token.
    return BadParameter(
        "This vault's HSM cannot decrypt " +
        std::string(alg == EncryptionAlgorithm::kRsaOaep256 ? "RSA-OAEP-256" : "this algorithm") +
        " with an HSM key; use RSA-OAEP with " + k.name + ".");
  }
  if (!out.ok() && out.status().code() == StatusCode::kDataLoss) {
    // One answer whatever failed: no padding oracle.
    return BadParameter("The value could not be decrypted with this key and algorithm.");
  }
  return out;
}

}  // namespace

StatusOr<KeyOperationOutput> KeyVault::Decrypt(const AccessContext& ctx, std::string_view vault,
                                               std::string_view name, std::string_view version,
                                               EncryptionAlgorithm alg, ByteView ciphertext) {
  return Run<KeyOperationOutput>(
      ctx, "KeyDecrypt", vault, name, KeyPermission::kDecrypt,
      [&](const Vault& v) -> StatusOr<KeyOperationOutput> {
        ASSIGN_OR_RETURN(KeyVersion k,
                         UsableVersion(v.name, name, version, KeyOperation::kDecrypt, "decrypt"));
        RETURN_IF_ERROR(CheckEncryptionKey(k));
        ASSIGN_OR_RETURN(auto loaded, Load(k));
        ASSIGN_OR_RETURN(SecretBytes plain, PrivateDecrypt(hsm_, k, loaded->software,
                                                           loaded->hsm_handle, alg, ciphertext));
        ByteView p = plain.Reveal(InsecureSecretAccess());
        return KeyOperationOutput{std::move(k), Bytes(p.begin(), p.end())};
      });
}

StatusOr<KeyOperationOutput> KeyVault::UnwrapKey(const AccessContext& ctx, std::string_view vault,
                                                 std::string_view name, std::string_view version,
                                                 EncryptionAlgorithm alg, ByteView wrapped) {
  return Run<KeyOperationOutput>(
      ctx, "KeyUnwrap", vault, name, KeyPermission::kUnwrapKey,
      [&](const Vault& v) -> StatusOr<KeyOperationOutput> {
        ASSIGN_OR_RETURN(KeyVersion k, UsableVersion(v.name, name, version,
                                                     KeyOperation::kUnwrapKey, "unwrapKey"));
        RETURN_IF_ERROR(CheckEncryptionKey(k));
        ASSIGN_OR_RETURN(auto loaded, Load(k));
        ASSIGN_OR_RETURN(SecretBytes plain, PrivateDecrypt(hsm_, k, loaded->software,
                                                           loaded->hsm_handle, alg, wrapped));
        ByteView p = plain.Reveal(InsecureSecretAccess());
        return KeyOperationOutput{std::move(k), Bytes(p.begin(), p.end())};
      });
}

namespace {

Status CheckSignatureKey(const KeyVersion& k, const SignatureParams& params,
                         std::string_view alg_name, ByteView digest) {
  if (params.rsa != IsRsa(k.type)) {
    return BadParameter("The algorithm " + std::string(alg_name) + " does not fit key type " +
                        std::string(KeyTypeName(k.type)) + ".");
  }
  if (!params.rsa && k.curve != params.curve) {
    return BadParameter("The algorithm " + std::string(alg_name) + " needs a key on curve " +
                        CurveName(*params.curve) + ".");
  }
  if (digest.size() != crypto::HashSize(params.hash)) {
    return BadParameter("The digest for " + std::string(alg_name) + " must be " +
                        std::to_string(crypto::HashSize(params.hash)) + " bytes; got " +
                        std::to_string(digest.size()) + ".");
  }
  return OkStatus();
}

std::string_view AlgName(SignatureAlgorithm alg) {
  static constexpr std::string_view kNames[] = {"",      "RS256", "RS384", "RS512", "PS256",
                                                "PS384", "PS512", "ES256", "ES384", "ES512"};
  return kNames[static_cast<int>(alg)];
}

}  // namespace

StatusOr<KeyOperationOutput> KeyVault::Sign(const AccessContext& ctx, std::string_view vault,
                                            std::string_view name, std::string_view version,
                                            SignatureAlgorithm alg, ByteView digest) {
  return Run<KeyOperationOutput>(
      ctx, "KeySign", vault, name, KeyPermission::kSign,
      [&](const Vault& v) -> StatusOr<KeyOperationOutput> {
        ASSIGN_OR_RETURN(KeyVersion k,
                         UsableVersion(v.name, name, version, KeyOperation::kSign, "sign"));
        const SignatureParams params = ParamsOf(alg);
        RETURN_IF_ERROR(CheckSignatureKey(k, params, AlgName(alg), digest));
        ASSIGN_OR_RETURN(auto loaded, Load(k));
        Bytes signature;
        if (!loaded->hsm_handle.empty()) {
          if (params.rsa) {
            ASSIGN_OR_RETURN(signature, hsm_.RsaSignDigest(loaded->hsm_handle, params.scheme,
                                                           params.hash, digest));
          } else {
            ASSIGN_OR_RETURN(signature, hsm_.EcSignDigest(loaded->hsm_handle, digest));
          }
        } else if (auto* rsa = std::get_if<crypto::RsaPrivateKey>(&loaded->software)) {
          ASSIGN_OR_RETURN(signature, rsa->SignDigest(params.scheme, params.hash, digest));
        } else if (auto* ec = std::get_if<crypto::EcPrivateKey>(&loaded->software)) {
          ASSIGN_OR_RETURN(signature, ec->SignDigest(digest));
        } else {
          return InternalError("the key has no private part");
        }
        return KeyOperationOutput{std::move(k), std::move(signature)};
      });
}

StatusOr<bool> KeyVault::Verify(const AccessContext& ctx, std::string_view vault,
                                std::string_view name, std::string_view version,
                                SignatureAlgorithm alg, ByteView digest, ByteView signature) {
  return Run<bool>(
      ctx, "KeyVerify", vault, name, KeyPermission::kVerify, [&](const Vault& v) -> StatusOr<bool> {
        ASSIGN_OR_RETURN(KeyVersion k,
                         UsableVersion(v.name, name, version, KeyOperation::kVerify, "verify"));
        const SignatureParams params = ParamsOf(alg);
        RETURN_IF_ERROR(CheckSignatureKey(k, params, AlgName(alg), digest));
        ASSIGN_OR_RETURN(auto pub, LoadPublic(k));
        if (const auto* rsa = std::get_if<crypto::RsaPublicKey>(&pub->key)) {
          return rsa->VerifyDigest(params.scheme, params.hash, digest, signature).ok();
        }
        if (const auto* ec = std::get_if<crypto::EcPublicKey>(&pub->key)) {
          return ec->VerifyDigest(digest, signature).ok();
        }
        return InternalError("a key without its public key");
      });
}

// --------------------------------------------------------------------------- rotation

StatusOr<KeyVersion> KeyVault::RotateKey(const AccessContext& ctx, std::string_view vault,
                                         std::string_view name) {
  return Run<KeyVersion>(
      ctx, "KeyRotate", vault, name, KeyPermission::kRotate,
      [&](const Vault& v) -> StatusOr<KeyVersion> { return RotateNow(v, name); });
}

StatusOr<KeyVersion> KeyVault::RotateNow(const Vault& v, std::string_view name) {
  std::optional<KeyRecord> record;
  std::optional<StoredVersion> latest;
  RETURN_IF_ERROR(store_.Read([&](storage::Transaction& tx) -> Status {
    ASSIGN_OR_RETURN(record, ReadRecord(tx, v.name, name));
    if (!record || record->deleted_date) return KeyNotFound(name);
    ASSIGN_OR_RETURN(latest, ReadVersion(tx, v.name, name, record->latest));
    if (!latest) return KeyNotFound(name);
    return OkStatus();
  }));
  const KeyVersion& old = latest->version;
  CreateKeyParams params;
  params.type = old.type;
  if (IsRsa(old.type)) {
    ASSIGN_OR_RETURN(crypto::RsaPublicKey pub, crypto::RsaPublicKey::FromComponents(old.rsa));
    params.key_size = pub.ModulusBits();
    // An imported key of another size rotates to the nearest size this vault generates.
    if (params.key_size != 3072 && params.key_size != 4096) params.key_size = 2048;
  } else {
    params.curve = old.curve;
  }
  params.key_ops = old.key_ops;
  params.tags = old.tags;
  if (record->policy && !record->policy->expiry_time.empty()) {
    ASSIGN_OR_RETURN(int64_t lifetime, ParseIsoDuration(record->policy->expiry_time));
    params.expires = UnixSeconds(clock_) + lifetime;
  }
  ASSIGN_OR_RETURN(KeyVersion version, NewVersion(v, record->name, params));
  Bytes sealed;
  std::string handle;
  RETURN_IF_ERROR(MakeMaterial(hsm_, params, version, sealed, handle));
  return StoreNewVersion(v, record->name, std::move(version), std::move(sealed), std::move(handle),
                         true, std::nullopt);
}

StatusOr<RotationPolicy> KeyVault::GetRotationPolicy(const AccessContext& ctx,
                                                     std::string_view vault,
                                                     std::string_view name) {
  return Run<RotationPolicy>(ctx, "KeyGetRotationPolicy", vault, name,
                             KeyPermission::kGetRotationPolicy,
                             [&](const Vault& v) -> StatusOr<RotationPolicy> {
                               RotationPolicy policy;
                               RETURN_IF_ERROR(store_.Read([&](storage::Transaction& tx) -> Status {
                                 ASSIGN_OR_RETURN(auto record, ReadRecord(tx, v.name, name));
                                 if (!record || record->deleted_date) return KeyNotFound(name);
                                 if (record->policy) {
                                   policy = *record->policy;
                                 } else {
                                   // Azure's default: notify 30 days before expiry.
                                   policy.lifetime_actions.push_back({"Notify", "", "P30D"});
                                 }
                                 return OkStatus();
                               }));
                               return policy;
                             });
}

StatusOr<RotationPolicy> KeyVault::SetRotationPolicy(const AccessContext& ctx,
                                                     std::string_view vault, std::string_view name,
                                                     RotationPolicy policy) {
  return Run<RotationPolicy>(
      ctx, "KeySetRotationPolicy", vault, name, KeyPermission::kSetRotationPolicy,
      [&](const Vault& v) -> StatusOr<RotationPolicy> {
        int64_t lifetime = 0;
        if (!policy.expiry_time.empty()) {
          ASSIGN_OR_RETURN(lifetime, ParseIsoDuration(policy.expiry_time));
          if (lifetime < 28 * 86400) {
            return BadParameter("expiryTime must be at least 28 days (P28D).");
          }
        }
        bool has_rotate = false;
        for (const LifetimeAction& a : policy.lifetime_actions) {
          if (a.action != "Rotate" && a.action != "Notify") {
            return BadParameter("A lifetime action's type is Rotate or Notify; got '" + a.action +
                                "'.");
          }
          if (a.time_after_create.empty() == a.time_before_expiry.empty()) {
            return BadParameter(
                "Each lifetime action's trigger has exactly one of "
                "timeAfterCreate and timeBeforeExpiry.");
          }
          if (!a.time_after_create.empty()) {
            ASSIGN_OR_RETURN(int64_t after, ParseIsoDuration(a.time_after_create));
            if (a.action == "Rotate" && after < 7 * 86400) {
              return BadParameter("A rotation's timeAfterCreate must be at least 7 days (P7D).");
            }
          } else {
            ASSIGN_OR_RETURN(int64_t before, ParseIsoDuration(a.time_before_expiry));
            if (lifetime != 0 && before >= lifetime) {
              return BadParameter("timeBeforeExpiry must be shorter than expiryTime.");
            }
            if (before < 7 * 86400) {
              return BadParameter("timeBeforeExpiry must be at least 7 days (P7D).");
            }
          }
          if (a.action == "Rotate") {
            if (has_rotate) return BadParameter("A policy has at most one Rotate action.");
            has_rotate = true;
          }
        }
        RETURN_IF_ERROR(Write([&](storage::Transaction& tx) -> Status {
          ASSIGN_OR_RETURN(auto record, ReadRecord(tx, v.name, name));
          if (!record || record->deleted_date) return KeyNotFound(name);
          const int64_t now = UnixSeconds(clock_);
          policy.created = record->policy ? record->policy->created : now;
          policy.updated = now;
          record->policy = policy;
          return WriteJson(tx, kKeysTable, RecordKey(v.name, name), record->ToJson());
        }));
        return policy;
      });
}

StatusOr<int> KeyVault::RunScheduledTasks() {
  struct Due {
    std::string vault, name;
    bool rotate = false, notify = false, purge = false;
  };
  std::vector<Due> due;
  const int64_t now = UnixSeconds(clock_);
  RETURN_IF_ERROR(store_.Read([&](storage::Transaction& tx) -> Status {
    due.clear();
    std::string cursor;
    for (;;) {
      ASSIGN_OR_RETURN(auto records, tx.Scan(kKeysTable, "", cursor, storage::kMaxScanLimit));
      for (const auto& rec : records) {
        cursor = rec.key;
        StatusOr<KeyRecord> r = KeyRecord::FromBytes(rec.value);
        if (!r.ok()) continue;
        Due d{r->vault, r->name};
        if (r->deleted_date) {
          d.purge = r->scheduled_purge_date <= now;
        } else if (r->policy) {
          ASSIGN_OR_RETURN(auto latest, ReadVersion(tx, r->vault, r->name, r->latest));
          if (!latest) continue;
          const KeyAttributes& a = latest->version.attributes;
          for (const LifetimeAction& action : r->policy->lifetime_actions) {
            bool fire = false;
            if (!action.time_after_create.empty()) {
              StatusOr<int64_t> after = ParseIsoDuration(action.time_after_create);
              fire = after.ok() && now >= a.created + *after;
            } else if (a.expires) {
              StatusOr<int64_t> before = ParseIsoDuration(action.time_before_expiry);
              fire = before.ok() && now >= *a.expires - *before;
            }
            if (!fire) continue;
            if (action.action == "Rotate") d.rotate = true;
            if (action.action == "Notify" && r->last_notified < a.created) d.notify = true;
          }
        }
        if (d.rotate || d.notify || d.purge) due.push_back(std::move(d));
      }
      if (records.size() < storage::kMaxScanLimit) break;
    }
    return OkStatus();
  }));
  int actions = 0;
  for (const Due& d : due) {
    AccessContext system;
    system.object_id = "keyfoundry-scheduler";
    system.origin.trusted_service = true;
    system.correlation_id = "scheduler";
    if (d.purge) {
      Status purged = DestroyMaterial(d.vault, d.name);
      Audit(system, "KeyPurgeScheduled", d.vault, "keys/" + d.name, purged, true);
      if (purged.ok()) {
        events_.Publish(
            {VaultEventType::kKeyPurged, ToLowerAscii(d.vault), ToLowerAscii(d.name), ""});
        ++actions;
      }
      continue;
    }
    if (d.rotate) {
      // The scheduler acts as the vault itself: no access check, but the same steps.
      StatusOr<Vault> v = vaults_.Get(d.vault);
      if (!v.ok()) continue;
      StatusOr<KeyVersion> rotated = RotateNow(*v, d.name);
      Audit(system, "KeyRotateScheduled", d.vault,
            rotated.ok() ? "keys/" + rotated->name + "/" + rotated->version : "keys/" + d.name,
            rotated.status(), true);
      if (rotated.ok()) ++actions;
    }
    if (d.notify) {
      Status noted = Write([&](storage::Transaction& tx) -> Status {
        ASSIGN_OR_RETURN(auto record, ReadRecord(tx, d.vault, d.name));
        if (!record) return OkStatus();
        record->last_notified = now;
        return WriteJson(tx, kKeysTable, RecordKey(d.vault, d.name), record->ToJson());
      });
      Audit(system, "KeyNearExpiry", d.vault, "keys/" + d.name, noted, true);
      Log(LogLevel::kInfo, "key.near_expiry", {{"vault", d.vault}, {"key", d.name}});
      if (noted.ok()) ++actions;
    }
  }
  // Deleted vaults past their scheduled purge date go, keys first.
  StatusOr<std::vector<Vault>> deleted_vaults = vaults_.List(true);
  if (deleted_vaults.ok()) {
    for (const Vault& v : *deleted_vaults) {
      if (!v.deleted_at || v.ScheduledPurgeDate(*v.deleted_at) > now) continue;
      AccessContext system;
      system.object_id = "keyfoundry-scheduler";
      system.correlation_id = "scheduler";
      Status purged = vaults_.CanPurge(v.name);
      if (purged.ok()) purged = PurgeAllKeys(v.name);
      if (purged.ok()) purged = vaults_.Purge(v.name);
      Audit(system, "VaultPurgeScheduled", v.ResourceId(), "", purged, true);
      if (purged.ok()) {
        events_.Publish({VaultEventType::kVaultPurged, ToLowerAscii(v.name), "", ""});
        ++actions;
      }
    }
  }
  return actions;
}

Status KeyVault::PurgeAllKeys(std::string_view vault) {
  std::vector<std::string> names;
  RETURN_IF_ERROR(store_.Read([&](storage::Transaction& tx) -> Status {
    names.clear();
    std::string cursor;
    const std::string prefix = ToLowerAscii(vault) + "/";
    for (;;) {
      ASSIGN_OR_RETURN(auto records, tx.Scan(kKeysTable, prefix, cursor, storage::kMaxScanLimit));
      for (const auto& rec : records) {
        cursor = rec.key;
        names.push_back(rec.key.substr(prefix.size()));
      }
      if (records.size() < storage::kMaxScanLimit) break;
    }
    return OkStatus();
  }));
  for (const std::string& name : names) {
    RETURN_IF_ERROR(DestroyMaterial(vault, name));
    events_.Publish({VaultEventType::kKeyPurged, ToLowerAscii(vault), name, ""});
  }
  return OkStatus();
}

// --------------------------------------------------------------------------- backup

StatusOr<Bytes> KeyVault::BackupKey(const AccessContext& ctx, std::string_view vault,
                                    std::string_view name) {
  return Run<Bytes>(
      ctx, "KeyBackup", vault, name, KeyPermission::kBackup,
      [&](const Vault& v) -> StatusOr<Bytes> {
        nlohmann::json doc = {{"v", 1}, {"versions", nlohmann::json::array()}};
        std::vector<StoredVersion> versions;
        std::optional<KeyRecord> record;
        RETURN_IF_ERROR(store_.Read([&](storage::Transaction& tx) -> Status {
          versions.clear();
          ASSIGN_OR_RETURN(record, ReadRecord(tx, v.name, name));
          if (!record || record->deleted_date) return KeyNotFound(name);
          const std::string prefix = RecordKey(v.name, name) + "/";
          ASSIGN_OR_RETURN(auto records,
                           tx.Scan(kVersionsTable, prefix, "", kMaxVersionsPerBackup));
          for (const auto& rec : records) {
            nlohmann::json j = nlohmann::json::parse(AsStringView(rec.value), nullptr, false);
            ASSIGN_OR_RETURN(StoredVersion s, VersionFromJson(j));
            versions.push_back(std::move(s));
          }
          return OkStatus();
        }));
        doc["name"] = record->name;
        doc["latest"] = record->latest;
        // Each software version's private JWK, opened from its record's seal, goes into the
        // document, which is sealed as a whole below.
        std::string text;
        for (StoredVersion& s : versions) {
          nlohmann::json j = VersionToJson(s);
          j.erase("sealed");
          if (!s.sealed.empty()) {
            ASSIGN_OR_RETURN(SecretBytes jwk,
                             hsm_.OpenWithRoot(s.sealed, AsBytes(SealAad(v.name, s.version.name,
                                                                         s.version.version))));
            j["jwk"] = std::string(AsStringView(jwk.Reveal(InsecureSecretAccess())));
          }
          doc["versions"].push_back(std::move(j));
        }
        text = doc.dump();
        SecretBytes plain(AsBytes(text), InsecureSecretAccess());
        SecureZero(std::span<uint8_t>(reinterpret_cast<uint8_t*>(text.data()), text.size()));
        ASSIGN_OR_RETURN(Bytes sealed, hsm_.SealWithRoot(plain, AsBytes(kBackupAad)));
        Bytes out(kBackupMagic.begin(), kBackupMagic.end());
        out.push_back(kBackupVersion);
        out.insert(out.end(), sealed.begin(), sealed.end());
        return out;
      });
}

StatusOr<KeyVersion> KeyVault::RestoreKey(const AccessContext& ctx, std::string_view vault,
                                          ByteView backup) {
  StatusOr<KeyVersion> out = Run<KeyVersion>(
      ctx, "KeyRestore", vault, "", KeyPermission::kRestore,
      [&](const Vault& v) -> StatusOr<KeyVersion> {
        const Status bad = BadParameter(
            "The backup blob is not a key backup of this deployment, or it was altered.");
        if (backup.size() < kBackupMagic.size() + 1 ||
            AsStringView(backup.first(kBackupMagic.size())) != kBackupMagic ||
            backup[kBackupMagic.size()] != kBackupVersion) {
          return bad;
        }
        StatusOr<SecretBytes> plain =
            hsm_.OpenWithRoot(backup.subspan(kBackupMagic.size() + 1), AsBytes(kBackupAad));
        if (!plain.ok()) return bad;
        nlohmann::json doc = nlohmann::json::parse(
            AsStringView(plain->Reveal(InsecureSecretAccess())), nullptr, false);
        if (!doc.is_object() || doc.value("v", 0) != 1) return bad;
        const std::string name = doc.value("name", "");
        const std::string latest = doc.value("latest", "");
        RETURN_IF_ERROR(ValidateKeyName(name));
        std::vector<StoredVersion> versions;
        for (auto& j : doc["versions"]) {
          std::string jwk = j.value("jwk", "");
          j.erase("jwk");
          j["vault"] = v.name;
          ASSIGN_OR_RETURN(StoredVersion s, VersionFromJson(j));
          if (IsHsm(s.version.type)) {
            StatusOr<hsm::HsmKeyInfo> info = hsm_.Describe(s.hsm_handle);
            if (!info.ok()) {
              return BadParameter(
                  "The backup holds an HSM key whose token objects no longer "
                  "exist (it was purged): it cannot be restored.");
            }
          } else {
            SecretBytes secret(AsBytes(jwk), InsecureSecretAccess());
            SecureZero(std::span<uint8_t>(reinterpret_cast<uint8_t*>(jwk.data()), jwk.size()));
            ASSIGN_OR_RETURN(
                s.sealed, hsm_.SealWithRoot(
                              secret, AsBytes(SealAad(v.name, s.version.name, s.version.version))));
          }
          versions.push_back(std::move(s));
        }
        if (versions.empty()) return bad;
        if (IsHsm(versions.front().version.type) && !EqualsIgnoreCase(v.sku, "premium")) {
          return BadParameter("HSM keys restore only into a premium vault.");
        }
        KeyVersion result;
        RETURN_IF_ERROR(Write([&](storage::Transaction& tx) -> Status {
          ASSIGN_OR_RETURN(auto record, ReadRecord(tx, v.name, name));
          if (record && record->deleted_date) {
            return AlreadyExistsError("Key " + name +
                                      " is currently in a deleted but recoverable state, and "
                                      "its name cannot be reused; in this state, the key can "
                                      "only be recovered or purged.")
                .WithReason("ObjectIsDeletedButRecoverable");
          }
          if (record) {
            return AlreadyExistsError("A key named " + name +
                                      " already exists in this vault: restore needs the name "
                                      "free.")
                .WithReason("Conflict");
          }
          KeyRecord r;
          r.vault = v.name;
          r.name = name;
          r.latest = latest;
          for (StoredVersion& s : versions) {
            s.version.vault = v.name;
            RETURN_IF_ERROR(WriteJson(
                tx, kVersionsTable, VersionKey(v.name, name, s.version.version), VersionToJson(s)));
            if (!s.hsm_handle.empty()) {
              RETURN_IF_ERROR(
                  tx.Put(kHsmRefsTable,
                         s.hsm_handle + "/" + VersionKey(v.name, name, s.version.version), {}));
            }
            if (s.version.version == latest) result = s.version;
          }
          if (result.version.empty()) return DataLossError("the backup has no latest version");
          return WriteJson(tx, kKeysTable, RecordKey(v.name, name), r.ToJson());
        }));
        events_.Publish({VaultEventType::kKeyVersionCreated, ToLowerAscii(v.name),
                         ToLowerAscii(name), result.version});
        return result;
      });
  return out;
}

}  // namespace keyfoundry::keyvault
