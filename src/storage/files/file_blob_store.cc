// FileBlobStore: layout and crash story.
//
// Layout under the root directory (part of the on-disk format: change it only with a migration):
//   LOCK                 flock'd by the open store, so only one store uses the root at a time
//   tmp/XXXXXX.part      a blob being written (XXXXXX unique, from mkostemps)
//   objects/hh/<name>    a committed blob; hh is the low byte of the 32-bit FNV-1a hash of the
//                        name in lowercase hex, which spreads names sharing a prefix (ids often
//                        do) over 256 directories. OpenDirectory creates all 256.
// A committed blob is never written again: its file is complete when its name appears.
//
// Writing. Create makes tmp/XXXXXX.part. Append fills a buffer of kWriteBufferSize bytes and
// writes it out whenever it is full, and starts the writeback of what it wrote
// (sync_file_range, without waiting), so that a large blob goes to the disk while it arrives
// and Commit's fsync has little left to do. Commit:
//   1. writes the buffer, fsyncs the file and closes it;
//   2. link()s it as objects/hh/<name>: the name appears atomically, and link fails with EEXIST
//      rather than replace a blob another writer committed first;
//   3. fsyncs objects/hh, so the name is durable; only then does Commit return OK;
//   4. unlinks the .part name.
// A writer destroyed before Commit unlinks its .part file.
//
// Crash story. A crash
//   - before step 2 leaves only a .part file, which the next OpenDirectory removes: no blob;
//   - between steps 2 and 3 leaves the name durable or not. If it is, the blob is whole, since
//     step 1 made its bytes durable before the name existed; if not, there is no blob. Commit
//     had not returned, so nothing acknowledged is lost;
//   - after step 3 leaves the blob durable, and perhaps its .part name too: removing that at the
//     next OpenDirectory drops a second link to the same file, not the blob.
// Delete unlinks objects/hh/<name> and fsyncs objects/hh; a crash before the fsync leaves the
// blob whole or gone. OpenDirectory fsyncs the directories it may have created (and the root's
// parent), so the path to every blob is durable before any Commit.
#include "storage/files/file_blob_store.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <system_error>
#include <utility>

#include "common/bytes.h"
#include "common/encoding.h"

namespace keyfoundry::storage {
namespace {

constexpr std::string_view kPartSuffix = ".part";

Status ErrnoError(int err, std::string_view what) {
  std::string message(what);
  message += ": ";
  message += std::generic_category().message(err);
  if (err == ENOSPC || err == EDQUOT) return ResourceExhaustedError(std::move(message));
  return InternalError(std::move(message));
}

class UniqueFd {
 public:
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  UniqueFd& operator=(UniqueFd&&) = delete;
  ~UniqueFd() {
    if (fd_ >= 0) ::close(fd_);
  }

  int get() const { return fd_; }
  int release() { return std::exchange(fd_, -1); }

 private:
  int fd_;
};

Status MakeDir(const std::string& path) {
  if (::mkdir(path.c_str(), 0700) != 0 && errno != EEXIST) {
    return ErrnoError(errno, "creating " + path);
  }
  return OkStatus();
}

// Makes the entries of directory `path` (creations, links, removals) durable.
Status SyncDir(const std::string& path) {
  UniqueFd dir(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dir.get() < 0) return ErrnoError(errno, "opening directory " + path);
  if (::fsync(dir.get()) != 0) return ErrnoError(errno, "syncing directory " + path);
  return OkStatus();
}

Status WriteAll(int fd, ByteView data) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoError(errno, "writing a blob");
    }
    data = data.subspan(static_cast<size_t>(n));
  }
  return OkStatus();
}

// Removes every tmp/*.part file: writes a crash cut short (or leftover links of committed
// blobs, see the crash story).
Status RemovePartialWrites(const std::string& tmp_dir) {
  std::unique_ptr<DIR, decltype(&::closedir)> dir(::opendir(tmp_dir.c_str()), &::closedir);
  if (dir == nullptr) return ErrnoError(errno, "listing " + tmp_dir);
  for (;;) {
    errno = 0;
    const dirent* entry = ::readdir(dir.get());
    if (entry == nullptr) {
      if (errno != 0) return ErrnoError(errno, "listing " + tmp_dir);
      return OkStatus();
    }
    if (!std::string_view(entry->d_name).ends_with(kPartSuffix)) continue;
    if (::unlinkat(::dirfd(dir.get()), entry->d_name, 0) != 0 && errno != ENOENT) {
      return ErrnoError(errno, "removing a partial write from " + tmp_dir);
    }
  }
}

