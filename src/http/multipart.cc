// The design is in multipart.h. The parser is a state machine over the bytes of the body; in the
// two states where bytes are many (the preamble and part data) it searches for the delimiter
// CRLF "--" boundary with memchr for its CR and a compare, and keeps back across chunks only a
// suffix of the chunk that is a proper prefix of the delimiter (held_). Everything else (the
// boundary line's tail, header lines) goes byte by byte, within small limits. Errors are found
// in byte order, so where the chunks split the body does not change the outcome.
#include "http/multipart.h"

#include <algorithm>
#include <array>
#include <cstring>

#include "common/encoding.h"
#include "common/strings.h"
#include "crypto/random.h"

namespace keyfoundry::http {
namespace {

constexpr size_t kMaxDelimiter = 4 + kMaxMultipartBoundary;  // CRLF "--" boundary

bool IsBoundaryChar(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
         std::string_view("'()+_,-./:=? ").find(c) != std::string_view::npos;
}

Status ValidateBoundary(std::string_view boundary) {
  if (boundary.empty() || boundary.size() > kMaxMultipartBoundary || boundary.back() == ' ' ||
      !std::all_of(boundary.begin(), boundary.end(), IsBoundaryChar)) {
    return InvalidArgumentError(
        "the multipart boundary must be 1 to 70 characters (letters, digits, '()+_,-./:=? and "
        "space), not ending in a space");
  }
  return OkStatus();
}

bool IsTokenChar(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
         std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

bool IsSpace(char c) { return c == ' ' || c == '\t'; }

std::string_view Trim(std::string_view s) {
  while (!s.empty() && IsSpace(s.front())) s.remove_prefix(1);
  while (!s.empty() && IsSpace(s.back())) s.remove_suffix(1);
  return s;
}

// A byte that may not appear in a header line: controls other than HTAB, and DEL.
bool IsForbiddenInHeader(char c) {
  const auto u = static_cast<unsigned char>(c);
  return (u < 0x20 && c != '\t') || u == 0x7f;
}

struct Parameter {
  std::string name;  // lower case
  std::string value;
};

// The parameters after a media type or disposition type: *( OWS ";" OWS [ token "=" ( token /
// quoted-string ) ] ) (RFC 9110 §5.6.6; empty ones are skipped). In a quoted string `\"` and
// `\\` are unescaped, other backslashes kept (browsers send Windows paths unescaped).
// nullopt when malformed.
std::optional<std::vector<Parameter>> ParseParameters(std::string_view in) {
  std::vector<Parameter> out;
  for (;;) {
    in = Trim(in);
    if (in.empty()) return out;
    if (in.front() != ';') return std::nullopt;
    in = Trim(in.substr(1));
    if (in.empty() || in.front() == ';') continue;
    size_t n = 0;
    while (n < in.size() && IsTokenChar(in[n])) ++n;
    if (n == 0 || n == in.size() || in[n] != '=') return std::nullopt;
    Parameter parameter{ToLowerAscii(in.substr(0, n)), {}};
    in.remove_prefix(n + 1);
    if (!in.empty() && in.front() == '"') {
      size_t i = 1;
      for (; i < in.size() && in[i] != '"'; ++i) {
        if (in[i] == '\\' && i + 1 < in.size() && (in[i + 1] == '"' || in[i + 1] == '\\')) ++i;
        parameter.value.push_back(in[i]);
      }
      if (i == in.size()) return std::nullopt;  // no closing quote
      in.remove_prefix(i + 1);
    } else {
      size_t m = 0;
      while (m < in.size() && IsTokenChar(in[m])) ++m;
      if (m == 0) return std::nullopt;
      parameter.value = std::string(in.substr(0, m));
      in.remove_prefix(m);
    }
    out.push_back(std::move(parameter));
  }
}

// The value of the parameter `name` (lower case): nullopt when absent, an error when repeated.
StatusOr<std::optional<std::string>> OneParameter(const std::vector<Parameter>& parameters,
                                                  std::string_view name, std::string_view where) {
  std::optional<std::string> found;
  for (const Parameter& parameter : parameters) {
    if (parameter.name != name) continue;
    if (found.has_value()) {
      return InvalidArgumentError(std::string(where) + " has two " + std::string(name) +
                                  " parameters");
    }
    found = parameter.value;
  }
  return found;
}

std::string PartName(size_t index) { return "part " + std::to_string(index); }

// The header block of part `index` (lines each ending in CRLF, the empty line included; bytes
// already checked for bare CR and LF) as a MultipartPart.
StatusOr<MultipartPart> ParsePartHeaders(std::string_view block, size_t index) {
  const std::string part = PartName(index);
  MultipartPart out;
  while (!block.empty()) {
    const size_t end = block.find("\r\n");
    const std::string_view line = block.substr(0, end);
    block.remove_prefix(end + 2);  // every line ends in CRLF
    if (line.empty()) break;
    if (std::any_of(line.begin(), line.end(), IsForbiddenInHeader)) {
      return InvalidArgumentError(part + " has a control character in its headers");
    }
    if (IsSpace(line.front())) {  // obs-fold: continues the previous value
      if (out.headers.empty()) {
        return InvalidArgumentError(part + "'s headers begin with a continuation line");
      }
      std::string& value = out.headers.back().second;
      const std::string_view more = Trim(line);
      if (!value.empty() && !more.empty()) value += ' ';
      value += more;
      continue;
    }
    const size_t colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0 ||
        !std::all_of(line.begin(), line.begin() + static_cast<std::ptrdiff_t>(colon),
                     IsTokenChar)) {
      return InvalidArgumentError(part + " has a header line that is not \"Name: value\"");
    }
    out.headers.emplace_back(std::string(line.substr(0, colon)),
                             std::string(Trim(line.substr(colon + 1))));
  }

  const std::pair<std::string, std::string>* disposition = nullptr;
  const std::pair<std::string, std::string>* content_type = nullptr;
  for (const auto& header : out.headers) {
    for (auto [name, slot] : {std::pair{"Content-Disposition", &disposition},
                              std::pair{"Content-Type", &content_type}}) {
      if (!EqualsIgnoreCase(header.first, name)) continue;
      if (*slot != nullptr) return InvalidArgumentError(part + " has two " + name + " headers");
      *slot = &header;
    }
  }
  if (disposition == nullptr) {
    return InvalidArgumentError(part + " has no Content-Disposition header");
  }
  const std::string_view value = disposition->second;
  const size_t type_end = value.find(';');
  if (!EqualsIgnoreCase(Trim(value.substr(0, type_end)), "form-data")) {
    return InvalidArgumentError(part + "'s Content-Disposition is not form-data");
  }
  const auto parameters =
      ParseParameters(type_end == std::string_view::npos ? "" : value.substr(type_end));
  if (!parameters.has_value()) {
    return InvalidArgumentError(part + "'s Content-Disposition has malformed parameters");
  }
  const std::string where = part + "'s Content-Disposition";
  ASSIGN_OR_RETURN(std::optional<std::string> name, OneParameter(*parameters, "name", where));
  if (!name.has_value() || name->empty()) {
    return InvalidArgumentError(part + " has no Content-Disposition name");
  }
  out.name = *std::move(name);
  ASSIGN_OR_RETURN(out.filename, OneParameter(*parameters, "filename", where));
  if (content_type != nullptr) {
    if (content_type->second.empty()) {
      return InvalidArgumentError(part + " has an empty Content-Type");
    }
    out.content_type = content_type->second;
  }
  return out;
}

// `value` with CR, LF and NUL percent-encoded, so that it cannot end a header line.
void AppendUnbroken(std::string_view value, std::string& out) {
  for (char c : value) {
    switch (c) {
      case '\r':
        out += "%0D";
        break;
      case '\n':
        out += "%0A";
        break;
      case '\0':
        out += "%00";
        break;
      default:
        out += c;
    }
  }
}

// `value` as a quoted string: `"` and `\` escaped, CR, LF and NUL percent-encoded.
void AppendQuoted(std::string_view value, std::string& out) {
  out += '"';
  for (char c : value) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else {
      AppendUnbroken(std::string_view(&c, 1), out);
    }
  }
  out += '"';
}

std::string PartHead(std::string_view boundary, std::string_view name,
                     const std::string_view* filename) {
  std::string out = "--";
  out += boundary;
  out += "\r\nContent-Disposition: form-data; name=";
  AppendQuoted(name, out);
  if (filename != nullptr) {
    out += "; filename=";
    AppendQuoted(*filename, out);
  }
  out += "\r\n";
  return out;
}

}  // namespace

