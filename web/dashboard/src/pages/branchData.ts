// The live data of one branch (carts, open rentals, devices) and its refetch by kind,
// for the live view. Devices come from GET /api/devices?branch_id= (issue 7); on a server
// without that list, from GET /api/devices/{id} of each device its carts name.
import { useCallback, useEffect, useRef, useState } from 'react';
import { api, ApiError, getAll } from '../api';
import type { Kind } from '../sse';
import type { Cart, Device, Rental } from '../types';

export interface BranchData {
  carts: Cart[] | undefined;
  rentals: Rental[] | undefined;
  devices: Map<string, Device>;
  error: unknown;
  updatedAt: Date | null;
  /** bumped when commands changed (the cart panel re-polls its command) */
  commandsTick: number;
  refetch: (kinds: Kind[]) => Promise<void>;
}

let deviceListMissing = false;

async function loadDevices(branchId: string, carts: Cart[] | undefined): Promise<Map<string, Device>> {
  const out = new Map<string, Device>();
  if (!deviceListMissing) {
    try {
      const r = await getAll<Device>('/api/devices', { branch_id: branchId }, 1000);
      for (const d of r.items) out.set(d.id, d);
      return out;
    } catch (e) {
      if (!(e instanceof ApiError && (e.status === 404 || e.status === 400))) throw e;
      deviceListMissing = true; // an older server: one by one below
    }
  }
  const ids = [...new Set((carts ?? []).map((c) => c.device_id).filter((x): x is string => !!x))];
  const ds = await Promise.all(ids.map((id) => api.get<Device>('/api/devices/' + encodeURIComponent(id))
    .catch(() => null)));
  for (const d of ds) if (d) out.set(d.id, d);
  return out;
}

export function useBranchData(branchId: string): BranchData {
  const [carts, setCarts] = useState<Cart[]>();
  const [rentals, setRentals] = useState<Rental[]>();
  const [devices, setDevices] = useState<Map<string, Device>>(new Map());
  const [error, setError] = useState<unknown>(null);
  const [updatedAt, setUpdatedAt] = useState<Date | null>(null);
  const [commandsTick, setCommandsTick] = useState(0);
  const cartsRef = useRef<Cart[]>();
  const alive = useRef(true);
  useEffect(() => {
    alive.current = true;
    return () => {
      alive.current = false;
    };
  }, []);

  const refetch = useCallback(async (kinds: Kind[]) => {
    const base = '/api/branches/' + encodeURIComponent(branchId);
    const want = new Set(kinds);
    if (want.has('rentals')) want.add('carts');
    if (want.has('telemetry')) want.add('devices');
    const jobs: Promise<void>[] = [];
    if (want.has('carts')) {
      jobs.push(getAll<Cart>(base + '/carts').then((r) => {
        cartsRef.current = r.items;
        if (alive.current) setCarts(r.items);
      }));
    }
    if (want.has('rentals')) {
      jobs.push(getAll<Rental>(base + '/rentals/active').then((r) => {
        if (alive.current) setRentals(r.items);
      }));
    }
    try {
      await Promise.all(jobs);
      if (want.has('devices')) {
        const d = await loadDevices(branchId, cartsRef.current);
        if (alive.current) setDevices(d);
      }
      if (want.has('commands') && alive.current) setCommandsTick((n) => n + 1);
      if (alive.current) {
        setError(null);
        setUpdatedAt(new Date());
      }
    } catch (e) {
      if (alive.current) setError(e);
      throw e;
    }
  }, [branchId]);

  return { carts, rentals, devices, error, updatedAt, commandsTick, refetch };
}
