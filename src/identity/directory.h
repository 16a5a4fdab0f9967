// The directory: the deployment's one tenant and its principals (users, service principals,
// managed identities), kept in the MetadataStore.
//
// Every principal has an object id ("oid", a random UUID) that never changes and is never
// reused; tokens carry it and role assignments name it.
//   User              a username (1..64 of [A-Za-z0-9._@-], starting with a letter or digit;
//                     unique case-insensitively, kept as written) and a password hash
//                     (crypto/password_hash.h). The first user is "admin" (EnsureAdmin).
//   ServicePrincipal  an application id ("appId" = OAuth2 client_id, a UUID), a display name
//                     (not unique, as in Entra ID) and 1..kMaxSecretsPerServicePrincipal client
//                     secrets. A secret is returned once, when made; only its hash is kept.
//   ManagedIdentity   the system-assigned identity of one platform resource (an ARM resource
//                     id), with its own client id and no secret: the platform asks for its
//                     tokens (TokenIssuer), nobody logs in as it.
//
// Storage (tables of the MetadataStore; values are JSON objects with a version "v": 1):
//   principals       {oid}                   the principal record (and a user's password hash)
//   principal_names  user/{lower username}   -> oid    (uniqueness and login lookup)
//                    app/{lower app id}      -> oid    (service principals, managed identities)
//                    resource/{lower resource id} -> oid  (managed identities)
//   sp_secrets       {oid}/{secret id}       {hash, hint, created}
// A principal and its index entries are written in one transaction, so they never disagree.
//
// Authentication failures are deliberately uninformative: a wrong username and a wrong password
// give the same Unauthenticated status, and an unknown username costs the same PBKDF2 work as a
// known one (against a dummy hash made at start-up), so neither the answer nor its timing tells
// whether an account exists. The same holds for client ids and secrets.
//
// Password work factors. User passwords use DirectoryOptions::password_iterations (600,000 by
// default). Client secrets are 30 random bytes (240 bits), so no brute force can reach them
// whatever the work factor; they use secret_iterations (1,000 by default, the SP 800-132
// minimum) so a client_credentials request costs well under a millisecond of CPU.
//
// Thread safety: all methods may be called concurrently (the store serialises writes).
#ifndef KEYFOUNDRY_IDENTITY_DIRECTORY_H_
#define KEYFOUNDRY_IDENTITY_DIRECTORY_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/clock.h"
#include "common/secret_bytes.h"
#include "common/status.h"
#include "crypto/password_hash.h"
#include "storage/metadata_store.h"

namespace keyfoundry::identity {

enum class PrincipalKind {
  kUser = 1,
  kServicePrincipal = 2,
  kManagedIdentity = 3,
};

// "user", "servicePrincipal", "managedIdentity" (stored, and used in logs).
std::string_view PrincipalKindName(PrincipalKind kind);
// ARM's principalType for role assignments: "User", or "ServicePrincipal" for both service
// principals and managed identities (as Azure reports them). Empty for a non-enumerator.
std::string_view ArmPrincipalType(PrincipalKind kind);

inline constexpr std::string_view kAdminUsername = "admin";
inline constexpr size_t kMaxSecretsPerServicePrincipal = 16;

struct Principal {
  std::string object_id;  // oid: a lower-case UUID
  PrincipalKind kind{};
  // User: the username as written; service principal: its display name; managed identity:
  // the resource id it belongs to.
  std::string display_name;
  std::string app_id;       // service principal and managed identity: the client id
  std::string resource_id;  // managed identity only, as written at creation
  int64_t created_at = 0;   // seconds since the epoch
};

// A client secret, as returned once when it is made.
struct ClientSecret {
  std::string secret_id;  // a UUID naming the secret (Entra ID's keyId)
  std::string hint;       // the first three characters, for display
  SecretBytes secret;     // the value (40 base64url characters); never stored
};

struct ServicePrincipalCredentials {
  Principal principal;  // its app_id is the OAuth2 client_id
  ClientSecret secret;
};

// What List reports about a secret: never the value.
struct ClientSecretInfo {
  std::string secret_id;
  std::string hint;
  int64_t created_at = 0;
};

struct DirectoryOptions {
  uint32_t password_iterations = crypto::kDefaultPasswordIterations;
  uint32_t secret_iterations = crypto::kMinPasswordIterations;
};

class Directory {
 public:
  // `store` and `clock` must outlive the directory. Computes the dummy hashes used for unknown
  // accounts (one PBKDF2 run at each work factor). InvalidArgument unless `tenant_id` is a UUID
  // and the iteration counts are within crypto/password_hash.h's bounds.
  static StatusOr<std::unique_ptr<Directory>> New(storage::MetadataStore& store,
                                                  std::string_view tenant_id,
                                                  const Clock& clock = Clock::Real(),
                                                  DirectoryOptions options = {});

