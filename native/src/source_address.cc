// ambit native addon: delivering a connection to an app with the client's own address as the
// source, from inside the app's pod netns (what ztunnel does for inbound).
//
//  transparentProbe()                          null when this process may open IP_TRANSPARENT
//                                              sockets with SO_MARK (CAP_NET_ADMIN), else the
//                                              errno name of the refusal
//  socketNetns(fd)                             { fd, ino }: an fd of the netns a socket lives in
//                                              (ioctl SIOCGSKNS, Linux 4.9) and its inode
//  sourceRouting(netnsFd, opts)                Promise<{ ipv6 }>: in that netns, adds (opts.enable)
//                                              or removes the reply path: sysctl
//                                              net.ipv4.tcp_fwmark_accept=1, rule "fwmark MARK/MASK
//                                              lookup TABLE pref PRIORITY", route "local default
//                                              dev lo table TABLE" (IPv4, and IPv6 when the netns
//                                              has it). Idempotent both ways.
//  transparentConnect(netnsFd, src, dst, port, mark, timeoutMs)
//                                              Promise<fd>: a TCP socket created in that netns with
//                                              IP_TRANSPARENT and SO_MARK, bound to src (port
//                                              chosen at connect), connected to dst:port
//
// The socket is bound to lo (see ConnectWorker), so it never leaves the pod and its SYN is seen by
// ambit's sk_lookup as loopback traffic of the pod (not steered). Why the reply path works: the SYN of the marked socket crosses the pod's loopback with its mark;
// with tcp_fwmark_accept the app's accepted socket inherits that mark, so every reply the app
// sends to the (non-local) client address matches the fwmark rule and is routed to `lo` by the
// local default route, back to the transparent socket. Connections the app accepts from the veth
// carry no mark (crossing netns scrubs it) and route as before.
//
// Every netns switch happens on a fresh thread that exits afterwards, so no pooled thread (and
// never the main thread) is left in a foreign namespace; the connect itself waits on the pool.
#include "common.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/fib_rules.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <thread>

#ifndef SIOCGSKNS
#define SIOCGSKNS 0x894C
#endif
#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

