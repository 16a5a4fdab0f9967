#include "identity/directory.h"

#include <chrono>
#include <exception>
#include <nlohmann/json.hpp>
#include <optional>
#include <utility>

#include "common/encoding.h"
#include "common/logging.h"
#include "crypto/random.h"
#include "identity/ids.h"

namespace keyfoundry::identity {
namespace {

using Json = nlohmann::json;

constexpr std::string_view kPrincipals = "principals";
constexpr std::string_view kNames = "principal_names";
constexpr std::string_view kSecrets = "sp_secrets";

constexpr size_t kMaxUsernameSize = 64;
constexpr size_t kMaxDisplayNameSize = 256;
constexpr size_t kSecretRandomBytes = 30;  // 40 base64url characters

Status BadLogin() { return UnauthenticatedError("the username or password is incorrect"); }
Status BadClient() { return UnauthenticatedError("the client id or secret is incorrect"); }
Status Corrupt(std::string_view what) {
  return DataLossError("the directory record " + std::string(what) + " is corrupt");
}

bool IsUsernameChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '_' || c == '@' || c == '-';
}

Status ValidateUsername(std::string_view username) {
  if (username.empty() || username.size() > kMaxUsernameSize) {
    return InvalidArgumentError("a username is 1 to 64 characters");
  }
  for (char c : username) {
    if (!IsUsernameChar(c)) {
      return InvalidArgumentError("a username may hold only letters, digits, '.', '_', '@', '-'");
    }
  }
  const char first = username.front();
  if (first == '.' || first == '_' || first == '@' || first == '-') {
    return InvalidArgumentError("a username starts with a letter or digit");
  }
  return OkStatus();
}

std::string UserKey(std::string_view username) { return "user/" + ToLowerAscii(username); }
std::string AppKey(std::string_view app_id) { return "app/" + ToLowerAscii(app_id); }
std::string ResourceKey(std::string_view resource_id) {
  return "resource/" + NormalizeScope(resource_id);
}
std::string SecretPrefix(std::string_view oid) { return std::string(oid) + "/"; }

StatusOr<PrincipalKind> ParseKind(std::string_view name) {
  if (name == "user") return PrincipalKind::kUser;
  if (name == "servicePrincipal") return PrincipalKind::kServicePrincipal;
  if (name == "managedIdentity") return PrincipalKind::kManagedIdentity;
  return DataLossError("unknown principal kind in the directory");
}

StatusOr<Bytes> Encode(const Json& json) {
  try {
    return ToBytes(json.dump());
  } catch (const std::exception&) {
    return InternalError("directory record is not valid UTF-8");
  }
}

// A principal record as stored: the principal and, for users, the password hash.
struct Stored {
  Principal principal;
  std::string password_hash;
};

StatusOr<Bytes> EncodePrincipal(const Principal& p, std::string_view password_hash) {
  Json json = {{"v", 1},
               {"oid", p.object_id},
               {"kind", PrincipalKindName(p.kind)},
               {"name", p.display_name},
               {"created", p.created_at}};
  if (!p.app_id.empty()) json["app_id"] = p.app_id;
  if (!p.resource_id.empty()) json["resource_id"] = p.resource_id;
  if (!password_hash.empty()) json["password_hash"] = password_hash;
  return Encode(json);
}

// Reads a string member (empty when absent); false when present and not a string.
bool GetString(const Json& json, const char* name, std::string* out) {
  auto it = json.find(name);
  if (it == json.end()) return true;
  if (!it->is_string()) return false;
  *out = it->get<std::string>();
  return true;
}

StatusOr<Stored> DecodePrincipal(const storage::Record& record) {
  Json json = Json::parse(AsStringView(record.value), nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded() || !json.is_object()) return Corrupt(record.key);
  Stored out;
  std::string kind;
  auto v = json.find("v");
  auto created = json.find("created");
  if (v == json.end() || *v != 1 || created == json.end() || !created->is_number_integer() ||
      !GetString(json, "oid", &out.principal.object_id) || !GetString(json, "kind", &kind) ||
      !GetString(json, "name", &out.principal.display_name) ||
      !GetString(json, "app_id", &out.principal.app_id) ||
      !GetString(json, "resource_id", &out.principal.resource_id) ||
      !GetString(json, "password_hash", &out.password_hash) ||
      out.principal.object_id != record.key) {
    return Corrupt(record.key);
  }
  out.principal.created_at = created->get<int64_t>();
  ASSIGN_OR_RETURN(out.principal.kind, ParseKind(kind));
  return out;
}

StatusOr<Stored> ReadPrincipal(storage::Transaction& txn, std::string_view oid) {
  ASSIGN_OR_RETURN(std::optional<storage::Record> record, txn.Get(kPrincipals, oid));
  if (!record) return NotFoundError("no principal has this object id");
  return DecodePrincipal(*record);
}

// The oid an index key points to, or NotFound.
StatusOr<std::string> ReadName(storage::Transaction& txn, std::string_view key) {
  ASSIGN_OR_RETURN(std::optional<storage::Record> record, txn.Get(kNames, key));
  if (!record) return NotFoundError("not found");
  std::string oid(AsStringView(record->value));
  if (!IsUuid(oid)) return Corrupt(key);
  return oid;
}

struct StoredSecret {
  ClientSecretInfo info;
  std::string hash;
};

StatusOr<StoredSecret> DecodeSecret(const storage::Record& record) {
  Json json = Json::parse(AsStringView(record.value), nullptr, /*allow_exceptions=*/false);
  StoredSecret out;
  if (json.is_discarded() || !json.is_object() || !GetString(json, "hash", &out.hash) ||
      !GetString(json, "hint", &out.info.hint) || !json.contains("created") ||
      !json["created"].is_number_integer()) {
    return Corrupt(record.key);
  }
  out.info.created_at = json["created"].get<int64_t>();
  const size_t slash = record.key.find('/');
  if (slash == std::string::npos) return Corrupt(record.key);
  out.info.secret_id = record.key.substr(slash + 1);
  return out;
}

StatusOr<std::vector<StoredSecret>> ReadSecrets(storage::Transaction& txn, std::string_view oid) {
  ASSIGN_OR_RETURN(std::vector<storage::Record> records,
                   txn.Scan(kSecrets, SecretPrefix(oid), "", storage::kMaxScanLimit));
  std::vector<StoredSecret> out;
  for (const storage::Record& record : records) {
    ASSIGN_OR_RETURN(StoredSecret secret, DecodeSecret(record));
    out.push_back(std::move(secret));
  }
  return out;
}

// The service principal behind an app id, or NotFound (also for a managed identity's app id).
StatusOr<Stored> ReadServicePrincipal(storage::Transaction& txn, std::string_view app_id) {
  if (!IsUuid(app_id)) return NotFoundError("no service principal has this app id");
  StatusOr<std::string> oid = ReadName(txn, AppKey(app_id));
  if (oid.status().code() == StatusCode::kNotFound) {
    return NotFoundError("no service principal has this app id");
  }
  RETURN_IF_ERROR(oid);
  ASSIGN_OR_RETURN(Stored stored, ReadPrincipal(txn, *oid));
  if (stored.principal.kind != PrincipalKind::kServicePrincipal) {
    return NotFoundError("no service principal has this app id");
  }
  return stored;
}

// A principal from an index entry, NotFound with `missing` when absent.
StatusOr<Stored> ReadByName(storage::Transaction& txn, const std::string& key,
                            std::string_view missing) {
  StatusOr<std::string> oid = ReadName(txn, key);
  if (oid.status().code() == StatusCode::kNotFound) return NotFoundError(std::string(missing));
  RETURN_IF_ERROR(oid);
  return ReadPrincipal(txn, *oid);
}

}  // namespace

