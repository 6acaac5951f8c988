// ambit native addon: passing file descriptors between processes over a unix socket (SCM_RIGHTS).
//
// Node moves fds only to its own children (child_process IPC); an upgraded agent is not the old
// agent's child, so the listening sockets it takes over travel through sendmsg/recvmsg here.
//
//  unixConnect(path)                      connected AF_UNIX SOCK_STREAM fd (blocking connect; a
//                                         unix connect completes or fails at once)
//  sendFds(sockFd, data, fds, timeoutMs)  Promise: sends `data` with `fds` attached, in messages of
//                                         at most 250 fds (SCM_MAX_FD is 253); every message
//                                         after the first carries one padding byte 0x00
//  recvFds(sockFd, timeoutMs)             Promise<{ data, fds }>: everything until EOF; the fds in
//                                         the order they were sent (close-on-exec set)
//
// Both run on a worker thread and poll() the socket themselves, so a non-blocking fd owned by
// libuv is fine as long as JavaScript neither reads nor writes it meanwhile. The fds sent stay
// open in the sender; the receiver owns the duplicates it gets.
#include "common.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <vector>

namespace ambit {

namespace {

constexpr size_t kMaxFdsPerMessage = 250;

// Waits for `events` on fd until the deadline; false with err set on timeout or failure.
bool WaitFor(int fd, short events, std::chrono::steady_clock::time_point deadline, const char *what, SysError *err) {
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count();
    if (left <= 0) {
      err->err = ETIMEDOUT;
      err->syscall = "poll";
      err->message = std::string("timed out waiting to ") + what;
      return false;
    }
    struct pollfd p = {fd, events, 0};
    int r = poll(&p, 1, static_cast<int>(left));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      err->err = errno;
      err->syscall = "poll";
      return false;
    }
    if (r > 0) return true;
  }
}

class SendWorker : public Napi::AsyncWorker {
 public:
  SendWorker(Napi::Env env, int fd, std::vector<uint8_t> data, std::vector<int> fds, int timeoutMs)
      : Napi::AsyncWorker(env), fd_(fd), data_(std::move(data)), fds_(std::move(fds)), timeoutMs_(timeoutMs),
        deferred_(Napi::Promise::Deferred::New(env)) {}

  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeoutMs_);
    size_t sentFds = 0;
    size_t sentData = 0;
    bool first = true;
    while (first || sentFds < fds_.size() || sentData < data_.size()) {
      size_t nfds = 0;
      const uint8_t pad = 0;
      const uint8_t *buf;
      size_t len;
      if (first || sentData < data_.size()) {
        buf = data_.data() + sentData;
        len = data_.size() - sentData;
        if (len == 0) { buf = &pad; len = 1; } // fds need at least one byte to ride on
      } else {
        buf = &pad;
        len = 1;
      }
      // fds ride only with the first byte of a message; data already partly sent carries none.
      if (first || sentData >= data_.size()) nfds = std::min(kMaxFdsPerMessage, fds_.size() - sentFds);
      struct iovec iov = {const_cast<uint8_t *>(buf), len};
      struct msghdr msg;
      memset(&msg, 0, sizeof(msg));
      msg.msg_iov = &iov;
      msg.msg_iovlen = 1;
      std::vector<char> control(CMSG_SPACE(sizeof(int) * kMaxFdsPerMessage), 0);
      if (nfds > 0) {
        msg.msg_control = control.data();
        msg.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
        struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
        memcpy(CMSG_DATA(c), fds_.data() + sentFds, sizeof(int) * nfds);
      }
      ssize_t n = sendmsg(fd_, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
          if (!WaitFor(fd_, POLLOUT, deadline, "send", &error_)) { failed_ = true; return; }
          continue;
        }
        error_.err = errno;
        error_.syscall = "sendmsg";
        failed_ = true;
        return;
      }
      sentFds += nfds;
      if (buf != &pad) sentData += static_cast<size_t>(n);
      first = false;
    }
  }

  void OnOK() override {
    if (failed_) deferred_.Reject(MakeError(Env(), error_).Value());
    else deferred_.Resolve(Env().Undefined());
  }

  void OnError(const Napi::Error &e) override { deferred_.Reject(e.Value()); }

 private:
  int fd_;
  std::vector<uint8_t> data_;
  std::vector<int> fds_;
  int timeoutMs_;
  Napi::Promise::Deferred deferred_;
  SysError error_;
  bool failed_ = false;
};

