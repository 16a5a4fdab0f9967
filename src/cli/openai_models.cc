// kf openai fine-tuning job create|list|show|events|checkpoints|cancel, kf openai model list and
// kf openai chat: fine-tuning, the models an account may deploy, and a chat with a deployment,
// through the account's OpenAI-compatible data plane (https://{account}.openai.DOMAIN:PORT/openai).
// Deployments themselves are ARM resources: kf cognitiveservices account deployment.
//
// Authentication as `kf openai file` (openai.cc): the signed-in identity's token for
// https://cognitiveservices.DOMAIN, or an account key given with --api-key.
//
// `job create --wait` polls the job every 0.5 s until it finishes, drawing its latest event
// ("Step 12/30: training loss=...") on stderr when stderr is a terminal; a job that fails or is
// cancelled makes the command fail with the job's error. `chat --stream` reads the answer's
// server-sent events as they arrive and prints each piece of the reply as its event completes.
#include <unistd.h>

#include <chrono>
#include <ctime>
#include <iostream>
#include <optional>
#include <thread>

#include "cli/commands.h"
#include "http/url.h"

namespace keyfoundry::cli {
namespace {

using Json = nlohmann::json;
using Headers = std::vector<std::pair<std::string, std::string>>;

constexpr auto kPollInterval = std::chrono::milliseconds(500);
// How long --wait keeps polling through a server that cannot be reached (a restart, say).
constexpr auto kPollOutage = std::chrono::seconds(60);
constexpr size_t kMaxEventBytes = size_t{1} << 20;  // one server-sent event of a chat stream

struct ModelOptions {
  std::string account;
  std::string api_key;
  std::string group;  // accepted, unused: the account's name is enough
  // job create
  std::string model;
  std::string training_file;
  std::string validation_file;
  std::string suffix;
  std::optional<int64_t> seed;
  std::optional<int64_t> n_epochs;
  std::optional<int64_t> batch_size;
  std::optional<double> learning_rate_multiplier;
  bool wait = false;
  // job show|events|checkpoints|cancel, and the pages of list and events
  std::string job_id;
  int64_t limit = 0;  // 0: the service's default
  std::string after;
  // chat
  std::string deployment;
  std::string message;
  std::string system;
  std::optional<int64_t> max_tokens;
  std::optional<double> temperature;
  bool stream = false;
  bool json_asked = false;  // -o json given on the command line (set when the command runs)
};

const std::vector<Column>& JobColumns() {
  static const std::vector<Column> columns = {Field("Id", "/id"),
                                              Field("Status", "/status"),
                                              Field("Model", "/model"),
                                              Field("FineTunedModel", "/fine_tuned_model"),
                                              Field("TrainingFile", "/training_file"),
                                              Field("TrainedTokens", "/trained_tokens"),
                                              TimeField("Created", "/created_at"),
                                              TimeField("Finished", "/finished_at")};
  return columns;
}

const std::vector<Column>& EventColumns() {
  static const std::vector<Column> columns = {
      TimeField("Created", "/created_at"), Field("Level", "/level"), Field("Message", "/message")};
  return columns;
}

const std::vector<Column>& CheckpointColumns() {
  static const std::vector<Column> columns = {Field("Step", "/step_number"),
                                              Field("Model", "/fine_tuned_model_checkpoint"),
                                              Field("TrainLoss", "/metrics/train_loss"),
                                              Field("ValidLoss", "/metrics/valid_loss"),
                                              TimeField("Created", "/created_at"),
                                              Field("Id", "/id")};
  return columns;
}

const std::vector<Column>& ModelColumns() {
  static const std::vector<Column> columns = {
      Field("Id", "/id"),
      Field("Status", "/status"),
      Field("Base", "/model"),
      Field("FineTuningJob", "/fine_tune"),
      Field("CanFineTune", "/capabilities/fine_tune"),
      Field("ChatCompletion", "/capabilities/chat_completion"),
      TimeField("Created", "/created")};
  return columns;
}

std::string OpenAiPath(const std::string& path, const std::string& query = "") {
  return "/openai" + path + "?api-version=" + std::string(kOpenAiApiVersion) + query;
}

std::string JobPath(const ModelOptions& o, const std::string& suffix = "",
                    const std::string& query = "") {
  return OpenAiPath("/fine_tuning/jobs/" + http::PercentEncode(o.job_id) + suffix, query);
}

// "&limit=N&after=ID" for the options that are set.
std::string PageQuery(const ModelOptions& o) {
  std::string query;
  if (o.limit > 0) query += "&limit=" + std::to_string(o.limit);
  if (!o.after.empty()) query += "&after=" + http::PercentEncode(o.after);
  return query;
}

// Prints a list answer's data; says on stderr how to get the next page when there is one.
void PrintPage(const Json& list, const std::vector<Column>& columns, const char* what) {
  Print(list.value("data", Json::array()), columns);
  if (list.value("has_more", false) && list.contains("last_id") && list["last_id"].is_string()) {
    std::cerr << "More " << what << " follow: add --after " << list["last_id"].get<std::string>()
              << "\n";
  }
}

// ---------------------------------------------------------------- fine-tuning jobs

bool IsFinished(const std::string& status) {
  return status == "succeeded" || status == "failed" || status == "cancelled";
}

// The job's status line on a terminal: its status and latest event, redrawn in place.
class StatusLine {
 public:
  StatusLine() : shown_(::isatty(STDERR_FILENO) == 1) {}
  ~StatusLine() {
    if (drawn_) std::cerr << "\n";
  }
  StatusLine(const StatusLine&) = delete;
  StatusLine& operator=(const StatusLine&) = delete;

