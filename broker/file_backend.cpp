// The file backend; see file_backend.hpp.
#include "broker/file_backend.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>

#include <fmt/format.h>

#include "core/error.hpp"
#include "core/log.hpp"
#include "state/codec.hpp"

namespace herd::broker {
namespace {

constexpr std::size_t max_file_bytes = 256u << 20;
constexpr auto rewatch_delay = std::chrono::milliseconds(1000);

}  // namespace

state::Snapshot decode_state_file(std::string_view text) {
    if (text.find_first_not_of(" \t\r\n") == std::string_view::npos)
        throw state::CodecError("is empty (half-written?)");
    json j = state::parse_json(text, "");
    if (!j.is_object())
        throw state::CodecError("expected an object {\"version\": N, \"entries\": {...}}");
    for (auto it = j.begin(); it != j.end(); ++it)
        if (it.key() != "version" && it.key() != "entries")
            throw state::CodecError(fmt::format("{}: unknown key (known keys: entries, version)",
                                                state::quote_key(it.key())));
    state::Snapshot s;
    if (j.contains("version")) s.version = state::decode_version(j["version"], "\"version\"");
    if (!j.contains("entries")) throw state::CodecError("\"entries\" is missing");
    s.entries = state::decode_entries(j["entries"], "entries");
    return s;
}

std::string encode_state_file(const state::Snapshot& snapshot) {
    json entries = json::object();
    for (const auto& [k, v] : snapshot.entries) entries[k] = v;
    // Version first, for people reading it. JSON text has no raw newline inside a string, so
    // indenting after each newline is safe.
    std::string body = entries.dump(2);
    std::string indented;
    indented.reserve(body.size() + body.size() / 8);
    for (char c : body) {
        indented.push_back(c);
        if (c == '\n') indented += "  ";
    }
    return fmt::format("{{\n  \"version\": {},\n  \"entries\": {}\n}}\n", snapshot.version,
                       indented);
}

FileBackend::FileBackend(core::EventLoop& loop, FileStateConfig config, Events events)
    : Backend(loop, std::move(events)), config_(std::move(config)) {
    std::filesystem::path p(config_.path);
    folder_ = p.parent_path().string();
    if (folder_.empty()) folder_ = ".";
    name_ = p.filename().string();
}

FileBackend::~FileBackend() {
    if (rewatch_timer_ != 0) loop_.cancel_timer(rewatch_timer_);
    if (inotify_) loop_.remove(inotify_.get());
}

void FileBackend::start() {
    inotify_.reset(inotify_init1(IN_NONBLOCK | IN_CLOEXEC));
    if (!inotify_) core::throw_errno("inotify_init1()");
    loop_.add(inotify_.get(), EPOLLIN, [this](std::uint32_t) { on_inotify(); });
    watch_folder();
    reload();
}

void FileBackend::watch_folder() {
    rewatch_timer_ = 0;
    watch_ = inotify_add_watch(inotify_.get(), folder_.c_str(),
                               IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE |
                                   IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR);
    if (watch_ >= 0) return;
    std::string error = core::errno_text("inotify_add_watch(" + folder_ + ")");
    if (last_error_.find(error) == std::string::npos)
        core::log_error(
            "state folder {} cannot be watched ({}); external edits of {} are not "
            "seen until it can; retrying every {} ms",
            folder_, error, config_.path, rewatch_delay.count());
    mark_down("cannot watch the state folder: " + error);
    rewatch_timer_ = loop_.add_timer(rewatch_delay, [this] {
        watch_folder();
        if (watch_ >= 0) {
            core::log_info("watching state folder {} again", folder_);
            reload();
        }
    });
}

void FileBackend::on_inotify() {
    alignas(inotify_event) char buffer[16384];
    bool relevant = false;
    bool lost_watch = false;
    for (;;) {
        ssize_t n = ::read(inotify_.get(), buffer, sizeof buffer);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno != EAGAIN)
                core::log_error("{}", core::errno_text("read() from inotify for " + folder_));
            break;
        }
        if (n == 0) break;
        for (char* p = buffer; p < buffer + n;) {
            auto* ev = reinterpret_cast<inotify_event*>(p);
            p += sizeof(inotify_event) + ev->len;
            if (ev->mask & IN_Q_OVERFLOW) relevant = true;  // events were lost: look anyway
            if (ev->mask & (IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED)) lost_watch = true;
            if (ev->len > 0 && name_ == ev->name) relevant = true;
        }
    }
    if (lost_watch && rewatch_timer_ == 0) {
        if (watch_ >= 0) (void)inotify_rm_watch(inotify_.get(), watch_);
        watch_ = -1;
        core::log_error("state folder {} was removed or moved; retrying every {} ms", folder_,
                        rewatch_delay.count());
        mark_down("the state folder " + folder_ + " was removed or moved");
        rewatch_timer_ = loop_.add_timer(rewatch_delay, [this] {
            watch_folder();
            if (watch_ >= 0) {
                core::log_info("watching state folder {} again", folder_);
                reload();
            }
        });
        return;
    }
    if (relevant) reload();
}

