// Writes multipart fuzzer inputs (layout: multipart_fuzz_common.h) into the directory given:
// bodies as curl, Python and the client helpers send them, with preamble, epilogue, padding and
// delimiter-like data, at the limits, and malformed ones, for each boundary.
#include <fstream>
#include <string>
#include <vector>

#include "multipart_fuzz_common.h"

using namespace keyfoundry;

namespace {

bool Write(const std::string& dir, int n, char selector, std::string_view body) {
  std::ofstream out(dir + "/seed-" + std::to_string(n), std::ios::binary);
  out.put(selector);
  out.put(static_cast<char>(n * 37));
  out.write(body.data(), static_cast<std::streamsize>(body.size()));
  return static_cast<bool>(out);
}

std::vector<std::string> Bodies(const std::string& b) {
  const std::string d = "--" + b;
  const std::string purpose = http::MultipartField(b, "purpose", "fine-tune");
  const std::string file_head =
      http::MultipartFileHeader(b, "file", "train.jsonl", "application/octet-stream");
  const std::string close = http::MultipartClose(b);
  const std::string jsonl = "{\"prompt\":\"a\",\"completion\":\"b\"}\n";
  return {
      purpose + file_head + jsonl + close,
      // Python requests: no Content-Type on the file, binary data with CR and LF.
      d + "\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x.bin\"\r\n\r\n" +
          std::string("\x00\r\n\xff\r\r\n-", 8) + "\r\n" + d + "--\r\n",
      // Preamble, padding, folded and lower-case headers, epilogue.
      "preamble\r\n" + d + " \t\r\ncontent-disposition: form-data;\r\n name=x\r\n\r\nv\r\n" + d +
          "--\r\nepilogue " + d + "\r\n",
      // Data that nearly holds the delimiter.
      file_head + "\r\n" + d.substr(0, d.size() - 1) + "\r\r\n-" + d + "x" + close,
      d + "--\r\n",
      "\r\n" + d + "\r\nContent-Disposition: form-data; name=\"a \\\"q\\\"\"\r\n\r\n\r\n" + d +
          "--",
      // At the part limit, and over it.
      purpose + purpose + purpose + file_head + close,
      purpose + purpose + purpose + purpose + file_head + close,
      // Malformed.
      purpose + file_head + jsonl,
      d + "\r\nContent-Disposition: form-data\r\n\r\nv" + close,
      d + "\r\nContent-Disposition: attachment; name=a\r\n\r\nv" + close,
      d + "\r\nContent-Disposition: form-data; name=a\nX: y\r\n\r\nv" + close,
      d + "\r\nContent-Disposition: form-data; name=a; name=b\r\n\r\nv" + close,
      d + "x\r\n" + purpose.substr(d.size() + 2) + close,
      d + "\r\n" + std::string(300, 'h') + "\r\n\r\n" + close,
  };
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  int n = 0;
  for (char selector = 0; selector < 3; ++selector) {
    const std::string boundary(fuzz::kMultipartFuzzBoundaries[static_cast<size_t>(selector)]);
    for (const std::string& body : Bodies(boundary)) {
      if (!Write(argv[1], n++, selector, body)) return 1;
    }
  }
  // Content-Types for MultipartBoundary, which reads the body's start.
  for (const char* content_type :
       {"multipart/form-data; boundary=abc", "Multipart/Form-Data; charset=utf-8; boundary=\"a b\"",
        "multipart/form-data; boundary=\"a\\\"b\""}) {
    if (!Write(argv[1], n++, 0, content_type)) return 1;
  }
  return 0;
}
