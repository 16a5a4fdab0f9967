// Text encodings of bytes: base64 (RFC 4648 §4), base64url (§5) and lower-case hex.
//
// Written by hand (about a hundred lines) because common/ must not depend on OpenSSL and
// OpenSSL has no base64url. Decoders accept padded and unpadded input, reject any character
// outside the alphabet (whitespace included), misplaced or excess padding, an impossible
// length, and non-zero unused bits (so every byte string has exactly one accepted encoding).
#ifndef KEYFOUNDRY_COMMON_ENCODING_H_
#define KEYFOUNDRY_COMMON_ENCODING_H_

#include <string>
#include <string_view>

#include "common/bytes.h"
#include "common/status.h"

namespace keyfoundry {

std::string Base64Encode(ByteView data);                 // padded
std::string Base64UrlEncode(ByteView data);              // unpadded, as JOSE wants
StatusOr<Bytes> Base64Decode(std::string_view text);     // padded or not
StatusOr<Bytes> Base64UrlDecode(std::string_view text);  // padded or not

std::string HexEncode(ByteView data);              // lower case
StatusOr<Bytes> HexDecode(std::string_view text);  // either case, even length

}  // namespace keyfoundry

#endif  // KEYFOUNDRY_COMMON_ENCODING_H_