std::string_view PrincipalKindName(PrincipalKind kind) {
  switch (kind) {
    case PrincipalKind::kUser:
      return "user";
    case PrincipalKind::kServicePrincipal:
      return "servicePrincipal";
    case PrincipalKind::kManagedIdentity:
      return "managedIdentity";
  }
  return "unknown";
}

std::string_view ArmPrincipalType(PrincipalKind kind) {
  switch (kind) {
    case PrincipalKind::kUser:
      return "User";
    case PrincipalKind::kServicePrincipal:
    case PrincipalKind::kManagedIdentity:
      return "ServicePrincipal";
  }
  return {};
}

StatusOr<std::unique_ptr<Directory>> Directory::New(storage::MetadataStore& store,
                                                    std::string_view tenant_id, const Clock& clock,
                                                    DirectoryOptions options) {
  if (!IsUuid(tenant_id)) return InvalidArgumentError("the tenant id must be a UUID");
  for (uint32_t iterations : {options.password_iterations, options.secret_iterations}) {
    if (iterations < crypto::kMinPasswordIterations ||
        iterations > crypto::kMaxPasswordIterations) {
      return InvalidArgumentError("the directory's PBKDF2 iteration counts are out of bounds");
    }
  }
  // The dummy hashes are of random passwords nobody knows; they exist only to spend the same
  // time on unknown accounts as on known ones.
  ASSIGN_OR_RETURN(SecretBytes dummy, crypto::RandomSecret(16));
  ASSIGN_OR_RETURN(std::string dummy_password_hash,
                   crypto::HashPassword(dummy, options.password_iterations));
  ASSIGN_OR_RETURN(std::string dummy_secret_hash,
                   crypto::HashPassword(dummy, options.secret_iterations));
  return std::unique_ptr<Directory>(new Directory(store, ToLowerAscii(tenant_id), clock, options,
                                                  std::move(dummy_password_hash),
                                                  std::move(dummy_secret_hash)));
}

