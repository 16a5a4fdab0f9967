#include "identity/ids.h"

#include <cstdint>

namespace keyfoundry::identity {
namespace {

bool IsHex(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

std::string_view StripTrailingSlash(std::string_view scope) {
  if (scope.size() > 1 && scope.back() == '/') scope.remove_suffix(1);
  return scope;
}

}  // namespace

bool IsUuid(std::string_view text) {
  if (text.size() != 36) return false;
  for (size_t i = 0; i < text.size(); ++i) {
    const bool dash_position = i == 8 || i == 13 || i == 18 || i == 23;
    if (dash_position ? text[i] != '-' : !IsHex(text[i])) return false;
  }
  return true;
}

bool IsPrintableUtf8(std::string_view text) {
  size_t i = 0;
  while (i < text.size()) {
    const auto b0 = static_cast<uint8_t>(text[i]);
    if (b0 < 0x80) {
      if (b0 < 0x20 || b0 == 0x7f) return false;
      ++i;
      continue;
    }
    size_t n = 0;
    uint32_t cp = 0;
    if ((b0 & 0xe0) == 0xc0) {
      n = 1;
      cp = b0 & 0x1f;
    } else if ((b0 & 0xf0) == 0xe0) {
      n = 2;
      cp = b0 & 0x0f;
    } else if ((b0 & 0xf8) == 0xf0) {
      n = 3;
      cp = b0 & 0x07;
    } else {
      return false;
    }
    if (i + n >= text.size()) return false;  // truncated sequence
    for (size_t k = 1; k <= n; ++k) {
      const auto b = static_cast<uint8_t>(text[i + k]);
      if ((b & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (b & 0x3f);
    }
    // Overlong forms, surrogates, beyond U+10FFFF, and C1 controls.
    const uint32_t min[] = {0, 0x80, 0x800, 0x10000};
    if (cp < min[n] || (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff ||
        (cp >= 0x80 && cp <= 0x9f)) {
      return false;
    }
    i += n + 1;
  }
  return true;
}

Status ValidateScope(std::string_view scope) {
  if (scope.empty() || scope.size() > kMaxScopeSize) {
    return InvalidArgumentError("a scope is 1 to 512 characters");
  }
  if (!IsPrintableUtf8(scope)) {
    return InvalidArgumentError("a scope must be printable UTF-8");
  }
  if (scope.find_first_of("?#\\") != std::string_view::npos) {
    return InvalidArgumentError("a scope must not contain '?', '#' or '\\'");
  }
  std::string_view rest = StripTrailingSlash(scope);
  if (rest.empty() || rest.front() != '/') {
    return InvalidArgumentError("a scope starts with /subscriptions/{subscriptionId}");
  }
  rest.remove_prefix(1);
  size_t index = 0;
  while (true) {
    const size_t slash = rest.find('/');
    const std::string_view segment = rest.substr(0, slash);
    if (segment.empty() || segment == "." || segment == "..") {
      return InvalidArgumentError("a scope has an empty, '.' or '..' segment");
    }
    if (index == 0 && !EqualsIgnoreCase(segment, "subscriptions")) {
      return InvalidArgumentError("a scope starts with /subscriptions/{subscriptionId}");
    }
    ++index;
    if (slash == std::string_view::npos) break;
    rest.remove_prefix(slash + 1);
  }
  if (index < 2) return InvalidArgumentError("a scope starts with /subscriptions/{subscriptionId}");
  return OkStatus();
}

std::string NormalizeScope(std::string_view scope) {
  return ToLowerAscii(StripTrailingSlash(scope));
}

bool ScopeContains(std::string_view ancestor, std::string_view scope) {
  const std::string a = NormalizeScope(ancestor);
  const std::string s = NormalizeScope(scope);
  if (s.size() < a.size() || s.compare(0, a.size(), a) != 0) return false;
  return s.size() == a.size() || s[a.size()] == '/';
}

std::string_view SubscriptionOfScope(std::string_view scope) {
  constexpr std::string_view kPrefix = "/subscriptions/";
  if (scope.size() <= kPrefix.size() ||
      !EqualsIgnoreCase(scope.substr(0, kPrefix.size()), kPrefix)) {
    return {};
  }
  std::string_view rest = scope.substr(kPrefix.size());
  return rest.substr(0, rest.find('/'));
}

}  // namespace keyfoundry::identity
