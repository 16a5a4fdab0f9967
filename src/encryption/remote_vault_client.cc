// RemoteVaultClient (remote_vault_client.h): the Azure Key Vault keys REST API over HTTPS.
//
// One call, in the common case (a token cached for the vault's host):
//   POST https://kv1.vault.example/keys/cmk/wrapkey?api-version=7.4
//   Authorization: Bearer eyJ...      {"alg":"RSA-OAEP-256","value":"<base64url>"}
//   -> 200 {"kid":"https://kv1.vault.example/keys/cmk/0123...cdef","value":"<base64url>"}
// On the first call for a host, or when the vault refuses the cached token, CallVault follows
// the 401 challenge (a token request to the authority) and retries once.
//
// Key bytes travel only in request and response bodies: every buffer of ours that held them
// (the JSON body, the base64url text, the decoded bytes) is zeroized once used. Copies that the
// HTTP and JSON libraries make internally are outside our reach.
#include "encryption/remote_vault_client.h"

#include <algorithm>
#include <bit>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <span>
#include <utility>

#include "common/encoding.h"
#include "common/strings.h"
#include "http/client.h"
#include "http/url.h"

namespace keyfoundry::encryption {
namespace {

using Json = nlohmann::json;

constexpr std::string_view kHttps = "https://";
constexpr size_t kMaxResponseBytes = size_t{1} << 20;  // a key bundle is a few KiB
constexpr size_t kMaxServerMessage = 512;              // of the vault's message, in ours
constexpr size_t kMaxIdleLimit = 64;
constexpr std::chrono::seconds kRefreshMargin{300};  // refresh tokens this long before expiry
constexpr size_t kMaxAlgorithm = 32;

void Wipe(std::string& s) {
  SecureZero(std::span<uint8_t>(reinterpret_cast<uint8_t*>(s.data()), s.size()));
}
void Wipe(Bytes& b) { SecureZero(std::span<uint8_t>(b)); }

bool IsHostChar(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '-' ||
         c == '.';
}

bool EndsWithIgnoreCase(std::string_view text, std::string_view suffix) {
  return text.size() >= suffix.size() &&
         EqualsIgnoreCase(text.substr(text.size() - suffix.size()), suffix);
}

// The host of "https://host[:port][/...]" (already checked to start with https://).
std::string_view HostOf(std::string_view https_uri) {
  std::string_view rest = https_uri.substr(kHttps.size());
  rest = rest.substr(0, rest.find('/'));
  return rest.substr(0, rest.find(':'));
}

// The vault's origin "https://host[:port]" from a vault URI that ParseKid produced.
std::string OriginOf(std::string_view vault_uri) {
  while (!vault_uri.empty() && vault_uri.back() == '/') vault_uri.remove_suffix(1);
  return std::string(vault_uri);
}

// An authority or resource URI as we accept it: https://HOST[:PORT][/PATH] with no query,
// fragment, user info, quote or space; trailing slashes dropped. nullopt otherwise.
std::optional<std::string> CleanHttpsUri(std::string_view uri) {
  if (uri.size() > 512 || uri.size() <= kHttps.size() ||
      !EqualsIgnoreCase(uri.substr(0, kHttps.size()), kHttps) ||
      uri.find_first_of("?#@\"\\ \t\r\n") != std::string_view::npos) {
    return std::nullopt;
  }
  while (uri.size() > kHttps.size() && uri.back() == '/') uri.remove_suffix(1);
  const std::string_view host = HostOf(uri);
  if (host.empty() || !std::all_of(host.begin(), host.end(), IsHostChar)) return std::nullopt;
  return "https://" + std::string(uri.substr(kHttps.size()));
}

// Printable ASCII of the server's message, bounded, for our Status messages.
std::string Bounded(std::string_view text) {
  std::string out;
  for (char c : text.substr(0, kMaxServerMessage)) out += (c >= 0x20 && c < 0x7f) ? c : ' ';
  if (text.size() > kMaxServerMessage) out += "...";
  return out;
}

Status BadParameter(std::string message) {
  return InvalidArgumentError(std::move(message)).WithReason("BadParameter");
}

Status Unexpected(std::string_view what, std::string_view why) {
  return Status(StatusCode::kUnknown, std::string(what) + ": " + std::string(why));
}

// Azure's error envelope {"error":{"code","message","innererror":{"code"}}}, any part absent.
struct AzureError {
  std::string code, message, inner_code;
};

AzureError ParseAzureError(std::string_view body) {
  AzureError out;
  const Json doc = Json::parse(body, nullptr, false);
  if (!doc.is_object() || !doc.contains("error") || !doc["error"].is_object()) return out;
  const Json& error = doc["error"];
  if (error.contains("code") && error["code"].is_string()) out.code = error["code"];
  if (error.contains("message") && error["message"].is_string()) out.message = error["message"];
  if (error.contains("innererror") && error["innererror"].is_object() &&
      error["innererror"].contains("code") && error["innererror"]["code"].is_string()) {
    out.inner_code = error["innererror"]["code"];
  }
  return out;
}

// The Status for a vault's non-success answer (the table in remote_vault_client.h).
Status VaultError(const http::ClientResponse& response, std::string_view what) {
  const AzureError e = ParseAzureError(response.body);
  const std::string message =
      std::string(what) + ": " +
      (e.message.empty() ? "HTTP " + std::to_string(response.status) : Bounded(e.message));
  const int s = response.status;
  if (s == 400) return InvalidArgumentError(message).WithReason(e.code);
  if (s == 401) return UnauthenticatedError(message).WithReason(e.code);
  if (s == 403) {
    return PermissionDeniedError(message).WithReason(e.inner_code.empty() ? e.code : e.inner_code);
  }
  if (s == 404) return NotFoundError(message).WithReason(e.code);
  if (s == 409) return FailedPreconditionError(message).WithReason(e.code);
  if (s == 429 || s >= 500) return UnavailableError(message);
  return Unexpected(what,
                    "unexpected HTTP status " + std::to_string(s) + ": " + Bounded(e.message));
}

// Reads `WWW-Authenticate: Bearer authorization="...", resource="..."` (or authorization_uri,
// scope="{resource}/.default"). Parameter values may be quoted strings with \-escapes or
// tokens. nullopt when the header is not a Bearer challenge naming both.
struct RawChallenge {
  std::string authority, resource;
};

std::optional<RawChallenge> ParseBearerChallenge(std::string_view header) {
  auto skip = [&](std::string_view chars) {
    while (!header.empty() && chars.find(header.front()) != std::string_view::npos) {
      header.remove_prefix(1);
    }
  };
  skip(" \t");
  constexpr std::string_view kBearer = "bearer";
  if (header.size() <= kBearer.size() ||
      !EqualsIgnoreCase(header.substr(0, kBearer.size()), kBearer) ||
      (header[kBearer.size()] != ' ' && header[kBearer.size()] != '\t')) {
    return std::nullopt;
  }
  header.remove_prefix(kBearer.size());
  std::map<std::string, std::string> params;
  for (;;) {
    skip(" \t,");
    if (header.empty()) break;
    const size_t eq = header.find('=');
    if (eq == std::string_view::npos) return std::nullopt;
    std::string_view name = header.substr(0, eq);
    while (!name.empty() && (name.back() == ' ' || name.back() == '\t')) name.remove_suffix(1);
    header.remove_prefix(eq + 1);
    skip(" \t");
    std::string value;
    if (!header.empty() && header.front() == '"') {
      header.remove_prefix(1);
      bool closed = false;
      while (!header.empty()) {
        char c = header.front();
        header.remove_prefix(1);
        if (c == '"') {
          closed = true;
          break;
        }
        if (c == '\\' && !header.empty()) {
          c = header.front();
          header.remove_prefix(1);
        }
        value += c;
      }
      if (!closed) return std::nullopt;
    } else {
      const size_t end = header.find(',');
      value = std::string(header.substr(0, end));
      while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.pop_back();
      header.remove_prefix(end == std::string_view::npos ? header.size() : end);
    }
    params.emplace(ToLowerAscii(name), std::move(value));
  }
  RawChallenge out;
  for (const char* name : {"authorization", "authorization_uri"}) {
    if (auto it = params.find(name); it != params.end() && out.authority.empty()) {
      out.authority = it->second;
    }
  }
  if (auto it = params.find("resource"); it != params.end()) {
    out.resource = it->second;
  } else if (it = params.find("scope"); it != params.end()) {
    constexpr std::string_view kDefault = "/.default";
    out.resource = it->second;
    if (EndsWithIgnoreCase(out.resource, kDefault)) {
      out.resource.resize(out.resource.size() - kDefault.size());
    }
  }
  if (out.authority.empty() || out.resource.empty()) return std::nullopt;
  return out;
}

// A key reference checked and normalised: a key is well named exactly when the kid it would
// have parses (ParseKid); an empty version is stood in for by a placeholder meanwhile.
StatusOr<KeyReference> CheckedReference(const KeyReference& key) {
  std::string uri = key.vault_uri;
  if (uri.empty() || uri.back() != '/') uri += '/';
  const std::string placeholder(32, '0');
  StatusOr<KeyReference> parsed =
      ParseKid(uri + "keys/" + key.name + "/" + (key.version.empty() ? placeholder : key.version));
  if (!parsed.ok() || !EqualsIgnoreCase(parsed->vault_uri, uri) || parsed->name != key.name) {
    return BadParameter("not a key reference: vault URI '" + Bounded(key.vault_uri) +
                        "', key name '" + Bounded(key.name) + "', version '" +
                        Bounded(key.version) +
                        "' (a vault URI is https://HOST[:PORT]/, a name 1 to 127 of 0-9 A-Z a-z "
                        "and '-', a version empty or 32 hex digits)");
  }
  if (key.version.empty()) parsed->version.clear();
  return parsed;
}

// JOSE algorithm names are short tokens; checked so they can go into JSON unescaped.
Status CheckAlgorithm(std::string_view algorithm) {
  if (algorithm.empty() || algorithm.size() > kMaxAlgorithm ||
      !std::all_of(algorithm.begin(), algorithm.end(),
                   [](char c) { return IsHostChar(c) || c == '_'; })) {
    return BadParameter("'" + Bounded(algorithm) + "' is not a key wrap algorithm name");
  }
  return OkStatus();
}

// {"alg":"...","value":"<base64url>"}; `alg` passed CheckAlgorithm.
std::string OperationBody(std::string_view algorithm, ByteView value) {
  std::string encoded = Base64UrlEncode(value);
  std::string body = R"({"alg":")" + std::string(algorithm) + R"(","value":")" + encoded + "\"}";
  Wipe(encoded);
  return body;
}

// The "value" of a 200 KeyOperationResult, decoded, and its "kid" into *kid when asked.
// `body` and the JSON's copy of the value are zeroized.
StatusOr<Bytes> ResultValue(std::string& body, std::string_view what, std::string* kid) {
  Json doc = Json::parse(body, nullptr, false);
  Wipe(body);
  std::string* value =
      doc.is_object() && doc.contains("value") ? doc["value"].get_ptr<std::string*>() : nullptr;
  if (value == nullptr) return Unexpected(what, "the vault's answer has no value");
  StatusOr<Bytes> decoded = Base64UrlDecode(*value);
  Wipe(*value);
  if (!decoded.ok() || decoded->empty()) {
    return Unexpected(what, "the vault's answer has no base64url value");
  }
  if (kid != nullptr && doc.contains("kid") && doc["kid"].is_string()) *kid = doc["kid"];
  return decoded;
}

// The number of bits of an unsigned big-endian integer (leading zero bytes ignored).
int BitLength(ByteView magnitude) {
  size_t i = 0;
  while (i < magnitude.size() && magnitude[i] == 0) ++i;
  if (i == magnitude.size()) return 0;
  return static_cast<int>((magnitude.size() - i - 1) * 8) + std::bit_width(magnitude[i]);
}

// Checks that `kid` (from the vault's answer) names key `name` of the vault at `origin`, and,
// when `version` is set, that version.
Status CheckAnsweredKid(std::string_view kid, std::string_view origin, std::string_view name,
                        std::string_view version, std::string_view what) {
  StatusOr<KeyReference> parsed = ParseKid(kid);
  if (!parsed.ok()) return Unexpected(what, "the vault answered with a malformed kid");
  if (!EqualsIgnoreCase(OriginOf(parsed->vault_uri), origin) ||
      !EqualsIgnoreCase(parsed->name, name) ||
      (!version.empty() && !EqualsIgnoreCase(parsed->version, version))) {
    return Unexpected(what, "the vault answered for another key: " + Bounded(kid));
  }
  return OkStatus();
}

StatusOr<VaultKeyInfo> ParseKeyBundle(std::string_view body, const KeyReference& ref,
                                      std::string_view what) {
  const Json doc = Json::parse(body, nullptr, false);
  auto malformed = [&](std::string_view why) {
    return Unexpected(what, "malformed key bundle (" + std::string(why) + ")");
  };
  if (!doc.is_object() || !doc.contains("key") || !doc["key"].is_object()) {
    return malformed("no key");
  }
  const Json& key = doc["key"];
  VaultKeyInfo info;
  if (!key.contains("kid") || !key["kid"].is_string()) return malformed("no kid");
  info.kid = key["kid"];
  RETURN_IF_ERROR(CheckAnsweredKid(info.kid, OriginOf(ref.vault_uri), ref.name, ref.version, what));
  if (!key.contains("kty") || !key["kty"].is_string()) return malformed("no kty");
  info.kty = key["kty"];
  if (info.kty == "RSA" || info.kty == "RSA-HSM") {
    if (!key.contains("n") || !key["n"].is_string()) return malformed("an RSA key without n");
    StatusOr<Bytes> n = Base64UrlDecode(key["n"].get<std::string>());
    if (!n.ok()) return malformed("n is not base64url");
    info.rsa_bits = BitLength(*n);
  }
  if (key.contains("key_ops")) {
    if (!key["key_ops"].is_array()) return malformed("key_ops is not an array");
    for (const Json& op : key["key_ops"]) {
      if (!op.is_string()) return malformed("key_ops holds a non-string");
      info.key_ops.push_back(op.get<std::string>());
    }
  }
  // A bundle without attributes.enabled is read as disabled: the engine then refuses the key.
  if (doc.contains("attributes")) {
    const Json& a = doc["attributes"];
    if (!a.is_object()) return malformed("attributes is not an object");
    if (a.contains("enabled") && a["enabled"].is_boolean()) info.enabled = a["enabled"];
    const std::pair<const char*, std::optional<int64_t>*> times[] = {{"nbf", &info.not_before},
                                                                     {"exp", &info.expires}};
    for (const auto& [field, out] : times) {
      if (!a.contains(field) || a[field].is_null()) continue;
      if (!a[field].is_number_integer()) return malformed(std::string(field) + " is not a number");
      *out = a[field].get<int64_t>();
    }
  }
  return info;
}

}  // namespace

