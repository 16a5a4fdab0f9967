// kf openai file upload|list|show|download|delete: an AI account's files, through its
// OpenAI-compatible data plane (https://{account}.openai.DOMAIN:PORT/openai/files), streamed
// both ways so a file of any size takes bounded memory, with a progress bar on a terminal.
//
// Authentication: the signed-in identity's token for https://cognitiveservices.DOMAIN, or an
// account key given with --api-key (as the OpenAI tools do). The rest of `kf openai`
// (fine-tuning, model, chat) is in openai_models.cc.
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <iostream>

#include "cli/commands.h"
#include "http/multipart.h"
#include "http/url.h"

namespace keyfoundry::cli {
namespace {

using Json = nlohmann::json;

constexpr uint64_t kProgressThreshold = uint64_t{1} << 20;  // smaller transfers show no bar

struct FileOptions {
  std::string account;
  std::string path;
  std::string purpose = "fine-tune";
  std::string file_id;
  std::string output;
  std::string api_key;
  std::string group;  // accepted, unused: the account's name is enough
  // list's filter and page
  std::string list_purpose;
  int64_t limit = 0;  // 0: the service's default (10,000)
  std::string order;  // asc | desc (the service's default: newest first)
  std::string after;  // a file id: the page starts after it
  bool yes = false;
};

const std::vector<Column>& FileColumns() {
  static const std::vector<Column> columns = {
      Field("Id", "/id"),       Field("Filename", "/filename"),      Field("Purpose", "/purpose"),
      Field("Bytes", "/bytes"), TimeField("Created", "/created_at"), Field("Status", "/status")};
  return columns;
}

// A progress bar on stderr, drawn only on a terminal and for transfers over 1 MiB, at most
// ten times a second.
class Progress {
 public:
  Progress(std::string label, uint64_t total)
      : label_(std::move(label)),
        total_(total),
        shown_(total >= kProgressThreshold && ::isatty(STDERR_FILENO) == 1),
        start_(std::chrono::steady_clock::now()) {}
  ~Progress() {
    if (shown_ && drawn_) std::cerr << "\n";
  }

  void Add(uint64_t n) {
    done_ += n;
    if (!shown_) return;
    const auto now = std::chrono::steady_clock::now();
    if (done_ < total_ && now - last_ < std::chrono::milliseconds(100)) return;
    last_ = now;
    drawn_ = true;
    const double seconds = std::chrono::duration<double>(now - start_).count();
    const double mib = static_cast<double>(done_) / (1024.0 * 1024.0);
    const int width = 30;
    const int filled = total_ == 0 ? width : static_cast<int>(width * done_ / total_);
    char line[160];
    (void)std::snprintf(line, sizeof(line), "\r%s [%-*s] %3d%% %.1f MiB %.1f MiB/s", label_.c_str(),
                        width, std::string(static_cast<size_t>(filled), '#').c_str(),
                        total_ == 0 ? 100 : static_cast<int>(100 * done_ / total_), mib,
                        seconds > 0 ? mib / seconds : 0.0);
    std::cerr << line << std::flush;
  }