Directory::Directory(storage::MetadataStore& store, std::string tenant_id, const Clock& clock,
                     DirectoryOptions options, std::string dummy_password_hash,
                     std::string dummy_secret_hash)
    : store_(store),
      tenant_id_(std::move(tenant_id)),
      clock_(clock),
      options_(options),
      dummy_password_hash_(std::move(dummy_password_hash)),
      dummy_secret_hash_(std::move(dummy_secret_hash)) {}

int64_t Directory::Now() const {
  return std::chrono::duration_cast<std::chrono::seconds>(clock_.Now().time_since_epoch()).count();
}

StatusOr<Principal> Directory::CreatePrincipal(Principal principal, const std::string& index_key,
                                               const std::string& password_hash,
                                               const std::string& second_index_key) {
  ASSIGN_OR_RETURN(principal.object_id, crypto::NewUuid());
  principal.created_at = Now();
  ASSIGN_OR_RETURN(Bytes record, EncodePrincipal(principal, password_hash));
  RETURN_IF_ERROR(store_.Write([&](storage::Transaction& txn) -> Status {
    for (const std::string* key : {&index_key, &second_index_key}) {
      if (key->empty()) continue;
      Status st = txn.Insert(kNames, *key, AsBytes(principal.object_id));
      if (st.code() == StatusCode::kAlreadyExists) return AlreadyExistsError(*key);
      RETURN_IF_ERROR(st);
    }
    Status st = txn.Insert(kPrincipals, principal.object_id, record);
    if (st.code() == StatusCode::kAlreadyExists) return InternalError("object id collision");
    return st;
  }));
  return principal;
}

// --- users

StatusOr<Principal> Directory::CreateUser(std::string_view username, const SecretBytes& password) {
  RETURN_IF_ERROR(ValidateUsername(username));
  ASSIGN_OR_RETURN(std::string hash, crypto::HashPassword(password, options_.password_iterations));
  Principal user;
  user.kind = PrincipalKind::kUser;
  user.display_name = std::string(username);
  StatusOr<Principal> created = CreatePrincipal(std::move(user), UserKey(username), hash, "");
  if (created.status().code() == StatusCode::kAlreadyExists) {
    return AlreadyExistsError("a user named '" + std::string(username) + "' already exists");
  }
  return created;
}

StatusOr<Principal> Directory::AuthenticateUser(std::string_view username,
                                                const SecretBytes& password) const {
  std::optional<Stored> stored;
  if (ValidateUsername(username).ok()) {
    RETURN_IF_ERROR(store_.Read([&](storage::Transaction& txn) -> Status {
      stored.reset();
      StatusOr<Stored> found = ReadByName(txn, UserKey(username), "no such user");
      if (found.status().code() == StatusCode::kNotFound) return OkStatus();
      RETURN_IF_ERROR(found);
      if (found->principal.kind == PrincipalKind::kUser) stored = *std::move(found);
      return OkStatus();
    }));
  }
  if (!stored) {
    (void)crypto::VerifyPassword(password, dummy_password_hash_);
    return BadLogin();
  }
  Status verified = crypto::VerifyPassword(password, stored->password_hash);
  if (verified.code() == StatusCode::kInvalidArgument && !password.empty() &&
      password.size() <= crypto::kMaxPasswordSize) {
    // The password is fine, so the stored hash is not: say so to the operator, not the user.
    Log(LogLevel::kError, "identity.corrupt_password_hash", {{"oid", stored->principal.object_id}});
  }
  if (!verified.ok()) return BadLogin();
  return stored->principal;
}

