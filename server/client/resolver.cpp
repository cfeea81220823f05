// c-ares on the core loop; see resolver.hpp.
#include "client/resolver.hpp"

#include <netinet/in.h>
#include <sys/epoll.h>

#include <cstring>
#include <mutex>

#include "client/client_error.hpp"
#include "core/error.hpp"

namespace herd::client {
namespace {
void init_library() {
    static std::once_flag once;
    std::call_once(once, [] {
        if (int rc = ares_library_init(ARES_LIB_INIT_ALL); rc != ARES_SUCCESS)
            throw core::Error(std::string("c-ares: ") + ares_strerror(rc));
    });
}
}  // namespace

Resolver::Resolver(core::EventLoop& loop, const Options& o) : loop_(loop) {
    init_library();
    ares_options options{};
    int mask = ARES_OPT_SOCK_STATE_CB;
    options.sock_state_cb = &Resolver::on_socket;
    options.sock_state_cb_data = this;
    if (o.tries > 0) {
        options.tries = o.tries;
        mask |= ARES_OPT_TRIES;
    }
    if (o.timeout.count() > 0) {
        options.timeout = static_cast<int>(o.timeout.count());
        mask |= ARES_OPT_TIMEOUTMS;
    }
    if (int rc = ares_init_options(&channel_, &options, mask); rc != ARES_SUCCESS)
        throw core::Error(std::string("cannot start the name resolver (c-ares): ") +
                          ares_strerror(rc));
    if (!o.servers.empty())
        if (int rc = ares_set_servers_ports_csv(channel_, o.servers.c_str()); rc != ARES_SUCCESS) {
            ares_destroy(channel_);
            throw core::Error("name servers \"" + o.servers + "\": " + ares_strerror(rc));
        }
}

Resolver::~Resolver() {
    destroying_ = true;  // ares_destroy() answers every query with ARES_EDESTRUCTION
    *alive_ = false;
    if (timer_ != 0) loop_.cancel_timer(timer_);
    ares_destroy(channel_);
}

std::uint64_t Resolver::resolve(const std::string& host, std::uint16_t port, Done done) {
    auto q = std::make_unique<Query>();
    q->self = this;
    q->id = next_id_++;
    q->host = host;
    q->done = std::move(done);
    Query* raw = q.get();
    std::uint64_t id = raw->id;
    queries_[id] = std::move(q);
    ares_addrinfo_hints hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = ARES_AI_NUMERICSERV;
    std::string service = std::to_string(port);
    // May answer at once (/etc/hosts): on_answer defers done to the loop either way.
    ares_getaddrinfo(channel_, host.c_str(), service.c_str(), &hints, &Resolver::on_answer, raw);
    arm_timer();
    return id;  // not raw->id: an answer from /etc/hosts may have freed the query already
}

void Resolver::cancel(std::uint64_t id) {
    delivering_.erase(id);
    auto it = queries_.find(id);
    if (it != queries_.end()) it->second->done = nullptr;
}

void Resolver::on_answer(void* arg, int status, int, ares_addrinfo* result) {
    auto* q = static_cast<Query*>(arg);
    Resolver& self = *q->self;
    std::vector<sockaddr_storage> addresses;
    std::string error;
    if (status == ARES_SUCCESS && result != nullptr) {
        for (ares_addrinfo_node* n = result->nodes; n != nullptr; n = n->ai_next) {
            if (n->ai_addrlen > sizeof(sockaddr_storage)) continue;
            sockaddr_storage s{};
            std::memcpy(&s, n->ai_addr, n->ai_addrlen);
            addresses.push_back(s);
        }
        if (addresses.empty()) error = "no address for " + q->host;
    } else {
        error = "no address for " + q->host + ": " + ares_strerror(status);
    }
    if (result != nullptr) ares_freeaddrinfo(result);
    auto it = self.queries_.find(q->id);
    if (it == self.queries_.end()) return;
    std::unique_ptr<Query> owned = std::move(it->second);
    self.queries_.erase(it);
    if (self.destroying_ || !owned->done) return;
    // Never inside resolve() or inside c-ares' own processing: the caller may cancel or
    // start other lookups from done.
    self.delivering_.insert(owned->id);
    self.loop_.defer([&self, alive = std::weak_ptr<bool>(self.alive_), id = owned->id,
                      done = std::move(owned->done), addresses = std::move(addresses),
                      error = std::move(error)]() mutable {
        auto still = alive.lock();
        if (!still || !*still || self.delivering_.erase(id) == 0) return;
        done(std::move(addresses), std::move(error));
    });
}

void Resolver::on_socket(void* data, ares_socket_t fd, int readable, int writable) {
    auto& self = *static_cast<Resolver*>(data);
    if (self.destroying_) return;
    std::uint32_t events = (readable ? EPOLLIN : 0u) | (writable ? EPOLLOUT : 0u);
    if (events == 0) {
        if (self.loop_.watching(fd)) self.loop_.remove(fd);
        return;
    }
    if (self.loop_.watching(fd)) {
        self.loop_.modify(fd, events);
        return;
    }
    self.loop_.add(fd, events, [&self, fd](std::uint32_t seen) {
        bool in = (seen & (EPOLLIN | EPOLLERR | EPOLLHUP)) != 0;
        bool out = (seen & (EPOLLOUT | EPOLLERR | EPOLLHUP)) != 0;
        self.process(in ? fd : ARES_SOCKET_BAD, out ? fd : ARES_SOCKET_BAD);
    });
}

void Resolver::process(ares_socket_t read_fd, ares_socket_t write_fd) {
    ares_process_fd(channel_, read_fd, write_fd);
    arm_timer();
}

void Resolver::arm_timer() {
    if (timer_ != 0) {
        loop_.cancel_timer(timer_);
        timer_ = 0;
    }
    if (queries_.empty()) return;
    timeval tv{};
    if (ares_timeout(channel_, nullptr, &tv) == nullptr) return;
    auto delay = std::chrono::milliseconds(tv.tv_sec * 1000 + tv.tv_usec / 1000 + 1);
    timer_ = loop_.add_timer(delay, [this] {
        timer_ = 0;
        process(ARES_SOCKET_BAD, ARES_SOCKET_BAD);
    });
}

}  // namespace herd::client
