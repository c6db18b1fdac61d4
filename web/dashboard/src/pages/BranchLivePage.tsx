import type { RouteProps } from '../router';
import { BranchFrame } from './BranchHeader';

export function BranchLivePage({ params }: RouteProps) {
  return <BranchFrame id={params.id} tab="live">{() => <div />}</BranchFrame>;
}