class RecvWorker : public Napi::AsyncWorker {
 public:
  RecvWorker(Napi::Env env, int fd, int timeoutMs)
      : Napi::AsyncWorker(env), fd_(fd), timeoutMs_(timeoutMs), deferred_(Napi::Promise::Deferred::New(env)) {}

  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeoutMs_);
    std::vector<uint8_t> buf(65536);
    std::vector<char> control(CMSG_SPACE(sizeof(int) * 253));
    for (;;) {
      struct iovec iov = {buf.data(), buf.size()};
      struct msghdr msg;
      memset(&msg, 0, sizeof(msg));
      msg.msg_iov = &iov;
      msg.msg_iovlen = 1;
      msg.msg_control = control.data();
      msg.msg_controllen = control.size();
      ssize_t n = recvmsg(fd_, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
          if (!WaitFor(fd_, POLLIN, deadline, "receive", &error_)) break;
          continue;
        }
        error_.err = errno;
        error_.syscall = "recvmsg";
        break;
      }
      for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
        size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        const int *got = reinterpret_cast<const int *>(CMSG_DATA(c));
        for (size_t i = 0; i < count; i++) fds_.push_back(got[i]);
      }
      if (msg.msg_flags & MSG_CTRUNC) {
        error_.err = EMSGSIZE;
        error_.syscall = "recvmsg";
        error_.message = "file descriptors were truncated (more than 253 in one message)";
        break;
      }
      if (n == 0) { done_ = true; return; }
      data_.insert(data_.end(), buf.begin(), buf.begin() + n);
    }
    // Failed: nothing received is handed out.
    for (int f : fds_) close(f);
    fds_.clear();
  }

  void OnOK() override {
    Napi::Env env = Env();
    if (!done_) {
      deferred_.Reject(MakeError(env, error_).Value());
      return;
    }
    Napi::Object out = Napi::Object::New(env);
    out.Set("data", Napi::Buffer<uint8_t>::Copy(env, data_.data(), data_.size()));
    Napi::Array fds = Napi::Array::New(env, fds_.size());
    for (size_t i = 0; i < fds_.size(); i++) fds.Set(static_cast<uint32_t>(i), Napi::Number::New(env, fds_[i]));
    out.Set("fds", fds);
    deferred_.Resolve(out);
  }

  void OnError(const Napi::Error &e) override { deferred_.Reject(e.Value()); }

 private:
  int fd_;
  int timeoutMs_;
  Napi::Promise::Deferred deferred_;
  std::vector<uint8_t> data_;
  std::vector<int> fds_;
  SysError error_;
  bool done_ = false;
};

// unixConnect(path) -> fd
Napi::Value UnixConnect(const Napi::CallbackInfo &info) {
  std::string path = ArgString(info, 0, "path");
  struct sockaddr_un addr;
  memset(&addr, 0, sizeof(addr));
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr.sun_path)) ThrowErrno(info.Env(), ENAMETOOLONG, "connect", path);
  memcpy(addr.sun_path, path.c_str(), path.size());
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) ThrowErrno(info.Env(), errno, "socket");
  if (connect(fd, reinterpret_cast<struct sockaddr *>(&addr), sizeof(addr)) < 0) {
    int e = errno;
    close(fd);
    ThrowErrno(info.Env(), e, "connect", path);
  }
  return Napi::Number::New(info.Env(), fd);
}

// sendFds(sockFd, data, fds, timeoutMs) -> Promise<void>
Napi::Value SendFds(const Napi::CallbackInfo &info) {
  int fd = ArgInt(info, 0, "sockFd");
  Napi::Buffer<uint8_t> data = ArgBuffer(info, 1, "data");
  if (info.Length() < 3 || !info[2].IsArray()) {
    Napi::TypeError err = Napi::TypeError::New(info.Env(), "argument 2 (fds) must be an array of numbers");
    err.Value().Set("code", "ERR_INVALID_ARG_TYPE");
    throw err;
  }
  Napi::Array arr = info[2].As<Napi::Array>();
  std::vector<int> fds;
  for (uint32_t i = 0; i < arr.Length(); i++) {
    Napi::Value v = arr.Get(i);
    if (!v.IsNumber() || v.As<Napi::Number>().Int32Value() < 0) {
      Napi::TypeError err = Napi::TypeError::New(info.Env(), "argument 2 (fds) must hold only open fds (non-negative numbers)");
      err.Value().Set("code", "ERR_INVALID_ARG_TYPE");
      throw err;
    }
    fds.push_back(v.As<Napi::Number>().Int32Value());
  }
  int timeoutMs = info.Length() > 3 ? ArgInt(info, 3, "timeoutMs") : 5000;
  auto *w = new SendWorker(info.Env(), fd, std::vector<uint8_t>(data.Data(), data.Data() + data.Length()), fds, timeoutMs);
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

// recvFds(sockFd, timeoutMs) -> Promise<{ data, fds }>
Napi::Value RecvFds(const Napi::CallbackInfo &info) {
  int fd = ArgInt(info, 0, "sockFd");
  int timeoutMs = info.Length() > 1 ? ArgInt(info, 1, "timeoutMs") : 5000;
  auto *w = new RecvWorker(info.Env(), fd, timeoutMs);
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

} // namespace

void InitFdPassing(Napi::Env env, Napi::Object exports) {
  exports.Set("unixConnect", Napi::Function::New(env, UnixConnect));
  exports.Set("sendFds", Napi::Function::New(env, SendFds));
  exports.Set("recvFds", Napi::Function::New(env, RecvFds));
}

} // namespace ambit