StatusOr<std::string> MultipartBoundary(std::string_view content_type) {
  const size_t type_end = content_type.find(';');
  if (!EqualsIgnoreCase(Trim(content_type.substr(0, type_end)), "multipart/form-data")) {
    return InvalidArgumentError("the Content-Type is not multipart/form-data");
  }
  const auto parameters =
      ParseParameters(type_end == std::string_view::npos ? "" : content_type.substr(type_end));
  if (!parameters.has_value()) {
    return InvalidArgumentError("the multipart/form-data Content-Type has malformed parameters");
  }
  ASSIGN_OR_RETURN(std::optional<std::string> boundary,
                   OneParameter(*parameters, "boundary", "the multipart/form-data Content-Type"));
  if (!boundary.has_value()) {
    return InvalidArgumentError("the multipart/form-data Content-Type has no boundary parameter");
  }
  RETURN_IF_ERROR(ValidateBoundary(*boundary));
  return *std::move(boundary);
}

StatusOr<std::unique_ptr<MultipartParser>> MultipartParser::New(std::string_view boundary,
                                                                MultipartCallbacks callbacks,
                                                                MultipartLimits limits) {
  RETURN_IF_ERROR(ValidateBoundary(boundary));
  if (limits.max_header_bytes == 0 || limits.max_parts == 0) {
    return InvalidArgumentError("the multipart limits must be positive");
  }
  return std::unique_ptr<MultipartParser>(
      new MultipartParser("\r\n--" + std::string(boundary), std::move(callbacks), limits));
}

