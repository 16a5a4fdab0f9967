// URL pieces: percent-encoding (RFC 3986 §2.1), application/x-www-form-urlencoded (the query
// string and OAuth2 token request bodies) and the checks a request path must pass.
//
// Written by hand (a few dozen lines): Boost.URL is a compiled library in Boost 1.81, and these
// rules are small and exact. All functions are pure and thread-safe.
#ifndef KEYFOUNDRY_HTTP_URL_H_
#define KEYFOUNDRY_HTTP_URL_H_

#include <map>
#include <string>
#include <string_view>

#include "common/status.h"

namespace keyfoundry::http {

// Decodes %XX escapes (either case); with `plus_as_space` also '+' as ' ' (form encoding).
// InvalidArgument on a '%' not followed by two hex digits. The result may hold any byte,
// NUL included: callers validate what they accept.
StatusOr<std::string> PercentDecode(std::string_view text, bool plus_as_space);

// Encodes every byte but the RFC 3986 unreserved characters (A-Z a-z 0-9 - . _ ~) as %XX
// (upper case), so the result is safe as a path segment or a query name or value.
std::string PercentEncode(std::string_view text);

// Parses "a=1&b=x%20y" (a query string without the '?', or a form body) into names and values,
// both percent-decoded with '+' as space. A pair without '=' has an empty value; empty pairs
// ("a=1&&b=2") are skipped. Names are case-sensitive.
//
// Duplicates: a name repeated with the same value is kept once (some SDKs repeat api-version
// when following nextLink); a name repeated with a different value is InvalidArgument, as
// OAuth2 requires (RFC 6749 §3.1) and so that no two layers can read different values of one
// parameter. InvalidArgument too on a malformed escape.
StatusOr<std::map<std::string, std::string>> ParseFormUrlEncoded(std::string_view text);

// OK when `path` (the part of a request target before '?') is an absolute path whose escapes
// are well formed and none of whose segments is "." or ".." (raw or escaped): no layer then
// has to wonder whether a path was normalised. InvalidArgument naming the fault otherwise.
Status ValidateRequestPath(std::string_view path);

}  // namespace keyfoundry::http

#endif  // KEYFOUNDRY_HTTP_URL_H_
