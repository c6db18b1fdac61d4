// #/users — every staff user (platform admin); the list of src/chain/ChainUsersPage.tsx
// without a chain, with a chain filter.
import type { RouteProps } from './shell';
import { UsersList } from './ChainUsersPage';

export function AllUsersPage(_props: RouteProps) {
  return <UsersList chainId={null} />;
}
