// keyfoundryd assembled: the data directory, stores, TLS material, identity and the HTTPS
// server with every route. main.cc runs one; integration tests may too.
//
// Start order (each step needs the ones before it): data directory (tenant, subscription,
// admin password) -> metadata and blob stores -> TLS (CA and server certificate) -> the
// token-signing key -> directory (the admin user) and authorizer (the admin's roles) -> the
// HTTPS server (listening; handlers answer 503 until ready) -> token issuer and verifier (they
// need the port) -> ready -> DATA_DIR/port written.
#ifndef KEYFOUNDRY_SERVER_APP_H_
#define KEYFOUNDRY_SERVER_APP_H_

#include <chrono>
#include <memory>
#include <optional>
#include <string_view>

#include "common/status.h"
#include "server/config.h"
#include "server/data_dir.h"

namespace keyfoundry::server {

class App {
 public:
  // `env_admin_password` is $KEYFOUNDRY_ADMIN_PASSWORD, if set.
  static StatusOr<std::unique_ptr<App>> Start(const Config& config,
                                              std::optional<std::string_view> env_admin_password);
  ~App();

  uint16_t port() const;
  const DataDir& data_dir() const;
  std::string base_url() const;
  // Stops accepting, lets requests in progress finish for up to `drain`, then closes.
  void Stop(std::chrono::milliseconds drain);

  class Impl;

 private:
  explicit App(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace keyfoundry::server

#endif  // KEYFOUNDRY_SERVER_APP_H_