std::string ShardName(uint8_t shard) { return HexEncode(ByteView(&shard, 1)); }

std::string ShardOf(std::string_view blob_name) {
  uint32_t hash = 2166136261u;  // FNV-1a, 32 bits
  for (char c : blob_name) {
    hash ^= static_cast<uint8_t>(c);
    hash *= 16777619u;
  }
  return ShardName(static_cast<uint8_t>(hash));
}

class FileBlobWriter final : public BlobWriter {
 public:
  FileBlobWriter(UniqueFd fd, std::string name, std::string tmp_path, std::string shard_dir,
                 std::string object_path)
      : fd_(std::move(fd)),
        name_(std::move(name)),
        tmp_path_(std::move(tmp_path)),
        shard_dir_(std::move(shard_dir)),
        object_path_(std::move(object_path)) {
    buffer_.reserve(FileBlobStore::kWriteBufferSize);
  }

  ~FileBlobWriter() override {
    if (!committed_) ::unlink(tmp_path_.c_str());
  }

  Status Append(ByteView data) override {
    RETURN_IF_ERROR(CheckWritable());
    while (!data.empty()) {
      size_t n = std::min(data.size(), FileBlobStore::kWriteBufferSize - buffer_.size());
      buffer_.insert(buffer_.end(), data.begin(), data.begin() + static_cast<ptrdiff_t>(n));
      data = data.subspan(n);
      if (buffer_.size() == FileBlobStore::kWriteBufferSize) RETURN_IF_ERROR(Remember(Flush()));
    }
    return OkStatus();
  }

  Status Commit() override {
    RETURN_IF_ERROR(CheckWritable());
    return Remember(Publish());
  }

 private:
  Status CheckWritable() const {
    if (committed_) return FailedPreconditionError("blob " + name_ + " is already committed");
    return error_;
  }

  // Keeps the first failure: the writer is dead from then on.
  Status Remember(Status status) {
    if (error_.ok()) error_ = status;
    return status;
  }

  Status Flush() {
    RETURN_IF_ERROR(WriteAll(fd_.get(), buffer_));
    // A hint: starts writing these pages out without waiting for them (a failure here shows
    // again at Commit's fsync, which is what decides durability).
    (void)::sync_file_range(fd_.get(), static_cast<off_t>(written_),
                            static_cast<off_t>(buffer_.size()), SYNC_FILE_RANGE_WRITE);
    written_ += buffer_.size();
    buffer_.clear();
    return OkStatus();
  }

  // Steps 1 to 4 of the file comment.
  Status Publish() {
    RETURN_IF_ERROR(Flush());
    if (::fsync(fd_.get()) != 0) return ErrnoError(errno, "syncing blob " + name_);
    if (::close(fd_.release()) != 0) return ErrnoError(errno, "closing blob " + name_);
    if (::link(tmp_path_.c_str(), object_path_.c_str()) != 0) {
      if (errno == EEXIST) return AlreadyExistsError("blob " + name_ + " already exists");
      return ErrnoError(errno, "committing blob " + name_);
    }
    if (Status synced = SyncDir(shard_dir_); !synced.ok()) {
      // Not known to be durable, so not acknowledged: take the name back.
      ::unlink(object_path_.c_str());
      return synced;
    }
    committed_ = true;
    ::unlink(tmp_path_.c_str());  // should this fail, the next OpenDirectory removes it
    return OkStatus();
  }

  UniqueFd fd_;
  const std::string name_;
  const std::string tmp_path_;
  const std::string shard_dir_;
  const std::string object_path_;
  Bytes buffer_;
  uint64_t written_ = 0;  // bytes written to the file so far
  Status error_;
  bool committed_ = false;
};

class FileBlobReader final : public BlobReader {
 public:
  FileBlobReader(UniqueFd fd, uint64_t size) : fd_(std::move(fd)), size_(size) {}

  uint64_t size() const override { return size_; }

