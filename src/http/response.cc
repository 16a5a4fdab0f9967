#include "http/response.h"

namespace keyfoundry::http {

Response Json(int status, const nlohmann::json& body) {
  Response response;
  response.status = status;
  response.body = body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  return response;
}

Response AzureError(int status, std::string code, std::string message,
                    std::optional<nlohmann::json> innererror) {
  nlohmann::json error = {{"code", std::move(code)}, {"message", std::move(message)}};
  if (innererror.has_value()) error["innererror"] = *std::move(innererror);
  return Json(status, {{"error", std::move(error)}});
}

Response Text(int status, std::string body, std::string content_type) {
  Response response;
  response.status = status;
  response.body = std::move(body);
  response.content_type = std::move(content_type);
  return response;
}

Response RunOnWorker() {
  Response response;
  response.status = 500;  // what it becomes if the server does not act on it
  response.run_on_worker = true;
  return response;
}

}  // namespace keyfoundry::http
