// SqliteMetadataStore: design and crash story.
//
// Schema. Every logical table lives in one SQLite table:
//   records(table_name TEXT, key BLOB, value BLOB, version INTEGER,
//           PRIMARY KEY (table_name, key)) WITHOUT ROWID
// Keys are BLOBs, so they may hold any bytes and compare as memcmp does. A scan is one range of
// the primary key, [ScanStart(prefix, start_after), PrefixEnd(prefix)), always bounded on both
// sides so the index serves it. The SQL uses only what PostgreSQL accepts too (ON CONFLICT
// upserts, BLOB as bytea), so that backend can keep the same statements.
//
// Migrations. kMigrations[i] takes the schema from version i to i + 1, and schema_version holds
// one row per migration applied. Open applies the missing ones in one write transaction, so a
// database is always at exactly one version, and refuses a database at a version above
// kSchemaVersion rather than guess at a schema it does not know. A released migration is never
// edited: a change is a new entry at the end.
//
// Connections. One writer connection, guarded by write_mu_, runs every Write inside BEGIN
// IMMEDIATE: the database's write lock is taken before fn runs, so fn never meets a write
// conflict midway and runs exactly once. A write lock held by another process is waited out by
// SQLite's busy handler, up to busy_timeout. Reads run on a pool of query_only connections,
// each Read inside a deferred BEGIN, whose first SELECT fixes the WAL snapshot that the rest of
// fn sees. In WAL mode readers and the writer never wait for each other. A pooled connection
// serves one Read at a time; the pool grows with the number of concurrent Reads and keeps at
// most kMaxIdleReaders idle. Each connection prepares a statement once and keeps it.
//
// Failure. Any SQLite error inside a transaction is remembered on its connection: the statement
// may have been applied in part, or SQLite may have rolled back the whole transaction on its
// own, after which each further statement would commit by itself. So from then on every call in
// the transaction returns that error without running SQL, and the transaction rolls back even
// if fn ignored the error and returned OK. A connection still inside a transaction afterwards
// (its ROLLBACK failed) is closed, which rolls it back, and is never used again.
//
// Crash story. journal_mode=WAL and synchronous=FULL: COMMIT returns only once the
// transaction's frames in the WAL, the last of them marked as a commit, are fsync'd (SQLite also
// fsyncs the directory when it creates the WAL). A crash
//   - before COMMIT (inside fn, or while SQLite spills uncommitted pages into the WAL) leaves
//     frames with no commit frame after them, which recovery at the next open ignores: the
//     transaction is invisible, as if fn had failed;
//   - during COMMIT leaves the commit frame whole on disk (its checksum verifies: the
//     transaction is there) or not (it is ignored). Write had not returned, so nothing
//     acknowledged is lost either way;
//   - after COMMIT loses nothing: a checkpoint copies WAL pages into the database file and
//     fsyncs it before the WAL is reused, so a checkpoint cut short is redone from the WAL;
//     checkpoints run on a connection of their own, on a background thread, as PASSIVE ones
//     (never waiting for readers or the writer), which SQLite makes as crash-safe as its own
//     automatic checkpoints;
//   - during Open's migrations leaves the schema at the old version or the new one, never
//     between, since they run in one transaction.
#include "storage/sqlite/sqlite_metadata_store.h"

#include <sqlite3.h>

#include <algorithm>
#include <functional>
#include <iterator>
#include <map>
#include <optional>
#include <string_view>
#include <utility>

#include "common/logging.h"