namespace ambit {

namespace {

constexpr int kLoopbackIfindex = 1; // lo is ifindex 1 in every netns

bool Fail(SysError *e, int err, const char *syscall, const std::string &message = "") {
  e->err = err;
  e->syscall = syscall;
  e->message = message;
  return false;
}

// Runs fn on a fresh thread that first joins the netns behind nsFd.
template <typename F>
bool InNetns(int nsFd, SysError *err, F fn) {
  bool ok = false;
  std::thread t([&]() {
    if (setns(nsFd, CLONE_NEWNET) < 0) {
      Fail(err, errno, "setns", errno == EPERM ? "needs CAP_SYS_ADMIN" : "");
      return;
    }
    ok = fn();
  });
  t.join();
  return ok;
}

// ---- rtnetlink ------------------------------------------------------------------------------

struct NlMsg {
  char buf[512];
  struct nlmsghdr *h() { return reinterpret_cast<struct nlmsghdr *>(buf); }
  void *body() { return NLMSG_DATA(h()); }
  void AddU32(unsigned short type, uint32_t v) {
    struct rtattr *a = reinterpret_cast<struct rtattr *>(buf + NLMSG_ALIGN(h()->nlmsg_len));
    a->rta_type = type;
    a->rta_len = RTA_LENGTH(sizeof(v));
    memcpy(RTA_DATA(a), &v, sizeof(v));
    h()->nlmsg_len = NLMSG_ALIGN(h()->nlmsg_len) + RTA_ALIGN(a->rta_len);
  }
};

// Sends one request and waits for its ack; the kernel's errno (0 on success).
int NlTalk(int sock, NlMsg *m) {
  static uint32_t seq = 1;
  m->h()->nlmsg_seq = __atomic_add_fetch(&seq, 1, __ATOMIC_RELAXED);
  if (send(sock, m->buf, m->h()->nlmsg_len, 0) < 0) return errno;
  char reply[4096];
  for (;;) {
    ssize_t n = recv(sock, reply, sizeof(reply), 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    for (auto *h = reinterpret_cast<struct nlmsghdr *>(reply); NLMSG_OK(h, static_cast<unsigned>(n)); h = NLMSG_NEXT(h, n)) {
      if (h->nlmsg_seq != m->h()->nlmsg_seq) continue;
      if (h->nlmsg_type == NLMSG_ERROR) return -reinterpret_cast<struct nlmsgerr *>(NLMSG_DATA(h))->error;
    }
  }
}

struct RoutingOpts {
  uint32_t mark = 0;
  uint32_t mask = 0xffffffff;
  uint32_t table = 0;
  uint32_t priority = 0;
  bool enable = true;
};

int RuleOp(int sock, int family, const RoutingOpts &o) {
  NlMsg m;
  memset(&m, 0, sizeof(m));
  m.h()->nlmsg_len = NLMSG_LENGTH(sizeof(struct fib_rule_hdr));
  m.h()->nlmsg_type = o.enable ? RTM_NEWRULE : RTM_DELRULE;
  m.h()->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | (o.enable ? NLM_F_CREATE | NLM_F_EXCL : 0);
  auto *r = static_cast<struct fib_rule_hdr *>(m.body());
  r->family = static_cast<uint8_t>(family);
  r->action = FR_ACT_TO_TBL;
  r->table = o.table < 256 ? static_cast<uint8_t>(o.table) : static_cast<uint8_t>(RT_TABLE_UNSPEC);
  m.AddU32(FRA_PRIORITY, o.priority);
  m.AddU32(FRA_FWMARK, o.mark);
  m.AddU32(FRA_FWMASK, o.mask);
  m.AddU32(FRA_TABLE, o.table);
  return NlTalk(sock, &m);
}

int LocalRouteOp(int sock, int family, const RoutingOpts &o) {
  NlMsg m;
  memset(&m, 0, sizeof(m));
  m.h()->nlmsg_len = NLMSG_LENGTH(sizeof(struct rtmsg));
  m.h()->nlmsg_type = o.enable ? RTM_NEWROUTE : RTM_DELROUTE;
  m.h()->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | (o.enable ? NLM_F_CREATE | NLM_F_EXCL : 0);
  auto *rt = static_cast<struct rtmsg *>(m.body());
  rt->rtm_family = static_cast<uint8_t>(family);
  rt->rtm_dst_len = 0;
  rt->rtm_table = o.table < 256 ? static_cast<uint8_t>(o.table) : static_cast<uint8_t>(RT_TABLE_UNSPEC);
  rt->rtm_protocol = RTPROT_BOOT;
  rt->rtm_scope = RT_SCOPE_HOST;
  rt->rtm_type = RTN_LOCAL;
  m.AddU32(RTA_TABLE, o.table);
  m.AddU32(RTA_OIF, kLoopbackIfindex);
  return NlTalk(sock, &m);
}

bool WriteSysctl(const char *path, const char *value, SysError *e) {
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0 && errno == EROFS) {
    // A container's /proc/sys is read-only (Kubernetes mounts it so). This thread is ours alone
    // and exits afterwards: give it a private mount namespace with a fresh procfs, whose net
    // sysctls are those of the netns it joined. Needs CAP_SYS_ADMIN, as setns already does.
    if (unshare(CLONE_NEWNS) == 0 && mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) == 0 &&
        mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) == 0) {
      fd = open(path, O_WRONLY | O_CLOEXEC);
    } else {
      return Fail(e, EROFS, "open", std::string(path) + " (read-only, and no private procfs could be mounted: " + strerror(errno) + ")");
    }
  }
  if (fd < 0) return Fail(e, errno, "open", path);
  ssize_t n = write(fd, value, strlen(value));
  int saved = errno;
  close(fd);
  if (n < 0) return Fail(e, saved, "write", path);
  return true;
}

