// #/chains/{id} — the chain's branches (create, edit, deactivate) and their
// enrollment codes (create: shown once with a copy button; list; revoke).

import { FormEvent, useState } from 'react';
import { Branch, NotFound, RouteProps, api, isNotFound, useActor, useLoad, useT } from './shell';
import { ChainHeader, Dialog, ErrorLine, Field, adminsChain, listAll, useChain, useFmtTime, useSubmit } from './ui';
import {
  BranchForm, Errors, branchBody, branchToForm, emptyBranchForm, enrollBody, validateBranch, validateEnroll,
} from './validate';

function BranchDialog({ chainId, branch, onDone, onClose }: {
  chainId: string; branch: Branch | null; onDone: () => void; onClose: () => void;
}) {
  const t = useT();
  const before = branch ? branchToForm(branch) : undefined;
  const [f, setF] = useState<BranchForm>(before ?? emptyBranchForm);
  const { errs, busy, fail, submit } = useSubmit(() => validateBranch(f), async () => {
    const body = branchBody(f, before);
    if (branch) {
      if (Object.keys(body).length) await api.put(`/api/branches/${encodeURIComponent(branch.id)}`, body);
    } else {
      await api.post('/api/branches', { chain_id: chainId, ...body });
    }
  }, onDone);
  const input = (k: keyof BranchForm, testId?: string, ltr = false) => (
    <input value={f[k]} dir={ltr ? 'ltr' : undefined} data-testid={testId}
           inputMode={k === 'latitude' || k === 'longitude' ? 'decimal' : undefined}
           onChange={(e) => setF({ ...f, [k]: e.target.value })} />
  );
  return (
    <Dialog title={t(branch ? 'chain.branches.edit' : 'chain.branches.create')} onClose={onClose} testId="branch-form">
      <form onSubmit={submit} noValidate className="cwc-form-grid">
        <Field label={t('chain.f.code')} error={errs.code} hint={t('chain.hint.code')}>{input('code', 'branch-form-code', true)}</Field>
        <Field label={t('chain.f.name')} error={errs.name}>{input('name', 'branch-form-name')}</Field>
        <Field label={t('chain.f.address')} error={errs.address}>{input('address', 'branch-form-address')}</Field>
        <Field label={t('chain.f.city')} error={errs.city}>{input('city', 'branch-form-city')}</Field>
        <Field label={t('chain.f.latitude')} error={errs.latitude}>{input('latitude', 'branch-form-latitude', true)}</Field>
        <Field label={t('chain.f.longitude')} error={errs.longitude}>{input('longitude', 'branch-form-longitude', true)}</Field>
        {fail ? <p className="notice error cwc-span" role="alert" data-testid="branch-form-error">{fail}</p> : null}
        <div className="cwc-actions cwc-span">
          <button type="submit" className="btn btn-primary" disabled={busy} data-testid="branch-form-submit">
            {t('chain.save')}
          </button>
          <button type="button" className="btn" onClick={onClose}>{t('chain.cancel')}</button>
        </div>
      </form>
    </Dialog>
  );
}

interface NewCode {
  id: string;
  branch_id: string;
  branch_code: string;
  code: string;
  uses: number;
  expires_at: string;
}

interface CodeRow {
  id: string;
  branch_id: string;
  created_at: string;
  expires_at: string;
  uses_left: number;
  created_by: string | null;
  active: boolean;
}

// The new code, shown once: the server keeps only its hash.
function NewCodeDialog({ code, onClose }: { code: NewCode; onClose: () => void }) {
  const t = useT();
  const fmtTime = useFmtTime();
  const [copied, setCopied] = useState<'yes' | 'no' | null>(null);
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(code.code);
      setCopied('yes');
    } catch {
      // no clipboard (plain http, refused): select the text for a manual copy
      const el = document.querySelector('[data-testid="enroll-code"]');
      if (el) window.getSelection()?.selectAllChildren(el);
      setCopied('no');
    }
  };
  return (
    <Dialog title={t('chain.enroll.newTitle', { code: code.branch_code })} onClose={onClose} testId="enroll-dialog">
      <p>{t('chain.enroll.once')}</p>
      <div className="cwc-code-box">
        <code dir="ltr" data-testid="enroll-code">{code.code}</code>
        <button type="button" className="btn btn-primary" onClick={copy} data-testid="enroll-copy">
          {t('chain.enroll.copy')}
        </button>
      </div>
      {copied ? <p role="status" className={copied === 'yes' ? 'cwc-ok-text' : 'cwc-warn-text'}>
        {t(copied === 'yes' ? 'chain.enroll.copied' : 'chain.enroll.copyManual')}</p> : null}
      <p className="cwc-hint">{t('chain.enroll.details', { uses: code.uses, expires: fmtTime(code.expires_at) })}</p>
      <p className="cwc-hint">{t('chain.enroll.howto', { branch: code.branch_code })}</p>
      <code className="cwc-cmd" dir="ltr">cartwisectl enroll --code {code.code}</code>
      <div className="cwc-actions">
        <button type="button" className="btn" onClick={onClose} data-testid="enroll-done">{t('chain.done')}</button>
      </div>
    </Dialog>
  );
}