namespace keyfoundry::storage {
namespace {

constexpr size_t kMaxIdleReaders = 8;
// The WAL size, in multiples of SqliteOptions::checkpoint_pages, past which the writer
// finishes a checkpoint itself (see OnCommit).
constexpr int kInlineCheckpointFactor = 4;

// Forward migrations; entry i takes the schema from version i to i + 1.
constexpr const char* kMigrations[] = {
    // 1: one table holds the records of every logical table.
    "CREATE TABLE records ("
    "  table_name TEXT NOT NULL,"
    "  key BLOB NOT NULL,"
    "  value BLOB NOT NULL,"
    "  version INTEGER NOT NULL,"
    "  PRIMARY KEY (table_name, key)"
    ") WITHOUT ROWID",
};
constexpr int64_t kSchemaVersion = std::size(kMigrations);

// Parameters: ?1 table name, ?2 key, ?3 value, ?4 expected version.
constexpr std::string_view kGetSql =
    "SELECT value, version FROM records WHERE table_name = ?1 AND key = ?2";
constexpr std::string_view kInsertSql =
    "INSERT INTO records (table_name, key, value, version) VALUES (?1, ?2, ?3, 1) "
    "ON CONFLICT DO NOTHING";
constexpr std::string_view kPutSql =
    "INSERT INTO records (table_name, key, value, version) VALUES (?1, ?2, ?3, 1) "
    "ON CONFLICT (table_name, key) DO UPDATE SET "
    "value = excluded.value, version = records.version + 1";
constexpr std::string_view kUpdateSql =
    "UPDATE records SET value = ?3, version = version + 1 "
    "WHERE table_name = ?1 AND key = ?2 AND version = ?4";
constexpr std::string_view kDeleteSql = "DELETE FROM records WHERE table_name = ?1 AND key = ?2";
// Parameters: ?1 table name, ?2 inclusive lower bound, ?3 exclusive upper bound, ?4 limit.
constexpr std::string_view kScanSql =
    "SELECT key, value, version FROM records "
    "WHERE table_name = ?1 AND key >= ?2 AND key < ?3 ORDER BY key LIMIT ?4";
constexpr std::string_view kCountSql =
    "SELECT COUNT(*) FROM records WHERE table_name = ?1 AND key >= ?2 AND key < ?3";

// SQLite's result code `rc` as a Status; `what` says what was being done.
Status SqliteError(sqlite3* db, int rc, std::string_view what) {
  std::string message(what);
  message += ": ";
  message += db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
  switch (rc & 0xff) {  // the primary code of an extended one
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return UnavailableError(std::move(message));
    case SQLITE_FULL:
      return ResourceExhaustedError(std::move(message));
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      return DataLossError(std::move(message));
    case SQLITE_CANTOPEN:
    case SQLITE_PERM:
    case SQLITE_READONLY:
      return FailedPreconditionError(std::move(message));
  }
  return InternalError(std::move(message));
}

// The smallest string above every key that starts with `prefix`. When there is none (the prefix
// is empty or all 0xff), a string above every valid key: kMaxKeySize + 1 bytes of 0xff.
std::string PrefixEnd(std::string_view prefix) {
  std::string end(prefix);
  while (!end.empty() && static_cast<uint8_t>(end.back()) == 0xff) end.pop_back();
  if (end.empty()) return std::string(kMaxKeySize + 1, '\xff');
  end.back() = static_cast<char>(static_cast<uint8_t>(end.back()) + 1);
  return end;
}

// The smallest key a scan may return. std::string compares as unsigned bytes, like the index.
std::string ScanStart(std::string_view prefix, std::string_view start_after) {
  if (start_after.empty()) return std::string(prefix);
  std::string after(start_after);
  after.push_back('\0');  // the smallest string above start_after
  return std::max(after, std::string(prefix));
}

// A cached prepared statement, borrowed for one use: reset and unbound when this goes away.
// Bound strings and bytes are not copied, so they must outlive the Statement.
class Statement {
 public:
  Statement(SqliteConnection* conn, sqlite3_stmt* stmt) : conn_(conn), stmt_(stmt) {}
  Statement(Statement&& other) noexcept
      : conn_(other.conn_), stmt_(std::exchange(other.stmt_, nullptr)), bind_rc_(other.bind_rc_) {}
  Statement& operator=(Statement&&) = delete;
  ~Statement() {
    if (stmt_ == nullptr) return;
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
  }

  // A failed bind is reported by the next Step.
  void BindText(int index, std::string_view text) {
    Bound(sqlite3_bind_text(stmt_, index, text.empty() ? "" : text.data(),
                            static_cast<int>(text.size()), SQLITE_STATIC));
  }
  void BindBytes(int index, ByteView bytes) {
    // A null data pointer would bind NULL rather than an empty BLOB.
    Bound(bytes.empty() ? sqlite3_bind_zeroblob(stmt_, index, 0)
                        : sqlite3_bind_blob(stmt_, index, bytes.data(),
                                            static_cast<int>(bytes.size()), SQLITE_STATIC));
  }
  void BindInt64(int index, int64_t value) { Bound(sqlite3_bind_int64(stmt_, index, value)); }

