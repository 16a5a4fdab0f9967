// A small thread-safe LRU map of shared, immutable values: the key vault's caches of parsed
// keys (parsing and validating an RSA key costs milliseconds; a lookup, microseconds).
//
// Thread safety: every method may be called from many threads at once. Values are shared and
// const, so a value a caller holds stays valid after its eviction.
#ifndef KEYFOUNDRY_KEYVAULT_LRU_CACHE_H_
#define KEYFOUNDRY_KEYVAULT_LRU_CACHE_H_

#include <list>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>

#include "common/mutex.h"

namespace keyfoundry::keyvault {

template <typename V>
class LruCache {
 public:
  explicit LruCache(size_t capacity) : capacity_(capacity) {}

  // The value, made the most recent; nullptr when absent.
  std::shared_ptr<const V> Get(const std::string& key) {
    MutexLock lock(&mutex_);
    auto it = map_.find(key);
    if (it == map_.end()) return nullptr;
    order_.splice(order_.begin(), order_, it->second.second);
    return it->second.first;
  }

  // Adds `value` unless the key is present (then the present one stays); evicts the least
  // recently used entries beyond the capacity.
  void Put(const std::string& key, std::shared_ptr<const V> value) {
    MutexLock lock(&mutex_);
    if (map_.find(key) != map_.end()) return;
    order_.push_front(key);
    map_.emplace(key, std::make_pair(std::move(value), order_.begin()));
    while (map_.size() > capacity_) {
      map_.erase(order_.back());
      order_.pop_back();
    }
  }

  void Erase(const std::string& key) {
    MutexLock lock(&mutex_);
    auto it = map_.find(key);
    if (it == map_.end()) return;
    order_.erase(it->second.second);
    map_.erase(it);
  }

 private:
  const size_t capacity_;
  Mutex mutex_;
  std::list<std::string> order_ GUARDED_BY(mutex_);  // most recent first
  std::unordered_map<std::string,
                     std::pair<std::shared_ptr<const V>, std::list<std::string>::iterator>>
      map_ GUARDED_BY(mutex_);
};

}  // namespace keyfoundry::keyvault

#endif  // KEYFOUNDRY_KEYVAULT_LRU_CACHE_H_