void FileBackend::report_invalid(const std::string& error) {
    if (last_error_ != error)
        core::log_error(
            "{}; ignored until it is valid (workers keep the last good state, "
            "writes are refused so as not to overwrite it)",
            error);
    writable_ = false;
    known_valid_ = false;
    mark_down(error);
    // A broker that starts with a broken file still serves: workers get the empty state.
    if (!loaded_) replace(state::Snapshot{});
}

void FileBackend::reload() {
    core::UniqueFd fd(::open(config_.path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) {
        int err = errno;
        if (err == ENOENT) {
            if (!known_absent_ && loaded_)
                core::log_warn(
                    "state file {} was removed; keeping the last state ({} keys, "
                    "version {}); the next write recreates it",
                    config_.path, store_.size(), store_.version());
            known_hash_.reset();
            known_absent_ = true;
            known_valid_ = true;
            writable_ = true;
            if (watch_ >= 0) mark_up();
            if (!loaded_) replace(state::Snapshot{});
            return;
        }
        report_invalid("cannot read state file: " +
                       core::errno_text("open(" + config_.path + ")", err));
        return;
    }
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) {
        report_invalid(core::errno_text("fstat(" + config_.path + ")"));
        return;
    }
    if (!S_ISREG(st.st_mode)) {
        report_invalid("state file " + config_.path + " is not a regular file");
        return;
    }
    if (static_cast<std::size_t>(st.st_size) > max_file_bytes) {
        report_invalid(fmt::format("state file {} is {} bytes, more than the limit of {}",
                                   config_.path, st.st_size, max_file_bytes));
        return;
    }
    std::string text;
    text.resize(static_cast<std::size_t>(st.st_size));
    std::size_t got = 0;
    for (;;) {
        if (got == text.size()) text.resize(text.size() + 65536);  // it grew meanwhile
        ssize_t n = ::read(fd.get(), text.data() + got, text.size() - got);
        if (n < 0) {
            if (errno == EINTR) continue;
            report_invalid(core::errno_text("read(" + config_.path + ")"));
            return;
        }
        if (n == 0) break;
        got += static_cast<std::size_t>(n);
        if (got > max_file_bytes) {
            report_invalid(
                fmt::format("state file {} is more than {} bytes", config_.path, max_file_bytes));
            return;
        }
    }
    text.resize(got);
    std::size_t hash = std::hash<std::string>{}(text);
    if (known_valid_ && loaded_ && known_hash_ == hash) return;  // our own write, or no change
    state::Snapshot file;
    try {
        file = decode_state_file(text);
    } catch (const state::CodecError& e) {
        report_invalid("state file " + config_.path + " is invalid: " + e.what());
        return;
    }
    bool was_invalid = !known_valid_ && loaded_;
    known_hash_ = hash;
    known_absent_ = false;
    known_valid_ = true;
    writable_ = true;
    if (watch_ >= 0) mark_up();
    if (was_invalid) core::log_info("state file {} is valid again", config_.path);
    if (!loaded_) {
        core::log_info("state: {} keys at version {} from {}", file.entries.size(), file.version,
                       config_.path);
        replace(std::move(file));
        return;
    }
    std::vector<state::Change> changes = state::diff(store_.entries(), file.entries);
    if (changes.empty() && file.version <= store_.version()) return;
    std::uint64_t version =
        changes.empty() ? file.version : std::max(file.version, store_.version() + 1);
    ++external_changes_;
    core::log_info("state file {} changed outside herd: {} key(s) changed, version {} -> {}",
                   config_.path, changes.size(), store_.version(), version);
    publish(std::move(changes), version);
}