  // True when a row is ready, false when the statement has finished.
  StatusOr<bool> Step();

  int64_t ColumnInt64(int column) { return sqlite3_column_int64(stmt_, column); }
  // The columns read here hold BLOBs (or, for journal_mode, TEXT), which SQLite hands out as
  // stored, without converting or allocating; an empty one comes back as a null pointer.
  Bytes ColumnBytes(int column) {
    const auto* data = static_cast<const uint8_t*>(sqlite3_column_blob(stmt_, column));
    int size = sqlite3_column_bytes(stmt_, column);
    return size > 0 ? Bytes(data, data + size) : Bytes();
  }
  std::string ColumnString(int column) {
    const auto* data = static_cast<const char*>(sqlite3_column_blob(stmt_, column));
    int size = sqlite3_column_bytes(stmt_, column);
    return size > 0 ? std::string(data, static_cast<size_t>(size)) : std::string();
  }

 private:
  void Bound(int rc) {
    if (bind_rc_ == SQLITE_OK) bind_rc_ = rc;
  }

  SqliteConnection* conn_;
  sqlite3_stmt* stmt_;
  int bind_rc_ = SQLITE_OK;
};

}  // namespace

// One sqlite3 handle, in SQLite's multi-thread mode: used by one thread at a time, which the
// store guarantees.
class SqliteConnection {
 public:
  // The writer (creates the file, sets WAL mode), readers (query_only), and the checkpointer
  // (read-write, for checkpoints only).
  enum class Role { kWriter, kReader, kCheckpointer };

  // Every error names `path`.
  static StatusOr<std::unique_ptr<SqliteConnection>> Open(const std::string& path,
                                                          const SqliteOptions& options, Role role);
  ~SqliteConnection();
  SqliteConnection(const SqliteConnection&) = delete;
  SqliteConnection& operator=(const SqliteConnection&) = delete;

  // Runs fn in a transaction as the file comment describes: a read one on a snapshot, or a
  // write one that commits iff fn and every statement in it succeed.
  Status RunTransaction(bool writable, const TransactionFn& fn);

  bool InTransaction() const { return sqlite3_get_autocommit(db_) == 0; }

  // Runs SQL written in this file: it has no parameters and returns no rows.
  Status Exec(const char* sql);
  // As Exec for one statement run often (BEGIN, COMMIT, ROLLBACK): prepared once, kept with the
  // others (see Prepare), and run even after a failure in the transaction.
  Status Run(std::string_view sql);
  // `sql` must be written in this file, as it keys the cache for the connection's lifetime.
  // Once a statement of the current transaction failed, returns that failure instead.
  StatusOr<Statement> Prepare(std::string_view sql);
  int64_t Changes() const { return sqlite3_changes64(db_); }

  // Remembers the first failure of the current transaction, and returns it.
  Status Failed(Status status) {
    if (failure_.ok()) failure_ = status;
    return status;
  }
  sqlite3* db() const { return db_; }

  // Calls `hook` after each commit with the number of pages in the WAL; replaces SQLite's
  // automatic checkpoints on this connection.
  void SetWalHook(std::function<void(int)> hook);

 private:
  explicit SqliteConnection(sqlite3* db) : db_(db) {}
  Status Configure(const SqliteOptions& options, Role role);
  // `sql`'s statement, prepared on first use and kept until the connection closes.
  StatusOr<sqlite3_stmt*> Cached(std::string_view sql);

  sqlite3* const db_;
  std::map<std::string_view, sqlite3_stmt*> statements_;
  Status failure_;
  std::function<void(int)> wal_hook_;
};

namespace {

StatusOr<bool> Statement::Step() {
  int rc = bind_rc_ != SQLITE_OK ? bind_rc_ : sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  return conn_->Failed(SqliteError(conn_->db(), rc, "running a statement"));
}

class SqliteTransaction final : public Transaction {
 public:
  SqliteTransaction(SqliteConnection* conn, bool writable) : conn_(conn), writable_(writable) {}