// ------------------------------------------------------------------ construction

StatusOr<std::unique_ptr<RemoteVaultClient>> RemoteVaultClient::New(RemoteVaultOptions options) {
  const std::string& suffix = options.host_suffix;
  if (suffix.size() < 2 || suffix.front() != '.' || suffix.back() == '.' ||
      suffix.find("..") != std::string::npos ||
      !std::all_of(suffix.begin(), suffix.end(), IsHostChar)) {
    return InvalidArgumentError(
        "host_suffix must be a host name's tail starting with '.', e.g. "
        "\".vault.example\"");
  }
  if (options.client_id.empty() || options.client_id.size() > 256) {
    return InvalidArgumentError("client_id must be the service principal's application id");
  }
  if (options.client_secret.empty()) {
    return InvalidArgumentError("client_secret must not be empty");
  }
  if (!options.authority.empty()) {
    std::optional<std::string> authority = CleanHttpsUri(options.authority);
    if (!authority) {
      return InvalidArgumentError("authority must be https://HOST[:PORT]/TENANT, not '" +
                                  Bounded(options.authority) + "'");
    }
    options.authority = *std::move(authority);
  } else if (options.ca_pem.empty()) {
    return InvalidArgumentError(
        "an authority learned from the vault's challenge receives the client secret: give the "
        "authority, or a ca_pem that both must chain to");
  }
  if (!options.ca_pem.empty() &&
      options.ca_pem.find("-----BEGIN CERTIFICATE-----") == std::string::npos) {
    return InvalidArgumentError("ca_pem holds no PEM certificate");
  }
  if (options.connect_address && options.connect_address->empty()) {
    return InvalidArgumentError("connect_address, when given, must be an IP address");
  }
  if (options.timeout.count() <= 0) return InvalidArgumentError("timeout must be positive");
  if (options.api_version.empty() || options.api_version.size() > 32 ||
      !std::all_of(options.api_version.begin(), options.api_version.end(), IsHostChar)) {
    return InvalidArgumentError("api_version must be like \"7.4\"");
  }
  if (options.max_idle_connections < 1 || options.max_idle_connections > kMaxIdleLimit) {
    return InvalidArgumentError("max_idle_connections must be 1 to 64");
  }
  return std::unique_ptr<RemoteVaultClient>(new RemoteVaultClient(std::move(options)));
}

