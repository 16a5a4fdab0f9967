// ASCII string helpers shared by the modules (HTTP header names, ARM ids, JOSE names compare
// ASCII case-insensitively; no locale is involved anywhere).
#ifndef KEYFOUNDRY_COMMON_STRINGS_H_
#define KEYFOUNDRY_COMMON_STRINGS_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace keyfoundry {

// 'A'..'Z' to 'a'..'z'; every other byte unchanged.
inline char LowerAscii(char c) {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}

std::string ToLowerAscii(std::string_view text);

// Equal but for ASCII letter case.
bool EqualsIgnoreCase(std::string_view a, std::string_view b);

// A whole decimal number (an optional '-' and digits, nothing else) that fits int64_t.
std::optional<int64_t> ParseInt64(std::string_view text);

// `text` with one '/' at its end.
std::string EnsureTrailingSlash(std::string_view text);

}  // namespace keyfoundry

#endif  // KEYFOUNDRY_COMMON_STRINGS_H_
