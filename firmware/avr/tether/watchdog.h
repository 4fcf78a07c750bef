// Hardware watchdog in reset mode, with a kick that can be suspended (policy
// `reset` with a lost host stops kicking so the MCU resets).
#pragma once
#include <stdint.h>

// The shortest period a host may set (PROTOCOL.md): longer than twice the longest pass of
// the main loop, which kicks it once per pass (see the bound in tether.ino).
#define WATCHDOG_MIN_MS 250

uint16_t watchdog_round_ms(uint16_t ms);  // to 15..8000 steps, 0 below 15
// A host's watchdog_ms is acceptable: 0 (off) or at least WATCHDOG_MIN_MS.
static inline bool watchdog_ms_allowed(uint16_t ms) { return ms == 0 || ms >= WATCHDOG_MIN_MS; }
void watchdog_arm(uint16_t ms);           // ms must be rounded; 0 disables
void watchdog_kick();                     // no-op while suspended
void watchdog_set_suspended(bool suspended);