// Inside the pod netns: the whole reply path, added or removed. ipv6 reports whether it covered v6.
bool Routing(const RoutingOpts &o, bool *ipv6, SysError *e) {
  int sock = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
  if (sock < 0) return Fail(e, errno, "socket(AF_NETLINK)");
  struct timeval tv = {2, 0};
  setsockopt(sock, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  bool ok = true;
  *ipv6 = false;
  for (int family : {AF_INET, AF_INET6}) {
    int r1 = RuleOp(sock, family, o);
    int r2 = LocalRouteOp(sock, family, o);
    // Adding what is there, or removing what is not, is success (idempotent both ways).
    auto fine = [&](int r) { return r == 0 || (o.enable ? r == EEXIST : (r == ENOENT || r == ESRCH)); };
    if (family == AF_INET6) {
      // A netns without IPv6 (disabled, or no ::1): v4 alone is the whole job.
      if (r1 == EAFNOSUPPORT || r2 == EAFNOSUPPORT || r1 == EOPNOTSUPP) break;
      // IPv6 is best effort (lo down, v6 disabled): without it, only IPv6 connections fall back.
      if (fine(r1) && fine(r2)) *ipv6 = true;
      else if (o.enable) {
        RoutingOpts undo = o;
        undo.enable = false;
        RuleOp(sock, family, undo);
        LocalRouteOp(sock, family, undo);
      }
      break;
    }
    if (!fine(r1)) { ok = Fail(e, r1, o.enable ? "rtnetlink(RTM_NEWRULE)" : "rtnetlink(RTM_DELRULE)"); if (o.enable) break; }
    if (!fine(r2)) { ok = Fail(e, r2, o.enable ? "rtnetlink(RTM_NEWROUTE local default dev lo)" : "rtnetlink(RTM_DELROUTE)"); if (o.enable) break; }
  }
  close(sock);
  if (ok || !o.enable) {
    SysError se;
    bool set = WriteSysctl("/proc/sys/net/ipv4/tcp_fwmark_accept", o.enable ? "1" : "0", &se);
    if (!set && ok) {
      *e = se;
      ok = false;
    }
  }
  return ok;
}

class RoutingWorker : public Napi::AsyncWorker {
 public:
  RoutingWorker(Napi::Env env, int nsFd, RoutingOpts o)
      : Napi::AsyncWorker(env), nsFd_(nsFd), o_(o), deferred_(Napi::Promise::Deferred::New(env)) {}
  Napi::Promise Promise() { return deferred_.Promise(); }
  void Execute() override {
    failed_ = !InNetns(nsFd_, &err_, [this]() { return Routing(o_, &ipv6_, &err_); });
  }
  void OnOK() override {
    if (failed_) {
      deferred_.Reject(MakeError(Env(), err_).Value());
      return;
    }
    Napi::Object out = Napi::Object::New(Env());
    out.Set("ipv6", ipv6_);
    deferred_.Resolve(out);
  }
  void OnError(const Napi::Error &e) override { deferred_.Reject(e.Value()); }

 private:
  int nsFd_;
  RoutingOpts o_;
  Napi::Promise::Deferred deferred_;
  SysError err_;
  bool ipv6_ = false;
  bool failed_ = false;
};

// ---- transparent connect --------------------------------------------------------------------

class ConnectWorker : public Napi::AsyncWorker {
 public:
  ConnectWorker(Napi::Env env, int nsFd, std::string src, std::string dst, int port, uint32_t mark, int timeoutMs)
      : Napi::AsyncWorker(env), nsFd_(nsFd), src_(std::move(src)), dst_(std::move(dst)), port_(port), mark_(mark),
        timeoutMs_(timeoutMs), deferred_(Napi::Promise::Deferred::New(env)) {}
  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override {
    struct sockaddr_storage from, to;
    socklen_t fromLen, toLen;
    if (!ParseSockaddr(src_, 0, &from, &fromLen) || !ParseSockaddr(dst_, port_, &to, &toLen)) {
      Fail(&err_, EINVAL, "inet_pton", "not an IP address: " + src_ + " / " + dst_);
      return;
    }
    if (from.ss_family != to.ss_family) {
      Fail(&err_, EAFNOSUPPORT, "bind", "source " + src_ + " and destination " + dst_ + " are of different families");
      return;
    }
    // Created (and bound) inside the pod netns; the socket keeps that netns for its life.
    bool made = InNetns(nsFd_, &err_, [&]() {
      int fd = socket(from.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
      if (fd < 0) return Fail(&err_, errno, "socket");
      int one = 1;
      bool v6 = from.ss_family == AF_INET6;
      if ((v6 ? setsockopt(fd, SOL_IPV6, IPV6_TRANSPARENT, &one, sizeof(one)) : setsockopt(fd, SOL_IP, IP_TRANSPARENT, &one, sizeof(one))) < 0) {
        int saved = errno;
        close(fd);
        return Fail(&err_, saved, "setsockopt(IP_TRANSPARENT)", saved == EPERM ? "needs CAP_NET_ADMIN" : "");
      }
      if (setsockopt(fd, SOL_SOCKET, SO_MARK, &mark_, sizeof(mark_)) < 0) {
        int saved = errno;
        close(fd);
        return Fail(&err_, saved, "setsockopt(SO_MARK)");
      }
      // Bound to lo: the route to the app's address is then the `local default dev lo` of our
      // table (the pod address's own local route names eth0, and an oif must match), so the SYN
      // arrives with ingress ifindex lo and ambit's sk_lookup lets it through to the app instead
      // of steering it back to the agent.
      if (setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, "lo", 3) < 0) {
        int saved = errno;
        close(fd);
        return Fail(&err_, saved, "setsockopt(SO_BINDTODEVICE lo)");
      }
      setsockopt(fd, SOL_TCP, TCP_NODELAY, &one, sizeof(one));
      if (!v6) setsockopt(fd, SOL_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
      if (bind(fd, reinterpret_cast<struct sockaddr *>(&from), fromLen) < 0) {
        int saved = errno;
        close(fd);
        return Fail(&err_, saved, "bind", src_);
      }
      fd_ = fd;
      return true;
    });
    if (!made) return;
    if (connect(fd_, reinterpret_cast<struct sockaddr *>(&to), toLen) < 0 && errno != EINPROGRESS) {
      Abort(errno, "connect");
      return;
    }
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeoutMs_);
    for (;;) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count();
      if (left <= 0) {
        Abort(ETIMEDOUT, "connect", "timed out after " + std::to_string(timeoutMs_) + " ms");
        return;
      }
      struct pollfd p = {fd_, POLLOUT, 0};
      int r = poll(&p, 1, static_cast<int>(left));
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) {
        Abort(errno, "poll");
        return;
      }
      if (r > 0) break;
    }
    int soerr = 0;
    socklen_t len = sizeof(soerr);
    if (getsockopt(fd_, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0) soerr = errno;
    if (soerr != 0) Abort(soerr, "connect");
  }

  void OnOK() override {
    if (fd_ < 0) {
      deferred_.Reject(MakeError(Env(), err_).Value());
      return;
    }
    deferred_.Resolve(Napi::Number::New(Env(), fd_));
  }
  void OnError(const Napi::Error &e) override {
    if (fd_ >= 0) close(fd_);
    deferred_.Reject(e.Value());
  }

 private:
  void Abort(int err, const char *syscall, const std::string &message = "") {
    Fail(&err_, err, syscall, message.empty() ? dst_ + ":" + std::to_string(port_) + " from " + src_ : message);
    close(fd_);
    fd_ = -1;
  }

  int nsFd_;
  std::string src_, dst_;
  int port_;
  uint32_t mark_;
  int timeoutMs_;
  Napi::Promise::Deferred deferred_;
  SysError err_;
  int fd_ = -1;
};