  StatusOr<std::optional<Record>> Get(std::string_view table, std::string_view key) override {
    RETURN_IF_ERROR(ValidateTableName(table));
    RETURN_IF_ERROR(ValidateKey(key));
    ASSIGN_OR_RETURN(Statement stmt, conn_->Prepare(kGetSql));
    stmt.BindText(1, table);
    stmt.BindBytes(2, AsBytes(key));
    ASSIGN_OR_RETURN(bool found, stmt.Step());
    if (!found) return std::optional<Record>();
    return std::optional<Record>(
        Record{std::string(key), stmt.ColumnBytes(0), stmt.ColumnInt64(1)});
  }

  Status Insert(std::string_view table, std::string_view key, ByteView value) override {
    RETURN_IF_ERROR(CheckWrite(table, key, value));
    ASSIGN_OR_RETURN(Statement stmt, conn_->Prepare(kInsertSql));
    stmt.BindText(1, table);
    stmt.BindBytes(2, AsBytes(key));
    stmt.BindBytes(3, value);
    RETURN_IF_ERROR(stmt.Step());
    if (conn_->Changes() == 0) {
      return AlreadyExistsError("table " + std::string(table) +
                                " already has a record with that key");
    }
    return OkStatus();
  }

  Status Put(std::string_view table, std::string_view key, ByteView value) override {
    RETURN_IF_ERROR(CheckWrite(table, key, value));
    ASSIGN_OR_RETURN(Statement stmt, conn_->Prepare(kPutSql));
    stmt.BindText(1, table);
    stmt.BindBytes(2, AsBytes(key));
    stmt.BindBytes(3, value);
    return stmt.Step().status();
  }

  Status Update(std::string_view table, std::string_view key, ByteView value,
                int64_t expected_version) override {
    RETURN_IF_ERROR(CheckWrite(table, key, value));
    RETURN_IF_ERROR(ValidateExpectedVersion(expected_version));
    {
      ASSIGN_OR_RETURN(Statement stmt, conn_->Prepare(kUpdateSql));
      stmt.BindText(1, table);
      stmt.BindBytes(2, AsBytes(key));
      stmt.BindBytes(3, value);
      stmt.BindInt64(4, expected_version);
      RETURN_IF_ERROR(stmt.Step());
      if (conn_->Changes() > 0) return OkStatus();
    }
    ASSIGN_OR_RETURN(std::optional<Record> current, Get(table, key));
    if (!current) return NotFound(table);
    return AbortedError("the record in table " + std::string(table) + " is at version " +
                        std::to_string(current->version) + ", not the expected " +
                        std::to_string(expected_version));
  }

  Status Delete(std::string_view table, std::string_view key) override {
    RETURN_IF_ERROR(CheckWrite(table, key, {}));
    ASSIGN_OR_RETURN(Statement stmt, conn_->Prepare(kDeleteSql));
    stmt.BindText(1, table);
    stmt.BindBytes(2, AsBytes(key));
    RETURN_IF_ERROR(stmt.Step());
    if (conn_->Changes() == 0) return NotFound(table);
    return OkStatus();
  }

  StatusOr<std::vector<Record>> Scan(std::string_view table, std::string_view prefix,
                                     std::string_view start_after, size_t limit) override {
    RETURN_IF_ERROR(ValidateTableName(table));
    RETURN_IF_ERROR(ValidateScan(prefix, start_after, limit));
    const std::string start = ScanStart(prefix, start_after);
    const std::string end = PrefixEnd(prefix);
    ASSIGN_OR_RETURN(Statement stmt, conn_->Prepare(kScanSql));
    stmt.BindText(1, table);
    stmt.BindBytes(2, AsBytes(start));
    stmt.BindBytes(3, AsBytes(end));
    stmt.BindInt64(4, static_cast<int64_t>(limit));
    std::vector<Record> records;
    for (;;) {
      ASSIGN_OR_RETURN(bool row, stmt.Step());
      if (!row) return records;
      records.push_back(Record{stmt.ColumnString(0), stmt.ColumnBytes(1), stmt.ColumnInt64(2)});
    }
  }

