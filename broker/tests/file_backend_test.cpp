// Tests broker/file_backend with real files in a temporary folder: first write, external
// edits (in place and temp+rename) seen through inotify, invalid files ignored until valid,
// atomic writes, deletion, batching.
#include "broker/file_backend.hpp"

#include <fcntl.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>

#include <gtest/gtest.h>

#include "state/codec.hpp"
#include "test_util.hpp"

namespace herd::broker {
namespace {

using namespace test;

class FileBackendTest : public ::testing::Test {
  protected:
    void make(const std::string& name = "app.state.json") {
        path = dir / name;
        backend = std::make_unique<FileBackend>(loop, FileStateConfig{path}, recorder.events());
    }
    WriteResult& write(std::string key, std::optional<json> value) {
        results.push_back(std::make_unique<WriteResult>());
        WriteResult* r = results.back().get();
        backend->write(state::Change{std::move(key), std::move(value)}, r->callback());
        return *r;
    }
    bool wait(WriteResult& r) {
        return run_until(loop, [&] { return r.done; });
    }
    std::size_t temp_files() const {
        std::size_t n = 0;
        for (const auto& e : std::filesystem::directory_iterator(dir.path()))
            if (e.path().filename().string().find(".herd-") != std::string::npos) ++n;
        return n;
    }

