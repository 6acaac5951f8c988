// ambit native addon: a BPF object file, open (a spec you can inspect) and then loaded (a handle).
//
// `new BpfObject(path, { pinRoot })` parses the ELF without touching the kernel: programs() and
// maps() describe it, setMaxEntries() resizes maps. load() (off the main thread) creates maps, reusing
// compatible maps pinned under pinRoot (LIBBPF_PIN_BY_NAME) and pinning new ones there, then loads
// the programs. A rejected program's verifier log is attached to the error. close() releases every
// fd the object holds; links created from its program fds keep the programs alive in the kernel.
#include "common.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <memory>
#include <vector>

namespace ambit {

namespace {

constexpr size_t kLogSize = 1u << 20;

class BpfObject : public Napi::ObjectWrap<BpfObject> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "BpfObject",
                       {
                           InstanceMethod("programs", &BpfObject::Programs),
                           InstanceMethod("maps", &BpfObject::Maps),
                           InstanceMethod("setMaxEntries", &BpfObject::SetMaxEntries),
                           InstanceMethod("load", &BpfObject::Load),
                           InstanceMethod("programFd", &BpfObject::ProgramFd),
                           InstanceMethod("mapFd", &BpfObject::MapFd),
                           InstanceMethod("close", &BpfObject::Close),
                       });
  }

  explicit BpfObject(const Napi::CallbackInfo &info) : Napi::ObjectWrap<BpfObject>(info) {
    std::string path = ArgString(info, 0, "path");
    std::string pinRoot;
    if (info.Length() > 1 && info[1].IsObject()) {
      Napi::Value v = info[1].As<Napi::Object>().Get("pinRoot");
      if (v.IsString()) pinRoot = v.As<Napi::String>().Utf8Value();
    }
    LIBBPF_OPTS(bpf_object_open_opts, opts);
    if (!pinRoot.empty()) opts.pin_root_path = pinRoot.c_str();
    LibbpfCaptureBegin();
    errno = 0;
    struct bpf_object *obj = bpf_object__open_file(path.c_str(), &opts);
    int err = obj == nullptr ? errno : 0;
    std::string log = LibbpfCaptureEnd();
    if (obj == nullptr) {
      SysError e;
      e.err = err != 0 ? err : EINVAL;
      e.syscall = "bpf_object__open_file";
      e.message = path;
      e.libbpfLog = log;
      throw MakeError(info.Env(), e);
    }
    obj_ = obj;
  }

  ~BpfObject() override { Release(); }

  struct bpf_object *obj() { return obj_; }
  bool loaded_ = false;
  bool busy_ = false;

 private:
  struct bpf_object *obj_ = nullptr;

  void Release() {
    if (obj_ != nullptr) {
      bpf_object__close(obj_);
      obj_ = nullptr;
    }
  }

  void Usable(Napi::Env env) {
    if (obj_ == nullptr) ThrowErrno(env, EBADF, "BpfObject", "the object is closed");
    if (busy_) ThrowErrno(env, EBUSY, "BpfObject", "the object is loading");
  }

  Napi::Value Programs(const Napi::CallbackInfo &info) {
    Usable(info.Env());
    Napi::Array out = Napi::Array::New(info.Env());
    struct bpf_program *prog;
    uint32_t i = 0;
    bpf_object__for_each_program(prog, obj_) {
      Napi::Object p = Napi::Object::New(info.Env());
      p.Set("name", bpf_program__name(prog));
      p.Set("section", bpf_program__section_name(prog));
      const char *type = libbpf_bpf_prog_type_str(bpf_program__type(prog));
      p.Set("type", type != nullptr ? type : "unknown");
      const char *at = libbpf_bpf_attach_type_str(bpf_program__expected_attach_type(prog));
      p.Set("expectedAttachType", at != nullptr ? at : "unknown");
      p.Set("instructions", Napi::Number::New(info.Env(), static_cast<double>(bpf_program__insn_cnt(prog))));
      out.Set(i++, p);
    }
    return out;
  }

  Napi::Value Maps(const Napi::CallbackInfo &info) {
    Usable(info.Env());
    Napi::Array out = Napi::Array::New(info.Env());
    struct bpf_map *map;
    uint32_t i = 0;
    bpf_object__for_each_map(map, obj_) {
      Napi::Object m = Napi::Object::New(info.Env());
      m.Set("name", bpf_map__name(map));
      const char *type = libbpf_bpf_map_type_str(bpf_map__type(map));
      m.Set("type", type != nullptr ? type : "unknown");
      m.Set("keySize", Napi::Number::New(info.Env(), bpf_map__key_size(map)));
      m.Set("valueSize", Napi::Number::New(info.Env(), bpf_map__value_size(map)));
      m.Set("maxEntries", Napi::Number::New(info.Env(), bpf_map__max_entries(map)));
      m.Set("internal", Napi::Boolean::New(info.Env(), bpf_map__is_internal(map)));
      const char *pin = bpf_map__pin_path(map);
      if (pin != nullptr) m.Set("pinPath", pin);
      out.Set(i++, m);
    }
    return out;
  }

  Napi::Value SetMaxEntries(const Napi::CallbackInfo &info) {
    Usable(info.Env());
    std::string name = ArgString(info, 0, "map");
    int n = ArgInt(info, 1, "maxEntries");
    struct bpf_map *map = bpf_object__find_map_by_name(obj_, name.c_str());
    if (map == nullptr) ThrowErrno(info.Env(), ENOENT, "bpf_object__find_map_by_name", name);
    int err = bpf_map__set_max_entries(map, static_cast<uint32_t>(n));
    if (err != 0) ThrowErrno(info.Env(), -err, "bpf_map__set_max_entries", name);
    return info.Env().Undefined();
  }

  Napi::Value ProgramFd(const Napi::CallbackInfo &info) {
    Usable(info.Env());
    std::string name = ArgString(info, 0, "program");
    struct bpf_program *prog = bpf_object__find_program_by_name(obj_, name.c_str());
    if (prog == nullptr) ThrowErrno(info.Env(), ENOENT, "bpf_object__find_program_by_name", name);
    int fd = bpf_program__fd(prog);
    if (fd < 0) ThrowErrno(info.Env(), EBADF, "bpf_program__fd", name + " is not loaded");
    return Napi::Number::New(info.Env(), fd);
  }

  Napi::Value MapFd(const Napi::CallbackInfo &info) {
    Usable(info.Env());
    std::string name = ArgString(info, 0, "map");
    struct bpf_map *map = bpf_object__find_map_by_name(obj_, name.c_str());
    if (map == nullptr) ThrowErrno(info.Env(), ENOENT, "bpf_object__find_map_by_name", name);
    int fd = bpf_map__fd(map);
    if (fd < 0) ThrowErrno(info.Env(), EBADF, "bpf_map__fd", name + " is not created");
    return Napi::Number::New(info.Env(), fd);
  }

  Napi::Value Close(const Napi::CallbackInfo &info) {
    if (busy_) ThrowErrno(info.Env(), EBUSY, "BpfObject.close", "the object is loading");
    Release();
    return info.Env().Undefined();
  }

  Napi::Value Load(const Napi::CallbackInfo &info);
};

