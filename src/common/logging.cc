#include "common/logging.h"

#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <mutex>
#include <thread>

namespace keyfoundry {
namespace {

std::string_view LevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug:
      return "debug";
    case LogLevel::kInfo:
      return "info";
    case LogLevel::kWarning:
      return "warning";
    case LogLevel::kError:
      return "error";
  }
  return "unknown";
}

std::string NowUtc() {
  auto now = std::chrono::system_clock::now();
  auto secs = std::chrono::system_clock::to_time_t(now);
  auto millis =
      std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()) % 1000;
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[40];
  (void)std::snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                      tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                      static_cast<int>(millis.count()));
  return buf;
}

void WriteAll(std::string_view text) {
  // A failed log write has nowhere to be reported.
  [[maybe_unused]] ssize_t n = ::write(STDERR_FILENO, text.data(), text.size());
}

// The deferred lines. Leaked on purpose: threads may log while the process exits, after
// static destructors ran; an atexit handler writes what is left. The flushing thread starts
// with the first deferred line, so a program that never defers one (the CLI) has none.
class DeferredLog {
 public:
  static DeferredLog& Get() {
    static DeferredLog* const log = [] {
      auto* created = new DeferredLog();
      (void)std::atexit([] { Get().Flush(); });
      return created;
    }();
    return *log;
  }

  void Add(std::string line) {
    std::call_once(flusher_started_, [this] { std::thread([this] { FlushLoop(); }).detach(); });
    std::lock_guard<std::mutex> lock(mu_);
    const bool was_empty = buffer_.empty();
    buffer_ += line;
    if (buffer_.size() >= kDeferredLogBuffer) {
      WriteLocked();
    } else if (was_empty) {
      cv_.notify_one();  // starts the delay
    }
  }

  // Writes the buffer, then `line` (if any), keeping their order.
  void Flush(std::string_view line = {}) {
    std::lock_guard<std::mutex> lock(mu_);
    if (!buffer_.empty()) {
      buffer_ += line;
      WriteLocked();
    } else if (!line.empty()) {
      WriteAll(line);
    }
  }

 private:
  void WriteLocked() {
    WriteAll(buffer_);
    buffer_.clear();
  }

  void FlushLoop() {
    std::unique_lock<std::mutex> lock(mu_);
    while (true) {
      cv_.wait(lock, [this] { return !buffer_.empty(); });
      cv_.wait_for(lock, std::chrono::milliseconds(kDeferredLogDelayMs));
      if (!buffer_.empty()) WriteLocked();
    }
  }

  std::once_flag flusher_started_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::string buffer_;
};

}  // namespace

std::string JsonEscape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          (void)std::snprintf(buf, sizeof(buf), "\\u%04x", static_cast<unsigned>(c));
          out += buf;
        } else {
          out += c;
        }
    }
  }
  return out;
}

std::string FormatLogLine(LogLevel level, std::string_view event,
                          std::initializer_list<LogField> fields) {
  std::string line = "{\"time\":\"" + NowUtc() + "\",\"level\":\"" + std::string(LevelName(level)) +
                     "\",\"event\":\"" + JsonEscape(event) + "\"";
  for (const auto& [key, value] : fields) {
    line += ",\"" + JsonEscape(key) + "\":\"" + JsonEscape(value) + "\"";
  }
  line += "}\n";
  return line;
}

void Log(LogLevel level, std::string_view event, std::initializer_list<LogField> fields) {
  // One write per line keeps lines whole when threads log at once; deferred lines go first.
  DeferredLog::Get().Flush(FormatLogLine(level, event, fields));
}

void LogDeferred(LogLevel level, std::string_view event, std::initializer_list<LogField> fields) {
  DeferredLog::Get().Add(FormatLogLine(level, event, fields));
}

void FlushDeferredLog() { DeferredLog::Get().Flush(); }

}  // namespace keyfoundry