// transparentProbe() -> null | errno name
Napi::Value TransparentProbe(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Napi::String::New(env, ErrnoName(errno));
  int one = 1;
  uint32_t mark = 1;
  int r = setsockopt(fd, SOL_IP, IP_TRANSPARENT, &one, sizeof(one));
  if (r == 0) r = setsockopt(fd, SOL_SOCKET, SO_MARK, &mark, sizeof(mark));
  int saved = errno;
  close(fd);
  return r == 0 ? env.Null() : Napi::String::New(env, ErrnoName(saved));
}

// socketNetns(fd) -> { fd, ino }
Napi::Value SocketNetns(const Napi::CallbackInfo &info) {
  int fd = ArgInt(info, 0, "fd");
  int ns = ioctl(fd, SIOCGSKNS);
  if (ns < 0) ThrowErrno(info.Env(), errno, "ioctl(SIOCGSKNS)", "needs Linux 4.9 and a socket fd");
  fcntl(ns, F_SETFD, FD_CLOEXEC);
  struct stat st;
  if (fstat(ns, &st) < 0) {
    int saved = errno;
    close(ns);
    ThrowErrno(info.Env(), saved, "fstat");
  }
  Napi::Object out = Napi::Object::New(info.Env());
  out.Set("fd", ns);
  out.Set("ino", Napi::Number::New(info.Env(), static_cast<double>(st.st_ino)));
  return out;
}

