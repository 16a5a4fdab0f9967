#include "server/data_dir.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/encoding.h"
#include "common/file_util.h"
#include "crypto/random.h"

namespace keyfoundry::server {
namespace {

namespace fs = std::filesystem;

Status ErrnoError(const std::string& what) {
  return InternalError(what + ": " + std::strerror(errno));
}

StatusOr<std::optional<std::string>> ReadTrimmed(const fs::path& path) {
  StatusOr<std::string> text = ReadFile(path.string());
  if (text.status().code() == StatusCode::kNotFound) return std::optional<std::string>();
  ASSIGN_OR_RETURN(std::string s, std::move(text));
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) s.pop_back();
  if (s.empty())
    return InternalError(path.string() + " is empty: restore it or remove the directory");
  return std::optional<std::string>(std::move(s));
}

// Reads `name` from the directory, or creates it with `make()` on the first start.
template <typename Make>
StatusOr<std::string> ReadOrCreate(const fs::path& dir, const char* name, mode_t mode, Make make) {
  ASSIGN_OR_RETURN(std::optional<std::string> existing, ReadTrimmed(dir / name));
  if (existing) return *existing;
  ASSIGN_OR_RETURN(std::string value, make());
  RETURN_IF_ERROR(WriteFileAtomically((dir / name).string(), value + "\n", mode));
  return value;
}

}  // namespace

OwnedFd& OwnedFd::operator=(OwnedFd&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = std::exchange(other.fd_, -1);
  }
  return *this;
}

OwnedFd::~OwnedFd() {
  if (fd_ >= 0) ::close(fd_);
}

StatusOr<DataDir> InitDataDir(const fs::path& path,
                              std::optional<std::string_view> env_admin_password) {
  DataDir dir;
  dir.path = path;
  std::error_code ec;
  dir.created = !fs::exists(path / "tenant-id", ec);
  fs::create_directories(path, ec);
  if (ec)
    return InternalError("cannot create the data directory " + path.string() + ": " + ec.message());
  if (::chmod(path.c_str(), 0700) != 0) return ErrnoError("chmod of " + path.string());

  dir.lock = OwnedFd(::open((path / "lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (dir.lock.get() < 0) return ErrnoError("opening the data directory lock");
  if (::flock(dir.lock.get(), LOCK_EX | LOCK_NB) != 0) {
    return FailedPreconditionError("another keyfoundryd is using " + path.string() +
                                   ": stop it or choose another --data-dir");
  }

  auto uuid = [] { return crypto::NewUuid(); };
  ASSIGN_OR_RETURN(dir.tenant_id, ReadOrCreate(path, "tenant-id", 0644, uuid));
  ASSIGN_OR_RETURN(dir.subscription_id, ReadOrCreate(path, "subscription-id", 0644, uuid));
  if (env_admin_password.has_value()) {
    if (env_admin_password->empty()) {
      return InvalidArgumentError("KEYFOUNDRY_ADMIN_PASSWORD is set but empty");
    }
    dir.admin_password = SecretBytes(AsBytes(*env_admin_password), InsecureSecretAccess());
  } else {
    ASSIGN_OR_RETURN(std::string password,
                     ReadOrCreate(path, "admin-password", 0600, []() -> StatusOr<std::string> {
                       ASSIGN_OR_RETURN(Bytes raw, crypto::RandomBytes(18));
                       return Base64UrlEncode(raw);
                     }));
    dir.admin_password = SecretBytes(AsBytes(password), InsecureSecretAccess());
    SecureZero(std::span<uint8_t>(reinterpret_cast<uint8_t*>(password.data()), password.size()));
  }
  return dir;
}

}  // namespace keyfoundry::server
