// The web portal (docs/portal.md): the static files of web/ in the source tree, compiled into
// keyfoundryd (src/server/CMakeLists.txt generates portal_assets.cc from them), so the server
// never reads its working directory. The portal is plain ES modules and CSS that call the
// public HTTP API from the browser; nothing here knows about its pages.
//
//   GET /                  web/index.html
//   GET /portal/{file...}  web/{file}: 404 for anything that is not an embedded file
//
// Both on the server's own addresses only (127.0.0.1, localhost, the domain): a vault's or an
// account's host is an API origin, never the portal's. Every answer carries a strict
// Content-Security-Policy (scripts, styles and images from the portal's own origin only; calls
// to the portal's origin and to the vault hosts, which CORS admits: IsPortalOrigin), and
// Cache-Control: no-cache with an ETag, so a browser revalidates (304) instead of running a
// stale portal after an upgrade.
#include <algorithm>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/encoding.h"
#include "common/strings.h"
#include "crypto/digest.h"
#include "server/services.h"

namespace keyfoundry::server {

// Defined in the generated portal_assets.cc: each file under web/ as (path relative to web/,
// its bytes), sorted by path.
std::vector<std::pair<std::string_view, std::string_view>> PortalAssetFiles();

namespace {

using http::Request;
using http::Response;

struct Asset {
  std::string path;  // relative to web/: "index.html", "js/app.js"
  std::string_view content;
  std::string content_type;
  std::string etag;  // a strong validator: "\"" + hex of SHA-256's first 16 bytes + "\""
};

// The types of the files the portal may hold. A file of another type under web/ is not
// served (404), so nothing is ever sent with a guessed type.
std::string ContentTypeOf(std::string_view path) {
  static constexpr std::pair<std::string_view, std::string_view> kTypes[] = {
      {".html", "text/html; charset=utf-8"},
      {".js", "text/javascript; charset=utf-8"},
      {".mjs", "text/javascript; charset=utf-8"},
      {".css", "text/css; charset=utf-8"},
      {".svg", "image/svg+xml"},
      {".png", "image/png"},
      {".ico", "image/x-icon"},
      {".json", "application/json; charset=utf-8"},
      {".txt", "text/plain; charset=utf-8"},
  };
  for (const auto& [suffix, type] : kTypes) {
    if (path.ends_with(suffix)) return std::string(type);
  }
  return "";
}

std::vector<Asset> LoadAssets() {
  std::vector<Asset> assets;
  for (const auto& [path, content] : PortalAssetFiles()) {
    Asset asset;
    asset.path = std::string(path);
    asset.content = content;
    asset.content_type = ContentTypeOf(path);
    if (asset.content_type.empty()) continue;
    StatusOr<Bytes> digest = crypto::Sha256(AsBytes(content));
    if (!digest.ok()) continue;  // only when OpenSSL itself fails; the file is then not served
    digest->resize(16);
    asset.etag = "\"" + HexEncode(*digest) + "\"";
    assets.push_back(std::move(asset));
  }
  return assets;
}

// "https://127.0.0.1:8443" -> ":8443".
std::string_view PortOf(std::string_view base_url) {
  const size_t colon = base_url.rfind(':');
  return colon == std::string_view::npos || colon < 6 ? std::string_view() : base_url.substr(colon);
}

// A vault's or an account's host: an API, not the portal.
bool IsResourceHost(const Services& s, std::string_view host) {
  return host.ends_with(".vault." + s.config.domain) ||
         host.ends_with(".openai." + s.config.domain);
}

std::string ContentSecurityPolicy(const Services& s) {
  const std::string vault_hosts =
      "https://*.vault." + s.config.domain + std::string(PortOf(s.base_url));
  return "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
         "connect-src 'self' " +
         vault_hosts +
         "; form-action 'none'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'";
}

Response Serve(const Services& s, const std::vector<Asset>& assets, const Request& r,
               std::string_view path) {
  if (!s.ready.load(std::memory_order_acquire)) {
    return http::AzureError(503, "ServiceUnavailable", "The server is starting; try again.");
  }
  const auto it =
      std::find_if(assets.begin(), assets.end(), [&](const Asset& a) { return a.path == path; });
  if (it == assets.end() || IsResourceHost(s, r.host)) {
    return http::AzureError(404, "NotFound", "The portal has no file '" + std::string(path) + "'.");
  }
  Response response;
  const std::optional<std::string_view> if_none_match = r.Header("If-None-Match");
  if (if_none_match.has_value() && *if_none_match == it->etag) {
    response = http::Text(304, "", "");
  } else {
    response = http::Text(200, std::string(it->content), it->content_type);
  }
  response.headers = {
      {"Cache-Control", "no-cache"},
      {"ETag", it->etag},
      {"Content-Security-Policy", ContentSecurityPolicy(s)},
      {"X-Frame-Options", "DENY"},
      {"Referrer-Policy", "no-referrer"},
      {"Cross-Origin-Opener-Policy", "same-origin"},
      {"Cross-Origin-Resource-Policy", "same-origin"},
  };
  return response;
}

}  // namespace

bool IsPortalOrigin(const Services& s, std::string_view origin) {
  if (!s.ready.load(std::memory_order_acquire)) return false;
  const std::string port(PortOf(s.base_url));
  if (port.empty()) return false;
  for (const std::string& host : {std::string("127.0.0.1"), std::string("localhost"),
                                  std::string("[::1]"), s.config.domain}) {
    if (origin == "https://" + host + port) return true;
  }
  return origin == s.base_url;
}

void AddPortalRoutes(http::Router& router, std::shared_ptr<Services> services) {
  auto assets = std::make_shared<const std::vector<Asset>>(LoadAssets());
  const http::RouteOptions options{.metrics_name = "portal", .runs_inline = true};
  router.Add(
      "GET", "*", "/",
      [s = services, assets](Request& r) { return Serve(*s, *assets, r, "index.html"); }, options);
  router.Add(
      "GET", "*", "/portal/{file...}",
      [s = services, assets](Request& r) { return Serve(*s, *assets, r, r.params["file"]); },
      options);
}

}  // namespace keyfoundry::server
