// N-API surface: two classes (NativeModel, NativeContext) and two functions. Everything that does
// model work runs on the libuv thread pool and resolves a Promise; arguments are validated here
// (types) and in the engine (values) before any native state changes.
#include <napi.h>

#include <atomic>
#include <cstring>
#include <functional>
#include <memory>
#include <new>

#include "../engine/context.h"
#include "../engine/errors.h"
#include "../engine/model.h"

using namespace casspec;

namespace {

Napi::Error toJsError(Napi::Env env, const std::string& code, const std::string& msg) {
  Napi::Error e = Napi::Error::New(env, msg);
  e.Set("code", Napi::String::New(env, code));
  return e;
}

// Runs `work` on the thread pool; converts native exceptions to rejected Promises with a code.
class Task : public Napi::AsyncWorker {
 public:
  using Work = std::function<void()>;
  using Done = std::function<Napi::Value(Napi::Env)>;
  Task(Napi::Env env, Work w, Done d, std::function<void()> finally = nullptr)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), work_(std::move(w)), done_(std::move(d)),
        finally_(std::move(finally)) {}
  Napi::Promise promise() { return deferred_.Promise(); }
  void Execute() override {
    try {
      work_();
    } catch (const Error& e) {
      code_ = e.code;
      SetError(e.what());
    } catch (const std::bad_alloc&) {
      code_ = "E_OOM";
      SetError("out of host memory");
    } catch (const std::exception& e) {
      code_ = "E_INTERNAL";
      SetError(e.what());
    }
  }
  void OnOK() override {
    if (finally_) finally_();
    Napi::Env env = Env();
    try {
      deferred_.Resolve(done_ ? done_(env) : env.Undefined());
    } catch (const Napi::Error& e) {
      deferred_.Reject(e.Value());
    }
  }
  void OnError(const Napi::Error& e) override {
    if (finally_) finally_();
    deferred_.Reject(toJsError(Env(), code_, e.Message()).Value());
  }

 private:
  Napi::Promise::Deferred deferred_;
  Work work_;
  Done done_;
  std::function<void()> finally_;
  std::string code_ = "E_INTERNAL";
};

[[noreturn]] void throwJs(Napi::Env env, const std::string& code, const std::string& msg) {
  throw toJsError(env, code, msg);
}

// Run engine code synchronously, turning native exceptions into JS exceptions.
template <class F>
auto guard(Napi::Env env, F f) -> decltype(f()) {
  try {
    return f();
  } catch (const Error& e) {
    throwJs(env, e.code, e.what());
  } catch (const std::bad_alloc&) {
    throwJs(env, "E_OOM", "out of host memory");
  } catch (const std::exception& e) {
    throwJs(env, "E_INTERNAL", e.what());
  }
}

int intField(Napi::Object o, const char* key, bool required, int def = 0) {
  Napi::Env env = o.Env();
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) {
    if (required) throwJs(env, "E_INVALID_ARG", std::string("missing integer field '") + key + "'");
    return def;
  }
  if (!v.IsNumber()) throwJs(env, "E_INVALID_ARG", std::string("field '") + key + "' must be a number");
  double d = v.As<Napi::Number>().DoubleValue();
  if (!(d == (double)(int64_t)d) || d < -2147483648.0 || d > 2147483647.0)
    throwJs(env, "E_INVALID_ARG", std::string("field '") + key + "' must be a 32-bit integer");
  return (int)d;
}

double numField(Napi::Object o, const char* key, double def) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return def;
  if (!v.IsNumber()) throwJs(o.Env(), "E_INVALID_ARG", std::string("field '") + key + "' must be a number");
  return v.As<Napi::Number>().DoubleValue();
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

template <class T, napi_typedarray_type kind>
std::vector<T> typedArray(Napi::Object o, const char* key, bool required) {
  Napi::Env env = o.Env();
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) {
    if (required) throwJs(env, "E_INVALID_ARG", std::string("missing field '") + key + "'");
    return {};
  }
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != kind)
    throwJs(env, "E_INVALID_ARG",
            std::string("field '") + key + "' must be a " + (kind == napi_int32_array ? "Int32Array" : "Uint8Array"));
  Napi::TypedArray a = v.As<Napi::TypedArray>();
  const uint8_t* base = static_cast<const uint8_t*>(a.ArrayBuffer().Data()) + a.ByteOffset();
  std::vector<T> out(a.ElementLength());
  if (!out.empty()) std::memcpy(out.data(), base, out.size() * sizeof(T));
  return out;
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

// ---------------------------------------------------------------------------------------------

