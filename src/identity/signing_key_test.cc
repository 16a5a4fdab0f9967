#include "identity/signing_key.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>

#include "crypto/jwk.h"
#include "crypto/jwt.h"
#include "support/test_util.h"

namespace keyfoundry::identity {
namespace {

class SigningKeyTest : public testing::Test {
 protected:
  std::string Path(const char* name) const { return dir_.path() + "/" + name; }
  void WriteFile(const std::string& path, std::string_view text, mode_t mode = 0600) {
    std::ofstream(path) << text;
    ASSERT_EQ(::chmod(path.c_str(), mode), 0);
  }

  testutil::ScopedTempDir dir_;
};

TEST_F(SigningKeyTest, CreatedOnceWithMode0600ThenReloaded) {
  const std::string path = Path("token-signing-key.jwk");
  auto created = LoadOrCreateSigningKey(path);
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_EQ(created->curve(), crypto::EcCurve::kP256);
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);

  auto reloaded = LoadOrCreateSigningKey(path);
  ASSERT_TRUE(reloaded.ok()) << reloaded.status();
  EXPECT_EQ(*crypto::JwkThumbprint(*reloaded->PublicKey()),
            *crypto::JwkThumbprint(*created->PublicKey()));
  EXPECT_TRUE(*reloaded->PrivateScalar() == *created->PrivateScalar());
}

TEST_F(SigningKeyTest, LoadRefusesMissingOpenOrForeignFiles) {
  EXPECT_EQ(LoadSigningKey(Path("missing")).status().code(), StatusCode::kNotFound);

  const std::string path = Path("key.jwk");
  ASSERT_TRUE(LoadOrCreateSigningKey(path).ok());
  ASSERT_EQ(::chmod(path.c_str(), 0640), 0);
  EXPECT_EQ(LoadSigningKey(path).status().code(), StatusCode::kFailedPrecondition);
  ASSERT_EQ(::chmod(path.c_str(), 0604), 0);
  EXPECT_EQ(LoadSigningKey(path).status().code(), StatusCode::kFailedPrecondition);
  // LoadOrCreate does not paper over it by making a new key.
  EXPECT_EQ(LoadOrCreateSigningKey(path).status().code(), StatusCode::kFailedPrecondition);

  ASSERT_EQ(::chmod(path.c_str(), 0600), 0);
  const std::string link = Path("link.jwk");
  ASSERT_EQ(::symlink(path.c_str(), link.c_str()), 0);
  EXPECT_FALSE(LoadSigningKey(link).ok());

  EXPECT_EQ(LoadSigningKey(dir_.path()).status().code(), StatusCode::kFailedPrecondition);
}

TEST_F(SigningKeyTest, LoadRefusesWhatIsNotAP256PrivateJwk) {
  const auto p256 = *crypto::EcPrivateKey::Generate(crypto::EcCurve::kP256);
  const auto p384 = *crypto::EcPrivateKey::Generate(crypto::EcCurve::kP384);
  const SecretBytes p384_jwk = *crypto::ToJwk(p384);
  const std::string cases[] = {
      "",
      "not json",
      *crypto::ToJwk(*p256.PublicKey()),  // public only
      std::string(AsStringView(p384_jwk.Reveal(InsecureSecretAccess()))),
      std::string(5000, ' '),
  };
  for (const std::string& text : cases) {
    const std::string path = Path("bad.jwk");
    WriteFile(path, text);
    EXPECT_EQ(LoadSigningKey(path).status().code(), StatusCode::kDataLoss) << text.substr(0, 40);
  }
  EXPECT_EQ(SaveSigningKey(p384, Path("x.jwk")).code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace keyfoundry::identity