void FileBackend::write(state::Change change, WriteDone done) {
    pending_.push_back(PendingWrite{std::move(change), std::move(done)});
    if (flush_scheduled_) return;
    flush_scheduled_ = true;
    // Everything written in this loop iteration goes into one file write.
    defer([this] { flush_writes(); });
}

void FileBackend::flush_writes() {
    flush_scheduled_ = false;
    std::vector<PendingWrite> batch = std::move(pending_);
    pending_.clear();
    if (batch.empty()) return;
    // Another broker may write the same file: the old and the new master's during an upgrade
    // (`herd upgrade`), each serving its own workers for a moment. Reading, merging and
    // renaming happen under an exclusive lock on the folder, so that neither overwrites a write
    // the other has acknowledged; the other's change reaches this broker's workers through
    // inotify, or through the read below.
    core::UniqueFd lock(::open(folder_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    while (lock && ::flock(lock.get(), LOCK_EX) < 0 && errno == EINTR) {
    }
    // An edit whose inotify event has not been read yet must not be overwritten: look first
    // (cheap when nothing changed: a read and a hash).
    reload();
    std::string error;
    if (!writable_) {
        error = last_error_.empty() ? "the state file cannot be written" : last_error_;
        error += "; herd does not overwrite it: fix or remove it";
    }
    std::vector<state::Change> changes;
    std::uint64_t version = store_.version() + 1;
    if (error.empty()) {
        state::Entries next = store_.entries();
        for (const PendingWrite& w : batch) {
            changes.push_back(w.change);
            if (w.change.value)
                next[w.change.key] = *w.change.value;
            else
                next.erase(w.change.key);
        }
        std::string text = encode_state_file(state::Snapshot{version, std::move(next)});
        error = write_file(text);
        if (error.empty()) {
            known_hash_ = std::hash<std::string>{}(text);
            known_absent_ = false;
            known_valid_ = true;
            ++writes_;
            publish(std::move(changes), version);
        } else {
            core::log_error("{}", error);
            set_error(error);
        }
    }
    for (PendingWrite& w : batch)
        if (w.done) w.done(error, error.empty() ? version : 0);
}

std::string FileBackend::write_file(const std::string& text) {
    std::string temp =
        fmt::format("{}/.{}.herd-{}-{}.tmp", folder_, name_, getpid(), ++temp_counter_);
    auto failed = [&](const std::string& what) {
        std::string e = "cannot write state file " + config_.path + ": " + core::errno_text(what);
        (void)::unlink(temp.c_str());
        return e;
    };
    core::UniqueFd fd(::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
    if (!fd) return failed("open(" + temp + ")");
    struct stat existing {};
    if (::stat(config_.path.c_str(), &existing) == 0 && S_ISREG(existing.st_mode) &&
        ::fchmod(fd.get(), existing.st_mode & 07777) != 0)
        return failed("fchmod(" + temp + ")");
    std::size_t off = 0;
    while (off < text.size()) {
        ssize_t n = ::write(fd.get(), text.data() + off, text.size() - off);
        if (n < 0) {
            if (errno == EINTR) continue;
            return failed("write(" + temp + ")");
        }
        off += static_cast<std::size_t>(n);
    }
    if (::fsync(fd.get()) != 0) return failed("fsync(" + temp + ")");
    if (::close(fd.release()) != 0) return failed("close(" + temp + ")");
    if (::rename(temp.c_str(), config_.path.c_str()) != 0)
        return failed("rename(" + temp + ", " + config_.path + ")");
    // The rename is durable once the folder is.
    core::UniqueFd dir(::open(folder_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!dir || ::fsync(dir.get()) != 0)
        core::log_warn("state file {} was written, but {}", config_.path,
                       core::errno_text("fsync of folder " + folder_));
    return {};
}

BackendStatus FileBackend::status() const {
    BackendStatus s;
    s.kind = "file";
    s.target = config_.path;
    fill_common(s);
    s.details = {
        {"writes", writes_}, {"external_changes", external_changes_}, {"watching", watch_ >= 0}};
    return s;
}

}  // namespace herd::broker
