// Everything a plugin author includes: #include <herd/herd.hpp>.
#pragma once

#include "herd/context.hpp"
#include "herd/http.hpp"
#include "herd/plugin.hpp"
