// multipart/form-data (RFC 7578 on RFC 2046 §5.1): a streaming parser for request bodies of any
// size (OpenAI's file upload, POST /openai/files, sends the fields `purpose` and `file` this way),
// and the pieces a client puts together to send one.
//
// The body, as the parser reads it (CRLF is "\r\n"; B is the boundary):
//
//   [preamble CRLF] "--" B *(SP / HTAB) CRLF          the first boundary line
//   part-headers CRLF part-data                        a part
//   CRLF "--" B *(SP / HTAB) CRLF                      between parts: the delimiter
//   part-headers CRLF part-data                        ...
//   CRLF "--" B "--" [anything: the epilogue]          the close delimiter
//
// - part-headers: header lines, each ending in CRLF (a bare CR or LF is refused), then an empty
//   line; "Name: value", names compared case-insensitively, a line starting with SP or HTAB
//   continues the previous value. Each part needs "Content-Disposition: form-data; name=..."
//   (filename=... optional); Content-Type defaults to "text/plain". Other headers are kept in
//   MultipartPart::headers and otherwise ignored (Content-Transfer-Encoding is not applied, as
//   RFC 7578 §4.7 says). Parameter values are tokens or quoted strings; in a quoted string
//   `\"` and `\\` stand for `"` and `\`; names and filenames are not percent-decoded.
// - part-data: any bytes. Wherever CRLF "--" B occurs it ends the part (RFC 2046: "it is
//   sufficient that the boundary appear in its entirety following the CRLF"): what follows it
//   must then be padding and CRLF, or "--"; anything else is an error. A sender picks a boundary
//   that its data does not contain (NewMultipartBoundary: 128 random bits).
// - The preamble and the epilogue are ignored, whatever their size (they cost time, not memory).
// - Part data has no size limit here: a caller that keeps a field in memory bounds it itself.
//
// Streaming: Feed takes the body in chunks of any size (one byte at a time works) and hands out
// part data as slices of the chunk it was given (zero-copy, as large as the chunk allows). Only
// what may be the start of a delimiter at the end of a chunk is held back (at most 73 bytes),
// plus the headers of the current part (at most max_header_bytes): memory does not depend on the
// body's size. The delimiter is found with memchr for its CR and a compare, several GB/s on file
// data. The results (callbacks and status) do not depend on how the body is split into chunks.
//
// Errors: InvalidArgument for a malformed body, with a message a client can act on (it names
// the part, counted from 1, and never echoes body bytes beyond the part's name); a callback's
// error is returned as it is. Either error is sticky: every later Feed and Finish returns it.
//
// Thread safety: a MultipartParser is used by one thread at a time; the free functions are
// thread-safe.
#ifndef KEYFOUNDRY_HTTP_MULTIPART_H_
#define KEYFOUNDRY_HTTP_MULTIPART_H_

#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/bytes.h"
#include "common/status.h"

namespace keyfoundry::http {

// The longest boundary RFC 2046 allows.
inline constexpr size_t kMaxMultipartBoundary = 70;

// The boundary of a "multipart/form-data; boundary=..." Content-Type: type and parameter names
// case-insensitive, the value a token or a quoted string, 1 to 70 characters from RFC 2046's set
// (letters, digits, '()+_,-./:=? and space, not ending in a space). InvalidArgument, saying
// what is wrong, for another type, a missing, repeated or malformed boundary.
StatusOr<std::string> MultipartBoundary(std::string_view content_type);

// The headers of one part, as on_part_begin sees them.
struct MultipartPart {
  std::string name;                     // Content-Disposition's name: never empty
  std::optional<std::string> filename;  // its filename, when given (may be empty)
  std::string content_type = "text/plain";
  // Every header line of the part, names as sent, values with surrounding spaces trimmed.
  std::vector<std::pair<std::string, std::string>> headers;
};

struct MultipartCallbacks {
  // Called in this order for each part: on_part_begin, on_part_data any number of times (each
  // with a non-empty slice, valid only during the call), on_part_end. A callback that is not
  // set does nothing. A non-OK status stops the parser: Feed returns it, and keeps returning it.
  std::function<Status(const MultipartPart& part)> on_part_begin;
  std::function<Status(ByteView data)> on_part_data;
  std::function<Status()> on_part_end;
};

struct MultipartLimits {
  size_t max_header_bytes = size_t{8} * 1024;  // of one part's header lines, the empty one included
  size_t max_parts = 16;
};

// A push parser of one multipart/form-data body. See the file comment for the format.
class MultipartParser {
 public:
  // `boundary` as MultipartBoundary returns it. InvalidArgument for a boundary RFC 2046 does not
  // allow, or a limit of 0.
  static StatusOr<std::unique_ptr<MultipartParser>> New(std::string_view boundary,
                                                        MultipartCallbacks callbacks,
                                                        MultipartLimits limits = {});

