// ambit native addon: errors, argument checks, libbpf log capture, and module registration.
#include "common.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <bpf/libbpf.h>

#include <cstdarg>
#include <cstdio>
#include <cstring>

namespace ambit {

std::string ErrnoName(int err) {
  const char *name = strerrorname_np(err);
  if (name != nullptr) return name;
  return "E" + std::to_string(err);
}

Napi::Error MakeError(Napi::Env env, const SysError &e) {
  std::string msg = e.syscall;
  if (e.err != 0) msg += ": " + std::string(strerror(e.err));
  if (!e.message.empty()) msg += " (" + e.message + ")";
  Napi::Error error = Napi::Error::New(env, msg);
  Napi::Object obj = error.Value();
  obj.Set("code", e.err != 0 ? ErrnoName(e.err) : std::string("EINVAL"));
  obj.Set("errno", Napi::Number::New(env, e.err));
  obj.Set("syscall", e.syscall);
  if (!e.verifierLog.empty()) obj.Set("verifierLog", e.verifierLog);
  if (!e.libbpfLog.empty()) obj.Set("libbpfLog", e.libbpfLog);
  return error;
}

void ThrowErrno(Napi::Env env, int err, const std::string &syscall, const std::string &detail) {
  SysError e;
  e.err = err;
  e.syscall = syscall;
  e.message = detail;
  throw MakeError(env, e);
}

static Napi::TypeError ArgError(const Napi::CallbackInfo &info, size_t i, const char *name, const char *want) {
  Napi::TypeError err = Napi::TypeError::New(info.Env(), std::string("argument ") + std::to_string(i) + " (" + name + ") must be " + want);
  err.Value().Set("code", "ERR_INVALID_ARG_TYPE");
  return err;
}

int ArgInt(const Napi::CallbackInfo &info, size_t i, const char *name) {
  if (info.Length() <= i || !info[i].IsNumber()) throw ArgError(info, i, name, "a number");
  return info[i].As<Napi::Number>().Int32Value();
}

std::string ArgString(const Napi::CallbackInfo &info, size_t i, const char *name) {
  if (info.Length() <= i || !info[i].IsString()) throw ArgError(info, i, name, "a string");
  return info[i].As<Napi::String>().Utf8Value();
}

Napi::Buffer<uint8_t> ArgBuffer(const Napi::CallbackInfo &info, size_t i, const char *name) {
  if (info.Length() <= i || !info[i].IsBuffer()) throw ArgError(info, i, name, "a Buffer");
  return info[i].As<Napi::Buffer<uint8_t>>();
}

Napi::Value BigU64(Napi::Env env, uint64_t v) { return Napi::BigInt::New(env, v); }

// libbpf messages go to a per-thread buffer while a capture is active, and are dropped otherwise
// (the JS side decides what to log).
static thread_local std::string *g_capture = nullptr;

static int LibbpfPrint(enum libbpf_print_level level, const char *fmt, va_list args) {
  if (g_capture == nullptr || level == LIBBPF_DEBUG) return 0;
  char buf[2048];
  int n = vsnprintf(buf, sizeof(buf), fmt, args);
  if (n > 0 && g_capture->size() < (1u << 20)) g_capture->append(buf, std::min<size_t>(n, sizeof(buf) - 1));
  return 0;
}

void LibbpfCaptureBegin() {
  delete g_capture;
  g_capture = new std::string();
}

std::string LibbpfCaptureEnd() {
  std::string out;
  if (g_capture != nullptr) {
    out.swap(*g_capture);
    delete g_capture;
    g_capture = nullptr;
  }
  return out;
}

bool ParseSockaddr(const std::string &host, int port, struct sockaddr_storage *ss, socklen_t *len) {
  memset(ss, 0, sizeof(*ss));
  if (host.find(':') != std::string::npos) {
    auto *a = reinterpret_cast<struct sockaddr_in6 *>(ss);
    a->sin6_family = AF_INET6;
    a->sin6_port = htons(static_cast<uint16_t>(port));
    if (inet_pton(AF_INET6, host.c_str(), &a->sin6_addr) != 1) return false;
    *len = sizeof(*a);
  } else {
    auto *a = reinterpret_cast<struct sockaddr_in *>(ss);
    a->sin_family = AF_INET;
    a->sin_port = htons(static_cast<uint16_t>(port));
    if (inet_pton(AF_INET, host.c_str(), &a->sin_addr) != 1) return false;
    *len = sizeof(*a);
  }
  return true;
}

Napi::Object InitModule(Napi::Env env, Napi::Object exports) {
  libbpf_set_print(LibbpfPrint);
  libbpf_set_strict_mode(LIBBPF_STRICT_ALL);
  InitObject(env, exports);
  InitBpfOps(env, exports);
  InitSysOps(env, exports);
  InitTcxOps(env, exports);
  InitFdPassing(env, exports);
  InitSourceAddress(env, exports);
  return exports;
}

} // namespace ambit

static Napi::Object Init(Napi::Env env, Napi::Object exports) { return ambit::InitModule(env, exports); }

NODE_API_MODULE(ambit_native, Init)