  StatusOr<int64_t> Count(std::string_view table, std::string_view prefix) override {
    RETURN_IF_ERROR(ValidateTableName(table));
    RETURN_IF_ERROR(ValidateScan(prefix, {}, 1));
    const std::string end = PrefixEnd(prefix);
    ASSIGN_OR_RETURN(Statement stmt, conn_->Prepare(kCountSql));
    stmt.BindText(1, table);
    stmt.BindBytes(2, AsBytes(prefix));
    stmt.BindBytes(3, AsBytes(end));
    ASSIGN_OR_RETURN(bool row, stmt.Step());
    if (!row) return conn_->Failed(InternalError("COUNT returned no row"));
    return stmt.ColumnInt64(0);
  }

 private:
  Status CheckWrite(std::string_view table, std::string_view key, ByteView value) const {
    if (!writable_) {
      return FailedPreconditionError("cannot write in a Read transaction: use Write");
    }
    RETURN_IF_ERROR(ValidateTableName(table));
    RETURN_IF_ERROR(ValidateKey(key));
    return ValidateValue(value);
  }

  static Status NotFound(std::string_view table) {
    return NotFoundError("table " + std::string(table) + " has no record with that key");
  }

  SqliteConnection* const conn_;
  const bool writable_;
};

// Brings the schema to kSchemaVersion. On failure the transaction is left open: the caller
// closes the connection, which rolls it back.
Status Migrate(SqliteConnection& conn) {
  RETURN_IF_ERROR(conn.Exec("BEGIN IMMEDIATE"));
  RETURN_IF_ERROR(conn.Exec(
      "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY NOT NULL)"));
  int64_t version = 0;
  {
    ASSIGN_OR_RETURN(Statement stmt,
                     conn.Prepare("SELECT COALESCE(MAX(version), 0) FROM schema_version"));
    ASSIGN_OR_RETURN(bool row, stmt.Step());
    if (!row) return InternalError("reading the schema version returned no row");
    version = stmt.ColumnInt64(0);
  }
  if (version > kSchemaVersion) {
    return FailedPreconditionError(
        "the database has schema version " + std::to_string(version) + ", newer than the " +
        std::to_string(kSchemaVersion) +
        " this build knows: it was written by a later keyfoundry, so run that one or later");
  }
  for (int64_t next = version + 1; next <= kSchemaVersion; ++next) {
    const std::string context = "applying schema migration " + std::to_string(next);
    RETURN_IF_ERROR(conn.Exec(kMigrations[next - 1]).WithContext(context));
    ASSIGN_OR_RETURN(Statement stmt,
                     conn.Prepare("INSERT INTO schema_version (version) VALUES (?1)"));
    stmt.BindInt64(1, next);
    RETURN_IF_ERROR(stmt.Step().status().WithContext(context));
  }
  return conn.Exec("COMMIT");
}

}  // namespace

StatusOr<std::unique_ptr<SqliteConnection>> SqliteConnection::Open(const std::string& path,
                                                                   const SqliteOptions& options,
                                                                   Role role) {
  int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_EXRESCODE;
  if (role == Role::kWriter) flags |= SQLITE_OPEN_CREATE;
  sqlite3* db = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &db, flags, nullptr);
  if (db == nullptr) return ResourceExhaustedError("out of memory opening " + path);
  std::unique_ptr<SqliteConnection> conn(new SqliteConnection(db));  // closes db on every path
  if (rc != SQLITE_OK) return SqliteError(db, rc, "opening " + path);
  RETURN_IF_ERROR(conn->Configure(options, role).WithContext("opening " + path));
  return conn;
}

Status SqliteConnection::Configure(const SqliteOptions& options, Role role) {
  sqlite3_busy_timeout(db_, static_cast<int>(options.busy_timeout.count()));
  RETURN_IF_ERROR(Exec("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON"));
  if (role == Role::kReader) return Exec("PRAGMA query_only = ON");
  if (role == Role::kCheckpointer) return OkStatus();
  // The journal mode is stored in the file, so readers opened later find WAL already on.
  ASSIGN_OR_RETURN(Statement stmt, Prepare("PRAGMA journal_mode = WAL"));
  ASSIGN_OR_RETURN(bool row, stmt.Step());
  if (!row || stmt.ColumnString(0) != "wal") {
    return FailedPreconditionError("cannot switch to WAL mode; is it on a network filesystem?");
  }
  return OkStatus();
}

