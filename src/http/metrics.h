// The HTTP server's metrics in the Prometheus text exposition format (version 0.0.4):
//
//   kf_http_requests_total{route,method,status}        counter
//   kf_http_request_duration_seconds{route}            histogram (kDurationBuckets)
//   kf_http_open_connections                           gauge (TLS handshakes included)
//   kf_http_connections_refused_total                  counter (beyond max_connections)
//
// `route` is the route's label (RouteOptions::metrics_name or its path pattern; "unmatched"
// when no route matched), never request data, so the number of series stays bounded. The
// server passes `method` as one of the standard methods or "OTHER" for the same reason.
//
// Thread safety: every method may be called concurrently (one mutex; the hot path holds it for
// two map lookups).
#ifndef KEYFOUNDRY_HTTP_METRICS_H_
#define KEYFOUNDRY_HTTP_METRICS_H_

#include <array>
#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <tuple>

#include "common/mutex.h"

namespace keyfoundry::http {

class Metrics {
 public:
  // Upper bounds in seconds (the "+Inf" bucket is implicit): from a cached key lookup (~1 ms)
  // to an upload of many megabytes.
  static constexpr std::array<double, 13> kDurationBuckets = {
      0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};

  void RecordRequest(std::string_view route, std::string_view method, int status,
                     std::chrono::nanoseconds duration);
  void ConnectionOpened();
  void ConnectionClosed();
  void ConnectionRefused();

  int64_t open_connections() const;

  // All series, sorted, with # HELP and # TYPE lines.
  std::string Render() const;

 private:
  struct Histogram {
    std::array<uint64_t, kDurationBuckets.size()> buckets{};  // not cumulative
    uint64_t count = 0;
    double sum_seconds = 0;
  };

  mutable Mutex mu_;
  std::map<std::tuple<std::string, std::string, int>, uint64_t> requests_ GUARDED_BY(mu_);
  std::map<std::string, Histogram, std::less<>> durations_ GUARDED_BY(mu_);
  int64_t open_connections_ GUARDED_BY(mu_) = 0;
  uint64_t refused_connections_ GUARDED_BY(mu_) = 0;
};

}  // namespace keyfoundry::http

#endif  // KEYFOUNDRY_HTTP_METRICS_H_