  bool shown() const { return shown_; }

  void Draw(const std::string& text) {
    if (!shown_ || text == last_) return;
    last_ = text;
    drawn_ = true;
    std::cerr << "\r" << text << "\033[K" << std::flush;
  }

 private:
  bool shown_;
  bool drawn_ = false;
  std::string last_;
};

// The message to show for a running job: its latest "Step i/n" event, else its latest event.
std::string LatestProgress(const Json& events) {
  const Json data = events.value("data", Json::array());
  for (const Json& e : data) {
    std::string message = e.value("message", "");
    if (message.rfind("Step ", 0) == 0) return message;
  }
  return data.empty() ? "" : data[0].value("message", "");
}

bool Transient(const Status& status) {
  return status.code() == StatusCode::kUnavailable ||
         status.code() == StatusCode::kDeadlineExceeded;
}

// Polls job `id` until it finishes and returns it. A server that cannot be reached is tried
// again for up to kPollOutage; a token about to expire is renewed.
StatusOr<Json> WaitForJob(Session& s, const ModelOptions& o, Headers& headers,
                          const std::string& id) {
  if (id.empty()) return InternalError("the server's answer names no job id");
  StatusLine line;
  const std::string path = OpenAiPath("/fine_tuning/jobs/" + http::PercentEncode(id));
  const std::string events_path =
      OpenAiPath("/fine_tuning/jobs/" + http::PercentEncode(id) + "/events", "&limit=20");
  std::optional<std::chrono::steady_clock::time_point> outage;
  while (true) {
    if (!s.token.token.empty() && s.token.expires_on < std::time(nullptr) + 120) {
      Headers renewed;
      ASSIGN_OR_RETURN(s, OpenOpenAiSession(o.account, o.api_key, &renewed));
      headers = std::move(renewed);
    }
    StatusOr<ApiResult> job = s.client->Call("GET", path, s.token, nullptr, headers);
    if (!job.ok()) {
      if (!Transient(job.status())) return job.status();
      const auto now = std::chrono::steady_clock::now();
      if (!outage) outage = now;
      if (now - *outage > kPollOutage) return job.status();
      line.Draw(id + " " + std::string(job.status().message()) + "; trying again");
      std::this_thread::sleep_for(kPollInterval);
      continue;
    }
    outage.reset();
    const std::string status = job->body.value("status", "");
    if (IsFinished(status)) return job->body;
    if (line.shown()) {
      std::string text = id;
      text += " " + status;
      if (StatusOr<ApiResult> events =
              s.client->Call("GET", events_path, s.token, nullptr, headers);
          events.ok()) {
        const std::string progress = LatestProgress(events->body);
        if (!progress.empty()) text += ": " + progress;
      }
      line.Draw(text);
    }
    std::this_thread::sleep_for(kPollInterval);
  }
}

// OK for a job that succeeded; else the job's error.
Status Outcome(const Json& job) {
  const std::string status = job.value("status", "");
  const std::string id = job.value("id", "");
  if (status == "succeeded") return OkStatus();
  if (status == "cancelled") return AbortedError("The fine-tuning job " + id + " was cancelled.");
  std::string error = "(no error given)";
  if (job.contains("error") && job["error"].is_object()) {
    error = job["error"].value("code", "error") + ": " + job["error"].value("message", "");
  }
  return InternalError("The fine-tuning job " + id + " failed: " + error);
}

Status CreateJob(const ModelOptions& o) {
  Json body = {{"model", o.model}, {"training_file", o.training_file}};
  if (!o.validation_file.empty()) body["validation_file"] = o.validation_file;
  Json hyperparameters = Json::object();
  if (o.n_epochs) hyperparameters["n_epochs"] = *o.n_epochs;
  if (o.batch_size) hyperparameters["batch_size"] = *o.batch_size;
  if (o.learning_rate_multiplier) {
    hyperparameters["learning_rate_multiplier"] = *o.learning_rate_multiplier;
  }
  if (!hyperparameters.empty()) body["hyperparameters"] = hyperparameters;
  if (!o.suffix.empty()) body["suffix"] = o.suffix;
  if (o.seed) body["seed"] = *o.seed;
  Headers headers;
  ASSIGN_OR_RETURN(Session s, OpenOpenAiSession(o.account, o.api_key, &headers));
  ASSIGN_OR_RETURN(ApiResult job,
                   s.client->Call("POST", OpenAiPath("/fine_tuning/jobs"), s.token, body, headers));
  if (!o.wait) {
    Print(job.body, JobColumns());
    return OkStatus();
  }
  ASSIGN_OR_RETURN(Json done, WaitForJob(s, o, headers, job.body.value("id", "")));
  RETURN_IF_ERROR(Outcome(done));
  Print(done, JobColumns());
  return OkStatus();
}

// GETs (or POSTs, for cancel) `path` and prints the job or the page it answers.
Status JobCall(const ModelOptions& o, const std::string& method, const std::string& path,
               const std::vector<Column>& columns, const char* page_of = nullptr) {
  Headers headers;
  ASSIGN_OR_RETURN(Session s, OpenOpenAiSession(o.account, o.api_key, &headers));
  ASSIGN_OR_RETURN(
      ApiResult answer,
      s.client->Call(method, path, s.token, method == "POST" ? Json::object() : Json(), headers));
  if (page_of != nullptr) {
    PrintPage(answer.body, columns, page_of);
  } else {
    Print(answer.body, columns);
  }
  return OkStatus();
}

// ---------------------------------------------------------------- chat

// Server-sent events (text/event-stream) from a byte stream fed in pieces cut anywhere: the data
// of each event (its "data:" lines joined by newlines) goes to `on_data` when the blank line
// that ends the event arrives. Other fields (event:, id:, retry:) and comments are ignored. An
// event larger than kMaxEventBytes is an error.
class EventStreamReader {
 public:
  explicit EventStreamReader(std::function<Status(std::string_view)> on_data)
      : on_data_(std::move(on_data)) {}

