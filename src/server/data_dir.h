// The data directory of one keyfoundryd deployment (BRIEF §9).
//
// The first start creates it (mode 0700) with the deployment's identity: `tenant-id`,
// `subscription-id` and, unless $KEYFOUNDRY_ADMIN_PASSWORD is set, a generated
// `admin-password` (mode 0600). Later starts read the same values back. Each file is written
// to a temporary name, fsync'd and renamed, so a crash leaves either no file or a whole one.
// A lock (`DIR/lock`, flock) keeps two servers off one directory.
//
// Thread safety: InitDataDir is called once at start-up, before any thread uses the result.
#ifndef KEYFOUNDRY_SERVER_DATA_DIR_H_
#define KEYFOUNDRY_SERVER_DATA_DIR_H_

#include <filesystem>
#include <optional>
#include <string>
#include <utility>

#include "common/secret_bytes.h"
#include "common/status.h"

namespace keyfoundry::server {

// An open file descriptor, closed on destruction.
class OwnedFd {
 public:
  OwnedFd() = default;
  explicit OwnedFd(int fd) : fd_(fd) {}
  OwnedFd(OwnedFd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  OwnedFd& operator=(OwnedFd&& other) noexcept;
  ~OwnedFd();
  int get() const { return fd_; }

 private:
  int fd_ = -1;
};

struct DataDir {
  std::filesystem::path path;
  std::string tenant_id;
  std::string subscription_id;
  SecretBytes admin_password;
  bool created = false;  // true on the first start
  OwnedFd lock;          // the flock on DIR/lock, held while this lives
};

// `env_admin_password` is the value of $KEYFOUNDRY_ADMIN_PASSWORD, if set.
StatusOr<DataDir> InitDataDir(const std::filesystem::path& path,
                              std::optional<std::string_view> env_admin_password);

}  // namespace keyfoundry::server

#endif  // KEYFOUNDRY_SERVER_DATA_DIR_H_
