// ambit native addon: the few syscalls Node lacks.
//
//  listenInNetns(netnsPath, specs)  listening TCP (or bound UDP, spec.udp) sockets created inside another network namespace;
//                                   the fds go to net.Server.listen({ fd }). Runs on a fresh thread
//                                   that setns()es and then exits, so no pooled thread (and never the
//                                   main thread) is left in a foreign namespace.
//  netnsCookie(path)                SO_NETNS_COOKIE of a socket made inside that namespace.
//  socketCookie / socketNetnsCookie SO_COOKIE / SO_NETNS_COOKIE of an fd.
//  originalDst(fd, family)          plain getsockopt(SO_ORIGINAL_DST), as any proxy would ask.
//  cgroupId(path), fsMagic(path), mountBpffs(path).
#include "common.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/netfilter_ipv4.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <cstring>
#include <thread>
#include <vector>

#ifndef SO_COOKIE
#define SO_COOKIE 57
#endif
#ifndef SO_NETNS_COOKIE
#define SO_NETNS_COOKIE 71
#endif
#ifndef IP6T_SO_ORIGINAL_DST
#define IP6T_SO_ORIGINAL_DST 80
#endif

namespace ambit {

namespace {

struct ListenSpec {
  std::string host;
  int port = 0;
  int backlog = 4096;
  bool optional = false; // failure yields fd -1 and a reason instead of failing the whole call
  bool udp = false;      // a bound UDP socket (SO_REUSEPORT, so a successor agent can bind beside it) instead of a TCP listener
};

struct ListenResult {
  int fd = -1;
  std::string skipped; // why an optional listener was not created
};

// Runs inside the target namespace: one listener, or an error.
int MakeListener(const ListenSpec &spec, SysError *err) {
  struct sockaddr_storage ss;
  socklen_t len;
  if (!ParseSockaddr(spec.host, spec.port, &ss, &len)) {
    err->err = EINVAL;
    err->syscall = "inet_pton";
    err->message = "not an IP address: " + spec.host;
    return -1;
  }
  int fd = socket(ss.ss_family, (spec.udp ? SOCK_DGRAM : SOCK_STREAM) | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) {
    err->err = errno;
    err->syscall = "socket";
    return -1;
  }
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (spec.udp) setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
  if (ss.ss_family == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
  if (bind(fd, reinterpret_cast<struct sockaddr *>(&ss), len) < 0) {
    err->err = errno;
    err->syscall = "bind";
    err->message = spec.host + ":" + std::to_string(spec.port);
    close(fd);
    return -1;
  }
  if (!spec.udp && listen(fd, spec.backlog) < 0) {
    err->err = errno;
    err->syscall = "listen";
    close(fd);
    return -1;
  }
  return fd;
}

uint64_t NetnsCookieOf(int fd, SysError *err) {
  uint64_t cookie = 0;
  socklen_t len = sizeof(cookie);
  if (getsockopt(fd, SOL_SOCKET, SO_NETNS_COOKIE, &cookie, &len) < 0) {
    err->err = errno;
    err->syscall = "getsockopt(SO_NETNS_COOKIE)";
    err->message = "needs Linux 5.14";
    return 0;
  }
  return cookie;
}

// In a fresh thread: setns into the namespace, then create the listeners and read the cookie.
class NetnsWorker : public Napi::AsyncWorker {
 public:
  NetnsWorker(Napi::Env env, std::string path, std::vector<ListenSpec> specs)
      : Napi::AsyncWorker(env), path_(std::move(path)), specs_(std::move(specs)),
        deferred_(Napi::Promise::Deferred::New(env)) {}

  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override {
    int ns = open(path_.c_str(), O_RDONLY | O_CLOEXEC);
    if (ns < 0) {
      error_.err = errno;
      error_.syscall = "open";
      error_.message = "netns " + path_;
      failed_ = true;
      return;
    }
    std::thread t([this, ns]() { RunInside(ns); });
    t.join();
    close(ns);
  }

  void OnOK() override {
    Napi::Env env = Env();
    if (failed_) {
      deferred_.Reject(MakeError(env, error_).Value());
      return;
    }
    Napi::Object out = Napi::Object::New(env);
    out.Set("netnsCookie", BigU64(env, cookie_));
    Napi::Array fds = Napi::Array::New(env);
    Napi::Array skipped = Napi::Array::New(env);
    for (size_t i = 0; i < results_.size(); i++) {
      fds.Set(static_cast<uint32_t>(i), Napi::Number::New(env, results_[i].fd));
      skipped.Set(static_cast<uint32_t>(i), results_[i].skipped.empty() ? env.Null() : Napi::String::New(env, results_[i].skipped));
    }
    out.Set("fds", fds);
    out.Set("skipped", skipped);
    deferred_.Resolve(out);
  }

  void OnError(const Napi::Error &e) override { deferred_.Reject(e.Value()); }

 private:
  void RunInside(int ns) {
    // The thread's fs attributes are not shared for CLONE_NEWNET; setns affects this thread only.
    if (setns(ns, CLONE_NEWNET) < 0) {
      error_.err = errno;
      error_.syscall = "setns";
      error_.message = "netns " + path_ + (errno == EPERM ? ": needs CAP_SYS_ADMIN" : "");
      failed_ = true;
      return;
    }
    for (const auto &spec : specs_) {
      SysError e;
      ListenResult r;
      r.fd = MakeListener(spec, &e);
      if (r.fd < 0) {
        if (spec.optional) {
          r.skipped = e.syscall + ": " + strerror(e.err);
        } else {
          error_ = e;
          failed_ = true;
          break;
        }
      }
      results_.push_back(r);
    }
    if (!failed_) {
      int probe = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      if (probe < 0) {
        error_.err = errno;
        error_.syscall = "socket";
        failed_ = true;
      } else {
        cookie_ = NetnsCookieOf(probe, &error_);
        if (cookie_ == 0) failed_ = true;
        close(probe);
      }
    }
    if (failed_) {
      for (auto &r : results_)
        if (r.fd >= 0) close(r.fd);
      results_.clear();
    }
  }

  std::string path_;
  std::vector<ListenSpec> specs_;
  Napi::Promise::Deferred deferred_;
  std::vector<ListenResult> results_;
  uint64_t cookie_ = 0;
  SysError error_;
  bool failed_ = false;
};

// listenInNetns(netnsPath, [{ host, port, backlog?, optional?, udp? }]) -> Promise<{ netnsCookie, fds, skipped }>
Napi::Value ListenInNetns(const Napi::CallbackInfo &info) {
  std::string path = ArgString(info, 0, "netnsPath");
  if (info.Length() < 2 || !info[1].IsArray()) {
    Napi::TypeError err = Napi::TypeError::New(info.Env(), "argument 1 (specs) must be an array");
    err.Value().Set("code", "ERR_INVALID_ARG_TYPE");
    throw err;
  }
  Napi::Array arr = info[1].As<Napi::Array>();
  std::vector<ListenSpec> specs;
  for (uint32_t i = 0; i < arr.Length(); i++) {
    Napi::Object o = arr.Get(i).As<Napi::Object>();
    ListenSpec s;
    s.host = o.Get("host").As<Napi::String>().Utf8Value();
    s.port = o.Get("port").As<Napi::Number>().Int32Value();
    if (o.Get("backlog").IsNumber()) s.backlog = o.Get("backlog").As<Napi::Number>().Int32Value();
    s.optional = o.Get("optional").ToBoolean().Value();
    s.udp = o.Get("udp").ToBoolean().Value();
    specs.push_back(s);
  }
  auto *w = new NetnsWorker(info.Env(), path, specs);
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

// netnsCookie(path) -> Promise<bigint>
Napi::Value NetnsCookie(const Napi::CallbackInfo &info) {
  std::string path = ArgString(info, 0, "netnsPath");
  auto *w = new NetnsWorker(info.Env(), path, {});
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

Napi::Value SockoptU64(const Napi::CallbackInfo &info, int opt, const char *name) {
  int fd = ArgInt(info, 0, "fd");
  uint64_t v = 0;
  socklen_t len = sizeof(v);
  if (getsockopt(fd, SOL_SOCKET, opt, &v, &len) < 0) ThrowErrno(info.Env(), errno, name);
  return BigU64(info.Env(), v);
}

Napi::Value SocketCookie(const Napi::CallbackInfo &info) { return SockoptU64(info, SO_COOKIE, "getsockopt(SO_COOKIE)"); }
Napi::Value SocketNetnsCookie(const Napi::CallbackInfo &info) {
  return SockoptU64(info, SO_NETNS_COOKIE, "getsockopt(SO_NETNS_COOKIE)");
}

// originalDst(fd, family 4|6) -> { family, address, port } | null (unknown connection).
Napi::Value OriginalDst(const Napi::CallbackInfo &info) {
  int fd = ArgInt(info, 0, "fd");
  int family = info.Length() > 1 ? ArgInt(info, 1, "family") : 4;
  Napi::Env env = info.Env();
  char text[INET6_ADDRSTRLEN];
  Napi::Object out = Napi::Object::New(env);
  if (family == 6) {
    struct sockaddr_in6 sa;
    memset(&sa, 0, sizeof(sa));
    socklen_t len = sizeof(sa);
    if (getsockopt(fd, SOL_IPV6, IP6T_SO_ORIGINAL_DST, &sa, &len) < 0) {
      if (errno == ENOENT || errno == ENOPROTOOPT) return env.Null();
      ThrowErrno(env, errno, "getsockopt(SO_ORIGINAL_DST)");
    }
    inet_ntop(AF_INET6, &sa.sin6_addr, text, sizeof(text));
    out.Set("family", 6);
    out.Set("port", ntohs(sa.sin6_port));
  } else {
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof(sa));
    socklen_t len = sizeof(sa);
    if (getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, &sa, &len) < 0) {
      if (errno == ENOENT || errno == ENOPROTOOPT) return env.Null();
      ThrowErrno(env, errno, "getsockopt(SO_ORIGINAL_DST)");
    }
    inet_ntop(AF_INET, &sa.sin_addr, text, sizeof(text));
    out.Set("family", 4);
    out.Set("port", ntohs(sa.sin_port));
  }
  out.Set("address", std::string(text));
  return out;
}

// cgroupId(path) -> bigint: the id bpf_get_current_cgroup_id() and link info report.
Napi::Value CgroupId(const Napi::CallbackInfo &info) {
  std::string path = ArgString(info, 0, "cgroupPath");
  struct {
    struct file_handle fh;
    uint64_t id;
  } h;
  h.fh.handle_bytes = sizeof(uint64_t);
  int mountId;
  if (name_to_handle_at(AT_FDCWD, path.c_str(), &h.fh, &mountId, 0) < 0) ThrowErrno(info.Env(), errno, "name_to_handle_at", path);
  uint64_t id;
  memcpy(&id, h.fh.f_handle, sizeof(id));
  return BigU64(info.Env(), id);
}

Napi::Value FsMagic(const Napi::CallbackInfo &info) {
  std::string path = ArgString(info, 0, "path");
  struct statfs st;
  if (statfs(path.c_str(), &st) < 0) ThrowErrno(info.Env(), errno, "statfs", path);
  return Napi::Number::New(info.Env(), static_cast<double>(static_cast<uint32_t>(st.f_type)));
}

Napi::Value MountBpffs(const Napi::CallbackInfo &info) {
  std::string path = ArgString(info, 0, "path");
  if (mount("bpf", path.c_str(), "bpf", 0, "mode=0700") < 0) ThrowErrno(info.Env(), errno, "mount(bpf)", path);
  return info.Env().Undefined();
}

} // namespace

void InitSysOps(Napi::Env env, Napi::Object exports) {
  exports.Set("listenInNetns", Napi::Function::New(env, ListenInNetns));
  exports.Set("netnsCookie", Napi::Function::New(env, NetnsCookie));
  exports.Set("socketCookie", Napi::Function::New(env, SocketCookie));
  exports.Set("socketNetnsCookie", Napi::Function::New(env, SocketNetnsCookie));
  exports.Set("originalDst", Napi::Function::New(env, OriginalDst));
  exports.Set("cgroupId", Napi::Function::New(env, CgroupId));
  exports.Set("fsMagic", Napi::Function::New(env, FsMagic));
  exports.Set("mountBpffs", Napi::Function::New(env, MountBpffs));
}

} // namespace ambit
