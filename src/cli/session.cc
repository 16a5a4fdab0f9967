// The signed-in session: the profile, clients for the control plane and for a vault's data
// plane, the tokens they need, and paging.
#include <arpa/inet.h>

#include <ctime>

#include "cli/commands.h"
#include "common/encoding.h"
#include "common/file_util.h"
#include "common/strings.h"

namespace keyfoundry::cli {
namespace {

// A cached token for `scope`, renewed for a service principal with its stored secret.
StatusOr<AccessToken> TokenFor(Profile& profile, Client& client, const std::string& scope,
                               std::string_view what) {
  auto cached = profile.tokens.find(scope);
  const int64_t now = static_cast<int64_t>(std::time(nullptr));
  if (cached != profile.tokens.end() && cached->second.expires_on > now + 60) {
    return AccessToken{cached->second.access_token, cached->second.expires_on};
  }
  if (!profile.service_principal) {
    if (cached == profile.tokens.end()) {
      return UnauthenticatedError("the sign-in of " + profile.user + " holds no token for " +
                                  std::string(what) + ": run `kf login` again");
    }
    return UnauthenticatedError("the sign-in of " + profile.user +
                                " has expired: run `kf login` again");
  }
  SecretBytes secret(AsBytes(profile.client_secret), InsecureSecretAccess());
  ASSIGN_OR_RETURN(AccessToken token,
                   client.TokenForServicePrincipal(profile.tenant_id, profile.user, secret, scope));
  profile.tokens[scope] = {token.token, token.expires_on};
  RETURN_IF_ERROR(SaveProfile(ConfigDir(), profile));
  return token;
}

struct HostPort {
  std::string host;  // as in the URL: "127.0.0.1", "[::1]", "kf.example.test"
  std::string port;  // without the colon; empty when the URL has none
};

HostPort SplitServer(std::string_view server) {
  constexpr std::string_view kScheme = "https://";
  if (server.substr(0, kScheme.size()) == kScheme) server.remove_prefix(kScheme.size());
  server = server.substr(0, server.find('/'));
  HostPort out;
  size_t host_end = 0;
  if (!server.empty() && server[0] == '[') {
    host_end = server.find(']');
    host_end = host_end == std::string_view::npos ? server.size() : host_end + 1;
  } else {
    host_end = std::min(server.find(':'), server.size());
  }
  out.host = std::string(server.substr(0, host_end));
  if (host_end < server.size() && server[host_end] == ':') {
    out.port = std::string(server.substr(host_end + 1));
  }
  return out;
}

// The address to connect to for a vault host: the server's own, when its URL names one.
std::optional<std::string> ServerAddress(const std::string& host) {
  std::string bare = host;
  if (bare.size() > 2 && bare.front() == '[' && bare.back() == ']') {
    bare = bare.substr(1, bare.size() - 2);
  }
  in6_addr any{};
  if (inet_pton(AF_INET, bare.c_str(), &any) == 1 || inet_pton(AF_INET6, bare.c_str(), &any) == 1) {
    return bare;
  }
  if (EqualsIgnoreCase(bare, "localhost")) return std::string("127.0.0.1");
  return std::nullopt;
}

StatusOr<std::pair<Profile, std::string>> LoadProfileAndCa() {
  ASSIGN_OR_RETURN(Profile profile, LoadProfile(ConfigDir()));
  StatusOr<std::string> ca = ReadFile(profile.ca_path);
  if (!ca.ok()) {
    return NotFoundError("cannot read the CA certificate " + profile.ca_path +
                         " of the signed-in deployment: run `kf login --ca FILE` again");
  }
  return std::make_pair(std::move(profile), *std::move(ca));
}

}  // namespace

StatusOr<Session> OpenSession() {
  Session session;
  ASSIGN_OR_RETURN(auto loaded, LoadProfileAndCa());
  session.profile = std::move(loaded.first);
  ClientOptions options{session.profile.server, std::move(loaded.second), std::nullopt};
  if (!session.profile.connect_address.empty()) {
    options.connect_address = session.profile.connect_address;
  }
  session.client = std::make_unique<Client>(std::move(options));
  ASSIGN_OR_RETURN(session.token, TokenFor(session.profile, *session.client,
                                           session.profile.management_audience + "/.default",
                                           "the control plane"));
  return session;
}

namespace {

// A client for https://{label}.{suffix}:PORT (the server's port) with a token for `scope`.
StatusOr<Session> OpenDataPlaneSession(const std::string& label, const std::string& suffix,
                                       const std::string& scope, std::string_view what,
                                       Profile profile, std::string ca) {
  Session session;
  session.profile = std::move(profile);
  // Tokens come from the server itself, whatever the data plane's host name resolves to.
  ClientOptions server_options{session.profile.server, ca, std::nullopt};
  if (!session.profile.connect_address.empty()) {
    server_options.connect_address = session.profile.connect_address;
  }
  Client token_client(server_options);
  ASSIGN_OR_RETURN(session.token, TokenFor(session.profile, token_client, scope, what));
  const HostPort server = SplitServer(session.profile.server);
  ClientOptions options{"https://" + ToLowerAscii(label) + "." + suffix +
                            (server.port.empty() ? "" : ":" + server.port),
                        std::move(ca), std::nullopt};
  options.connect_address = session.profile.connect_address.empty()
                                ? ServerAddress(server.host)
                                : std::optional<std::string>(session.profile.connect_address);
  session.client = std::make_unique<Client>(std::move(options));
  return session;
}

Status CheckLabel(const std::string& label, std::string_view flag, std::string_view what) {
  if (label.empty()) {
    return InvalidArgumentError("give the " + std::string(what) + "'s name with " +
                                std::string(flag));
  }
  for (char c : label) {
    const bool ok =
        (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-';
    if (!ok) {
      return InvalidArgumentError("'" + label + "' is not a " + std::string(what) +
                                  " name: letters, digits and hyphens only");
    }
  }
  return OkStatus();
}

}  // namespace

StatusOr<Session> OpenVaultSession(const std::string& vault_name) {
  RETURN_IF_ERROR(CheckLabel(vault_name, "--vault-name", "vault"));
  ASSIGN_OR_RETURN(auto loaded, LoadProfileAndCa());
  if (loaded.first.vault_dns_suffix.empty()) {
    return FailedPreconditionError(
        "the profile does not name the deployment's vault domain: run "
        "`kf login` again");
  }
  const std::string suffix = loaded.first.vault_dns_suffix;
  const std::string scope = VaultScope(loaded.first);
  return OpenDataPlaneSession(vault_name, suffix, scope, "the key vaults", std::move(loaded.first),
                              std::move(loaded.second));
}

StatusOr<Session> OpenAccountSession(const std::string& account_name) {
  RETURN_IF_ERROR(CheckLabel(account_name, "--account-name", "account"));
  ASSIGN_OR_RETURN(auto loaded, LoadProfileAndCa());
  if (loaded.first.vault_dns_suffix.empty()) {
    return FailedPreconditionError(
        "the profile does not name the deployment's domain: run `kf login` again");
  }
  const std::string suffix = "openai." + ProfileDomain(loaded.first);
  const std::string scope = CognitiveServicesScope(loaded.first);
  return OpenDataPlaneSession(account_name, suffix, scope, "the AI accounts",
                              std::move(loaded.first), std::move(loaded.second));
}

StatusOr<std::string> SignedInObjectId(const Session& session) {
  const std::string& jwt = session.token.token;
  const size_t first = jwt.find('.');
  const size_t second = first == std::string::npos ? first : jwt.find('.', first + 1);
  if (second == std::string::npos) return InternalError("the stored token is not a JWT");
  ASSIGN_OR_RETURN(Bytes payload, Base64UrlDecode(jwt.substr(first + 1, second - first - 1)));
  nlohmann::json claims = nlohmann::json::parse(AsStringView(payload), nullptr, false);
  if (!claims.is_object() || !claims.contains("oid") || !claims["oid"].is_string()) {
    return InternalError("the stored token carries no oid claim");
  }
  return claims["oid"].get<std::string>();
}

std::string PathOfLink(std::string_view link) {
  constexpr std::string_view kScheme = "https://";
  if (link.substr(0, kScheme.size()) != kScheme) return std::string(link);
  link.remove_prefix(kScheme.size());
  const size_t slash = link.find('/');
  return slash == std::string_view::npos ? "/" : std::string(link.substr(slash));
}

StatusOr<nlohmann::json> ListPages(Session& session, std::string path, size_t limit) {
  nlohmann::json items = nlohmann::json::array();
  while (!path.empty()) {
    ASSIGN_OR_RETURN(ApiResult page, session.client->Call("GET", path, session.token));
    if (!page.body.is_object() || !page.body.contains("value") || !page.body["value"].is_array()) {
      return InternalError("the server's list answer holds no \"value\" array");
    }
    for (auto& item : page.body["value"]) {
      items.push_back(std::move(item));
      if (limit != 0 && items.size() >= limit) return items;
    }
    const nlohmann::json& next = page.body.value("nextLink", nlohmann::json());
    std::string next_path = next.is_string() ? PathOfLink(next.get<std::string>()) : "";
    if (next_path == path) return InternalError("the server's nextLink does not advance");
    path = std::move(next_path);
  }
  return items;
}

}  // namespace keyfoundry::cli
