// Deployments: Microsoft.CognitiveServices/accounts/{name}/deployments/{deployment}, a model
// loaded into memory to answer chat and completion requests.
//
// Creating or updating a deployment resolves its model (models.h) and loads it: for a
// fine-tuned model that decrypts its weights, so it needs the key of the generation sealing
// them and fails with the key engine's PermissionDenied, naming the key, when that key is
// inaccessible (S7: deploying a fine-tuned model fails). The record is stored only once the
// model is in memory.
//
// A loaded model stays in memory until its deployment is deleted, whatever happens to the key
// afterwards: existing deployments keep serving after a revocation (S7, BRIEF §5). A restart
// loads every deployment again (LoadAll); one whose key is inaccessible then cannot load, and
// its state says why (ServingState); each request to it tries again, so restoring access
// brings it back without operator action (S8).
//
// Storage (MetadataStore table; JSON values with "v": 1):
//   cs_deployments  {account}/{lower name}  the deployment
//
// Thread safety: Deployments may be used from many threads at once.
#ifndef KEYFOUNDRY_FOUNDRY_DEPLOYMENTS_H_
#define KEYFOUNDRY_FOUNDRY_DEPLOYMENTS_H_

#include <cstdint>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "common/clock.h"
#include "common/mutex.h"
#include "common/status.h"
#include "foundry/language_model.h"
#include "foundry/models.h"
#include "storage/metadata_store.h"

namespace keyfoundry::foundry {

struct Deployment {
  std::string account;  // Account::Key()
  std::string name;     // as created
  std::string model_format = "OpenAI";
  std::string model_name;
  std::string model_version;
  std::string model_id;  // what the model resolved to (a base or fine-tuned model id)
  std::string sku_name = "Standard";
  int64_t sku_capacity = 1;
  // Other ARM properties kept as given (raiPolicyName, versionUpgradeOption, ...).
  nlohmann::json extra_properties = nlohmann::json::object();
  int64_t created_at = 0;
  std::string created_by;
  int64_t updated_at = 0;
  std::string updated_by;
};

struct ServingState {
  bool serving = false;
  std::string code;     // when not serving: "KeyInaccessible", "ModelNotFound", ...
  std::string message;  // when not serving: why, naming the key
};

// OK, or InvalidArgument (reason "InvalidResourceName") saying what a name may hold: 2..64
// letters, digits, '-', '_' and '.'.
Status ValidateDeploymentName(std::string_view name);

// A PUT body {sku?: {name, capacity}, properties: {model: {format, name, version}, ...}} over
// `base`. InvalidArgument (reason "InvalidRequestContent") naming the field.
StatusOr<Deployment> DeploymentFromArm(const nlohmann::json& body, Deployment base);
// The ARM resource, with properties.provisioningState and the serving state
// (properties.servingState: "Serving" | "CannotLoad", properties.servingError {code, message}).
nlohmann::json DeploymentToArm(const Deployment& deployment, std::string_view account_id,
                               const ServingState& state);

class Deployments {
 public:
  // Every reference must outlive this object.
  Deployments(storage::MetadataStore& store, ModelCatalog& models,
              const Clock& clock = Clock::Real());

  // Resolves and loads the model, then stores the deployment (created or replaced; *created
  // tells which). The model's failure is returned as is (PermissionDenied for a key, NotFound
  // reason "DeploymentModelNotSupported" for an unknown model); a failed update leaves the
  // deployment as it was, still serving.
  StatusOr<Deployment> Put(Deployment deployment, bool* created);
  // NotFound (reason "DeploymentNotFound").
  StatusOr<Deployment> Get(std::string_view account, std::string_view name) const;
  StatusOr<std::vector<Deployment>> List(std::string_view account) const;
  // NotFound when there is none. Unloads the model.
  Status Delete(std::string_view account, std::string_view name);
  Status DeleteAccount(std::string_view account);

  // The model answering for a deployment: the one in memory (no store read), or loaded now
  // (the load's status when that fails). *deployment is set when given.
  StatusOr<std::shared_ptr<const LanguageModel>> Model(std::string_view account,
                                                       std::string_view name,
                                                       Deployment* deployment = nullptr);
  ServingState State(std::string_view account, std::string_view name);

  // Loads every stored deployment (at start); returns how many could not load.
  StatusOr<int> LoadAll();

 private:
  struct Loaded {
    Deployment deployment;                       // as stored when loaded
    std::shared_ptr<const LanguageModel> model;  // null when the last load failed
    Status error;
  };
  StatusOr<std::shared_ptr<const LanguageModel>> LoadModel(const Deployment& deployment);

  storage::MetadataStore& store_;
  ModelCatalog& models_;
  const Clock& clock_;
  Mutex mu_;
  std::map<std::string, Loaded> loaded_ GUARDED_BY(mu_);  // by record key
};

}  // namespace keyfoundry::foundry

#endif  // KEYFOUNDRY_FOUNDRY_DEPLOYMENTS_H_