void SqliteConnection::SetWalHook(std::function<void(int)> hook) {
  wal_hook_ = std::move(hook);
  sqlite3_wal_hook(
      db_,
      [](void* self, sqlite3*, const char*, int pages) {
        static_cast<SqliteConnection*>(self)->wal_hook_(pages);
        return SQLITE_OK;
      },
      this);
}

SqliteConnection::~SqliteConnection() {
  for (auto& [sql, stmt] : statements_) sqlite3_finalize(stmt);
  sqlite3_close_v2(db_);  // rolls back an open transaction
}

Status SqliteConnection::RunTransaction(bool writable, const TransactionFn& fn) {
  RETURN_IF_ERROR(Run(writable ? "BEGIN IMMEDIATE" : "BEGIN"));
  failure_ = OkStatus();
  SqliteTransaction tx(this, writable);
  Status status = fn(tx);
  if (status.ok()) status = failure_;
  if (status.ok() && writable) status = Run("COMMIT");
  // A read, a failure, or a failed COMMIT. Should ROLLBACK fail too, the caller sees
  // InTransaction() and closes the connection.
  if (InTransaction()) (void)Run("ROLLBACK");
  return status;
}

Status SqliteConnection::Run(std::string_view sql) {
  ASSIGN_OR_RETURN(sqlite3_stmt * stmt, Cached(sql));
  const int rc = sqlite3_step(stmt);
  sqlite3_reset(stmt);
  if (rc != SQLITE_DONE) return SqliteError(db_, rc, "running " + std::string(sql));
  return OkStatus();
}

Status SqliteConnection::Exec(const char* sql) {
  int rc = sqlite3_exec(db_, sql, nullptr, nullptr, nullptr);
  if (rc != SQLITE_OK) return SqliteError(db_, rc, "running " + std::string(sql));
  return OkStatus();
}

StatusOr<Statement> SqliteConnection::Prepare(std::string_view sql) {
  if (!failure_.ok()) return failure_;
  StatusOr<sqlite3_stmt*> stmt = Cached(sql);
  if (!stmt.ok()) return Failed(stmt.status());
  return Statement(this, *stmt);
}

StatusOr<sqlite3_stmt*> SqliteConnection::Cached(std::string_view sql) {
  auto it = statements_.find(sql);
  if (it == statements_.end()) {
    sqlite3_stmt* stmt = nullptr;
    const int rc = sqlite3_prepare_v3(db_, sql.data(), static_cast<int>(sql.size()),
                                      SQLITE_PREPARE_PERSISTENT, &stmt, nullptr);
    if (rc != SQLITE_OK) return SqliteError(db_, rc, "preparing a statement");
    it = statements_.emplace(sql, stmt).first;
  }
  return it->second;
}

StatusOr<std::unique_ptr<SqliteMetadataStore>> SqliteMetadataStore::Open(
    const std::string& path, const SqliteOptions& options) {
  ASSIGN_OR_RETURN(std::unique_ptr<SqliteConnection> writer,
                   SqliteConnection::Open(path, options, SqliteConnection::Role::kWriter));
  RETURN_IF_ERROR(Migrate(*writer).WithContext("opening " + path));
  return std::unique_ptr<SqliteMetadataStore>(
      new SqliteMetadataStore(path, options, std::move(writer)));
}

SqliteMetadataStore::SqliteMetadataStore(std::string path, SqliteOptions options,
                                         std::unique_ptr<SqliteConnection> writer)
    : path_(std::move(path)), options_(options), writer_(std::move(writer)) {
  WatchWal(*writer_);
  checkpointer_ = std::thread([this] { CheckpointLoop(); });
}

SqliteMetadataStore::~SqliteMetadataStore() {
  {
    std::lock_guard<std::mutex> lock(checkpoint_mu_);
    stopping_ = true;
  }
  checkpoint_cv_.notify_all();
  checkpointer_.join();
}

int64_t SqliteMetadataStore::BackgroundCheckpointsForTest() const {
  std::lock_guard<std::mutex> lock(checkpoint_mu_);
  return background_checkpoints_;
}