StatusOr<Principal> Directory::EnsureAdmin(const SecretBytes& password) {
  StatusOr<Principal> existing = GetUser(kAdminUsername);
  if (existing.ok() || existing.status().code() != StatusCode::kNotFound) return existing;
  StatusOr<Principal> created = CreateUser(kAdminUsername, password);
  if (created.status().code() == StatusCode::kAlreadyExists) return GetUser(kAdminUsername);
  return created;
}

Status Directory::SetUserPassword(std::string_view username, const SecretBytes& password) {
  if (!ValidateUsername(username).ok()) return NotFoundError("no such user");
  ASSIGN_OR_RETURN(std::string hash, crypto::HashPassword(password, options_.password_iterations));
  return store_.Write([&](storage::Transaction& txn) -> Status {
    ASSIGN_OR_RETURN(Stored stored, ReadByName(txn, UserKey(username), "no such user"));
    if (stored.principal.kind != PrincipalKind::kUser) return NotFoundError("no such user");
    ASSIGN_OR_RETURN(Bytes record, EncodePrincipal(stored.principal, hash));
    return txn.Put(kPrincipals, stored.principal.object_id, record);
  });
}

StatusOr<Principal> Directory::GetUser(std::string_view username) const {
  if (!ValidateUsername(username).ok()) return NotFoundError("no such user");
  Principal out;
  RETURN_IF_ERROR(store_.Read([&](storage::Transaction& txn) -> Status {
    ASSIGN_OR_RETURN(Stored stored, ReadByName(txn, UserKey(username), "no such user"));
    if (stored.principal.kind != PrincipalKind::kUser) return NotFoundError("no such user");
    out = std::move(stored.principal);
    return OkStatus();
  }));
  return out;
}

// --- service principals

StatusOr<ClientSecret> Directory::MakeSecret(std::string* hash) const {
  ClientSecret out;
  ASSIGN_OR_RETURN(out.secret_id, crypto::NewUuid());
  ASSIGN_OR_RETURN(Bytes raw, crypto::RandomBytes(kSecretRandomBytes));
  std::string text = Base64UrlEncode(raw);
  out.secret = SecretBytes(AsBytes(text), InsecureSecretAccess());
  out.hint = text.substr(0, 3);
  SecureZero(raw);
  SecureZero({reinterpret_cast<uint8_t*>(text.data()), text.size()});
  ASSIGN_OR_RETURN(*hash, crypto::HashPassword(out.secret, options_.secret_iterations));
  return out;
}

StatusOr<ServicePrincipalCredentials> Directory::CreateServicePrincipal(
    std::string_view display_name) {
  if (display_name.empty() || display_name.size() > kMaxDisplayNameSize ||
      !IsPrintableUtf8(display_name)) {
    return InvalidArgumentError("a display name is 1 to 256 bytes of printable UTF-8");
  }
  ServicePrincipalCredentials out;
  std::string hash;
  ASSIGN_OR_RETURN(out.secret, MakeSecret(&hash));
  Principal sp;
  sp.kind = PrincipalKind::kServicePrincipal;
  sp.display_name = std::string(display_name);
  ASSIGN_OR_RETURN(sp.app_id, crypto::NewUuid());
  ASSIGN_OR_RETURN(sp.object_id, crypto::NewUuid());
  sp.created_at = Now();
  ASSIGN_OR_RETURN(Bytes record, EncodePrincipal(sp, ""));
  ASSIGN_OR_RETURN(
      Bytes secret_record,
      Encode({{"v", 1}, {"hash", hash}, {"hint", out.secret.hint}, {"created", sp.created_at}}));
  RETURN_IF_ERROR(store_.Write([&](storage::Transaction& txn) -> Status {
    RETURN_IF_ERROR(txn.Insert(kNames, AppKey(sp.app_id), AsBytes(sp.object_id)));
    RETURN_IF_ERROR(txn.Insert(kPrincipals, sp.object_id, record));
    return txn.Insert(kSecrets, SecretPrefix(sp.object_id) + out.secret.secret_id, secret_record);
  }));
  out.principal = std::move(sp);
  return out;
}

