// Fine-tuning jobs: OpenAI's /fine_tuning/jobs, run by a small real trainer (language_model.h)
// on a bounded pool of threads.
//
// A job's life, as OpenAI reports it:
//   validating_files  the training (and validation) file is read and every line parsed; bad
//                     lines fail the job with their line numbers (error.code
//                     "invalid_training_file", param "training_file")
//   queued            waiting for a trainer thread
//   running           epochs of batches: each step's training loss is the model's loss on the
//                     batch before it learns it; an event every few steps, a checkpoint (a
//                     deployable model) after each epoch
//   succeeded         the final model is registered (models.h), a results file (CSV of the
//                     step metrics, purpose fine-tune-results) is written
//   failed            error {code, message, param}; cancelled by /cancel
// Jobs that were validating, queued or running when keyfoundryd stopped start again from the
// beginning at the next start (their checkpoints and models so far are removed first), with an
// event that says so: the trainer is deterministic for a job's seed, so the result is the same.
//
// Encryption. The training data, the weights of every checkpoint and model, and the results
// file are files, sealed under the account's active generation (files.h). Creating a job needs
// the keys of its files and of the active generation: when one is inaccessible the creation is
// refused with the key engine's PermissionDenied, naming the key (S7). A key revoked while a
// job runs fails the job with error.code "KeyInaccessible" and the same message. Events and
// errors never quote the customer's data (line numbers and field names only), so they are kept
// in clear with the other metadata.
//
// Storage (MetadataStore tables; JSON values with "v": 1):
//   ft_jobs         {account}/{job id}                 the job
//   ft_events       {account}/{job id}/{~seq:016x}      an event (newest first in key order)
//   ft_checkpoints  {account}/{job id}/{~step:016x}     a checkpoint (newest first)
// where ~x is UINT64_MAX - x. Job ids are "ftjob-" + 16 hex digits of ~(creation time in
// milliseconds) + 16 random hex digits, so an account's jobs sort newest first by id.
//
// Thread safety: FineTuning may be used from many threads at once.
#ifndef KEYFOUNDRY_FOUNDRY_FINE_TUNING_H_
#define KEYFOUNDRY_FOUNDRY_FINE_TUNING_H_

#include <cstdint>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "common/clock.h"
#include "common/status.h"
#include "encryption/account_keys.h"
#include "foundry/files.h"
#include "foundry/models.h"
#include "foundry/work_queue.h"
#include "storage/metadata_store.h"

namespace keyfoundry::foundry {

inline constexpr size_t kMinTrainingExamples = 10;
inline constexpr uint64_t kMaxTrainingFileBytes = uint64_t{256} << 20;
inline constexpr int kMaxEpochs = 50;
inline constexpr int kMaxBatchSize = 256;
inline constexpr size_t kMaxSuffixSize = 40;
inline constexpr size_t kMaxJobListLimit = 100;

enum class JobStatus {
  kValidatingFiles = 1,
  kQueued = 2,
  kRunning = 3,
  kSucceeded = 4,
  kFailed = 5,
  kCancelled = 6,
};
std::string_view JobStatusName(JobStatus status);  // "validating_files", ...
bool IsFinished(JobStatus status);

struct JobError {
  std::string code;
  std::string message;
  std::string param;  // empty: null
};

// 0 means "auto" until the job resolves it while validating its files.
struct Hyperparameters {
  int n_epochs = 0;
  int batch_size = 0;
  double learning_rate_multiplier = 0;
};

struct FineTuningJob {
  std::string id;
  std::string model;  // the base model's id
  std::string training_file;
  std::string validation_file;  // empty: none
  Hyperparameters hyperparameters;
  std::string suffix;
  int64_t seed = 0;
  JobStatus status = JobStatus::kValidatingFiles;
  int64_t created_at = 0;
  int64_t finished_at = 0;  // 0: null
  std::string fine_tuned_model;
  std::vector<std::string> result_files;
  int64_t trained_tokens = -1;  // -1: null
  std::optional<JobError> error;
  int64_t total_steps = 0;  // known once running
  int64_t step = 0;
};

struct JobEvent {
  std::string id;  // "ftevent-..."
  int64_t created_at = 0;
  std::string level;    // "info", "warn", "error"
  std::string message;  // never customer data
  std::string type;     // "message" or "metrics"
  nlohmann::json data;  // null, or the step's metrics
};

struct JobCheckpoint {
  std::string id;  // "ftckpt-..."
  int64_t created_at = 0;
  std::string model;  // the checkpoint's model id ("...:ckpt-step-N")
  int64_t step = 0;
  nlohmann::json metrics;  // {step, train_loss, valid_loss?, ...}
  std::string job;
};

// OpenAI's shapes.
nlohmann::json JobToJson(const FineTuningJob& job);
nlohmann::json EventToJson(const JobEvent& event);
nlohmann::json CheckpointToJson(const JobCheckpoint& checkpoint);

// A create request as OpenAI's body gives it, already read from JSON.
struct CreateJobRequest {
  std::string model;
  std::string training_file;
  std::string validation_file;
  Hyperparameters hyperparameters;
  std::string suffix;
  std::optional<int64_t> seed;
};
// Reads {model, training_file, validation_file?, hyperparameters? (or method.supervised.
// hyperparameters), suffix?, seed?}: InvalidArgument (reason "invalidPayload") naming the field.
StatusOr<CreateJobRequest> CreateJobRequestFromJson(const nlohmann::json& body);

struct Page {
  size_t limit = 20;
  std::string after;  // an id of the list: the page starts after it
};

struct FineTuningOptions {
  int workers = 1;  // trainer threads (1..16)
};

class FineTuning {
 public:
  // Every reference must outlive this object. Nothing runs until Start.
  FineTuning(storage::MetadataStore& store, FileStore& files, encryption::AccountKeys& keys,
             ModelCatalog& models, const Clock& clock = Clock::Real(),
             FineTuningOptions options = {});
  ~FineTuning();  // Stop()

