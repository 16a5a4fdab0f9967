// Status and StatusOr<T>: how every fallible call in keyfoundry reports failure.
//
// We use a small type of our own rather than Abseil's: Debian 12's libabsl-dev is a 2022
// snapshot whose link line is long and whose ABI changes with every release, and we need only
// a code, a message and value-or-error. No exception crosses a module boundary; these do.
//
// Messages are for people and may reach API responses and logs: never put key material,
// tokens or plaintext in them.
#ifndef KEYFOUNDRY_COMMON_STATUS_H_
#define KEYFOUNDRY_COMMON_STATUS_H_

#include <cassert>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>

namespace keyfoundry {

// The codes follow the gRPC / Abseil canon so their meaning is familiar. kOk is 0 as there;
// no other code is a success.
enum class StatusCode {
  kOk = 0,
  kCancelled = 1,
  kUnknown = 2,
  kInvalidArgument = 3,
  kDeadlineExceeded = 4,
  kNotFound = 5,
  kAlreadyExists = 6,
  kPermissionDenied = 7,
  kResourceExhausted = 8,
  kFailedPrecondition = 9,
  kAborted = 10,
  kOutOfRange = 11,
  kUnimplemented = 12,
  kInternal = 13,
  kUnavailable = 14,
  kDataLoss = 15,  // stored bytes are corrupt or fail authentication
  kUnauthenticated = 16,
};

std::string_view StatusCodeName(StatusCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;  // OK
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }
  std::string ToString() const;

  // Prefixes the message with context ("opening blob x: ..."), keeping the code and reason.
  Status WithContext(std::string_view context) const;

  // A short machine-readable reason that refines the code, for callers that map a Status to
  // an API error ("KeyNotFound", "ForbiddenByFirewall", "ObjectIsDeletedButRecoverable").
  // Empty unless set; not part of equality.
  const std::string& reason() const { return reason_; }
  Status WithReason(std::string reason) const {
    Status out = *this;
    if (!out.ok()) out.reason_ = std::move(reason);
    return out;
  }

  friend bool operator==(const Status& a, const Status& b) {
    return a.code_ == b.code_ && a.message_ == b.message_;
  }

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
  std::string reason_;
};

inline Status OkStatus() { return Status(); }
Status InvalidArgumentError(std::string message);
Status NotFoundError(std::string message);
Status AlreadyExistsError(std::string message);
Status PermissionDeniedError(std::string message);
Status FailedPreconditionError(std::string message);
Status ResourceExhaustedError(std::string message);
Status OutOfRangeError(std::string message);
Status UnimplementedError(std::string message);
Status InternalError(std::string message);
Status UnavailableError(std::string message);
Status DataLossError(std::string message);
Status AbortedError(std::string message);
Status UnauthenticatedError(std::string message);

std::ostream& operator<<(std::ostream& os, const Status& status);

template <typename T>
class StatusOr;

namespace status_internal {
// A U from which StatusOr<T> is built as a value (not a Status, not another StatusOr).
template <typename U, typename T>
concept ValueFor = std::is_constructible_v<T, U&&> && !std::is_same_v<std::decay_t<U>, Status> &&
                   !std::is_same_v<std::decay_t<U>, StatusOr<T>>;
}  // namespace status_internal

// Either a T or a non-OK Status. Accessing the value of an error is a programming bug
// (asserted in debug builds).
template <typename T>
class [[nodiscard]] StatusOr {
 public:
  StatusOr(const Status& status) : value_(status) {  // NOLINT(google-explicit-constructor)
    assert(!status.ok() && "StatusOr built from an OK status has no value");
    if (status.ok()) value_ = Status(StatusCode::kInternal, "StatusOr built from OK status");
  }
  StatusOr(Status&& status) : value_(std::move(status)) {  // NOLINT(google-explicit-constructor)
    assert(!std::get<Status>(value_).ok());
    if (std::get<Status>(value_).ok()) {
      value_ = Status(StatusCode::kInternal, "StatusOr built from OK status");
    }
  }
  // Implicit from a value, as Abseil's StatusOr: `return value;` in a StatusOr function.
  // NOLINTBEGIN(bugprone-forwarding-reference-overload,google-explicit-constructor)
  template <status_internal::ValueFor<T> U = T>
  StatusOr(U&& value) : value_(std::in_place_index<1>, std::forward<U>(value)) {}
  // NOLINTEND(bugprone-forwarding-reference-overload,google-explicit-constructor)

  bool ok() const { return value_.index() == 1; }
  Status status() const { return ok() ? OkStatus() : std::get<0>(value_); }

  T& value() & {
    assert(ok());
    return std::get<1>(value_);
  }
  const T& value() const& {
    assert(ok());
    return std::get<1>(value_);
  }
  T&& value() && {
    assert(ok());
    return std::get<1>(std::move(value_));
  }
  // The value, or `fallback` when this holds an error.
  template <typename U>
  T value_or(U&& fallback) const& {
    return ok() ? std::get<1>(value_) : static_cast<T>(std::forward<U>(fallback));
  }

  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

 private:
  std::variant<Status, T> value_;
};

namespace status_internal {
inline Status AsStatus(const Status& s) { return s; }
inline Status AsStatus(Status&& s) { return std::move(s); }
template <typename T>
Status AsStatus(const StatusOr<T>& s) {
  return s.status();
}
}  // namespace status_internal

}  // namespace keyfoundry

// The macros' arguments are statements and declarations, which cannot be parenthesised.
// NOLINTBEGIN(bugprone-macro-parentheses)
#define KF_STATUS_CONCAT_INNER_(a, b) a##b
#define KF_STATUS_CONCAT_(a, b) KF_STATUS_CONCAT_INNER_(a, b)

// Returns from the enclosing function when `expr` (a Status or StatusOr) is not OK.
#define RETURN_IF_ERROR(expr)                                                        \
  do {                                                                               \
    ::keyfoundry::Status kf_status_ = ::keyfoundry::status_internal::AsStatus(expr); \
    if (!kf_status_.ok()) return kf_status_;                                         \
  } while (false)

// ASSIGN_OR_RETURN(auto x, MakeX()); declares or assigns `lhs` from a StatusOr, or returns
// its error.
#define ASSIGN_OR_RETURN(lhs, expr) \
  KF_ASSIGN_OR_RETURN_IMPL_(KF_STATUS_CONCAT_(kf_statusor_, __LINE__), lhs, expr)
#define KF_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                              \
  if (!tmp.ok()) return tmp.status();             \
  lhs = std::move(tmp).value()
// NOLINTEND(bugprone-macro-parentheses)

#endif  // KEYFOUNDRY_COMMON_STATUS_H_
