#include "noinit_state.h"
#include <stddef.h>
#include <string.h>
#include "crc.h"

#define NOINIT_MAGIC 0x7E7A

NoinitState g_noinit __attribute__((section(".noinit")));

static uint16_t noinit_crc() { return crc16_block(&g_noinit, offsetof(NoinitState, crc)); }

bool noinit_valid() { return g_noinit.magic == NOINIT_MAGIC && g_noinit.crc == noinit_crc(); }

void noinit_clear() {
  memset(&g_noinit, 0, sizeof g_noinit);
  g_noinit.magic = NOINIT_MAGIC;
  noinit_commit();
}

void noinit_commit() { g_noinit.crc = noinit_crc(); }
