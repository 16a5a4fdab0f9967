// The in-process event bus on which the key vault publishes changes that matter to whoever
// caches keys or access decisions (the encryption engine's key cache): a new key version, a key
// disabled, deleted, recovered or purged, an access policy, RBAC or firewall change, a vault
// deleted, recovered or purged. Subscribers drop what they cached and re-check at next use, so
// revocation in the built-in vault takes effect at once.
//
// Delivery is synchronous, on the publisher's thread, after the change has committed, in
// subscription order. A subscriber must be quick and must not publish or (un)subscribe from
// its callback.
//
// Thread safety: Subscribe, Unsubscribe and Publish may be called from many threads at once.
#ifndef KEYFOUNDRY_KEYVAULT_EVENTS_H_
#define KEYFOUNDRY_KEYVAULT_EVENTS_H_

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>

#include "common/mutex.h"

namespace keyfoundry::keyvault {

enum class VaultEventType {
  kKeyVersionCreated = 1,  // create, import, rotate, restore
  kKeyUpdated = 2,         // attributes, key_ops or tags changed (enabled, nbf, exp included)
  kKeyDeleted = 3,
  kKeyRecovered = 4,
  kKeyPurged = 5,
  kAccessPolicyChanged = 6,
  kRbacChanged = 7,  // a role assignment created or deleted (vault name empty: any vault)
  kFirewallChanged = 8,
  kVaultDeleted = 9,
  kVaultRecovered = 10,
  kVaultPurged = 11,
  kVaultUpdated = 12,  // other vault properties (sku, RBAC mode, purge protection, tags)
};

std::string_view VaultEventTypeName(VaultEventType type);

struct VaultEvent {
  VaultEventType type{};
  std::string vault;     // lower-case vault name; empty for deployment-wide events
  std::string key_name;  // lower case, for key events
  std::string version;   // for version events
};

class EventBus {
 public:
  using Subscriber = std::function<void(const VaultEvent&)>;

  // Returns an id for Unsubscribe.
  uint64_t Subscribe(Subscriber subscriber);
  void Unsubscribe(uint64_t id);
  void Publish(const VaultEvent& event) const;

 private:
  mutable Mutex mutex_;
  uint64_t next_id_ GUARDED_BY(mutex_) = 1;
  std::map<uint64_t, Subscriber> subscribers_ GUARDED_BY(mutex_);
};

}  // namespace keyfoundry::keyvault

#endif  // KEYFOUNDRY_KEYVAULT_EVENTS_H_
