// RemoteVaultClient: a VaultClient for any server speaking the Azure Key Vault keys REST API
// over HTTPS (another keyfoundryd, or Azure itself), authenticated as a service principal.
//
// Which vaults: only https vault URIs and kids whose host ends with `host_suffix`; anything
// else is InvalidArgument (reason "BadParameter") naming the URI, before any byte is sent.
//
// Who: the configured service principal (client_id + client_secret in the remote server's
// tenant), for every call. The `who` argument of the VaultClient methods is NOT used to
// authenticate: the remote vault's access policies (or RBAC role assignments, e.g. "Key Vault
// Crypto Service Encryption User") must grant that service principal get, wrapKey and
// unwrapKey on the key. The vault never sees `who`: the caller records it in its own audit.
//
// Authentication, as the Azure SDK's challenge policy does it:
//   1. A request goes with the token cached for its vault host, or without any token (and, for
//      wrapkey/unwrapkey, without its body, so key bytes never precede authentication).
//   2. On 401 the vault's challenge is read:
//        WWW-Authenticate: Bearer authorization="{authority}", resource="{resource}"
//      (also authorization_uri= and scope="{resource}/.default"). The resource's host must be
//      the vault host or a parent domain of it ("vault.localhost" for
//      "kv1.vault.localhost"), else Unauthenticated: a vault cannot make us ask for a token for
//      another service.
//   3. A token is asked of {authority}/oauth2/v2.0/token with the client_credentials grant and
//      scope={resource}/.default; `options.authority`, when set, replaces the challenge's
//      authority (the client secret then goes only there). The token is cached per
//      (authority, resource) until 5 minutes (at most half its lifetime) before expires_in,
//      and the challenge per vault host, so later calls send the token at once.
//   4. The request is retried once with the new token; a second 401 is Unauthenticated.
// A learned authority receives the client secret, so New() requires ca_pem when authority is
// empty: the authority must then prove itself with a certificate from that CA.
//
// Error mapping (Azure's envelope {"error":{"code","message","innererror":{"code"}}}):
//   403                      PermissionDenied, reason innererror.code if present, else
//                            error.code ("AccessDenied", "KeyDisabled", "ForbiddenByRbac", ...)
//   404                      NotFound, reason error.code ("KeyNotFound", "VaultNotFound")
//   400                      InvalidArgument, reason error.code ("BadParameter")
//   401 after a fresh token  Unauthenticated, reason error.code; also when no token can be had
//                            (the token endpoint refuses the client: wrong id or secret)
//   409                      FailedPrecondition, reason error.code
//   429, 5xx, transport      Unavailable, reason empty (TLS failures, an untrusted
//   failure, timeout         certificate and DeadlineExceeded included); also for the token
//                            endpoint's 429/5xx
//   any other status, or a   Unknown: the server does not behave like a key vault
//   200 that does not parse
// Messages name the operation and the key and carry the server's own message (truncated);
// never key bytes, the token or the client secret.
//
// Thread safety: safe to use from many threads at once. Connections are kept alive in a small
// pool of HttpsClients (each used by one thread at a time); the token cache is shared.
#ifndef KEYFOUNDRY_ENCRYPTION_REMOTE_VAULT_CLIENT_H_
#define KEYFOUNDRY_ENCRYPTION_REMOTE_VAULT_CLIENT_H_

#include <chrono>
#include <cstddef>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/clock.h"
#include "common/mutex.h"
#include "common/secret_bytes.h"
#include "common/status.h"
#include "encryption/vault_client.h"

namespace keyfoundry::http {
class HttpsClient;
struct ClientRequest;
struct ClientResponse;
}  // namespace keyfoundry::http