 private:
  std::string label_;
  uint64_t total_;
  uint64_t done_ = 0;
  bool shown_;
  bool drawn_ = false;
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point last_{};
};

std::string FilesPath(const std::string& suffix = "", const std::string& query = "") {
  return "/openai/files" + suffix + "?api-version=" + std::string(kOpenAiApiVersion) + query;
}

StatusOr<Session> Open(const FileOptions& o, std::vector<std::pair<std::string, std::string>>* h) {
  return OpenOpenAiSession(o.account, o.api_key, h);
}

Status Upload(const FileOptions& o) {
  FILE* file = std::fopen(o.path.c_str(), "rb");
  if (file == nullptr) return NotFoundError("cannot open " + o.path);
  std::unique_ptr<FILE, int (*)(FILE*)> closer(file, &std::fclose);
  struct stat st {};
  if (::fstat(::fileno(file), &st) != 0 || !S_ISREG(st.st_mode)) {
    return InvalidArgumentError(o.path + " is not a regular file");
  }
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  std::vector<std::pair<std::string, std::string>> headers;
  ASSIGN_OR_RETURN(Session s, Open(o, &headers));
  ASSIGN_OR_RETURN(std::string boundary, http::NewMultipartBoundary());
  std::string filename = o.path.substr(o.path.find_last_of('/') + 1);
  // The body: the purpose field, the file part's header, the file's bytes, the close.
  const std::string head =
      http::MultipartField(boundary, "purpose", o.purpose) +
      http::MultipartFileHeader(boundary, "file", filename, "application/octet-stream");
  const std::string tail = http::MultipartClose(boundary);
  const uint64_t total = head.size() + size + tail.size();
  Progress progress("upload", size);
  uint64_t sent = 0;
  auto source = [&](std::span<uint8_t> out) -> StatusOr<size_t> {
    size_t n = 0;
    while (n < out.size() && sent < total) {
      if (sent < head.size()) {
        const size_t k = std::min<size_t>(out.size() - n, head.size() - sent);
        std::memcpy(out.data() + n, head.data() + sent, k);
        n += k;
        sent += k;
      } else if (sent < head.size() + size) {
        const size_t want =
            static_cast<size_t>(std::min<uint64_t>(out.size() - n, head.size() + size - sent));
        const size_t k = std::fread(out.data() + n, 1, want, file);
        if (k == 0) return DataLossError(o.path + " changed size while it was being read");
        n += k;
        sent += k;
        progress.Add(k);
      } else {
        const size_t at = static_cast<size_t>(sent - head.size() - size);
        const size_t k = std::min<size_t>(out.size() - n, tail.size() - at);
        std::memcpy(out.data() + n, tail.data() + at, k);
        n += k;
        sent += k;
      }
    }
    return n;
  };
  ASSIGN_OR_RETURN(ApiResult uploaded, s.client->Upload(FilesPath(), s.token,
                                                        "multipart/form-data; boundary=" + boundary,
                                                        total, source, headers));
  Print(uploaded.body, FileColumns());
  return OkStatus();
}

Status List(const FileOptions& o) {
  std::vector<std::pair<std::string, std::string>> headers;
  ASSIGN_OR_RETURN(Session s, Open(o, &headers));
  std::string query;
  auto add = [&query](const char* name, const std::string& value) {
    if (!value.empty()) query += std::string("&") + name + "=" + http::PercentEncode(value);
  };
  add("purpose", o.list_purpose);
  add("limit", o.limit > 0 ? std::to_string(o.limit) : "");
  add("order", o.order);
  add("after", o.after);
  ASSIGN_OR_RETURN(ApiResult files,
                   s.client->Call("GET", FilesPath("", query), s.token, nullptr, headers));
  Print(files.body.value("data", Json::array()), FileColumns());
  if (files.body.value("has_more", false) && files.body.contains("last_id") &&
      files.body["last_id"].is_string()) {
    std::cerr << "More files follow: add --after " << files.body["last_id"].get<std::string>()
              << "\n";
  }
  return OkStatus();
}

Status Show(const FileOptions& o) {
  std::vector<std::pair<std::string, std::string>> headers;
  ASSIGN_OR_RETURN(Session s, Open(o, &headers));
  ASSIGN_OR_RETURN(ApiResult file,
                   s.client->Call("GET", FilesPath("/" + http::PercentEncode(o.file_id)), s.token,
                                  nullptr, headers));
  Print(file.body, FileColumns());
  return OkStatus();
}

Status Download(const FileOptions& o) {
  std::vector<std::pair<std::string, std::string>> headers;
  ASSIGN_OR_RETURN(Session s, Open(o, &headers));
  const std::string id = http::PercentEncode(o.file_id);
  ASSIGN_OR_RETURN(ApiResult info,
                   s.client->Call("GET", FilesPath("/" + id), s.token, nullptr, headers));
  const uint64_t size = info.body.value("bytes", uint64_t{0});
  const std::string output = o.output.empty() ? info.body.value("filename", o.file_id) : o.output;
  // Written to a temporary name first: a failed download never leaves a partial file behind
  // under the name asked for.
  const std::string partial = output + ".partial";
  FILE* file = std::fopen(partial.c_str(), "wb");
  if (file == nullptr) return InvalidArgumentError("cannot write " + partial);
  Progress progress("download", size);
  Status downloaded = s.client->Download(
      FilesPath("/" + id + "/content"), s.token,
      [&](std::string_view piece) -> Status {
        if (std::fwrite(piece.data(), 1, piece.size(), file) != piece.size()) {
          return DataLossError("writing " + partial + " failed");
        }
        progress.Add(piece.size());
        return OkStatus();
      },
      headers);
  const bool closed = std::fclose(file) == 0;
  if (downloaded.ok() && !closed) downloaded = DataLossError("writing " + partial + " failed");
  if (!downloaded.ok()) {
    std::remove(partial.c_str());
    return downloaded;
  }
  if (std::rename(partial.c_str(), output.c_str()) != 0) {
    return DataLossError("cannot rename " + partial + " to " + output);
  }
  PrintJson(Json{{"id", o.file_id}, {"path", output}, {"bytes", size}});
  return OkStatus();
}

Status Delete(const FileOptions& o) {
  RETURN_IF_ERROR(Confirm("Delete the file " + o.file_id + "?", o.yes));
  std::vector<std::pair<std::string, std::string>> headers;
  ASSIGN_OR_RETURN(Session s, Open(o, &headers));
  ASSIGN_OR_RETURN(ApiResult deleted,
                   s.client->Call("DELETE", FilesPath("/" + http::PercentEncode(o.file_id)),
                                  s.token, nullptr, headers));
  PrintJson(deleted.body);
  return OkStatus();
}

void Common(CLI::App* cmd, const std::shared_ptr<FileOptions>& o) {
  cmd->add_option("--account-name,-n", o->account, "the AI account")->required();
  cmd->add_option("-g,--resource-group", o->group, "accepted for az compatibility")->group("");
  cmd->add_option("--api-key", o->api_key, "use an account key instead of the signed-in token");
}

}  // namespace

StatusOr<Session> OpenOpenAiSession(const std::string& account_name, const std::string& api_key,
                                    std::vector<std::pair<std::string, std::string>>* headers) {
  ASSIGN_OR_RETURN(Session s, OpenAccountSession(account_name));
  if (!api_key.empty()) {
    s.token = AccessToken{};
    headers->emplace_back("api-key", api_key);
  }
  return s;
}

void AddOpenAiCommands(CLI::App& app) {
  CLI::App* openai = app.add_subcommand("openai", "an AI account's OpenAI-compatible data plane");
  openai->require_subcommand(1);
  CLI::App* file = openai->add_subcommand("file", "files (training data, results)");
  file->require_subcommand(1);
  auto o = std::make_shared<FileOptions>();

  CLI::App* upload =
      file->add_subcommand("upload", "upload a file (sealed under the account's key)");
  Common(upload, o);
  upload->add_option("--file,-f", o->path, "the local file")->required();
  upload->add_option("--purpose", o->purpose, "fine-tune (default), assistants, batch, ...");
  upload->callback([o] { Check(Upload(*o)); });

  CLI::App* list = file->add_subcommand("list", "list the account's files");
  Common(list, o);
  list->add_option("--purpose", o->list_purpose, "only files of this purpose");
  list->add_option("--limit", o->limit, "at most this many files (1-10000; default 10000)")
      ->check(CLI::Range(int64_t{1}, int64_t{10000}));
  list->add_option("--order", o->order, "desc (newest first, the default) or asc")
      ->check(CLI::IsMember({"asc", "desc"}));
  list->add_option("--after", o->after, "continue after this file id (the last one listed)");
  list->callback([o] { Check(List(*o)); });

  CLI::App* show = file->add_subcommand("show", "show a file");
  Common(show, o);
  show->add_option("--file-id,-i", o->file_id, "the file's id")->required();
  show->callback([o] { Check(Show(*o)); });

  CLI::App* download = file->add_subcommand("download", "download a file's content");
  Common(download, o);
  download->add_option("--file-id,-i", o->file_id, "the file's id")->required();
  download->add_option("--file,-f", o->output, "where to write it (default: its filename)");
  download->callback([o] { Check(Download(*o)); });

  CLI::App* del = file->add_subcommand("delete", "delete a file");
  Common(del, o);
  del->add_option("--file-id,-i", o->file_id, "the file's id")->required();
  del->add_flag("-y,--yes", o->yes, "do not ask for confirmation");
  del->callback([o] { Check(Delete(*o)); });

  AddOpenAiModelCommands(*openai);
}

}  // namespace keyfoundry::cli
