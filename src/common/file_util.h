// Small file helpers shared by the server and the CLI.
#ifndef KEYFOUNDRY_COMMON_FILE_UTIL_H_
#define KEYFOUNDRY_COMMON_FILE_UTIL_H_

#include <sys/types.h>

#include <string>
#include <string_view>

#include "common/status.h"

namespace keyfoundry {

// Replaces `path` with `content` (mode `mode`) so that a crash leaves either the old or the
// new file, whole: a temporary file beside it, fsync, rename, fsync of the directory.
Status WriteFileAtomically(const std::string& path, std::string_view content, mode_t mode);

// The whole file. NotFound when it does not exist.
StatusOr<std::string> ReadFile(const std::string& path);

}  // namespace keyfoundry

#endif  // KEYFOUNDRY_COMMON_FILE_UTIL_H_