namespace keyfoundry::encryption {

struct RemoteVaultOptions {
  // The vault hosts served: a host matches when it ends with this suffix, ignoring ASCII case.
  // Must start with '.' (".vault.other.example" serves "kv1.vault.other.example" but not
  // "evil-vault.other.example" nor "vault.other.example" itself).
  std::string host_suffix;
  // A service principal of the remote server's tenant (its application id and a secret).
  std::string client_id;
  SecretBytes client_secret;
  // "https://HOST[:PORT]/{tenant}": where tokens are asked for. Empty: the authority the
  // vault's 401 challenge names (then ca_pem is required, see above).
  std::string authority;
  // PEM certificate(s) trusted for the vault and the authority; empty: the system's store.
  std::string ca_pem;
  // Connect to this IP address instead of resolving the vault's (and the authority's) host;
  // Host, SNI and certificate checks still use the URL's host. For hosts that do not resolve
  // ("*.vault.localhost" served on 127.0.0.1).
  std::optional<std::string> connect_address;
  // Bounds each HTTP exchange (connect, TLS, write, read). A call makes up to four: a token
  // request for a stale cached token, the first try, a token request after a 401, the retry.
  std::chrono::milliseconds timeout{std::chrono::seconds(10)};
  std::string api_version = "7.4";
  // For token lifetimes; nullptr: Clock::Real(). Must outlive the client.
  const Clock* clock = nullptr;
  // Idle keep-alive connections kept for reuse (1..64).
  size_t max_idle_connections = 4;
};

class RemoteVaultClient final : public VaultClient {
 public:
  // InvalidArgument unless: host_suffix starts with '.' and is a host name's tail; client_id
  // and client_secret are non-empty; authority is empty or https://HOST[:PORT]/PATH with no
  // query; authority is set or ca_pem is; ca_pem is empty or holds a PEM certificate;
  // connect_address is unset or non-empty; timeout is positive; api_version is non-empty and
  // URL-safe; max_idle_connections is 1..64.
  static StatusOr<std::unique_ptr<RemoteVaultClient>> New(RemoteVaultOptions options);

  ~RemoteVaultClient() override;
  RemoteVaultClient(const RemoteVaultClient&) = delete;
  RemoteVaultClient& operator=(const RemoteVaultClient&) = delete;

  // True when `vault_uri` is an https URI whose host ends with host_suffix (this client's).
  bool Serves(std::string_view vault_uri) const { return ServedOrigin(vault_uri).ok(); }

  StatusOr<VaultKeyInfo> GetKey(const ActingIdentity& who, const KeyReference& key) override;
  StatusOr<WrappedKey> WrapKey(const ActingIdentity& who, const KeyReference& key,
                               std::string_view algorithm, const SecretBytes& key_bytes) override;
  StatusOr<SecretBytes> UnwrapKey(const ActingIdentity& who, std::string_view kid,
                                  std::string_view algorithm, ByteView wrapped) override;

 private:
  // Where tokens for one vault host come from, as its challenge (or the options) said.
  struct Challenge {
    std::string authority;  // https://..., no trailing '/'
    std::string resource;   // https://..., no trailing '/'
  };
  struct Token {
    std::string access_token;
    std::chrono::system_clock::time_point refresh_at;
  };

  explicit RemoteVaultClient(RemoteVaultOptions options);

  // "https://host[:port]" of `vault_uri` (from ParseKid), or InvalidArgument when its host
  // does not end with host_suffix.
  StatusOr<std::string> ServedOrigin(std::string_view vault_uri) const;
  http::ClientRequest BaseRequest(std::string_view method, std::string_view url) const;

  // One vault request (`body` JSON or empty; it may carry key bytes and is not kept),
  // authenticated as the file comment says. `what` names the call in messages. Returns the
  // final response of any status but 401, or an error (transport, token, a second 401).
  StatusOr<http::ClientResponse> CallVault(std::string_view origin, std::string_view method,
                                           const std::string& url, const std::string& body,
                                           std::string_view what);

  // A token for `challenge`: the cached one unless it is due for refresh or equals `rejected`
  // (a token the vault just refused), else a new one from the authority.
  StatusOr<std::string> TokenFor(const Challenge& challenge, std::string_view rejected);
  std::optional<std::string> CachedToken(const Challenge& challenge, std::string_view rejected);
  StatusOr<Token> FetchToken(const Challenge& challenge);

  // One exchange on a pooled connection; transport failures are Unavailable.
  StatusOr<http::ClientResponse> Exchange(const http::ClientRequest& request);

  const RemoteVaultOptions options_;
  const Clock& clock_;

  // Lock order: fetch_mu_ before cache_mu_; pool_mu_ is never held with either.
  Mutex pool_mu_;
  std::vector<std::unique_ptr<http::HttpsClient>> idle_ GUARDED_BY(pool_mu_);

  // Serialises token requests, so that threads finding no token fetch one, not one each.
  Mutex fetch_mu_;
  Mutex cache_mu_;
  std::map<std::string, Challenge> challenges_ GUARDED_BY(cache_mu_);  // by vault origin
  // By (authority, resource).
  std::map<std::pair<std::string, std::string>, Token> tokens_ GUARDED_BY(cache_mu_);
};

}  // namespace keyfoundry::encryption

#endif  // KEYFOUNDRY_ENCRYPTION_REMOTE_VAULT_CLIENT_H_
