// Tests server/worker/plugin_host: mount matching, loading real plugin .so files, routing.
#include "worker/plugin_host.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>

#include <gtest/gtest.h>

#include "http/http_parser.hpp"

#ifndef HERD_PLUGIN_DIR
#error "HERD_PLUGIN_DIR must name the build's plugins folder"
#endif

namespace herd::worker {
namespace {

using nlohmann::json;

std::string plugin_path(const std::string& name) {
    return std::string(HERD_PLUGIN_DIR) + "/lib" + name + ".so";
}

core::PluginConfig plugin(const std::string& mount, const std::string& path,
                          json config = json::object()) {
    core::PluginConfig p;
    p.mount = mount;
    p.path = path;
    p.config = std::move(config);
    return p;
}

core::AppConfig app_with(std::vector<core::PluginConfig> plugins) {
    core::AppConfig app;
    app.name = "web";
    app.plugins = std::move(plugins);
    return app;
}

// The message of the PluginError that load() throws, or a test failure.
std::string load_error(const core::AppConfig& app) {
    PluginHost host;
    try {
        host.load(app, 0);
    } catch (const PluginError& e) {
        return e.what();
    }
    ADD_FAILURE() << "expected a PluginError";
    return {};
}

// Parses one request with the real parser; the parser owns the Request.
void parse(http::HttpParser& parser, std::string_view text) {
    std::size_t consumed = 0;
    ASSERT_EQ(parser.feed(text.data(), text.size(), consumed), http::HttpParser::Status::request)
        << parser.error_reason();
}

TEST(MountMatchesTest, RootMatchesEverything) {
    EXPECT_TRUE(mount_matches("/", "/"));
    EXPECT_TRUE(mount_matches("/", "/anything"));
    EXPECT_TRUE(mount_matches("/", "/a/b/c"));
}

TEST(MountMatchesTest, PathSegmentPrefix) {
    EXPECT_TRUE(mount_matches("/api", "/api"));
    EXPECT_TRUE(mount_matches("/api", "/api/"));
    EXPECT_TRUE(mount_matches("/api", "/api/x"));
    EXPECT_TRUE(mount_matches("/api/v1", "/api/v1/users"));
    EXPECT_FALSE(mount_matches("/api", "/apix"));
    EXPECT_FALSE(mount_matches("/api", "/ap"));
    EXPECT_FALSE(mount_matches("/api", "/"));
    EXPECT_FALSE(mount_matches("/api", "/other/api"));
    EXPECT_FALSE(mount_matches("/api/v1", "/api/v2"));
    EXPECT_FALSE(mount_matches("/api", "/API"));  // paths are case-sensitive
}

TEST(PluginHostTest, PluginDirHasTheTestPlugins) {
    for (const char* name : {"hello", "echo", "no_export", "bad_abi", "throw_on_start"})
        EXPECT_TRUE(std::filesystem::is_regular_file(plugin_path(name))) << plugin_path(name);
}

TEST(PluginHostTest, MissingFile) {
    std::string path = std::string(HERD_PLUGIN_DIR) + "/libdoes_not_exist.so";
    std::string e = load_error(app_with({plugin("/", path)}));
    EXPECT_NE(e.find("plugin \"/\" (" + path + ")"), std::string::npos) << e;
    EXPECT_NE(e.find("cannot open"), std::string::npos) << e;
    EXPECT_NE(e.find("No such file or directory"), std::string::npos) << e;
}

TEST(PluginHostTest, DirectoryIsNotAPlugin) {
    std::string e = load_error(app_with({plugin("/x", HERD_PLUGIN_DIR)}));
    EXPECT_NE(e.find("plugin \"/x\" (" HERD_PLUGIN_DIR ")"), std::string::npos) << e;
    EXPECT_NE(e.find("not a regular file"), std::string::npos) << e;
}

// A private copy of a test plugin in a fresh folder under /tmp, removed at the end.
struct PluginCopy {
    std::filesystem::path dir, file;
    explicit PluginCopy(const std::string& name) {
        char tmpl[] = "/tmp/herd_plugin_safety.XXXXXX";
        if (mkdtemp(tmpl) == nullptr) throw std::runtime_error("mkdtemp failed");
        dir = tmpl;
        file = dir / ("lib" + name + ".so");
        std::filesystem::copy_file(plugin_path(name), file);
        chmod(file.c_str(), 0755);
    }
    ~PluginCopy() {
        chmod(dir.c_str(), 0700);
        std::filesystem::remove_all(dir);
    }
    void expect_loads() const {
        PluginHost host;
        EXPECT_NO_THROW(host.load(app_with({plugin("/", file)}), 0));
    }
};

TEST(PluginSafetyTest, PluginThatOthersMayWriteIsRefused) {
    PluginCopy copy("hello");
    copy.expect_loads();  // 0755 in a 0700 folder under /tmp (1777): fine
    ASSERT_EQ(chmod(copy.file.c_str(), 0666), 0);
    std::string e = load_error(app_with({plugin("/", copy.file)}));
    EXPECT_NE(e.find("plugin \"/\" (" + copy.file.string() +
                     "): refusing to load a plugin that "
                     "anybody may write (mode 0666)"),
              std::string::npos)
        << e;
    EXPECT_NE(e.find("chmod go-w " + copy.file.string()), std::string::npos) << e;
    ASSERT_EQ(chmod(copy.file.c_str(), 0775), 0);
    e = load_error(app_with({plugin("/", copy.file)}));
    EXPECT_NE(e.find("that its group may write (mode 0775)"), std::string::npos) << e;
    ASSERT_EQ(chmod(copy.file.c_str(), 0500), 0);
    copy.expect_loads();
}

TEST(PluginSafetyTest, FolderThatAnybodyMayWriteIsRefusedUnlessSticky) {
    PluginCopy copy("hello");
    ASSERT_EQ(chmod(copy.dir.c_str(), 0777), 0);
    std::string e = load_error(app_with({plugin("/", copy.file)}));
    EXPECT_NE(e.find("refusing to load a plugin from folder " + copy.dir.string() +
                     ", which anybody may write (mode 0777, no sticky bit)"),
              std::string::npos)
        << e;
    // Also when the path reaches it through a symbolic link from a safe folder.
    PluginCopy other("hello");
    std::filesystem::path link = other.dir / "link.so";
    std::filesystem::create_symlink(copy.file, link);
    e = load_error(app_with({plugin("/", link)}));
    EXPECT_NE(e.find("from folder " + copy.dir.string()), std::string::npos) << e;
    // With the sticky bit (as /tmp), others cannot rename or delete our file there.
    ASSERT_EQ(chmod(copy.dir.c_str(), 01777), 0);
    copy.expect_loads();
}

TEST(PluginSafetyTest, PluginOwnedByAnotherUserIsRefused) {
    if (geteuid() != 0) GTEST_SKIP() << "needs root to give a file to another user";
    PluginCopy copy("hello");
    ASSERT_EQ(chown(copy.file.c_str(), 65534, 65534), 0);
    std::string e = load_error(app_with({plugin("/", copy.file)}));
    EXPECT_NE(e.find("refusing to load a plugin owned by uid 65534, neither root nor herd's user"),
              std::string::npos)
        << e;
    ASSERT_EQ(chown(copy.file.c_str(), 0, 0), 0);
    std::filesystem::path link = copy.dir / "link.so";
    std::filesystem::create_symlink(copy.file, link);
    ASSERT_EQ(lchown(link.c_str(), 65534, 65534), 0);
    e = load_error(app_with({plugin("/", link)}));
    EXPECT_NE(e.find("refusing to follow a symbolic link owned by uid 65534"), std::string::npos)
        << e;
}

TEST(PluginHostTest, FileThatIsNotASharedLibrary) {
    char tmpl[] = "/tmp/herd_plugin_test.XXXXXX";
    int fd = mkstemp(tmpl);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(write(fd, "not an ELF file\n", 16), 16);
    close(fd);
    std::string e = load_error(app_with({plugin("/", tmpl)}));
    std::filesystem::remove(tmpl);
    EXPECT_NE(e.find(std::string("(") + tmpl + "): cannot load"), std::string::npos) << e;
}

TEST(PluginHostTest, LibraryWithoutExport) {
    std::string path = plugin_path("no_export");
    std::string e = load_error(app_with({plugin("/", path)}));
    EXPECT_NE(e.find(path), std::string::npos) << e;
    EXPECT_NE(e.find("herd_plugin_abi"), std::string::npos) << e;
    EXPECT_NE(e.find("HERD_PLUGIN"), std::string::npos) << e;
    EXPECT_NE(e.find("not a herd plugin"), std::string::npos) << e;
}

TEST(PluginHostTest, WrongAbiIsRefusedBeforeAnyPluginCodeRuns) {
    std::string path = plugin_path("bad_abi");
    std::string e = load_error(app_with({plugin("/", path)}));
    EXPECT_NE(e.find(path), std::string::npos) << e;
    EXPECT_NE(e.find("built for plugin ABI 99.0, this herd speaks ABI " +
                     std::to_string(abi_major) + "." + std::to_string(abi_minor)),
              std::string::npos)
        << e;
    EXPECT_NE(e.find("another major version"), std::string::npos) << e;
    // The plugin's constructor throws "the factory must never run": it did not.
    EXPECT_EQ(e.find("constructor threw"), std::string::npos) << e;
    EXPECT_EQ(e.find("must never run"), std::string::npos) << e;
}

TEST(AbiTest, SameMajorAndAnOlderOrEqualMinorLoad) {
    EXPECT_EQ(abi_version, (abi_major << 16) | abi_minor);
    EXPECT_EQ(abi_refusal(abi_version), "");
    EXPECT_EQ(abi_refusal(abi_major << 16), "");  // built against x.0: what it calls is here
}

TEST(AbiTest, ANewerMinorIsRefusedNamingBoth) {
    std::string e = abi_refusal((abi_major << 16) | (abi_minor + 1));
    EXPECT_NE(e.find("built for plugin ABI " + std::to_string(abi_major) + "." +
                     std::to_string(abi_minor + 1) + ", newer than this herd's"),
              std::string::npos)
        << e;
    EXPECT_NE(e.find("upgrade herd"), std::string::npos) << e;
}

TEST(AbiTest, AnotherMajorIsRefused) {
    std::string older = abi_refusal(((abi_major - 1) << 16) | 7);
    EXPECT_NE(older.find("built for plugin ABI " + std::to_string(abi_major - 1) + ".7"),
              std::string::npos)
        << older;
    EXPECT_NE(older.find("rebuild it"), std::string::npos) << older;
    EXPECT_NE(abi_refusal((abi_major + 1) << 16), "");
}

TEST(AbiTest, TheSingleNumbersOfHerdBefore5AreRefused) {
    std::string e = abi_refusal(4);
    EXPECT_NE(e.find("built for plugin ABI 4 (an older herd)"), std::string::npos) << e;
}

TEST(PluginHostTest, OpenPluginDirectly) {
    MountedPlugin m;
    m.mount = "/";
    EXPECT_THROW(open_plugin(m, plugin_path("bad_abi")), PluginError);
    EXPECT_FALSE(m.plugin);
    MountedPlugin ok;
    ok.mount = "/";
    open_plugin(ok, plugin_path("hello"));
    EXPECT_TRUE(ok.plugin);
    EXPECT_EQ(ok.path, plugin_path("hello"));
    EXPECT_FALSE(ok.started);
}

TEST(PluginHostTest, ThrowingOnStartFailsStart) {
    std::string path = plugin_path("throw_on_start");
    PluginHost host;
    ASSERT_NO_THROW(host.load(app_with({plugin("/", path)}), 0));
    EXPECT_EQ(host.size(), 1u);
    try {
        host.start();
        FAIL() << "expected a PluginError";
    } catch (const PluginError& e) {
        std::string m = e.what();
        EXPECT_NE(m.find("plugin \"/\" (" + path + ")"), std::string::npos) << m;
        EXPECT_NE(m.find("on_start threw"), std::string::npos) << m;
        EXPECT_NE(m.find("std::runtime_error"), std::string::npos) << m;
        EXPECT_NE(m.find("throw_on_start: refusing to start"), std::string::npos) << m;
    }
    host.stop();  // nothing started: nothing to stop, no throw
}

TEST(PluginHostTest, HelloHandlesARequest) {
    PluginHost host;
    host.load(app_with({plugin("/", plugin_path("hello"))}), 3);
    host.start();
    MountedPlugin* m = host.route("/anything");
    ASSERT_NE(m, nullptr);
    EXPECT_EQ(m->mount, "/");
    EXPECT_TRUE(m->started);
    http::HttpParser parser{http::HttpLimits{}};
    parse(parser, "GET /anything HTTP/1.1\r\nHost: h\r\n\r\n");
    Response response;
    m->plugin->handle(parser.request(), response);
    EXPECT_EQ(response.status(), 200);
    EXPECT_EQ(response.body(), "Hello, World!");
    ASSERT_EQ(response.headers().size(), 1u);
    EXPECT_EQ(response.headers()[0].name, "Content-Type");
    host.stop();
    EXPECT_FALSE(m->started);
}

TEST(PluginHostTest, HelloRefusesADefaultConstructedRequest) {
    // A default Request has no method: hello only answers GET and HEAD.
    PluginHost host;
    host.load(app_with({plugin("/", plugin_path("hello"))}), 0);
    host.start();
    Request request;
    Response response;
    host.route("/")->plugin->handle(request, response);
    EXPECT_EQ(response.status(), 405);
    EXPECT_EQ(response.body(), "");
}

TEST(PluginHostTest, PluginConfigReachesThePlugin) {
    PluginHost host;
    host.load(app_with({plugin("/", plugin_path("hello"), json{{"greeting", "Bonjour"}})}), 0);
    host.start();
    http::HttpParser parser{http::HttpLimits{}};
    parse(parser, "GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    Response response;
    host.route("/")->plugin->handle(parser.request(), response);
    EXPECT_EQ(response.body(), "Bonjour");
}

TEST(PluginHostTest, BadPluginConfigFailsOnStart) {
    PluginHost host;
    host.load(app_with({plugin("/hi", plugin_path("hello"), json{{"greeting", 5}})}), 0);
    try {
        host.start();
        FAIL() << "expected a PluginError";
    } catch (const PluginError& e) {
        std::string m = e.what();
        EXPECT_NE(m.find("plugin \"/hi\""), std::string::npos) << m;
        EXPECT_NE(m.find("on_start threw std::invalid_argument"), std::string::npos) << m;
        EXPECT_NE(m.find("config.greeting: expected a string, got 5"), std::string::npos) << m;
    }
}

TEST(PluginHostTest, LongestPrefixRouting) {
    PluginHost host;
    // Config order puts the shorter mount first: routing must still prefer the longer one.
    host.load(app_with({plugin("/", plugin_path("hello")), plugin("/api", plugin_path("echo"))}),
              0);
    host.start();
    EXPECT_EQ(host.size(), 2u);
    ASSERT_NE(host.route("/api"), nullptr);
    EXPECT_EQ(host.route("/api")->mount, "/api");
    EXPECT_EQ(host.route("/api/users")->mount, "/api");
    EXPECT_EQ(host.route("/apix")->mount, "/");
    EXPECT_EQ(host.route("/")->mount, "/");
    EXPECT_EQ(host.route("/other/api")->mount, "/");

    http::HttpParser parser{http::HttpLimits{}};
    parse(parser,
          "POST /api/users?id=7 HTTP/1.1\r\nX-A: b\r\nHost: h\r\nContent-Length: 2\r\n\r\nhi");
    MountedPlugin* m = host.route(parser.request().path());
    ASSERT_NE(m, nullptr);
    EXPECT_EQ(m->path, plugin_path("echo"));
    parser.set_mount_length(m->mount.size());
    Response response;
    m->plugin->handle(parser.request(), response);
    json out = json::parse(response.body());
    EXPECT_EQ(out["method"], "POST");
    EXPECT_EQ(out["path"], "/api/users");
    EXPECT_EQ(out["subpath"], "/users");
    EXPECT_EQ(out["query"], "id=7");
    EXPECT_EQ(out["body"], "hi");
    EXPECT_EQ(out["version"], "1.1");
    EXPECT_EQ(out["headers"][0], json::array({"X-A", "b"}));
    host.stop();
}

TEST(PluginHostTest, NoRouteWithoutARootMount) {
    PluginHost host;
    host.load(app_with({plugin("/api", plugin_path("echo"))}), 0);
    EXPECT_EQ(host.route("/"), nullptr);
    EXPECT_EQ(host.route("/apix"), nullptr);
    EXPECT_NE(host.route("/api/x"), nullptr);
}

TEST(PluginHostTest, SecondPluginFailingLeavesTheFirstLoaded) {
    PluginHost host;
    std::string bad = plugin_path("no_export");
    try {
        host.load(app_with({plugin("/", plugin_path("hello")), plugin("/bad", bad)}), 0);
        FAIL() << "expected a PluginError";
    } catch (const PluginError& e) {
        EXPECT_NE(std::string(e.what()).find("plugin \"/bad\" (" + bad + ")"), std::string::npos)
            << e.what();
    }
    EXPECT_EQ(host.size(), 1u);
    EXPECT_EQ(host.route("/bad")->mount, "/");
}

TEST(PluginHostTest, ManyHostsLoadTheSameLibrary) {
    // Each host holds its own reference; destroying one must not unload the other's code.
    auto first = std::make_unique<PluginHost>();
    first->load(app_with({plugin("/", plugin_path("hello"))}), 0);
    PluginHost second;
    second.load(app_with({plugin("/", plugin_path("hello"))}), 1);
    first->start();
    second.start();
    first->stop();
    first.reset();
    http::HttpParser parser{http::HttpLimits{}};
    parse(parser, "GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    Response response;
    second.route("/")->plugin->handle(parser.request(), response);
    EXPECT_EQ(response.body(), "Hello, World!");
}

TEST(DescribeExceptionTest, NamesTypeAndMessage) {
    try {
        throw std::out_of_range("index 7");
    } catch (...) {
        EXPECT_EQ(core::describe_current_exception(), "std::out_of_range: index 7");
    }
    try {
        throw 42;
    } catch (...) {
        EXPECT_EQ(core::describe_current_exception(), "an exception that is not a std::exception");
    }
}

}  // namespace
}  // namespace herd::worker
