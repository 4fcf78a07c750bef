import type { ComponentSettings } from '../config/config-schema.ts';
import { ButtonComponent } from './button-component.ts';
import type { DeviceComponent } from './device-component.ts';
import { LedComponent } from './led-component.ts';
import { RelayComponent } from './relay-component.ts';
import { SensorComponent } from './sensor-component.ts';

export function createComponent(settings: ComponentSettings): DeviceComponent {
  switch (settings.type) {
    case 'led':
      return new LedComponent(settings);
    case 'relay':
      return new RelayComponent(settings);
    case 'button':
      return new ButtonComponent(settings);
    case 'sensor':
      return new SensorComponent(settings);
  }
}