MultipartParser::MultipartParser(std::string delimiter, MultipartCallbacks callbacks,
                                 MultipartLimits limits)
    : delimiter_(std::move(delimiter)),
      callbacks_(std::move(callbacks)),
      limits_(limits),
      held_("\r\n") {}

Status MultipartParser::Feed(ByteView chunk) {
  while (!chunk.empty()) {
    StatusOr<size_t> used = size_t{0};
    switch (state_) {
      case State::kPreamble:
      case State::kData:
        used = ScanForDelimiter(chunk);
        break;
      case State::kAfterBoundary:
      case State::kCloseDash:
      case State::kPadding:
      case State::kBoundaryCr:
        used = ReadBoundaryLine(chunk);
        break;
      case State::kHeaders:
        used = ReadHeaders(chunk);
        break;
      case State::kEpilogue:
        return OkStatus();
      case State::kFailed:
        return error_;
    }
    if (!used.ok()) return Fail(used.status());
    chunk = chunk.subspan(*used);
  }
  return state_ == State::kFailed ? error_ : OkStatus();
}

Status MultipartParser::Finish() {
  if (state_ == State::kFailed) return error_;
  if (state_ != State::kEpilogue) {
    return Fail(InvalidArgumentError("the multipart body ended before its closing boundary"));
  }
  return OkStatus();
}

namespace {

struct Candidate {
  size_t position;  // where the first possible delimiter starts; the size searched when none
  bool whole;       // it is all there (else it runs to the end of what was searched)
};

// The first position in `in` where `delimiter` starts, whole or cut off by the end of `in`.
Candidate FindDelimiter(ByteView in, std::string_view delimiter) {
  const uint8_t* const begin = in.data();
  const uint8_t* const end = begin + in.size();
  const uint8_t* p = begin;
  while (p < end) {
    p = static_cast<const uint8_t*>(std::memchr(p, delimiter[0], static_cast<size_t>(end - p)));
    if (p == nullptr) break;
    const size_t available = std::min(static_cast<size_t>(end - p), delimiter.size());
    if (std::memcmp(p, delimiter.data(), available) == 0) {
      return {static_cast<size_t>(p - begin), available == delimiter.size()};
    }
    ++p;
  }
  return {in.size(), false};
}

}  // namespace

StatusOr<size_t> MultipartParser::ScanForDelimiter(ByteView in) {
  const size_t size = delimiter_.size();
  if (!held_.empty()) {
    // A delimiter may start in held_: look at it with the start of `in` joined on.
    std::array<uint8_t, 2 * kMaxDelimiter> joined;
    const size_t taken = std::min(in.size(), size - 1);
    std::memcpy(joined.data(), held_.data(), held_.size());
    std::memcpy(joined.data() + held_.size(), in.data(), taken);
    const ByteView view(joined.data(), held_.size() + taken);
    const Candidate candidate = FindDelimiter(view, delimiter_);
    if (candidate.position < held_.size()) {
      RETURN_IF_ERROR(Emit(view.first(candidate.position)));
      if (candidate.whole) {
        const size_t used = candidate.position + size - held_.size();
        held_.clear();
        RETURN_IF_ERROR(AtDelimiter());
        return used;
      }
      // Cut off: `view` ran to the end of `in` (it reaches a whole delimiter past any
      // position in held_ otherwise).
      held_.assign(AsStringView(view.subspan(candidate.position)));
      return in.size();
    }
    RETURN_IF_ERROR(Emit(AsBytes(held_)));
    held_.clear();
  }
  const Candidate candidate = FindDelimiter(in, delimiter_);
  RETURN_IF_ERROR(Emit(in.first(candidate.position)));
  if (candidate.whole) {
    RETURN_IF_ERROR(AtDelimiter());
    return candidate.position + size;
  }
  held_.assign(AsStringView(in.subspan(candidate.position)));
  return in.size();
}