RemoteVaultClient::RemoteVaultClient(RemoteVaultOptions options)
    : options_(std::move(options)),
      clock_(options_.clock != nullptr ? *options_.clock : Clock::Real()) {}

RemoteVaultClient::~RemoteVaultClient() = default;

// ------------------------------------------------------------------ the operations

StatusOr<VaultKeyInfo> RemoteVaultClient::GetKey(const ActingIdentity& /*who*/,
                                                 const KeyReference& key) {
  ASSIGN_OR_RETURN(const KeyReference ref, CheckedReference(key));
  ASSIGN_OR_RETURN(const std::string origin, ServedOrigin(ref.vault_uri));
  const std::string path =
      origin + "/keys/" + ref.name + (ref.version.empty() ? "" : "/" + ref.version);
  const std::string what = "getting key " + path;
  std::string no_body;
  ASSIGN_OR_RETURN(
      http::ClientResponse response,
      CallVault(origin, "GET", path + "?api-version=" + options_.api_version, no_body, what));
  if (response.status != 200) return VaultError(response, what);
  return ParseKeyBundle(response.body, ref, what);
}

StatusOr<WrappedKey> RemoteVaultClient::WrapKey(const ActingIdentity& /*who*/,
                                                const KeyReference& key, std::string_view algorithm,
                                                const SecretBytes& key_bytes) {
  ASSIGN_OR_RETURN(const KeyReference ref, CheckedReference(key));
  ASSIGN_OR_RETURN(const std::string origin, ServedOrigin(ref.vault_uri));
  RETURN_IF_ERROR(CheckAlgorithm(algorithm));
  if (key_bytes.empty()) return BadParameter("there is no key to wrap");
  const std::string path =
      origin + "/keys/" + ref.name + (ref.version.empty() ? "" : "/" + ref.version);
  const std::string what = "wrapping with key " + path;
  std::string body = OperationBody(algorithm, key_bytes.Reveal(InsecureSecretAccess()));
  StatusOr<http::ClientResponse> response =
      CallVault(origin, "POST", path + "/wrapkey?api-version=" + options_.api_version, body, what);
  Wipe(body);
  if (!response.ok()) return response.status();
  if (response->status != 200) return VaultError(*response, what);
  WrappedKey out;
  ASSIGN_OR_RETURN(out.value, ResultValue(response->body, what, &out.kid));
  if (out.kid.empty()) return Unexpected(what, "the vault's answer names no kid");
  RETURN_IF_ERROR(CheckAnsweredKid(out.kid, origin, ref.name, ref.version, what));
  return out;
}

