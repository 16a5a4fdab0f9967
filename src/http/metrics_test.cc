#include "http/metrics.h"

#include <gtest/gtest.h>

#include <thread>
#include <vector>

namespace keyfoundry::http {
namespace {

using std::chrono::microseconds;
using std::chrono::milliseconds;

bool Has(const std::string& text, const std::string& line) {
  return text.find(line + "\n") != std::string::npos;
}

TEST(MetricsTest, RendersCountersHistogramsAndGauges) {
  Metrics m;
  m.RecordRequest("/keys/{name}", "GET", 200, microseconds(500));
  m.RecordRequest("/keys/{name}", "GET", 200, milliseconds(30));
  m.RecordRequest("/keys/{name}", "GET", 404, milliseconds(20000));
  m.RecordRequest("unmatched", "OTHER", 400, milliseconds(1));
  m.ConnectionOpened();
  m.ConnectionOpened();
  m.ConnectionClosed();
  m.ConnectionRefused();
  const std::string text = m.Render();
  EXPECT_TRUE(Has(text, "# TYPE kf_http_requests_total counter"));
  EXPECT_TRUE(
      Has(text, R"(kf_http_requests_total{route="/keys/{name}",method="GET",status="200"} 2)"));
  EXPECT_TRUE(
      Has(text, R"(kf_http_requests_total{route="/keys/{name}",method="GET",status="404"} 1)"));
  EXPECT_TRUE(
      Has(text, R"(kf_http_requests_total{route="unmatched",method="OTHER",status="400"} 1)"));
  EXPECT_TRUE(Has(text, "# TYPE kf_http_request_duration_seconds histogram"));
  EXPECT_TRUE(
      Has(text, R"(kf_http_request_duration_seconds_bucket{route="/keys/{name}",le="0.001"} 1)"));
  EXPECT_TRUE(
      Has(text, R"(kf_http_request_duration_seconds_bucket{route="/keys/{name}",le="0.025"} 1)"));
  EXPECT_TRUE(
      Has(text, R"(kf_http_request_duration_seconds_bucket{route="/keys/{name}",le="0.05"} 2)"));
  EXPECT_TRUE(
      Has(text, R"(kf_http_request_duration_seconds_bucket{route="/keys/{name}",le="10"} 2)"));
  EXPECT_TRUE(
      Has(text, R"(kf_http_request_duration_seconds_bucket{route="/keys/{name}",le="+Inf"} 3)"));
  EXPECT_TRUE(Has(text, R"(kf_http_request_duration_seconds_sum{route="/keys/{name}"} 20.0305)"));
  EXPECT_TRUE(Has(text, R"(kf_http_request_duration_seconds_count{route="/keys/{name}"} 3)"));
  EXPECT_TRUE(Has(text, "# TYPE kf_http_open_connections gauge"));
  EXPECT_TRUE(Has(text, "kf_http_open_connections 1"));
  EXPECT_TRUE(Has(text, "kf_http_connections_refused_total 1"));
  EXPECT_EQ(m.open_connections(), 1);
}

TEST(MetricsTest, EscapesLabelValues) {
  Metrics m;
  m.RecordRequest("a\"b\\c\nd", "GET", 200, microseconds(1));
  EXPECT_TRUE(
      Has(m.Render(), R"(kf_http_requests_total{route="a\"b\\c\nd",method="GET",status="200"} 1)"));
}

TEST(MetricsTest, CountsEveryRequestFromManyThreads) {
  Metrics m;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&m] {
      for (int i = 0; i < 1000; ++i) {
        m.RecordRequest("/r", "POST", 201, microseconds(10));
        m.ConnectionOpened();
        m.ConnectionClosed();
      }
    });
  }
  for (auto& t : threads) t.join();
  const std::string text = m.Render();
  EXPECT_TRUE(Has(text, R"(kf_http_requests_total{route="/r",method="POST",status="201"} 4000)"));
  EXPECT_TRUE(Has(text, R"(kf_http_request_duration_seconds_count{route="/r"} 4000)"));
  EXPECT_EQ(m.open_connections(), 0);
}

}  // namespace
}  // namespace keyfoundry::http
