// The file backend (the default): the state lives in one JSON file,
//
//   {
//     "version": 12,
//     "entries": {
//       "feature.beta": true,
//       "limits": {"rps": 100}
//     }
//   }
//
// "version" may be left out by hand-written files (it is then 0); no other top-level key is
// allowed. The broker reads it at start and whenever it changes: its folder is watched with
// inotify, so both in-place writes (close after writing) and editors that write a temporary
// file and rename it over the state file are picked up. An external edit is compared with the
// current state and the differences are published at version max(file's version, current + 1).
// A file that is empty, not JSON, or breaks a rule (key or value limits, unknown key) is
// reported (path and what is wrong) and ignored until it is valid again; meanwhile workers
// keep the last good state and herd's own writes are refused rather than overwrite it. A
// deleted file leaves the state as it was; the next write recreates it.
//
// herd's own writes are batched per loop iteration and written atomically: a temporary file
// in the same folder (mode 0600 for a new state file, else the existing file's mode), fsync,
// rename over the state file, fsync of the folder. A reader never sees a partial file, and a
// crash leaves either the old or the new one. Each write rewrites the whole file: the file
// backend suits state of up to a few MiB.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "broker/backend.hpp"
#include "broker/state_config.hpp"
#include "core/unique_fd.hpp"

namespace herd::broker {

// The file format. decode throws CodecError ("invalid JSON: ... at line 3, column 1", "is
// empty", "entries[\"k\"]: value is nested more than 128 levels deep").
state::Snapshot decode_state_file(std::string_view text);
std::string encode_state_file(const state::Snapshot& snapshot);

class FileBackend final : public Backend {
  public:
    FileBackend(core::EventLoop& loop, FileStateConfig config, Events events);
    ~FileBackend() override;

    void start() override;
    void write(state::Change change, WriteDone done) override;
    BackendStatus status() const override;

    // Reads the file now, as an inotify event does.
    void reload();

  private:
    struct PendingWrite {
        state::Change change;
        WriteDone done;
    };

    void watch_folder();
    void on_inotify();
    void flush_writes();
    // Writes text atomically; returns "" or the error.
    std::string write_file(const std::string& text);
    void report_invalid(const std::string& error);

    FileStateConfig config_;
    std::string folder_;
    std::string name_;
    core::UniqueFd inotify_;
    int watch_ = -1;
    core::EventLoop::TimerId rewatch_timer_ = 0;
    std::vector<PendingWrite> pending_;
    bool flush_scheduled_ = false;
    // Writes are allowed when the file is absent or was valid when last read.
    bool writable_ = false;
    // The file's content as last read or written (a hash of it), to skip re-parsing an
    // unchanged file (our own write coming back through inotify). Content, not inode and
    // mtime: an in-place edit within the same timestamp tick would look unchanged.
    std::optional<std::size_t> known_hash_;  // nullopt: absent or unknown
    bool known_absent_ = false;
    bool known_valid_ = false;
    std::uint64_t temp_counter_ = 0;
    std::uint64_t external_changes_ = 0;
    std::uint64_t writes_ = 0;
};

}  // namespace herd::broker
