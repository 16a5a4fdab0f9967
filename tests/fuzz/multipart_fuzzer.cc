// Fuzzes the multipart/form-data parser (http/multipart.h) and MultipartBoundary. Each input is
// parsed three ways: whole, in pseudo-random chunks, and (when short) a byte at a time. Checked:
// callbacks come in order (data only between a part's begin and end, never empty), part data
// never holds the delimiter, the part limit holds, a body that parses has every part ended,
// and all three ways give the same parts, data and status. Input layout: multipart_fuzz_common.h.
#include <cstdint>
#include <string>
#include <vector>

#include "multipart_fuzz_common.h"

using namespace keyfoundry;

namespace {

struct Outcome {
  struct Part {
    std::string name;
    std::optional<std::string> filename;
    std::string content_type;
    std::vector<std::pair<std::string, std::string>> headers;
    std::string data;
    bool ended = false;
    bool operator==(const Part&) const = default;
  };
  std::vector<Part> parts;
  Status status;
  bool operator==(const Outcome&) const = default;
};

// Parses `body` in chunks whose sizes next_size() gives (0: the rest).
template <typename NextSize>
Outcome Parse(std::string_view boundary, ByteView body, NextSize next_size) {
  Outcome out;
  http::MultipartCallbacks callbacks;
  callbacks.on_part_begin = [&out](const http::MultipartPart& part) {
    if (!out.parts.empty() && !out.parts.back().ended) __builtin_trap();
    if (part.name.empty()) __builtin_trap();
    out.parts.push_back(
        {part.name, part.filename, part.content_type, part.headers, std::string(), false});
    return OkStatus();
  };
  callbacks.on_part_data = [&out](ByteView data) {
    if (out.parts.empty() || out.parts.back().ended || data.empty()) __builtin_trap();
    out.parts.back().data.append(AsStringView(data));
    return OkStatus();
  };
  callbacks.on_part_end = [&out] {
    if (out.parts.empty() || out.parts.back().ended) __builtin_trap();
    out.parts.back().ended = true;
    return OkStatus();
  };
  auto parser = http::MultipartParser::New(boundary, callbacks, fuzz::kMultipartFuzzLimits);
  if (!parser.ok()) __builtin_trap();
  while (!body.empty()) {
    size_t n = next_size();
    if (n == 0 || n > body.size()) n = body.size();
    out.status = (*parser)->Feed(body.first(n));
    body = body.subspan(n);
    if (!out.status.ok()) return out;
  }
  out.status = (*parser)->Finish();
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const std::string_view boundary = fuzz::kMultipartFuzzBoundaries[data[0] % 3];
  uint32_t state = data[1] * 2654435761u + 1;
  const ByteView body(data + 2, size - 2);

  // The body's start as a Content-Type: a boundary that is accepted is a valid one.
  auto parsed_boundary =
      http::MultipartBoundary(AsStringView(body.first(std::min<size_t>(body.size(), 256))));
  if (parsed_boundary.ok() &&
      http::MultipartParser::New(*parsed_boundary, {}).status().code() != StatusCode::kOk) {
    __builtin_trap();
  }

  const Outcome whole = Parse(boundary, body, [] { return size_t{0}; });
  const Outcome chunked = Parse(boundary, body, [&state] {
    state = state * 1103515245u + 12345u;  // sizes 1..128, mostly small
    const uint32_t r = state >> 16;
    return size_t{1} + (r % 4 == 0 ? r % 128 : r % 8);
  });
  if (!(chunked == whole)) __builtin_trap();
  if (body.size() <= 4096 && !(Parse(boundary, body, [] { return size_t{1}; }) == whole)) {
    __builtin_trap();
  }

  const std::string delimiter = "\r\n--" + std::string(boundary);
  size_t total = 0;
  for (const Outcome::Part& part : whole.parts) {
    if (part.data.find(delimiter) != std::string::npos) __builtin_trap();
    total += part.data.size();
    if (whole.status.ok() && !part.ended) __builtin_trap();
  }
  if (total > body.size()) __builtin_trap();
  if (whole.parts.size() > fuzz::kMultipartFuzzLimits.max_parts) __builtin_trap();
  if (!whole.status.ok() && whole.status.code() != StatusCode::kInvalidArgument) __builtin_trap();
  return 0;
}
