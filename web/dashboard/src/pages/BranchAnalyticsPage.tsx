import type { RouteProps } from '../router';
import { BranchFrame } from './BranchHeader';

export function BranchAnalyticsPage({ params }: RouteProps) {
  return <BranchFrame id={params.id} tab="analytics">{() => <div />}</BranchFrame>;
}
