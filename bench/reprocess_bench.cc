// Reprocessing throughput (BRIEF §7): rewrap objects/s over many small objects, and re-encrypt
// MB/s over large ones, through the same FileStore::Reprocess that the reprocessing operation
// runs, on the real components of the embedded default (SQLite in WAL mode, the file blob
// store, AccountKeys over SoftHSM2). bench/reprocess_bench.sh runs it beside
// `openssl speed -evp aes-256-gcm` and prints the ratios for docs/benchmarks.md.
//
//   reprocess_bench --dir DIR [--objects 1000000] [--object-bytes 256] [--large-mib 1024]
//                   [--threads 4]
//
// Steps: N small objects are uploaded to one account (from `threads` threads, so their commits
// are grouped) and large-mib MiB in 64 MiB files to another; each account's service-managed key
// is rotated; then the small objects are rewrapped and the large ones re-encrypted, one page
// after another as the operation does (one thread), each timed alone. Prints one JSON object.
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "common/bytes.h"
#include "encryption/account_keys.h"
#include "foundry/files.h"
#include "storage/files/file_blob_store.h"
#include "storage/sqlite/sqlite_metadata_store.h"
#include "support/softhsm.h"

namespace keyfoundry {
namespace {

using Steady = std::chrono::steady_clock;

double Seconds(Steady::time_point since) {
  return std::chrono::duration<double>(Steady::now() - since).count();
}

int64_t PeakRssKib() {
  struct rusage usage {};
  ::getrusage(RUSAGE_SELF, &usage);
  return usage.ru_maxrss;
}

[[noreturn]] void Die(const std::string& what, const Status& status) {
  std::fprintf(stderr, "reprocess_bench: %s: %s\n", what.c_str(), status.ToString().c_str());
  std::exit(1);
}

template <typename T>
T Must(StatusOr<T> value, const std::string& what) {
  if (!value.ok()) Die(what, value.status());
  return *std::move(value);
}

void Must(const Status& status, const std::string& what) {
  if (!status.ok()) Die(what, status);
}

// Moves every file of `account` to its active generation; returns (objects moved, bytes).
std::pair<size_t, uint64_t> ReprocessAll(foundry::FileStore& files, encryption::AccountKeys& keys,
                                         const std::string& account, foundry::ReprocessMode mode,
                                         size_t page_size) {
  const encryption::Generation active = Must(keys.ActiveGeneration(account), "active");
  auto target = Must(keys.Get(account, active.number), "target key");
  std::string cursor;
  size_t moved = 0;
  uint64_t bytes = 0;
  for (bool done = false; !done;) {
    foundry::ReprocessPage page =
        Must(files.Reprocess(account, mode, {}, *target, cursor, page_size), "reprocess");
    moved += page.moved;
    bytes += page.moved_bytes;
    cursor = page.last_id;
    done = page.done;
  }
  return {moved, bytes};
}

int Main(int argc, char** argv) {
  std::string dir;
  size_t objects = 1'000'000;
  size_t object_bytes = 256;
  size_t large_mib = 1024;
  int threads = 4;
  int rewrap_rounds = 1;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    const std::string value = argv[i + 1];
    if (flag == "--dir")
      dir = value;
    else if (flag == "--objects")
      objects = std::stoull(value);
    else if (flag == "--object-bytes")
      object_bytes = std::stoull(value);
    else if (flag == "--large-mib")
      large_mib = std::stoull(value);
    else if (flag == "--threads")
      threads = std::stoi(value);
    else if (flag == "--rewrap-rounds")
      rewrap_rounds = std::max(1, std::stoi(value));
    else {
      std::fprintf(stderr, "reprocess_bench: unknown flag %s\n", flag.c_str());
      return 2;
    }
  }
  if (dir.empty()) {
    std::fprintf(stderr,
                 "usage: reprocess_bench --dir DIR [--objects N] [--object-bytes B] "
                 "[--large-mib M] [--threads T] [--rewrap-rounds R]\n");
    return 2;
  }
  std::unique_ptr<hsm::KeyProvider> hsm = Must(testutil::OpenSoftHsm(dir), "SoftHSM2");
  std::unique_ptr<storage::SqliteMetadataStore> store =
      Must(storage::SqliteMetadataStore::Open(dir + "/metadata.db"), "SQLite");
  std::unique_ptr<storage::FileBlobStore> blobs =
      Must(storage::FileBlobStore::OpenDirectory(dir + "/blobs"), "blobs");
  encryption::AccountKeys keys(
      *store, *hsm, [](std::string_view) -> encryption::VaultClient* { return nullptr; },
      Clock::Real());
  foundry::FileStore files(*store, *blobs, keys);
  const std::string small_account = "bench/small";
  const std::string large_account = "bench/large";
  Must(keys.CreateServiceManaged(small_account), "small account");
  Must(keys.CreateServiceManaged(large_account), "large account");

