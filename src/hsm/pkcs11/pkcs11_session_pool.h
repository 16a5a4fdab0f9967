// Pkcs11SessionPool: the PKCS#11 sessions of one provider, shared by its worker threads.
//
// A PKCS#11 session runs one operation at a time (C_DecryptInit .. C_Decrypt), so each
// operation leases a session of its own and gives it back when done. The pool holds at most
// `max_sessions` sessions, opened lazily (read-write, so token objects can be created); a
// thread that finds all of them leased waits for one to come back.
//
// Login: PKCS#11 login belongs to the application, not to a session: once the user is logged
// in, every session of the token is, until the last session closes. The pool logs in on every
// session it opens that finds itself not logged in (CKR_USER_ALREADY_LOGGED_IN is success), so
// it recovers when the token has dropped every session (a token reset, C_CloseAllSessions);
// that is why it keeps the user PIN. A login refused with CKR_PIN_INCORRECT is PermissionDenied.
//
// What a failed call does to its session (Pkcs11Lease::Check sees every return value):
//   - CKR_SESSION_HANDLE_INVALID, CKR_SESSION_CLOSED, CKR_DEVICE_REMOVED, CKR_TOKEN_NOT_PRESENT:
//     the session is gone, and so, most likely, are the idle ones (the token dropped them all).
//     The lease and every idle session are forgotten (not closed: the module may already have
//     reused their numbers), and Run retries the operation once on a fresh session.
//   - CKR_USER_NOT_LOGGED_IN: the login was lost; the session logs in again before going back,
//     and Run retries once.
//   - a lease Discard()ed because an operation may still be active on it (a CKR_BUFFER_TOO_SMALL
//     or an abandoned size query) is closed rather than given back.
//
// Thread safety: Acquire, Run and lease destruction may be called from many threads at once.
// Every lease must be given back before the pool is destroyed; the destructor closes the idle
// sessions (the module must still be initialised then).
#ifndef KEYFOUNDRY_HSM_PKCS11_PKCS11_SESSION_POOL_H_
#define KEYFOUNDRY_HSM_PKCS11_PKCS11_SESSION_POOL_H_

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <string_view>
#include <utility>
#include <vector>

#include "common/mutex.h"
#include "common/secret_bytes.h"
#include "common/status.h"
#include "hsm/pkcs11/pkcs11_module.h"

namespace keyfoundry::hsm {

class Pkcs11SessionPool;

// One session leased from a Pkcs11SessionPool. Move-only; gives the session back (or drops it)
// when destroyed.
class Pkcs11Lease {
 public:
  Pkcs11Lease(Pkcs11Lease&& other) noexcept
      : pool_(std::exchange(other.pool_, nullptr)), session_(other.session_), fate_(other.fate_) {}
  Pkcs11Lease& operator=(Pkcs11Lease&&) = delete;
  Pkcs11Lease(const Pkcs11Lease&) = delete;
  Pkcs11Lease& operator=(const Pkcs11Lease&) = delete;
  ~Pkcs11Lease();

  CK_SESSION_HANDLE session() const { return session_; }
  CK_FUNCTION_LIST* functions() const;

  // Records the outcome `rv` of `function` on this session and returns its Status
  // (Pkcs11Error).
  Status Check(std::string_view function, CK_RV rv);
  // Records `rv` without building a Status, for callers that map it themselves.
  void Note(CK_RV rv);
  // The session may hold an unfinished operation: close it instead of giving it back.
  void Discard();
  // True when the session was lost or logged out, so the operation is worth a retry.
  bool ShouldRetry() const;

 private:
  friend class Pkcs11SessionPool;
  enum class Fate {
    kKeep = 1,     // back to the idle list
    kDiscard = 2,  // close it
    kLost = 3,     // the token dropped it (and probably every other): forget them all
    kRelogin = 4,  // logged out: log in again, then back to the idle list
  };
  Pkcs11Lease(Pkcs11SessionPool* pool, CK_SESSION_HANDLE session)
      : pool_(pool), session_(session), fate_(Fate::kKeep) {}

  Pkcs11SessionPool* pool_;
  CK_SESSION_HANDLE session_;
  Fate fate_;
};

class Pkcs11SessionPool {
 public:
  using Lease = Pkcs11Lease;

  // `functions` must stay valid (its module initialised) for the pool's lifetime.
  Pkcs11SessionPool(CK_FUNCTION_LIST* functions, CK_SLOT_ID slot, SecretBytes user_pin,
                    size_t max_sessions);
  ~Pkcs11SessionPool();
  Pkcs11SessionPool(const Pkcs11SessionPool&) = delete;
  Pkcs11SessionPool& operator=(const Pkcs11SessionPool&) = delete;

  // An idle session, or a new one (logged in) when fewer than max_sessions are open; otherwise
  // waits for one to be given back. Fails when a new session cannot be opened or logged in.
  StatusOr<Lease> Acquire();

  // Runs `fn(Lease&)` (returning Status or StatusOr) on a leased session; once more, on
  // another session, when the first was lost or logged out.
  template <typename Fn>
  auto Run(Fn&& fn) -> decltype(fn(std::declval<Lease&>())) {
    for (int attempt = 0;; ++attempt) {
      ASSIGN_OR_RETURN(Lease lease, Acquire());
      auto result = fn(lease);
      if (attempt > 0 || !lease.ShouldRetry()) return result;
    }
  }

  CK_FUNCTION_LIST* functions() const { return functions_; }
  CK_SLOT_ID slot() const { return slot_; }
  // How many times a session of this pool logged the user in (CKR_USER_ALREADY_LOGGED_IN not
  // counted). It grows after the token logged the application out, which may have renumbered
  // its private objects.
  uint64_t logins() const { return logins_.load(std::memory_order_acquire); }

 private:
  StatusOr<CK_SESSION_HANDLE> OpenSession();
  // Logs the user in through `session` unless the application is already.
  Status LogIn(CK_SESSION_HANDLE session);
  friend class Pkcs11Lease;
  void GiveBack(CK_SESSION_HANDLE session, Lease::Fate fate);

  CK_FUNCTION_LIST* const functions_;
  const CK_SLOT_ID slot_;
  const SecretBytes user_pin_;
  const size_t max_sessions_;
  std::atomic<uint64_t> logins_{0};

  Mutex mu_;
  std::condition_variable_any session_returned_;  // waited on with mu_ held
  std::vector<CK_SESSION_HANDLE> idle_ GUARDED_BY(mu_);
  size_t open_ GUARDED_BY(mu_) = 0;  // idle, leased, or being opened
};

}  // namespace keyfoundry::hsm

#endif  // KEYFOUNDRY_HSM_PKCS11_PKCS11_SESSION_POOL_H_
