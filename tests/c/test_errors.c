/* Every library code has a distinct name and message; errno values pass
 * through, but for the two whose libc texts mislead here. */
#include "testutil.h"

static const int codes[] = {
#define CODE(name, value, text) SHL_E_##name,
    SHL_ERRNO_MAP(CODE)
#undef CODE
};

int main(void) {
  size_t n = sizeof codes / sizeof codes[0];
  for (size_t i = 0; i < n; i++) {
    T_CHECK(codes[i] < -4095); /* outside the errno range */
    T_CHECK(strncmp(shl_err_name(codes[i]), "SHL_E_", 6) == 0);
    T_CHECK(strlen(shl_strerror(codes[i])) > 10);
    for (size_t j = 0; j < i; j++) {
      T_CHECK(codes[i] != codes[j]);
      T_CHECK(strcmp(shl_strerror(codes[i]), shl_strerror(codes[j])) != 0);
      T_CHECK(strcmp(shl_err_name(codes[i]), shl_err_name(codes[j])) != 0);
    }
  }
  T_CHECK(strcmp(shl_err_name(-ENOENT), "ENOENT") == 0);
  T_CHECK(strcmp(shl_strerror(-ENOENT), strerror(ENOENT)) == 0);
  /* Not libc's, which speak of connections and devices. */
  T_CHECK(strcmp(shl_strerror(-ETIMEDOUT), "timed out") == 0);
  T_CHECK(strstr(shl_strerror(-EBUSY), "Device") == NULL);
  T_CHECK(strcmp(shl_err_name(0), "OK") == 0);
  T_CHECK(strcmp(shl_err_name(-99999), "UNKNOWN") == 0);
  T_CHECK(strcmp(shl_strerror(12345), "unknown error") == 0);
  T_CHECK(shl_version_number() ==
          SHL_VERSION_MAJOR * 10000u + SHL_VERSION_MINOR * 100u + SHL_VERSION_PATCH);
  T_CHECK(strcmp(shl_version_string(), SHL_VERSION_STRING) == 0);
  return t_result();
}
