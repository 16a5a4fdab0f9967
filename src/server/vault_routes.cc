// The key vault data plane: the Azure Key Vault keys API on each vault's own host,
// https://{vault}.vault.DOMAIN:PORT/keys/... and /deletedkeys/....
//
// Every request is authenticated before anything else about it is looked at, so the official
// SDKs' challenge flow (an unauthenticated first request, a 401 naming the authority and the
// resource, a token, a retry) works against any vault URL. Then the api-version, then the
// body; then keyvault::KeyVault does the rest (vault, firewall, access, the operation, audit).
//
// Bodies have the REST API's shapes (KeyBundle, KeyItem, DeletedKeyBundle, KeyOperationResult,
// KeyVerifyResult, KeyRotationPolicy): binary values in unpadded base64url, times in unix
// seconds. Errors use the Azure envelope; the code for a 403 is "Forbidden" with the reason in
// innererror (AccessDenied, ForbiddenByFirewall, ForbiddenByRbac, KeyDisabled, ...).
#include <algorithm>
#include <charconv>

#include "common/encoding.h"
#include "common/logging.h"
#include "common/strings.h"
#include "http/url.h"
#include "keyvault/key_vault.h"
#include "server/services.h"

namespace keyfoundry::server {
namespace {

using http::Request;
using http::Response;
using keyvault::KeyVersion;
using nlohmann::json;

constexpr size_t kMaxVaultBodyBytes = size_t{256} * 1024;

// The api-versions of the keys API this server speaks: 7.0 to 7.6 (with their previews, such
// as the Python SDK's "7.4-preview.1") and the date-named ones that follow ("2025-07-01").
bool KnownApiVersion(std::string_view v) {
  auto digits = [](std::string_view t) {
    return !t.empty() &&
           std::all_of(t.begin(), t.end(), [](char c) { return c >= '0' && c <= '9'; });
  };
  std::string_view base = v.substr(0, v.find("-preview"));
  std::string_view preview = base.size() < v.size() ? v.substr(base.size() + 8) : "";
  if (!preview.empty() && !(preview[0] == '.' && digits(preview.substr(1)))) return false;
  if (base.size() == 3 && base[0] == '7' && base[1] == '.' && base[2] >= '0' && base[2] <= '6') {
    return true;
  }
  return base.size() == 10 && base[4] == '-' && base[7] == '-' && digits(base.substr(0, 4)) &&
         digits(base.substr(5, 2)) && digits(base.substr(8, 2)) && base >= "2025-01-01";
}

Response ErrorResponse(const Request& r, const Status& status) {
  const int http_status = keyvault::HttpStatusFor(status);
  const std::string& reason = status.reason();
  switch (http_status) {
    case 400:
      return http::AzureError(400, reason.empty() ? "BadParameter" : reason, status.message());
    case 403:
      return http::AzureError(
          403, "Forbidden", status.message(),
          reason.empty() ? std::nullopt : std::optional<json>(json{{"code", reason}}));
    case 404:
      return http::AzureError(404, reason.empty() ? "NotFound" : reason, status.message());
    case 409:
      return http::AzureError(
          409, "Conflict", status.message(),
          reason.empty() ? std::nullopt : std::optional<json>(json{{"code", reason}}));
    case 429:
      return http::AzureError(429, "Throttled", status.message());
    default:
      return InternalFailure(r, status);
  }
}

// "https://{host as sent}": the base of kids and nextLinks.
std::string BaseUrl(const Request& r) {
  std::string_view host = r.Header("Host").value_or(r.host);
  return "https://" + std::string(host);
}

std::string VersionlessKid(const std::string& base, const KeyVersion& k) {
  return base + "/keys/" + k.name;
}
std::string Kid(const std::string& base, const KeyVersion& k) {
  return VersionlessKid(base, k) + "/" + k.version;
}

json AttributesJson(const KeyVersion& k, const keyvault::Recovery& recovery) {
  json a = {{"enabled", k.attributes.enabled},  {"created", k.attributes.created},
            {"updated", k.attributes.updated},  {"recoveryLevel", recovery.level},
            {"recoverableDays", recovery.days}, {"exportable", k.attributes.exportable}};
  if (k.attributes.not_before) a["nbf"] = *k.attributes.not_before;
  if (k.attributes.expires) a["exp"] = *k.attributes.expires;
  if (!k.hsm_platform.empty()) a["hsmPlatform"] = k.hsm_platform;
  return a;
}

json JwkJson(const std::string& base, const KeyVersion& k) {
  json ops = json::array();
  for (keyvault::KeyOperation op : k.key_ops) ops.push_back(keyvault::KeyOperationName(op));
  json key = {{"kid", Kid(base, k)}, {"kty", keyvault::KeyTypeName(k.type)}, {"key_ops", ops}};
  if (keyvault::IsRsa(k.type)) {
    key["n"] = Base64UrlEncode(k.rsa.n);
    key["e"] = Base64UrlEncode(k.rsa.e);
  } else if (k.curve) {
    key["crv"] = crypto::EcCurveName(*k.curve);
    key["x"] = Base64UrlEncode(k.ec.x);
    key["y"] = Base64UrlEncode(k.ec.y);
  }
  return key;
}

json KeyBundleJson(const std::string& base, const KeyVersion& k,
                   const keyvault::Recovery& recovery) {
  json out = {{"key", JwkJson(base, k)}, {"attributes", AttributesJson(k, recovery)}};
  if (!k.tags.empty()) out["tags"] = k.tags;
  return out;
}

json KeyItemJson(const std::string& base, const KeyVersion& k, const keyvault::Recovery& recovery,
                 bool versioned) {
  json out = {{"kid", versioned ? Kid(base, k) : VersionlessKid(base, k)},
              {"attributes", AttributesJson(k, recovery)}};
  if (!k.tags.empty()) out["tags"] = k.tags;
  return out;
}

void AddDeletedFields(json& out, const std::string& base, const keyvault::DeletedKey& d) {
  out["recoveryId"] = base + "/deletedkeys/" + d.latest.name;
  out["deletedDate"] = d.deleted_date;
  out["scheduledPurgeDate"] = d.scheduled_purge_date;
}

// The nextLink of a list: absolute, with the api-version, maxresults and the skip token.
std::string NextLink(const Request& r, std::string_view path, std::string_view token) {
  if (token.empty()) return "";
  std::string link = BaseUrl(r) + std::string(path) +
                     "?api-version=" + http::PercentEncode(r.query.at("api-version")) +
                     "&$skiptoken=" + http::PercentEncode(token);
  if (auto m = r.query.find("maxresults"); m != r.query.end()) {
    link += "&maxresults=" + http::PercentEncode(m->second);
  }
  return link;
}

// ---------------------------------------------------------------- request parsing

Status BadBody(std::string message) {
  return InvalidArgumentError(std::move(message)).WithReason("BadParameter");
}

StatusOr<json> ParseBody(const Request& r) {
  json body = json::parse(r.body, nullptr, false);
  if (body.is_discarded() || !body.is_object()) {
    return BadBody("The request body must be a JSON object.");
  }
  return body;
}

StatusOr<std::optional<int64_t>> OptionalTime(const json& attributes, const char* field) {
  if (!attributes.contains(field) || attributes[field].is_null()) return std::optional<int64_t>();
  if (!attributes[field].is_number_integer()) {
    return BadBody(std::string("attributes.") + field + " must be an integer (unix seconds).");
  }
  return std::optional<int64_t>(attributes[field].get<int64_t>());
}

StatusOr<std::optional<std::vector<keyvault::KeyOperation>>> ParseOps(const json& body) {
  if (!body.contains("key_ops") || body["key_ops"].is_null()) {
    return std::optional<std::vector<keyvault::KeyOperation>>();
  }
  if (!body["key_ops"].is_array()) return BadBody("key_ops must be an array of operation names.");
  std::vector<keyvault::KeyOperation> ops;
  for (const json& v : body["key_ops"]) {
    if (!v.is_string()) return BadBody("key_ops must be an array of operation names.");
    auto op = keyvault::ParseKeyOperation(v.get<std::string>());
    if (!op) {
      return BadBody("Unknown key operation '" + v.get<std::string>() +
                     "': use encrypt, decrypt, sign, verify, wrapKey, unwrapKey or import.");
    }
    if (std::find(ops.begin(), ops.end(), *op) == ops.end()) ops.push_back(*op);
  }
  return std::optional<std::vector<keyvault::KeyOperation>>(std::move(ops));
}

StatusOr<json> ParseTags(const json& body) {
  if (!body.contains("tags") || body["tags"].is_null()) return json::object();
  const json& tags = body["tags"];
  if (!tags.is_object()) return BadBody("tags must be an object of strings.");
  for (const auto& [k, v] : tags.items()) {
    if (!v.is_string() || k.size() > 512 || v.get<std::string>().size() > 512) {
      return BadBody("tags must be an object of strings (names and values up to 512 chars).");
    }
  }
  return tags;
}

struct CommonAttributes {
  std::optional<bool> enabled;
  std::optional<std::optional<int64_t>> not_before;
  std::optional<std::optional<int64_t>> expires;
};

StatusOr<CommonAttributes> ParseAttributes(const json& body) {
  CommonAttributes out;
  if (!body.contains("attributes") || body["attributes"].is_null()) return out;
  const json& a = body["attributes"];
  if (!a.is_object()) return BadBody("attributes must be an object.");
  if (a.contains("enabled") && !a["enabled"].is_null()) {
    if (!a["enabled"].is_boolean()) return BadBody("attributes.enabled must be true or false.");
    out.enabled = a["enabled"].get<bool>();
  }
  if (a.contains("nbf")) {
    ASSIGN_OR_RETURN(auto nbf, OptionalTime(a, "nbf"));
    out.not_before = nbf;
  }
  if (a.contains("exp")) {
    ASSIGN_OR_RETURN(auto exp, OptionalTime(a, "exp"));
    out.expires = exp;
  }
  if (a.contains("exportable") && a["exportable"].is_boolean() && a["exportable"].get<bool>()) {
    return BadBody("Exportable keys (secure key release) are not supported by this vault.");
  }
  return out;
}

// The fields a new key takes from its request: key_ops (from `ops_source`: the body for a
// create, the JWK for an import), attributes and tags.
template <typename Params>
Status ParseNewKeyFields(const json& body, const json& ops_source, Params& params) {
  ASSIGN_OR_RETURN(params.key_ops, ParseOps(ops_source));
  ASSIGN_OR_RETURN(CommonAttributes attributes, ParseAttributes(body));
  params.enabled = attributes.enabled;
  if (attributes.not_before) params.not_before = *attributes.not_before;
  if (attributes.expires) params.expires = *attributes.expires;
  ASSIGN_OR_RETURN(params.tags, ParseTags(body));
  return OkStatus();
}

StatusOr<Bytes> ParseValue(const json& body, const char* field = "value") {
  if (!body.contains(field) || !body[field].is_string()) {
    return BadBody(std::string("The request needs '") + field + "', a base64url string.");
  }
  StatusOr<Bytes> bytes = Base64UrlDecode(body[field].get<std::string>());
  if (!bytes.ok()) return BadBody(std::string("'") + field + "' is not valid base64url.");
  return bytes;
}

StatusOr<keyvault::EncryptionAlgorithm> ParseEncryptionAlg(const json& body) {
  std::string alg = body.value("alg", "");
  auto parsed = keyvault::ParseEncryptionAlgorithm(alg);
  if (!parsed) {
    return BadBody("Invalid algorithm '" + alg + "': use RSA-OAEP, RSA-OAEP-256 or RSA1_5.");
  }
  return *parsed;
}

StatusOr<keyvault::SignatureAlgorithm> ParseSignatureAlg(const json& body) {
  std::string alg = body.value("alg", "");
  auto parsed = keyvault::ParseSignatureAlgorithm(alg);
  if (!parsed) {
    return BadBody("Invalid algorithm '" + alg +
                   "': use RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384 or ES512.");
  }
  return *parsed;
}

StatusOr<int> MaxResults(const Request& r) {
  auto it = r.query.find("maxresults");
  if (it == r.query.end() || it->second.empty()) return 0;
  int n = 0;
  auto [end, ec] = std::from_chars(it->second.data(), it->second.data() + it->second.size(), n);
  if (ec != std::errc() || end != it->second.data() + it->second.size() || n < 1 || n > 25) {
    return BadBody("maxresults must be an integer from 1 to 25.");
  }
  return n;
}

std::string SkipToken(const Request& r) {
  auto it = r.query.find("$skiptoken");
  return it == r.query.end() ? "" : it->second;
}

StatusOr<keyvault::RotationPolicy> ParsePolicy(const json& body) {
  keyvault::RotationPolicy policy;
  if (body.contains("lifetimeActions") && !body["lifetimeActions"].is_null()) {
    if (!body["lifetimeActions"].is_array()) return BadBody("lifetimeActions must be an array.");
    for (const json& a : body["lifetimeActions"]) {
      if (!a.is_object() || !a.contains("trigger") || !a.contains("action") ||
          !a["trigger"].is_object() || !a["action"].is_object()) {
        return BadBody("Each lifetime action has a trigger and an action.");
      }
      keyvault::LifetimeAction action;
      std::string type = a["action"].value("type", "");
      // The service answers with "Rotate" and "Notify"; clients send either case.
      if (EqualsIgnoreCase(type, "rotate")) type = "Rotate";
      if (EqualsIgnoreCase(type, "notify")) type = "Notify";
      action.action = type;
      const json& t = a["trigger"];
      if (t.contains("timeAfterCreate") && t["timeAfterCreate"].is_string()) {
        action.time_after_create = t["timeAfterCreate"].get<std::string>();
      }
      if (t.contains("timeBeforeExpiry") && t["timeBeforeExpiry"].is_string()) {
        action.time_before_expiry = t["timeBeforeExpiry"].get<std::string>();
      }
      policy.lifetime_actions.push_back(std::move(action));
    }
  }
  if (body.contains("attributes") && body["attributes"].is_object()) {
    const json& a = body["attributes"];
    if (a.contains("expiryTime") && a["expiryTime"].is_string()) {
      policy.expiry_time = a["expiryTime"].get<std::string>();
    }
  }
  return policy;
}

json PolicyJson(const std::string& base, std::string_view name, const keyvault::RotationPolicy& p) {
  json actions = json::array();
  for (const keyvault::LifetimeAction& a : p.lifetime_actions) {
    json trigger = json::object();
    if (!a.time_after_create.empty()) trigger["timeAfterCreate"] = a.time_after_create;
    if (!a.time_before_expiry.empty()) trigger["timeBeforeExpiry"] = a.time_before_expiry;
    actions.push_back({{"trigger", trigger}, {"action", {{"type", a.action}}}});
  }
  json attributes = json::object();
  if (!p.expiry_time.empty()) attributes["expiryTime"] = p.expiry_time;
  if (p.created != 0) {
    attributes["created"] = p.created;
    attributes["updated"] = p.updated;
  }
  return {{"id", base + "/keys/" + std::string(name) + "/rotationpolicy"},
          {"lifetimeActions", actions},
          {"attributes", attributes}};
}

// ---------------------------------------------------------------- the handler frame

struct Call {
  const Services& s;
  Request& r;
  keyvault::AccessContext ctx;
  keyvault::KeyVault& kv;
  const std::string& vault;
  std::string base;

