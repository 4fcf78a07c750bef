// Hardware watchdog in reset mode, with a kick that can be suspended (policy
// `reset` with a lost host stops kicking so the MCU resets).
#pragma once
#include <stdint.h>

uint16_t watchdog_round_ms(uint16_t ms);  // to 15..8000 steps, 0 below 15
void watchdog_arm(uint16_t ms);           // ms must be rounded; 0 disables
void watchdog_kick();                     // no-op while suspended
void watchdog_set_suspended(bool suspended);
