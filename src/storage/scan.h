// Walking every record under a prefix, a page of Transaction::Scan at a time, so that callers
// need not repeat the paging loop.
//
// Thread safety: as the transaction it is given.
#ifndef KEYFOUNDRY_STORAGE_SCAN_H_
#define KEYFOUNDRY_STORAGE_SCAN_H_

#include <string>
#include <string_view>
#include <vector>

#include "storage/metadata_store.h"

namespace keyfoundry::storage {

// Calls `fn(record)` for every record of `table` whose key starts with `prefix`, in key order;
// stops at the first non-OK status from the scan or from `fn` and returns it. `fn` may delete
// the record it is given (the next page starts after its key).
template <typename Fn>
Status ScanAll(Transaction& txn, std::string_view table, std::string_view prefix, Fn fn) {
  std::string after;
  for (;;) {
    ASSIGN_OR_RETURN(std::vector<Record> page, txn.Scan(table, prefix, after, kMaxScanLimit));
    for (Record& record : page) RETURN_IF_ERROR(fn(record));
    if (page.size() < kMaxScanLimit) return OkStatus();
    after = page.back().key;
  }
}

// The keys of every record of `table` under `prefix`.
inline StatusOr<std::vector<std::string>> ScanKeys(Transaction& txn, std::string_view table,
                                                   std::string_view prefix) {
  std::vector<std::string> keys;
  RETURN_IF_ERROR(ScanAll(txn, table, prefix, [&](Record& r) {
    keys.push_back(std::move(r.key));
    return OkStatus();
  }));
  return keys;
}

}  // namespace keyfoundry::storage

#endif  // KEYFOUNDRY_STORAGE_SCAN_H_
