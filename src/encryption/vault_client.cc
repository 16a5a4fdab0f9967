// ParseKid (vault_client.h).
//
// What a kid must be, exactly:
//   "https://" HOST [":" PORT] "/keys/" NAME "/" VERSION
// HOST     1..253 of [0-9A-Za-z.-], no empty label (vaults are named hosts, never IP literals)
// PORT     1..5 digits, 1..65535
// NAME     1..127 of [0-9A-Za-z-] (Azure's key name rule)
// VERSION  32 hex digits
// The scheme is matched ignoring case; nothing may follow the version (no '/', '?' or '#').
#include "encryption/vault_client.h"

#include <algorithm>
#include <cstddef>
#include <string>
#include <string_view>

#include "common/strings.h"

namespace keyfoundry::encryption {
namespace {

constexpr std::string_view kScheme = "https://";
constexpr size_t kMaxHost = 253;
constexpr size_t kMaxName = 127;
constexpr size_t kVersionSize = 32;
constexpr size_t kMaxKidShown = 200;

bool IsDigit(char c) { return c >= '0' && c <= '9'; }
bool IsAlnum(char c) { return IsDigit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool IsHex(char c) { return IsDigit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

bool IsHost(std::string_view host) {
  if (host.empty() || host.size() > kMaxHost || host.front() == '.' || host.back() == '.' ||
      host.find("..") != std::string_view::npos) {
    return false;
  }
  return std::all_of(host.begin(), host.end(),
                     [](char c) { return IsAlnum(c) || c == '-' || c == '.'; });
}

bool IsPort(std::string_view port) {
  if (port.empty() || port.size() > 5 || !std::all_of(port.begin(), port.end(), IsDigit)) {
    return false;
  }
  const int value = std::stoi(std::string(port));
  return value >= 1 && value <= 65535;
}

bool IsKeyName(std::string_view name) {
  return !name.empty() && name.size() <= kMaxName &&
         std::all_of(name.begin(), name.end(), [](char c) { return IsAlnum(c) || c == '-'; });
}

bool IsVersion(std::string_view version) {
  return version.size() == kVersionSize && std::all_of(version.begin(), version.end(), IsHex);
}

Status NotAKid(std::string_view kid, std::string_view why) {
  std::string shown(kid.substr(0, kMaxKidShown));
  if (kid.size() > kMaxKidShown) shown += "...";
  return InvalidArgumentError("'" + shown + "' is not a key identifier (" + std::string(why) +
                              "); expected https://HOST[:PORT]/keys/NAME/VERSION")
      .WithReason("BadParameter");
}

}  // namespace

StatusOr<KeyReference> ParseKid(std::string_view kid) {
  if (kid.size() < kScheme.size() || !EqualsIgnoreCase(kid.substr(0, kScheme.size()), kScheme)) {
    return NotAKid(kid, "not an https URI");
  }
  std::string_view rest = kid.substr(kScheme.size());
  const size_t slash = rest.find('/');
  if (slash == std::string_view::npos) return NotAKid(kid, "no path");
  const std::string_view authority = rest.substr(0, slash);
  std::string_view path = rest.substr(slash);

  const size_t colon = authority.find(':');
  const std::string_view host = authority.substr(0, colon);
  if (!IsHost(host)) return NotAKid(kid, "a bad host");
  if (colon != std::string_view::npos && !IsPort(authority.substr(colon + 1))) {
    return NotAKid(kid, "a bad port");
  }

  constexpr std::string_view kKeys = "/keys/";
  if (path.substr(0, kKeys.size()) != kKeys) return NotAKid(kid, "the path is not /keys/...");
  path.remove_prefix(kKeys.size());
  const size_t name_end = path.find('/');
  if (name_end == std::string_view::npos) return NotAKid(kid, "no version");
  const std::string_view name = path.substr(0, name_end);
  const std::string_view version = path.substr(name_end + 1);
  if (!IsKeyName(name)) return NotAKid(kid, "a bad key name");
  if (!IsVersion(version)) return NotAKid(kid, "the version is not 32 hex digits");

  KeyReference out;
  out.vault_uri = std::string(kScheme) + std::string(authority) + "/";
  out.name = std::string(name);
  out.version = std::string(version);
  return out;
}

}  // namespace keyfoundry::encryption
