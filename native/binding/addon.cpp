// N-API surface: two classes (NativeModel, NativeContext) and three functions. Everything that does
// model work runs on the libuv thread pool and resolves a Promise; arguments are validated here
// (types, ranges, lengths) and in the engine (values) before any native state changes.
//
// Native code never trusts JS:
//  - every method and accessor checks that `this` is an object this addon created (N-API type tags),
//    so Function.prototype.call with a foreign receiver is an E_INVALID_ARG, never a type confusion;
//  - numbers are checked for finiteness and range before any conversion to an integer type;
//  - typed arrays are copied on the main thread before the worker runs, so JS can detach, resize or
//    overwrite them while the work is in flight (tensor data included);
//  - JS cannot construct the classes itself (a private token is required);
//  - each environment (main thread, each worker_thread) has its own constructors (instance data);
//  - one operation per context at a time (E_BUSY), checked after every argument was read, since
//    reading arguments can run JS (getters, proxies);
//  - contexts and models are reference counted: an operation in flight owns what it uses, so
//    dispose() (or GC) at any time is safe; a context is destroyed under its model's compute lock,
//    so freeing it never overlaps a forward pass of another context of the same model.
// A worker_thread being terminated can make N-API calls fail while our callbacks run; swallow
// the "cannot throw" case instead of letting node-addon-api abort the process.
#define NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS
#include <napi.h>

#include <atomic>
#include <cmath>
#include <cstring>
#include <functional>
#include <memory>
#include <new>
#include <string>
#include <vector>

#if defined(_WIN32)
#define NOMINMAX
#include <windows.h>
#else
#include <unistd.h>
#endif

#include "../engine/context.h"
#include "../engine/errors.h"
#include "../engine/model.h"

using namespace casspec;

namespace {

// ---------------------------------------------------------------------------------------------
// Process-wide bookkeeping (debugCounts()): live engine objects, whatever environment made them.

std::atomic<int64_t> gLiveModels{0};
std::atomic<int64_t> gLiveContexts{0};
std::atomic<int64_t> gCpuKvBytes{0};  // KV cache bytes of live CPU contexts (plus reservations)

// Host bytes the CPU backend holds for a tensor: F32 values, plus its int8 codes and per-row scales
// when the model keeps int8 draft weights.
double cpuHostBytes(const casspec::Model& m, const casspec::TensorSpec& spec) {
  double n = 1;
  for (int64_t dim : spec.shape) n *= (double)dim;
  const bool q = m.quantWeights() == casspec::kQuantInt8 && casspec::isQuantizedRole(spec.role);
  return 4 * n + (q ? n + 4.0 * (double)spec.shape[0] : 0);
}

int64_t physicalMemoryBytes() {
#if defined(_WIN32)
  MEMORYSTATUSEX s;
  s.dwLength = sizeof(s);
  return GlobalMemoryStatusEx(&s) ? (int64_t)s.ullTotalPhys : 0;
#elif defined(_SC_PHYS_PAGES) && defined(_SC_PAGESIZE)
  long pages = sysconf(_SC_PHYS_PAGES), size = sysconf(_SC_PAGESIZE);
  return pages > 0 && size > 0 ? (int64_t)pages * size : 0;
#else
  return 0;
#endif
}

// A share of gCpuKvBytes, given back when the last owner lets go.
struct KvReservation {
  explicit KvReservation(int64_t b) : bytes(b) {}
  ~KvReservation() { gCpuKvBytes.fetch_sub(bytes); }
  KvReservation(const KvReservation&) = delete;
  KvReservation& operator=(const KvReservation&) = delete;
  int64_t bytes;
};

// Type tags: which objects this addon created, and of which class.
const napi_type_tag kModelTag = {0x6361737370656331ull, 0x4d6f64656c000001ull};
const napi_type_tag kContextTag = {0x6361737370656331ull, 0x436f6e7465787401ull};
// Only the addon can construct its classes: it passes this token's address as an External.
char kConstructToken = 0;

struct AddonData {
  Napi::FunctionReference modelCtor;
  Napi::FunctionReference contextCtor;
};

AddonData& addonData(Napi::Env env) {
  AddonData* d = env.GetInstanceData<AddonData>();
  if (!d) throw Napi::Error::New(env, "casspec: addon instance data is missing");
  return *d;
}

Napi::Error toJsError(Napi::Env env, const std::string& code, const std::string& msg) {
  Napi::Error e = Napi::Error::New(env, msg);
  e.Set("code", Napi::String::New(env, code));
  return e;
}

[[noreturn]] void throwJs(Napi::Env env, const std::string& code, const std::string& msg) {
  throw toJsError(env, code, msg);
}

// The addon's contract: a wrong *type* (or a dead / busy object) throws synchronously; a wrong
// *value* (range, length, shape, memory) rejects the returned promise, as the engine's own checks
// do. Value checks made here, on the main thread, throw a Rejection, which the method trampoline
// turns into a rejected promise.
struct Rejection {
  std::string code, msg;
};
[[noreturn]] void rejectWith(const std::string& code, const std::string& msg) { throw Rejection{code, msg}; }

Napi::Value rejectedPromise(Napi::Env env, const std::string& code, const std::string& msg) {
  auto d = Napi::Promise::Deferred::New(env);
  d.Reject(toJsError(env, code, msg).Value());
  return d.Promise();
}

// Engine checks run here (on the main thread) reject like the same checks run in the worker.
template <class F>
void valueCheck(F f) {
  try {
    f();
  } catch (const Error& e) {
    rejectWith(e.code, e.what());
  }
}

// Runs `work` on the thread pool; converts native exceptions to rejected Promises with a code.
// `finally` runs on the main thread before the Promise settles, whatever the outcome.
class Task : public Napi::AsyncWorker {
 public:
  using Work = std::function<void()>;
  using Done = std::function<Napi::Value(Napi::Env)>;
  Task(Napi::Env env, Work w, Done d, std::function<void()> finally = nullptr)
      : Napi::AsyncWorker(env, "casspec"), deferred_(Napi::Promise::Deferred::New(env)), work_(std::move(w)),
        done_(std::move(d)), finally_(std::move(finally)) {}
  ~Task() override {
    // Destroyed without OnOK/OnError (the environment is shutting down): still release.
    if (finally_) finally_();
  }
  Napi::Promise promise() { return deferred_.Promise(); }
  void Execute() override {
    try {
      work_();
    } catch (const Error& e) {
      fail(e.code, e.what());
    } catch (const std::bad_alloc&) {
      fail("E_OOM", "out of host memory");
    } catch (const std::exception& e) {
      fail("E_INTERNAL", e.what());
    } catch (...) {
      fail("E_INTERNAL", "unknown native exception");
    }
  }
  // Settles the promise on the main thread. Nothing may escape from here: when the environment is
  // shutting down (a worker_thread terminated while this task ran), N-API calls fail, and a C++
  // exception leaving a libuv callback would abort the whole process.
  void OnWorkComplete(Napi::Env env, napi_status status) override {
    runFinally();
    if (status != napi_cancelled) {
      try {
        Napi::HandleScope scope(env);
        settle(env);
      } catch (...) {
        napi_value pending;
        napi_get_and_clear_last_exception(env, &pending);
      }
    }
    Destroy();
  }
  void OnOK() override {}
  void OnError(const Napi::Error&) override {}