  // Small objects, from several threads.
  auto start = Steady::now();
  std::atomic<size_t> next{0};
  std::vector<std::thread> uploaders;
  for (int t = 0; t < threads; ++t) {
    uploaders.emplace_back([&] {
      const Bytes content(object_bytes, 0x5a);
      for (size_t i = next++; i < objects; i = next++) {
        auto upload = Must(files.BeginUpload(small_account), "begin");
        Must(upload->Write(content), "write");
        Must(upload->Finish("object.bin", "fine-tune").status(), "finish");
      }
    });
  }
  for (auto& t : uploaders) t.join();
  const double small_upload_s = Seconds(start);

  // Large objects: 64 MiB each.
  start = Steady::now();
  const size_t large_files = std::max<size_t>(1, large_mib / 64);
  {
    const Bytes piece(size_t{1} << 20, 0xa5);
    for (size_t f = 0; f < large_files; ++f) {
      auto upload = Must(files.BeginUpload(large_account), "begin");
      for (int i = 0; i < 64; ++i) Must(upload->Write(piece), "write");
      Must(upload->Finish("large.bin", "fine-tune").status(), "finish");
    }
  }
  const double large_upload_s = Seconds(start);

  Must(keys.RotateServiceManaged(small_account).status(), "rotate");
  Must(keys.RotateServiceManaged(large_account).status(), "rotate");

  start = Steady::now();
  const size_t rewrapped =
      ReprocessAll(files, keys, small_account, foundry::ReprocessMode::kRewrap, 4096).first;
  const double rewrap_s = Seconds(start);
  // Further rounds (rotate, rewrap everything again) show the steady state, on stderr.
  for (int round = 2; round <= rewrap_rounds; ++round) {
    Must(keys.RotateServiceManaged(small_account).status(), "rotate");
    const auto round_start = Steady::now();
    const size_t n =
        ReprocessAll(files, keys, small_account, foundry::ReprocessMode::kRewrap, 4096).first;
    std::fprintf(stderr, "rewrap round %d: %zu objects, %.0f objects/s\n", round, n,
                 static_cast<double>(n) / Seconds(round_start));
  }

  start = Steady::now();
  auto [reencrypted, reencrypted_bytes] =
      ReprocessAll(files, keys, large_account, foundry::ReprocessMode::kReencrypt, 16);
  const double reencrypt_s = Seconds(start);

  std::printf(
      "{\"objects\": %zu, \"object_bytes\": %zu, \"small_upload_per_s\": %.0f, "
      "\"rewrapped\": %zu, \"rewrap_s\": %.3f, \"rewrap_objects_per_s\": %.0f, "
      "\"large_files\": %zu, \"large_upload_mb_per_s\": %.1f, \"reencrypted\": %zu, "
      "\"reencrypt_s\": %.3f, \"reencrypt_mb_per_s\": %.1f, \"peak_rss_mib\": %.1f}\n",
      objects, object_bytes, static_cast<double>(objects) / small_upload_s, rewrapped, rewrap_s,
      static_cast<double>(rewrapped) / rewrap_s, large_files,
      static_cast<double>(large_files * 64 * 1048576) / 1e6 / large_upload_s, reencrypted,
      reencrypt_s, static_cast<double>(reencrypted_bytes) / 1e6 / reencrypt_s,
      static_cast<double>(PeakRssKib()) / 1024.0);
  return rewrapped == objects && reencrypted == large_files ? 0 : 1;
}

}  // namespace
}  // namespace keyfoundry

int main(int argc, char** argv) { return keyfoundry::Main(argc, argv); }
