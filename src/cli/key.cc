// kf keyvault key: the keys API of a vault's data plane (https://{vault}.vault.DOMAIN:PORT), as
// `az keyvault key`: create, import, show, list, list-versions, set-attributes, delete,
// show-deleted, list-deleted, recover, purge, backup, restore, rotate, encrypt, decrypt, sign,
// verify, rotation-policy show / update.
//
// JSON output is the keys API's own (KeyBundle, KeyItem, DeletedKeyBundle, ...: times in unix
// seconds); -o table shows them as ISO 8601. encrypt, decrypt, sign and verify print az's
// shapes ({"algorithm", "kid", "result"}, {"signature"}, {"isValid"}), with binary values in
// standard base64 as az prints them.
//
// Import reads a private key from a JWK file (RSA or EC) or from an unencrypted PKCS#8 file,
// PEM ("BEGIN PRIVATE KEY") or DER (RSA only: src/crypto reads no other PKCS#8). The key is
// checked and turned into a JWK by src/crypto, and its text is kept in SecretBytes and wiped
// after the request (best effort: the file's text and the TLS stack's buffers are not ours).
#include <sys/stat.h>

#include "cli/commands.h"
#include "common/encoding.h"
#include "common/file_util.h"
#include "common/secret_bytes.h"
#include "common/strings.h"
#include "crypto/jwk.h"
#include "crypto/rsa.h"
#include "http/url.h"