    TempDir dir;
    core::EventLoop loop;
    Recorder recorder;
    std::string path;
    std::unique_ptr<FileBackend> backend;
    std::vector<std::unique_ptr<WriteResult>> results;
};

TEST_F(FileBackendTest, NoFileMeansEmptyStateAndTheFirstWriteCreatesItPrivate) {
    make();
    backend->start();
    BackendStatus s = backend->status();
    EXPECT_TRUE(s.loaded);
    EXPECT_TRUE(s.up);
    EXPECT_EQ(s.keys, 0u);
    EXPECT_EQ(recorder.resets, 1);
    EXPECT_FALSE(std::filesystem::exists(path));

    WriteResult& r = write("greeting", json("hello"));
    EXPECT_FALSE(r.done);  // never from inside write()
    ASSERT_TRUE(wait(r));
    EXPECT_EQ(r.error, "");
    EXPECT_EQ(r.version, 1u);
    ASSERT_EQ(recorder.deltas.size(), 1u);
    EXPECT_EQ(recorder.deltas[0], (state::Delta{0, 1, {{"greeting", json("hello")}}}));
    struct stat st {};
    ASSERT_EQ(stat(path.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 0600u);
    EXPECT_EQ(decode_state_file(read_file(path)), (state::Snapshot{1, {{"greeting", "hello"}}}));
    EXPECT_EQ(temp_files(), 0u);

    // Our own write, seen by inotify, is not an external change.
    loop.run_once(0);  // the events of our rename are queued already
    EXPECT_EQ(recorder.deltas.size(), 1u);
}

TEST_F(FileBackendTest, LoadsAnExistingFileAndKeepsItsMode) {
    make();
    write_file(path, R"({"version": 7, "entries": {"a": 1, "b": {"c": [true]}}})");
    chmod(path.c_str(), 0640);
    backend->start();
    EXPECT_EQ(backend->store().version(), 7u);
    EXPECT_EQ(*backend->store().find("b"), json::parse(R"({"c":[true]})"));
    WriteResult& r = write("a", std::nullopt);
    ASSERT_TRUE(wait(r));
    EXPECT_EQ(r.error, "");
    EXPECT_EQ(r.version, 8u);
    struct stat st {};
    ASSERT_EQ(stat(path.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 0640u);
    EXPECT_EQ(decode_state_file(read_file(path)).entries.count("a"), 0u);
}

TEST_F(FileBackendTest, ExternalEditInPlaceIsPickedUp) {
    make();
    write_file(path, R"({"version": 3, "entries": {"a": 1, "b": 2}})");
    backend->start();
    // An editor that writes in place: open, truncate, write, close.
    write_file(path, R"({"version": 3, "entries": {"a": 10, "c": 3}})");
    ASSERT_TRUE(run_until(loop, [&] { return !recorder.deltas.empty(); }));
    const state::Delta& d = recorder.deltas[0];
    EXPECT_EQ(d.base, 3u);
    EXPECT_EQ(d.version, 4u);  // the file did not bump it: one more than ours
    EXPECT_EQ(d.changes,
              (std::vector<state::Change>{{"a", json(10)}, {"b", std::nullopt}, {"c", json(3)}}));
    EXPECT_EQ(backend->store().entries(), (state::Entries{{"a", 10}, {"c", 3}}));
}

TEST_F(FileBackendTest, AnInPlaceEditOfTheSameSizeRightAfterOurWriteIsSeen) {
    make();
    backend->start();
    ASSERT_TRUE(wait(write("a", json(1))));
    // Same inode, same size, and very likely the same timestamp tick as our write: only the
    // content tells it apart.
    std::string ours = read_file(path);
    std::string edited = ours;
    edited[edited.find("\"a\": 1") + 5] = '2';
    write_file(path, edited);
    ASSERT_TRUE(run_until(loop, [&] { return recorder.deltas.size() == 2; }));
    EXPECT_EQ(recorder.deltas[1], (state::Delta{1, 2, {{"a", json(2)}}}));
}

TEST_F(FileBackendTest, ExternalEditByRenameIsPickedUpWithItsVersion) {
    make();
    write_file(path, R"({"version": 3, "entries": {"a": 1}})");
    backend->start();
    // An editor that writes a temporary file and renames it over the original.
    std::string temp = dir / "app.state.json.swp";
    write_file(temp, R"({"version": 20, "entries": {"a": 2}})");
    ASSERT_EQ(rename(temp.c_str(), path.c_str()), 0);
    ASSERT_TRUE(run_until(loop, [&] { return !recorder.deltas.empty(); }));
    EXPECT_EQ(recorder.deltas[0], (state::Delta{3, 20, {{"a", json(2)}}}));
    // A version bump alone is published too (workers track versions).
    write_file(temp, R"({"version": 25, "entries": {"a": 2}})");
    ASSERT_EQ(rename(temp.c_str(), path.c_str()), 0);
    ASSERT_TRUE(run_until(loop, [&] { return recorder.deltas.size() == 2; }));
    EXPECT_EQ(recorder.deltas[1], (state::Delta{20, 25, {}}));
}

TEST_F(FileBackendTest, InvalidFileIsReportedAndIgnoredUntilValid) {
    make();
    write_file(path, R"({"version": 1, "entries": {"a": 1}})");
    backend->start();
    int status_before = recorder.status_changes;
    // Half-written.
    write_file(path, R"({"version": 2, "entries": {"a": )");
    ASSERT_TRUE(run_until(loop, [&] { return !backend->status().up; }));
    BackendStatus s = backend->status();
    EXPECT_NE(s.last_error.find(path), std::string::npos) << s.last_error;
    EXPECT_NE(s.last_error.find("invalid JSON"), std::string::npos) << s.last_error;
    EXPECT_TRUE(s.down_since.has_value());
    EXPECT_GT(recorder.status_changes, status_before);
    EXPECT_TRUE(recorder.deltas.empty());
    EXPECT_EQ(*backend->store().find("a"), 1);  // the last good state stays

    // herd does not overwrite a file someone is fixing.
    WriteResult& r = write("b", json(2));
    ASSERT_TRUE(wait(r));
    EXPECT_NE(r.error.find("invalid JSON"), std::string::npos) << r.error;
    EXPECT_NE(r.error.find("does not overwrite"), std::string::npos) << r.error;
    EXPECT_EQ(read_file(path), R"({"version": 2, "entries": {"a": )");

    // Empty, then a rule broken: still reported, each time with what is wrong.
    write_file(path, "");
    ASSERT_TRUE(run_until(
        loop, [&] { return backend->status().last_error.find("is empty") != std::string::npos; }));
    write_file(path, R"({"version": 2, "entries": {"": 1}})");
    ASSERT_TRUE(run_until(loop, [&] {
        return backend->status().last_error.find("key is empty") != std::string::npos;
    }));

    // Fixed: picked up, up again, writes work.
    write_file(path, R"({"version": 2, "entries": {"a": 5}})");
    ASSERT_TRUE(run_until(loop, [&] { return backend->status().up; }));
    EXPECT_EQ(backend->status().last_error, "");
    ASSERT_EQ(recorder.deltas.size(), 1u);
    EXPECT_EQ(recorder.deltas[0], (state::Delta{1, 2, {{"a", json(5)}}}));
    WriteResult& r2 = write("b", json(2));
    ASSERT_TRUE(wait(r2));
    EXPECT_EQ(r2.error, "");
}

TEST_F(FileBackendTest, InvalidFileAtStartGivesAnEmptyLoadedStateAndAnError) {
    make();
    write_file(path, "not json");
    backend->start();
    BackendStatus s = backend->status();
    EXPECT_TRUE(s.loaded);
    EXPECT_FALSE(s.up);
    EXPECT_NE(s.last_error.find("invalid JSON"), std::string::npos);
    EXPECT_EQ(backend->store().size(), 0u);
}

TEST_F(FileBackendTest, WritesAreAtomicAndVisibleOnlyWhole) {
    make();
    backend->start();
    ASSERT_TRUE(wait(write("big", json(std::string(200000, 'x')))));
    // A reader that opened the file before a write keeps reading the old file, whole.
    int old_fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    ASSERT_GE(old_fd, 0);
    struct stat before {};
    fstat(old_fd, &before);

    // Watch the folder as another program would, and read the file at every event.
    int watcher = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    ASSERT_GE(watcher, 0);
    ASSERT_GE(inotify_add_watch(watcher, dir.path().c_str(),
                                IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_MODIFY),
              0);
    int seen = 0;
    for (int i = 0; i < 20; ++i) {
        WriteResult& r = write("big", json(std::string(200000 + i, 'a' + i % 26)));
        ASSERT_TRUE(wait(r));
        ASSERT_EQ(r.error, "");
        char buf[8192];
        while (read(watcher, buf, sizeof buf) > 0) {
            // Whatever the state file is at this moment, it is a whole valid file.
            state::Snapshot s = decode_state_file(read_file(path));
            EXPECT_EQ(s.entries.at("big").get<std::string>().size() >= 200000, true);
            ++seen;
        }
    }
    close(watcher);
    EXPECT_GT(seen, 0);
    std::string old_text;
    char buf[65536];
    ssize_t n;
    while ((n = read(old_fd, buf, sizeof buf)) > 0) old_text.append(buf, static_cast<size_t>(n));
    close(old_fd);
    EXPECT_EQ(decode_state_file(old_text).entries.at("big"), json(std::string(200000, 'x')));
    struct stat after {};
    stat(path.c_str(), &after);
    EXPECT_NE(after.st_ino, before.st_ino);  // replaced by rename, never written in place
    EXPECT_EQ(temp_files(), 0u);
}

TEST_F(FileBackendTest, WritesInOneIterationShareOneFileWrite) {
    make();
    backend->start();
    WriteResult& a = write("a", json(1));
    WriteResult& b = write("b", json(2));
    WriteResult& c = write("a", std::nullopt);
    ASSERT_TRUE(wait(c));
    EXPECT_TRUE(a.done && b.done);
    EXPECT_EQ(a.version, 1u);
    EXPECT_EQ(c.version, 1u);
    EXPECT_EQ(backend->status().details["writes"], 1);
    ASSERT_EQ(recorder.deltas.size(), 1u);
    EXPECT_EQ(recorder.deltas[0].changes.size(), 3u);
    EXPECT_EQ(backend->store().entries(), (state::Entries{{"b", 2}}));
    EXPECT_EQ(decode_state_file(read_file(path)).entries, (state::Entries{{"b", 2}}));
}

TEST_F(FileBackendTest, AnEditNotSeenYetIsNotOverwritten) {
    make();
    write_file(path, R"({"version": 1, "entries": {"a": 1}})");
    backend->start();
    // The edit lands, and a write comes before the loop has read the inotify event.
    write_file(path, R"({"version": 1, "entries": {"a": 1, "edited": true}})");
    WriteResult& r = write("b", json(2));
    ASSERT_TRUE(wait(r));
    EXPECT_EQ(r.error, "");
    state::Snapshot on_disk = decode_state_file(read_file(path));
    EXPECT_EQ(on_disk.entries, (state::Entries{{"a", 1}, {"b", 2}, {"edited", true}}));
    EXPECT_EQ(backend->store().entries(), on_disk.entries);
}

// Two brokers on one file (the old and the new master's during an upgrade), writing at the
// same time from two processes: every write either acknowledged is in the file at the end.
TEST_F(FileBackendTest, TwoBrokersWritingAtOnceLoseNoAcknowledgedWrite) {
    constexpr int writes = 100;
    make();
    write_file(path, R"({"version": 1, "entries": {}})");
    auto write_all = [&](FileBackend& backend, core::EventLoop& loop, const std::string& prefix) {
        int acknowledged = 0;
        for (int i = 0; i < writes; ++i) {
            WriteResult r;
            backend.write(state::Change{prefix + std::to_string(i), json(i)}, r.callback());
            if (run_until(loop, [&] { return r.done; }) && r.error.empty()) ++acknowledged;
        }
        return acknowledged;
    };
    pid_t child = fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
        core::EventLoop child_loop;
        Recorder child_recorder;
        FileBackend other(child_loop, FileStateConfig{path}, child_recorder.events());
        other.start();
        _exit(write_all(other, child_loop, "child") == writes ? 0 : 1);
    }
    backend->start();
    int ours = write_all(*backend, loop, "parent");
    int status = 0;
    ASSERT_EQ(waitpid(child, &status, 0), child);
    ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
        << "the other broker's writes failed";
    EXPECT_EQ(ours, writes);
    state::Snapshot on_disk = decode_state_file(read_file(path));
    for (int i = 0; i < writes; ++i) {
        EXPECT_TRUE(on_disk.entries.contains("parent" + std::to_string(i))) << i;
        EXPECT_TRUE(on_disk.entries.contains("child" + std::to_string(i))) << i;
    }
    // And this broker's copy converges to the file (the other's writes came by inotify).
    EXPECT_TRUE(run_until(loop, [&] { return backend->store().entries() == on_disk.entries; }));
}

TEST_F(FileBackendTest, DeletedFileKeepsTheStateAndTheNextWriteRecreatesIt) {
    make();
    write_file(path, R"({"version": 4, "entries": {"a": 1}})");
    backend->start();
    ASSERT_EQ(unlink(path.c_str()), 0);
    loop.run_once(0);  // the deletion event is queued already
    EXPECT_EQ(*backend->store().find("a"), 1);
    EXPECT_TRUE(backend->status().up);
    ASSERT_TRUE(wait(write("b", json(2))));
    EXPECT_EQ(decode_state_file(read_file(path)), (state::Snapshot{5, {{"a", 1}, {"b", 2}}}));
}

TEST_F(FileBackendTest, MissingFolderIsReportedAndWritesFailClearly) {
    path = dir / "missing/state.json";
    backend = std::make_unique<FileBackend>(loop, FileStateConfig{path}, recorder.events());
    backend->start();
    BackendStatus s = backend->status();
    EXPECT_FALSE(s.up);
    EXPECT_NE(s.last_error.find("missing"), std::string::npos) << s.last_error;
    WriteResult& r = write("a", json(1));
    ASSERT_TRUE(wait(r));
    EXPECT_NE(r.error.find("missing"), std::string::npos) << r.error;
    EXPECT_NE(r.error.find("ENOENT"), std::string::npos) << r.error;
    // The folder appears: watched and writable again.
    std::filesystem::create_directory(dir / "missing");
    ASSERT_TRUE(run_until(
        loop, [&] { return backend->status().up; }, 5s));
    WriteResult& r2 = write("a", json(1));
    ASSERT_TRUE(wait(r2));
    EXPECT_EQ(r2.error, "");
}

}  // namespace
}  // namespace herd::broker
