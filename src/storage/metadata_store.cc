#include "storage/metadata_store.h"

namespace keyfoundry::storage {
namespace {

bool IsLower(char c) { return c >= 'a' && c <= 'z'; }
bool IsDigit(char c) { return c >= '0' && c <= '9'; }

}  // namespace

// Messages never echo the input: keys may be chosen by API callers, and a bad table name is a
// bug whose value the caller has at hand.
Status ValidateTableName(std::string_view table) {
  bool ok = !table.empty() && table.size() <= kMaxTableNameSize && IsLower(table[0]);
  for (char c : table) ok = ok && (IsLower(c) || IsDigit(c) || c == '_');
  if (!ok) {
    return InvalidArgumentError("invalid table name: it must be 1 to " +
                                std::to_string(kMaxTableNameSize) +
                                " characters of a-z, 0-9 and _, starting with a letter");
  }
  return OkStatus();
}

Status ValidateKey(std::string_view key) {
  if (key.empty() || key.size() > kMaxKeySize) {
    return InvalidArgumentError("invalid key of " + std::to_string(key.size()) +
                                " bytes: keys are 1 to " + std::to_string(kMaxKeySize) + " bytes");
  }
  return OkStatus();
}

Status ValidateValue(ByteView value) {
  if (value.size() > kMaxValueSize) {
    return InvalidArgumentError("value of " + std::to_string(value.size()) +
                                " bytes is over the limit of " + std::to_string(kMaxValueSize));
  }
  return OkStatus();
}

Status ValidateExpectedVersion(int64_t version) {
  if (version < 1) return InvalidArgumentError("record versions start at 1");
  return OkStatus();
}

Status ValidateScan(std::string_view prefix, std::string_view start_after, size_t limit) {
  if (prefix.size() > kMaxKeySize || start_after.size() > kMaxKeySize) {
    return InvalidArgumentError("scan prefix and start_after are at most " +
                                std::to_string(kMaxKeySize) + " bytes, like keys");
  }
  if (limit < 1 || limit > kMaxScanLimit) {
    return InvalidArgumentError("scan limit must be 1 to " + std::to_string(kMaxScanLimit));
  }
  return OkStatus();
}

}  // namespace keyfoundry::storage
