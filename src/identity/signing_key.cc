#include "identity/signing_key.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <system_error>
#include <variant>

#include "common/file_util.h"
#include "common/secret_bytes.h"
#include "crypto/jwk.h"

namespace keyfoundry::identity {
namespace {

constexpr size_t kMaxKeyFileSize = 4096;  // a P-256 private JWK is about 200 bytes

Status ErrnoError(const std::string& what, int err) {
  return InternalError(what + ": " + std::generic_category().message(err));
}

// Closes a descriptor at scope exit.
class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

}  // namespace

StatusOr<crypto::EcPrivateKey> LoadSigningKey(const std::filesystem::path& path) {
  const std::string name = path.string();
  // O_NOFOLLOW: the key is a file of ours, never a link planted to point elsewhere.
  Fd fd(::open(name.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (fd.get() < 0) {
    if (errno == ENOENT) return NotFoundError(name + " does not exist");
    return ErrnoError("opening the token signing key " + name, errno);
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return ErrnoError("stat of " + name, errno);
  if (!S_ISREG(st.st_mode)) {
    return FailedPreconditionError("the token signing key " + name + " is not a regular file");
  }
  if ((st.st_mode & 077) != 0) {
    return FailedPreconditionError("the token signing key " + name +
                                   " is accessible to group or others: chmod 600 it");
  }
  if (st.st_size <= 0 || static_cast<size_t>(st.st_size) > kMaxKeyFileSize) {
    return DataLossError("the token signing key " + name + " is empty or too large");
  }
  SecretBytes text(static_cast<size_t>(st.st_size));
  std::span<uint8_t> buffer = text.Mutable(InsecureSecretAccess());
  size_t got = 0;
  while (got < buffer.size()) {
    ssize_t n = ::read(fd.get(), buffer.data() + got, buffer.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoError("reading " + name, errno);
    if (n == 0) return DataLossError("the token signing key " + name + " was truncated");
    got += static_cast<size_t>(n);
  }
  StatusOr<crypto::Jwk> jwk = crypto::ParseJwk(AsStringView(text.Reveal(InsecureSecretAccess())));
  if (!jwk.ok() || !std::holds_alternative<crypto::EcPrivateKey>(*jwk)) {
    return DataLossError("the token signing key " + name + " is not an EC private JWK");
  }
  crypto::EcPrivateKey key = std::get<crypto::EcPrivateKey>(*std::move(jwk));
  if (key.curve() != crypto::EcCurve::kP256) {
    return DataLossError("the token signing key " + name + " is not a P-256 key");
  }
  return key;
}

Status SaveSigningKey(const crypto::EcPrivateKey& key, const std::filesystem::path& path) {
  if (key.curve() != crypto::EcCurve::kP256) {
    return InvalidArgumentError("the token signing key must be a P-256 key");
  }
  ASSIGN_OR_RETURN(SecretBytes jwk, crypto::ToJwk(key));
  return WriteFileAtomically(path.string(), AsStringView(jwk.Reveal(InsecureSecretAccess())), 0600);
}

StatusOr<crypto::EcPrivateKey> LoadOrCreateSigningKey(const std::filesystem::path& path) {
  StatusOr<crypto::EcPrivateKey> loaded = LoadSigningKey(path);
  if (loaded.status().code() != StatusCode::kNotFound) return loaded;
  ASSIGN_OR_RETURN(crypto::EcPrivateKey key,
                   crypto::EcPrivateKey::Generate(crypto::EcCurve::kP256));
  RETURN_IF_ERROR(SaveSigningKey(key, path));
  return key;
}

}  // namespace keyfoundry::identity