void SqliteMetadataStore::WatchWal(SqliteConnection& writer) {
  // Replaces SQLite's automatic checkpoint, which is itself a WAL hook.
  writer.SetWalHook([this, conn = &writer](int pages) { OnCommit(*conn, pages); });
}

void SqliteMetadataStore::OnCommit(SqliteConnection& writer, int wal_pages) {
  const int64_t threshold = std::max(1, options_.checkpoint_pages);
  if (wal_pages < threshold) return;
  if (wal_pages > kInlineCheckpointFactor * threshold) {
    // SQLite starts the WAL again from its beginning only when a write begins with every frame
    // copied back, which a busy writer never lets the background checkpoints see. So the
    // writer itself finishes the job now and then: the background has copied nearly
    // everything, the writer copies the last frames (and fsyncs the database file), and its
    // next transaction restarts the WAL. This also bounds the WAL should the background fall
    // behind.
    (void)sqlite3_wal_checkpoint_v2(writer.db(), nullptr, SQLITE_CHECKPOINT_PASSIVE, nullptr,
                                    nullptr);
    return;
  }
  {
    std::lock_guard<std::mutex> lock(checkpoint_mu_);
    if (checkpoint_wanted_) return;
    checkpoint_wanted_ = true;
  }
  checkpoint_cv_.notify_one();
}

void SqliteMetadataStore::CheckpointLoop() {
  std::unique_ptr<SqliteConnection> conn;
  std::unique_lock<std::mutex> lock(checkpoint_mu_);
  while (true) {
    checkpoint_cv_.wait(lock, [this] { return checkpoint_wanted_ || stopping_; });
    if (stopping_) return;
    lock.unlock();
    if (conn == nullptr) {
      StatusOr<std::unique_ptr<SqliteConnection>> opened =
          SqliteConnection::Open(path_, options_, SqliteConnection::Role::kCheckpointer);
      if (opened.ok()) {
        conn = *std::move(opened);
      } else {
        Log(LogLevel::kWarning, "sqlite.checkpointer_open_failed",
            {{"error", opened.status().ToString()}});
      }
    }
    // PASSIVE: copies what no reader still needs, without waiting for anyone. An error (a
    // busy database, a full disk) leaves the pages in the WAL for the next attempt.
    const int rc = conn == nullptr
                       ? SQLITE_CANTOPEN
                       : sqlite3_wal_checkpoint_v2(conn->db(), nullptr, SQLITE_CHECKPOINT_PASSIVE,
                                                   nullptr, nullptr);
    lock.lock();
    checkpoint_wanted_ = false;
    if (rc == SQLITE_OK) ++background_checkpoints_;
  }
}

Status SqliteMetadataStore::Read(const TransactionFn& fn) {
  ASSIGN_OR_RETURN(std::unique_ptr<SqliteConnection> reader, TakeReader());
  Status status = reader->RunTransaction(/*writable=*/false, fn);
  ReturnReader(std::move(reader));
  return status;
}

Status SqliteMetadataStore::Write(const TransactionFn& fn) {
  MutexLock lock(&write_mu_);
  if (writer_ == nullptr) {
    ASSIGN_OR_RETURN(writer_,
                     SqliteConnection::Open(path_, options_, SqliteConnection::Role::kWriter));
    WatchWal(*writer_);
  }
  Status status = writer_->RunTransaction(/*writable=*/true, fn);
  if (writer_->InTransaction()) writer_.reset();  // closing it rolls back
  return status;
}

StatusOr<std::unique_ptr<SqliteConnection>> SqliteMetadataStore::TakeReader() {
  {
    MutexLock lock(&readers_mu_);
    if (!idle_readers_.empty()) {
      std::unique_ptr<SqliteConnection> reader = std::move(idle_readers_.back());
      idle_readers_.pop_back();
      return reader;
    }
  }
  // Opened outside the lock, so that other Reads do not wait for it.
  return SqliteConnection::Open(path_, options_, SqliteConnection::Role::kReader);
}

void SqliteMetadataStore::ReturnReader(std::unique_ptr<SqliteConnection> reader) {
  if (reader->InTransaction()) return;  // closing it rolls back
  MutexLock lock(&readers_mu_);
  if (idle_readers_.size() < kMaxIdleReaders) idle_readers_.push_back(std::move(reader));
}

}  // namespace keyfoundry::storage
