#include "http/metrics.h"

#include <cstdio>

namespace keyfoundry::http {
namespace {

// A label value: backslash, double quote and newline escaped.
std::string Escape(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string Number(double v) {
  char buf[32];
  (void)std::snprintf(buf, sizeof(buf), "%.9g", v);
  return buf;
}

}  // namespace

void Metrics::RecordRequest(std::string_view route, std::string_view method, int status,
                            std::chrono::nanoseconds duration) {
  const double seconds = std::chrono::duration<double>(duration).count();
  MutexLock lock(&mu_);
  ++requests_[{std::string(route), std::string(method), status}];
  auto it = durations_.find(route);
  if (it == durations_.end()) it = durations_.emplace(std::string(route), Histogram()).first;
  Histogram& h = it->second;
  for (size_t i = 0; i < kDurationBuckets.size(); ++i) {
    if (seconds <= kDurationBuckets[i]) {
      ++h.buckets[i];
      break;
    }
  }
  ++h.count;
  h.sum_seconds += seconds;
}

void Metrics::ConnectionOpened() {
  MutexLock lock(&mu_);
  ++open_connections_;
}

void Metrics::ConnectionClosed() {
  MutexLock lock(&mu_);
  --open_connections_;
}

void Metrics::ConnectionRefused() {
  MutexLock lock(&mu_);
  ++refused_connections_;
}

int64_t Metrics::open_connections() const {
  MutexLock lock(&mu_);
  return open_connections_;
}

std::string Metrics::Render() const {
  MutexLock lock(&mu_);
  std::string out;
  out +=
      "# HELP kf_http_requests_total HTTP requests answered, by route, method and status.\n"
      "# TYPE kf_http_requests_total counter\n";
  for (const auto& [key, count] : requests_) {
    const auto& [route, method, status] = key;
    out += "kf_http_requests_total{route=\"" + Escape(route) + "\",method=\"" + Escape(method) +
           "\",status=\"" + std::to_string(status) + "\"} " + std::to_string(count) + "\n";
  }
  out +=
      "# HELP kf_http_request_duration_seconds Time from a request's first byte to its "
      "response's last, by route.\n"
      "# TYPE kf_http_request_duration_seconds histogram\n";
  for (const auto& [route, h] : durations_) {
    const std::string label = "route=\"" + Escape(route) + "\"";
    uint64_t cumulative = 0;
    for (size_t i = 0; i < kDurationBuckets.size(); ++i) {
      cumulative += h.buckets[i];
      out += "kf_http_request_duration_seconds_bucket{" + label + ",le=\"" +
             Number(kDurationBuckets[i]) + "\"} " + std::to_string(cumulative) + "\n";
    }
    out += "kf_http_request_duration_seconds_bucket{" + label + ",le=\"+Inf\"} " +
           std::to_string(h.count) + "\n";
    out += "kf_http_request_duration_seconds_sum{" + label + "} " + Number(h.sum_seconds) + "\n";
    out +=
        "kf_http_request_duration_seconds_count{" + label + "} " + std::to_string(h.count) + "\n";
  }
  out +=
      "# HELP kf_http_open_connections Client connections open now, TLS handshakes included.\n"
      "# TYPE kf_http_open_connections gauge\n"
      "kf_http_open_connections " +
      std::to_string(open_connections_) +
      "\n"
      "# HELP kf_http_connections_refused_total Connections closed at once because "
      "max_connections were open.\n"
      "# TYPE kf_http_connections_refused_total counter\n"
      "kf_http_connections_refused_total " +
      std::to_string(refused_connections_) + "\n";
  return out;
}

}  // namespace keyfoundry::http
