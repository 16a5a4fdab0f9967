// VaultClient: how the encryption engine reaches a customer's key in a key vault, acting as an
// account's managed identity. Two implementations:
//   LocalVaultClient  (local_vault_client.h)   the vault built into this keyfoundryd, called in
//                                                process as a trusted platform service;
//   RemoteVaultClient (remote_vault_client.h)  any server speaking the Azure Key Vault keys REST
//                                                API over HTTPS (another keyfoundryd), with
//                                                bearer tokens.
//
// A key is named by its vault URI ("https://myvault.vault.localhost:8443/"), its name and an
// optional version (empty: the key's current version). Results name the version actually used
// in `kid` ("https://myvault.vault.localhost:8443/keys/k1/0123...cdef", 32 hex digits), which
// the engine stores beside what it wrapped so that it unwraps with that exact version later.
//
// Failures carry Azure's reason (Status::reason(), see common/status.h), so that the engine can
// report a generation as KeyInaccessible with the reason an administrator can act on:
//   PermissionDenied  reason "AccessDenied", "ForbiddenByRbac", "ForbiddenByFirewall",
//                     "KeyDisabled", "KeyExpired", "KeyNotYetValid", "KeyOperationForbidden"
//   NotFound          reason "KeyNotFound" or "VaultNotFound"
//   InvalidArgument   reason "BadParameter" (a wrapped value that does not unwrap: the wrong
//                     key, or corruption)
//   Unavailable       the vault cannot be reached or answered 5xx/429 (reason empty)
//   Unauthenticated   the client could not get a token for the vault
// Messages are the vault's own (they name the key and the caller), never key material.
//
// Thread safety: implementations are safe to use from many threads at once.
#ifndef KEYFOUNDRY_ENCRYPTION_VAULT_CLIENT_H_
#define KEYFOUNDRY_ENCRYPTION_VAULT_CLIENT_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/bytes.h"
#include "common/secret_bytes.h"
#include "common/status.h"

namespace keyfoundry::encryption {

// Who the engine acts as: an account's system-assigned managed identity.
struct ActingIdentity {
  std::string object_id;  // oid, lower case
  std::string client_id;  // appid
  std::string tenant_id;
  std::string resource_id;  // the account's ARM id (for the vault's audit trail)
};

struct KeyReference {
  std::string vault_uri;  // "https://{vault}.vault.DOMAIN[:PORT]/", with or without the slash
  std::string name;
  std::string version;  // empty: the current version
};

// What the engine checks before it uses a key (BRIEF S3): its type, size, state and ops.
struct VaultKeyInfo {
  std::string kid;   // with the version
  std::string kty;   // "RSA", "RSA-HSM", "EC", ...
  int rsa_bits = 0;  // RSA types: the modulus size in bits
  bool enabled = false;
  std::optional<int64_t> not_before;  // unix seconds
  std::optional<int64_t> expires;
  std::vector<std::string> key_ops;  // "wrapKey", "unwrapKey", ...
};

struct WrappedKey {
  std::string kid;  // the version that wrapped it
  Bytes value;      // the RSA ciphertext
};

// The JOSE algorithm names the engine uses: "RSA-OAEP-256" for software RSA keys, "RSA-OAEP"
// where the HSM lacks OAEP with SHA-256 (see docs/key-hierarchy.md).
class VaultClient {
 public:
  virtual ~VaultClient() = default;

  // GET {vault}/keys/{name}[/{version}] as `who`.
  virtual StatusOr<VaultKeyInfo> GetKey(const ActingIdentity& who, const KeyReference& key) = 0;

  // POST .../wrapkey as `who`: wraps `key` (an account key generation, 32 bytes).
  virtual StatusOr<WrappedKey> WrapKey(const ActingIdentity& who, const KeyReference& key,
                                       std::string_view algorithm,
                                       const SecretBytes& key_bytes) = 0;

  // POST {kid}/unwrapkey as `who`. `kid` names the exact version (as WrapKey returned it).
  virtual StatusOr<SecretBytes> UnwrapKey(const ActingIdentity& who, std::string_view kid,
                                          std::string_view algorithm, ByteView wrapped) = 0;
};

// Splits a kid "https://host[:port]/keys/{name}/{version}" into its vault URI ("https://host
// [:port]/"), name and version. InvalidArgument (reason "BadParameter") for anything else.
StatusOr<KeyReference> ParseKid(std::string_view kid);

}  // namespace keyfoundry::encryption

#endif  // KEYFOUNDRY_ENCRYPTION_VAULT_CLIENT_H_