namespace keyfoundry::cli {
namespace {

using Json = nlohmann::json;

struct KeyOptions {
  std::string vault;
  std::string name;
  std::string version;
  std::string id;  // a key id (kid) or a deleted key's recovery id, instead of the three above
  // create / import / set-attributes
  std::string kty = "RSA";
  int size = 0;
  std::string curve;
  std::string protection;
  std::vector<std::string> ops;
  std::string disabled;  // create, import: "true" | "false"
  std::string enabled;   // set-attributes
  std::string expires;
  std::string not_before;
  std::vector<std::string> tags;
  std::string pem_file;
  std::string jwk_file;
  // list
  int max_results = 0;
  // backup / restore
  std::string file;
  // crypto
  std::string algorithm;
  std::string value;
  std::string data_type = "base64";
  std::string digest;
  std::string signature;
};

// ---------------------------------------------------------------- naming a key

std::string ApiVersion() { return std::string("api-version=") + kKeysApiVersion; }

// Fills vault, name and version from --id: https://{vault}.vault.DOMAIN[:PORT]/keys/{name}[/{v}]
// (or /deletedkeys/{name}).
Status ResolveId(KeyOptions& o) {
  if (o.id.empty()) {
    if (o.vault.empty()) return InvalidArgumentError("give --vault-name (or --id)");
    if (o.name.empty()) return InvalidArgumentError("give the key's --name (or --id)");
    return OkStatus();
  }
  std::string_view rest = o.id;
  constexpr std::string_view kScheme = "https://";
  if (rest.substr(0, kScheme.size()) != kScheme) {
    return InvalidArgumentError("--id: '" + o.id + "' is not a key id (https://...)");
  }
  rest.remove_prefix(kScheme.size());
  const size_t slash = rest.find('/');
  const std::string_view host = rest.substr(0, slash);
  const std::string_view path = slash == std::string_view::npos ? "" : rest.substr(slash + 1);
  std::vector<std::string> parts;
  for (size_t start = 0; start <= path.size();) {
    const size_t end = std::min(path.find('/', start), path.size());
    if (end > start) parts.emplace_back(path.substr(start, end - start));
    start = end + 1;
  }
  const size_t dot = host.find('.');
  if (dot == std::string_view::npos || parts.size() < 2 || parts.size() > 3 ||
      !(parts[0] == "keys" || parts[0] == "deletedkeys")) {
    return InvalidArgumentError(
        "--id: '" + o.id + "' is not a key id (https://VAULT.vault.DOMAIN/keys/NAME[/VERSION])");
  }
  o.vault = std::string(host.substr(0, dot));
  o.name = parts[1];
  if (parts.size() == 3) o.version = parts[2];
  return OkStatus();
}

struct KeySession {
  Session session;
  std::string key_path;  // "/keys/{name}[/{version}]"
};

StatusOr<KeySession> Open(KeyOptions& o, bool with_version) {
  RETURN_IF_ERROR(ResolveId(o));
  if (!with_version && !o.version.empty()) {
    return InvalidArgumentError("this command acts on the whole key: drop the version");
  }
  KeySession k;
  ASSIGN_OR_RETURN(k.session, OpenVaultSession(o.vault));
  k.key_path = "/keys/" + http::PercentEncode(o.name);
  if (!o.version.empty()) k.key_path += "/" + http::PercentEncode(o.version);
  return k;
}

StatusOr<Session> OpenVaultOnly(const KeyOptions& o) {
  if (o.vault.empty()) return InvalidArgumentError("give --vault-name");
  return OpenVaultSession(o.vault);
}

std::string Query(const std::string& path) { return path + "?" + ApiVersion(); }

// ---------------------------------------------------------------- output

// The key's name from a kid (".../keys/{name}/...") or a recovery id.
Json KeyNameOf(const Json& row) {
  std::string kid = row.value("kid", "");
  if (kid.empty() && row.contains("key")) kid = row["key"].value("kid", "");
  for (std::string_view marker : {"/keys/", "/deletedkeys/"}) {
    const size_t at = kid.find(marker);
    if (at == std::string::npos) continue;
    const size_t start = at + marker.size();
    return kid.substr(start, kid.find('/', start) - start);
  }
  return nullptr;
}

const std::vector<Column>& BundleColumns() {
  static const std::vector<Column> columns = {{"Name", KeyNameOf},
                                              Field("Kty", "/key/kty"),
                                              Field("Enabled", "/attributes/enabled"),
                                              TimeField("Expires", "/attributes/exp"),
                                              TimeField("Created", "/attributes/created"),
                                              Field("Kid", "/key/kid")};
  return columns;
}

const std::vector<Column>& ItemColumns() {
  static const std::vector<Column> columns = {{"Name", KeyNameOf},
                                              Field("Enabled", "/attributes/enabled"),
                                              TimeField("Expires", "/attributes/exp"),
                                              TimeField("Created", "/attributes/created"),
                                              Field("Kid", "/kid")};
  return columns;
}

const std::vector<Column>& DeletedColumns() {
  static const std::vector<Column> columns = {
      {"Name", KeyNameOf},
      TimeField("DeletedDate", "/deletedDate"),
      TimeField("ScheduledPurgeDate", "/scheduledPurgeDate"),
      Field("RecoveryId", "/recoveryId")};
  return columns;
}

// ---------------------------------------------------------------- request bodies

// attributes, key_ops and tags from the options given on `cmd`.
StatusOr<Json> AttributesBody(const KeyOptions& o, const CLI::App& cmd) {
  Json body = Json::object();
  Json attributes = Json::object();
  if (!o.disabled.empty()) {
    ASSIGN_OR_RETURN(bool disabled, ParseBool("--disabled", o.disabled));
    attributes["enabled"] = !disabled;
  }
  if (!o.enabled.empty()) {
    ASSIGN_OR_RETURN(bool enabled, ParseBool("--enabled", o.enabled));
    attributes["enabled"] = enabled;
  }
  if (!o.expires.empty()) {
    ASSIGN_OR_RETURN(attributes["exp"], ParseTime("--expires", o.expires));
  }
  if (!o.not_before.empty()) {
    ASSIGN_OR_RETURN(attributes["nbf"], ParseTime("--not-before", o.not_before));
  }
  if (!attributes.empty()) body["attributes"] = attributes;
  if (cmd.count("--ops") > 0) body["key_ops"] = o.ops;
  if (cmd.count("--tags") > 0) {
    ASSIGN_OR_RETURN(body["tags"], ParseTags(o.tags));
  }
  return body;
}

void Wipe(std::string& s) {
  SecureZero(std::span<uint8_t>(reinterpret_cast<uint8_t*>(s.data()), s.size()));
}

// A private key file as JWK text (a secret): a JWK, or PKCS#8 PEM / DER holding an RSA key.
StatusOr<SecretBytes> PrivateJwkFromFile(const KeyOptions& o) {
  if (o.pem_file.empty() == o.jwk_file.empty()) {
    return InvalidArgumentError("give the key with exactly one of --pem-file, --jwk-file");
  }
  const std::string& path = o.jwk_file.empty() ? o.pem_file : o.jwk_file;
  StatusOr<std::string> text = ReadFile(path);
  if (!text.ok()) return NotFoundError("cannot read " + path + ": " + text.status().message());
  struct WipeOnExit {
    std::string& s;
    ~WipeOnExit() { Wipe(s); }
  } wipe_text{*text};

  if (!o.jwk_file.empty()) {
    StatusOr<crypto::Jwk> jwk = crypto::ParseJwk(*text);
    if (!jwk.ok()) return InvalidArgumentError(path + ": " + jwk.status().message());
    if (const auto* rsa = std::get_if<crypto::RsaPrivateKey>(&*jwk)) return crypto::ToJwk(*rsa);
    if (const auto* ec = std::get_if<crypto::EcPrivateKey>(&*jwk)) return crypto::ToJwk(*ec);
    return InvalidArgumentError(path +
                                ": the JWK holds a public key only; import needs the "
                                "private key (\"d\" and, for RSA, its primes)");
  }

  SecretBytes der;
  const std::string& pem = *text;
  if (pem.find("-----BEGIN") == std::string::npos) {
    der = SecretBytes(AsBytes(pem), InsecureSecretAccess());  // DER as it is
  } else {
    constexpr std::string_view kBegin = "-----BEGIN PRIVATE KEY-----";
    constexpr std::string_view kEnd = "-----END PRIVATE KEY-----";
    const size_t begin = pem.find(kBegin);
    const size_t end = begin == std::string::npos ? begin : pem.find(kEnd, begin);
    if (end == std::string::npos) {
      std::string hint = "it holds no unencrypted PKCS#8 key (BEGIN PRIVATE KEY)";
      if (pem.find("BEGIN RSA PRIVATE KEY") != std::string::npos) {
        hint = "it is a PKCS#1 key: convert it with `openssl pkcs8 -topk8 -nocrypt -in " + path +
               " -out key.pem`";
      } else if (pem.find("BEGIN ENCRYPTED PRIVATE KEY") != std::string::npos) {
        hint = "it is encrypted: decrypt it with `openssl pkcs8 -in " + path + " -out key.pem`";
      } else if (pem.find("BEGIN EC PRIVATE KEY") != std::string::npos) {
        hint = "EC keys are imported from a JWK file (--jwk-file)";
      }
      return InvalidArgumentError(path + ": " + hint);
    }
    std::string body;
    for (size_t i = begin + kBegin.size(); i < end; ++i) {
      const char c = pem[i];
      if (c != '\n' && c != '\r' && c != ' ' && c != '\t') body.push_back(c);
    }
    StatusOr<Bytes> decoded = Base64Decode(body);
    Wipe(body);
    if (!decoded.ok()) return InvalidArgumentError(path + ": the PEM body is not base64");
    der = SecretBytes(*decoded, InsecureSecretAccess());
    SecureZero(std::span<uint8_t>(*decoded));
  }
  StatusOr<crypto::RsaPrivateKey> key = crypto::RsaPrivateKey::FromPkcs8Der(der);
  if (!key.ok()) {
    return InvalidArgumentError(path + ": " + key.status().message() +
                                " (PEM and DER files must hold an RSA PKCS#8 key; import EC keys "
                                "from a JWK file with --jwk-file)");
  }
  return crypto::ToJwk(*key);
}

// ---------------------------------------------------------------- commands

Status Create(KeyOptions& o, const CLI::App& cmd) {
  ASSIGN_OR_RETURN(Json body, AttributesBody(o, cmd));
  std::string kty = o.kty;
  if (EqualsIgnoreCase(o.protection, "hsm") && kty.find("-HSM") == std::string::npos) {
    kty += "-HSM";
  }
  body["kty"] = kty;
  if (o.size != 0) body["key_size"] = o.size;
  if (!o.curve.empty()) body["crv"] = o.curve;
  ASSIGN_OR_RETURN(KeySession k, Open(o, false));
  ASSIGN_OR_RETURN(ApiResult key, k.session.client->Call("POST", Query(k.key_path + "/create"),
                                                         k.session.token, body));
  Print(key.body, BundleColumns());
  return OkStatus();
}

Status Import(KeyOptions& o, const CLI::App& cmd) {
  ASSIGN_OR_RETURN(Json rest, AttributesBody(o, cmd));
  const Json ops = rest.contains("key_ops") ? rest["key_ops"] : Json();
  rest.erase("key_ops");  // they belong in the JWK
  if (EqualsIgnoreCase(o.protection, "hsm")) rest["Hsm"] = true;
  ASSIGN_OR_RETURN(SecretBytes jwk, PrivateJwkFromFile(o));
  ASSIGN_OR_RETURN(KeySession k, Open(o, false));

  // {"key": {<key_ops>, <the JWK's members>}, <rest>}, assembled as text so the private
  // members never sit in a non-wiped JSON value.
  std::string_view jwk_text = AsStringView(jwk.Reveal(InsecureSecretAccess()));
  if (jwk_text.size() < 2 || jwk_text.front() != '{') return InternalError("bad JWK text");
  std::string text = "{\"key\":{";
  if (!ops.is_null()) text += "\"key_ops\":" + ops.dump() + ",";
  text.append(jwk_text.substr(1));
  const std::string tail = rest.dump();
  if (tail != "{}")
    text += "," + tail.substr(1);
  else
    text += "}";
  SecretBytes body(AsBytes(text), InsecureSecretAccess());
  Wipe(text);
  ASSIGN_OR_RETURN(ApiResult key, k.session.client->CallWithSecretBody("PUT", Query(k.key_path),
                                                                       k.session.token, body));
  Print(key.body, BundleColumns());
  return OkStatus();
}

Status Show(KeyOptions& o) {
  ASSIGN_OR_RETURN(KeySession k, Open(o, true));
  ASSIGN_OR_RETURN(ApiResult key,
                   k.session.client->Call("GET", Query(k.key_path), k.session.token));
  Print(key.body, BundleColumns());
  return OkStatus();
}

// A list of the vault's keys, a key's versions or the deleted keys, to the end or to
// --maxresults (fetched in pages of at most 25, the API's limit).
Status List(Session& s, const std::string& path, int max_results,
            const std::vector<Column>& columns) {
  std::string query = Query(path);
  if (max_results > 0) query += "&maxresults=" + std::to_string(std::min(max_results, 25));
  ASSIGN_OR_RETURN(Json items, ListPages(s, query, static_cast<size_t>(std::max(max_results, 0))));
  Print(items, columns);
  return OkStatus();
}

Status ListKeys(const KeyOptions& o) {
  ASSIGN_OR_RETURN(Session s, OpenVaultOnly(o));
  return List(s, "/keys", o.max_results, ItemColumns());
}

Status ListVersions(KeyOptions& o) {
  ASSIGN_OR_RETURN(KeySession k, Open(o, false));
  return List(k.session, k.key_path + "/versions", o.max_results, ItemColumns());
}

Status ListDeleted(const KeyOptions& o) {
  ASSIGN_OR_RETURN(Session s, OpenVaultOnly(o));
  return List(s, "/deletedkeys", o.max_results, DeletedColumns());
}

Status SetAttributes(KeyOptions& o, const CLI::App& cmd) {
  ASSIGN_OR_RETURN(Json body, AttributesBody(o, cmd));
  if (body.empty()) {
    return InvalidArgumentError(
        "nothing to change: give --enabled, --expires, --not-before, --ops or --tags");
  }
  ASSIGN_OR_RETURN(KeySession k, Open(o, true));
  ASSIGN_OR_RETURN(ApiResult key,
                   k.session.client->Call("PATCH", Query(k.key_path), k.session.token, body));
  Print(key.body, BundleColumns());
  return OkStatus();
}

Status Delete(KeyOptions& o) {
  ASSIGN_OR_RETURN(KeySession k, Open(o, false));
  ASSIGN_OR_RETURN(ApiResult key,
                   k.session.client->Call("DELETE", Query(k.key_path), k.session.token));
  Print(key.body, DeletedColumns());
  return OkStatus();
}

std::string DeletedPath(const KeyOptions& o) {
  return "/deletedkeys/" + http::PercentEncode(o.name);
}

Status ShowDeleted(KeyOptions& o) {
  ASSIGN_OR_RETURN(KeySession k, Open(o, false));
  ASSIGN_OR_RETURN(ApiResult key,
                   k.session.client->Call("GET", Query(DeletedPath(o)), k.session.token));
  Print(key.body, DeletedColumns());
  return OkStatus();
}

Status Recover(KeyOptions& o) {
  ASSIGN_OR_RETURN(KeySession k, Open(o, false));
  ASSIGN_OR_RETURN(ApiResult key, k.session.client->Call("POST", Query(DeletedPath(o) + "/recover"),
                                                         k.session.token));
  Print(key.body, BundleColumns());
  return OkStatus();
}

Status Purge(KeyOptions& o) {
  ASSIGN_OR_RETURN(KeySession k, Open(o, false));
  return k.session.client->Call("DELETE", Query(DeletedPath(o)), k.session.token).status();
}

Status Backup(KeyOptions& o) {
  ASSIGN_OR_RETURN(KeySession k, Open(o, false));
  ASSIGN_OR_RETURN(ApiResult backup,
                   k.session.client->Call("POST", Query(k.key_path + "/backup"), k.session.token));
  StatusOr<Bytes> blob = Base64UrlDecode(backup.body.value("value", ""));
  if (!blob.ok()) return InternalError("the server's backup is not base64url");
  return WriteFileAtomically(o.file, AsStringView(*blob), 0600);
}

Status Restore(KeyOptions& o) {
  ASSIGN_OR_RETURN(std::string blob, ReadFile(o.file));
  ASSIGN_OR_RETURN(Session s, OpenVaultOnly(o));
  ASSIGN_OR_RETURN(ApiResult key, s.client->Call("POST", Query("/keys/restore"), s.token,
                                                 {{"value", Base64UrlEncode(AsBytes(blob))}}));
  Print(key.body, BundleColumns());
  return OkStatus();
}

Status Rotate(KeyOptions& o) {
  ASSIGN_OR_RETURN(KeySession k, Open(o, false));
  ASSIGN_OR_RETURN(ApiResult key,
                   k.session.client->Call("POST", Query(k.key_path + "/rotate"), k.session.token));
  Print(key.body, BundleColumns());
  return OkStatus();
}

enum class CryptoCall { kEncrypt = 1, kDecrypt };

Status EncryptOrDecrypt(KeyOptions& o, CryptoCall call) {
  Bytes value;
  const bool plaintext = EqualsIgnoreCase(o.data_type, "plaintext");
  if (call == CryptoCall::kEncrypt && plaintext) {
    value = ToBytes(o.value);
  } else {
    ASSIGN_OR_RETURN(value, DecodeBase64Argument("--value", o.value));
  }
  ASSIGN_OR_RETURN(KeySession k, Open(o, true));
  const char* op = nullptr;
  switch (call) {
    case CryptoCall::kEncrypt:
      op = "/encrypt";
      break;
    case CryptoCall::kDecrypt:
      op = "/decrypt";
      break;
  }
  ASSIGN_OR_RETURN(ApiResult out, k.session.client->Call(
                                      "POST", Query(k.key_path + op), k.session.token,
                                      {{"alg", o.algorithm}, {"value", Base64UrlEncode(value)}}));
  StatusOr<Bytes> result = Base64UrlDecode(out.body.value("value", ""));
  if (!result.ok()) return InternalError("the server's result is not base64url");
  Json printed = {{"algorithm", o.algorithm}, {"kid", out.body.value("kid", "")}};
  if (call == CryptoCall::kDecrypt && plaintext) {
    printed["result"] = std::string(AsStringView(*result));
  } else {
    printed["result"] = Base64Encode(*result);
  }
  SecureZero(std::span<uint8_t>(*result));
  PrintJson(printed);
  return OkStatus();
}

Status Sign(KeyOptions& o) {
  ASSIGN_OR_RETURN(Bytes digest, DecodeBase64Argument("--digest", o.digest));
  ASSIGN_OR_RETURN(KeySession k, Open(o, true));
  ASSIGN_OR_RETURN(ApiResult out, k.session.client->Call(
                                      "POST", Query(k.key_path + "/sign"), k.session.token,
                                      {{"alg", o.algorithm}, {"value", Base64UrlEncode(digest)}}));
  ASSIGN_OR_RETURN(Bytes signature, Base64UrlDecode(out.body.value("value", "")));
  PrintJson({{"algorithm", o.algorithm},
             {"kid", out.body.value("kid", "")},
             {"signature", Base64Encode(signature)}});
  return OkStatus();
}

Status Verify(KeyOptions& o) {
  ASSIGN_OR_RETURN(Bytes digest, DecodeBase64Argument("--digest", o.digest));
  ASSIGN_OR_RETURN(Bytes signature, DecodeBase64Argument("--signature", o.signature));
  ASSIGN_OR_RETURN(KeySession k, Open(o, true));
  ASSIGN_OR_RETURN(ApiResult out,
                   k.session.client->Call("POST", Query(k.key_path + "/verify"), k.session.token,
                                          {{"alg", o.algorithm},
                                           {"digest", Base64UrlEncode(digest)},
                                           {"value", Base64UrlEncode(signature)}}));
  PrintJson({{"algorithm", o.algorithm},
             {"isValid", out.body.value("value", false)},
             {"kid", k.session.client->options().server + k.key_path}});
  return OkStatus();
}

const std::vector<Column>& PolicyColumns() {
  static const std::vector<Column> columns = {
      Field("Id", "/id"),
      Field("ExpiryTime", "/attributes/expiryTime"),
      {"LifetimeActions", [](const Json& row) {
         std::string text;
         for (const Json& a : row.value("lifetimeActions", Json::array())) {
           if (!text.empty()) text += ", ";
           const Json trigger = a.value("trigger", Json::object());
           text += a.value("action", Json::object()).value("type", "?");
           if (trigger.contains("timeAfterCreate")) {
             text += " " + trigger.value("timeAfterCreate", "") + " after create";
           }
           if (trigger.contains("timeBeforeExpiry")) {
             text += " " + trigger.value("timeBeforeExpiry", "") + " before expiry";
           }
         }
         return Json(text);
       }}};
  return columns;
}

Status ShowRotationPolicy(KeyOptions& o) {
  ASSIGN_OR_RETURN(KeySession k, Open(o, false));
  ASSIGN_OR_RETURN(
      ApiResult policy,
      k.session.client->Call("GET", Query(k.key_path + "/rotationpolicy"), k.session.token));
  Print(policy.body, PolicyColumns());
  return OkStatus();
}

Status UpdateRotationPolicy(KeyOptions& o) {
  // az's --value: the policy as JSON, or a file holding it ("@file" too).
  std::string text = o.value;
  const size_t first = text.find_first_not_of(" \t\r\n");
  if (first == std::string::npos || text[first] != '{') {
    const std::string path = !text.empty() && text[0] == '@' ? text.substr(1) : text;
    StatusOr<std::string> file = ReadFile(path);
    if (!file.ok()) {
      return InvalidArgumentError(
          "--value: give the policy as JSON or a file holding it; cannot "
          "read '" +
          path + "'");
    }
    text = *file;
  }
  Json policy = Json::parse(text, nullptr, false);
  if (!policy.is_object()) return InvalidArgumentError("--value: the policy is not a JSON object");
  ASSIGN_OR_RETURN(KeySession k, Open(o, false));
  ASSIGN_OR_RETURN(ApiResult updated,
                   k.session.client->Call("PUT", Query(k.key_path + "/rotationpolicy"),
                                          k.session.token, policy));
  Print(updated.body, PolicyColumns());
  return OkStatus();
}

// ---------------------------------------------------------------- registration

// --vault-name, --name/-n and, when `version`, --version; --id for all of them.
void AddKeyName(CLI::App* cmd, KeyOptions& o, bool version) {
  cmd->add_option("--vault-name", o.vault, "the vault's name");
  cmd->add_option("-n,--name", o.name, "the key's name");
  if (version) cmd->add_option("-v,--version", o.version, "a version (default: the latest)");
  cmd->add_option("--id", o.id, "the key's id (https://VAULT.vault.DOMAIN/keys/NAME[/VERSION])");
}

void AddAttributeOptions(CLI::App* cmd, KeyOptions& o, bool set_attributes) {
  cmd->add_option("--ops", o.ops,
                  "space-separated permitted operations: encrypt decrypt sign verify wrapKey "
                  "unwrapKey import");
  if (set_attributes) {
    cmd->add_option("--enabled", o.enabled, "true or false")
        ->check(CLI::IsMember({"true", "false"}, CLI::ignore_case));
  } else {
    cmd->add_option("--disabled", o.disabled, "true: create the key disabled")
        ->check(CLI::IsMember({"true", "false"}, CLI::ignore_case));
  }
  cmd->add_option("--expires", o.expires,
                  "expiry: ISO 8601 (2030-01-31T00:00:00Z) or unix seconds");
  cmd->add_option("--not-before", o.not_before, "not valid before: ISO 8601 or unix seconds");
  cmd->add_option("--tags", o.tags, "space-separated tags: key[=value] ...");
}

}  // namespace

void AddKeyCommands(CLI::App& keyvault) {
  CLI::App* key = keyvault.add_subcommand("key", "the keys in a vault (its data plane)");
  key->require_subcommand(1);
  auto o = std::make_shared<KeyOptions>();

  CLI::App* create = key->add_subcommand("create", "create a key (or a new version of it)");
  AddKeyName(create, *o, false);
  create->add_option("--kty", o->kty, "RSA (default), RSA-HSM, EC or EC-HSM")
      ->transform(CLI::IsMember({"RSA", "RSA-HSM", "EC", "EC-HSM"}, CLI::ignore_case));
  create->add_option("--size", o->size, "RSA key size: 2048 (the service's default), 3072, 4096");
  create->add_option("--curve", o->curve, "EC curve: P-256, P-384 or P-521")
      ->transform(CLI::IsMember({"P-256", "P-384", "P-521"}, CLI::ignore_case));
  create->add_option("--protection", o->protection, "software (default) or hsm")
      ->check(CLI::IsMember({"software", "hsm"}, CLI::ignore_case));
  AddAttributeOptions(create, *o, false);
  create->callback([o, create] { Check(Create(*o, *create)); });

  CLI::App* import = key->add_subcommand("import", "import a private key (BYOK)");
  AddKeyName(import, *o, false);
  import->add_option("--pem-file", o->pem_file, "an unencrypted PKCS#8 RSA key, PEM or DER");
  import->add_option("--jwk-file", o->jwk_file, "a private JWK (RSA or EC)");
  import->add_option("--protection", o->protection, "software (default) or hsm")
      ->check(CLI::IsMember({"software", "hsm"}, CLI::ignore_case));
  AddAttributeOptions(import, *o, false);
  import->callback([o, import] { Check(Import(*o, *import));
});

CLI::App* show = key->add_subcommand("show", "show a key (its public part)");
AddKeyName(show, *o, true);
show->callback([o] { Check(Show(*o)); });

CLI::App* list = key->add_subcommand("list", "list a vault's keys");
list->add_option("--vault-name", o->vault, "the vault's name")->required();
list->add_option("--maxresults", o->max_results, "at most this many (default: all)")
    ->check(CLI::Range(1, 1000000));
list->callback([o] { Check(ListKeys(*o)); });

CLI::App* versions = key->add_subcommand("list-versions", "list a key's versions");
AddKeyName(versions, *o, false);
versions->add_option("--maxresults", o->max_results, "at most this many (default: all)")
    ->check(CLI::Range(1, 1000000));
versions->callback([o] { Check(ListVersions(*o)); });

CLI::App* set = key->add_subcommand("set-attributes", "change a key's attributes");
AddKeyName(set, *o, true);
AddAttributeOptions(set, *o, true);
set->callback([o, set] { Check(SetAttributes(*o, *set)); });

CLI::App* del = key->add_subcommand("delete", "delete a key (recoverable until purged)");
AddKeyName(del, *o, false);
del->callback([o] { Check(Delete(*o)); });

CLI::App* show_deleted = key->add_subcommand("show-deleted", "show a deleted key");
AddKeyName(show_deleted, *o, false);
show_deleted->callback([o] { Check(ShowDeleted(*o)); });

CLI::App* list_deleted = key->add_subcommand("list-deleted", "list a vault's deleted keys");
list_deleted->add_option("--vault-name", o->vault, "the vault's name")->required();
list_deleted->add_option("--maxresults", o->max_results, "at most this many (default: all)")
    ->check(CLI::Range(1, 1000000));
list_deleted->callback([o] { Check(ListDeleted(*o)); });

CLI::App* recover = key->add_subcommand("recover", "recover a deleted key");
AddKeyName(recover, *o, false);
recover->callback([o] { Check(Recover(*o)); });

CLI::App* purge = key->add_subcommand("purge", "destroy a deleted key for good");
AddKeyName(purge, *o, false);
purge->callback([o] { Check(Purge(*o)); });

CLI::App* backup = key->add_subcommand("backup", "write a key's protected backup to a file");
AddKeyName(backup, *o, false);
backup->add_option("-f,--file", o->file, "the file to write")->required();
backup->callback([o] { Check(Backup(*o)); });

CLI::App* restore = key->add_subcommand("restore", "restore a key from a backup file");
restore->add_option("--vault-name", o->vault, "the vault's name")->required();
restore->add_option("-f,--file", o->file, "the backup file")->required()->check(CLI::ExistingFile);
restore->callback([o] { Check(Restore(*o)); });

CLI::App* rotate = key->add_subcommand("rotate", "create a new version of a key");
AddKeyName(rotate, *o, false);
rotate->callback([o] { Check(Rotate(*o)); });

CLI::App* encrypt = key->add_subcommand("encrypt", "encrypt a small value with a key");
CLI::App* decrypt = key->add_subcommand("decrypt", "decrypt a value with a key");
for (CLI::App* cmd : {encrypt, decrypt}) {
  AddKeyName(cmd, *o, true);
  cmd->add_option("-a,--algorithm", o->algorithm, "RSA-OAEP, RSA-OAEP-256 or RSA1_5")
      ->required()
      ->transform(CLI::IsMember({"RSA-OAEP", "RSA-OAEP-256", "RSA1_5"}, CLI::ignore_case));
  cmd->add_option("--data-type", o->data_type,
                  "base64 (default) or plaintext: how the original data is given / shown")
      ->check(CLI::IsMember({"base64", "plaintext"}, CLI::ignore_case));
}
encrypt->add_option("--value", o->value, "the value (base64, or text with --data-type plaintext)")
    ->required();
decrypt->add_option("--value", o->value, "the ciphertext, base64")->required();
encrypt->callback([o] { Check(EncryptOrDecrypt(*o, CryptoCall::kEncrypt)); });
decrypt->callback([o] { Check(EncryptOrDecrypt(*o, CryptoCall::kDecrypt)); });

const auto signature_algorithms =
    CLI::IsMember({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"},
                  CLI::ignore_case);
CLI::App* sign = key->add_subcommand("sign", "sign a digest with a key");
CLI::App* verify = key->add_subcommand("verify", "verify a digest's signature with a key");
for (CLI::App* cmd : {sign, verify}) {
  AddKeyName(cmd, *o, true);
  cmd->add_option("-a,--algorithm", o->algorithm, "RS256, PS256, ES256, ...")
      ->required()
      ->transform(signature_algorithms);
  cmd->add_option("--digest", o->digest, "the digest to sign, base64")->required();
}
verify->add_option("--signature", o->signature, "the signature, base64")->required();
sign->callback([o] { Check(Sign(*o)); });
verify->callback([o] { Check(Verify(*o)); });

CLI::App* policy = key->add_subcommand("rotation-policy", "a key's rotation policy");
policy->require_subcommand(1);
CLI::App* policy_show = policy->add_subcommand("show", "show a key's rotation policy");
AddKeyName(policy_show, *o, false);
policy_show->callback([o] { Check(ShowRotationPolicy(*o)); });
CLI::App* policy_update = policy->add_subcommand("update", "set a key's rotation policy");
AddKeyName(policy_update, *o, false);
policy_update
    ->add_option("--value", o->value,
                 "the policy as JSON or a file holding it: {\"lifetimeActions\": [{\"trigger\": "
                 "{\"timeAfterCreate\": \"P90D\"}, \"action\": {\"type\": \"Rotate\"}}], "
                 "\"attributes\": {\"expiryTime\": \"P2Y\"}}")
    ->required();
policy_update->callback([o] { Check(UpdateRotationPolicy(*o)); });
}  // namespace keyfoundry::cli

}  // namespace keyfoundry::cli
