// Structured logs: one JSON object per line on stderr, e.g.
//   {"time":"2026-11-28T10:00:00.123Z","level":"info","event":"data_dir.ready","dir":"/x"}
// Field values are strings the caller chose; never pass secrets, tokens or key material
// (SecretBytes cannot be passed: it has no string form).
//
// Thread-safe: each line is written whole, with one write(2) per line (Log) or per batch of
// lines (LogDeferred).
#ifndef KEYFOUNDRY_COMMON_LOGGING_H_
#define KEYFOUNDRY_COMMON_LOGGING_H_

#include <cstddef>
#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>

namespace keyfoundry {

enum class LogLevel { kDebug = 1, kInfo = 2, kWarning = 3, kError = 4 };

using LogField = std::pair<std::string_view, std::string_view>;

void Log(LogLevel level, std::string_view event, std::initializer_list<LogField> fields = {});

// Like Log, for lines that come by the thousand per second (one per HTTP request): the line
// joins a buffer that a background thread writes with one write(2) at most kDeferredLogDelay
// later, or at once when it holds kDeferredLogBuffer bytes or a Log line comes (which is
// written after it, so lines stay in order). Exiting normally writes what is buffered; a
// crash loses at most the last kDeferredLogDelay of deferred lines.
void LogDeferred(LogLevel level, std::string_view event,
                 std::initializer_list<LogField> fields = {});
inline constexpr int kDeferredLogDelayMs = 100;
inline constexpr size_t kDeferredLogBuffer = 64 * 1024;

// Writes the deferred lines now (for tests, and before a deliberate abort).
void FlushDeferredLog();

// Formats a log line without writing it (for tests).
std::string FormatLogLine(LogLevel level, std::string_view event,
                          std::initializer_list<LogField> fields);

// Escapes `s` as the contents of a JSON string.
std::string JsonEscape(std::string_view s);

}  // namespace keyfoundry

#endif  // KEYFOUNDRY_COMMON_LOGGING_H_
