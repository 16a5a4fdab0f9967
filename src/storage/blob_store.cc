#include "storage/blob_store.h"

namespace keyfoundry::storage {

Status ValidateBlobName(std::string_view name) {
  bool ok = !name.empty() && name.size() <= kMaxBlobNameSize && name != "." && name != "..";
  for (char c : name) {
    ok = ok && ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                c == '.' || c == '_' || c == '-');
  }
  if (!ok) {
    return InvalidArgumentError("invalid blob name: it must be 1 to " +
                                std::to_string(kMaxBlobNameSize) +
                                " characters of A-Z, a-z, 0-9, '.', '_' and '-', other than \".\" "
                                "and \"..\"");
  }
  return OkStatus();
}

}  // namespace keyfoundry::storage