  // Queues the task and returns its promise (the task deletes itself when done).
  static Napi::Value start(Napi::Env env, Work w, Done d, std::function<void()> finally = nullptr) {
    auto* t = new Task(env, std::move(w), std::move(d), std::move(finally));
    Napi::Promise p = t->promise();
    t->Queue();
    return p;
  }

 private:
  void settle(Napi::Env env) {
    if (failed_) {
      deferred_.Reject(toJsError(env, code_, errorMessage_).Value());
      return;
    }
    Napi::Value v;
    try {
      v = done_ ? done_(env) : env.Undefined();
    } catch (const Napi::Error& e) {
      deferred_.Reject(e.Value());
      return;
    } catch (const std::bad_alloc&) {
      deferred_.Reject(toJsError(env, "E_OOM", "out of host memory").Value());
      return;
    } catch (const std::exception& e) {
      deferred_.Reject(toJsError(env, "E_INTERNAL", e.what()).Value());
      return;
    }
    deferred_.Resolve(v);
  }
  void fail(const std::string& code, const std::string& msg) {
    failed_ = true;
    code_ = code;
    errorMessage_ = msg;
  }
  void runFinally() {
    auto f = std::move(finally_);
    finally_ = nullptr;
    if (f) f();
  }
  Napi::Promise::Deferred deferred_;
  Work work_;
  Done done_;
  std::function<void()> finally_;
  bool failed_ = false;
  std::string code_ = "E_INTERNAL";
  std::string errorMessage_;
};

// Run engine code synchronously, turning native exceptions into JS exceptions.
template <class F>
auto guard(Napi::Env env, F f) -> decltype(f()) {
  try {
    return f();
  } catch (const Error& e) {
    throwJs(env, e.code, e.what());
  } catch (const std::bad_alloc&) {
    throwJs(env, "E_OOM", "out of host memory");
  } catch (const Napi::Error&) {
    throw;
  } catch (const std::exception& e) {
    throwJs(env, "E_INTERNAL", e.what());
  }
}

// ---------------------------------------------------------------------------------------------
// Argument checks. Numbers are range-checked as doubles before any integer conversion (casting a
// NaN or an out-of-range double to an integer type is undefined behaviour in C++).

bool integralIn(double d, double lo, double hi) { return std::isfinite(d) && std::floor(d) == d && d >= lo && d <= hi; }

int intValue(Napi::Env env, Napi::Value v, const std::string& what, int lo = INT32_MIN, int hi = INT32_MAX) {
  if (!v.IsNumber()) throwJs(env, "E_INVALID_ARG", what + " must be a number");
  double d = v.As<Napi::Number>().DoubleValue();
  if (!integralIn(d, lo, hi))
    throwJs(env, "E_INVALID_ARG", what + " must be an integer in " + std::to_string(lo) + ".." + std::to_string(hi));
  return (int)d;
}

int intField(Napi::Object o, const char* key, bool required, int def = 0) {
  Napi::Env env = o.Env();
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) {
    if (required) throwJs(env, "E_INVALID_ARG", std::string("missing integer field '") + key + "'");
    return def;
  }
  return intValue(env, v, std::string("field '") + key + "'");
}

