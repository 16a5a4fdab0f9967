// Persistence of the deployment's token-signing key (ES256, P-256).
//
// The key lives in one file, a private JWK (RFC 7517: {"kty":"EC","crv":"P-256","x","y","d"}),
// mode 0600, written atomically (temporary file, fsync, rename, fsync of the directory) on the
// first start and read on every later one. Its key id is its thumbprint (tokens.h), so tokens
// issued before a restart still verify after it.
//
// KNOWN WEAKNESS: the private key is in plaintext on disk, protected only by the file mode and
// the data directory's 0700. Anyone who can read it (root, a backup, a stolen disk) can mint
// tokens for any principal of the deployment until the key is replaced. The HSM work moves it
// into the PKCS#11 token (or wraps it under the HSM root key); until then, treat the data
// directory as a secret. Replacing the file (and restarting) revokes every outstanding token.
//
// Thread safety: call at start-up, from one thread.
#ifndef KEYFOUNDRY_IDENTITY_SIGNING_KEY_H_
#define KEYFOUNDRY_IDENTITY_SIGNING_KEY_H_

#include <filesystem>

#include "common/status.h"
#include "crypto/ecdsa.h"

namespace keyfoundry::identity {

// Reads the key at `path`. NotFound when there is no file; FailedPrecondition when it is not a
// regular file or is readable or writable by group or others (fix with chmod 600); DataLoss
// when it does not hold a P-256 private JWK.
StatusOr<crypto::EcPrivateKey> LoadSigningKey(const std::filesystem::path& path);

// Writes `key` to `path` (mode 0600), replacing any file there.
Status SaveSigningKey(const crypto::EcPrivateKey& key, const std::filesystem::path& path);

// LoadSigningKey, or on NotFound a new random P-256 key saved with SaveSigningKey.
StatusOr<crypto::EcPrivateKey> LoadOrCreateSigningKey(const std::filesystem::path& path);

}  // namespace keyfoundry::identity

#endif  // KEYFOUNDRY_IDENTITY_SIGNING_KEY_H_