  const std::string& tenant_id() const { return tenant_id_; }

  // --- users

  // InvalidArgument for a bad username or password (1..4096 bytes); AlreadyExists when the
  // username is taken (case-insensitively).
  StatusOr<Principal> CreateUser(std::string_view username, const SecretBytes& password);

  // The user whose username (case-insensitive) and password match. Unauthenticated("the
  // username or password is incorrect") for an unknown user, a wrong password and a malformed
  // username alike; other codes only for store failures.
  StatusOr<Principal> AuthenticateUser(std::string_view username,
                                       const SecretBytes& password) const;

  // Start-up: creates the user "admin" with `password` when there is none and returns it. When
  // "admin" exists it is returned unchanged: a later start with another password (say a changed
  // $KEYFOUNDRY_ADMIN_PASSWORD) keeps the stored one, so a stray environment variable can never
  // reset the administrator's password. Changing it is an explicit operation.
  StatusOr<Principal> EnsureAdmin(const SecretBytes& password);

  // Replaces the password of an existing user. NotFound when there is no such user.
  Status SetUserPassword(std::string_view username, const SecretBytes& password);

  // NotFound when there is no such user.
  StatusOr<Principal> GetUser(std::string_view username) const;

  // --- service principals

  // A new service principal with a new app id and its first client secret. InvalidArgument
  // unless `display_name` is 1..256 bytes of printable UTF-8.
  StatusOr<ServicePrincipalCredentials> CreateServicePrincipal(std::string_view display_name);

  // Adds a client secret. NotFound for an unknown app id; ResourceExhausted past
  // kMaxSecretsPerServicePrincipal.
  StatusOr<ClientSecret> AddClientSecret(std::string_view app_id);
  // NotFound when the app or the secret does not exist.
  Status DeleteClientSecret(std::string_view app_id, std::string_view secret_id);
  StatusOr<std::vector<ClientSecretInfo>> ListClientSecrets(std::string_view app_id) const;

  // The service principal whose app id is `client_id` and one of whose secrets is `secret`.
  // Unauthenticated("the client id or secret is incorrect") for an unknown client, a managed
  // identity's client id, or a wrong secret alike.
  StatusOr<Principal> AuthenticateServicePrincipal(std::string_view client_id,
                                                   const SecretBytes& secret) const;

  // All service principals, by object id.
  StatusOr<std::vector<Principal>> ListServicePrincipals() const;

  // Deletes a service principal and its secrets. NotFound when there is none. Its role
  // assignments are left to the caller (Azure leaves them, shown as "Identity not found").
  Status DeleteServicePrincipal(std::string_view app_id);

  // --- managed identities

  // The system-assigned identity of `resource_id` (a valid ARM scope, see ids.h).
  // AlreadyExists when the resource has one (get it with GetManagedIdentityByResource).
  StatusOr<Principal> CreateManagedIdentity(std::string_view resource_id);
  // NotFound when the resource (compared case-insensitively) has no identity.
  StatusOr<Principal> GetManagedIdentityByResource(std::string_view resource_id) const;
  // Deletes the identity; its object id is never given out again. NotFound when there is none.
  Status DeleteManagedIdentity(std::string_view resource_id);

  // --- any principal

  // NotFound when no principal has this object id (compared case-insensitively).
  StatusOr<Principal> GetPrincipal(std::string_view object_id) const;
  // The service principal or managed identity with this client id; NotFound otherwise.
  StatusOr<Principal> GetPrincipalByAppId(std::string_view app_id) const;

 private:
  Directory(storage::MetadataStore& store, std::string tenant_id, const Clock& clock,
            DirectoryOptions options, std::string dummy_password_hash,
            std::string dummy_secret_hash);

  int64_t Now() const;
  StatusOr<Principal> CreatePrincipal(Principal principal, const std::string& index_key,
                                      const std::string& password_hash,
                                      const std::string& second_index_key);
  StatusOr<ClientSecret> MakeSecret(std::string* hash) const;

  storage::MetadataStore& store_;
  const std::string tenant_id_;
  const Clock& clock_;
  const DirectoryOptions options_;
  const std::string dummy_password_hash_;
  const std::string dummy_secret_hash_;
};

}  // namespace keyfoundry::identity

#endif  // KEYFOUNDRY_IDENTITY_DIRECTORY_H_
