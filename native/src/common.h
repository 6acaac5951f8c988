// ambit native addon: shared helpers.
//
// Every error that crosses into JavaScript is a plain Error carrying `code` (the errno name, e.g.
// "EPERM"), `errno` (the positive number), `syscall` (what failed) and, for a rejected BPF program,
// `verifierLog`. src/ebpf/errors.ts turns these into typed AmbitError subclasses; this side keeps the
// raw data intact and never aborts the process on bad input.
#pragma once

#include <napi.h>

#include <cerrno>
#include <cstdint>
#include <string>

#include <sys/socket.h>

namespace ambit {

// A failure with its errno, raised on a worker thread and turned into a JS error on the main one.
struct SysError {
  int err = 0;             // positive errno; 0 means "no errno" (e.g. bad argument)
  std::string syscall;     // the call that failed
  std::string message;     // operator-facing detail
  std::string verifierLog; // BPF verifier log, when a program was rejected
  std::string libbpfLog;   // libbpf's own messages during the failed call
};

std::string ErrnoName(int err);

// Builds the JS error object for a failure.
Napi::Error MakeError(Napi::Env env, const SysError &e);

// Throws a JS error for `syscall` failing with `err` (positive errno).
[[noreturn]] void ThrowErrno(Napi::Env env, int err, const std::string &syscall, const std::string &detail = "");

// Argument helpers: throw a TypeError (code ERR_INVALID_ARG_TYPE) naming the argument.
int ArgInt(const Napi::CallbackInfo &info, size_t i, const char *name);
std::string ArgString(const Napi::CallbackInfo &info, size_t i, const char *name);
Napi::Buffer<uint8_t> ArgBuffer(const Napi::CallbackInfo &info, size_t i, const char *name);

Napi::Value BigU64(Napi::Env env, uint64_t v);

// Fills `ss`/`len` with `host` (IPv4 or IPv6 literal) and `port`; false when `host` is no address.
bool ParseSockaddr(const std::string &host, int port, struct sockaddr_storage *ss, socklen_t *len);

// Registration of each file's functions into the module exports.
void InitObject(Napi::Env env, Napi::Object exports);
void InitBpfOps(Napi::Env env, Napi::Object exports);
void InitSysOps(Napi::Env env, Napi::Object exports);
void InitTcxOps(Napi::Env env, Napi::Object exports);
void InitFdPassing(Napi::Env env, Napi::Object exports);
void InitSourceAddress(Napi::Env env, Napi::Object exports);

Napi::Object InitModule(Napi::Env env, Napi::Object exports);

// libbpf's print callback output is captured per thread while a libbpf call runs.
void LibbpfCaptureBegin();
std::string LibbpfCaptureEnd();

} // namespace ambit