// A branch's codes: the list (never the codes themselves), revoke, and a
// new code with chosen uses and lifetime.
function CodesDialog({ branch, onNew, onClose }: { branch: Branch; onNew: (c: NewCode) => void; onClose: () => void }) {
  const t = useT();
  const fmtTime = useFmtTime();
  // every page (a list in creation order); usable ones first, newest first
  const codes = useLoad(() => listAll<CodeRow>(`/api/branches/${encodeURIComponent(branch.id)}/enrollment-codes`)
    .then((items) => items.sort((x, y) => Number(y.active) - Number(x.active) || y.created_at.localeCompare(x.created_at))),
  [branch.id]);
  const [uses, setUses] = useState('1');
  const [hours, setHours] = useState('24');
  const [errs, setErrs] = useState<Errors>({});
  const [fail, setFail] = useState<unknown>(null);
  const create = async (e: FormEvent) => {
    e.preventDefault();
    const v = validateEnroll(uses, hours);
    setErrs(v);
    if (Object.keys(v).length) return;
    setFail(null);
    try {
      onNew(await api.post<NewCode>(`/api/branches/${branch.id}/enrollment-codes`, enrollBody(uses, hours)));
    } catch (err) {
      setFail(err);
    }
  };
  const revoke = async (c: CodeRow) => {
    setFail(null);
    try {
      await api.del(`/api/enrollment-codes/${c.id}`);
      codes.reload();
    } catch (err) {
      setFail(err);
    }
  };
  return (
    <Dialog title={t('chain.enroll.listTitle', { code: branch.code })} onClose={onClose} testId="enroll-list">
      <ErrorLine error={codes.error ?? fail} />
      <div className="table-wrap">
        <table className="data" data-testid="enroll-table">
          <thead><tr>
            <th>{t('chain.enroll.created')}</th><th>{t('chain.enroll.expires')}</th>
            <th>{t('chain.enroll.usesLeft')}</th><th>{t('chain.f.status')}</th>
            <th><span className="cwc-sr">{t('chain.actions')}</span></th>
          </tr></thead>
          <tbody>
            {(codes.data ?? []).map((c) => (
              <tr key={c.id} data-testid={`enroll-row-${c.id}`} data-active={String(c.active)} className={c.active ? '' : 'cwc-row-off'}>
                <td>{fmtTime(c.created_at)}</td>
                <td>{fmtTime(c.expires_at)}</td>
                <td>{c.uses_left}</td>
                <td>{c.active ? t('chain.enroll.usable') : t('chain.enroll.spent')}</td>
                <td>{c.active ? (
                  <button type="button" className="btn" onClick={() => revoke(c)} data-testid={`enroll-revoke-${c.id}`}>
                    {t('chain.enroll.revoke')}
                  </button>) : null}</td>
              </tr>
            ))}
            {codes.data && codes.data.length === 0 ? (
              <tr><td colSpan={5} className="cwc-empty">{t('chain.enroll.none')}</td></tr>) : null}
          </tbody>
        </table>
      </div>
      <form onSubmit={create} noValidate className="cwc-inline-form">
        <Field label={t('chain.enroll.uses')} error={errs.uses}>
          <input value={uses} inputMode="numeric" dir="ltr" data-testid="enroll-form-uses" onChange={(e) => setUses(e.target.value)} />
        </Field>
        <Field label={t('chain.enroll.hours')} error={errs.hours}>
          <input value={hours} inputMode="decimal" dir="ltr" data-testid="enroll-form-hours" onChange={(e) => setHours(e.target.value)} />
        </Field>
        <button type="submit" className="btn btn-primary" data-testid="enroll-form-submit">{t('chain.enroll.create')}</button>
      </form>
    </Dialog>
  );
}

