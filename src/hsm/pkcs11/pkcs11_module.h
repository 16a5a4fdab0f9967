// Pkcs11Module: a PKCS#11 module loaded with dlopen and initialised, shared by every provider
// in the process that names it; and the mapping of CKR_* return values to Status.
//
// C_Initialize and C_Finalize act on the whole process (a second C_Initialize fails with
// CKR_CRYPTOKI_ALREADY_INITIALIZED; C_Finalize ends every session of every user of the
// module). So a module is counted: the first Acquire loads and initialises it, the last
// reference to go finalises it, and a later Acquire starts afresh (SoftHSM2 reads its
// configuration, SOFTHSM2_CONF, again then). Both happen under one process-wide lock, so an
// Acquire never races a finalisation. Modules are keyed by their dlopen handle, so two paths
// to one library share one entry.
//
// The library is loaded RTLD_NODELETE and never unmapped: modules register atexit handlers
// and thread-local destructors (SoftHSM2 through OpenSSL) that must not outlive their code.
//
// This is the only place, with its folder, that includes the PKCS#11 header (p11-kit's
// <p11-kit/pkcs11.h>, in its default compatibility mode: CK_* names as in the standard).
//
// Thread safety: Acquire and the reference's destructor may be called from any thread. The
// function list is the module's own, which is thread-safe (CKF_OS_LOCKING_OK).
#ifndef KEYFOUNDRY_HSM_PKCS11_PKCS11_MODULE_H_
#define KEYFOUNDRY_HSM_PKCS11_PKCS11_MODULE_H_

#include <p11-kit/pkcs11.h>

#include <string>
#include <string_view>

#include "common/status.h"

namespace keyfoundry::hsm {

// One counted reference to an initialised module. Move-only; the last one finalises.
class Pkcs11Module {
 public:
  // Loads (dlopen) and initialises the module at `path` (C_Initialize with
  // CKF_OS_LOCKING_OK), or takes another reference to it if it is already. Unavailable when it
  // cannot be loaded or initialised.
  static StatusOr<Pkcs11Module> Acquire(const std::string& path);

  Pkcs11Module(Pkcs11Module&& other) noexcept;
  Pkcs11Module& operator=(Pkcs11Module&& other) noexcept;
  Pkcs11Module(const Pkcs11Module&) = delete;
  Pkcs11Module& operator=(const Pkcs11Module&) = delete;
  ~Pkcs11Module();

  CK_FUNCTION_LIST* functions() const { return functions_; }

 private:
  Pkcs11Module(void* library, CK_FUNCTION_LIST* functions)
      : library_(library), functions_(functions) {}
  void Release();

  void* library_ = nullptr;  // the dlopen handle, the key of the process-wide registry
  CK_FUNCTION_LIST* functions_ = nullptr;
};

// "CKR_PIN_INCORRECT", or "CKR_0x%lx" for a code without a name here.
std::string CkrName(CK_RV rv);

// The Status for `rv` returned by PKCS#11 function `function` (OK for CKR_OK). The message
// names the function and the code, never data:
//   PermissionDenied   wrong, locked or expired PIN; a sensitive attribute
//   Unavailable        the device, the token, the session or the login is gone
//   InvalidArgument    arguments, attributes, mechanisms, data sizes the token refuses
//   NotFound           an object handle that names nothing
//   DataLoss           a ciphertext the token cannot decrypt
//   ResourceExhausted  host or device memory
//   FailedPrecondition token state (write-protected, PIN not initialised, ...)
//   Unimplemented      a function the module does not offer
//   Internal           anything else
Status Pkcs11Error(std::string_view function, CK_RV rv);

}  // namespace keyfoundry::hsm

#endif  // KEYFOUNDRY_HSM_PKCS11_PKCS11_MODULE_H_
