// The error herd's clients report: the SDK's herd::ClientError (include/herd/client.hpp), so
// that a plugin catches the very type the client throws.
#pragma once

#include <herd/client.hpp>

namespace herd::client {

using ClientError = herd::ClientError;
using ErrorKind = herd::ClientError::Kind;
// "timeout", "connect", ...: the metrics label.
const char* error_kind_name(ErrorKind k);

}  // namespace herd::client
