// Argument values as az takes them: tags, booleans, times, base64; and confirmations.
#include <unistd.h>

#include <algorithm>
#include <ctime>
#include <iostream>

#include "cli/commands.h"
#include "common/clock.h"
#include "common/encoding.h"
#include "common/strings.h"

namespace keyfoundry::cli {
namespace {

// Reads exactly `n` digits at `pos` into `out`.
bool Digits(std::string_view text, size_t& pos, size_t n, int& out) {
  if (pos + n > text.size()) return false;
  out = 0;
  for (size_t i = 0; i < n; ++i) {
    const char c = text[pos + i];
    if (c < '0' || c > '9') return false;
    out = out * 10 + (c - '0');
  }
  pos += n;
  return true;
}

bool Expect(std::string_view text, size_t& pos, char c) {
  if (pos >= text.size() || text[pos] != c) return false;
  ++pos;
  return true;
}

// ISO 8601 as az's datetime arguments take it; nullopt when it is not one.
std::optional<int64_t> ParseIso8601(std::string_view text) {
  size_t pos = 0;
  int year = 0, month = 0, day = 0, hour = 0, minute = 0, second = 0;
  if (!Digits(text, pos, 4, year) || !Expect(text, pos, '-') || !Digits(text, pos, 2, month) ||
      !Expect(text, pos, '-') || !Digits(text, pos, 2, day)) {
    return std::nullopt;
  }
  int64_t offset = 0;
  if (pos < text.size()) {
    if (text[pos] != 'T' && text[pos] != 't' && text[pos] != ' ') return std::nullopt;
    ++pos;
    if (!Digits(text, pos, 2, hour) || !Expect(text, pos, ':') || !Digits(text, pos, 2, minute)) {
      return std::nullopt;
    }
    if (pos < text.size() && text[pos] == ':') {
      ++pos;
      if (!Digits(text, pos, 2, second)) return std::nullopt;
      if (pos < text.size() && text[pos] == '.') {  // fractions of a second: dropped
        ++pos;
        const size_t start = pos;
        while (pos < text.size() && text[pos] >= '0' && text[pos] <= '9') ++pos;
        if (pos == start) return std::nullopt;
      }
    }
    if (pos < text.size()) {
      if (text[pos] == 'Z' || text[pos] == 'z') {
        ++pos;
      } else if (text[pos] == '+' || text[pos] == '-') {
        const int sign = text[pos] == '+' ? 1 : -1;
        ++pos;
        int oh = 0, om = 0;
        if (!Digits(text, pos, 2, oh)) return std::nullopt;
        if (pos < text.size() && text[pos] == ':') ++pos;
        if (!Digits(text, pos, 2, om) || oh > 23 || om > 59) return std::nullopt;
        offset = sign * (int64_t{oh} * 3600 + int64_t{om} * 60);
      }
    }
  }
  if (pos != text.size() || month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 ||
      minute > 59 || second > 60) {
    return std::nullopt;
  }
  std::tm tm{};
  tm.tm_year = year - 1900;
  tm.tm_mon = month - 1;
  tm.tm_mday = day;
  tm.tm_hour = hour;
  tm.tm_min = minute;
  tm.tm_sec = second;
  const time_t t = timegm(&tm);
  if (tm.tm_mday != day) return std::nullopt;  // 2030-02-31 rolled over
  return static_cast<int64_t>(t) - offset;
}

}  // namespace

StatusOr<nlohmann::json> ParseTags(const std::vector<std::string>& pairs) {
  nlohmann::json tags = nlohmann::json::object();
  for (const std::string& pair : pairs) {
    if (pair.empty()) continue;  // az: `--tags ""` clears the tags
    const size_t eq = pair.find('=');
    const std::string name = pair.substr(0, eq);
    if (name.empty()) return InvalidArgumentError("--tags: '" + pair + "' names no tag");
    tags[name] = eq == std::string::npos ? "" : pair.substr(eq + 1);
  }
  return tags;
}

StatusOr<bool> ParseBool(std::string_view flag, std::string_view text) {
  if (EqualsIgnoreCase(text, "true")) return true;
  if (EqualsIgnoreCase(text, "false")) return false;
  return InvalidArgumentError(std::string(flag) + ": '" + std::string(text) +
                              "' is not a boolean; give true or false");
}

StatusOr<int64_t> ParseTime(std::string_view flag, std::string_view text) {
  if (!text.empty() && text.size() <= 12 &&
      std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return std::stoll(std::string(text));
  }
  if (std::optional<int64_t> t = ParseIso8601(text)) return *t;
  return InvalidArgumentError(std::string(flag) + ": '" + std::string(text) +
                              "' is not a time; give ISO 8601 (2030-01-31T12:00:00Z) or unix "
                              "seconds");
}

StatusOr<Bytes> DecodeBase64Argument(std::string_view flag, std::string_view text) {
  StatusOr<Bytes> bytes = Base64Decode(text);
  if (!bytes.ok()) bytes = Base64UrlDecode(text);
  if (!bytes.ok()) {
    return InvalidArgumentError(std::string(flag) + ": the value is not base64");
  }
  return bytes;
}

Status Confirm(const std::string& question, bool yes) {
  if (yes) return OkStatus();
  if (!isatty(STDIN_FILENO)) {
    return FailedPreconditionError("cannot ask for confirmation without a terminal: add --yes");
  }
  std::cerr << question << " (y/n): ";
  std::string answer;
  std::getline(std::cin, answer);
  if (answer == "y" || answer == "Y" || EqualsIgnoreCase(answer, "yes")) return OkStatus();
  return AbortedError("not confirmed: nothing was changed");
}

}  // namespace keyfoundry::cli
