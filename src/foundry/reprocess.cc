#include "foundry/reprocess.h"

#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cstdio>

#include "common/bytes.h"
#include "common/encoding.h"
#include "common/logging.h"
#include "crypto/random.h"
#include "storage/scan.h"

namespace keyfoundry::foundry {
namespace {

using storage::Record;
using storage::Transaction;
using Json = nlohmann::json;

constexpr std::string_view kTable = "reprocess_ops";
constexpr int kRecordVersion = 1;
constexpr size_t kRewrapPage = 4096;   // records per step when rewrapping
constexpr size_t kReencryptPage = 16;  // records per step when re-encrypting (content moves)
constexpr int64_t kMaxRate = 10'000'000;

std::string Key(std::string_view account, std::string_view id) {
  return std::string(account) + "/" + std::string(id);
}

Status BadContent(std::string message) {
  return InvalidArgumentError(std::move(message)).WithReason("InvalidRequestContent");
}

std::string_view ModeName(ReprocessMode mode) {
  return mode == ReprocessMode::kRewrap ? "rewrap" : "reencrypt";
}


Json Encode(const ReprocessOperation& op) {
  return {{"v", kRecordVersion},
          {"id", op.id},
          {"mode", static_cast<int>(op.mode)},
          {"generations", op.generations},
          {"target", op.target},
          {"rate", op.rate},
          {"status", static_cast<int>(op.status)},
          {"cursor", op.cursor},
          {"total", op.total},
          {"moved", op.moved},
          {"failed", op.failed},
          {"bytes", op.bytes},
          {"remaining", op.remaining},
          {"started_at", op.started_at},
          {"ended_at", op.ended_at},
          {"error_code", op.error_code},
          {"error_message", op.error_message}};
}

StatusOr<ReprocessOperation> Decode(const Record& record) {
  const Json j = Json::parse(AsStringView(record.value), nullptr, false);
  if (!j.is_object() || j.value("v", 0) != kRecordVersion) {
    return DataLossError("a reprocessing operation record is malformed");
  }
  try {
    ReprocessOperation op;
    op.id = j.at("id").get<std::string>();
    const int mode = j.at("mode").get<int>();
    const int status = j.at("status").get<int>();
    if (mode < 1 || mode > 2 || status < 1 || status > 3) {
      return DataLossError("a reprocessing operation record is malformed");
    }
    op.mode = static_cast<ReprocessMode>(mode);
    op.status = static_cast<OperationStatus>(status);
    op.generations = j.at("generations").get<std::vector<uint64_t>>();
    op.target = j.at("target").get<uint64_t>();
    op.rate = j.at("rate").get<int64_t>();
    op.cursor = j.at("cursor").get<std::string>();
    op.total = j.at("total").get<int64_t>();
    op.moved = j.at("moved").get<int64_t>();
    op.failed = j.at("failed").get<int64_t>();
    op.bytes = j.at("bytes").get<uint64_t>();
    op.remaining = j.at("remaining").get<int64_t>();
    op.started_at = j.at("started_at").get<int64_t>();
    op.ended_at = j.at("ended_at").get<int64_t>();
    op.error_code = j.at("error_code").get<std::string>();
    op.error_message = j.at("error_message").get<std::string>();
    return op;
  } catch (const Json::exception&) {
    return DataLossError("a reprocessing operation record is malformed");
  }
}

// Objects under the generations `op` reprocesses, from the key-usage counts.
StatusOr<int64_t> ObjectsUnder(encryption::AccountKeys& keys, std::string_view account,
                               const ReprocessOperation& op) {
  ASSIGN_OR_RETURN(std::vector<encryption::GenerationReport> report,
                   keys.Report(account, /*check=*/false));
  int64_t objects = 0;
  for (const auto& g : report) {
    const uint64_t n = g.generation.number;
    if (n == op.target) continue;
    if (op.generations.empty() ||
        std::find(op.generations.begin(), op.generations.end(), n) != op.generations.end()) {
      objects += g.objects;
    }
  }
  return objects;
}

}  // namespace

std::string_view OperationStatusName(OperationStatus status) {
  switch (status) {
    case OperationStatus::kInProgress:
      return "InProgress";
    case OperationStatus::kSucceeded:
      return "Succeeded";
    case OperationStatus::kFailed:
      return "Failed";
  }
  return "Failed";
}

StatusOr<ReprocessRequest> ReprocessRequestFromJson(const Json& body) {
  if (!body.is_object()) return BadContent("The body must be a JSON object {mode, generation?}.");
  ReprocessRequest out;
  const Json mode = body.value("mode", Json());
  if (mode == "rewrap") {
    out.mode = ReprocessMode::kRewrap;
  } else if (mode == "reencrypt") {
    out.mode = ReprocessMode::kReencrypt;
  } else {
    return BadContent("'mode' must be \"rewrap\" (wrap data keys again) or \"reencrypt\" (seal "
                      "content again).");
  }
  if (body.contains("generation") && !body.at("generation").is_null()) {
    const Json& g = body.at("generation");
    if (g.is_number_unsigned() && g.get<uint64_t>() > 0) {
      out.generations.push_back(g.get<uint64_t>());
    } else if (!(g.is_string() && g.get<std::string>() == "all")) {
      return BadContent("'generation' must be a generation number or \"all\".");
    }
  }
  if (body.contains("maxObjectsPerSecond") && !body.at("maxObjectsPerSecond").is_null()) {
    const Json& r = body.at("maxObjectsPerSecond");
    if (!r.is_number_integer() || r.get<int64_t>() < 1 || r.get<int64_t>() > kMaxRate) {
      return BadContent("'maxObjectsPerSecond' must be an integer from 1 to 10000000.");
    }
    out.max_objects_per_second = r.get<int64_t>();
  }
  return out;
}

Json OperationToJson(const ReprocessOperation& op, std::string_view operation_id) {
  const int64_t done = op.moved + op.failed;
  double percent = op.total > 0 ? 100.0 * static_cast<double>(done) / static_cast<double>(op.total)
                                : 100.0;
  if (op.status == OperationStatus::kInProgress) percent = std::min(percent, 99.0);
  if (op.status == OperationStatus::kSucceeded) percent = 100.0;
  Json out = {{"id", operation_id},
              {"name", op.id},
              {"status", OperationStatusName(op.status)},
              {"startTime", FormatIso8601(op.started_at)},
              {"percentComplete", percent},
              {"properties",
               {{"mode", ModeName(op.mode)},
                {"generations", op.generations.empty() ? Json("all") : Json(op.generations)},
                {"targetGeneration", op.target},
                {"maxObjectsPerSecond", op.rate > 0 ? Json(op.rate) : Json()},
                {"total", op.total},
                {"moved", op.moved},
                {"failed", op.failed},
                {"bytes", op.bytes},
                {"remaining", op.remaining >= 0 ? Json(op.remaining) : Json()}}}};
  if (op.ended_at > 0) out["endTime"] = FormatIso8601(op.ended_at);
  if (op.status == OperationStatus::kFailed) {
    out["error"] = {{"code", op.error_code}, {"message", op.error_message}};
  }
  return out;
}

Reprocessor::Reprocessor(storage::MetadataStore& store, FileStore& files,
                         encryption::AccountKeys& keys, const Clock& clock)
    : store_(store), files_(files), keys_(keys), clock_(clock) {}

Reprocessor::~Reprocessor() { Stop(); }

Status Reprocessor::Start() {
  std::vector<Work> unfinished;
  RETURN_IF_ERROR(store_.Read([&](Transaction& txn) -> Status {
    unfinished.clear();
    return storage::ScanAll(txn, kTable, "", [&](const Record& r) -> Status {
      ASSIGN_OR_RETURN(ReprocessOperation op, Decode(r));
      if (op.status == OperationStatus::kInProgress) {
        unfinished.push_back({r.key.substr(0, r.key.rfind('/')), op.id});
      }
      return OkStatus();
    });
  }));
  for (Work& w : unfinished) queue_.Push(std::move(w));
  queue_.Start(1, [this](const Work& work) { Run(work); });
  if (!unfinished.empty()) {
    Log(LogLevel::kInfo, "reprocess.resumed", {{"operations", std::to_string(unfinished.size())}});
  }
  return OkStatus();
}

void Reprocessor::Stop() { queue_.Stop(); }

void Reprocessor::WaitIdle() { queue_.WaitIdle(); }

Status Reprocessor::Save(std::string_view account, const ReprocessOperation& op) {
  return store_.Write(
      [&](Transaction& txn) { return txn.Put(kTable, Key(account, op.id), AsBytes(Encode(op).dump())); });
}

StatusOr<ReprocessOperation> Reprocessor::Begin(std::string_view account,
                                                const ReprocessRequest& request) {
  ASSIGN_OR_RETURN(encryption::Generation active, keys_.ActiveGeneration(account));
  ASSIGN_OR_RETURN(std::vector<encryption::GenerationReport> report,
                   keys_.Report(account, /*check=*/false));
  for (uint64_t g : request.generations) {
    if (g == active.number) {
      return BadContent("Generation " + std::to_string(g) +
                        " is the active one: its objects need no reprocessing.");
    }
    const bool known = std::any_of(report.begin(), report.end(), [&](const auto& r) {
      return r.generation.number == g;
    });
    if (!known) return BadContent("The account has no key generation " + std::to_string(g) + ".");
  }
  // The target's key must be at hand: everything moves under it.
  RETURN_IF_ERROR(keys_.Get(account, active.number).status());
  ReprocessOperation op;
  ASSIGN_OR_RETURN(Bytes raw, crypto::RandomBytes(16));
  op.id = HexEncode(raw);
  op.mode = request.mode;
  op.generations = request.generations;
  op.target = active.number;
  op.rate = request.max_objects_per_second;
  op.started_at = UnixSeconds(clock_);
  ASSIGN_OR_RETURN(op.total, ObjectsUnder(keys_, account, op));
  RETURN_IF_ERROR(Save(account, op));
  queue_.Push({std::string(account), op.id});
  Log(LogLevel::kInfo, "reprocess.begun",
      {{"operation", op.id},
       {"mode", std::string(ModeName(op.mode))},
       {"target", std::to_string(op.target)},
       {"objects", std::to_string(op.total)}});
  return op;
}

StatusOr<ReprocessOperation> Reprocessor::Get(std::string_view account,
                                              std::string_view id) const {
  std::optional<Record> record;
  RETURN_IF_ERROR(store_.Read([&](Transaction& txn) -> Status {
    ASSIGN_OR_RETURN(record, txn.Get(kTable, Key(account, id)));
    return OkStatus();
  }));
  if (!record.has_value()) {
    return NotFoundError("No reprocessing operation '" + std::string(id) + "' on this account.")
        .WithReason("OperationNotFound");
  }
  return Decode(*record);
}

StatusOr<std::vector<ReprocessOperation>> Reprocessor::List(std::string_view account) const {
  std::vector<ReprocessOperation> out;
  RETURN_IF_ERROR(store_.Read([&](Transaction& txn) -> Status {
    out.clear();
    return storage::ScanAll(txn, kTable, std::string(account) + "/", [&](const Record& r) -> Status {
      ASSIGN_OR_RETURN(ReprocessOperation op, Decode(r));
      out.push_back(std::move(op));
      return OkStatus();
    });
  }));
  std::sort(out.begin(), out.end(),
            [](const auto& a, const auto& b) { return a.started_at > b.started_at; });
  return out;
}

Status Reprocessor::DeleteAccount(std::string_view account) {
  ASSIGN_OR_RETURN(std::vector<ReprocessOperation> all, List(account));
  return store_.Write([&](Transaction& txn) -> Status {
    for (const auto& op : all) {
      Status deleted = txn.Delete(kTable, Key(account, op.id));
      if (!deleted.ok() && deleted.code() != StatusCode::kNotFound) return deleted;
    }
    return OkStatus();
  });
}

void Reprocessor::Run(const Work& work) {
  StatusOr<ReprocessOperation> loaded = Get(work.account, work.id);
  if (!loaded.ok() || loaded->status != OperationStatus::kInProgress) return;
  ReprocessOperation op = *std::move(loaded);
  auto finish = [&](OperationStatus status, std::string code, std::string message) {
    op.status = status;
    op.error_code = std::move(code);
    op.error_message = std::move(message);
    op.ended_at = UnixSeconds(clock_);
    if (StatusOr<int64_t> left = ObjectsUnder(keys_, work.account, op); left.ok()) {
      op.remaining = *left;
    }
    if (Status saved = Save(work.account, op); !saved.ok()) {
      Log(LogLevel::kError, "reprocess.save_failed", {{"operation", op.id}, {"error", saved.ToString()}});
    }
    Log(LogLevel::kInfo, "reprocess.ended",
        {{"operation", op.id},
         {"status", std::string(OperationStatusName(op.status))},
         {"moved", std::to_string(op.moved)},
         {"failed", std::to_string(op.failed)}});
  };
  StatusOr<std::shared_ptr<const encryption::GenerationKey>> target =
      keys_.Get(work.account, op.target);
  if (!target.ok()) {
    if (target.status().code() == StatusCode::kUnavailable) return;  // retried at next start
    return finish(OperationStatus::kFailed, "KeyInaccessible", target.status().message());
  }
  size_t page_size = op.mode == ReprocessMode::kRewrap ? kRewrapPage : kReencryptPage;
  if (op.rate > 0) page_size = std::clamp<size_t>(static_cast<size_t>(op.rate), 1, page_size);
  const auto started = std::chrono::steady_clock::now();
  int64_t moved_here = 0;  // by this run, for pacing
  int64_t failed = 0;      // in this pass over the files
  Status first_failure = OkStatus();
  for (;;) {
    if (queue_.stopping()) return;  // stays InProgress: continues from the saved cursor
    StatusOr<ReprocessPage> page = files_.Reprocess(work.account, op.mode, op.generations,
                                                    **target, op.cursor, page_size);
    if (!page.ok()) {
      Log(LogLevel::kError, "reprocess.page_failed",
          {{"operation", op.id}, {"error", page.status().ToString()}});
      return finish(OperationStatus::kFailed, "InternalError",
                    "Reprocessing stopped on an internal error (" +
                        std::string(StatusCodeName(page.status().code())) +
                        "); objects done so far stay done. Start the operation again.");
    }
    op.cursor = page->last_id.empty() ? op.cursor : page->last_id;
    op.moved += static_cast<int64_t>(page->moved);
    op.bytes += page->moved_bytes;
    moved_here += static_cast<int64_t>(page->moved);
    failed += static_cast<int64_t>(page->failed);
    op.failed = failed;
    if (first_failure.ok() && !page->first_failure.ok()) first_failure = page->first_failure;
    if (page->done) break;
    if (Status saved = Save(work.account, op); !saved.ok()) {
      Log(LogLevel::kError, "reprocess.save_failed", {{"operation", op.id}, {"error", saved.ToString()}});
      return;  // continues from the last saved cursor at the next start
    }
    if (op.rate > 0) {
      // Paced: the objects moved so far may not come sooner than `rate` per second allows.
      const auto due = started + std::chrono::microseconds(moved_here * 1'000'000 / op.rate);
      if (queue_.SleepUntil(due)) return;  // stopping: continues from the saved cursor
    }
  }
  if (failed > 0) {
    return finish(OperationStatus::kFailed, "KeyInaccessible",
                  std::to_string(failed) + " objects stay under a key that cannot be used: " +
                      first_failure.message() + " Restore access and reprocess again.");
  }
  finish(OperationStatus::kSucceeded, "", "");
}

}  // namespace keyfoundry::foundry
