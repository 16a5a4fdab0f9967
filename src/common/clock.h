// The clock, injected wherever time matters (STYLE habit 10) so tests can move it.
#ifndef KEYFOUNDRY_COMMON_CLOCK_H_
#define KEYFOUNDRY_COMMON_CLOCK_H_

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>

namespace keyfoundry {

// Thread-safe: implementations may be called from any thread.
class Clock {
 public:
  virtual ~Clock() = default;
  virtual std::chrono::system_clock::time_point Now() const = 0;
  // The process-wide real clock.
  static const Clock& Real();
};

// Whole seconds since the epoch of `clock`'s now.
int64_t UnixSeconds(const Clock& clock);
// Whole milliseconds since the epoch of `clock`'s now.
int64_t UnixMillis(const Clock& clock);

// "2026-11-28T16:04:53Z": a time in UTC as ISO 8601 / RFC 3339, as ARM and the CLI show it.
std::string FormatIso8601(int64_t unix_seconds);

// A clock that only moves when told to. Test-only.
class FakeClock final : public Clock {
 public:
  explicit FakeClock(std::chrono::system_clock::time_point start = {}) : now_(start) {}
  std::chrono::system_clock::time_point Now() const override { return now_.load(); }
  void Advance(std::chrono::system_clock::duration d) { now_.store(now_.load() + d); }

 private:
  std::atomic<std::chrono::system_clock::time_point> now_;
};

}  // namespace keyfoundry

#endif  // KEYFOUNDRY_COMMON_CLOCK_H_
