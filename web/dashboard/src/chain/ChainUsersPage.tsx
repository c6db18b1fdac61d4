// #/chains/{id}/users (chain admin of the chain, platform admin) and #/users
// (platform admin: every user): staff users with their roles and branches;
// create, edit, deactivate and activate again.

import { useMemo, useState } from 'react';
import {
  Branch, Chain, NotFound, RouteProps, SessionUser, User, api, isNotFound, useActor, useLoad, useT,
} from './shell';
import { ChainHeader, Dialog, ErrorLine, Field, adminsChain, listAll, useChain, useSubmit } from './ui';
import { Role, UserForm, assignableRoles, userBody, validateUser } from './validate';


function toForm(u: User): UserForm {
  return { email: u.email, password: '', role: u.role, chainId: u.chain_id ?? '', branchIds: u.branch_ids.slice() };
}

function UserDialog({ actor, user, fixedChain, chains, onDone, onClose }: {
  actor: SessionUser; user: User | null; fixedChain: string | null; chains: Chain[];
  onDone: () => void; onClose: () => void;
}) {
  const t = useT();
  const roles = assignableRoles(actor.role);
  const before = user ? toForm(user) : undefined;
  const self = user?.id === actor.id;
  const [f, setF] = useState<UserForm>(before ?? {
    email: '', password: '', role: 'branch-manager', chainId: fixedChain ?? '', branchIds: [],
  });
  const branches = useLoad(() => f.chainId
    ? listAll<Branch>('/api/branches', { chain_id: f.chainId }) : Promise.resolve([] as Branch[]), [f.chainId]);
  // a user's own role is not the actor's to change, so not checked against it
  const { errs, busy, fail, submit } = useSubmit(() => validateUser(f, !user, self ? 'platform-admin' : actor.role),
    async () => {
      const body = userBody(f, before);
      if (user) {
        if (Object.keys(body).length) await api.put(`/api/users/${encodeURIComponent(user.id)}`, body);
      } else {
        await api.post('/api/users', body);
      }
    }, onDone);
  const setRole = (role: Role) => setF({
    ...f, role, chainId: role === 'platform-admin' ? '' : f.chainId || fixedChain || '',
    branchIds: role === 'branch-manager' ? f.branchIds : [],
  });
  return (
    <Dialog title={t(user ? 'chain.users.edit' : 'chain.users.create')} onClose={onClose} testId="user-form">
      <form onSubmit={submit} noValidate className="cwc-form-grid">
        <Field label={t('chain.f.email')} error={errs.email}>
          <input type="email" value={f.email} dir="ltr" autoComplete="off" data-testid="user-form-email"
                 onChange={(e) => setF({ ...f, email: e.target.value })} />
        </Field>
        <Field label={t(user ? 'chain.f.newPassword' : 'chain.f.password')} error={errs.password}
               hint={t(user ? 'chain.hint.keepPassword' : 'chain.hint.password')}>
          <input type="password" value={f.password} dir="ltr" autoComplete="new-password" data-testid="user-form-password"
                 onChange={(e) => setF({ ...f, password: e.target.value })} />
        </Field>
        <Field label={t('chain.f.role')} error={errs.role}>
          <select value={f.role} disabled={self} data-testid="user-form-role" onChange={(e) => setRole(e.target.value as Role)}>
            {(self ? [f.role] : roles).map((r) => <option key={r} value={r}>{t(`chain.role.${r}`)}</option>)}
          </select>
        </Field>
        {f.role !== 'platform-admin' ? (
          <Field label={t('chain.f.chain')} error={errs.chain}>
            <select value={f.chainId} disabled={!!fixedChain || self} data-testid="user-form-chain"
                    onChange={(e) => setF({ ...f, chainId: e.target.value, branchIds: [] })}>
              <option value="">—</option>
              {chains.map((c) => <option key={c.id} value={c.id}>{c.name}</option>)}
            </select>
          </Field>
        ) : null}
        {f.role === 'branch-manager' ? (
          <Field label={t('chain.f.branches')} error={errs.branches} hint={t('chain.hint.branches')}>
            <select multiple value={f.branchIds} data-testid="user-form-branches" size={Math.min(6, Math.max(3, branches.data?.length ?? 3))}
                    onChange={(e) => setF({ ...f, branchIds: Array.from(e.target.selectedOptions, (o) => o.value) })}>
              {(branches.data ?? []).map((b) => (
                <option key={b.id} value={b.id} label={`${b.code} — ${b.name}`}>{b.code} — {b.name}</option>))}
            </select>
          </Field>
        ) : null}
        {fail ? <p className="notice error cwc-span" role="alert" data-testid="user-form-error">{fail}</p> : null}
        <div className="cwc-actions cwc-span">
          <button type="submit" className="btn btn-primary" disabled={busy} data-testid="user-form-submit">{t('chain.save')}</button>
          <button type="button" className="btn" onClick={onClose}>{t('chain.cancel')}</button>
        </div>
      </form>
    </Dialog>
  );
}

// #/chains/{id}/users: the chain's users.
export function ChainUsersPage({ params }: RouteProps) {
  return <UsersList chainId={params.id} />;
}

