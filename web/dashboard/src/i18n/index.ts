// Dictionaries and translation, without React (unit-tested under node).
import { en } from './en';
import { he } from './he';
import { chainEn, chainHe } from '../chain/i18n';

export type Lang = 'en' | 'he';
export type Key = keyof typeof en | keyof typeof chainEn;
export type Vars = Record<string, string | number>;

export const dictionaries: Record<Lang, Record<Key, string>> = {
  en: { ...en, ...chainEn },
  he: { ...he, ...chainHe },
};

export const LANG_KEY = 'cartwise.lang';

/** The stored choice, else the browser's language (Hebrew for he/iw), else English. */
export function detectLang(stored: string | null, navigatorLanguages: readonly string[]): Lang {
  if (stored === 'en' || stored === 'he') return stored;
  for (const l of navigatorLanguages) {
    const p = l.toLowerCase().split('-')[0];
    if (p === 'he' || p === 'iw') return 'he';
    if (p === 'en') return 'en';
  }
  return 'en';
}

export function dirOf(lang: Lang): 'rtl' | 'ltr' {
  return lang === 'he' ? 'rtl' : 'ltr';
}

/** The string for `key` with {placeholders} filled; the English one if missing, else the key. */
export function translate(lang: Lang, key: Key, vars?: Vars): string {
  const s = dictionaries[lang][key] ?? dictionaries.en[key] ?? key;
  if (!vars) return s;
  return s.replace(/\{(\w+)\}/g, (m, name: string) => (name in vars ? String(vars[name]) : m));
}

/** Placeholders used in a string, sorted (for the parity test). */
export function placeholders(s: string): string[] {
  return (s.match(/\{\w+\}/g) ?? []).slice().sort();
}

export function locale(lang: Lang): string {
  return lang === 'he' ? 'he-IL' : 'en-GB';
}
