// ambit native addon: operations on BPF file descriptors (maps, programs, links, pins) and
// kernel feature probes. Each call is one short bpf() syscall, so they run synchronously; fds are
// plain integers owned by the caller (src/ebpf/), which closes them with closeFd().
#include "common.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <cstring>
#include <vector>

namespace ambit {

namespace {

int OpenPath(Napi::Env env, const std::string &path, int flags, const char *what) {
  int fd = open(path.c_str(), flags | O_CLOEXEC);
  if (fd < 0) ThrowErrno(env, errno, "open", std::string(what) + " " + path);
  return fd;
}

bool AttachTypeByName(const std::string &name, enum bpf_attach_type *out) {
  for (int t = 0; t < __MAX_BPF_ATTACH_TYPE; t++) {
    const char *s = libbpf_bpf_attach_type_str(static_cast<enum bpf_attach_type>(t));
    if (s != nullptr && name == s) {
      *out = static_cast<enum bpf_attach_type>(t);
      return true;
    }
  }
  return false;
}

// attachCgroup(progFd, cgroupPath, attachType) -> link fd. A bpf_link: multi-attach by nature
// (it coexists with other programs, like BPF_F_ALLOW_MULTI) and detached when the last fd or pin goes.
Napi::Value AttachCgroup(const Napi::CallbackInfo &info) {
  int progFd = ArgInt(info, 0, "progFd");
  std::string path = ArgString(info, 1, "cgroupPath");
  std::string typeName = ArgString(info, 2, "attachType");
  enum bpf_attach_type type;
  if (!AttachTypeByName(typeName, &type)) ThrowErrno(info.Env(), EINVAL, "attachCgroup", "unknown attach type " + typeName);
  int cg = OpenPath(info.Env(), path, O_RDONLY | O_DIRECTORY, "cgroup");
  int link = bpf_link_create(progFd, cg, type, nullptr);
  int err = errno;
  close(cg);
  if (link < 0) ThrowErrno(info.Env(), err, "bpf_link_create", typeName + " on " + path);
  return Napi::Number::New(info.Env(), link);
}

// attachNetns(progFd, netnsPath) -> link fd of an sk_lookup program in that network namespace.
Napi::Value AttachNetns(const Napi::CallbackInfo &info) {
  int progFd = ArgInt(info, 0, "progFd");
  std::string path = ArgString(info, 1, "netnsPath");
  int ns = OpenPath(info.Env(), path, O_RDONLY, "netns");
  int link = bpf_link_create(progFd, ns, BPF_SK_LOOKUP, nullptr);
  int err = errno;
  close(ns);
  if (link < 0) ThrowErrno(info.Env(), err, "bpf_link_create", "sk_lookup on " + path);
  return Napi::Number::New(info.Env(), link);
}

Napi::Value LinkUpdate(const Napi::CallbackInfo &info) {
  int linkFd = ArgInt(info, 0, "linkFd");
  int progFd = ArgInt(info, 1, "progFd");
  if (bpf_link_update(linkFd, progFd, nullptr) < 0) ThrowErrno(info.Env(), errno, "bpf_link_update");
  return info.Env().Undefined();
}

Napi::Value LinkDetach(const Napi::CallbackInfo &info) {
  int linkFd = ArgInt(info, 0, "linkFd");
  if (bpf_link_detach(linkFd) < 0) ThrowErrno(info.Env(), errno, "bpf_link_detach");
  return info.Env().Undefined();
}

Napi::Value LinkInfo(const Napi::CallbackInfo &info) {
  int fd = ArgInt(info, 0, "linkFd");
  struct bpf_link_info li;
  memset(&li, 0, sizeof(li));
  __u32 len = sizeof(li);
  if (bpf_obj_get_info_by_fd(fd, &li, &len) < 0) ThrowErrno(info.Env(), errno, "bpf_obj_get_info_by_fd", "link");
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("id", Napi::Number::New(env, li.id));
  o.Set("progId", Napi::Number::New(env, li.prog_id));
  const char *lt = libbpf_bpf_link_type_str(static_cast<enum bpf_link_type>(li.type));
  o.Set("type", lt != nullptr ? lt : "unknown");
  if (li.type == BPF_LINK_TYPE_CGROUP) {
    o.Set("cgroupId", BigU64(env, li.cgroup.cgroup_id));
    const char *at = libbpf_bpf_attach_type_str(static_cast<enum bpf_attach_type>(li.cgroup.attach_type));
    o.Set("attachType", at != nullptr ? at : "unknown");
  } else if (li.type == BPF_LINK_TYPE_NETNS) {
    o.Set("netnsIno", Napi::Number::New(env, li.netns.netns_ino));
    const char *at = libbpf_bpf_attach_type_str(static_cast<enum bpf_attach_type>(li.netns.attach_type));
    o.Set("attachType", at != nullptr ? at : "unknown");
  }
  return o;
}

Napi::Value ProgInfo(const Napi::CallbackInfo &info) {
  int fd = ArgInt(info, 0, "progFd");
  struct bpf_prog_info pi;
  memset(&pi, 0, sizeof(pi));
  __u32 len = sizeof(pi);
  if (bpf_obj_get_info_by_fd(fd, &pi, &len) < 0) ThrowErrno(info.Env(), errno, "bpf_obj_get_info_by_fd", "program");
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("id", Napi::Number::New(env, pi.id));
  o.Set("name", std::string(pi.name, strnlen(pi.name, sizeof(pi.name))));
  const char *t = libbpf_bpf_prog_type_str(static_cast<enum bpf_prog_type>(pi.type));
  o.Set("type", t != nullptr ? t : "unknown");
  char tag[2 * BPF_TAG_SIZE + 1];
  for (int i = 0; i < BPF_TAG_SIZE; i++) snprintf(tag + 2 * i, 3, "%02x", pi.tag[i]);
  o.Set("tag", std::string(tag));
  return o;
}

Napi::Value MapInfo(const Napi::CallbackInfo &info) {
  int fd = ArgInt(info, 0, "mapFd");
  struct bpf_map_info mi;
  memset(&mi, 0, sizeof(mi));
  __u32 len = sizeof(mi);
  if (bpf_obj_get_info_by_fd(fd, &mi, &len) < 0) ThrowErrno(info.Env(), errno, "bpf_obj_get_info_by_fd", "map");
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("id", Napi::Number::New(env, mi.id));
  o.Set("name", std::string(mi.name, strnlen(mi.name, sizeof(mi.name))));
  const char *t = libbpf_bpf_map_type_str(static_cast<enum bpf_map_type>(mi.type));
  o.Set("type", t != nullptr ? t : "unknown");
  o.Set("keySize", Napi::Number::New(env, mi.key_size));
  o.Set("valueSize", Napi::Number::New(env, mi.value_size));
  o.Set("maxEntries", Napi::Number::New(env, mi.max_entries));
  o.Set("flags", Napi::Number::New(env, mi.map_flags));
  return o;
}

Napi::Value ObjPin(const Napi::CallbackInfo &info) {
  int fd = ArgInt(info, 0, "fd");
  std::string path = ArgString(info, 1, "path");
  if (bpf_obj_pin(fd, path.c_str()) < 0) ThrowErrno(info.Env(), errno, "bpf_obj_pin", path);
  return info.Env().Undefined();
}

Napi::Value ObjGet(const Napi::CallbackInfo &info) {
  std::string path = ArgString(info, 0, "path");
  int fd = bpf_obj_get(path.c_str());
  if (fd < 0) ThrowErrno(info.Env(), errno, "bpf_obj_get", path);
  return Napi::Number::New(info.Env(), fd);
}

Napi::Value CloseFd(const Napi::CallbackInfo &info) {
  int fd = ArgInt(info, 0, "fd");
  if (close(fd) < 0) ThrowErrno(info.Env(), errno, "close");
  return info.Env().Undefined();
}

// mapLookup(fd, key, valueSize) -> Buffer | null (valueSize already multiplied for per-CPU maps).
Napi::Value MapLookup(const Napi::CallbackInfo &info) {
  int fd = ArgInt(info, 0, "mapFd");
  auto key = ArgBuffer(info, 1, "key");
  int size = ArgInt(info, 2, "valueSize");
  if (size <= 0) ThrowErrno(info.Env(), EINVAL, "bpf_map_lookup_elem", "valueSize must be positive");
  auto value = Napi::Buffer<uint8_t>::New(info.Env(), static_cast<size_t>(size));
  memset(value.Data(), 0, value.Length());
  if (bpf_map_lookup_elem(fd, key.Data(), value.Data()) < 0) {
    if (errno == ENOENT) return info.Env().Null();
    ThrowErrno(info.Env(), errno, "bpf_map_lookup_elem");
  }
  return value;
}

// mapUpdate(fd, key, value, flags): flags BPF_ANY 0, BPF_NOEXIST 1, BPF_EXIST 2.
Napi::Value MapUpdate(const Napi::CallbackInfo &info) {
  int fd = ArgInt(info, 0, "mapFd");
  auto key = ArgBuffer(info, 1, "key");
  auto value = ArgBuffer(info, 2, "value");
  int flags = info.Length() > 3 ? ArgInt(info, 3, "flags") : 0;
  if (bpf_map_update_elem(fd, key.Data(), value.Data(), static_cast<__u64>(flags)) < 0) ThrowErrno(info.Env(), errno, "bpf_map_update_elem");
  return info.Env().Undefined();
}

// sockmapInsert(mapFd, key, socketFd): puts a socket into a SOCKMAP/SOCKHASH.
Napi::Value SockmapInsert(const Napi::CallbackInfo &info) {
  int fd = ArgInt(info, 0, "mapFd");
  auto key = ArgBuffer(info, 1, "key");
  uint64_t sock = static_cast<uint64_t>(ArgInt(info, 2, "socketFd"));
  if (bpf_map_update_elem(fd, key.Data(), &sock, BPF_ANY) < 0) ThrowErrno(info.Env(), errno, "bpf_map_update_elem", "sockmap insert");
  return info.Env().Undefined();
}

Napi::Value MapDelete(const Napi::CallbackInfo &info) {
  int fd = ArgInt(info, 0, "mapFd");
  auto key = ArgBuffer(info, 1, "key");
  if (bpf_map_delete_elem(fd, key.Data()) < 0) {
    if (errno == ENOENT) return Napi::Boolean::New(info.Env(), false);
    ThrowErrno(info.Env(), errno, "bpf_map_delete_elem");
  }
  return Napi::Boolean::New(info.Env(), true);
}

// mapKeys(fd, keySize) -> Buffer[]: every key, by bpf_map_get_next_key. Entries may change while
// iterating (the kernel restarts from the first key when the current one vanished).
Napi::Value MapKeys(const Napi::CallbackInfo &info) {
  int fd = ArgInt(info, 0, "mapFd");
  int keySize = ArgInt(info, 1, "keySize");
  if (keySize <= 0) ThrowErrno(info.Env(), EINVAL, "bpf_map_get_next_key", "keySize must be positive");
  std::vector<uint8_t> cur(keySize), next(keySize);
  Napi::Array out = Napi::Array::New(info.Env());
  uint32_t n = 0;
  const void *prev = nullptr;
  for (;;) {
    if (bpf_map_get_next_key(fd, prev, next.data()) < 0) {
      if (errno == ENOENT) break;
      ThrowErrno(info.Env(), errno, "bpf_map_get_next_key");
    }
    out.Set(n++, Napi::Buffer<uint8_t>::Copy(info.Env(), next.data(), keySize));
    cur.swap(next);
    prev = cur.data();
    if (n > (1u << 24)) break;
  }
  return out;
}

Napi::Value NumPossibleCpus(const Napi::CallbackInfo &info) {
  int n = libbpf_num_possible_cpus();
  if (n < 0) ThrowErrno(info.Env(), -n, "libbpf_num_possible_cpus");
  return Napi::Number::New(info.Env(), n);
}

// probeFeatures() -> { progTypes: {name: bool}, mapTypes: {name: bool}, kernelRelease }.
// A probe that fails for lack of privilege reports EPERM as `permission: false`.
Napi::Value ProbeFeatures(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  Napi::Object out = Napi::Object::New(env);
  Napi::Object progs = Napi::Object::New(env);
  Napi::Object maps = Napi::Object::New(env);
  // libbpf's probes report "unsupported" for EPERM too, so privilege is probed on its own first.
  bool permission = true;
  int probeFd = bpf_map_create(BPF_MAP_TYPE_ARRAY, "ambit_probe", 4, 4, 1, nullptr);
  if (probeFd < 0 && (errno == EPERM || errno == EACCES)) permission = false;
  if (probeFd >= 0) close(probeFd);
  const enum bpf_prog_type progTypes[] = {BPF_PROG_TYPE_CGROUP_SOCK_ADDR, BPF_PROG_TYPE_SOCK_OPS,
                                          BPF_PROG_TYPE_CGROUP_SOCKOPT, BPF_PROG_TYPE_SK_LOOKUP};
  for (auto t : progTypes) {
    int r = libbpf_probe_bpf_prog_type(t, nullptr);
    if (r == -EPERM) permission = false;
    progs.Set(libbpf_bpf_prog_type_str(t), Napi::Boolean::New(env, r == 1));
  }
  const enum bpf_map_type mapTypes[] = {BPF_MAP_TYPE_HASH, BPF_MAP_TYPE_LRU_HASH, BPF_MAP_TYPE_PERCPU_ARRAY,
                                        BPF_MAP_TYPE_LPM_TRIE, BPF_MAP_TYPE_SOCKHASH};
  for (auto t : mapTypes) {
    int r = libbpf_probe_bpf_map_type(t, nullptr);
    if (r == -EPERM) permission = false;
    maps.Set(libbpf_bpf_map_type_str(t), Napi::Boolean::New(env, r == 1));
  }
  struct utsname u;
  uname(&u);
  out.Set("progTypes", progs);
  out.Set("mapTypes", maps);
  out.Set("permission", Napi::Boolean::New(env, permission));
  out.Set("kernelRelease", std::string(u.release));
  return out;
}

} // namespace

void InitBpfOps(Napi::Env env, Napi::Object exports) {
  exports.Set("attachCgroup", Napi::Function::New(env, AttachCgroup));
  exports.Set("attachNetns", Napi::Function::New(env, AttachNetns));
  exports.Set("linkUpdate", Napi::Function::New(env, LinkUpdate));
  exports.Set("linkDetach", Napi::Function::New(env, LinkDetach));
  exports.Set("linkInfo", Napi::Function::New(env, LinkInfo));
  exports.Set("progInfo", Napi::Function::New(env, ProgInfo));
  exports.Set("mapInfo", Napi::Function::New(env, MapInfo));
  exports.Set("objPin", Napi::Function::New(env, ObjPin));
  exports.Set("objGet", Napi::Function::New(env, ObjGet));
  exports.Set("closeFd", Napi::Function::New(env, CloseFd));
  exports.Set("mapLookup", Napi::Function::New(env, MapLookup));
  exports.Set("mapUpdate", Napi::Function::New(env, MapUpdate));
  exports.Set("mapDelete", Napi::Function::New(env, MapDelete));
  exports.Set("mapKeys", Napi::Function::New(env, MapKeys));
  exports.Set("sockmapInsert", Napi::Function::New(env, SockmapInsert));
  exports.Set("numPossibleCpus", Napi::Function::New(env, NumPossibleCpus));
  exports.Set("probeFeatures", Napi::Function::New(env, ProbeFeatures));
}

} // namespace ambit