  MultipartParser(const MultipartParser&) = delete;
  MultipartParser& operator=(const MultipartParser&) = delete;

  // Parses the next chunk of the body (any size, empty included), calling the callbacks for what
  // it completes. Bytes after the close delimiter are ignored.
  [[nodiscard]] Status Feed(ByteView chunk);

  // The body has ended: OK when the close delimiter was seen (and no error happened), else
  // InvalidArgument ("the multipart body ended before its closing boundary").
  [[nodiscard]] Status Finish();

  // How many parts have started so far (their boundary line read), the current one included.
  size_t parts() const { return parts_; }

 private:
  enum class State {
    kPreamble = 1,   // looking for the first boundary line; bytes are dropped
    kAfterBoundary,  // just after "--" B: "--", padding or CRLF must follow
    kCloseDash,      // after "--" B "-": the second '-' must follow
    kPadding,        // after "--" B and some SP / HTAB
    kBoundaryCr,     // after "--" B [padding] CR: LF must follow
    kHeaders,        // reading a part's header lines
    kData,           // in a part's data, looking for the delimiter
    kEpilogue,       // after the close delimiter; bytes are dropped
    kFailed,         // error_ holds the reason
  };

  MultipartParser(std::string delimiter, MultipartCallbacks callbacks, MultipartLimits limits);

  // Each consumes a prefix of `in` (at least one byte when `in` is not empty, unless it fails)
  // and returns how many bytes.
  StatusOr<size_t> ScanForDelimiter(ByteView in);
  StatusOr<size_t> ReadBoundaryLine(ByteView in);
  StatusOr<size_t> ReadHeaders(ByteView in);

  // In kData: the part's data; in kPreamble: dropped.
  Status Emit(ByteView data);
  // The delimiter was found: ends the part (kData) and moves on to kAfterBoundary.
  Status AtDelimiter();
  // Enters kFailed with `status`, which it returns.
  Status Fail(Status status);

  const std::string delimiter_;  // CRLF "--" boundary
  const MultipartCallbacks callbacks_;
  const MultipartLimits limits_;
  State state_ = State::kPreamble;
  Status error_;
  size_t parts_ = 0;
  // kPreamble, kData: the end of the previous chunk that may begin a delimiter: a proper prefix
  // of delimiter_ (it starts as CRLF, so that a body may begin with "--" B).
  std::string held_;
  // kHeaders: the part's header bytes so far (at most limits_.max_header_bytes).
  std::string headers_;
};

// The client side: the pieces of a multipart/form-data body with fields and one file, in the
// layout curl sends:
//
//   MultipartField(b, "purpose", "fine-tune")      "--b\r\nContent-Disposition: form-data;
//                                                   name=\"purpose\"\r\n\r\nfine-tune\r\n"
//   MultipartFileHeader(b, "file", "x.jsonl", ct)  "--b\r\nContent-Disposition: form-data;
//                                                   name=\"file\"; filename=\"x.jsonl\"\r\n
//                                                   Content-Type: ct\r\n\r\n"
//   <the file's bytes, as they are>
//   MultipartClose(b)                              "\r\n--b--\r\n"
//
// (shown wrapped; each piece is one string). The body is any number of fields, then the file
// header, the file and the close, in that order, so its Content-Length is the sum of the
// pieces' sizes plus the file's size. Send it with the Content-Type
// "multipart/form-data; boundary=" + b. In names, filenames and content types `"` and `\` are
// sent as `\"` and `\\` (inside the quotes), and CR, LF and NUL as %0D, %0A and %00, so no value
// can break the framing. `boundary` must be valid (NewMultipartBoundary's are).

// A fresh boundary: 32 random lower-case hex digits (128 bits from the CSPRNG), so no file
// holds it but by chance. Fails only when the CSPRNG does (crypto/random.h).
StatusOr<std::string> NewMultipartBoundary();

std::string MultipartField(std::string_view boundary, std::string_view name,
                           std::string_view value);
std::string MultipartFileHeader(std::string_view boundary, std::string_view name,
                                std::string_view filename, std::string_view content_type);
std::string MultipartClose(std::string_view boundary);

}  // namespace keyfoundry::http

#endif  // KEYFOUNDRY_HTTP_MULTIPART_H_
