// What a cart tile shows (docs/DASHBOARD.md "Branch view"): the cart's status, except
//  * board-offline wins when its controller board is known offline (board_online false);
//  * a rented cart whose open rental is past its expected return is overdue — recomputed
//    on the client from expected_return (every 10 s) so the tile turns red on time
//    without waiting for the server.
import type { Cart, Rental } from './types';

export type TileStatus = 'available' | 'rented' | 'overdue' | 'awaiting-return' | 'maintenance' | 'fault' |
  'board-offline' | 'offline';

export const TILE_STATUSES: TileStatus[] = ['available', 'rented', 'overdue', 'awaiting-return', 'maintenance',
  'fault', 'board-offline', 'offline'];

/** An open rental (active or overdue) past its expected return at nowMs. */
export function isOverdue(r: Pick<Rental, 'status' | 'expected_return' | 'overdue'>, nowMs: number): boolean {
  if (r.status !== 'active' && r.status !== 'overdue') return false;
  if (r.status === 'overdue' || r.overdue) return true;
  const t = Date.parse(r.expected_return);
  return Number.isFinite(t) && t <= nowMs;
}

export function tileStatus(cart: Pick<Cart, 'status' | 'board_online'>, rental: Pick<Rental, 'status' | 'expected_return' | 'overdue'> | undefined,
  nowMs: number): TileStatus {
  if (cart.board_online === false) return 'board-offline';
  if (rental && isOverdue(rental, nowMs) && (cart.status === 'rented' || cart.status === 'awaiting-return')) {
    return 'overdue';
  }
  if ((TILE_STATUSES as string[]).includes(cart.status)) return cart.status as TileStatus;
  return 'offline';
}

/** Open rentals with the overdue ones first (most overdue first), then by expected return. */
export function sortActive<T extends Pick<Rental, 'status' | 'expected_return' | 'overdue' | 'id'>>(rs: T[], nowMs: number): T[] {
  return rs.slice().sort((a, b) => {
    const oa = isOverdue(a, nowMs) ? 0 : 1;
    const ob = isOverdue(b, nowMs) ? 0 : 1;
    if (oa !== ob) return oa - ob;
    const d = Date.parse(a.expected_return) - Date.parse(b.expected_return);
    return d !== 0 && Number.isFinite(d) ? d : a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
  });
}

/** Minutes past expected return (positive when late), rounded down. */
export function minutesLate(expectedReturn: string, nowMs: number): number {
  const t = Date.parse(expectedReturn);
  return Number.isFinite(t) ? Math.floor((nowMs - t) / 60000) : 0;
}

export interface BoardGroup {
  key: string;
  bus: number | null;
  board: number | null;
  /** false when board_online is false for its carts; null when unknown */
  online: boolean | null;
  carts: Cart[];
}

export interface DeviceGroup {
  /** the device id, or '' for carts without a device */
  deviceId: string;
  boards: BoardGroup[];
}

/** Groups carts by device → (bus, board), in cart-number order; unknown device last. */
export function groupCarts(carts: Cart[]): DeviceGroup[] {
  const devices = new Map<string, Map<string, BoardGroup>>();
  const sorted = carts.slice().sort((a, b) => a.cart_number - b.cart_number);
  for (const c of sorted) {
    const dk = c.device_id ?? '';
    let boards = devices.get(dk);
    if (!boards) {
      boards = new Map();
      devices.set(dk, boards);
    }
    const bus = c.bus_index ?? null;
    const board = c.board ?? null;
    const bk = `${bus ?? '-'}-${board ?? '-'}`;
    let g = boards.get(bk);
    if (!g) {
      g = { key: bk, bus, board, online: null, carts: [] };
      boards.set(bk, g);
    }
    g.carts.push(c);
    if (c.board_online === false) g.online = false;
    else if (c.board_online === true && g.online === null) g.online = true;
  }
  const out: DeviceGroup[] = [];
  for (const [deviceId, boards] of devices) {
    const bs = [...boards.values()].sort((a, b) =>
      (a.bus ?? 1e9) - (b.bus ?? 1e9) || (a.board ?? 1e9) - (b.board ?? 1e9));
    out.push({ deviceId, boards: bs });
  }
  out.sort((a, b) => (a.deviceId === '' ? 1 : 0) - (b.deviceId === '' ? 1 : 0) ||
    a.boards[0].carts[0].cart_number - b.boards[0].carts[0].cart_number);
  return out;
}

/** Count of carts per tile status. */
export function countStatuses(statuses: TileStatus[]): Record<TileStatus, number> {
  const out = Object.fromEntries(TILE_STATUSES.map((s) => [s, 0])) as Record<TileStatus, number>;
  for (const s of statuses) out[s]++;
  return out;
}
