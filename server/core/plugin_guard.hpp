// The one guard around every entry into plugin code at run time: a request's handler, a
// resumed coroutine's end, a loop callback, on_message, a state callback. One policy: an
// exception escaping plugin code is a plugin failure, reported to the worker (which logs it
// with where it was thrown, answers the request in hand with 500, reports "fatal" and retires
// once its replacement is ready), except herd::Cancelled, the normal end of cancelled work.
// on_start (a start-up failure) and on_stop (logged: the worker is leaving) have their own.
#pragma once

#include <exception>
#include <functional>
#include <string>
#include <string_view>
#include <utility>

#include <herd/scope.hpp>

namespace herd::core {

// Told of every plugin failure: "plugin "/api" (lib.so) threw std::runtime_error: boom in a
// timer callback". The worker's reacts as above; tests record.
using FailureHandler = std::function<void(const std::string& description)>;

// "std::runtime_error: boom" for the exception being handled (call inside a catch block).
std::string describe_current_exception();

// Reports `error` (not Cancelled) of `who` in `entry`; false for a Cancelled or null one.
bool report_plugin_error(const FailureHandler& failed, std::string_view who, std::string_view entry,
                         std::exception_ptr error) noexcept;

// Runs fn; true when it returned (or ended by Cancelled), false when it threw, after telling
// `failed`. `entry` is a string, or a function making one (only called on failure).
template <class Entry, class F>
bool guarded(const FailureHandler& failed, std::string_view who, Entry&& entry, F&& fn) noexcept {
    try {
        std::forward<F>(fn)();
        return true;
    } catch (const herd::Cancelled&) {
        return true;
    } catch (...) {
        std::exception_ptr error = std::current_exception();
        if constexpr (std::is_invocable_v<Entry>)
            return !report_plugin_error(failed, who, std::string(entry()), std::move(error));
        else
            return !report_plugin_error(failed, who, entry, std::move(error));
    }
}

}  // namespace herd::core
