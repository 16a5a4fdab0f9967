// Test-only: a real SoftHSM2 token in a temporary directory, for tests of code above the HSM
// (the key vault, the key engine). SOFTHSM2_CONF is set for the process, so every provider
// opened afterwards in the test sees this token.
#ifndef KEYFOUNDRY_TESTS_SUPPORT_SOFTHSM_H_
#define KEYFOUNDRY_TESTS_SUPPORT_SOFTHSM_H_

#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <string>

#include "hsm/pkcs11/pkcs11_key_provider.h"

namespace keyfoundry::testutil {

// Opens (initialising on first use) a token whose files live under `dir`/tokens.
inline StatusOr<std::unique_ptr<hsm::KeyProvider>> OpenSoftHsm(const std::string& dir) {
  const std::string conf = dir + "/softhsm2.conf";
  std::filesystem::create_directories(dir + "/tokens");
  std::ofstream(conf) << "directories.tokendir = " << dir
                      << "/tokens\nobjectstore.backend = file\nlog.level = ERROR\n";
  if (::setenv("SOFTHSM2_CONF", conf.c_str(), 1) != 0) {
    return InternalError("cannot set SOFTHSM2_CONF");
  }
  hsm::Pkcs11Options options;
  options.user_pin = SecretBytes(AsBytes("1234"), InsecureSecretAccess());
  options.so_pin = SecretBytes(AsBytes("5678"), InsecureSecretAccess());
  options.initialize_if_missing = true;
  ASSIGN_OR_RETURN(auto provider, hsm::Pkcs11KeyProvider::Open(options));
  return std::unique_ptr<hsm::KeyProvider>(std::move(provider));
}

}  // namespace keyfoundry::testutil

#endif  // KEYFOUNDRY_TESTS_SUPPORT_SOFTHSM_H_
