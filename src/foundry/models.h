// Models: the base models keyfoundry ships and the models an account fine-tunes, and loading
// either into memory for a deployment.
//
// Base models. One small language model (language_model.h) trained at first use from the
// corpus that ships with the project (BaseCorpus()), offered under the names and versions that
// Azure OpenAI clients ask for when they fine-tune or deploy (gpt-4o-mini 2024-07-18, ...) and
// under its own name, kf-ngram 1. Every base name is the same model: keyfoundry makes no claim
// to serve those vendors' models, only to accept their names so that unchanged clients work. A
// base model holds no customer data and is not encrypted.
//
// Fine-tuned models. A job (fine_tuning.h) registers each model it makes, final or checkpoint,
// with the file holding its weights. The weights are customer content: a file of the internal
// purpose kWeightsPurpose, sealed under the account's active key generation like every file,
// so loading them needs that generation's key (PermissionDenied naming the key when it is
// inaccessible: S7's "deploying fine-tuned models fails").
//
// Storage (MetadataStore table; JSON values with "v": 1):
//   ft_models  {account}/{model id}  {id, base, job, checkpoint_step (0 for the final model),
//                                     weights_file, created_at}
//
// Thread safety: ModelCatalog may be used from many threads at once.
#ifndef KEYFOUNDRY_FOUNDRY_MODELS_H_
#define KEYFOUNDRY_FOUNDRY_MODELS_H_

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "common/clock.h"
#include "common/mutex.h"
#include "common/status.h"
#include "foundry/files.h"
#include "foundry/language_model.h"
#include "storage/metadata_store.h"

namespace keyfoundry::foundry {

struct BaseModel {
  std::string name;     // "gpt-4o-mini"
  std::string version;  // "2024-07-18"
  std::string id;       // "gpt-4o-mini-2024-07-18": what fine-tuning and /models name
  int64_t created_at = 0;
};

struct FineTunedModel {
  std::string id;    // "{base id}.ft-{32 hex}[-{suffix}]", or that + ":ckpt-step-{n}"
  std::string base;  // the base model's id
  std::string job;   // "ftjob-..."
  int64_t checkpoint_step = 0;  // 0: the job's final model
  std::string weights_file;     // a file of purpose kWeightsPurpose
  int64_t created_at = 0;
};

// What a deployment's model {format, name, version} names.
struct ModelRef {
  bool fine_tuned = false;
  BaseModel base;            // when !fine_tuned
  FineTunedModel fine_tune;  // when fine_tuned
  std::string id() const { return fine_tuned ? fine_tune.id : base.id; }
};

// The base models, in /models order.
const std::vector<BaseModel>& BaseModels();
// The base model named by `id` ("gpt-4o-mini-2024-07-18") or by name and version; NotFound
// otherwise. An empty version picks the catalogue's.
StatusOr<BaseModel> FindBaseModel(std::string_view name, std::string_view version = "");

// Azure OpenAI's model objects (GET /openai/models), which also carry OpenAI's
// {id, object, created, owned_by}.
nlohmann::json BaseModelToJson(const BaseModel& model);
nlohmann::json FineTunedModelToJson(const FineTunedModel& model);

class ModelCatalog {
 public:
  // Every reference must outlive the catalog.
  ModelCatalog(storage::MetadataStore& store, FileStore& files);

  // Registers a fine-tuned model in the caller's transaction. AlreadyExists if the id is taken.
  static Status Register(storage::Transaction& txn, std::string_view account,
                         const FineTunedModel& model);
  // Removes every model of a job (in the caller's transaction); returns their weights files.
  static StatusOr<std::vector<std::string>> UnregisterJob(storage::Transaction& txn,
                                                          std::string_view account,
                                                          std::string_view job);

  // The account's fine-tuned models, by id.
  StatusOr<std::vector<FineTunedModel>> List(std::string_view account) const;
  // NotFound (reason "ModelNotFound") when the account has no such model.
  StatusOr<FineTunedModel> Get(std::string_view account, std::string_view id) const;
  // A base model (by id, or name and version) or one of the account's fine-tuned models (by
  // id; any version). NotFound (reason "DeploymentModelNotSupported") naming the model.
  StatusOr<ModelRef> Resolve(std::string_view account, std::string_view name,
                             std::string_view version) const;

  // The model in memory. A base model is built once per process; a fine-tuned model's weights
  // are opened (the key engine's PermissionDenied or Unavailable when its generation's key is
  // not accessible), read, parsed, and their plaintext zeroized.
  StatusOr<std::shared_ptr<const LanguageModel>> Load(std::string_view account,
                                                      const ModelRef& model);
  // The shared base model (built at first use from BaseCorpus()).
  StatusOr<std::shared_ptr<const LanguageModel>> Base();

  // Deletes every fine-tuned model entry of an account (its weights go with its files).
  Status DeleteAccount(std::string_view account);

 private:
  storage::MetadataStore& store_;
  FileStore& files_;
  Mutex base_mu_;
  std::shared_ptr<const LanguageModel> base_ GUARDED_BY(base_mu_);
};

}  // namespace keyfoundry::foundry

#endif  // KEYFOUNDRY_FOUNDRY_MODELS_H_
