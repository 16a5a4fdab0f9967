#include "keyvault/events.h"

#include <vector>

namespace keyfoundry::keyvault {

std::string_view VaultEventTypeName(VaultEventType type) {
  switch (type) {
    case VaultEventType::kKeyVersionCreated:
      return "KeyVersionCreated";
    case VaultEventType::kKeyUpdated:
      return "KeyUpdated";
    case VaultEventType::kKeyDeleted:
      return "KeyDeleted";
    case VaultEventType::kKeyRecovered:
      return "KeyRecovered";
    case VaultEventType::kKeyPurged:
      return "KeyPurged";
    case VaultEventType::kAccessPolicyChanged:
      return "AccessPolicyChanged";
    case VaultEventType::kRbacChanged:
      return "RbacChanged";
    case VaultEventType::kFirewallChanged:
      return "FirewallChanged";
    case VaultEventType::kVaultDeleted:
      return "VaultDeleted";
    case VaultEventType::kVaultRecovered:
      return "VaultRecovered";
    case VaultEventType::kVaultPurged:
      return "VaultPurged";
    case VaultEventType::kVaultUpdated:
      return "VaultUpdated";
  }
  return "Unknown";
}

uint64_t EventBus::Subscribe(Subscriber subscriber) {
  MutexLock lock(&mutex_);
  uint64_t id = next_id_++;
  subscribers_.emplace(id, std::move(subscriber));
  return id;
}

void EventBus::Unsubscribe(uint64_t id) {
  MutexLock lock(&mutex_);
  subscribers_.erase(id);
}

void EventBus::Publish(const VaultEvent& event) const {
  // Copied so that callbacks run without the lock (a slow subscriber does not block others'
  // subscriptions).
  std::vector<Subscriber> targets;
  {
    MutexLock lock(&mutex_);
    targets.reserve(subscribers_.size());
    for (const auto& [id, subscriber] : subscribers_) targets.push_back(subscriber);
  }
  for (const Subscriber& subscriber : targets) subscriber(event);
}

}  // namespace keyfoundry::keyvault
