#include "hsm/pkcs11/pkcs11_module.h"

#include <dlfcn.h>

#include <cstdio>
#include <map>
#include <utility>

#include "common/mutex.h"

namespace keyfoundry::hsm {
namespace {

struct Registry {
  struct Entry {
    CK_FUNCTION_LIST* functions;
    int references;
    bool finalize;  // false when someone else in the process had initialised the module
  };
  Mutex mu;
  std::map<void*, Entry> entries GUARDED_BY(mu);  // by dlopen handle
};

// Never destroyed, so a provider destroyed during static destruction still finds it.
Registry& GetRegistry() {
  static Registry* const registry = new Registry;
  return *registry;
}

std::string DlError() {
  const char* error = ::dlerror();
  return error != nullptr ? error : "unknown error";
}

}  // namespace

StatusOr<Pkcs11Module> Pkcs11Module::Acquire(const std::string& path) {
  Registry& registry = GetRegistry();
  MutexLock lock(&registry.mu);
  (void)::dlerror();
  void* library = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
  if (library == nullptr) {
    return UnavailableError("cannot load the PKCS#11 module: " + DlError());
  }
  auto it = registry.entries.find(library);
  if (it != registry.entries.end()) {
    ++it->second.references;
    ::dlclose(library);  // the entry holds the library open already
    return Pkcs11Module(library, it->second.functions);
  }

  void* symbol = ::dlsym(library, "C_GetFunctionList");
  if (symbol == nullptr) {
    ::dlclose(library);
    return UnavailableError("the PKCS#11 module has no C_GetFunctionList");
  }
  auto get_function_list = reinterpret_cast<CK_C_GetFunctionList>(symbol);
  CK_FUNCTION_LIST* functions = nullptr;
  CK_RV rv = get_function_list(&functions);
  if (rv != CKR_OK || functions == nullptr) {
    ::dlclose(library);
    return UnavailableError("C_GetFunctionList failed: " + CkrName(rv));
  }

  CK_C_INITIALIZE_ARGS args{};
  args.flags = CKF_OS_LOCKING_OK;  // the module may use the OS's threads and locks
  rv = functions->C_Initialize(&args);
  bool finalize = true;
  if (rv == CKR_CRYPTOKI_ALREADY_INITIALIZED) {
    // Initialised by other code in this process (not through this registry): use it, and
    // leave finalising to its owner.
    finalize = false;
  } else if (rv != CKR_OK) {
    ::dlclose(library);
    return UnavailableError("C_Initialize failed: " + CkrName(rv));
  }
  registry.entries.emplace(library, Registry::Entry{functions, 1, finalize});
  return Pkcs11Module(library, functions);
}

Pkcs11Module::Pkcs11Module(Pkcs11Module&& other) noexcept
    : library_(std::exchange(other.library_, nullptr)),
      functions_(std::exchange(other.functions_, nullptr)) {}

Pkcs11Module& Pkcs11Module::operator=(Pkcs11Module&& other) noexcept {
  if (this != &other) {
    Release();
    library_ = std::exchange(other.library_, nullptr);
    functions_ = std::exchange(other.functions_, nullptr);
  }
  return *this;
}

Pkcs11Module::~Pkcs11Module() { Release(); }

void Pkcs11Module::Release() {
  if (library_ == nullptr) return;
  Registry& registry = GetRegistry();
  MutexLock lock(&registry.mu);
  auto it = registry.entries.find(library_);
  if (it != registry.entries.end() && --it->second.references == 0) {
    if (it->second.finalize) (void)it->second.functions->C_Finalize(nullptr);
    registry.entries.erase(it);
    ::dlclose(library_);
  }
  library_ = nullptr;
  functions_ = nullptr;
}

std::string CkrName(CK_RV rv) {
  switch (rv) {
#define KF_CKR_CASE(name) \
  case name:              \
    return #name;
    KF_CKR_CASE(CKR_OK)
    KF_CKR_CASE(CKR_CANCEL)
    KF_CKR_CASE(CKR_HOST_MEMORY)
    KF_CKR_CASE(CKR_SLOT_ID_INVALID)
    KF_CKR_CASE(CKR_GENERAL_ERROR)
    KF_CKR_CASE(CKR_FUNCTION_FAILED)
    KF_CKR_CASE(CKR_ARGUMENTS_BAD)
    KF_CKR_CASE(CKR_CANT_LOCK)
    KF_CKR_CASE(CKR_ATTRIBUTE_READ_ONLY)
    KF_CKR_CASE(CKR_ATTRIBUTE_SENSITIVE)
    KF_CKR_CASE(CKR_ATTRIBUTE_TYPE_INVALID)
    KF_CKR_CASE(CKR_ATTRIBUTE_VALUE_INVALID)
    KF_CKR_CASE(CKR_ACTION_PROHIBITED)
    KF_CKR_CASE(CKR_DATA_INVALID)
    KF_CKR_CASE(CKR_DATA_LEN_RANGE)
    KF_CKR_CASE(CKR_DEVICE_ERROR)
    KF_CKR_CASE(CKR_DEVICE_MEMORY)
    KF_CKR_CASE(CKR_DEVICE_REMOVED)
    KF_CKR_CASE(CKR_ENCRYPTED_DATA_INVALID)
    KF_CKR_CASE(CKR_ENCRYPTED_DATA_LEN_RANGE)
    KF_CKR_CASE(CKR_FUNCTION_CANCELED)
    KF_CKR_CASE(CKR_FUNCTION_NOT_PARALLEL)
    KF_CKR_CASE(CKR_FUNCTION_NOT_SUPPORTED)
    KF_CKR_CASE(CKR_KEY_HANDLE_INVALID)
    KF_CKR_CASE(CKR_KEY_SIZE_RANGE)
    KF_CKR_CASE(CKR_KEY_TYPE_INCONSISTENT)
    KF_CKR_CASE(CKR_KEY_FUNCTION_NOT_PERMITTED)
    KF_CKR_CASE(CKR_KEY_UNEXTRACTABLE)
    KF_CKR_CASE(CKR_MECHANISM_INVALID)
    KF_CKR_CASE(CKR_MECHANISM_PARAM_INVALID)
    KF_CKR_CASE(CKR_OBJECT_HANDLE_INVALID)
    KF_CKR_CASE(CKR_OPERATION_ACTIVE)
    KF_CKR_CASE(CKR_OPERATION_NOT_INITIALIZED)
    KF_CKR_CASE(CKR_PIN_INCORRECT)
    KF_CKR_CASE(CKR_PIN_INVALID)
    KF_CKR_CASE(CKR_PIN_LEN_RANGE)
    KF_CKR_CASE(CKR_PIN_EXPIRED)
    KF_CKR_CASE(CKR_PIN_LOCKED)
    KF_CKR_CASE(CKR_SESSION_CLOSED)
    KF_CKR_CASE(CKR_SESSION_COUNT)
    KF_CKR_CASE(CKR_SESSION_HANDLE_INVALID)
    KF_CKR_CASE(CKR_SESSION_PARALLEL_NOT_SUPPORTED)
    KF_CKR_CASE(CKR_SESSION_READ_ONLY)
    KF_CKR_CASE(CKR_SESSION_EXISTS)
    KF_CKR_CASE(CKR_SESSION_READ_ONLY_EXISTS)
    KF_CKR_CASE(CKR_SESSION_READ_WRITE_SO_EXISTS)
    KF_CKR_CASE(CKR_SIGNATURE_INVALID)
    KF_CKR_CASE(CKR_SIGNATURE_LEN_RANGE)
    KF_CKR_CASE(CKR_TEMPLATE_INCOMPLETE)
    KF_CKR_CASE(CKR_TEMPLATE_INCONSISTENT)
    KF_CKR_CASE(CKR_TOKEN_NOT_PRESENT)
    KF_CKR_CASE(CKR_TOKEN_NOT_RECOGNIZED)
    KF_CKR_CASE(CKR_TOKEN_WRITE_PROTECTED)
    KF_CKR_CASE(CKR_USER_ALREADY_LOGGED_IN)
    KF_CKR_CASE(CKR_USER_NOT_LOGGED_IN)
    KF_CKR_CASE(CKR_USER_PIN_NOT_INITIALIZED)
    KF_CKR_CASE(CKR_USER_TYPE_INVALID)
    KF_CKR_CASE(CKR_USER_ANOTHER_ALREADY_LOGGED_IN)
    KF_CKR_CASE(CKR_USER_TOO_MANY_TYPES)
    KF_CKR_CASE(CKR_RANDOM_NO_RNG)
    KF_CKR_CASE(CKR_DOMAIN_PARAMS_INVALID)
    KF_CKR_CASE(CKR_CURVE_NOT_SUPPORTED)
    KF_CKR_CASE(CKR_BUFFER_TOO_SMALL)
    KF_CKR_CASE(CKR_INFORMATION_SENSITIVE)
    KF_CKR_CASE(CKR_CRYPTOKI_NOT_INITIALIZED)
    KF_CKR_CASE(CKR_CRYPTOKI_ALREADY_INITIALIZED)
    KF_CKR_CASE(CKR_FIPS_SELF_TEST_FAILED)
    KF_CKR_CASE(CKR_PIN_TOO_WEAK)
    KF_CKR_CASE(CKR_PUBLIC_KEY_INVALID)
    KF_CKR_CASE(CKR_FUNCTION_REJECTED)
#undef KF_CKR_CASE
    default:  // CK_RV is an open set of numbers, not an enum
      break;
  }
  char text[32];
  (void)std::snprintf(text, sizeof(text), "CKR_0x%lx", static_cast<unsigned long>(rv));
  return text;
}

Status Pkcs11Error(std::string_view function, CK_RV rv) {
  if (rv == CKR_OK) return OkStatus();
  std::string message = std::string(function) + " failed: " + CkrName(rv);
  switch (rv) {
    case CKR_PIN_INCORRECT:
    case CKR_PIN_LOCKED:
    case CKR_PIN_EXPIRED:
    case CKR_ATTRIBUTE_SENSITIVE:
    case CKR_KEY_UNEXTRACTABLE:
      return PermissionDeniedError(std::move(message));
    case CKR_DEVICE_ERROR:
    case CKR_DEVICE_REMOVED:
    case CKR_TOKEN_NOT_PRESENT:
    case CKR_TOKEN_NOT_RECOGNIZED:
    case CKR_SLOT_ID_INVALID:
    case CKR_SESSION_HANDLE_INVALID:
    case CKR_SESSION_CLOSED:
    case CKR_SESSION_COUNT:
    case CKR_USER_NOT_LOGGED_IN:
    case CKR_CRYPTOKI_NOT_INITIALIZED:
    case CKR_FUNCTION_CANCELED:
    case CKR_CANT_LOCK:
    case CKR_FIPS_SELF_TEST_FAILED:
      return UnavailableError(std::move(message));
    case CKR_ARGUMENTS_BAD:
    case CKR_ATTRIBUTE_TYPE_INVALID:
    case CKR_ATTRIBUTE_VALUE_INVALID:
    case CKR_ATTRIBUTE_READ_ONLY:
    case CKR_TEMPLATE_INCOMPLETE:
    case CKR_TEMPLATE_INCONSISTENT:
    case CKR_MECHANISM_INVALID:
    case CKR_MECHANISM_PARAM_INVALID:
    case CKR_DATA_INVALID:
    case CKR_DATA_LEN_RANGE:
    case CKR_KEY_SIZE_RANGE:
    case CKR_KEY_TYPE_INCONSISTENT:
    case CKR_KEY_FUNCTION_NOT_PERMITTED:
    case CKR_DOMAIN_PARAMS_INVALID:
    case CKR_CURVE_NOT_SUPPORTED:
    case CKR_PUBLIC_KEY_INVALID:
    case CKR_PIN_INVALID:
    case CKR_PIN_LEN_RANGE:
    case CKR_PIN_TOO_WEAK:
    case CKR_USER_TYPE_INVALID:
      return InvalidArgumentError(std::move(message));
    case CKR_OBJECT_HANDLE_INVALID:
    case CKR_KEY_HANDLE_INVALID:
      return NotFoundError(std::move(message));
    case CKR_ENCRYPTED_DATA_INVALID:
    case CKR_ENCRYPTED_DATA_LEN_RANGE:
      return DataLossError(std::move(message));
    case CKR_HOST_MEMORY:
    case CKR_DEVICE_MEMORY:
      return ResourceExhaustedError(std::move(message));
    case CKR_TOKEN_WRITE_PROTECTED:
    case CKR_SESSION_READ_ONLY:
    case CKR_SESSION_EXISTS:
    case CKR_SESSION_READ_ONLY_EXISTS:
    case CKR_SESSION_READ_WRITE_SO_EXISTS:
    case CKR_USER_PIN_NOT_INITIALIZED:
    case CKR_USER_ALREADY_LOGGED_IN:
    case CKR_USER_ANOTHER_ALREADY_LOGGED_IN:
    case CKR_USER_TOO_MANY_TYPES:
    case CKR_CRYPTOKI_ALREADY_INITIALIZED:
    case CKR_ACTION_PROHIBITED:
    case CKR_FUNCTION_REJECTED:
      return FailedPreconditionError(std::move(message));
    case CKR_FUNCTION_NOT_SUPPORTED:
    case CKR_FUNCTION_NOT_PARALLEL:
      return UnimplementedError(std::move(message));
    default:  // CK_RV is an open set of numbers, not an enum
      return InternalError(std::move(message));
  }
}

}  // namespace keyfoundry::hsm
