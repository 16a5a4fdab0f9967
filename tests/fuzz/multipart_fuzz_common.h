// What the multipart fuzzer and its seed generator share: the input layout, the boundaries and
// the limits.
//
// Input: one byte choosing the boundary (kMultipartFuzzBoundaries[byte % 3]), one byte seeding
// how the body is cut into chunks, then the body.
#ifndef KEYFOUNDRY_TESTS_FUZZ_MULTIPART_FUZZ_COMMON_H_
#define KEYFOUNDRY_TESTS_FUZZ_MULTIPART_FUZZ_COMMON_H_

#include <array>
#include <string_view>

#include "http/multipart.h"

namespace keyfoundry::fuzz {

// The shortest boundary, curl's kind, and the longest (70 characters).
inline constexpr std::array<std::string_view, 3> kMultipartFuzzBoundaries = {
    "b", "------------------------d74496d66958873e",
    "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ'()+_,-."};

// Small, so that the fuzzer reaches them.
inline constexpr http::MultipartLimits kMultipartFuzzLimits = {.max_header_bytes = 256,
                                                               .max_parts = 4};

}  // namespace keyfoundry::fuzz

#endif  // KEYFOUNDRY_TESTS_FUZZ_MULTIPART_FUZZ_COMMON_H_
