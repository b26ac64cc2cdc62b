/* The stamp that lets a reader tell a torn frame, shared by writer.c and
 * reader.c (and by examples/python/write.py and read.py): every byte of a
 * frame depends on its sequence number, so a frame partly overwritten by
 * another one, anywhere, fails the check.
 *
 *   - the first 8 bytes of each row hold the sequence number (native order);
 *   - every other byte keeps its picture in the upper 6 bits, and in its two
 *     low bits two bits of the number: byte i of a row holds bits
 *     2 * (i % 8) and 2 * (i % 8) + 1, so each 8 bytes carry its low 16 bits.
 *
 * The picture changes by at most 3 in 255: the test card stays as it was. */
#ifndef FRAME_STAMP_H
#define FRAME_STAMP_H

#include <stdint.h>
#include <string.h>

/* The low two bits of byte i (i % 8) of a row of frame seq. */
static inline void frame_stamp_bits(uint64_t seq, uint8_t bits[8]) {
  for (int i = 0; i < 8; i++) bits[i] = (uint8_t)(seq >> (2 * i) & 3);
}

/* Stamps a frame of `rows` rows of `row_bytes` (> 8) bytes. */
static inline void frame_stamp(uint8_t *img, uint64_t rows, uint64_t row_bytes, uint64_t seq) {
  uint8_t bits[8];
  frame_stamp_bits(seq, bits);
  for (uint64_t y = 0; y < rows; y++) {
    uint8_t *row = img + y * row_bytes;
    memcpy(row, &seq, sizeof seq);
    for (uint64_t i = 8; i < row_bytes; i++) row[i] = (uint8_t)((row[i] & ~3u) | bits[i % 8]);
  }
}

/* True if every byte of the frame carries frame seq's stamp. */
static inline int frame_intact(const uint8_t *img, uint64_t rows, uint64_t row_bytes,
                               uint64_t seq) {
  uint8_t bits[8];
  frame_stamp_bits(seq, bits);
  for (uint64_t y = 0; y < rows; y++) {
    const uint8_t *row = img + y * row_bytes;
    uint64_t stamp;
    memcpy(&stamp, row, sizeof stamp); /* rows are not 8-byte aligned */
    if (stamp != seq) return 0;
    unsigned diff = 0;
    for (uint64_t i = 8; i < row_bytes; i++) diff |= (row[i] ^ bits[i % 8]) & 3u;
    if (diff) return 0;
  }
  return 1;
}

/* The check's canary: a frame of which only the middle of a row comes from
 * the next frame must be reported torn, or the check itself is broken. */
static inline int frame_check_works(void) {
  enum { ROWS = 3, ROW_BYTES = 48 };
  uint8_t frame[ROWS * ROW_BYTES] = {0}, next[ROWS * ROW_BYTES] = {0};
  frame_stamp(frame, ROWS, ROW_BYTES, 41);
  frame_stamp(next, ROWS, ROW_BYTES, 42);
  if (!frame_intact(frame, ROWS, ROW_BYTES, 41)) return 0;
  memcpy(frame + ROW_BYTES + 20, next + ROW_BYTES + 20, 8);
  return !frame_intact(frame, ROWS, ROW_BYTES, 41);
}

#endif /* FRAME_STAMP_H */