StatusOr<SecretBytes> RemoteVaultClient::UnwrapKey(const ActingIdentity& /*who*/,
                                                   std::string_view kid, std::string_view algorithm,
                                                   ByteView wrapped) {
  ASSIGN_OR_RETURN(const KeyReference ref, ParseKid(kid));
  ASSIGN_OR_RETURN(const std::string origin, ServedOrigin(ref.vault_uri));
  RETURN_IF_ERROR(CheckAlgorithm(algorithm));
  if (wrapped.empty()) return BadParameter("there is no wrapped key to unwrap");
  const std::string path = origin + "/keys/" + ref.name + "/" + ref.version;
  const std::string what = "unwrapping with key " + path;
  std::string body = OperationBody(algorithm, wrapped);
  ASSIGN_OR_RETURN(http::ClientResponse response,
                   CallVault(origin, "POST",
                             path + "/unwrapkey?api-version=" + options_.api_version, body, what));
  if (response.status != 200) return VaultError(response, what);
  ASSIGN_OR_RETURN(Bytes value, ResultValue(response.body, what, nullptr));
  SecretBytes out(value, InsecureSecretAccess());
  Wipe(value);
  return out;
}

// ------------------------------------------------------------------ the machinery

StatusOr<std::string> RemoteVaultClient::ServedOrigin(std::string_view vault_uri) const {
  const std::string origin = OriginOf(vault_uri);
  const std::string_view host = HostOf(origin);
  if (host.size() <= options_.host_suffix.size() ||
      !EndsWithIgnoreCase(host, options_.host_suffix)) {
    return BadParameter("the vault '" + Bounded(vault_uri) +
                        "' is not served by this client (its vault hosts end with '" +
                        options_.host_suffix + "')");
  }
  return origin;
}

