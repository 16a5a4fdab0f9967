#include "hsm/pkcs11/pkcs11_session_pool.h"

namespace keyfoundry::hsm {
namespace {

// Lets std::condition_variable_any release and take again a Mutex that the waiting thread
// holds through a MutexLock.
class CondVarLock {
 public:
  explicit CondVarLock(Mutex* mu) : mu_(mu) {}
  void lock() ACQUIRE(mu_) { mu_->Lock(); }
  void unlock() RELEASE(mu_) { mu_->Unlock(); }

 private:
  Mutex* const mu_;
};

bool IsLoggedIn(CK_STATE state) {
  return state == CKS_RO_USER_FUNCTIONS || state == CKS_RW_USER_FUNCTIONS;
}

}  // namespace

Pkcs11Lease::~Pkcs11Lease() {
  if (pool_ != nullptr) pool_->GiveBack(session_, fate_);
}

CK_FUNCTION_LIST* Pkcs11Lease::functions() const { return pool_->functions(); }

void Pkcs11Lease::Note(CK_RV rv) {
  switch (rv) {
    case CKR_SESSION_HANDLE_INVALID:
    case CKR_SESSION_CLOSED:
    case CKR_DEVICE_REMOVED:
    case CKR_TOKEN_NOT_PRESENT:
      fate_ = Fate::kLost;
      return;
    case CKR_USER_NOT_LOGGED_IN:
      if (fate_ == Fate::kKeep) fate_ = Fate::kRelogin;
      return;
    default:  // CK_RV is an open set of numbers; the rest leave the session usable
      return;
  }
}

Status Pkcs11Lease::Check(std::string_view function, CK_RV rv) {
  Note(rv);
  return Pkcs11Error(function, rv);
}

void Pkcs11Lease::Discard() {
  if (fate_ != Fate::kLost) fate_ = Fate::kDiscard;
}

bool Pkcs11Lease::ShouldRetry() const { return fate_ == Fate::kLost || fate_ == Fate::kRelogin; }

Pkcs11SessionPool::Pkcs11SessionPool(CK_FUNCTION_LIST* functions, CK_SLOT_ID slot,
                                     SecretBytes user_pin, size_t max_sessions)
    : functions_(functions),
      slot_(slot),
      user_pin_(std::move(user_pin)),
      max_sessions_(max_sessions) {}

Pkcs11SessionPool::~Pkcs11SessionPool() {
  MutexLock lock(&mu_);
  // Each session is closed on its own: C_CloseAllSessions would also end the sessions of
  // another provider using the same token in this process.
  for (CK_SESSION_HANDLE session : idle_) (void)functions_->C_CloseSession(session);
  idle_.clear();
}

StatusOr<Pkcs11Lease> Pkcs11SessionPool::Acquire() {
  {
    MutexLock lock(&mu_);
    while (idle_.empty() && open_ >= max_sessions_) {
      CondVarLock waiter(&mu_);
      session_returned_.wait(waiter);
    }
    if (!idle_.empty()) {
      CK_SESSION_HANDLE session = idle_.back();
      idle_.pop_back();
      return Lease(this, session);
    }
    ++open_;  // reserve the place while the session opens, without the lock
  }
  StatusOr<CK_SESSION_HANDLE> session = OpenSession();
  if (!session.ok()) {
    {
      MutexLock lock(&mu_);
      --open_;
    }
    session_returned_.notify_one();
    return session.status();
  }
  return Lease(this, *session);
}

StatusOr<CK_SESSION_HANDLE> Pkcs11SessionPool::OpenSession() {
  CK_SESSION_HANDLE session = CK_INVALID_HANDLE;
  CK_RV rv = functions_->C_OpenSession(slot_, CKF_SERIAL_SESSION | CKF_RW_SESSION, nullptr, nullptr,
                                       &session);
  if (rv != CKR_OK) return Pkcs11Error("C_OpenSession", rv);
  Status login = LogIn(session);
  if (!login.ok()) {
    (void)functions_->C_CloseSession(session);
    return login;
  }
  return session;
}

Status Pkcs11SessionPool::LogIn(CK_SESSION_HANDLE session) {
  CK_SESSION_INFO info{};
  CK_RV rv = functions_->C_GetSessionInfo(session, &info);
  if (rv != CKR_OK) return Pkcs11Error("C_GetSessionInfo", rv);
  if (IsLoggedIn(info.state)) return OkStatus();
  ByteView pin = user_pin_.Reveal(InsecureSecretAccess());
  rv = functions_->C_Login(session, CKU_USER, const_cast<CK_UTF8CHAR*>(pin.data()), pin.size());
  if (rv == CKR_USER_ALREADY_LOGGED_IN) return OkStatus();  // another thread was first
  if (rv == CKR_OK) logins_.fetch_add(1, std::memory_order_acq_rel);
  return Pkcs11Error("C_Login", rv);
}

void Pkcs11SessionPool::GiveBack(CK_SESSION_HANDLE session, Lease::Fate fate) {
  if (fate == Lease::Fate::kRelogin && !LogIn(session).ok()) fate = Lease::Fate::kDiscard;
  if (fate == Lease::Fate::kDiscard) (void)functions_->C_CloseSession(session);
  {
    MutexLock lock(&mu_);
    switch (fate) {
      case Lease::Fate::kKeep:
      case Lease::Fate::kRelogin:
        idle_.push_back(session);
        break;
      case Lease::Fate::kDiscard:
        --open_;
        break;
      case Lease::Fate::kLost:
        // The token dropped this session; the idle ones most likely went with it. Forget them
        // all; any that survived is closed with the others when the module is finalised.
        open_ -= 1 + idle_.size();
        idle_.clear();
        break;
    }
  }
  session_returned_.notify_all();
}

}  // namespace keyfoundry::hsm