  StatusOr<size_t> ReadAt(uint64_t offset, std::span<uint8_t> out) const override {
    if (offset >= size_) return size_t{0};
    const auto want = static_cast<size_t>(std::min<uint64_t>(out.size(), size_ - offset));
    size_t done = 0;
    while (done < want) {
      ssize_t n =
          ::pread(fd_.get(), out.data() + done, want - done, static_cast<off_t>(offset + done));
      if (n < 0) {
        if (errno == EINTR) continue;
        return ErrnoError(errno, "reading a blob");
      }
      // Committed blobs are never written again, so a short file means damage.
      if (n == 0) return DataLossError("blob is shorter than when it was opened");
      done += static_cast<size_t>(n);
    }
    return done;
  }

 private:
  const UniqueFd fd_;
  const uint64_t size_;
};

}  // namespace

StatusOr<std::unique_ptr<FileBlobStore>> FileBlobStore::OpenDirectory(const std::string& root) {
  RETURN_IF_ERROR(MakeDir(root));
  UniqueFd lock(::open((root + "/LOCK").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (lock.get() < 0) return ErrnoError(errno, "creating " + root + "/LOCK");
  if (::flock(lock.get(), LOCK_EX | LOCK_NB) != 0) {
    if (errno == EWOULDBLOCK) {
      return FailedPreconditionError("blob store " + root + " is in use by another store");
    }
    return ErrnoError(errno, "locking " + root + "/LOCK");
  }
  RETURN_IF_ERROR(MakeDir(root + "/tmp"));
  RETURN_IF_ERROR(MakeDir(root + "/objects"));
  for (int shard = 0; shard < 256; ++shard) {
    RETURN_IF_ERROR(MakeDir(root + "/objects/" + ShardName(static_cast<uint8_t>(shard))));
  }
  RETURN_IF_ERROR(SyncDir(root + "/objects"));
  RETURN_IF_ERROR(SyncDir(root));
  RETURN_IF_ERROR(SyncDir(root + "/.."));
  RETURN_IF_ERROR(RemovePartialWrites(root + "/tmp"));
  return std::unique_ptr<FileBlobStore>(new FileBlobStore(root, lock.release()));
}

FileBlobStore::~FileBlobStore() { ::close(lock_fd_); }

std::string FileBlobStore::ShardDir(std::string_view name) const {
  return root_ + "/objects/" + ShardOf(name);
}

std::string FileBlobStore::ObjectPath(std::string_view name) const {
  return ShardDir(name) + "/" + std::string(name);
}

StatusOr<std::unique_ptr<BlobWriter>> FileBlobStore::Create(std::string_view name) {
  ASSIGN_OR_RETURN(bool exists, Exists(name));
  if (exists) return AlreadyExistsError("blob " + std::string(name) + " already exists");
  std::string tmp_path = root_ + "/tmp/XXXXXX" + std::string(kPartSuffix);
  int fd = ::mkostemps(tmp_path.data(), static_cast<int>(kPartSuffix.size()), O_CLOEXEC);
  if (fd < 0) return ErrnoError(errno, "creating a file in " + root_ + "/tmp");
  return std::unique_ptr<BlobWriter>(new FileBlobWriter(
      UniqueFd(fd), std::string(name), std::move(tmp_path), ShardDir(name), ObjectPath(name)));
}

StatusOr<std::unique_ptr<BlobReader>> FileBlobStore::Open(std::string_view name) {
  RETURN_IF_ERROR(ValidateBlobName(name));
  UniqueFd fd(::open(ObjectPath(name).c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) {
    if (errno == ENOENT) return NotFoundError("no blob named " + std::string(name));
    return ErrnoError(errno, "opening blob " + std::string(name));
  }
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return ErrnoError(errno, "opening blob " + std::string(name));
  return std::unique_ptr<BlobReader>(
      new FileBlobReader(std::move(fd), static_cast<uint64_t>(st.st_size)));
}

Status FileBlobStore::Delete(std::string_view name) {
  RETURN_IF_ERROR(ValidateBlobName(name));
  if (::unlink(ObjectPath(name).c_str()) != 0) {
    if (errno == ENOENT) return NotFoundError("no blob named " + std::string(name));
    return ErrnoError(errno, "deleting blob " + std::string(name));
  }
  return SyncDir(ShardDir(name));
}

StatusOr<bool> FileBlobStore::Exists(std::string_view name) {
  RETURN_IF_ERROR(ValidateBlobName(name));
  struct stat st;
  if (::stat(ObjectPath(name).c_str(), &st) == 0) return true;
  if (errno == ENOENT) return false;
  return ErrnoError(errno, "looking up blob " + std::string(name));
}

}  // namespace keyfoundry::storage