uint32_t U32Of(const Napi::Object &o, const char *key, uint32_t dflt) {
  Napi::Value v = o.Get(key);
  return v.IsNumber() ? v.As<Napi::Number>().Uint32Value() : dflt;
}

// sourceRouting(netnsFd, { mark, mask?, table, priority, enable }) -> Promise<{ ipv6 }>
Napi::Value SourceRouting(const Napi::CallbackInfo &info) {
  int ns = ArgInt(info, 0, "netnsFd");
  if (info.Length() < 2 || !info[1].IsObject()) {
    Napi::TypeError err = Napi::TypeError::New(info.Env(), "argument 1 (opts) must be an object");
    err.Value().Set("code", "ERR_INVALID_ARG_TYPE");
    throw err;
  }
  Napi::Object o = info[1].As<Napi::Object>();
  RoutingOpts r;
  r.mark = U32Of(o, "mark", 0);
  r.mask = U32Of(o, "mask", 0xffffffff);
  r.table = U32Of(o, "table", 0);
  r.priority = U32Of(o, "priority", 0);
  r.enable = o.Get("enable").ToBoolean().Value();
  auto *w = new RoutingWorker(info.Env(), ns, r);
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

// transparentConnect(netnsFd, src, dst, port, mark, timeoutMs) -> Promise<fd>
Napi::Value TransparentConnect(const Napi::CallbackInfo &info) {
  int ns = ArgInt(info, 0, "netnsFd");
  std::string src = ArgString(info, 1, "source");
  std::string dst = ArgString(info, 2, "destination");
  int port = ArgInt(info, 3, "port");
  uint32_t mark = static_cast<uint32_t>(ArgInt(info, 4, "mark"));
  int timeoutMs = info.Length() > 5 ? ArgInt(info, 5, "timeoutMs") : 5000;
  auto *w = new ConnectWorker(info.Env(), ns, src, dst, port, mark, timeoutMs);
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

} // namespace

void InitSourceAddress(Napi::Env env, Napi::Object exports) {
  exports.Set("transparentProbe", Napi::Function::New(env, TransparentProbe));
  exports.Set("socketNetns", Napi::Function::New(env, SocketNetns));
  exports.Set("sourceRouting", Napi::Function::New(env, SourceRouting));
  exports.Set("transparentConnect", Napi::Function::New(env, TransparentConnect));
}

} // namespace ambit
