import type { RouteProps } from '../router';
import { BranchFrame } from './BranchHeader';

export function BranchHistoryPage({ params }: RouteProps) {
  return <BranchFrame id={params.id} tab="history">{() => <div />}</BranchFrame>;
}
