#include "common/strings.h"

#include <algorithm>
#include <charconv>

namespace keyfoundry {

std::string ToLowerAscii(std::string_view text) {
  std::string out(text);
  for (char& c : out) c = LowerAscii(c);
  return out;
}

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  return std::equal(a.begin(), a.end(), b.begin(), b.end(),
                    [](char x, char y) { return LowerAscii(x) == LowerAscii(y); });
}

std::optional<int64_t> ParseInt64(std::string_view text) {
  int64_t n = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return n;
}

std::string EnsureTrailingSlash(std::string_view text) {
  std::string out(text);
  if (!out.ends_with('/')) out += '/';
  return out;
}

}  // namespace keyfoundry