StatusOr<ClientSecret> Directory::AddClientSecret(std::string_view app_id) {
  std::string hash;
  ASSIGN_OR_RETURN(ClientSecret secret, MakeSecret(&hash));
  ASSIGN_OR_RETURN(Bytes record,
                   Encode({{"v", 1}, {"hash", hash}, {"hint", secret.hint}, {"created", Now()}}));
  RETURN_IF_ERROR(store_.Write([&](storage::Transaction& txn) -> Status {
    ASSIGN_OR_RETURN(Stored sp, ReadServicePrincipal(txn, app_id));
    ASSIGN_OR_RETURN(int64_t count, txn.Count(kSecrets, SecretPrefix(sp.principal.object_id)));
    if (count >= static_cast<int64_t>(kMaxSecretsPerServicePrincipal)) {
      return ResourceExhaustedError("a service principal holds at most 16 client secrets");
    }
    return txn.Insert(kSecrets, SecretPrefix(sp.principal.object_id) + secret.secret_id, record);
  }));
  return secret;
}

Status Directory::DeleteClientSecret(std::string_view app_id, std::string_view secret_id) {
  if (!IsUuid(secret_id)) return NotFoundError("no client secret has this id");
  return store_.Write([&](storage::Transaction& txn) -> Status {
    ASSIGN_OR_RETURN(Stored sp, ReadServicePrincipal(txn, app_id));
    Status st =
        txn.Delete(kSecrets, SecretPrefix(sp.principal.object_id) + ToLowerAscii(secret_id));
    if (st.code() == StatusCode::kNotFound) return NotFoundError("no client secret has this id");
    return st;
  });
}

StatusOr<std::vector<ClientSecretInfo>> Directory::ListClientSecrets(
    std::string_view app_id) const {
  std::vector<ClientSecretInfo> out;
  RETURN_IF_ERROR(store_.Read([&](storage::Transaction& txn) -> Status {
    out.clear();
    ASSIGN_OR_RETURN(Stored sp, ReadServicePrincipal(txn, app_id));
    ASSIGN_OR_RETURN(std::vector<StoredSecret> secrets, ReadSecrets(txn, sp.principal.object_id));
    for (StoredSecret& secret : secrets) out.push_back(std::move(secret.info));
    return OkStatus();
  }));
  return out;
}

StatusOr<Principal> Directory::AuthenticateServicePrincipal(std::string_view client_id,
                                                            const SecretBytes& secret) const {
  std::optional<Stored> sp;
  std::vector<StoredSecret> secrets;
  RETURN_IF_ERROR(store_.Read([&](storage::Transaction& txn) -> Status {
    sp.reset();
    secrets.clear();
    StatusOr<Stored> found = ReadServicePrincipal(txn, client_id);
    if (found.status().code() == StatusCode::kNotFound) return OkStatus();
    RETURN_IF_ERROR(found);
    ASSIGN_OR_RETURN(secrets, ReadSecrets(txn, found->principal.object_id));
    sp = *std::move(found);
    return OkStatus();
  }));
  if (!sp || secrets.empty()) {
    (void)crypto::VerifyPassword(secret, dummy_secret_hash_);
    return BadClient();
  }
  // Every secret is tried (no early exit), so the time does not tell which one matched.
  bool matched = false;
  for (const StoredSecret& stored : secrets) {
    matched = crypto::VerifyPassword(secret, stored.hash).ok() || matched;
  }
  if (!matched) return BadClient();
  return sp->principal;
}

StatusOr<std::vector<Principal>> Directory::ListServicePrincipals() const {
  std::vector<Principal> out;
  RETURN_IF_ERROR(store_.Read([&](storage::Transaction& txn) -> Status {
    out.clear();
    std::string after;
    while (true) {
      ASSIGN_OR_RETURN(std::vector<storage::Record> page,
                       txn.Scan(kPrincipals, "", after, storage::kMaxScanLimit));
      for (const storage::Record& record : page) {
        ASSIGN_OR_RETURN(Stored stored, DecodePrincipal(record));
        if (stored.principal.kind == PrincipalKind::kServicePrincipal) {
          out.push_back(std::move(stored.principal));
        }
      }
      if (page.size() < storage::kMaxScanLimit) return OkStatus();
      after = page.back().key;
    }
  }));
  return out;
}