double numField(Napi::Object o, const char* key, double def) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return def;
  if (!v.IsNumber()) throwJs(o.Env(), "E_INVALID_ARG", std::string("field '") + key + "' must be a number");
  double d = v.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d) || std::fabs(d) > 3.0e38)
    throwJs(o.Env(), "E_INVALID_ARG", std::string("field '") + key + "' must be a finite number within float range");
  return d;
}

bool boolField(Napi::Object o, const char* key, bool def) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return def;
  if (!v.IsBoolean()) throwJs(o.Env(), "E_INVALID_ARG", std::string("field '") + key + "' must be a boolean");
  return v.As<Napi::Boolean>().Value();
}

std::string strField(Napi::Object o, const char* key, const std::string& def) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return def;
  if (!v.IsString()) throwJs(o.Env(), "E_INVALID_ARG", std::string("field '") + key + "' must be a string");
  return v.As<Napi::String>().Utf8Value();
}

const char* typedArrayName(napi_typedarray_type t) {
  switch (t) {
    case napi_int32_array: return "Int32Array";
    case napi_uint8_array: return "Uint8Array";
    default: return "typed array";
  }
}

// A typed array's bytes, copied now. Detached buffers read as empty; wrong kinds and arrays longer
// than maxLen are rejected before anything is copied.
template <class T, napi_typedarray_type kind>
std::vector<T> copyTypedArray(Napi::Env env, Napi::Value v, const std::string& what, size_t maxLen) {
  if (!v.IsTypedArray()) throwJs(env, "E_INVALID_ARG", what + " must be a " + typedArrayName(kind));
  napi_typedarray_type type;
  size_t length = 0, offset = 0;
  void* data = nullptr;
  napi_value buffer;
  if (napi_get_typedarray_info(env, v, &type, &length, &data, &buffer, &offset) != napi_ok)
    throwJs(env, "E_INVALID_ARG", what + " could not be read");
  if (type != kind) throwJs(env, "E_INVALID_ARG", what + " must be a " + typedArrayName(kind));
  if (length > maxLen)
    rejectWith("E_INVALID_ARG", what + " has " + std::to_string(length) + " entries, more than the " + std::to_string(maxLen) + " this context allows");
  std::vector<T> out(length);
  if (length > 0 && data != nullptr) std::memcpy(out.data(), data, length * sizeof(T));
  return out;
}

template <class T, napi_typedarray_type kind>
std::vector<T> typedField(Napi::Object o, const char* key, bool required, size_t maxLen) {
  Napi::Env env = o.Env();
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) {
    if (required) throwJs(env, "E_INVALID_ARG", std::string("missing field '") + key + "'");
    return {};
  }
  return copyTypedArray<T, kind>(env, v, std::string("field '") + key + "'", maxLen);
}

Napi::Object requireObject(const Napi::CallbackInfo& info, size_t i, const char* what) {
  if (info.Length() <= i || !info[i].IsObject()) throwJs(info.Env(), "E_INVALID_ARG", std::string(what) + " must be an object");
  return info[i].As<Napi::Object>();
}

Napi::Int32Array toInt32Array(Napi::Env env, const std::vector<int32_t>& v) {
  auto a = Napi::Int32Array::New(env, v.size());
  if (!v.empty()) std::memcpy(a.Data(), v.data(), v.size() * 4);
  return a;
}
Napi::Float32Array toFloat32Array(Napi::Env env, const std::vector<float>& v) {
  auto a = Napi::Float32Array::New(env, v.size());
  if (!v.empty()) std::memcpy(a.Data(), v.data(), v.size() * 4);
  return a;
}