class NativeContext : public Napi::ObjectWrap<NativeContext> {
 public:
  static Napi::FunctionReference ctor;
  static void Init(Napi::Env env) {
    Napi::Function f = DefineClass(env, "NativeContext",
                                   {InstanceMethod("forward", &NativeContext::Forward), InstanceMethod("commit", &NativeContext::Commit),
                                    InstanceMethod("truncate", &NativeContext::Truncate),
                                    InstanceMethod("dispose", &NativeContext::Dispose),
                                    InstanceAccessor("committed", &NativeContext::Committed, nullptr),
                                    InstanceAccessor("capacity", &NativeContext::Capacity, nullptr)});
    ctor = Napi::Persistent(f);
  }
  NativeContext(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NativeContext>(info) {}
  void attach(std::shared_ptr<Context> c) { ctx_ = std::move(c); }

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
    auto* t = new Task(
        env,
        [ctx, f] {
          std::lock_guard<std::mutex> lock(ctx->model().computeMutex());
          f(*ctx);
        },
        std::move(done), [busy] { busy->store(false); });
    Napi::Promise p = t->promise();
    t->Queue();
    return p;
  }

  Napi::Value Forward(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Object o = requireObject(info, 0, "forward options");
    auto args = std::make_shared<ForwardArgs>();
    args->tokens = typedArray<int32_t, napi_int32_array>(o, "tokens", true);
    args->slots = typedArray<int32_t, napi_int32_array>(o, "slots", true);
    args->parents = typedArray<int32_t, napi_int32_array>(o, "parents", true);
    args->skip = typedArray<uint8_t, napi_uint8_array>(o, "skip", false);
    args->outRows = typedArray<int32_t, napi_int32_array>(o, "outRows", false);
    args->quant = intField(o, "quant", false, 0);
    args->wantLogits = boolField(o, "wantLogits", false);
    args->topk = intField(o, "topk", false, 0);
    auto res = std::make_shared<ForwardResult>();
    return run(
        env, [args, res](Context& c) { c.forward(*args, *res); },
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
    if (info.Length() < 1 || !info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_int32_array)
      throwJs(env, "E_INVALID_ARG", "commit(path) needs an Int32Array of slots");
    Napi::Int32Array a = info[0].As<Napi::Int32Array>();
    auto path = std::make_shared<std::vector<int32_t>>(a.Data(), a.Data() + a.ElementLength());
    return run(env, [path](Context& c) { c.commit(*path); }, nullptr);
  }

  Napi::Value Truncate(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsNumber()) throwJs(env, "E_INVALID_ARG", "truncate(n) needs a number");
    double d = info[0].As<Napi::Number>().DoubleValue();
    if (d != (double)(int)d) throwJs(env, "E_INVALID_ARG", "truncate(n) needs an integer");
    int n = (int)d;
    return run(env, [n](Context& c) { c.truncate(n); }, nullptr);
  }

  Napi::Value Dispose(const Napi::CallbackInfo& info) {
    ctx_.reset();  // in-flight work holds its own reference; memory goes when it finishes
    return info.Env().Undefined();
  }
  Napi::Value Committed(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), ctx_ ? ctx_->committed() : 0);
  }
  Napi::Value Capacity(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), ctx_ ? ctx_->capacity() : 0);
  }

  std::shared_ptr<Context> ctx_;
  std::shared_ptr<std::atomic<bool>> busy_ = std::make_shared<std::atomic<bool>>(false);
};
Napi::FunctionReference NativeContext::ctor;

// ---------------------------------------------------------------------------------------------

