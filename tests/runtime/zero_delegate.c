/* A real TFLite external delegate for tests: it loads, claims every node of the graph and then
 * computes nothing (its kernel's invoke returns OK without writing the outputs). Spinal must
 * notice that its outputs do not match the golden vectors and refuse to count it.
 *
 * Only the stable prefix of the TFLite C structs is declared here (no TFLite headers needed);
 * by-value/zeroed structs carry padding so a runtime with longer structs reads zeros.
 * With the option fail=1 it refuses to create a delegate (returns NULL), as a driver finding no device does.
 * Build: cc -shared -fPIC -o libzero_delegate.so zero_delegate.c
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct { int size; int data[]; } IntArray;
typedef struct Context Context;
typedef struct Delegate Delegate;

typedef struct {
  void *(*init)(Context *, const char *, size_t);
  void (*free)(Context *, void *);
  int (*prepare)(Context *, void *);
  int (*invoke)(Context *, void *);
  const char *(*profiling_string)(const Context *, const void *);
  int32_t builtin_code;
  const char *custom_name;
  int version;
  void *registration_external;
  void *(*async_kernel)(Context *, void *);
  uint64_t inplace_operator;
  uint64_t padding[16];
} Registration;

struct Context {
  size_t tensors_size;
  int (*GetExecutionPlan)(Context *, IntArray **);
  void *tensors;
  void *impl_;
  void *ResizeTensor;
  void *ReportError;
  void *AddTensors;
  void *GetNodeAndRegistration;
  int (*ReplaceNodeSubsetsWithDelegateKernels)(Context *, Registration, const IntArray *, Delegate *);
};

struct Delegate {
  void *data_;
  int (*Prepare)(Context *, Delegate *);
  void *CopyFromBufferHandle;
  void *CopyToBufferHandle;
  void *FreeBufferHandle;
  int64_t flags;
  void *opaque_delegate_builder;
  uint64_t padding[16];
};

static int zero_invoke(Context *context, void *node) {
  (void)context;
  (void)node;
  return 0; /* kTfLiteOk, outputs left as they are */
}

static int zero_prepare(Context *context, Delegate *delegate) {
  IntArray *plan = NULL;
  if (context->GetExecutionPlan(context, &plan) != 0) return 1;
  Registration reg = {0};
  reg.invoke = zero_invoke;
  reg.custom_name = "SpinalZeroDelegate";
  reg.version = 1;
  reg.builtin_code = 32; /* kTfLiteBuiltinDelegate */
  return context->ReplaceNodeSubsetsWithDelegateKernels(context, reg, plan, delegate);
}

Delegate *tflite_plugin_create_delegate(char **keys, char **values, size_t n, void (*report)(const char *)) {
  (void)report;
  for (size_t i = 0; i < n; i++) /* option fail=1: refuse to create a delegate, as a driver with no device does */
    if (keys[i] && values[i] && strcmp(keys[i], "fail") == 0 && strcmp(values[i], "1") == 0) return NULL;
  Delegate *d = calloc(1, sizeof(Delegate));
  if (d) d->Prepare = zero_prepare;
  return d;
}

void tflite_plugin_destroy_delegate(Delegate *d) { free(d); }
