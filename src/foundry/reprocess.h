// Reprocessing: a long-running operation that moves an account's objects (files, and with them
// training data, results and model weights, which are files) from older key generations to the
// active one, so that an old customer key can be retired (BRIEF §3 "beyond the seed", §4).
//
//   rewrap     each object's data key is wrapped again under the target generation; the
//              content is not touched (fast: one small record write per object)
//   reencrypt  each object's content is sealed again under a new data key (the old data key
//              is gone with its old wrapping)
//
// An operation names its generations (or all but the active one) and its target, the
// generation active when it began. A background thread runs operations one at a time, a page
// of objects per step (FileStore::Reprocess), saving its cursor and counts after each page in
// the operation's record. It survives kill -9: at the next start every operation still
// InProgress continues from its saved cursor; objects moved after the last save are found
// already under the target and left alone, so the run is idempotent and never leaves an
// object unreadable (each object switches generation in one transaction). An optional rate
// limit (objects per second) paces it. Objects whose generation's key is inaccessible are left
// as they are and counted; the operation then ends Failed, naming the key.
//
// When an operation ends, `remaining` counts the objects still under its generations (from
// the key-usage counts): 0 means those generations protect nothing and can be retired (the
// encryption status says so).
//
// Storage (MetadataStore table; JSON values with "v": 1):
//   reprocess_ops  {account}/{operation id}  the operation
//
// Thread safety: Reprocessor may be used from many threads at once.
#ifndef KEYFOUNDRY_FOUNDRY_REPROCESS_H_
#define KEYFOUNDRY_FOUNDRY_REPROCESS_H_

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "common/clock.h"
#include "common/status.h"
#include "encryption/account_keys.h"
#include "foundry/files.h"
#include "foundry/work_queue.h"
#include "storage/metadata_store.h"

namespace keyfoundry::foundry {

enum class OperationStatus {
  kInProgress = 1,
  kSucceeded = 2,
  kFailed = 3,
};
std::string_view OperationStatusName(OperationStatus status);  // ARM's: "InProgress", ...

struct ReprocessRequest {
  ReprocessMode mode = ReprocessMode::kRewrap;
  std::vector<uint64_t> generations;  // empty: every generation but the active one
  int64_t max_objects_per_second = 0;  // 0: no limit
};

// Reads {mode: "rewrap" | "reencrypt", generation?: N | "all", maxObjectsPerSecond?: N}:
// InvalidArgument (reason "InvalidRequestContent") naming the field.
StatusOr<ReprocessRequest> ReprocessRequestFromJson(const nlohmann::json& body);

struct ReprocessOperation {
  std::string id;  // 32 hex digits
  ReprocessMode mode = ReprocessMode::kRewrap;
  std::vector<uint64_t> generations;  // as asked (empty: all but the target)
  uint64_t target = 0;
  int64_t rate = 0;
  OperationStatus status = OperationStatus::kInProgress;
  std::string cursor;  // the last file id visited
  int64_t total = 0;   // objects under the generations when it began
  int64_t moved = 0;   // objects moved by this operation (at least; see the file comment)
  int64_t failed = 0;  // objects left under an inaccessible key (last pass)
  uint64_t bytes = 0;  // plaintext bytes moved
  int64_t remaining = -1;  // when finished: objects still under the generations
  int64_t started_at = 0;
  int64_t ended_at = 0;
  std::string error_code;  // Failed: "KeyInaccessible" or "InternalError"
  std::string error_message;
};

// ARM's operation status: {id, name, status, startTime, endTime?, percentComplete,
// properties {mode, generations, targetGeneration, total, moved, failed, bytes, remaining},
// error?}; `operation_id` is the resource id of the status itself.
nlohmann::json OperationToJson(const ReprocessOperation& op, std::string_view operation_id);

class Reprocessor {
 public:
  // Every reference must outlive this object. Nothing runs until Start.
  Reprocessor(storage::MetadataStore& store, FileStore& files, encryption::AccountKeys& keys,
              const Clock& clock = Clock::Real());
  ~Reprocessor();  // Stop()

  // Queues every operation left InProgress by a previous run, then starts the thread.
  Status Start();
  // Stops at the next page; operations in progress stay so, to continue at the next Start.
  void Stop();

  // Begins an operation on `account`: InvalidArgument (reason "InvalidRequestContent") for a
  // generation the account does not have or the active one; the key engine's status when the
  // target generation's key is inaccessible.
  StatusOr<ReprocessOperation> Begin(std::string_view account, const ReprocessRequest& request);
  // NotFound (reason "OperationNotFound").
  StatusOr<ReprocessOperation> Get(std::string_view account, std::string_view id) const;
  // Newest first.
  StatusOr<std::vector<ReprocessOperation>> List(std::string_view account) const;
  Status DeleteAccount(std::string_view account);

  // Blocks until no operation is queued or running (tests).
  void WaitIdle();

 private:
  struct Work {
    std::string account;
    std::string id;
  };
  // Runs an operation to its end, or until Stop.
  void Run(const Work& work);
  Status Save(std::string_view account, const ReprocessOperation& op);

  storage::MetadataStore& store_;
  FileStore& files_;
  encryption::AccountKeys& keys_;
  const Clock& clock_;

  WorkQueue<Work> queue_;  // one thread: operations run one at a time
};

}  // namespace keyfoundry::foundry

#endif  // KEYFOUNDRY_FOUNDRY_REPROCESS_H_