class NativeModel : public Napi::ObjectWrap<NativeModel> {
 public:
  static Napi::FunctionReference ctor;
  static void Init(Napi::Env env) {
    Napi::Function f = DefineClass(env, "NativeModel",
                                   {InstanceMethod("tensorSpecs", &NativeModel::TensorSpecs),
                                    InstanceMethod("setTensor", &NativeModel::SetTensor),
                                    InstanceMethod("fillDummy", &NativeModel::FillDummy),
                                    InstanceMethod("createContext", &NativeModel::CreateContext),
                                    InstanceMethod("info", &NativeModel::Info), InstanceMethod("dispose", &NativeModel::Dispose)});
    ctor = Napi::Persistent(f);
  }
  NativeModel(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NativeModel>(info) {}
  void attach(std::shared_ptr<Model> m) { model_ = std::move(m); }

 private:
  std::shared_ptr<Model> live(Napi::Env env) {
    if (!model_) throwJs(env, "E_DISPOSED", "this model was disposed");
    return model_;
  }

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
  Napi::Value SetTensor(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto m = live(env);
    if (info.Length() < 4 || !info[0].IsString() || !info[1].IsString() || !info[2].IsArray() || !info[3].IsTypedArray())
      throwJs(env, "E_INVALID_ARG", "setTensor(name: string, dtype: string, shape: number[], data: Uint8Array)");
    std::string name = info[0].As<Napi::String>().Utf8Value();
    DType dt = guard(env, [&] { return parseDType(info[1].As<Napi::String>().Utf8Value()); });
    Napi::Array sa = info[2].As<Napi::Array>();
    std::vector<int64_t> shape;
    for (uint32_t i = 0; i < sa.Length(); ++i) {
      Napi::Value v = sa.Get(i);
      if (!v.IsNumber()) throwJs(env, "E_INVALID_ARG", "tensor shape must be an array of numbers");
      double d = v.As<Napi::Number>().DoubleValue();
      if (d < 0 || d != (double)(int64_t)d || d > 9.0e15) throwJs(env, "E_INVALID_ARG", "tensor shape entries must be non-negative integers");
      shape.push_back((int64_t)d);
    }
    Napi::TypedArray ta = info[3].As<Napi::TypedArray>();
    if (ta.TypedArrayType() != napi_uint8_array) throwJs(env, "E_INVALID_ARG", "tensor data must be a Uint8Array");
    const uint8_t* data = static_cast<const uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset();
    size_t bytes = ta.ByteLength();
    // Keep the JS buffer alive until the worker is done with it.
    auto keep = std::make_shared<Napi::Reference<Napi::Value>>(Napi::Persistent(info[3]));
    auto* t = new Task(
        env,
        [m, name, dt, shape, data, bytes] {
          std::lock_guard<std::mutex> lock(m->computeMutex());
          m->setTensor(name, dt, shape, data, bytes);
        },
        nullptr, [keep] { keep->Reset(); });
    Napi::Promise p = t->promise();
    t->Queue();
    return p;
  }

  Napi::Value FillDummy(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto m = live(env);
    if (info.Length() < 1 || !info[0].IsNumber()) throwJs(env, "E_INVALID_ARG", "fillDummy(seed: number)");
    uint64_t seed = (uint64_t)info[0].As<Napi::Number>().Int64Value();
    auto* t = new Task(env, [m, seed] {
      std::lock_guard<std::mutex> lock(m->computeMutex());
      m->fillDummy(seed);
    }, nullptr);
    Napi::Promise p = t->promise();
    t->Queue();
    return p;
  }

  // createContext(capacity) -> Promise<NativeContext> (allocates the KV cache off the main thread)
  Napi::Value CreateContext(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto m = live(env);
    if (info.Length() < 1 || !info[0].IsNumber()) throwJs(env, "E_INVALID_ARG", "createContext(capacity: number)");
    double d = info[0].As<Napi::Number>().DoubleValue();
    if (d != (double)(int)d) throwJs(env, "E_INVALID_ARG", "context capacity must be an integer");
    int cap = (int)d;
    auto holder = std::make_shared<std::shared_ptr<Context>>();
    auto* t = new Task(
        env,
        [m, cap, holder] {
          std::lock_guard<std::mutex> lock(m->computeMutex());
          *holder = std::make_shared<Context>(m, cap);
        },
        [holder](Napi::Env env) -> Napi::Value {
          Napi::Object o = NativeContext::ctor.New({});
          NativeContext::Unwrap(o)->attach(*holder);
          return o;
        });
    Napi::Promise p = t->promise();
    t->Queue();
    return p;
  }

  Napi::Value Info(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto m = live(env);
    Napi::Object o = Napi::Object::New(env);
    o.Set("backend", m->backend().name());
    o.Set("device", m->backend().deviceInfo());
    o.Set("weightBytes", Napi::Number::New(env, (double)m->backend().weightBytes()));
    o.Set("kvBytesPerSlot", Napi::Number::New(env, (double)m->backend().kvBytesPerSlot()));
    return o;
  }

  Napi::Value Dispose(const Napi::CallbackInfo& info) {
    model_.reset();
    return info.Env().Undefined();
  }

  std::shared_ptr<Model> model_;
};
Napi::FunctionReference NativeModel::ctor;

// createModel(config, options) -> NativeModel (weights still to be set or filled)
Napi::Value CreateModel(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object c = requireObject(info, 0, "model config");
  Napi::Object o = info.Length() > 1 && info[1].IsObject() ? info[1].As<Napi::Object>() : Napi::Object::New(env);
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
  auto model = guard(env, [&] { return std::make_shared<Model>(cfg, bo); });
  Napi::Object obj = NativeModel::ctor.New({});
  NativeModel::Unwrap(obj)->attach(model);
  return obj;
}

// cudaStatus() -> { usable: boolean, reason: string }
Napi::Value CudaStatus(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string why;
  bool ok = cudaUsable(why);
  Napi::Object o = Napi::Object::New(env);
  o.Set("usable", Napi::Boolean::New(env, ok));
  o.Set("reason", why);
  return o;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  NativeModel::Init(env);
  NativeContext::Init(env);
  exports.Set("createModel", Napi::Function::New(env, CreateModel));
  exports.Set("cudaStatus", Napi::Function::New(env, CudaStatus));
  return exports;
}

}  // namespace

NODE_API_MODULE(casspec, Init)
