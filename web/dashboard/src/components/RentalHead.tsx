// The header row shared by the rental tables (open rentals, history).
import { useT } from '../context';

export function RentalHead({ history = false }: { history?: boolean }) {
  const t = useT();
  return (
    <thead>
      <tr>
        <th>{t('rentals.cart')}</th>
        <th>{t('rentals.phone')}</th>
        <th>{t('rentals.status')}</th>
        <th>{t('rentals.start')}</th>
        <th>{t('rentals.expected')}</th>
        {history && <th>{t('rentals.returned')}</th>}
        {history && <th>{t('rentals.duration')}</th>}
      </tr>
    </thead>
  );
}
