#include "server/hsm_setup.h"

#include <cstdlib>

#include "common/encoding.h"
#include "common/file_util.h"
#include "crypto/random.h"
#include "hsm/pkcs11/pkcs11_key_provider.h"

namespace keyfoundry::server {
namespace {

// The PIN in `path`, generated there (0600) when the file does not exist.
StatusOr<SecretBytes> LoadOrCreatePin(const std::filesystem::path& path) {
  StatusOr<std::string> existing = ReadFile(path.string());
  if (existing.status().code() == StatusCode::kNotFound) {
    ASSIGN_OR_RETURN(Bytes raw, crypto::RandomBytes(24));
    std::string text = Base64UrlEncode(raw);
    SecureZero(std::span<uint8_t>(raw));
    RETURN_IF_ERROR(WriteFileAtomically(path.string(), text, 0600));
    existing = std::move(text);
  }
  RETURN_IF_ERROR(existing);
  std::string& text = *existing;
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r' || text.back() == ' ')) {
    text.pop_back();
  }
  if (text.empty()) return FailedPreconditionError(path.string() + " is empty");
  SecretBytes pin(AsBytes(text), InsecureSecretAccess());
  SecureZero(std::span<uint8_t>(reinterpret_cast<uint8_t*>(text.data()), text.size()));
  return pin;
}

bool IsSoftHsm(const std::string& module) { return module.find("softhsm") != std::string::npos; }

}  // namespace

StatusOr<std::unique_ptr<hsm::KeyProvider>> OpenHsm(const Config& config,
                                                    const std::filesystem::path& data_dir) {
  const std::filesystem::path dir = data_dir / "hsm";
  std::error_code ec;
  std::filesystem::create_directories(dir / "tokens", ec);
  if (ec) return UnavailableError("cannot create " + dir.string() + ": " + ec.message());
  std::filesystem::permissions(dir, std::filesystem::perms::owner_all,
                               std::filesystem::perm_options::replace, ec);
  if (IsSoftHsm(config.hsm_module) && std::getenv("SOFTHSM2_CONF") == nullptr) {
    const std::string conf = (dir / "softhsm2.conf").string();
    const std::string text =
        "# Written by keyfoundryd: SoftHSM2's token store for this data "
        "directory.\ndirectories.tokendir = " +
        (dir / "tokens").string() + "\nobjectstore.backend = file\nlog.level = ERROR\n";
    RETURN_IF_ERROR(WriteFileAtomically(conf, text, 0600));
    // Read by SoftHSM2 when the module initialises, just below; nothing else reads it.
    ::setenv("SOFTHSM2_CONF", conf.c_str(), 1);  // NOLINT(concurrency-mt-unsafe): start-up
  }
  hsm::Pkcs11Options options;
  options.module_path = config.hsm_module;
  if (!config.hsm_pin.empty()) {
    options.user_pin = SecretBytes(AsBytes(config.hsm_pin), InsecureSecretAccess());
  } else {
    ASSIGN_OR_RETURN(options.user_pin, LoadOrCreatePin(dir / "pin"));
  }
  ASSIGN_OR_RETURN(options.so_pin, LoadOrCreatePin(dir / "so-pin"));
  options.initialize_if_missing = true;
  options.max_sessions = 16;
  ASSIGN_OR_RETURN(auto provider, hsm::Pkcs11KeyProvider::Open(options));
  return std::unique_ptr<hsm::KeyProvider>(std::move(provider));
}

}  // namespace keyfoundry::server
