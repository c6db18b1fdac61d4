// The app-wide state the pages read: language (t), the session, navigation.
import { createContext, useContext } from 'react';
import { translate, type Key, type Lang, type Vars } from './i18n';
import type { Session } from './session';

export interface AppState {
  lang: Lang;
  setLang: (l: Lang) => void;
  session: Session | null;
  signOut: () => void;
  /** go to a route path, e.g. '/branches/x' (query optional) */
  navigate: (path: string, query?: Record<string, string | undefined>, replace?: boolean) => void;
}

export const AppContext = createContext<AppState>({
  lang: 'en',
  setLang: () => {},
  session: null,
  signOut: () => {},
  navigate: () => {},
});

export function useApp(): AppState {
  return useContext(AppContext);
}

/** t(key, vars) in the current language. */
export function useT(): (key: Key, vars?: Vars) => string {
  const { lang } = useContext(AppContext);
  return (key, vars) => translate(lang, key, vars);
}