// `this` must be an object this addon created as a T (checked by type tag before unwrapping).
template <class T>
T* unwrapThis(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  napi_value self = info.This();
  napi_valuetype type = napi_undefined;
  bool tagged = false;
  if (self != nullptr && napi_typeof(env, self, &type) == napi_ok && type == napi_object)
    if (napi_check_object_type_tag(env, self, &T::kTag, &tagged) != napi_ok) tagged = false;
  if (!tagged) throwJs(env, "E_INVALID_ARG", std::string("receiver is not a ") + T::kName + " (method called on another object)");
  T* p = T::Unwrap(Napi::Object(env, self));
  if (p == nullptr) throwJs(env, "E_INVALID_ARG", std::string("receiver is not a live ") + T::kName);
  return p;
}

template <class T, Napi::Value (T::*M)(const Napi::CallbackInfo&)>
Napi::Value checked(const Napi::CallbackInfo& info) {
  T* self = unwrapThis<T>(info);
  try {
    return (self->*M)(info);
  } catch (const Rejection& r) {
    return rejectedPromise(info.Env(), r.code, r.msg);
  }
}

// Constructor guard shared by both classes: tag the object, refuse construction from JS.
void constructGuard(const Napi::CallbackInfo& info, const napi_type_tag& tag, const char* name) {
  Napi::Env env = info.Env();
  if (info.Length() != 1 || !info[0].IsExternal() || info[0].As<Napi::External<char>>().Data() != &kConstructToken)
    throwJs(env, "E_INVALID_ARG", std::string(name) + " objects are created by the addon, not with `new`");
  if (napi_type_tag_object(env, info.This(), &tag) != napi_ok) throwJs(env, "E_INTERNAL", "could not tag a native object");
}

template <class T>
Napi::Object construct(Napi::Env env, Napi::FunctionReference& ctor) {
  return ctor.New({Napi::External<char>::New(env, &kConstructToken)});
}

// ---------------------------------------------------------------------------------------------

class NativeContext : public Napi::ObjectWrap<NativeContext> {
 public:
  static constexpr const char* kName = "NativeContext";
  static constexpr const napi_type_tag& kTag = kContextTag;

  static Napi::Function Init(Napi::Env env) {
    Napi::Function f = DefineClass(env, kName, {});
    Napi::Object proto = f.Get("prototype").As<Napi::Object>();
    const auto method = static_cast<napi_property_attributes>(napi_writable | napi_configurable);
    proto.DefineProperties({
        Napi::PropertyDescriptor::Value("forward", Napi::Function::New<checked<NativeContext, &NativeContext::Forward>>(env, "forward"), method),
        Napi::PropertyDescriptor::Value("commit", Napi::Function::New<checked<NativeContext, &NativeContext::Commit>>(env, "commit"), method),
        Napi::PropertyDescriptor::Value("truncate", Napi::Function::New<checked<NativeContext, &NativeContext::Truncate>>(env, "truncate"), method),
        Napi::PropertyDescriptor::Value("dispose", Napi::Function::New<checked<NativeContext, &NativeContext::Dispose>>(env, "dispose"), method),
        Napi::PropertyDescriptor::Accessor<checked<NativeContext, &NativeContext::Committed>>("committed", napi_configurable),
        Napi::PropertyDescriptor::Accessor<checked<NativeContext, &NativeContext::Capacity>>("capacity", napi_configurable),
    });
    return f;
  }
  NativeContext(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NativeContext>(info) {
    constructGuard(info, kTag, kName);
  }
  void attach(std::shared_ptr<Context> c) {
    ctx_ = std::move(c);
    committed_->store(ctx_->committed());
  }

  Napi::Value Forward(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!ctx_) throwJs(env, "E_DISPOSED", "this context was disposed");
    Napi::Object o = requireObject(info, 0, "forward options");
    // Reading fields can run JS (getters): read everything first, check liveness/busy last.
    const size_t cap = ctx_ ? (size_t)ctx_->capacity() : 0;
    const size_t layers = ctx_ ? (size_t)ctx_->model().config().layers : 0;
    auto args = std::make_shared<ForwardArgs>();
    args->tokens = typedField<int32_t, napi_int32_array>(o, "tokens", true, cap);
    args->slots = typedField<int32_t, napi_int32_array>(o, "slots", true, cap);
    args->parents = typedField<int32_t, napi_int32_array>(o, "parents", true, cap);
    args->skip = typedField<uint8_t, napi_uint8_array>(o, "skip", false, 2 * layers);
    args->outRows = typedField<int32_t, napi_int32_array>(o, "outRows", false, cap);
    args->quant = intField(o, "quant", false, 0);
    args->wantLogits = boolField(o, "wantLogits", false);
    args->topk = intField(o, "topk", false, 0);
    // commit: a path to commit before the pass, in the same task (one round trip per decoding
    // step instead of two). If the pass then fails, the commit stays applied.
    auto commit = std::make_shared<std::vector<int32_t>>(typedField<int32_t, napi_int32_array>(o, "commit", false, cap));
    auto res = std::make_shared<ForwardResult>();
    return run(
        env,
        [args, res, commit](Context& c) {
          if (!commit->empty()) c.commit(*commit);
          c.forward(*args, *res);
        },
        [res, args](Napi::Env env) -> Napi::Value {
          Napi::Object r = Napi::Object::New(env);
          r.Set("argmax", toInt32Array(env, res->argmax));
          if (args->wantLogits) r.Set("logits", toFloat32Array(env, res->logits));
          if (args->topk > 0) {
            r.Set("topkIds", toInt32Array(env, res->topkIds));
            r.Set("topkProbs", toFloat32Array(env, res->topkProbs));
          }
          return r;
        });
  }