  // Renders a KeyBundle with the vault's recovery settings.
  Response Bundle(const StatusOr<KeyVersion>& k) {
    if (!k.ok()) return ErrorResponse(r, k.status());
    StatusOr<keyvault::Recovery> recovery = kv.RecoveryOf(vault);
    if (!recovery.ok()) return ErrorResponse(r, recovery.status());
    return http::Json(200, KeyBundleJson(base, *k, *recovery));
  }
  Response Deleted(const StatusOr<keyvault::DeletedKey>& d) {
    if (!d.ok()) return ErrorResponse(r, d.status());
    StatusOr<keyvault::Recovery> recovery = kv.RecoveryOf(vault);
    if (!recovery.ok()) return ErrorResponse(r, recovery.status());
    json out = KeyBundleJson(base, d->latest, *recovery);
    AddDeletedFields(out, base, *d);
    return http::Json(200, out);
  }
  Response Operation(const StatusOr<keyvault::KeyOperationOutput>& out) {
    if (!out.ok()) return ErrorResponse(r, out.status());
    return http::Json(200, {{"kid", Kid(base, out->key)}, {"value", Base64UrlEncode(out->value)}});
  }
};

using CallHandler = std::function<Response(Call&)>;

// Authenticates, checks the api-version, then runs `handler` with the caller's context.
http::Handler VaultHandler(std::shared_ptr<Services> s, CallHandler handler) {
  return [s = std::move(s), handler = std::move(handler)](Request& r) -> Response {
    AuthResult auth = AuthenticateVault(*s, r);
    if (auto* denied = std::get_if<Response>(&auth)) return std::move(*denied);
    const identity::Caller& caller = std::get<identity::Caller>(auth);
    auto version = r.query.find("api-version");
    if (version == r.query.end() || version->second.empty()) {
      return http::AzureError(400, "BadParameter",
                              "The 'api-version' query parameter is missing (for example "
                              "api-version=7.5).");
    }
    if (!KnownApiVersion(version->second)) {
      return http::AzureError(400, "BadParameter",
                              "The specified version (" + version->second +
                                  ") is not recognized. Consider using the latest supported "
                                  "version (7.5).");
    }
    if (s->key_vault == nullptr) return http::AzureError(503, "ServiceUnavailable", "starting");
    Call call{*s, r, {}, *s->key_vault, r.params["vault"], BaseUrl(r)};
    call.ctx.object_id = caller.object_id;
    call.ctx.app_id = caller.app_id;
    call.ctx.tenant_id = caller.tenant_id;
    call.ctx.origin.client_address = r.remote_address;
    // Managed identities get their tokens from the IMDS endpoint, which only the platform's
    // own processes reach: their calls are the platform's, which the trusted-services bypass
    // admits.
    call.ctx.origin.trusted_service = caller.kind == identity::PrincipalKind::kManagedIdentity;
    call.ctx.correlation_id = r.request_id;
    call.ctx.base_url = call.base;
    return handler(call);
  };
}

// ---------------------------------------------------------------- handlers

Response CreateKey(Call& c) {
  StatusOr<json> body = ParseBody(c.r);
  if (!body.ok()) return ErrorResponse(c.r, body.status());
  keyvault::CreateKeyParams params;
  std::string kty = body->value("kty", "");
  auto type = keyvault::ParseKeyType(kty);
  if (!type) {
    return ErrorResponse(c.r, BadBody("Invalid kty '" + kty +
                                      "': use RSA, RSA-HSM, EC or EC-HSM (oct keys are for "
                                      "Managed HSM only)."));
  }
  params.type = *type;
  if (body->contains("key_size") && !(*body)["key_size"].is_null()) {
    if (!(*body)["key_size"].is_number_integer()) {
      return ErrorResponse(c.r, BadBody("key_size must be an integer."));
    }
    params.key_size = (*body)["key_size"].get<int>();
  }
  if (body->contains("public_exponent") && (*body)["public_exponent"].is_number_integer()) {
    params.public_exponent = (*body)["public_exponent"].get<int64_t>();
  }
  if (body->contains("crv") && !(*body)["crv"].is_null()) {
    std::string crv = (*body)["crv"].is_string() ? (*body)["crv"].get<std::string>() : "";
    if (keyvault::IsRsa(params.type)) {
      return ErrorResponse(c.r, BadBody("crv applies to EC keys only."));
    }
    if (crv == "P-256")
      params.curve = crypto::EcCurve::kP256;
    else if (crv == "P-384")
      params.curve = crypto::EcCurve::kP384;
    else if (crv == "P-521")
      params.curve = crypto::EcCurve::kP521;
    else {
      return ErrorResponse(c.r, BadBody("Invalid crv '" + crv +
                                        "': use P-256, P-384 or P-521 (P-256K is not offered)."));
    }
  }
  if (Status fields = ParseNewKeyFields(*body, *body, params); !fields.ok()) {
    return ErrorResponse(c.r, fields);
  }
  if (body->contains("release_policy") && !(*body)["release_policy"].is_null()) {
    return ErrorResponse(c.r, BadBody("Key release policies are not supported by this vault."));
  }
  return c.Bundle(c.kv.CreateKey(c.ctx, c.vault, c.r.params["name"], params));
}

Response ImportKey(Call& c) {
  StatusOr<json> body = ParseBody(c.r);
  if (!body.ok()) return ErrorResponse(c.r, body.status());
  if (!body->contains("key") || !(*body)["key"].is_object()) {
    return ErrorResponse(c.r, BadBody("The request needs 'key', a JSON Web Key with its private "
                                      "members."));
  }
  json& key = (*body)["key"];
  keyvault::ImportKeyParams params;
  std::string kty = key.value("kty", "");
  params.hsm = body->contains("Hsm") && (*body)["Hsm"].is_boolean() && (*body)["Hsm"].get<bool>();
  if (kty == "RSA-HSM" || kty == "EC-HSM") {
    params.hsm = true;
    if (key.contains("key_hsm")) {
      return ErrorResponse(c.r, BadBody("Importing a key wrapped for another HSM (key_hsm) is "
                                        "not supported: send the plain private JWK."));
    }
    key["kty"] = kty.substr(0, kty.size() - 4);
  }
  if (Status fields = ParseNewKeyFields(*body, key, params); !fields.ok()) {
    return ErrorResponse(c.r, fields);
  }
  std::string text = key.dump();
  params.jwk = SecretBytes(AsBytes(text), InsecureSecretAccess());
  SecureZero(std::span<uint8_t>(reinterpret_cast<uint8_t*>(text.data()), text.size()));
  SecureZero(std::span<uint8_t>(reinterpret_cast<uint8_t*>(c.r.body.data()), c.r.body.size()));
  return c.Bundle(c.kv.ImportKey(c.ctx, c.vault, c.r.params["name"], params));
}

Response GetKey(Call& c) {
  return c.Bundle(c.kv.GetKey(c.ctx, c.vault, c.r.params["name"], c.r.params["version"]));
}

Response ListKeys(Call& c) {
  StatusOr<int> max = MaxResults(c.r);
  if (!max.ok()) return ErrorResponse(c.r, max.status());
  auto page = c.kv.ListKeys(c.ctx, c.vault, *max, SkipToken(c.r));
  if (!page.ok()) return ErrorResponse(c.r, page.status());
  StatusOr<keyvault::Recovery> recovery = c.kv.RecoveryOf(c.vault);
  if (!recovery.ok()) return ErrorResponse(c.r, recovery.status());
  json value = json::array();
  for (const KeyVersion& k : page->items) value.push_back(KeyItemJson(c.base, k, *recovery, false));
  std::string next = NextLink(c.r, "/keys", page->next_token);
  return http::Json(200, {{"value", value}, {"nextLink", next.empty() ? json() : json(next)}});
}

Response ListVersions(Call& c) {
  StatusOr<int> max = MaxResults(c.r);
  if (!max.ok()) return ErrorResponse(c.r, max.status());
  const std::string& name = c.r.params["name"];
  auto page = c.kv.ListVersions(c.ctx, c.vault, name, *max, SkipToken(c.r));
  if (!page.ok()) return ErrorResponse(c.r, page.status());
  StatusOr<keyvault::Recovery> recovery = c.kv.RecoveryOf(c.vault);
  if (!recovery.ok()) return ErrorResponse(c.r, recovery.status());
  json value = json::array();
  for (const KeyVersion& k : page->items) value.push_back(KeyItemJson(c.base, k, *recovery, true));
  std::string next =
      NextLink(c.r, "/keys/" + http::PercentEncode(name) + "/versions", page->next_token);
  return http::Json(200, {{"value", value}, {"nextLink", next.empty() ? json() : json(next)}});
}

Response UpdateKey(Call& c) {
  StatusOr<json> body = ParseBody(c.r);
  if (!body.ok()) return ErrorResponse(c.r, body.status());
  keyvault::UpdateKeyParams params;
  StatusOr<std::optional<std::vector<keyvault::KeyOperation>>> ops = ParseOps(*body);
  if (!ops.ok()) return ErrorResponse(c.r, ops.status());
  params.key_ops = *ops;
  StatusOr<CommonAttributes> attributes = ParseAttributes(*body);
  if (!attributes.ok()) return ErrorResponse(c.r, attributes.status());
  params.enabled = attributes->enabled;
  params.not_before = attributes->not_before;
  params.expires = attributes->expires;
  if (body->contains("tags") && !(*body)["tags"].is_null()) {
    StatusOr<json> tags = ParseTags(*body);
    if (!tags.ok()) return ErrorResponse(c.r, tags.status());
    params.tags = *tags;
  }
  if (body->contains("release_policy") && !(*body)["release_policy"].is_null()) {
    return ErrorResponse(c.r, BadBody("Key release policies are not supported by this vault."));
  }
  return c.Bundle(
      c.kv.UpdateKey(c.ctx, c.vault, c.r.params["name"], c.r.params["version"], params));
}

Response DeleteKey(Call& c) {
  return c.Deleted(c.kv.DeleteKey(c.ctx, c.vault, c.r.params["name"]));
}

Response GetDeletedKey(Call& c) {
  return c.Deleted(c.kv.GetDeletedKey(c.ctx, c.vault, c.r.params["name"]));
}

Response ListDeletedKeys(Call& c) {
  StatusOr<int> max = MaxResults(c.r);
  if (!max.ok()) return ErrorResponse(c.r, max.status());
  auto page = c.kv.ListDeletedKeys(c.ctx, c.vault, *max, SkipToken(c.r));
  if (!page.ok()) return ErrorResponse(c.r, page.status());
  StatusOr<keyvault::Recovery> recovery = c.kv.RecoveryOf(c.vault);
  if (!recovery.ok()) return ErrorResponse(c.r, recovery.status());
  json value = json::array();
  for (const keyvault::DeletedKey& d : page->items) {
    json item = KeyItemJson(c.base, d.latest, *recovery, false);
    AddDeletedFields(item, c.base, d);
    value.push_back(std::move(item));
  }
  std::string next = NextLink(c.r, "/deletedkeys", page->next_token);
  return http::Json(200, {{"value", value}, {"nextLink", next.empty() ? json() : json(next)}});
}

Response RecoverKey(Call& c) {
  return c.Bundle(c.kv.RecoverDeletedKey(c.ctx, c.vault, c.r.params["name"]));
}

Response PurgeKey(Call& c) {
  Status purged = c.kv.PurgeDeletedKey(c.ctx, c.vault, c.r.params["name"]);
  if (!purged.ok()) return ErrorResponse(c.r, purged);
  return http::Text(204, "", "");
}

Response BackupKey(Call& c) {
  StatusOr<Bytes> blob = c.kv.BackupKey(c.ctx, c.vault, c.r.params["name"]);
  if (!blob.ok()) return ErrorResponse(c.r, blob.status());
  return http::Json(200, {{"value", Base64UrlEncode(*blob)}});
}

Response RestoreKey(Call& c) {
  StatusOr<json> body = ParseBody(c.r);
  if (!body.ok()) return ErrorResponse(c.r, body.status());
  StatusOr<Bytes> blob = ParseValue(*body);
  if (!blob.ok()) return ErrorResponse(c.r, blob.status());
  return c.Bundle(c.kv.RestoreKey(c.ctx, c.vault, *blob));
}

Response RotateKey(Call& c) { return c.Bundle(c.kv.RotateKey(c.ctx, c.vault, c.r.params["name"])); }

Response GetRotationPolicy(Call& c) {
  const std::string& name = c.r.params["name"];
  auto policy = c.kv.GetRotationPolicy(c.ctx, c.vault, name);
  if (!policy.ok()) return ErrorResponse(c.r, policy.status());
  return http::Json(200, PolicyJson(c.base, name, *policy));
}

Response SetRotationPolicy(Call& c) {
  StatusOr<json> body = ParseBody(c.r);
  if (!body.ok()) return ErrorResponse(c.r, body.status());
  StatusOr<keyvault::RotationPolicy> policy = ParsePolicy(*body);
  if (!policy.ok()) return ErrorResponse(c.r, policy.status());
  const std::string& name = c.r.params["name"];
  auto set = c.kv.SetRotationPolicy(c.ctx, c.vault, name, *policy);
  if (!set.ok()) return ErrorResponse(c.r, set.status());
  return http::Json(200, PolicyJson(c.base, name, *set));
}

enum class CryptoOp { kEncrypt = 1, kDecrypt, kWrap, kUnwrap };

Response EncryptionOperation(Call& c, CryptoOp op) {
  StatusOr<json> body = ParseBody(c.r);
  if (!body.ok()) return ErrorResponse(c.r, body.status());
  StatusOr<keyvault::EncryptionAlgorithm> alg = ParseEncryptionAlg(*body);
  if (!alg.ok()) return ErrorResponse(c.r, alg.status());
  StatusOr<Bytes> value = ParseValue(*body);
  if (!value.ok()) return ErrorResponse(c.r, value.status());
  if (body->contains("iv") || body->contains("aad") || body->contains("tag")) {
    // AES algorithms carry these; they are for Managed HSM oct keys, not offered here.
    return ErrorResponse(c.r, BadBody("iv, aad and tag apply to AES algorithms, which this "
                                      "vault does not offer."));
  }
  const std::string& name = c.r.params["name"];
  const std::string& version = c.r.params["version"];
  StatusOr<keyvault::KeyOperationOutput> out = DataLossError("");
  switch (op) {
    case CryptoOp::kEncrypt:
      out = c.kv.Encrypt(c.ctx, c.vault, name, version, *alg, *value);
      break;
    case CryptoOp::kDecrypt:
      out = c.kv.Decrypt(c.ctx, c.vault, name, version, *alg, *value);
      break;
    case CryptoOp::kWrap:
      out = c.kv.WrapKey(c.ctx, c.vault, name, version, *alg, *value);
      break;
    case CryptoOp::kUnwrap:
      out = c.kv.UnwrapKey(c.ctx, c.vault, name, version, *alg, *value);
      break;
  }
  Response response = c.Operation(out);
  if (out.ok() && (op == CryptoOp::kDecrypt || op == CryptoOp::kUnwrap)) {
    // The plaintext went into the response body; wipe our copy of it.
    SecureZero(std::span<uint8_t>(out->value));
  }
  return response;
}

Response SignOperation(Call& c) {
  StatusOr<json> body = ParseBody(c.r);
  if (!body.ok()) return ErrorResponse(c.r, body.status());
  StatusOr<keyvault::SignatureAlgorithm> alg = ParseSignatureAlg(*body);
  if (!alg.ok()) return ErrorResponse(c.r, alg.status());
  StatusOr<Bytes> digest = ParseValue(*body);
  if (!digest.ok()) return ErrorResponse(c.r, digest.status());
  return c.Operation(
      c.kv.Sign(c.ctx, c.vault, c.r.params["name"], c.r.params["version"], *alg, *digest));
}

Response VerifyOperation(Call& c) {
  StatusOr<json> body = ParseBody(c.r);
  if (!body.ok()) return ErrorResponse(c.r, body.status());
  StatusOr<keyvault::SignatureAlgorithm> alg = ParseSignatureAlg(*body);
  if (!alg.ok()) return ErrorResponse(c.r, alg.status());
  StatusOr<Bytes> digest = ParseValue(*body, "digest");
  if (!digest.ok()) return ErrorResponse(c.r, digest.status());
  StatusOr<Bytes> signature = ParseValue(*body, "value");
  if (!signature.ok()) return ErrorResponse(c.r, signature.status());
  StatusOr<bool> valid = c.kv.Verify(c.ctx, c.vault, c.r.params["name"], c.r.params["version"],
                                     *alg, *digest, *signature);
  if (!valid.ok()) return ErrorResponse(c.r, valid.status());
  return http::Json(200, {{"value", *valid}});
}

}  // namespace

void AddVaultRoutes(http::Router& router, std::shared_ptr<Services> services) {
  auto s = std::move(services);
  const std::string host = "{vault}.vault." + s->config.domain;
  auto add = [&](const char* method, const char* path, CallHandler handler) {
    router.Add(
        method, host, path, VaultHandler(s, std::move(handler)),
        {.max_body_bytes = kMaxVaultBodyBytes, .metrics_name = std::string("vault ") + path});
  };
  add("POST", "/keys/{name}/create", CreateKey);
  add("PUT", "/keys/{name}", ImportKey);
  add("GET", "/keys", ListKeys);
  add("GET", "/keys/{name}", GetKey);
  add("GET", "/keys/{name}/{version}", GetKey);
  add("GET", "/keys/{name}/versions", ListVersions);
  add("PATCH", "/keys/{name}", UpdateKey);
  add("PATCH", "/keys/{name}/{version}", UpdateKey);
  add("DELETE", "/keys/{name}", DeleteKey);
  add("POST", "/keys/{name}/backup", BackupKey);
  add("POST", "/keys/restore", RestoreKey);
  add("POST", "/keys/{name}/rotate", RotateKey);
  add("GET", "/keys/{name}/rotationpolicy", GetRotationPolicy);
  add("PUT", "/keys/{name}/rotationpolicy", SetRotationPolicy);
  add("GET", "/deletedkeys", ListDeletedKeys);
  add("GET", "/deletedkeys/{name}", GetDeletedKey);
  add("DELETE", "/deletedkeys/{name}", PurgeKey);
  add("POST", "/deletedkeys/{name}/recover", RecoverKey);
  // The crypto operations, on a version or (with the version left out) on the latest one.
  const std::pair<const char*, CryptoOp> crypto_ops[] = {{"encrypt", CryptoOp::kEncrypt},
                                                         {"decrypt", CryptoOp::kDecrypt},
                                                         {"wrapkey", CryptoOp::kWrap},
                                                         {"unwrapkey", CryptoOp::kUnwrap}};
  for (const auto& [op_name, op] : crypto_ops) {
    for (const char* prefix : {"/keys/{name}/{version}/", "/keys/{name}/"}) {
      std::string path = std::string(prefix) + op_name;
      router.Add("POST", host, path,
                 VaultHandler(s, [op = op](Call& c) { return EncryptionOperation(c, op); }),
                 {.max_body_bytes = kMaxVaultBodyBytes,
                  .metrics_name = std::string("vault /keys/{name}/{version}/") + op_name,
                  .runs_inline = true});  // reads, CPU and a queued audit record
    }
  }
  for (const char* prefix : {"/keys/{name}/{version}/", "/keys/{name}/"}) {
    router.Add("POST", host, std::string(prefix) + "sign", VaultHandler(s, SignOperation),
               {.max_body_bytes = kMaxVaultBodyBytes,
                .metrics_name = "vault /keys/{name}/{version}/sign",
                .runs_inline = true});
    router.Add("POST", host, std::string(prefix) + "verify", VaultHandler(s, VerifyOperation),
               {.max_body_bytes = kMaxVaultBodyBytes,
                .metrics_name = "vault /keys/{name}/{version}/verify",
                .runs_inline = true});
  }
  // Anything else on a vault host: authenticated first, then 404 with the API's code.
  for (const char* method : {"GET", "PUT", "POST", "PATCH", "DELETE"}) {
    router.Add(method, host, "/{path...}",
               [s](Request& r) {
                 AuthResult auth = AuthenticateVault(*s, r);
                 if (auto* denied = std::get_if<Response>(&auth)) return std::move(*denied);
                 return http::AzureError(404, "NotFound",
                                         "This vault has no " + r.method + " " + r.path +
                                             " operation; see docs/api.md for the keys API.");
               },
               {.max_body_bytes = kMaxVaultBodyBytes, .metrics_name = "vault other"});
  }
}

}  // namespace keyfoundry::server