// chainId: the chain's users; null: every user (platform admin).
export function UsersList({ chainId }: { chainId: string | null }) {
  const t = useT();
  const actor = useActor();
  const scoped = !!chainId;
  const chain = useChain(chainId ?? '');
  const [filter, setFilter] = useState('');
  const chainFilter = scoped ? (chainId as string) : filter;
  const users = useLoad(() => listAll<User>('/api/users', { chain_id: chainFilter }), [chainFilter]);
  const chains = useLoad(() => listAll<Chain>('/api/chains'), []);
  const allBranches = useLoad(() => listAll<Branch>('/api/branches', { chain_id: chainFilter }), [chainFilter]);
  const [dialog, setDialog] = useState<{ user: User | null } | null>(null);
  const [fail, setFail] = useState<unknown>(null);
  const codeOf = useMemo(() => new Map((allBranches.data ?? []).map((b) => [b.id, b.code])), [allBranches.data]);
  const chainName = useMemo(() => new Map((chains.data ?? []).map((c) => [c.id, c.name])), [chains.data]);

  if (!actor) return null;
  const allowed = scoped ? adminsChain(actor, chainId as string) : actor.role === 'platform-admin';
  if (!allowed || (scoped && isNotFound(chain.error)) || isNotFound(users.error)) return <NotFound />;

  const setActive = async (u: User, active: boolean) => {
    setFail(null);
    try {
      if (active) await api.put(`/api/users/${u.id}`, { active: true });
      else await api.del(`/api/users/${u.id}`);
      users.reload();
    } catch (e) {
      setFail(e);
    }
  };
  const list = (users.data ?? []).slice().sort((a, b) =>
    Number(b.active) - Number(a.active) || a.email.localeCompare(b.email));

  return (
    <section className="page cwc-page">
      {scoped ? (
        <ChainHeader chain={chain.data} chainId={chainId as string} tab="users" actor={actor} />
      ) : (
        <header className="cwc-head"><h1>{t('chain.users.allTitle')}</h1></header>
      )}
      <div className="cwc-toolbar">
        {scoped ? <h2>{t('chain.users.title')}</h2> : <span className="cwc-grow" />}
        {!scoped ? (
          <label className="cwc-field cwc-field-inline">
            <span className="cwc-label">{t('chain.f.chain')}</span>
            <select value={filter} onChange={(e) => setFilter(e.target.value)} data-testid="users-chain">
              <option value="">{t('chain.allChains')}</option>
              {(chains.data ?? []).map((c) => <option key={c.id} value={c.id}>{c.name}</option>)}
            </select>
          </label>
        ) : null}
        <button type="button" className="btn btn-primary" onClick={() => setDialog({ user: null })}
                data-testid="user-create">{t('chain.users.create')}</button>
      </div>
      <ErrorLine error={users.error ?? fail} />
      <div className="table-wrap">
        <table className="data" data-testid="users-table">
          <thead>
            <tr>
              <th>{t('chain.f.email')}</th><th>{t('chain.f.role')}</th>
              {!scoped ? <th>{t('chain.f.chain')}</th> : null}
              <th>{t('chain.f.branches')}</th><th>{t('chain.f.status')}</th>
              <th><span className="cwc-sr">{t('chain.actions')}</span></th>
            </tr>
          </thead>
          <tbody>
            {list.map((u) => (
              <tr key={u.id} data-testid={`user-row-${u.email}`} data-active={String(u.active)} className={u.active ? '' : 'cwc-row-off'}>
                <td dir="ltr" className="cwc-start">{u.email}{u.id === actor.id ? <span className="badge cwc-muted">{t('chain.users.you')}</span> : null}</td>
                <td>{t(`chain.role.${u.role}`)}</td>
                {!scoped ? <td>{u.chain_id ? chainName.get(u.chain_id) ?? '' : '—'}</td> : null}
                <td dir="ltr" className="cwc-start">{u.role === 'branch-manager'
                  ? u.branch_ids.map((id) => codeOf.get(id) ?? '?').sort().join(', ') || '—'
                  : t(u.role === 'platform-admin' ? 'chain.users.everyChain' : 'chain.users.everyBranch')}</td>
                <td>{u.active ? t('chain.active') : <span className="badge cwc-bad">{t('chain.inactive')}</span>}</td>
                <td><div className="cwc-row-actions">
                  <button type="button" className="btn" onClick={() => setDialog({ user: u })}
                          data-testid={`user-edit-${u.email}`}>{t('chain.edit')}</button>
                  {u.id !== actor.id ? (
                    <button type="button" className="btn" onClick={() => setActive(u, !u.active)}
                            data-testid={`user-${u.active ? 'deactivate' : 'activate'}-${u.email}`}>
                      {t(u.active ? 'chain.deactivate' : 'chain.activate')}
                    </button>
                  ) : null}
                </div></td>
              </tr>
            ))}
            {users.data && list.length === 0 ? (
              <tr><td colSpan={6} className="cwc-empty">{t('chain.users.none')}</td></tr>
            ) : null}
          </tbody>
        </table>
      </div>
      {dialog ? (
        <UserDialog actor={actor} user={dialog.user} fixedChain={scoped ? (chainId as string) : null}
                    chains={chains.data ?? []} onClose={() => setDialog(null)}
                    onDone={() => { setDialog(null); users.reload(); allBranches.reload(); }} />
      ) : null}
    </section>
  );
}
