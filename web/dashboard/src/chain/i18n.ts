// Strings of the chain / platform pages (src/chain/**), merged into the app's
// dictionaries by src/i18n/index.ts. Same rule as src/i18n: chainHe has exactly
// chainEn's keys (the type checker and test/i18n.test.ts check it); prefix keys "chain.".
export const chainEn = {
  'chain.placeholder': 'This page is being built.',
  'chain.chains.title': 'Chains',
  'chain.chain.title': 'Chain',
  'chain.devices.title': 'Devices',
  'chain.users.title': 'Users',
  'chain.analytics.title': 'Chain analytics',
  'chain.telemetry.title': 'Telemetry',
} as const;

export type ChainKey = keyof typeof chainEn;

export const chainHe: Record<ChainKey, string> = {
  'chain.placeholder': 'הדף הזה בבנייה.',
  'chain.chains.title': 'רשתות',
  'chain.chain.title': 'רשת',
  'chain.devices.title': 'מכשירים',
  'chain.users.title': 'משתמשים',
  'chain.analytics.title': 'ניתוח רשת',
  'chain.telemetry.title': 'טלמטריה',
};
