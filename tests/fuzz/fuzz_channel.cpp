// libFuzzer target: the channel's frame decoder (core::FrameDecoder), which turns the bytes and
// the SCM_RIGHTS descriptor batches that recvmsg returns into messages. FrameDecoder is pure
// (Channel::read_ready does the I/O and only feeds it), so this is the whole decoding path.
//
// The input is a little program: each op byte appends raw bytes, appends a well-formed frame,
// adds a batch of (real, dup'ed) descriptors, possibly marked truncated as after MSG_CTRUNC,
// asks for messages, or clears the decoder as Channel::close does. A reference model (framing
// rules of channel.hpp written the plain way) runs beside it: both must agree on every result,
// on every payload and on which descriptors each message gets. At the end every descriptor
// handed to the decoder must be closed: none leaks, whatever path it took.
#include <fcntl.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <string>
#include <vector>

#include "core/channel.hpp"

namespace {

using herd::core::FrameDecoder;
using herd::core::Message;
using herd::core::UniqueFd;
using Result = FrameDecoder::Result;

[[noreturn]] void violated(const char* what) {
    std::fprintf(stderr, "fuzz_channel: invariant violated: %s\n", what);
    std::abort();
}

#define CHECK(cond)                   \
    do {                              \
        if (!(cond)) violated(#cond); \
    } while (0)

struct Reader {
    const std::uint8_t* p;
    std::size_t left;
    std::uint8_t byte() {
        if (left == 0) return 0;
        --left;
        return *p++;
    }
    std::string bytes(std::size_t n) {
        n = std::min(n, left);
        std::string s(reinterpret_cast<const char*>(p), n);
        p += n;
        left -= n;
        return s;
    }
};

// The framing rules of channel.hpp, written independently of FrameDecoder.
struct Model {
    std::string buffer;
    struct Batch {
        std::vector<int> fds;
        bool truncated;
    };
    std::deque<Batch> batches;

    Result next(std::string& payload, std::vector<int>& fds, std::size_t& lost) {
        if (buffer.size() < 8) return Result::need_more;
        std::uint32_t length, nfds;
        std::memcpy(&length, buffer.data(), 4);
        std::memcpy(&nfds, buffer.data() + 4, 4);
        if (length > FrameDecoder::max_payload || nfds > FrameDecoder::max_fds)
            return Result::broken;
        if (buffer.size() - 8 < length) return Result::need_more;
        fds.clear();
        lost = 0;
        if (nfds > 0) {
            if (batches.empty()) return Result::broken;
            Batch& b = batches.front();
            if (b.fds.size() > nfds || (b.fds.size() < nfds && !b.truncated)) return Result::broken;
            lost = nfds - b.fds.size();
            fds = b.fds;
            batches.pop_front();
        }
        payload = buffer.substr(8, length);
        buffer.erase(0, 8 + std::size_t{length});
        auto body = nlohmann::json::parse(payload, nullptr, false);
        return body.is_discarded() || !body.is_object() ? Result::bad_message : Result::message;
    }
};

int null_fd() {
    static int fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    return fd;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    Reader in{data, size};
    std::vector<int> created;  // every descriptor given to the decoder
    {
        FrameDecoder decoder;
        Model model;
        bool broken = false;
        while (in.left > 0 && !broken) {
            std::uint8_t op = in.byte();
            switch (op % 6) {
                case 0: {  // raw bytes, as a read() brings them
                    std::string chunk = in.bytes(in.byte());
                    decoder.append(chunk.data(), chunk.size());
                    model.buffer += chunk;
                    break;
                }
                case 1: {  // a well-formed frame (JSON built from input bytes), possibly split
                    nlohmann::json body = nlohmann::json::object();
                    std::uint8_t kind = in.byte();
                    std::string text = in.bytes(in.byte() % 48);
                    if (kind & 1) body["type"] = text;  // invalid UTF-8 is replaced by dump()
                    if (kind & 2) body["n"] = static_cast<int>(kind) - 128;
                    if (kind & 4) body["a"] = nlohmann::json::array({text, kind});
                    std::string frame = herd::core::encode_frame(body, (kind >> 3) % 4);
                    std::size_t cut = frame.size() * in.byte() / 256;
                    decoder.append(frame.data(), cut);
                    decoder.append(frame.data() + cut, frame.size() - cut);
                    model.buffer += frame;
                    break;
                }
                case 2: {  // a batch of descriptors, as one recvmsg returns them
                    std::uint8_t b = in.byte();
                    std::size_t n = b % (FrameDecoder::max_fds + 1);
                    bool truncated = (b & 0x80) != 0;
                    if (created.size() + n > 512) break;  // stay far from the descriptor limit
                    std::vector<UniqueFd> batch;
                    std::vector<int> numbers;
                    for (std::size_t i = 0; i < n; ++i) {
                        int fd = ::fcntl(null_fd(), F_DUPFD_CLOEXEC, 3);
                        CHECK(fd >= 0);
                        created.push_back(fd);
                        numbers.push_back(fd);
                        batch.emplace_back(fd);
                    }
                    decoder.add_fds(std::move(batch), truncated);
                    if (n > 0 || truncated) model.batches.push_back({numbers, truncated});
                    break;
                }
                case 3:
                case 4: {  // take every complete message, as Channel::read_ready does
                    for (int guard = 0; guard < 10000; ++guard) {
                        Message m;
                        std::string error;
                        Result got = decoder.next(m, error);
                        std::string payload;
                        std::vector<int> fds;
                        std::size_t lost = 0;
                        Result want = model.next(payload, fds, lost);
                        CHECK(got == want);
                        if (got == Result::need_more) break;
                        if (got == Result::broken) {
                            CHECK(!error.empty());
                            broken = true;  // Channel fails and closes: decoder.clear()
                            decoder.clear();
                            break;
                        }
                        if (got == Result::bad_message) {
                            CHECK(!error.empty());
                            continue;  // its descriptors were closed with it
                        }
                        CHECK(m.body.is_object());
                        CHECK(m.body == nlohmann::json::parse(payload));
                        CHECK(m.fds_lost == lost);
                        CHECK(m.fds.size() == fds.size());
                        for (std::size_t i = 0; i < fds.size(); ++i) {
                            CHECK(m.fds[i].get() == fds[i]);
                            CHECK(::fcntl(fds[i], F_GETFD) >= 0);  // handed over open
                        }
                        (void)m.type();
                    }
                    if (!broken) CHECK(decoder.buffered() == model.buffer.size());
                    break;
                }
                case 5:  // Channel::close
                    decoder.clear();
                    model.buffer.clear();
                    model.batches.clear();
                    CHECK(decoder.buffered() == 0 && decoder.pending_fds() == 0);
                    break;
            }
            if (!broken) {
                std::size_t pending = 0;
                for (const auto& b : model.batches) pending += b.fds.size();
                CHECK(decoder.pending_fds() == pending);
            }
        }
    }
    // The decoder and every message are gone: so must every descriptor be.
    for (int fd : created) CHECK(::fcntl(fd, F_GETFD) < 0);
    return 0;
}