Status MultipartParser::Emit(ByteView data) {
  if (state_ != State::kData || data.empty() || !callbacks_.on_part_data) return OkStatus();
  return callbacks_.on_part_data(data);
}

Status MultipartParser::AtDelimiter() {
  const bool in_part = state_ == State::kData;
  state_ = State::kAfterBoundary;
  if (in_part && callbacks_.on_part_end) return callbacks_.on_part_end();
  return OkStatus();
}

StatusOr<size_t> MultipartParser::ReadBoundaryLine(ByteView in) {
  const auto malformed = [this] {
    return InvalidArgumentError(
        (parts_ == 0 ? std::string("the first boundary line")
                     : "the boundary line after " + PartName(parts_)) +
        " has more than the boundary (a boundary must not occur in the data, and its line ends "
        "with CRLF)");
  };
  for (size_t i = 0; i < in.size(); ++i) {
    const char c = static_cast<char>(in[i]);
    switch (state_) {
      case State::kAfterBoundary:
        if (c == '-') {
          state_ = State::kCloseDash;
        } else if (IsSpace(c)) {
          state_ = State::kPadding;
        } else if (c == '\r') {
          state_ = State::kBoundaryCr;
        } else {
          return malformed();
        }
        break;
      case State::kCloseDash:
        if (c != '-') return malformed();
        state_ = State::kEpilogue;
        return i + 1;
      case State::kPadding:
        if (c == '\r') {
          state_ = State::kBoundaryCr;
        } else if (!IsSpace(c)) {
          return malformed();
        }
        break;
      case State::kBoundaryCr:
        if (c != '\n') return malformed();
        if (parts_ == limits_.max_parts) {
          return InvalidArgumentError("the multipart body has more than " +
                                      std::to_string(limits_.max_parts) + " parts");
        }
        ++parts_;
        state_ = State::kHeaders;
        headers_.clear();
        return i + 1;
      case State::kPreamble:
      case State::kHeaders:
      case State::kData:
      case State::kEpilogue:
      case State::kFailed:
        return InternalError("multipart parser: not on a boundary line");
    }
  }
  return in.size();
}

StatusOr<size_t> MultipartParser::ReadHeaders(ByteView in) {
  // headers_ holds whole lines (CRLF checked) and the current one; the block ends with the first
  // empty line.
  size_t i = 0;
  bool done = false;
  for (; i < in.size() && !done; ++i) {
    const char c = static_cast<char>(in[i]);
    const bool after_cr = !headers_.empty() && headers_.back() == '\r';
    if (headers_.size() == limits_.max_header_bytes) {
      return InvalidArgumentError(PartName(parts_) + "'s headers exceed " +
                                  std::to_string(limits_.max_header_bytes) + " bytes");
    }
    if (after_cr != (c == '\n')) {
      return InvalidArgumentError(PartName(parts_) +
                                  "'s header lines must end with CRLF (a bare CR or LF was found)");
    }
    headers_.push_back(c);
    // An empty line: the block is "\r\n" or ends with "\r\n\r\n".
    done = c == '\n' && (headers_.size() == 2 || headers_.ends_with("\r\n\r\n"));
  }
  if (!done) return i;
  ASSIGN_OR_RETURN(const MultipartPart part, ParsePartHeaders(headers_, parts_));
  headers_.clear();
  headers_.shrink_to_fit();
  state_ = State::kData;
  if (callbacks_.on_part_begin) RETURN_IF_ERROR(callbacks_.on_part_begin(part));
  return i;
}

Status MultipartParser::Fail(Status status) {
  state_ = State::kFailed;
  error_ = std::move(status);
  return error_;
}

StatusOr<std::string> NewMultipartBoundary() {
  ASSIGN_OR_RETURN(const Bytes random, crypto::RandomBytes(16));
  return HexEncode(random);
}

std::string MultipartField(std::string_view boundary, std::string_view name,
                           std::string_view value) {
  std::string out = PartHead(boundary, name, nullptr);
  out += "\r\n";
  out += value;
  out += "\r\n";
  return out;
}

std::string MultipartFileHeader(std::string_view boundary, std::string_view name,
                                std::string_view filename, std::string_view content_type) {
  std::string out = PartHead(boundary, name, &filename);
  out += "Content-Type: ";
  AppendUnbroken(content_type, out);
  out += "\r\n\r\n";
  return out;
}

std::string MultipartClose(std::string_view boundary) {
  return "\r\n--" + std::string(boundary) + "--\r\n";
}

}  // namespace keyfoundry::http