http::ClientRequest RemoteVaultClient::BaseRequest(std::string_view method,
                                                   std::string_view url) const {
  http::ClientRequest request;
  request.method = std::string(method);
  request.url = std::string(url);
  request.ca_pem = options_.ca_pem;
  request.connect_address = options_.connect_address;
  request.timeout = options_.timeout;
  request.max_response_bytes = kMaxResponseBytes;
  request.headers.emplace_back("Accept", "application/json");
  return request;
}

StatusOr<http::ClientResponse> RemoteVaultClient::CallVault(std::string_view origin,
                                                            std::string_view method,
                                                            const std::string& url,
                                                            const std::string& body,
                                                            std::string_view what) {
  std::optional<Challenge> challenge;
  {
    MutexLock lock(&cache_mu_);
    auto it = challenges_.find(std::string(origin));
    if (it != challenges_.end()) challenge = it->second;
  }
  std::string token;
  if (challenge) {
    StatusOr<std::string> cached = TokenFor(*challenge, "");
    if (!cached.ok()) return cached.status().WithContext(what);
    token = *std::move(cached);
  }

  for (int attempt = 0;; ++attempt) {
    // Without a token, a request with a body is sent without it: a probe for the challenge.
    const bool probe = token.empty() && !body.empty();
    http::ClientRequest request = BaseRequest(method, url);
    if (!token.empty()) request.headers.emplace_back("Authorization", "Bearer " + token);
    if (!probe && !body.empty()) {
      request.headers.emplace_back("Content-Type", "application/json");
      request.body = body;
    }
    StatusOr<http::ClientResponse> response = Exchange(request);
    Wipe(request.body);
    if (!response.ok()) return response.status().WithContext(what);
    if (response->status != 401) {
      if (probe && response->status < 400) {
        return Unexpected(what, "the vault accepted a request without credentials");
      }
      return response;
    }
    if (attempt > 0) {
      return VaultError(*response, std::string(what) + ": the vault refused a fresh token");
    }

    std::optional<std::string_view> header = response->Header("WWW-Authenticate");
    std::optional<RawChallenge> raw =
        header ? ParseBearerChallenge(*header) : std::optional<RawChallenge>();
    if (!raw) {
      return UnauthenticatedError(std::string(what) +
                                  ": the vault answered 401 without a Bearer challenge");
    }
    std::optional<std::string> resource = CleanHttpsUri(raw->resource);
    const std::string_view vault_host = HostOf(origin);
    if (!resource || (!EqualsIgnoreCase(HostOf(*resource), vault_host) &&
                      !EndsWithIgnoreCase(vault_host, "." + std::string(HostOf(*resource))))) {
      return UnauthenticatedError(std::string(what) + ": the vault's challenge names resource '" +
                                  Bounded(raw->resource) + "', which is not a domain of " +
                                  std::string(vault_host));
    }
    Challenge learned;
    learned.resource = *std::move(resource);
    if (!options_.authority.empty()) {
      learned.authority = options_.authority;
    } else {
      std::optional<std::string> authority = CleanHttpsUri(raw->authority);
      if (!authority) {
        return UnauthenticatedError(std::string(what) +
                                    ": the vault's challenge names no usable authority ('" +
                                    Bounded(raw->authority) + "')");
      }
      learned.authority = *std::move(authority);
    }
    {
      MutexLock lock(&cache_mu_);
      challenges_[std::string(origin)] = learned;
    }
    StatusOr<std::string> fresh = TokenFor(learned, token);
    if (!fresh.ok()) return fresh.status().WithContext(what);
    token = *std::move(fresh);
  }
}