Status Directory::DeleteServicePrincipal(std::string_view app_id) {
  return store_.Write([&](storage::Transaction& txn) -> Status {
    ASSIGN_OR_RETURN(Stored sp, ReadServicePrincipal(txn, app_id));
    ASSIGN_OR_RETURN(std::vector<StoredSecret> secrets, ReadSecrets(txn, sp.principal.object_id));
    for (const StoredSecret& secret : secrets) {
      RETURN_IF_ERROR(
          txn.Delete(kSecrets, SecretPrefix(sp.principal.object_id) + secret.info.secret_id));
    }
    RETURN_IF_ERROR(txn.Delete(kNames, AppKey(sp.principal.app_id)));
    return txn.Delete(kPrincipals, sp.principal.object_id);
  });
}

// --- managed identities

StatusOr<Principal> Directory::CreateManagedIdentity(std::string_view resource_id) {
  RETURN_IF_ERROR(ValidateScope(resource_id));
  Principal mi;
  mi.kind = PrincipalKind::kManagedIdentity;
  mi.display_name = std::string(resource_id);
  mi.resource_id = std::string(resource_id);
  ASSIGN_OR_RETURN(mi.app_id, crypto::NewUuid());
  const std::string app_key = AppKey(mi.app_id);
  StatusOr<Principal> created =
      CreatePrincipal(std::move(mi), ResourceKey(resource_id), "", app_key);
  if (created.status().code() == StatusCode::kAlreadyExists) {
    return AlreadyExistsError("the resource already has a managed identity");
  }
  return created;
}

StatusOr<Principal> Directory::GetManagedIdentityByResource(std::string_view resource_id) const {
  if (!ValidateScope(resource_id).ok()) {
    return NotFoundError("the resource has no managed identity");
  }
  Principal out;
  RETURN_IF_ERROR(store_.Read([&](storage::Transaction& txn) -> Status {
    ASSIGN_OR_RETURN(Stored stored, ReadByName(txn, ResourceKey(resource_id),
                                               "the resource has no managed identity"));
    out = std::move(stored.principal);
    return OkStatus();
  }));
  return out;
}

Status Directory::DeleteManagedIdentity(std::string_view resource_id) {
  if (!ValidateScope(resource_id).ok()) {
    return NotFoundError("the resource has no managed identity");
  }
  return store_.Write([&](storage::Transaction& txn) -> Status {
    ASSIGN_OR_RETURN(Stored stored, ReadByName(txn, ResourceKey(resource_id),
                                               "the resource has no managed identity"));
    RETURN_IF_ERROR(txn.Delete(kNames, ResourceKey(resource_id)));
    RETURN_IF_ERROR(txn.Delete(kNames, AppKey(stored.principal.app_id)));
    return txn.Delete(kPrincipals, stored.principal.object_id);
  });
}

// --- any principal

StatusOr<Principal> Directory::GetPrincipal(std::string_view object_id) const {
  if (!IsUuid(object_id)) return NotFoundError("no principal has this object id");
  Principal out;
  RETURN_IF_ERROR(store_.Read([&](storage::Transaction& txn) -> Status {
    ASSIGN_OR_RETURN(Stored stored, ReadPrincipal(txn, ToLowerAscii(object_id)));
    out = std::move(stored.principal);
    return OkStatus();
  }));
  return out;
}

StatusOr<Principal> Directory::GetPrincipalByAppId(std::string_view app_id) const {
  if (!IsUuid(app_id)) return NotFoundError("no application has this id");
  Principal out;
  RETURN_IF_ERROR(store_.Read([&](storage::Transaction& txn) -> Status {
    ASSIGN_OR_RETURN(Stored stored, ReadByName(txn, AppKey(app_id), "no application has this id"));
    out = std::move(stored.principal);
    return OkStatus();
  }));
  return out;
}

}  // namespace keyfoundry::identity
