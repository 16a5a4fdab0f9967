#include "http/multipart.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <functional>
#include <random>
#include <string>
#include <vector>

namespace keyfoundry::http {
namespace {

using namespace std::string_literals;

// What a parse delivered: each part's headers and data (the slices joined), and the outcome.
struct Parsed {
  struct Part {
    MultipartPart head;
    std::string data;
    bool ended = false;
  };
  std::vector<Part> parts;
  Status status;  // the first error of Feed, else Finish's status
  size_t data_calls = 0;
  bool order_broken = false;  // data or end outside begin..end

  bool operator==(const Parsed& o) const {
    if (status != o.status || parts.size() != o.parts.size()) return false;
    for (size_t i = 0; i < parts.size(); ++i) {
      const Part& a = parts[i];
      const Part& b = o.parts[i];
      if (a.head.name != b.head.name || a.head.filename != b.head.filename ||
          a.head.content_type != b.head.content_type || a.head.headers != b.head.headers ||
          a.data != b.data || a.ended != b.ended) {
        return false;
      }
    }
    return true;
  }
};

std::ostream& operator<<(std::ostream& os, const Parsed& p) {
  os << p.status << ", " << p.parts.size() << " parts";
  for (const auto& part : p.parts) {
    os << " [" << part.head.name << " " << part.head.filename.value_or("-") << " "
       << part.head.content_type << " " << part.data.size() << " bytes"
       << (part.ended ? "" : " open") << "]";
  }
  return os;
}

MultipartCallbacks Recorder(Parsed* out) {
  MultipartCallbacks callbacks;
  callbacks.on_part_begin = [out](const MultipartPart& part) {
    if (!out->parts.empty() && !out->parts.back().ended) out->order_broken = true;
    out->parts.push_back({part, "", false});
    return OkStatus();
  };
  callbacks.on_part_data = [out](ByteView data) {
    if (out->parts.empty() || out->parts.back().ended || data.empty()) out->order_broken = true;
    if (!out->parts.empty()) out->parts.back().data.append(AsStringView(data));
    ++out->data_calls;
    return OkStatus();
  };
  callbacks.on_part_end = [out] {
    if (out->parts.empty() || out->parts.back().ended) out->order_broken = true;
    if (!out->parts.empty()) out->parts.back().ended = true;
    return OkStatus();
  };
  return callbacks;
}

// Parses `body` in the chunks `cuts` gives: the sizes of all chunks but the last.
Parsed ParseIn(std::string_view boundary, std::string_view body, const std::vector<size_t>& cuts,
               MultipartLimits limits = {}) {
  Parsed out;
  auto parser = MultipartParser::New(boundary, Recorder(&out), limits);
  EXPECT_TRUE(parser.ok()) << parser.status();
  if (!parser.ok()) return out;
  size_t at = 0;
  for (size_t n : cuts) {
    out.status = (*parser)->Feed(AsBytes(body.substr(at, n)));
    at += n;
    if (!out.status.ok()) return out;
  }
  out.status = (*parser)->Feed(AsBytes(body.substr(at)));
  if (out.status.ok()) out.status = (*parser)->Finish();
  EXPECT_FALSE(out.order_broken);
  return out;
}

Parsed Parse(std::string_view boundary, std::string_view body, MultipartLimits limits = {}) {
  return ParseIn(boundary, body, {}, limits);
}

Parsed ParseBytewise(std::string_view boundary, std::string_view body) {
  return ParseIn(boundary, body, std::vector<size_t>(body.empty() ? 0 : body.size() - 1, 1));
}

// Whole, split in two at every position, and a byte at a time: all must agree with the whole.
Parsed ParseEveryWay(std::string_view boundary, std::string_view body) {
  Parsed whole = Parse(boundary, body);
  for (size_t cut = 0; cut <= body.size(); ++cut) {
    EXPECT_EQ(ParseIn(boundary, body, {cut}), whole) << "split at " << cut;
  }
  EXPECT_EQ(ParseBytewise(boundary, body), whole);
  return whole;
}

// As curl 7.88 sends `curl -F purpose=fine-tune -F file=@train.jsonl`.
constexpr std::string_view kCurlBoundary = "------------------------d74496d66958873e";
const std::string kCurlBody =
    "--------------------------d74496d66958873e\r\n"
    "Content-Disposition: form-data; name=\"purpose\"\r\n"
    "\r\n"
    "fine-tune\r\n"
    "--------------------------d74496d66958873e\r\n"
    "Content-Disposition: form-data; name=\"file\"; filename=\"train.jsonl\"\r\n"
    "Content-Type: application/octet-stream\r\n"
    "\r\n"
    "{\"prompt\":\"a\",\"completion\":\"b\"}\n{\"prompt\":\"c\",\"completion\":\"d\"}\n\r\n"
    "--------------------------d74496d66958873e--\r\n";

// The body with `from` replaced by `to` (once; it must be there).
std::string Changed(std::string body, std::string_view from, std::string_view to) {
  const size_t at = body.find(from);
  EXPECT_NE(at, std::string::npos) << from;
  if (at != std::string::npos) body.replace(at, from.size(), to);
  return body;
}

TEST(MultipartBoundaryTest, ReadsTokenAndQuotedBoundaries) {
  EXPECT_EQ(*MultipartBoundary("multipart/form-data; boundary=abc"), "abc");
  EXPECT_EQ(*MultipartBoundary("Multipart/Form-Data;BOUNDARY=abc"), "abc");
  EXPECT_EQ(*MultipartBoundary("multipart/form-data ; charset=utf-8; boundary=\"a b:c?\" "),
            "a b:c?");
  EXPECT_EQ(*MultipartBoundary("multipart/form-data; boundary=" + std::string(kCurlBoundary)),
            kCurlBoundary);
  EXPECT_EQ(*MultipartBoundary("multipart/form-data; boundary=" + std::string(70, 'x')),
            std::string(70, 'x'));
}

TEST(MultipartBoundaryTest, RefusesOtherTypesAndBadBoundaries) {
  for (const std::string& content_type : std::vector<std::string>{
           "", "application/json", "multipart/mixed; boundary=abc", "multipart/form-data",
           "multipart/form-data; charset=utf-8", "multipart/form-data; boundary=",
           "multipart/form-data; boundary=\"\"", "multipart/form-data; boundary=\"abc",
           "multipart/form-data; boundary=abc; boundary=abd", "multipart/form-data; boundary=a*b",
           "multipart/form-data; boundary=\"abc \"", "multipart/form-data; boundary=\"a\tb\"",
           "multipart/form-data; boundary=abc x", "multipart/form-data; boundary =abc",
           "multipart/form-data; boundary=" + std::string(71, 'x')}) {
    auto boundary = MultipartBoundary(content_type);
    EXPECT_EQ(boundary.status().code(), StatusCode::kInvalidArgument) << content_type;
  }
  EXPECT_EQ(MultipartBoundary("multipart/form-data").status().message(),
            "the multipart/form-data Content-Type has no boundary parameter");
}

TEST(MultipartParserTest, NewRefusesBadBoundariesAndLimits) {
  for (const std::string& boundary : {std::string(), std::string(71, 'a'), std::string("a\r\n"),
                                      std::string("ab "), std::string("a\"b")}) {
    EXPECT_EQ(MultipartParser::New(boundary, {}).status().code(), StatusCode::kInvalidArgument)
        << boundary;
  }
  EXPECT_FALSE(MultipartParser::New("b", {}, {.max_header_bytes = 0}).ok());
  EXPECT_FALSE(MultipartParser::New("b", {}, {.max_parts = 0}).ok());
}

TEST(MultipartParserTest, ParsesCurlBodyChunkedAnyWay) {
  const Parsed parsed = ParseEveryWay(kCurlBoundary, kCurlBody);
  ASSERT_TRUE(parsed.status.ok()) << parsed.status;
  ASSERT_EQ(parsed.parts.size(), 2u);
  EXPECT_EQ(parsed.parts[0].head.name, "purpose");
  EXPECT_EQ(parsed.parts[0].head.filename, std::nullopt);
  EXPECT_EQ(parsed.parts[0].head.content_type, "text/plain");
  EXPECT_EQ(parsed.parts[0].data, "fine-tune");
  EXPECT_EQ(parsed.parts[1].head.name, "file");
  EXPECT_EQ(parsed.parts[1].head.filename, "train.jsonl");
  EXPECT_EQ(parsed.parts[1].head.content_type, "application/octet-stream");
  EXPECT_EQ(parsed.parts[1].data,
            "{\"prompt\":\"a\",\"completion\":\"b\"}\n{\"prompt\":\"c\",\"completion\":\"d\"}\n");
  EXPECT_TRUE(parsed.parts[1].ended);
  const std::vector<std::pair<std::string, std::string>> headers = {
      {"Content-Disposition", "form-data; name=\"file\"; filename=\"train.jsonl\""},
      {"Content-Type", "application/octet-stream"}};
  EXPECT_EQ(parsed.parts[1].head.headers, headers);
}

TEST(MultipartParserTest, ParsesEveryThreeChunkSplit) {
  const Parsed whole = Parse(kCurlBoundary, kCurlBody);
  ASSERT_TRUE(whole.status.ok());
  for (size_t a = 0; a <= kCurlBody.size(); a += 3) {
    for (size_t b = 0; a + b <= kCurlBody.size(); b += 2) {
      ASSERT_EQ(ParseIn(kCurlBoundary, kCurlBody, {a, b}), whole) << a << " " << b;
    }
  }
}

TEST(MultipartParserTest, ParsesPythonStyleBodyWithoutFileContentType) {
  // As Python requests (urllib3) sends files={"file": ("train.jsonl", data)}: a 32-hex
  // boundary, no Content-Type on the file part, binary data.
  const std::string boundary = "9b4bbd7d0f3346be8d2c0e6be1ac4f8e";
  const std::string data("\x00\x01\r\n\xff\r\r\n-", 9);
  const std::string body = "--" + boundary +
                           "\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\n"
                           "assistants\r\n--" +
                           boundary +
                           "\r\nContent-Disposition: form-data; name=\"file\"; "
                           "filename=\"train.jsonl\"\r\n\r\n" +
                           data + "\r\n--" + boundary + "--\r\n";
  const Parsed parsed = ParseEveryWay(boundary, body);
  ASSERT_TRUE(parsed.status.ok()) << parsed.status;
  ASSERT_EQ(parsed.parts.size(), 2u);
  EXPECT_EQ(parsed.parts[0].data, "assistants");
  EXPECT_EQ(parsed.parts[1].head.content_type, "text/plain");
  EXPECT_EQ(parsed.parts[1].data, data);
}

TEST(MultipartParserTest, IgnoresPreambleEpilogueAndTransportPadding) {
  const std::string body =
      "This is the preamble; -- b is not here, nor\r\n-- b.\r\n--b \t\r\n"
      "content-disposition: FORM-DATA ; NAME=x ;filename=\"a.txt\"\r\n"
      "content-type: text/csv\r\n\r\n"
      "1,2\r\n--b--  \r\nThe epilogue, even --b\r\n--b\r\nwith a boundary.";
  const Parsed parsed = ParseEveryWay("b", body);
  ASSERT_TRUE(parsed.status.ok()) << parsed.status;
  ASSERT_EQ(parsed.parts.size(), 1u);
  EXPECT_EQ(parsed.parts[0].head.name, "x");
  EXPECT_EQ(parsed.parts[0].head.filename, "a.txt");
  EXPECT_EQ(parsed.parts[0].head.content_type, "text/csv");
  EXPECT_EQ(parsed.parts[0].data, "1,2");
}

TEST(MultipartParserTest, BodyMayStartWithCrlfAndHaveNoParts) {
  const Parsed crlf_first =
      ParseEveryWay("b", "\r\n--b\r\nContent-Disposition: form-data; name=a\r\n\r\nv\r\n--b--");
  ASSERT_TRUE(crlf_first.status.ok()) << crlf_first.status;
  ASSERT_EQ(crlf_first.parts.size(), 1u);
  EXPECT_EQ(crlf_first.parts[0].data, "v");

  const Parsed empty_form = ParseEveryWay("b", "--b--\r\n");
  EXPECT_TRUE(empty_form.status.ok()) << empty_form.status;
  EXPECT_TRUE(empty_form.parts.empty());
}

TEST(MultipartParserTest, DelimiterLikeBytesInDataAreData) {
  const std::string boundary = "boundary";
  const std::string data =
      "\r\n--boundar\r\n--boundarX\r\r\n--bound\n--boundary--boundary\r\n-\r\n--\r\n--b\r";
  const std::string body = "--boundary\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\n" +
                           data + "\r\n--boundary--";
  const Parsed parsed = ParseEveryWay(boundary, body);
  ASSERT_TRUE(parsed.status.ok()) << parsed.status;
  ASSERT_EQ(parsed.parts.size(), 1u);
  EXPECT_EQ(parsed.parts[0].data, data);
}

TEST(MultipartParserTest, EmptyPartsAndEmptyValues) {
  const std::string body =
      "--b\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n\r\n"
      "--b\r\nContent-Disposition: form-data; name=\"f\"; filename=\"\"\r\n\r\n\r\n--b--\r\n";
  const Parsed parsed = ParseEveryWay("b", body);
  ASSERT_TRUE(parsed.status.ok()) << parsed.status;
  ASSERT_EQ(parsed.parts.size(), 2u);
  EXPECT_EQ(parsed.parts[0].data, "");
  EXPECT_EQ(parsed.parts[1].head.filename, "");
  EXPECT_EQ(parsed.data_calls, 0u);
}

TEST(MultipartParserTest, ReadsQuotedStringsAndFoldedHeaders) {
  const std::string body =
      "--b\r\nContent-Disposition: form-data; name=\"a \\\"q\\\" \\\\ ;=\";\r\n"
      " filename=\"C:\\dir\\x.txt\"\r\nX-Other: 1\r\n\r\nv\r\n--b--";
  const Parsed parsed = ParseEveryWay("b", body);
  ASSERT_TRUE(parsed.status.ok()) << parsed.status;
  ASSERT_EQ(parsed.parts.size(), 1u);
  EXPECT_EQ(parsed.parts[0].head.name, "a \"q\" \\ ;=");
  EXPECT_EQ(parsed.parts[0].head.filename, "C:\\dir\\x.txt");
  EXPECT_EQ(parsed.parts[0].head.headers.size(), 2u);
}

TEST(MultipartParserTest, HeaderLimitCountsEveryByteOfThePartsHeaders) {
  const std::string head = "Content-Disposition: form-data; name=a\r\n\r\n";  // 42 bytes
  const std::string body = "--b\r\n" + head + "v\r\n--b--";
  EXPECT_TRUE(Parse("b", body, {.max_header_bytes = head.size()}).status.ok());
  const Parsed over = Parse("b", body, {.max_header_bytes = head.size() - 1});
  EXPECT_EQ(over.status, InvalidArgumentError("part 1's headers exceed " +
                                              std::to_string(head.size() - 1) + " bytes"));
  // Endless header bytes stop at the limit, without waiting for the end of the line.
  auto parser = MultipartParser::New("b", {}, {.max_header_bytes = 100});
  ASSERT_TRUE(parser.ok());
  ASSERT_TRUE((*parser)->Feed(AsBytes("--b\r\n")).ok());
  EXPECT_FALSE((*parser)->Feed(AsBytes(std::string(101, 'x'))).ok());
}

TEST(MultipartParserTest, PartLimit) {
  std::string body;
  for (int i = 0; i < 3; ++i) body += "--b\r\nContent-Disposition: form-data; name=a\r\n\r\nv\r\n";
  body += "--b--";
  EXPECT_EQ(Parse("b", body, {.max_parts = 3}).parts.size(), 3u);
  EXPECT_TRUE(Parse("b", body, {.max_parts = 3}).status.ok());
  const Parsed over = Parse("b", body, {.max_parts = 2});
  EXPECT_EQ(over.status, InvalidArgumentError("the multipart body has more than 2 parts"));
  EXPECT_EQ(over.parts.size(), 2u);
}

TEST(MultipartParserTest, MalformedBodiesAreInvalidArgumentSayingWhy) {
  const std::string good = kCurlBody;
  const std::string b = "--------------------------d74496d66958873e";
  struct Case {
    std::string body;
    std::string message;  // a part of the expected message
  };
  const std::vector<Case> cases = {
      {"", "the multipart body ended before its closing boundary"},
      {"no boundary at all\r\n", "ended before its closing boundary"},
      {good.substr(0, good.size() - 4), "ended before its closing boundary"},
      {good.substr(0, good.find("{\"prompt\"")), "ended before its closing boundary"},
      {good.substr(0, good.find("fine-tune") - 2), "ended before its closing boundary"},
      {Changed(good, "name=\"file\"; ", ""), "part 2 has no Content-Disposition name"},
      {Changed(good, "name=\"file\"", "name=\"\""), "part 2 has no Content-Disposition name"},
      {Changed(good, "form-data; name=\"purpose\"", "form-data; name=a; name=b"),
       "part 1's Content-Disposition has two name parameters"},
      {Changed(good, "Content-Disposition: form-data; name=\"purpose\"", "X: y"),
       "part 1 has no Content-Disposition header"},
      {Changed(good, "Content-Type: application/octet-stream\r\n",
               "Content-Disposition: form-data; name=x\r\n"),
       "part 2 has two Content-Disposition headers"},
      {Changed(good, "Content-Type: application/octet-stream\r\n",
               "Content-Type: a/b\r\nContent-type: c/d\r\n"),
       "part 2 has two Content-Type headers"},
      {Changed(good, "Content-Type: application/octet-stream", "Content-Type:"),
       "part 2 has an empty Content-Type"},
      {Changed(good, "form-data; name=\"purpose\"", "attachment; name=\"purpose\""),
       "part 1's Content-Disposition is not form-data"},
      {Changed(good, "name=\"purpose\"", "name=\"purpose"),
       "part 1's Content-Disposition has malformed parameters"},
      {Changed(good, "name=\"purpose\"", "name=\"purpose\" x"),
       "part 1's Content-Disposition has malformed parameters"},
      {Changed(good, "Content-Type: application/octet-stream", "Content-Type application/json"),
       "part 2 has a header line that is not \"Name: value\""},
      {Changed(good, "Content-Type: application/octet-stream", " folded"),
       "part 2's Content-Disposition has malformed parameters"},  // folded into it
      {Changed(good, "Content-Disposition: form-data; name=\"purpose\"", " x: y"),
       "part 1's headers begin with a continuation line"},
      {Changed(good, "Content-Type: application/octet-stream", "Content-Type: a\x01"),
       "part 2 has a control character in its headers"},
      {Changed(good, "name=\"purpose\"\r\n", "name=\"purpose\"\n"),
       "part 1's header lines must end with CRLF (a bare CR or LF was found)"},
      {Changed(good, "name=\"purpose\"\r\n", "name=\"purpose\"\r"),
       "part 1's header lines must end with CRLF"},
      {Changed(good, b + "\r\n", b + "\n"), "the first boundary line has more than the boundary"},
      {Changed(good, b + "\r\n", b + "x\r\n"), "the first boundary line has more than"},
      {Changed(good, "fine-tune\r\n" + b + "\r\n", "fine-tune\r\n" + b + "X\r\n"),
       "the boundary line after part 1 has more than the boundary"},
      {Changed(good, "fine-tune\r\n" + b + "\r\n", "fine-tune\r\n" + b + " x\r\n"),
       "the boundary line after part 1 has more than the boundary"},
      {Changed(good, b + "--", b + "-x"), "the boundary line after part 2 has more than"},
  };
  for (const Case& c : cases) {
    const Parsed parsed = ParseEveryWay(kCurlBoundary, c.body);
    EXPECT_EQ(parsed.status.code(), StatusCode::kInvalidArgument) << c.body;
    EXPECT_NE(parsed.status.message().find(c.message), std::string::npos)
        << parsed.status << "\nwanted: " << c.message;
  }
}

TEST(MultipartParserTest, ErrorsAreStickyAndFeedAfterTheCloseIsIgnored) {
  auto parser = MultipartParser::New("b", {});
  ASSERT_TRUE(parser.ok());
  const Status error = (*parser)->Feed(AsBytes("--bX"));
  EXPECT_EQ(error.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ((*parser)->Feed(AsBytes("\r\n")), error);
  EXPECT_EQ((*parser)->Feed({}), error);
  EXPECT_EQ((*parser)->Finish(), error);

  auto closed = MultipartParser::New("b", {});
  ASSERT_TRUE(closed.ok());
  EXPECT_TRUE((*closed)->Feed(AsBytes("--b--")).ok());
  EXPECT_TRUE((*closed)->Feed(AsBytes("anything\r\n--b\r\nX")).ok());
  EXPECT_TRUE((*closed)->Finish().ok());
}

TEST(MultipartParserTest, CallbackErrorsStopTheParser) {
  for (int failing = 0; failing < 3; ++failing) {
    int calls = 0;
    MultipartCallbacks callbacks;
    const Status refusal = PermissionDeniedError("refused by callback " + std::to_string(failing));
    auto fail_if = [&](int which) {
      ++calls;
      return which == failing ? refusal : OkStatus();
    };
    callbacks.on_part_begin = [&](const MultipartPart&) { return fail_if(0); };
    callbacks.on_part_data = [&](ByteView) { return fail_if(1); };
    callbacks.on_part_end = [&] { return fail_if(2); };
    auto parser = MultipartParser::New(kCurlBoundary, callbacks);
    ASSERT_TRUE(parser.ok());
    EXPECT_EQ((*parser)->Feed(AsBytes(kCurlBody)), refusal);
    const int calls_at_error = calls;
    EXPECT_EQ((*parser)->Feed(AsBytes(kCurlBody)), refusal);
    EXPECT_EQ((*parser)->Finish(), refusal);
    EXPECT_EQ(calls, calls_at_error);  // no callback after the error
    EXPECT_EQ(calls, failing + 1);
  }
}

TEST(MultipartClientTest, NewBoundaryIsRandomAndValid) {
  auto a = NewMultipartBoundary();
  auto b = NewMultipartBoundary();
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->size(), 32u);
  EXPECT_NE(*a, *b);
  EXPECT_EQ(*MultipartBoundary("multipart/form-data; boundary=" + *a), *a);
}

TEST(MultipartClientTest, HelpersHaveTheDocumentedLayout) {
  EXPECT_EQ(MultipartField("b", "purpose", "fine-tune"),
            "--b\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nfine-tune\r\n");
  EXPECT_EQ(MultipartFileHeader("b", "file", "x.jsonl", "application/jsonl"),
            "--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x.jsonl\"\r\n"
            "Content-Type: application/jsonl\r\n\r\n");
  EXPECT_EQ(MultipartClose("b"), "\r\n--b--\r\n");
  EXPECT_EQ(MultipartFileHeader("b", "n\"\\", "a\r\nb\0c"s, "t\r\nX: y"),
            "--b\r\nContent-Disposition: form-data; name=\"n\\\"\\\\\"; "
            "filename=\"a%0D%0Ab%00c\"\r\nContent-Type: t%0D%0AX: y\r\n\r\n");
}

TEST(MultipartClientTest, RoundTripThroughTheParser) {
  auto boundary = NewMultipartBoundary();
  ASSERT_TRUE(boundary.ok());
  std::mt19937 rng(7);
  std::string file(300000, '\0');
  for (char& c : file) c = static_cast<char>(rng() % 4 == 0 ? '\r' : rng() % 3 == 0 ? '\n' : rng());
  file += "\r\n--" + boundary->substr(0, 31);  // all but the last character of the delimiter

  const std::string head =
      MultipartField(*boundary, "purpose", "fine-tune") +
      MultipartField(*boundary, "note", "a \"quoted\" name") +
      MultipartFileHeader(*boundary, "file", "my \"train\".jsonl", "application/octet-stream");
  const std::string tail = MultipartClose(*boundary);
  const std::string body = head + file + tail;
  const size_t content_length = head.size() + file.size() + tail.size();
  EXPECT_EQ(body.size(), content_length);

  for (size_t chunk : {size_t{1} << 20, size_t{4096}, size_t{7}}) {
    std::vector<size_t> cuts(body.size() / chunk, chunk);
    const Parsed parsed = ParseIn(*boundary, body, cuts);
    ASSERT_TRUE(parsed.status.ok()) << parsed.status;
    ASSERT_EQ(parsed.parts.size(), 3u);
    EXPECT_EQ(parsed.parts[0].data, "fine-tune");
    EXPECT_EQ(parsed.parts[1].head.name, "note");
    EXPECT_EQ(parsed.parts[1].data, "a \"quoted\" name");
    EXPECT_EQ(parsed.parts[2].head.filename, "my \"train\".jsonl");
    EXPECT_EQ(parsed.parts[2].head.content_type, "application/octet-stream");
    EXPECT_TRUE(parsed.parts[2].data == file);
  }
}

// Not a benchmark (those live in bench/), a check that file data goes through in large slices
// at a rate of the order of memory bandwidth; the rate is printed.
TEST(MultipartParserTest, FileDataGoesThroughFastInLargeSlices) {
  const std::string boundary = "9b4bbd7d0f3346be8d2c0e6be1ac4f8e";
  std::string chunk(size_t{1} << 20, '\0');
  std::mt19937_64 rng(1);
  for (char& c : chunk) c = static_cast<char>(rng());
  // Text-like data too: JSONL with CRLF line ends, a CR every 64 bytes.
  std::string text;
  while (text.size() < chunk.size())
    text += "{\"prompt\":\"hello there\",\"completion\":\"hi!!\"}\r\n";
  text.resize(chunk.size());

  for (const std::string* data : {&chunk, &text}) {
    size_t delivered = 0;
    size_t calls = 0;
    MultipartCallbacks callbacks;
    callbacks.on_part_data = [&](ByteView piece) {
      delivered += piece.size();
      ++calls;
      return OkStatus();
    };
    auto parser = MultipartParser::New(boundary, callbacks);
    ASSERT_TRUE(parser.ok());
    ASSERT_TRUE(
        (*parser)->Feed(AsBytes(MultipartFileHeader(boundary, "file", "f", "text/plain"))).ok());
    constexpr int kChunks = 512;  // 512 MiB
    const auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < kChunks; ++i) ASSERT_TRUE((*parser)->Feed(AsBytes(*data)).ok());
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    ASSERT_TRUE((*parser)->Feed(AsBytes(MultipartClose(boundary))).ok());
    ASSERT_TRUE((*parser)->Finish().ok());
    EXPECT_EQ(delivered, kChunks * data->size());
    EXPECT_LE(calls, 2u * kChunks);
    std::printf("multipart parse, %s data: %.2f GB/s\n", data == &chunk ? "random" : "CRLF text",
                static_cast<double>(kChunks * data->size()) / seconds / 1e9);
  }
}

}  // namespace
}  // namespace keyfoundry::http
