// A mutex that clang's -Wthread-safety understands, so the locking rules written beside the
// data (GUARDED_BY) are checked at compile time (STYLE habit 13). libstdc++'s std::mutex carries
// no annotations, hence this thin wrapper.
#ifndef KEYFOUNDRY_COMMON_MUTEX_H_
#define KEYFOUNDRY_COMMON_MUTEX_H_

#include <mutex>

#if defined(__clang__)
#define KF_THREAD_ANNOTATION_(x) __attribute__((x))
#else
#define KF_THREAD_ANNOTATION_(x)
#endif

#define CAPABILITY(x) KF_THREAD_ANNOTATION_(capability(x))
#define SCOPED_CAPABILITY KF_THREAD_ANNOTATION_(scoped_lockable)
#define GUARDED_BY(x) KF_THREAD_ANNOTATION_(guarded_by(x))
#define ACQUIRE(...) KF_THREAD_ANNOTATION_(acquire_capability(__VA_ARGS__))
#define RELEASE(...) KF_THREAD_ANNOTATION_(release_capability(__VA_ARGS__))

namespace keyfoundry {

class CAPABILITY("mutex") Mutex {
 public:
  void Lock() ACQUIRE() { mu_.lock(); }
  void Unlock() RELEASE() { mu_.unlock(); }

 private:
  std::mutex mu_;
};

// Holds a Mutex for its scope.
class SCOPED_CAPABILITY MutexLock {
 public:
  explicit MutexLock(Mutex* mu) ACQUIRE(mu) : mu_(mu) { mu_->Lock(); }
  ~MutexLock() RELEASE() { mu_->Unlock(); }
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

 private:
  Mutex* const mu_;
};

}  // namespace keyfoundry

#endif  // KEYFOUNDRY_COMMON_MUTEX_H_
