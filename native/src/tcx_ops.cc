// tcx attachment (Linux 6.6+): a bpf_link of a SCHED_CLS program on a network device's ingress or
// egress, in the calling thread's network namespace (the node's, for the agent). Like the cgroup
// and sk_lookup links it coexists with other programs on the device, can be pinned and survives
// the process; the kernel detaches it when the device goes away.
//
// The system libbpf may predate tcx, so the attach types are spelled out here (uapi values).
#include "common.h"

#include <bpf/bpf.h>
#include <net/if.h>

#include <cstring>

namespace ambit {
namespace {

constexpr int kTcxIngress = 46; // BPF_TCX_INGRESS
constexpr int kTcxEgress = 47;  // BPF_TCX_EGRESS

// attachTcx(progFd, ifname, "ingress" | "egress") -> { linkFd, ifindex }.
Napi::Value AttachTcx(const Napi::CallbackInfo &info) {
  int progFd = ArgInt(info, 0, "progFd");
  std::string ifname = ArgString(info, 1, "ifname");
  std::string dir = ArgString(info, 2, "direction");
  if (dir != "ingress" && dir != "egress") ThrowErrno(info.Env(), EINVAL, "attachTcx", "direction must be ingress or egress, got " + dir);
  unsigned int ifindex = if_nametoindex(ifname.c_str());
  if (ifindex == 0) ThrowErrno(info.Env(), errno, "if_nametoindex", ifname);
  int type = dir == "ingress" ? kTcxIngress : kTcxEgress;
  int link = bpf_link_create(progFd, static_cast<int>(ifindex), static_cast<enum bpf_attach_type>(type), nullptr);
  if (link < 0) ThrowErrno(info.Env(), errno, "bpf_link_create", "tcx " + dir + " on " + ifname);
  Napi::Object out = Napi::Object::New(info.Env());
  out.Set("linkFd", Napi::Number::New(info.Env(), link));
  out.Set("ifindex", Napi::Number::New(info.Env(), ifindex));
  return out;
}

// tcxLinkIfindex(linkFd) -> ifindex the tcx link is attached to, 0 once its device is gone.
Napi::Value TcxLinkIfindex(const Napi::CallbackInfo &info) {
  int fd = ArgInt(info, 0, "linkFd");
  // struct bpf_link_info of the system headers may lack the tcx member: read it by layout
  // (type, id, prog_id, then the union whose tcx arm starts with ifindex).
  uint32_t buf[64];
  memset(buf, 0, sizeof(buf));
  uint32_t len = sizeof(buf);
  if (bpf_obj_get_info_by_fd(fd, buf, &len) < 0) ThrowErrno(info.Env(), errno, "bpf_obj_get_info_by_fd", "tcx link");
  return Napi::Number::New(info.Env(), buf[4]);
}

} // namespace

void InitTcxOps(Napi::Env env, Napi::Object exports) {
  exports.Set("attachTcx", Napi::Function::New(env, AttachTcx));
  exports.Set("tcxLinkIfindex", Napi::Function::New(env, TcxLinkIfindex));
}

} // namespace ambit