export function ChainPage({ params }: RouteProps) {
  const chainId = params.id;
  const t = useT();
  const actor = useActor();
  const admin = adminsChain(actor, chainId);
  const chain = useChain(chainId);
  const branches = useLoad(() => listAll<Branch>('/api/branches', { chain_id: chainId }), [chainId]);
  const [edit, setEdit] = useState<{ branch: Branch | null } | null>(null);
  const [codesOf, setCodesOf] = useState<Branch | null>(null);
  const [newCode, setNewCode] = useState<NewCode | null>(null);
  const [fail, setFail] = useState<unknown>(null);
  const [busy, setBusy] = useState<string | null>(null);

  if (isNotFound(chain.error)) return <NotFound />;

  // reversible (activate again), so no confirmation step
  const setActive = async (b: Branch, active: boolean) => {
    setFail(null);
    setBusy(b.id);
    try {
      await api.put(`/api/branches/${b.id}`, { active });
      branches.reload();
    } catch (e) {
      setFail(e);
    } finally {
      setBusy(null);
    }
  };
  const quickCode = async (b: Branch) => {
    setFail(null);
    setBusy(b.id);
    try {
      setNewCode(await api.post<NewCode>(`/api/branches/${b.id}/enrollment-codes`, {}));
    } catch (e) {
      setFail(e);
    } finally {
      setBusy(null);
    }
  };
  const list = (branches.data ?? []).slice().sort((a, b) =>
    Number(b.active) - Number(a.active) || a.code.localeCompare(b.code));

  return (
    <section className="page cwc-page">
      <ChainHeader chain={chain.data} chainId={chainId} tab="branches" actor={actor} />
      <div className="cwc-toolbar">
        <h2>{t('chain.branches.title')}</h2>
        {admin ? (
          <button type="button" className="btn btn-primary" onClick={() => setEdit({ branch: null })}
                  data-testid="branch-create">{t('chain.branches.create')}</button>
        ) : null}
      </div>
      <ErrorLine error={chain.error ?? branches.error ?? fail} testId="chain-error" />
      <div className="table-wrap">
        <table className="data" data-testid="branches-table">
          <thead>
            <tr>
              <th>{t('chain.f.code')}</th><th>{t('chain.f.name')}</th><th>{t('chain.f.city')}</th>
              <th>{t('chain.f.status')}</th><th><span className="cwc-sr">{t('chain.actions')}</span></th>
            </tr>
          </thead>
          <tbody>
            {list.map((b) => (
              <tr key={b.id} data-testid={`branch-row-${b.code}`} data-active={String(b.active)}
                  className={b.active ? '' : 'cwc-row-off'}>
                <td dir="ltr" className="cwc-mono">{b.code}</td>
                <td><a className="cwc-touch" href={`#/branches/${encodeURIComponent(b.id)}`} data-testid={`branch-open-${b.code}`}>{b.name}</a>{b.address ? <div className="cwc-sub">{b.address}</div> : null}</td>
                <td>{b.city ?? ''}</td>
                <td>{b.active ? t('chain.active') : <span className="badge cwc-bad">{t('chain.inactive')}</span>}</td>
                <td><div className="cwc-row-actions">
                  {admin ? (
                    <>
                      <button type="button" className="btn" onClick={() => setEdit({ branch: b })}
                              data-testid={`branch-edit-${b.code}`}>{t('chain.edit')}</button>
                      <button type="button" className="btn" disabled={busy === b.id}
                              onClick={() => setActive(b, !b.active)}
                              data-testid={`branch-${b.active ? 'deactivate' : 'activate'}-${b.code}`}>
                        {t(b.active ? 'chain.deactivate' : 'chain.activate')}
                      </button>
                      <button type="button" className="btn" disabled={busy === b.id || !b.active}
                              onClick={() => quickCode(b)} data-testid={`enroll-create-${b.code}`}>
                        {t('chain.enroll.quick')}
                      </button>
                      <button type="button" className="btn" onClick={() => setCodesOf(b)}
                              data-testid={`enroll-list-${b.code}`}>{t('chain.enroll.list')}</button>
                    </>
                  ) : null}
                </div></td>
              </tr>
            ))}
            {branches.data && branches.data.length === 0 ? (
              <tr><td colSpan={5} className="cwc-empty">{t('chain.branches.none')}</td></tr>
            ) : null}
          </tbody>
        </table>
      </div>
      {edit ? (
        <BranchDialog chainId={chainId} branch={edit.branch} onClose={() => setEdit(null)}
                      onDone={() => { setEdit(null); branches.reload(); }} />
      ) : null}
      {codesOf && !newCode ? (
        <CodesDialog branch={codesOf} onClose={() => setCodesOf(null)} onNew={(c) => setNewCode(c)} />
      ) : null}
      {newCode ? <NewCodeDialog code={newCode} onClose={() => setNewCode(null)} /> : null}
    </section>
  );
}
