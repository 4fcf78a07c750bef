// Why the MCU last reset, as MCUSR bits: 0x01 power-on, 0x02 external,
// 0x04 brown-out, 0x08 watchdog; 0 when unknown.
#pragma once
#include <stdint.h>

#define RESET_CAUSE_POWER_ON 0x01
#define RESET_CAUSE_EXTERNAL 0x02
#define RESET_CAUSE_BROWN_OUT 0x04
#define RESET_CAUSE_WATCHDOG 0x08

uint8_t reset_cause();
