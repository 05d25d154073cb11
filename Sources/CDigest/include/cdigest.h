#ifndef CDIGEST_H
#define CDIGEST_H
#include <stddef.h>
#include <stdint.h>

/// 1 when this CPU has the SHA extensions (and SSSE3, SSE4.1).
int cdigest_has_sha_extensions(void);

/// Compresses `blocks` 64-byte blocks into the SHA-256 `state` with the SHA
/// extensions; returns 0 (and does nothing) on a CPU without them.
int cdigest_sha256_blocks(uint32_t state[8], const uint8_t *data, size_t blocks);

/// SHA-256's 64 round constants (FIPS 180-4, 4.2.2).
const uint32_t *cdigest_sha256_round_constants(void);

#endif
