// Everything a plugin author includes: #include <herd/herd.hpp>.
#pragma once

#include "herd/client.hpp"
#include "herd/context.hpp"
#include "herd/http.hpp"
#include "herd/loop.hpp"
#include "herd/plugin.hpp"
#include "herd/postgres.hpp"
#include "herd/redis.hpp"
#include "herd/responder.hpp"
#include "herd/scope.hpp"
#include "herd/task.hpp"
#include "herd/websocket.hpp"
