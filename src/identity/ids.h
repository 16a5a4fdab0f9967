// The identifiers the identity module checks and compares: GUIDs (object ids, app ids, role
// ids, role assignment names) and ARM resource ids used as RBAC scopes.
//
// ARM compares resource ids case-insensitively ("resourceGroups" = "resourcegroups", and names
// too), so scopes are compared through NormalizeScope, which lower-cases ASCII and drops a
// trailing '/'. Non-ASCII bytes are compared as they are.
//
// Thread safety: pure functions.
#ifndef KEYFOUNDRY_IDENTITY_IDS_H_
#define KEYFOUNDRY_IDENTITY_IDS_H_

#include <string>
#include <string_view>

#include "common/status.h"
#include "common/strings.h"

namespace keyfoundry::identity {

// ARM refuses longer ids; keys in the store stay below storage::kMaxKeySize with room for
// prefixes.
inline constexpr size_t kMaxScopeSize = 512;

// True for the 8-4-4-4-12 hex form, either case.
bool IsUuid(std::string_view text);

using ::keyfoundry::EqualsIgnoreCase;  // common/strings.h
using ::keyfoundry::ToLowerAscii;

// True when `text` is well-formed UTF-8 with no C0/C1 control character or DEL.
bool IsPrintableUtf8(std::string_view text);

// OK when `scope` is an ARM scope we accept: "/subscriptions/{id}" optionally followed by
// "/{segment}"... (a resource group, a resource, a child resource), 1..kMaxScopeSize bytes of
// printable UTF-8, with no empty segment, no "." or ".." segment, and no '?', '#' or '\'.
// A trailing '/' is tolerated. InvalidArgument naming the problem otherwise.
Status ValidateScope(std::string_view scope);

// The comparison form of a valid scope: ASCII lower-cased, without a trailing '/'.
std::string NormalizeScope(std::string_view scope);

// True when `ancestor` is `scope` or one of its parents, segment by segment and
// case-insensitively: "/subscriptions/s" contains "/subscriptions/S/resourceGroups/rg", but
// "/subscriptions/s" does not contain "/subscriptions/s2".
bool ScopeContains(std::string_view ancestor, std::string_view scope);

// The subscription id of a valid scope ("/subscriptions/{id}/..." gives {id}, as written).
std::string_view SubscriptionOfScope(std::string_view scope);

}  // namespace keyfoundry::identity

#endif  // KEYFOUNDRY_IDENTITY_IDS_H_
