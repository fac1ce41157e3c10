/* A test double of an ONNX Runtime library older than this build takes: it exports
 * OrtGetApiBase, whose version string is 1.16.3 and whose GetApi has no API to give (as a
 * 1.16 library answers a request for API 17). The `ort` crate reads the version first and
 * refuses the library, so GetApi is never reached. PyPI's 1.16 wheels ship no
 * libonnxruntime.so of their own to test with (tests/onnxruntime_versions.rs). */
#include <stddef.h>

typedef struct OrtApiBase {
  const void *(*GetApi)(unsigned version);
  const char *(*GetVersionString)(void);
} OrtApiBase;

static const void *get_api(unsigned version) {
  (void)version;
  return NULL;
}

static const char *version_string(void) { return "1.16.3"; }

static const OrtApiBase base = {get_api, version_string};

const OrtApiBase *OrtGetApiBase(void) { return &base; }