  // Requeues the jobs a previous run left unfinished, then starts the trainer threads.
  Status Start();
  // Stops taking jobs, interrupts running ones at their next step (they stay unfinished, to
  // start again at the next Start) and joins the threads.
  void Stop();

  // Validates the request against the account's files and the catalogue, checks that the
  // keys it needs are accessible (PermissionDenied naming the key otherwise), stores the job
  // and queues it. InvalidArgument (reason "invalidPayload", naming the field) for a model
  // that cannot be fine-tuned or a file that is missing or not purpose fine-tune.
  StatusOr<FineTuningJob> Create(std::string_view account, const CreateJobRequest& request);
  // NotFound (reason "NotFound") for an unknown job.
  StatusOr<FineTuningJob> Get(std::string_view account, std::string_view id) const;
  // Newest first. `has_more` is set when more follow.
  StatusOr<std::vector<FineTuningJob>> List(std::string_view account, const Page& page,
                                            bool* has_more) const;
  StatusOr<std::vector<JobEvent>> Events(std::string_view account, std::string_view id,
                                         const Page& page, bool* has_more) const;
  StatusOr<std::vector<JobCheckpoint>> Checkpoints(std::string_view account,
                                                   std::string_view id, const Page& page,
                                                   bool* has_more) const;
  // Cancels an unfinished job (it stops at its next step); FailedPrecondition (reason
  // "invalidPayload") for a finished one.
  StatusOr<FineTuningJob> Cancel(std::string_view account, std::string_view id);

  // Deletes an account's jobs, events and checkpoints (its files and models are deleted by
  // their owners), cancelling its running jobs first.
  Status DeleteAccount(std::string_view account);

  // Blocks until no job is queued or running (tests).
  void WaitIdle();

 private:
  struct Work {
    std::string account;
    std::string job;
  };
  class Run;

  void Execute(const Work& work);
  bool ShouldStop(const Work& work);
  Status AddEvent(std::string_view account, std::string_view job, std::string_view level,
                  std::string message, std::string_view type = "message",
                  nlohmann::json data = nullptr);
  // Reads, changes and writes a job record in one transaction.
  StatusOr<FineTuningJob> UpdateJob(std::string_view account, std::string_view id,
                                    const std::function<Status(FineTuningJob&)>& change);
  Status Enqueue(Work work);

  storage::MetadataStore& store_;
  FileStore& files_;
  encryption::AccountKeys& keys_;
  ModelCatalog& models_;
  const Clock& clock_;
  const FineTuningOptions options_;

  std::mutex mu_;
  std::set<std::string> cancelled_;  // "{account}/{job}" asked to stop (guarded by mu_)
  WorkQueue<Work> queue_;
};

}  // namespace keyfoundry::foundry

#endif  // KEYFOUNDRY_FOUNDRY_FINE_TUNING_H_