class LoadWorker : public Napi::AsyncWorker {
 public:
  LoadWorker(Napi::Env env, BpfObject *self, Napi::Object ref)
      : Napi::AsyncWorker(env), self_(self), deferred_(Napi::Promise::Deferred::New(env)) {
    ref_ = Napi::Persistent(ref);
  }

  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override {
    struct bpf_object *obj = self_->obj();
    struct bpf_program *prog;
    std::vector<std::pair<struct bpf_program *, std::unique_ptr<char[]>>> logs;
    bpf_object__for_each_program(prog, obj) {
      std::unique_ptr<char[]> buf(new char[kLogSize]);
      buf[0] = '\0';
      bpf_program__set_log_buf(prog, buf.get(), kLogSize);
      logs.emplace_back(prog, std::move(buf));
    }
    LibbpfCaptureBegin();
    int err = bpf_object__load(obj);
    error_.libbpfLog = LibbpfCaptureEnd();
    for (auto &entry : logs) bpf_program__set_log_buf(entry.first, nullptr, 0);
    if (err == 0) return;
    error_.err = -err;
    error_.syscall = "bpf_object__load";
    for (auto &entry : logs) {
      if (entry.second[0] != '\0') {
        error_.verifierLog = entry.second.get();
        error_.message = std::string("program ") + bpf_program__name(entry.first) + " rejected by the verifier";
        break;
      }
    }
    failed_ = true;
  }

  void OnOK() override {
    self_->busy_ = false;
    if (failed_) {
      deferred_.Reject(MakeError(Env(), error_).Value());
      return;
    }
    self_->loaded_ = true;
    deferred_.Resolve(Env().Undefined());
  }

  void OnError(const Napi::Error &e) override {
    self_->busy_ = false;
    deferred_.Reject(e.Value());
  }

 private:
  BpfObject *self_;
  Napi::ObjectReference ref_;
  Napi::Promise::Deferred deferred_;
  SysError error_;
  bool failed_ = false;
};

Napi::Value BpfObject::Load(const Napi::CallbackInfo &info) {
  Usable(info.Env());
  if (loaded_) ThrowErrno(info.Env(), EALREADY, "bpf_object__load", "the object is already loaded");
  busy_ = true;
  auto *worker = new LoadWorker(info.Env(), this, info.This().As<Napi::Object>());
  Napi::Promise p = worker->Promise();
  worker->Queue();
  return p;
}

} // namespace

void InitObject(Napi::Env env, Napi::Object exports) { exports.Set("BpfObject", BpfObject::Define(env)); }

} // namespace ambit