std::optional<std::string> RemoteVaultClient::CachedToken(const Challenge& challenge,
                                                          std::string_view rejected) {
  MutexLock lock(&cache_mu_);
  auto it = tokens_.find({challenge.authority, challenge.resource});
  if (it == tokens_.end() || clock_.Now() >= it->second.refresh_at ||
      it->second.access_token == rejected) {
    return std::nullopt;
  }
  return it->second.access_token;
}

StatusOr<std::string> RemoteVaultClient::TokenFor(const Challenge& challenge,
                                                  std::string_view rejected) {
  if (std::optional<std::string> cached = CachedToken(challenge, rejected)) return *cached;
  MutexLock fetching(&fetch_mu_);
  // Another thread may have fetched one while this one waited.
  if (std::optional<std::string> cached = CachedToken(challenge, rejected)) return *cached;
  ASSIGN_OR_RETURN(Token fetched, FetchToken(challenge));
  std::string out = fetched.access_token;
  MutexLock lock(&cache_mu_);
  tokens_[{challenge.authority, challenge.resource}] = std::move(fetched);
  return out;
}

StatusOr<RemoteVaultClient::Token> RemoteVaultClient::FetchToken(const Challenge& challenge) {
  const std::string what = "getting a token from " + challenge.authority + " for " +
                           challenge.resource + " as client " + options_.client_id;
  http::ClientRequest request = BaseRequest("POST", challenge.authority + "/oauth2/v2.0/token");
  request.headers.emplace_back("Content-Type", "application/x-www-form-urlencoded");
  std::string secret =
      http::PercentEncode(AsStringView(options_.client_secret.Reveal(InsecureSecretAccess())));
  request.body =
      "grant_type=client_credentials&client_id=" + http::PercentEncode(options_.client_id) +
      "&client_secret=" + secret +
      "&scope=" + http::PercentEncode(challenge.resource + "/.default");
  Wipe(secret);
  const auto asked_at = clock_.Now();
  StatusOr<http::ClientResponse> response = Exchange(request);
  Wipe(request.body);
  if (!response.ok()) return response.status().WithContext(what);

  const Json doc = Json::parse(response->body, nullptr, false);
  Wipe(response->body);
  if (response->status != 200) {
    std::string detail = "HTTP " + std::to_string(response->status);
    if (doc.is_object() && doc.contains("error") && doc["error"].is_string()) {
      detail += " " + Bounded(doc["error"].get<std::string>());
      if (doc.contains("error_description") && doc["error_description"].is_string()) {
        detail += ": " + Bounded(doc["error_description"].get<std::string>());
      }
    }
    if (response->status == 429 || response->status >= 500) {
      return UnavailableError(what + ": " + detail);
    }
    return UnauthenticatedError(what + ": " + detail);
  }
  Token out;
  int64_t lifetime = 0;
  if (doc.is_object() && doc.contains("access_token") && doc["access_token"].is_string()) {
    out.access_token = doc["access_token"];
  }
  if (doc.is_object() && doc.contains("expires_in")) {
    const Json& e = doc["expires_in"];  // a number in v2.0; a string from some endpoints
    if (e.is_number_integer()) {
      lifetime = e.get<int64_t>();
    } else if (e.is_string()) {
      const std::string text = e.get<std::string>();
      if (!text.empty() && text.size() <= 9 &&
          std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; })) {
        lifetime = std::stoll(text);
      }
    }
  }
  if (out.access_token.empty() || out.access_token.find_first_of(" \t\r\n") != std::string::npos ||
      lifetime <= 0) {
    return UnauthenticatedError(what + ": the token endpoint's answer is malformed");
  }
  const std::chrono::seconds life(lifetime);
  out.refresh_at = asked_at + life - std::min<std::chrono::seconds>(kRefreshMargin, life / 2);
  return out;
}

StatusOr<http::ClientResponse> RemoteVaultClient::Exchange(const http::ClientRequest& request) {
  std::unique_ptr<http::HttpsClient> client;
  {
    MutexLock lock(&pool_mu_);
    if (!idle_.empty()) {
      client = std::move(idle_.back());
      idle_.pop_back();
    }
  }
  if (client == nullptr) client = std::make_unique<http::HttpsClient>();
  StatusOr<http::ClientResponse> response = client->Send(request);
  // A client whose exchange failed is dropped with its connection, whatever state it is in.
  if (!response.ok()) return UnavailableError(response.status().message());
  MutexLock lock(&pool_mu_);
  if (idle_.size() < options_.max_idle_connections) idle_.push_back(std::move(client));
  return response;
}

}  // namespace keyfoundry::encryption
