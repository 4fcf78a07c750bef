// Settings kept in EEPROM: boot counter and keepalive configuration.
// A blank (0xFF) or foreign EEPROM yields factory defaults.
#pragma once
#include <stdint.h>

#define POLICY_STAY 0
#define POLICY_SLEEP 1
#define POLICY_RESET 2

struct DeviceConfig {
  uint16_t watchdog_ms;      // already rounded to a supported period, 0 = off
  uint8_t policy;
  uint32_t host_timeout_ms;  // 0 = the host is never considered lost
  uint32_t sleep_ms;
  uint32_t awake_ms;
};

extern DeviceConfig g_config;

// Loads the configuration, then increments and stores the boot id.
void device_config_begin();
uint32_t device_config_boot_id();
void device_config_store();  // persists g_config
