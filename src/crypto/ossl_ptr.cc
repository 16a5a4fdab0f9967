#include "crypto/ossl_ptr.h"

#include <openssl/err.h>

namespace keyfoundry::crypto {

Status OsslError(StatusCode code, std::string what) {
  unsigned long err = ERR_peek_last_error();
  if (err != 0) {
    const char* reason = ERR_reason_error_string(err);
    if (reason != nullptr) {
      what += " (";
      what += reason;
      what += ")";
    }
  }
  ERR_clear_error();
  return Status(code, std::move(what));
}

void ClearOsslErrors() { ERR_clear_error(); }

}  // namespace keyfoundry::crypto
