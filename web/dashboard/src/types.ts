// Shapes of the cloud API's JSON (docs/openapi.json), as the dashboard reads them.
// Fields added by issue 7 are optional so that an older server still works.
import type { Role } from './session';

export type CartStatus = 'available' | 'rented' | 'awaiting-return' | 'maintenance' | 'fault' | 'offline';
export type RentalStatus = 'active' | 'overdue' | 'returned' | 'returned-late' | 'cancelled';
export type CommandState = 'pending' | 'delivered' | 'succeeded' | 'failed' | 'expired';

export interface Chain {
  id: string;
  name: string;
  slug: string;
  active: boolean;
  created_at: string;
  updated_at: string;
}

export interface Branch {
  id: string;
  chain_id: string;
  code: string;
  name: string;
  address: string | null;
  city: string | null;
  latitude: number | null;
  longitude: number | null;
  active: boolean;
  created_at: string;
  updated_at: string;
}

export interface Cart {
  id: string;
  branch_id: string;
  device_id: string | null;
  controller_id: string | null;
  cart_number: number;
  locker_id: number;
  status: CartStatus;
  is_locked: boolean;
  last_used: string | null;
  maintenance_notes: string | null;
  updated_at: string | null;
  bus_index?: number | null;
  board?: number | null;
  board_online?: boolean | null;
}

export interface Rental {
  id: string;
  branch_id: string;
  cart_id: string;
  cart_number: number;
  device_id: string | null;
  phone: string;
  phone_masked?: boolean;
  status: RentalStatus;
  overdue: boolean;
  start_time: string;
  expected_return: string;
  actual_return: string | null;
  duration_minutes: number | null;
  clock_trusted: boolean;
  notes: string | null;
}

export interface Device {
  id: string;
  branch_id: string;
  chain_id?: string;
  device_name: string | null;
  mac_address: string;
  serial_number?: string | null;
  status: string;
  online?: boolean;
  last_heartbeat: string | null;
  firmware_version: string | null;
  health: Record<string, unknown> | null;
  created_at?: string;
}

export interface Command {
  id: string;
  device_id: string;
  branch_id: string;
  action: string;
  args: Record<string, unknown>;
  state: CommandState;
  created_at: string;
  expires_at: string;
  result: Record<string, unknown> | null;
}

export interface User {
  id: string;
  email: string;
  role: Role;
  chain_id: string | null;
  branch_ids: string[];
  active: boolean;
  created_at: string;
}

export interface DurationBucket {
  min_minutes: number;
  max_minutes: number | null;
  count: number;
}

export interface RentalStats {
  branch_id: string;
  from: string;
  to: string;
  counts: Record<RentalStatus | 'total', number>;
  open: number;
  average_duration_minutes: number | null;
  overdue_rate: number | null;
  per_day: { date: string; started: number; late: number; finished: number; average_duration_minutes: number | null }[];
  per_hour?: { hour: string; count: number }[];
  durations?: { buckets: DurationBucket[] };
  utilisation?: { carts: number; rented_seconds: number; range_seconds: number; ratio: number };
}

export interface FaultItem {
  cart_id: string;
  cart_number: number;
  lock_fault: number;
  lock_offline: number;
}

export interface Faults {
  from: string;
  to: string;
  items: FaultItem[];
}

export interface Me {
  user: { id: string; email: string; role: Role; chain_id: string | null; branch_ids: string[] };
  expires_at: string;
}
