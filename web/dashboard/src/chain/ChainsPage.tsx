// #/chains — every chain (platform admin): create, rename, deactivate.

import { useState } from 'react';
import { Chain, RouteProps, api, useActor, useLoad, useT } from './shell';
import { Dialog, ErrorLine, Field, listAll, useSubmit } from './ui';
import { ChainForm, slugify, validateChain } from './validate';

function ChainDialog({ chain, onDone, onClose }: { chain: Chain | null; onDone: () => void; onClose: () => void }) {
  const t = useT();
  const [f, setF] = useState<ChainForm>({ name: chain?.name ?? '', slug: chain?.slug ?? '' });
  const [slugTouched, setSlugTouched] = useState(!!chain);
  const { errs, busy, fail, submit } = useSubmit(() => validateChain(f), async () => {
    if (chain) {
      const body: Record<string, unknown> = {};
      if (f.name.trim() !== chain.name) body.name = f.name.trim();
      if (f.slug.trim() !== chain.slug) body.slug = f.slug.trim();
      if (Object.keys(body).length) await api.put(`/api/chains/${encodeURIComponent(chain.id)}`, body);
    } else {
      await api.post('/api/chains', { name: f.name.trim(), slug: f.slug.trim() });
    }
  }, onDone);
  return (
    <Dialog title={t(chain ? 'chain.chains.edit' : 'chain.chains.create')} onClose={onClose} testId="chain-form">
      <form onSubmit={submit} noValidate>
        <Field label={t('chain.f.name')} error={errs.name}>
          <input value={f.name} data-testid="chain-form-name" onChange={(e) => {
            const name = e.target.value;
            setF((o) => ({ name, slug: slugTouched ? o.slug : slugify(name) }));
          }} />
        </Field>
        <Field label={t('chain.f.slug')} error={errs.slug} hint={t('chain.hint.slug')}>
          <input value={f.slug} dir="ltr" data-testid="chain-form-slug"
                 onChange={(e) => { setSlugTouched(true); setF({ ...f, slug: e.target.value }); }} />
        </Field>
        {fail ? <p className="notice error" role="alert">{fail}</p> : null}
        <div className="cwc-actions">
          <button type="submit" className="btn btn-primary" disabled={busy} data-testid="chain-form-submit">
            {t('chain.save')}
          </button>
          <button type="button" className="btn" onClick={onClose}>{t('chain.cancel')}</button>
        </div>
      </form>
    </Dialog>
  );
}

export function ChainsPage(_props: RouteProps) {
  const t = useT();
  const actor = useActor();
  const platform = actor?.role === 'platform-admin';
  const chains = useLoad(() => listAll<Chain>('/api/chains'), []);
  const [dialog, setDialog] = useState<{ chain: Chain | null } | null>(null);
  const [fail, setFail] = useState<unknown>(null);
  // deactivating is undone by activating again: no confirmation step
  const setActive = async (c: Chain, active: boolean) => {
    setFail(null);
    try {
      await api.put(`/api/chains/${c.id}`, { active });
      chains.reload();
    } catch (e) {
      setFail(e);
    }
  };
  return (
    <section className="page cwc-page">
      <header className="cwc-head">
        <h1>{t('chain.chains.title')}</h1>
        {platform ? (
          <button type="button" className="btn btn-primary" onClick={() => setDialog({ chain: null })}
                  data-testid="chain-create">{t('chain.chains.create')}</button>
        ) : null}
      </header>
      <ErrorLine error={chains.error ?? fail} />
      <div className="table-wrap">
        <table className="data" data-testid="chains-table">
          <thead>
            <tr>
              <th>{t('chain.f.name')}</th><th>{t('chain.f.slug')}</th><th>{t('chain.f.status')}</th>
              <th><span className="cwc-sr">{t('chain.actions')}</span></th>
            </tr>
          </thead>
          <tbody>
            {(chains.data ?? []).map((c) => (
              <tr key={c.id} data-testid={`chain-row-${c.slug}`} data-active={String(c.active)}
                  className={c.active ? '' : 'cwc-row-off'}>
                <td><a className="cwc-touch" href={`#/chains/${encodeURIComponent(c.id)}`} data-testid={`chain-open-${c.slug}`}>{c.name}</a></td>
                <td dir="ltr" className="cwc-mono">{c.slug}</td>
                <td>{c.active ? t('chain.active') : <span className="badge cwc-bad">{t('chain.inactive')}</span>}</td>
                <td><div className="cwc-row-actions">
                  {platform ? (
                    <>
                      <button type="button" className="btn" onClick={() => setDialog({ chain: c })}
                              data-testid={`chain-edit-${c.slug}`}>{t('chain.edit')}</button>
                      <button type="button" className="btn" onClick={() => setActive(c, !c.active)}
                              data-testid={`chain-${c.active ? 'deactivate' : 'activate'}-${c.slug}`}>
                        {t(c.active ? 'chain.deactivate' : 'chain.activate')}
                      </button>
                    </>
                  ) : null}
                </div></td>
              </tr>
            ))}
            {chains.data && chains.data.length === 0 ? (
              <tr><td colSpan={4} className="cwc-empty">{t('chain.chains.none')}</td></tr>
            ) : null}
          </tbody>
        </table>
      </div>
      {dialog ? (
        <ChainDialog chain={dialog.chain} onClose={() => setDialog(null)}
                     onDone={() => { setDialog(null); chains.reload(); }} />
      ) : null}
    </section>
  );
}