  Status Feed(std::string_view piece) {
    while (!piece.empty()) {
      const size_t end = piece.find('\n');
      line_.append(piece.substr(0, end));
      if (line_.size() + data_.size() > kMaxEventBytes) {
        return ResourceExhaustedError("an event of the answer's stream exceeds 1 MiB");
      }
      if (end == std::string_view::npos) return OkStatus();
      piece.remove_prefix(end + 1);
      if (!line_.empty() && line_.back() == '\r') line_.pop_back();
      RETURN_IF_ERROR(Line(line_));
      line_.clear();
    }
    return OkStatus();
  }

 private:
  Status Line(std::string_view line) {
    if (line.empty()) {
      if (!has_data_) return OkStatus();
      has_data_ = false;
      Status delivered = on_data_(data_);
      data_.clear();
      return delivered;
    }
    if (line.rfind("data:", 0) != 0) return OkStatus();
    line.remove_prefix(5);
    if (!line.empty() && line.front() == ' ') line.remove_prefix(1);
    if (has_data_) data_ += '\n';
    data_.append(line);
    has_data_ = true;
    return OkStatus();
  }

  std::function<Status(std::string_view)> on_data_;
  std::string line_;
  std::string data_;
  bool has_data_ = false;
};

// The error an event of the stream carries ({"error": {code, message}}), as Call's.
Status StreamError(const Json& event) {
  const Json& error = event.at("error");
  if (!error.is_object()) return InternalError("the answer's stream failed");
  return InternalError(error.value("code", "Error") + ": " + error.value("message", ""));
}

Status Chat(const ModelOptions& o) {
  Json messages = Json::array();
  if (!o.system.empty()) messages.push_back({{"role", "system"}, {"content", o.system}});
  messages.push_back({{"role", "user"}, {"content", o.message}});
  Json body = {{"messages", messages}};
  if (o.max_tokens) body["max_tokens"] = *o.max_tokens;
  if (o.temperature) body["temperature"] = *o.temperature;
  if (o.seed) body["seed"] = *o.seed;
  Headers headers;
  ASSIGN_OR_RETURN(Session s, OpenOpenAiSession(o.account, o.api_key, &headers));
  const std::string path =
      OpenAiPath("/deployments/" + http::PercentEncode(o.deployment) + "/chat/completions");
  std::string finish_reason;
  if (!o.stream) {
    ASSIGN_OR_RETURN(ApiResult completion, s.client->Call("POST", path, s.token, body, headers));
    if (o.json_asked) {
      Print(completion.body, {});
      return OkStatus();
    }
    const Json choices = completion.body.value("choices", Json::array());
    if (!choices.is_array() || choices.empty() || !choices[0].is_object()) {
      return InternalError("the answer holds no choice");
    }
    const Json content = choices[0].value("message", Json::object()).value("content", Json());
    const std::string text = content.is_string() ? content.get<std::string>() : "";
    std::cout << text << (text.empty() || text.back() != '\n' ? "\n" : "");
    finish_reason = choices[0].value("finish_reason", Json()).is_string()
                        ? choices[0]["finish_reason"].get<std::string>()
                        : "";
  } else {
    body["stream"] = true;
    bool done = false;
    bool ends_in_newline = true;
    EventStreamReader reader([&](std::string_view data) -> Status {
      if (done) return OkStatus();
      if (data == "[DONE]") {
        done = true;
        return OkStatus();
      }
      const Json chunk = Json::parse(data, nullptr, false);
      if (!chunk.is_object()) return InternalError("an event of the answer's stream is not JSON");
      if (chunk.contains("error")) return StreamError(chunk);
      if (o.json_asked) {
        std::cout << chunk.dump() << "\n" << std::flush;
        return OkStatus();
      }
      const Json choices = chunk.value("choices", Json::array());
      if (!choices.is_array() || choices.empty() || !choices[0].is_object()) return OkStatus();
      const Json delta = choices[0].value("delta", Json::object());
      if (delta.is_object() && delta.contains("content") && delta["content"].is_string()) {
        const std::string piece = delta["content"].get<std::string>();
        if (!piece.empty()) {
          std::cout << piece << std::flush;
          ends_in_newline = piece.back() == '\n';
        }
      }
      if (choices[0].contains("finish_reason") && choices[0]["finish_reason"].is_string()) {
        finish_reason = choices[0]["finish_reason"].get<std::string>();
      }
      return OkStatus();
    });
    Status streamed = s.client->Stream(
        "POST", path, s.token, body, [&](std::string_view piece) { return reader.Feed(piece); },
        headers);
    if (!o.json_asked && !ends_in_newline) std::cout << "\n" << std::flush;
    RETURN_IF_ERROR(streamed);
    if (!done) return UnavailableError("the answer's stream ended before its [DONE] event");
  }
  if (finish_reason == "length" && !o.json_asked) {
    std::cerr << "WARNING: the reply was cut at its maximum length (--max-tokens)\n";
  }
  return OkStatus();
}

// True when -o json was given on the command line (not only the default format).
bool JsonAsked(const CLI::App* cmd) {
  while (cmd->get_parent() != nullptr) cmd = cmd->get_parent();
  const CLI::Option* output = cmd->get_option_no_throw("--output");
  return output != nullptr && output->count() > 0 && Output() == OutputFormat::kJson;
}

void Common(CLI::App* cmd, const std::shared_ptr<ModelOptions>& o) {
  cmd->add_option("--account-name,-n", o->account, "the AI account")->required();
  cmd->add_option("-g,--resource-group", o->group, "accepted for az compatibility")->group("");
  cmd->add_option("--api-key", o->api_key, "use an account key instead of the signed-in token");
}

void JobId(CLI::App* cmd, const std::shared_ptr<ModelOptions>& o) {
  cmd->add_option("--job-id,-i", o->job_id, "the job's id (ftjob-...)")->required();
}

}  // namespace

void AddOpenAiModelCommands(CLI::App& openai) {
  auto o = std::make_shared<ModelOptions>();

  CLI::App* tuning = openai.add_subcommand("fine-tuning", "fine-tuning (customized models)");
  tuning->require_subcommand(1);
  CLI::App* job = tuning->add_subcommand("job", "fine-tuning jobs");
  job->require_subcommand(1);

  CLI::App* create = job->add_subcommand(
      "create", "fine-tune a model on a training file (JSONL, chat format) of the account");
  Common(create, o);
  create->add_option("--training-file", o->training_file, "the training file's id (file-...)")
      ->required();
  create->add_option("--validation-file", o->validation_file, "a validation file's id");
  create->add_option("--model,-m", o->model, "the base model, e.g. gpt-4o-mini-2024-07-18")
      ->required();
  create->add_option("--suffix", o->suffix, "up to 40 characters added to the model's name");
  create->add_option("--seed", o->seed, "the seed: the same seed and data train the same model");
  create->add_option("--n-epochs", o->n_epochs, "passes over the training data (default: auto)")
      ->check(CLI::PositiveNumber);
  create->add_option("--batch-size", o->batch_size, "examples per step (default: auto)")
      ->check(CLI::PositiveNumber);
  create->add_option("--learning-rate-multiplier", o->learning_rate_multiplier,
                     "how strongly each example counts (default: 1)");
  create->add_flag("--wait", o->wait,
                   "wait until the job finishes (its progress on a terminal); fail if it fails");
  create->callback([o] { Check(CreateJob(*o)); });

  CLI::App* list = job->add_subcommand("list", "list the account's jobs, newest first");
  Common(list, o);
  list->add_option("--limit", o->limit, "at most this many jobs (default 20)")
      ->check(CLI::PositiveNumber);
  list->add_option("--after", o->after, "continue after this job id (the last one listed)");
  list->callback([o] {
    Check(JobCall(*o, "GET", OpenAiPath("/fine_tuning/jobs", PageQuery(*o)), JobColumns(), "jobs"));
  });

  CLI::App* show = job->add_subcommand("show", "show a job");
  Common(show, o);
  JobId(show, o);
  show->callback([o] { Check(JobCall(*o, "GET", JobPath(*o), JobColumns())); });

  CLI::App* events = job->add_subcommand("events", "a job's events, newest first");
  Common(events, o);
  JobId(events, o);
  events->add_option("--limit", o->limit, "at most this many events (default 20)")
      ->check(CLI::PositiveNumber);
  events->add_option("--after", o->after, "continue after this event id (the last one listed)");
  events->callback([o] {
    Check(JobCall(*o, "GET", JobPath(*o, "/events", PageQuery(*o)), EventColumns(), "events"));
  });

  CLI::App* checkpoints = job->add_subcommand(
      "checkpoints", "a job's checkpoints (one deployable model per epoch), newest first");
  Common(checkpoints, o);
  JobId(checkpoints, o);
  checkpoints->callback([o] {
    Check(JobCall(*o, "GET", JobPath(*o, "/checkpoints"), CheckpointColumns(), "checkpoints"));
  });

  CLI::App* cancel = job->add_subcommand("cancel", "cancel a job that has not finished");
  Common(cancel, o);
  JobId(cancel, o);
  cancel->callback([o] { Check(JobCall(*o, "POST", JobPath(*o, "/cancel"), JobColumns())); });

  CLI::App* model =
      openai.add_subcommand("model", "the models the account may fine-tune and deploy");
  model->require_subcommand(1);
  CLI::App* model_list =
      model->add_subcommand("list", "list the base models and the account's fine-tuned ones");
  Common(model_list, o);
  model_list->callback(
      [o] { Check(JobCall(*o, "GET", OpenAiPath("/models"), ModelColumns(), "models")); });

  CLI::App* chat = openai.add_subcommand(
      "chat", "ask a deployment and print its reply (-o json: the whole chat.completion)");
  Common(chat, o);
  chat->add_option("--deployment,--deployment-name", o->deployment, "the deployment's name")
      ->required();
  chat->add_option("--message", o->message, "the user's message")->required();
  chat->add_option("--system", o->system, "a system message before it");
  chat->add_option("--max-tokens", o->max_tokens, "at most this many tokens in the reply")
      ->check(CLI::PositiveNumber);
  chat->add_option("--temperature", o->temperature, "0 (the most likely reply) to 2")
      ->check(CLI::NonNegativeNumber);
  chat->add_option("--seed", o->seed, "the seed of the sampling, for repeatable replies");
  chat->add_flag("--stream", o->stream,
                 "print the reply as it arrives (-o json: each chunk, one JSON a line)");
  chat->callback([o, chat] {
    o->json_asked = JsonAsked(chat);
    Check(Chat(*o));
  });
}

}  // namespace keyfoundry::cli
