// Opens the deployment's HSM: the PKCS#11 module of the configuration, its token "keyfoundry"
// initialised on first start.
//
// With SoftHSM2 (the embedded default) and no SOFTHSM2_CONF in the environment, the token
// lives in the data directory: DATA_DIR/hsm/softhsm2.conf points SoftHSM2 at
// DATA_DIR/hsm/tokens. The user PIN is the configuration's hsm_pin (KEYFOUNDRY_HSM_PIN) or
// DATA_DIR/hsm/pin; the security officer PIN DATA_DIR/hsm/so-pin. Both are generated on first
// start (32 random base64url characters, mode 0600) and never logged.
#ifndef KEYFOUNDRY_SERVER_HSM_SETUP_H_
#define KEYFOUNDRY_SERVER_HSM_SETUP_H_

#include <filesystem>
#include <memory>

#include "common/status.h"
#include "hsm/key_provider.h"
#include "server/config.h"

namespace keyfoundry::server {

StatusOr<std::unique_ptr<hsm::KeyProvider>> OpenHsm(const Config& config,
                                                    const std::filesystem::path& data_dir);

}  // namespace keyfoundry::server

#endif  // KEYFOUNDRY_SERVER_HSM_SETUP_H_