  Napi::Value Commit(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!ctx_) throwJs(env, "E_DISPOSED", "this context was disposed");
    if (info.Length() < 1) throwJs(env, "E_INVALID_ARG", "commit(path) needs an Int32Array of slots");
    const size_t cap = ctx_ ? (size_t)ctx_->capacity() : 0;
    auto path = std::make_shared<std::vector<int32_t>>(copyTypedArray<int32_t, napi_int32_array>(env, info[0], "commit(path)", cap));
    return run(env, [path](Context& c) { c.commit(*path); }, nullptr);
  }

  Napi::Value Truncate(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!ctx_) throwJs(env, "E_DISPOSED", "this context was disposed");
    if (info.Length() < 1) throwJs(env, "E_INVALID_ARG", "truncate(n) needs a number");
    int n = intValue(env, info[0], "truncate(n)");
    return run(env, [n](Context& c) { c.truncate(n); }, nullptr);
  }

  // Safe at any time, any number of times: an operation in flight keeps its own reference, and the
  // memory goes when the last reference does (under the model's compute lock, see CreateContext).
  Napi::Value Dispose(const Napi::CallbackInfo& info) {
    ctx_.reset();
    return info.Env().Undefined();
  }
  // Read from a copy taken on the main thread when the last operation finished: a worker may be
  // changing the engine's counter right now.
  Napi::Value Committed(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), ctx_ ? committed_->load() : 0); }
  Napi::Value Capacity(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), ctx_ ? ctx_->capacity() : 0); }

 private:
  std::shared_ptr<Context> live(Napi::Env env) {
    if (!ctx_) throwJs(env, "E_DISPOSED", "this context was disposed");
    if (busy_->load()) throwJs(env, "E_BUSY", "another operation is still running on this context; await it first");
    return ctx_;
  }
  // Runs f(ctx) under the model's compute lock on the thread pool.
  Napi::Value run(Napi::Env env, std::function<void(Context&)> f, Task::Done done) {
    auto ctx = live(env);
    busy_->store(true);
    auto busy = busy_;
    auto committed = committed_;
    return Task::start(
        env,
        [ctx, f] {
          std::lock_guard<std::mutex> lock(ctx->model().computeMutex());
          f(*ctx);
        },
        std::move(done), [busy, committed, ctx] {
          committed->store(ctx->committed());  // the worker is done with ctx
          busy->store(false);
        });
  }

  std::shared_ptr<Context> ctx_;
  std::shared_ptr<std::atomic<bool>> busy_ = std::make_shared<std::atomic<bool>>(false);
  std::shared_ptr<std::atomic<int>> committed_ = std::make_shared<std::atomic<int>>(0);
};

// ---------------------------------------------------------------------------------------------

class NativeModel : public Napi::ObjectWrap<NativeModel> {
 public:
  static constexpr const char* kName = "NativeModel";
  static constexpr const napi_type_tag& kTag = kModelTag;
  static constexpr uint32_t kMaxDims = 8;

