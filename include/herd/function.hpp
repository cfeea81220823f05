// herd::Function: a move-only std::function, so that callbacks may own move-only things (a
// Responder, a unique_ptr). C++23's std::move_only_function, for C++20.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <new>
#include <type_traits>
#include <utility>

namespace herd {

template <class Signature>
class Function;

template <class R, class... Args>
class Function<R(Args...)> {
  public:
    Function() noexcept = default;
    Function(std::nullptr_t) noexcept {}
    template <class F>
    requires(!std::is_same_v<std::remove_cvref_t<F>, Function> &&
             std::is_invocable_r_v<R, std::decay_t<F>&, Args...>)
        Function(F&& f) {  // NOLINT: implicit, like std::function
        using Stored = std::decay_t<F>;
        if constexpr (sizeof(Stored) <= sizeof(buffer_) &&
                      alignof(Stored) <= alignof(std::max_align_t) &&
                      std::is_nothrow_move_constructible_v<Stored>) {
            ::new (static_cast<void*>(buffer_)) Stored(std::forward<F>(f));
            ops_ = &inline_ops<Stored>;
        } else {
            *reinterpret_cast<Stored**>(buffer_) = new Stored(std::forward<F>(f));
            ops_ = &heap_ops<Stored>;
        }
    }
    Function(Function&& o) noexcept : ops_(o.ops_) {
        if (ops_ != nullptr) ops_->move(buffer_, o.buffer_);
        o.ops_ = nullptr;
    }
    Function& operator=(Function&& o) noexcept {
        if (this != &o) {
            reset();
            ops_ = o.ops_;
            if (ops_ != nullptr) ops_->move(buffer_, o.buffer_);
            o.ops_ = nullptr;
        }
        return *this;
    }
    Function& operator=(std::nullptr_t) noexcept {
        reset();
        return *this;
    }
    Function(const Function&) = delete;
    Function& operator=(const Function&) = delete;
    ~Function() { reset(); }

    explicit operator bool() const noexcept { return ops_ != nullptr; }
    // Calling an empty Function is a bug: it throws std::bad_function_call.
    R operator()(Args... args) {
        if (ops_ == nullptr) throw std::bad_function_call();
        return ops_->call(buffer_, std::forward<Args>(args)...);
    }

  private:
    struct Ops {
        R (*call)(void*, Args&&...);
        void (*move)(void* to, void* from) noexcept;
        void (*destroy)(void*) noexcept;
    };
    template <class F>
    static constexpr Ops inline_ops = {
        [](void* p, Args&&... a) -> R {
            return std::invoke(*static_cast<F*>(p), std::forward<Args>(a)...);
        },
        [](void* to, void* from) noexcept {
            ::new (to) F(std::move(*static_cast<F*>(from)));
            static_cast<F*>(from)->~F();
        },
        [](void* p) noexcept { static_cast<F*>(p)->~F(); },
    };
    template <class F>
    static constexpr Ops heap_ops = {
        [](void* p, Args&&... a) -> R {
            return std::invoke(**static_cast<F**>(p), std::forward<Args>(a)...);
        },
        [](void* to, void* from) noexcept { *static_cast<F**>(to) = *static_cast<F**>(from); },
        [](void* p) noexcept { delete *static_cast<F**>(p); },
    };

    void reset() noexcept {
        if (ops_ != nullptr) {
            const Ops* ops = std::exchange(ops_, nullptr);
            ops->destroy(buffer_);
        }
    }

    // Small callables (a few pointers: `this`, a Responder, a handle) are stored in place.
    alignas(std::max_align_t) unsigned char buffer_[4 * sizeof(void*)];
    const Ops* ops_ = nullptr;
};

using Callback = Function<void()>;

}  // namespace herd