  static Napi::Function Init(Napi::Env env) {
    Napi::Function f = DefineClass(env, kName, {});
    Napi::Object proto = f.Get("prototype").As<Napi::Object>();
    const auto method = static_cast<napi_property_attributes>(napi_writable | napi_configurable);
    proto.DefineProperties({
        Napi::PropertyDescriptor::Value("tensorSpecs", Napi::Function::New<checked<NativeModel, &NativeModel::TensorSpecs>>(env, "tensorSpecs"), method),
        Napi::PropertyDescriptor::Value("setTensor", Napi::Function::New<checked<NativeModel, &NativeModel::SetTensor>>(env, "setTensor"), method),
        Napi::PropertyDescriptor::Value("fillDummy", Napi::Function::New<checked<NativeModel, &NativeModel::FillDummy>>(env, "fillDummy"), method),
        Napi::PropertyDescriptor::Value("createContext", Napi::Function::New<checked<NativeModel, &NativeModel::CreateContext>>(env, "createContext"), method),
        Napi::PropertyDescriptor::Value("info", Napi::Function::New<checked<NativeModel, &NativeModel::Info>>(env, "info"), method),
        Napi::PropertyDescriptor::Value("dispose", Napi::Function::New<checked<NativeModel, &NativeModel::Dispose>>(env, "dispose"), method),
    });
    return f;
  }
  NativeModel(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NativeModel>(info) { constructGuard(info, kTag, kName); }
  void attach(std::shared_ptr<Model> m) { model_ = std::move(m); }

  Napi::Value TensorSpecs(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto m = live(env);
    const auto& specs = m->specs();
    Napi::Array out = Napi::Array::New(env, specs.size());
    for (size_t i = 0; i < specs.size(); ++i) {
      Napi::Object o = Napi::Object::New(env);
      o.Set("name", specs[i].name);
      Napi::Array shape = Napi::Array::New(env, specs[i].shape.size());
      for (size_t d = 0; d < specs[i].shape.size(); ++d) shape.Set((uint32_t)d, Napi::Number::New(env, (double)specs[i].shape[d]));
      o.Set("shape", shape);
      out.Set((uint32_t)i, o);
    }
    return out;
  }

  // setTensor(name, dtype, shape: number[], data: Uint8Array) -> Promise<void>
  // The bytes are copied before the worker starts: JS may detach, shrink or reuse its buffer at once.
  Napi::Value SetTensor(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    live(env);
    if (info.Length() < 4 || !info[0].IsString() || !info[1].IsString() || !info[2].IsArray() || !info[3].IsTypedArray())
      throwJs(env, "E_INVALID_ARG", "setTensor(name: string, dtype: string, shape: number[], data: Uint8Array)");
    std::string name = info[0].As<Napi::String>().Utf8Value();
    DType dt = guard(env, [&] { return parseDType(info[1].As<Napi::String>().Utf8Value()); });
    Napi::Array sa = info[2].As<Napi::Array>();
    const uint32_t dims = sa.Length();
    if (dims > kMaxDims) rejectWith("E_SHAPE", "tensor shape has " + std::to_string(dims) + " dimensions (at most 8)");
    std::vector<int64_t> shape;
    for (uint32_t i = 0; i < dims; ++i) {
      Napi::Value v = sa.Get(i);
      if (!v.IsNumber()) throwJs(env, "E_INVALID_ARG", "tensor shape must be an array of numbers");
      double d = v.As<Napi::Number>().DoubleValue();
      if (!integralIn(d, 0, 9.0e15)) throwJs(env, "E_INVALID_ARG", "tensor shape entries must be non-negative integers");
      shape.push_back((int64_t)d);
    }
    napi_typedarray_type type;
    size_t length = 0, offset = 0;
    void* src = nullptr;
    napi_value buffer;
    if (napi_get_typedarray_info(env, info[3], &type, &length, &src, &buffer, &offset) != napi_ok || type != napi_uint8_array)
      throwJs(env, "E_INVALID_ARG", "tensor data must be a Uint8Array");
    auto m = live(env);  // after every argument was read (that can run JS)
    // Cheap checks first, so a wrong tensor is refused before its bytes are copied.
    valueCheck([&] {
      const auto& specs = m->specs();
      for (const auto& s : specs)
        if (s.name == name) {
          require(shape == s.shape, "E_SHAPE", "tensor '" + name + "' has the wrong shape for this config");
          size_t elems = 1;
          for (int64_t d : s.shape) elems *= (size_t)d;
          require(length == elems * dtypeSize(dt), "E_SHAPE",
                  "tensor '" + name + "' holds " + std::to_string(length) + " bytes, expected " + std::to_string(elems * dtypeSize(dt)));
          return;
        }
      fail("E_UNKNOWN_TENSOR", "tensor '" + name + "' is not part of a Llama model with this config");
    });
    // CPU weights are held as F32 in host memory: refuse what cannot fit instead of being OOM-killed.
    valueCheck([&] {
      if (m->backend().name() != "cpu") return;
      const int64_t phys = physicalMemoryBytes();
      double bytes = 0;
      for (const auto& spec : m->specs())
        if (spec.name == name) bytes = cpuHostBytes(*m, spec);
      require(phys <= 0 || (double)(m->backend().weightBytes() + m->backend().quantBytes()) + bytes <= (double)phys, "E_OOM",
              "tensor '" + name + "' would take the CPU weights past the " + std::to_string(phys) + " bytes of physical memory");
    });
    std::shared_ptr<uint8_t[]> copy;
    try {
      copy = std::shared_ptr<uint8_t[]>(new uint8_t[length > 0 ? length : 1]);
    } catch (const std::bad_alloc&) {
      rejectWith("E_OOM", "out of host memory copying tensor '" + name + "' (" + std::to_string(length) + " bytes)");
    }
    if (length > 0 && src != nullptr) std::memcpy(copy.get(), src, length);
    return Task::start(
        env,
        [m, name, dt, shape, copy, length] {
          std::lock_guard<std::mutex> lock(m->computeMutex());
          m->setTensor(name, dt, shape, copy.get(), length);
        },
        nullptr);
  }

  Napi::Value FillDummy(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    live(env);
    if (info.Length() < 1 || !info[0].IsNumber()) throwJs(env, "E_INVALID_ARG", "fillDummy(seed: number)");
    double d = info[0].As<Napi::Number>().DoubleValue();
    if (!integralIn(d, -9007199254740991.0, 9007199254740991.0)) throwJs(env, "E_INVALID_ARG", "fillDummy(seed) needs a safe integer");
    uint64_t seed = (uint64_t)(int64_t)d;
    auto m = live(env);
    valueCheck([&] {
      if (m->backend().name() != "cpu") return;
      double total = 0;
      for (const auto& s : m->specs()) total += cpuHostBytes(*m, s);
      const int64_t phys = physicalMemoryBytes();
      require(phys <= 0 || total <= (double)phys, "E_OOM",
              "random weights of this shape need " + std::to_string((int64_t)total) + " bytes as F32 (and int8 copies), more than the " +
                  std::to_string(phys) + " bytes of physical memory");
    });
    return Task::start(
        env,
        [m, seed] {
          std::lock_guard<std::mutex> lock(m->computeMutex());
          m->fillDummy(seed);
        },
        nullptr);
  }

  // createContext(capacity) -> Promise<NativeContext> (allocates the KV cache off the main thread)
  Napi::Value CreateContext(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    live(env);
    if (info.Length() < 1) throwJs(env, "E_INVALID_ARG", "createContext(capacity: number)");
    int cap = intValue(env, info[0], "context capacity");
    auto m = live(env);
    valueCheck([&] {
      require(cap >= 1 && cap <= m->config().maxPositions, "E_INVALID_ARG",
              "context size " + std::to_string(cap) + " must be in 1.." + std::to_string(m->config().maxPositions) +
                  " (max_position_embeddings)");
    });
    // The CPU backend keeps the KV cache in host memory: refuse what cannot fit in RAM (all live CPU
    // contexts together) instead of letting the kernel's OOM killer take the process down.
    const bool cpu = m->backend().name() == "cpu";
    const int64_t kvBytes = m->backend().kvBytesPerSlot() * (int64_t)cap;
    if (cpu) {
      const int64_t phys = physicalMemoryBytes();
      const int64_t before = gCpuKvBytes.fetch_add(kvBytes);
      if (phys > 0 && before + kvBytes > phys) {
        gCpuKvBytes.fetch_sub(kvBytes);  // not reserved after all
        rejectWith("E_OOM",
                "a KV cache of " + std::to_string(kvBytes) + " bytes (" + std::to_string(cap) + " slots) would not fit in the " +
                    std::to_string(phys) + " bytes of physical memory (" + std::to_string(before) + " already held by other contexts)");
      }
    }
    // Returned when both the task and the context (if one was built) are gone.
    auto reservation = std::make_shared<KvReservation>(cpu ? kvBytes : 0);
    auto holder = std::make_shared<std::shared_ptr<Context>>();
    return Task::start(
        env,
        [m, cap, holder, reservation] {
          std::unique_ptr<Context> c;
          {
            std::lock_guard<std::mutex> lock(m->computeMutex());
            c.reset(new Context(m, cap));
          }
          gLiveContexts.fetch_add(1);
          // Destroyed under the compute lock, whichever thread drops the last reference, so freeing a
          // context never overlaps a forward pass of another context of the same model. The deleter
          // holds the model, so the mutex outlives the lock.
          *holder = std::shared_ptr<Context>(c.release(), [m, reservation](Context* p) {
            {
              std::lock_guard<std::mutex> lock(m->computeMutex());
              delete p;
            }
            gLiveContexts.fetch_sub(1);
          });
        },
        [holder](Napi::Env env) -> Napi::Value {
          Napi::Object o = construct<NativeContext>(env, addonData(env).contextCtor);
          NativeContext::Unwrap(o)->attach(std::move(*holder));
          return o;
        });
  }

  Napi::Value Info(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto m = live(env);
    Napi::Object o = Napi::Object::New(env);
    o.Set("backend", m->backend().name());
    o.Set("device", m->backend().deviceInfo());
    o.Set("weightBytes", Napi::Number::New(env, (double)m->backend().weightBytes()));
    o.Set("quantBytes", Napi::Number::New(env, (double)m->backend().quantBytes()));
    o.Set("kvBytesPerSlot", Napi::Number::New(env, (double)m->backend().kvBytesPerSlot()));
    return o;
  }

  // Safe at any time, any number of times: contexts and operations in flight hold the model.
  Napi::Value Dispose(const Napi::CallbackInfo& info) {
    model_.reset();
    return info.Env().Undefined();
  }

 private:
  std::shared_ptr<Model> live(Napi::Env env) {
    if (!model_) throwJs(env, "E_DISPOSED", "this model was disposed");
    return model_;
  }

  std::shared_ptr<Model> model_;
};

// createModel(config, options) -> NativeModel (weights still to be set or filled)
Napi::Value CreateModel(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object c = requireObject(info, 0, "model config");
  Napi::Object o;
  if (info.Length() > 1 && !info[1].IsUndefined() && !info[1].IsNull()) {
    if (!info[1].IsObject()) throwJs(env, "E_INVALID_ARG", "backend options must be an object");
    o = info[1].As<Napi::Object>();
  } else {
    o = Napi::Object::New(env);
  }
  ModelConfig cfg;
  cfg.vocab = intField(c, "vocabSize", true);
  cfg.hidden = intField(c, "hiddenSize", true);
  cfg.layers = intField(c, "numLayers", true);
  cfg.heads = intField(c, "numHeads", true);
  cfg.kvHeads = intField(c, "numKvHeads", true);
  cfg.headDim = intField(c, "headDim", true);
  cfg.ffn = intField(c, "intermediateSize", true);
  cfg.maxPositions = intField(c, "maxPositions", true);
  cfg.ropeTheta = (float)numField(c, "ropeTheta", 10000.0);
  cfg.rmsEps = (float)numField(c, "rmsNormEps", 1e-5);
  cfg.tiedEmbeddings = boolField(c, "tieWordEmbeddings", false);
  BackendOptions bo;
  bo.kind = strField(o, "backend", "cpu");
  bo.threads = intField(o, "threads", false, 0);
  bo.device = intField(o, "device", false, 0);
  std::string wd = strField(o, "weightDType", "BF16");
  bo.weightDType = guard(env, [&] { return parseDType(wd); });
  bo.quantWeights = intField(o, "quantWeights", false, kQuantNone);  // range checked by Model
  auto model = guard(env, [&] {
    std::shared_ptr<Model> p(new Model(cfg, bo), [](Model* m) {
      delete m;
      gLiveModels.fetch_sub(1);
    });
    gLiveModels.fetch_add(1);
    return p;
  });
  Napi::Object obj = construct<NativeModel>(env, addonData(env).modelCtor);
  NativeModel::Unwrap(obj)->attach(model);
  return obj;
}

// cudaStatus() -> { usable: boolean, reason: string }
Napi::Value CudaStatus(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string why;
  bool ok = guard(env, [&] { return cudaUsable(why); });
  Napi::Object o = Napi::Object::New(env);
  o.Set("usable", Napi::Boolean::New(env, ok));
  o.Set("reason", why);
  return o;
}

// debugCounts() -> { models, contexts, cpuKvBytes }: engine objects alive in this process (all
// environments). For leak tests: a disposed (or collected) object leaves these counts once the
// last operation using it has finished.
Napi::Value DebugCounts(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("models", Napi::Number::New(env, (double)gLiveModels.load()));
  o.Set("contexts", Napi::Number::New(env, (double)gLiveContexts.load()));
  o.Set("cpuKvBytes", Napi::Number::New(env, (double)gCpuKvBytes.load()));
  return o;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  // Per-environment constructors: the main thread and each worker_thread load their own copy.
  auto* data = new AddonData();
  data->modelCtor = Napi::Persistent(NativeModel::Init(env));
  data->contextCtor = Napi::Persistent(NativeContext::Init(env));
  env.SetInstanceData<AddonData>(data);
  exports.Set("createModel", Napi::Function::New(env, CreateModel, "createModel"));
  exports.Set("cudaStatus", Napi::Function::New(env, CudaStatus, "cudaStatus"));
  exports.Set("debugCounts", Napi::Function::New(env, DebugCounts, "debugCounts"));
  return exports;
}

}  // namespace

NODE_API_MODULE(casspec, Init)
